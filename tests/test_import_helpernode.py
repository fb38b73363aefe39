"""`gen import helpernode`: helper-node vars files (written here in the format of that
project's vars-doc.md; none of its files are copied) import, render, and give the
record sets, DHCP reservations, HAProxy routes and NFS exports the playbook's templates
would build from the same file.

The expected sets are an independent oracle: they are computed below from the vars data
by the rules of the playbook's templates (zonefile.j2, reverse.j2, dhcpd.conf.j2,
haproxy.cfg.j2, nfs-exports.j2) as documented in docs/migrating.md, never by calling gen.
The rendered side is read back with real tools where they exist (named-checkzone -D
canonicalizes zones; dhcpd -t and haproxy -c check the files) and parsed as text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clirun import gen

LAB_A_VARS = """\
# Lab A as a helper-node vars file (DHCP and PXE).
disk: vda
helper:
  name: "helper"
  ipaddr: "192.168.20.111"
  networkifacename: "ens3"
dns:
  domain: "Example.com"
  clusterid: "ocp4"
  forwarder1: "8.8.8.8"
  forwarder2: "8.8.4.4"
dhcp:
  router: "192.168.20.1"
  bcast: "192.168.20.255"
  netmask: "255.255.255.0"
  poolstart: "192.168.20.200"
  poolend: "192.168.20.220"
  ipid: "192.168.20.0"
  netmaskid: "255.255.255.0"
bootstrap:
  name: "bootstrap"
  ipaddr: "192.168.20.150"
  macaddr: "52:54:00:aa:00:50"
masters:
  - name: "master0"
    ipaddr: "192.168.20.151"
    macaddr: "52:54:00:aa:00:51"
  - name: "master1"
    ipaddr: "192.168.20.152"
    macaddr: "52:54:00:aa:00:52"
  - name: "master2"
    ipaddr: "192.168.20.153"
    macaddr: "52:54:00:aa:00:53"
workers:
  - name: "Worker0"
    ipaddr: "192.168.20.161"
    macaddr: "52:54:00:AA:00:61"
  - name: "worker1"
    ipaddr: "192.168.20.162"
    macaddr: "52:54:00:aa:00:62"
other:
  - name: "jumpbox"
    ipaddr: "192.168.20.170"
    macaddr: "52:54:00:aa:00:70"
ocp_installer: "https://mirror.openshift.com/pub/openshift-v4/clients/ocp/4.16.3/openshift-install-linux-4.16.3.tar.gz"
ocp_client: "https://mirror.openshift.com/pub/openshift-v4/clients/ocp/4.16.3/openshift-client-linux-4.16.3.tar.gz"
chronyconfig:
  enabled: true
  content:
    - server: 0.pool.ntp.org
      options: iburst
"""

COMPACT_STATIC_VARS = """\
staticips: true
helper:
  name: "bastion"
  ipaddr: "10.0.5.10"
dns:
  domain: "lab.example.org"
  clusterid: "edge"
  forwarder1: "10.0.0.53"
bootstrap:
  name: "bootstrap"
  ipaddr: "10.0.5.20"
masters:
  - name: "cp0"
    ipaddr: "10.0.5.21"
  - name: "cp1"
    ipaddr: "10.0.5.22"
  - name: "cp2"
    ipaddr: "10.0.5.23"
other:
  - name: "nas"
    ipaddr: "10.0.5.40"
"""

COMPACT_DHCP_REGISTRY_VARS = """\
disk: sda
helper:
  name: "helper"
  ipaddr: "172.16.8.2"
dns:
  domain: "corp.test"
  clusterid: "mini"
  forwarder1: "172.16.0.1"
  forwarder2: "172.16.0.2"
  lb_ipaddr: "172.16.8.5"
dhcp:
  router: "172.16.8.1"
  bcast: "172.16.11.255"
  netmask: "255.255.252.0"
  dns: "{{ helper.ipaddr }}"
  poolstart: "172.16.10.1"
  poolend: "172.16.10.50"
  ipid: "172.16.8.0"
  netmaskid: "255.255.252.0"
bootstrap:
  name: "boot"
  ipaddr: "172.16.8.20"
  macaddr: "52:54:00:01:02:20"
masters:
  - name: "m0"
    ipaddr: "172.16.9.21"
    macaddr: "52:54:00:01:02:21"
  - name: "m1"
    ipaddr: "172.16.9.22"
    macaddr: "52:54:00:01:02:22"
  - name: "m2"
    ipaddr: "172.16.9.23"
    macaddr: "52:54:00:01:02:23"
setup_registry:
  deploy: true
  autosync_registry: false
  registry_image: docker.io/library/registry:2
  local_repo: "ocp4/openshift4"
  product_repo: "openshift-release-dev"
  release_name: "ocp-release"
  release_tag: "4.16.3-x86_64"
  registry_user: "admin"
  registry_password: "not-a-real-password"
ocp_bios: "https://mirror.example.test/rhcos/rhcos-live-rootfs.x86_64.img"
ocp_initramfs: "https://mirror.example.test/rhcos/rhcos-live-initramfs.x86_64.img"
ocp_install_kernel: "https://mirror.example.test/rhcos/rhcos-live-kernel-x86_64"
uefi: true
ssh_gen_key: false
"""

EXTERNAL_NFS_VARS = """\
helper:
  name: "helper"
  ipaddr: "192.168.7.77"
dns:
  domain: "example.com"
  clusterid: "ocp4"
  forwarder1: "8.8.8.8"
dhcp:
  router: "192.168.7.1"
  bcast: "192.168.7.255"
  netmask: "255.255.255.0"
  poolstart: "192.168.7.10"
  poolend: "192.168.7.30"
  ipid: "192.168.7.0"
  netmaskid: "255.255.255.0"
bootstrap:
  name: "bootstrap"
  ipaddr: "192.168.7.20"
  macaddr: "52:54:00:60:72:67"
masters:
  - name: "master0"
    ipaddr: "192.168.7.21"
    macaddr: "52:54:00:e7:9d:67"
  - name: "master1"
    ipaddr: "192.168.7.22"
    macaddr: "52:54:00:80:16:23"
  - name: "master2"
    ipaddr: "192.168.7.23"
    macaddr: "52:54:00:d5:1c:39"
workers:
  - name: "worker0"
    ipaddr: "192.168.7.11"
    macaddr: "52:54:00:f4:26:a1"
  - name: "worker1"
    ipaddr: "192.168.7.12"
    macaddr: "52:54:00:82:90:00"
nfs:
  server: "192.168.1.100"
  path: "/exports/helper"
nfs_provisioner_image: registry.example.test/nfs-subdir-external-provisioner:v4.0.2
pxe:
  generate_default: true
"""

VARIANTS = {"lab-a-dhcp": LAB_A_VARS, "compact-static": COMPACT_STATIC_VARS,
            "compact-dhcp-registry": COMPACT_DHCP_REGISTRY_VARS,
            "external-nfs": EXTERNAL_NFS_VARS}


# -- the oracle: what the playbook's templates build from a vars file ---------------------


def _hosts(v: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group, host) for bootstrap, masters, workers and other, in template order."""
    out = [("bootstrap", v["bootstrap"])] if "bootstrap" in v else []
    for group in ("masters", "workers", "other"):
        out += [(group, h) for h in v.get(group) or []]
    return out


def playbook_forward(v: dict[str, Any]) -> set[tuple[str, str, str]]:
    """zonefile.j2: (owner fqdn, type, value) with names lowered and absolute."""
    domain = f"{v['dns']['clusterid']}.{v['dns']['domain']}".lower()
    helper = v["helper"]["ipaddr"]
    lb = v["dns"].get("lb_ipaddr", helper)
    if "{{" in lb:
        lb = helper
    records = {(f"{n}.{domain}.", "A", helper) for n in ("ns1", "smtp")}
    records.add((f"{v['helper']['name'].lower()}.{domain}.", "A", helper))
    records |= {(f"{n}.{domain}.", "A", lb) for n in ("api", "api-int", "*.apps")}
    if (v.get("setup_registry") or {}).get("deploy"):
        records.add((f"registry.{domain}.", "A", helper))
    for _, host in _hosts(v):
        records.add((f"{host['name'].lower()}.{domain}.", "A", host["ipaddr"]))
    for index, master in enumerate(v["masters"]):
        records.add((f"etcd-{index}.{domain}.", "A", master["ipaddr"]))
        records.add((f"_etcd-server-ssl._tcp.{domain}.", "SRV",
                     f"0 10 2380 etcd-{index}.{domain}."))
    return records


def playbook_ptr(v: dict[str, Any]) -> set[tuple[str, str]]:
    """reverse.j2: (address, fqdn). The template names the helper `helper` literally and adds
    api/api-int PTRs at the helper's address when the load balancer is the helper."""
    domain = f"{v['dns']['clusterid']}.{v['dns']['domain']}".lower()
    helper = v["helper"]["ipaddr"]
    out = {(helper, f"helper.{domain}.")}
    for _, host in _hosts(v):
        out.add((host["ipaddr"], f"{host['name'].lower()}.{domain}."))
    lb = v["dns"].get("lb_ipaddr", helper)
    if lb == helper or "{{" in lb:
        out |= {(helper, f"api.{domain}."), (helper, f"api-int.{domain}.")}
    return out


def playbook_reservations(v: dict[str, Any]) -> set[tuple[str, str]]:
    """dhcpd.conf.j2: (mac, fixed address) per bootstrap/master/worker/other; none with
    staticips (the playbook installs no DHCP server then)."""
    if v.get("staticips"):
        return set()
    return {(h["macaddr"].lower(), h["ipaddr"]) for _, h in _hosts(v)}


def playbook_routes(v: dict[str, Any]) -> dict[int, set[str]]:
    """haproxy.cfg.j2: frontend port -> backend server addresses."""
    control = {f"{v['bootstrap']['ipaddr']}"} | {m["ipaddr"] for m in v["masters"]}
    ingress = {w["ipaddr"] for w in (v.get("workers") or v["masters"])}
    return {6443: {f"{ip}:6443" for ip in control}, 22623: {f"{ip}:22623" for ip in control},
            80: {f"{ip}:80" for ip in ingress}, 443: {f"{ip}:443" for ip in ingress}}


def playbook_exports(v: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    """nfs-exports.j2 (the helper as NFS server; none when `nfs.server` points elsewhere)."""
    if "nfs" in v:
        return set()
    options = frozenset("rw,sync,no_wdelay,no_root_squash,insecure".split(","))
    return {("/export", h["ipaddr"], options) for group, h in _hosts(v) if group != "other"}


# -- reading what gen rendered ---------------------------------------------------------------


def rendered_records(out: Path, zone_dir: Path) -> tuple[set[tuple[str, str, str]],
                                                          set[tuple[str, str]]]:
    forward: set[tuple[str, str, str]] = set()
    ptr: set[tuple[str, str]] = set()
    for zone_file in sorted(zone_dir.glob("*.zone")):
        origin = zone_file.name[:-len(".zone")]
        for owner, rtype, value in _zone_records(zone_file, origin):
            if rtype == "PTR":
                octets = owner.removesuffix(".in-addr.arpa.").split(".")
                ptr.add((".".join(reversed(octets)), value))
            elif rtype in ("A", "SRV", "CNAME", "TXT"):
                forward.add((owner, rtype, value))
    del out
    return forward, ptr


def _zone_records(zone_file: Path, origin: str) -> list[tuple[str, str, str]]:
    """Absolute (owner, type, data) rows, by named-checkzone -D when BIND is installed."""
    if shutil.which("named-checkzone"):
        dump = subprocess.run(["named-checkzone", "-D", "-o", "-", origin, str(zone_file)],
                              capture_output=True, text=True, check=True).stdout
        rows = []
        for line in dump.splitlines():
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[2] == "IN":
                rows.append((parts[0], parts[3], parts[4].strip()))
        return rows
    rows = []
    for line in zone_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[1] == "IN" and not line.startswith((";", "$", "@")):
            owner = parts[0] if parts[0].endswith(".") else f"{parts[0]}.{origin}."
            data = parts[3]
            if parts[2] in ("SRV", "CNAME", "PTR") and not data.endswith("."):
                data = f"{data}.{origin}."
            rows.append((owner, parts[2], data))
    return rows


def rendered_reservations(dhcpd_conf: Path) -> set[tuple[str, str]]:
    text = dhcpd_conf.read_text()
    return {(mac.lower(), ip) for mac, ip in re.findall(
        r"hardware ethernet ([0-9a-fA-F:]+);\s*fixed-address ([0-9.]+);", text)}


def rendered_routes(haproxy_cfg: Path) -> dict[int, set[str]]:
    text = haproxy_cfg.read_text()
    backends: dict[str, set[str]] = {}
    binds: dict[str, tuple[int, str]] = {}
    section = ""
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] in ("frontend", "backend", "listen", "global", "defaults"):
            section = f"{words[0]} {words[1] if len(words) > 1 else ''}"
            continue
        if section.startswith("frontend") and words[0] == "bind":
            binds[section] = (int(words[1].rsplit(":", 1)[1]), binds.get(section, (0, ""))[1])
        if section.startswith("frontend") and words[0] == "default_backend":
            binds[section] = (binds.get(section, (0, ""))[0], words[1])
        if section.startswith("backend") and words[0] == "server":
            backends.setdefault(section.split()[1], set()).add(words[2])
    return {port: backends.get(backend, set()) for port, backend in binds.values()}


def rendered_exports(exports: Path) -> set[tuple[str, str, frozenset[str]]]:
    out = set()
    for line in exports.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, *clients = line.split()
        for client in clients:
            host, options = client.rstrip(")").split("(")
            out.add((path, host, frozenset(options.split(","))))
    return out


# -- helpers -------------------------------------------------------------------------------


def _import(repo: Path, name: str, text: str, *extra: str) -> Any:
    vars_file = repo / f"{name}-vars.yaml"
    vars_file.write_text(text)
    return gen("import", "helpernode", vars_file.name, "--env", name, *extra, cwd=repo)


def _leaf_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict) and data:
        return [p for k, v in data.items() for p in _leaf_paths(v, path + (k,))]
    if isinstance(data, list) and data:
        return [p for i, v in enumerate(data) for p in _leaf_paths(v, path + (i,))]
    return [path]


def _field(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_import_renders_what_the_playbook_would(repo: Path, variant: str) -> None:
    text = VARIANTS[variant]
    result = _import(repo, variant, text)
    assert result.code == 0, result.err
    rendered = gen("render", f"env/{variant}", "--out", str(repo / "out"), cwd=repo)
    assert rendered.code == 0, rendered.err
    v = yaml.safe_load(text)
    host = repo / "out" / "hosts" / v["helper"]["name"].lower()

    forward, ptr = rendered_records(repo / "out", host / "dns" / "zones")
    expected_forward = playbook_forward(v)
    assert {r for r in forward if r[1] in ("A", "SRV")} == {
        (o, t, d) for o, t, d in expected_forward}
    # gen writes one PTR per address, the node's; the playbook's reverse zone names the
    # helper `helper` literally and adds api/api-int at the helper's address.
    domain = f"{v['dns']['clusterid']}.{v['dns']['domain']}".lower()
    helper_ip = v["helper"]["ipaddr"]
    expected_ptr = {(ip, name) for ip, name in playbook_ptr(v) if ip != helper_ip}
    lb = v["dns"].get("lb_ipaddr", helper_ip)
    if lb != helper_ip and "{{" not in lb:
        # Beyond the playbook: the OpenShift UPI docs require api/api-int PTRs, which gen
        # writes at an external load balancer's own address (docs/requirements-openshift.md).
        expected_ptr |= {(lb, f"api.{domain}."), (lb, f"api-int.{domain}.")}
    assert {(ip, name) for ip, name in ptr if ip != helper_ip} == expected_ptr
    assert (helper_ip, f"{v['helper']['name'].lower()}.{domain}.") in ptr

    reservations = rendered_reservations(host / "dhcp" / "dhcpd.conf")
    if v.get("staticips"):
        # The playbook runs no DHCP; gen's blueprint always renders dhcpd.conf, and nodes
        # without a MAC get derived ones (no machine answers to them): see docs/migrating.md.
        assert playbook_reservations(v) == set()
        assert {ip for _, ip in reservations} <= {h["ipaddr"] for _, h in _hosts(v)}
        assert not {mac for mac, _ in reservations} & {
            str(h.get("macaddr", "")).lower() for _, h in _hosts(v)}
    else:
        assert reservations == playbook_reservations(v)
    assert rendered_routes(host / "haproxy" / "haproxy.cfg") == playbook_routes(v)
    exports = host / "nfs" / "gen.exports"
    got_exports = rendered_exports(exports) if exports.exists() else set()
    assert {(p, h, o - {"no_subtree_check"}) for p, h, o in got_exports} == \
        playbook_exports(v)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_field_gets_one_line(repo: Path, variant: str) -> None:
    text = VARIANTS[variant]
    result = _import(repo, variant, text, "--format", "json")
    assert result.code == 0, result.err
    fields = json.loads(result.out)["fields"]
    reported = {f["field"] for f in fields}
    for leaf in _leaf_paths(yaml.safe_load(text)):
        prefixes = {_field(leaf[:cut]) for cut in range(1, len(leaf) + 1)}
        assert prefixes & reported, f"{_field(leaf)} has no report line"
    assert all(f["status"] in ("mapped", "not supported") for f in fields)
    # each line names its position in the vars file
    for f in fields:
        assert f["file"].endswith("-vars.yaml") and f["line"] > 0, f


def test_report_lines_and_comments(repo: Path) -> None:
    result = _import(repo, "lab2", COMPACT_DHCP_REGISTRY_VARS)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert any(re.match(r"lab2-vars\.yaml:\d+:\d+: at dns\.lb_ipaddr: mapped: -> "
                        r"services\.haproxy\.address", line) for line in lines), result.out
    assert any("at setup_registry.registry_image: not supported:" in line for line in lines)
    env_text = (repo / "environments/lab2/env.yaml").read_text()
    # the registry password is a secret: never copied into the environment or the report
    assert "not-a-real-password" not in env_text + result.out + result.err
    assert "# not in the vars file" in env_text
    assert "address: 172.16.8.5" in env_text and "mastersSchedulable: true" in env_text
    assert "rhcos-live-kernel: {url: https://mirror.example.test/rhcos/" in env_text


def test_an_installer_of_another_release_than_the_blueprint_pins_is_reported(
        repo: Path) -> None:
    """The vars file's 4.16.3 installer is not the release the blueprint pins (by digest and
    sha256): the report says so at ocp_installer, and cluster.version is not set to a
    release whose tools nothing pins (the environment stays valid)."""
    result = _import(repo, "lab2", LAB_A_VARS)
    assert result.code == 0, result.err
    assert any(re.match(r"lab2-vars\.yaml:\d+:\d+: at ocp_installer: not supported: the "
                        r"playbook installs OpenShift 4\.16; the openshift-upi blueprint "
                        r"pins a 4\.17 release", line)
               for line in result.out.splitlines()), result.out
    assert "version:" not in (repo / "environments/lab2/env.yaml").read_text()
    assert gen("validate", "env/lab2", cwd=repo).code == 0


BAD = [
    ("ppc64le: true\n", "ppc64le", "refused: gen renders x86_64"),
    ("high_availability:\n  helpernodes:\n    - {name: h0, ipaddr: 192.168.20.2}\n",
     "high_availability", "refused: several helpers"),
    ("extra_thing: 1\n", "extra_thing", "refused: not a field of the helper-node vars format"),
]


@pytest.mark.parametrize(("addition", "field", "message"), BAD)
def test_unsupported_fields_are_refused_in_one_line(repo: Path, addition: str, field: str,
                                                    message: str) -> None:
    text = LAB_A_VARS + addition
    line = text.splitlines().index(addition.splitlines()[0]) + 1
    result = _import(repo, "bad", text)
    assert result.code == 1
    hits = [e for e in result.err.splitlines() if f"at {field}: refused:" in e]
    assert len(hits) == 1, result.err
    # the position is the value's: the key's line, or the next one for a block value
    assert re.match(rf"bad-vars\.yaml:({line}|{line + 1}):\d+: at {re.escape(field)}: "
                    rf"{message}", hits[0]), hits[0]
    assert not (repo / "environments/bad").exists()


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ('macaddr: "52:54:00:aa:00:52"', 'macaddr: "52:54:00:aa:00"', "masters[1].macaddr",
     "is not a MAC address"),
    ('ipaddr: "192.168.20.162"', 'ipaddr: "192.168.21.162"', "workers[1].ipaddr",
     "is outside the network 192.168.20.0/24"),
    ('bcast: "192.168.20.255"', 'bcast: "192.168.20.127"', "dhcp.bcast",
     "is not the broadcast address"),
    ('ipaddr: "192.168.20.162"', 'ipaddr: "192.168.20.161"', "workers[1].ipaddr",
     "is also workers[0]'s ipaddr"),
    ('name: "worker1"', 'name: "worker_1"', "workers[1].name", "is not a valid name"),
    ('ipaddr: "192.168.20.153"', 'ipaddr: "192.168.20.999"', "masters[2].ipaddr",
     "is not an IPv4 address"),
])
def test_bad_values_are_refused_at_their_line(repo: Path, old: str, new: str, field: str,
                                              message: str) -> None:
    assert LAB_A_VARS.count(old) == 1
    text = LAB_A_VARS.replace(old, new)
    line = LAB_A_VARS[: LAB_A_VARS.index(old)].count("\n") + 1
    result = _import(repo, "bad", text)
    assert result.code == 1, result.out
    hits = [e for e in result.err.splitlines() if f"at {field}: refused:" in e]
    assert hits and hits[0].startswith(f"bad-vars.yaml:{line}:") and message in hits[0], \
        result.err
    assert not (repo / "environments/bad").exists()


def test_import_into_existing_environment_keeps_its_comments(repo: Path) -> None:
    assert _import(repo, "lab3", LAB_A_VARS).code == 0
    env_file = repo / "environments/lab3/env.yaml"
    env_file.write_text(env_file.read_text().replace(
        "nodes:\n", "# my own comment about the nodes\nnodes:\n"))
    changed = LAB_A_VARS.replace('ipaddr: "192.168.20.170"', 'ipaddr: "192.168.20.171"')
    result = _import(repo, "lab3", changed)
    assert result.code == 0, result.err
    text = env_file.read_text()
    assert "# my own comment about the nodes" in text
    assert "ip: 192.168.20.171" in text and "ip: 192.168.20.170" not in text


def test_static_import_has_no_pxe_files(repo: Path) -> None:
    assert _import(repo, "st", COMPACT_STATIC_VARS).code == 0
    assert gen("render", "env/st", "--out", str(repo / "out"), cwd=repo).code == 0
    assert not list((repo / "out").rglob("pxelinux.cfg/*"))
    for name in ("cp0", "cp1", "cp2", "bootstrap"):
        assert IPv4Address(yaml.safe_load(COMPACT_STATIC_VARS)["helper"]["ipaddr"])
        assert name in (repo / "environments/st/env.yaml").read_text()


@pytest.mark.skipif(not (shutil.which("dhcpd") and shutil.which("haproxy")),
                    reason="dhcpd and haproxy are not installed")
def test_imported_configs_pass_the_real_checkers(repo: Path) -> None:
    assert _import(repo, "chk", LAB_A_VARS).code == 0
    assert gen("render", "env/chk", "--out", str(repo / "out"), cwd=repo).code == 0
    host = repo / "out/hosts/helper"
    dhcpd = subprocess.run(["dhcpd", "-t", "-cf", str(host / "dhcp/dhcpd.conf")],
                           capture_output=True, text=True)
    assert dhcpd.returncode == 0, dhcpd.stderr
    haproxy = subprocess.run(["haproxy", "-c", "-f", str(host / "haproxy/haproxy.cfg")],
                             capture_output=True, text=True)
    assert haproxy.returncode == 0, haproxy.stdout + haproxy.stderr


LINE = re.compile(r"^[\w./-]+-vars\.yaml(:\d+:\d+)?: at [\w.\[\]-]+: (refused|not supported): \S")

MALFORMED = [
    ("helper:\n", "helper: 5\nx_helper:\n"),
    ("masters:\n", "masters: [1, 2]\nx_masters:\n"),
    ("dns:\n", "dns: []\nx_dns:\n"),
    ("workers:\n", "workers: worker0\nx_workers:\n"),
    ("chronyconfig:\n", "chronyconfig: 3\nx_chrony:\n"),
    ('  ipaddr: "192.168.20.111"\n', '  ipaddr: "{{ lookup(\'env\', \'IP\') }}"\n'),
    ('  netmaskid: "255.255.255.0"\n', '  netmaskid: "255.0.255.0"\n'),
    ("disk: vda\n", "disk: [vda]\n"),
]


@pytest.mark.parametrize(("old", "new"), MALFORMED)
def test_malformed_files_fail_with_one_clear_line_each(repo: Path, old: str, new: str) -> None:
    assert LAB_A_VARS.count(old) == 1, old
    result = _import(repo, "bad", LAB_A_VARS.replace(old, new))
    assert result.code == 1, result.out
    lines = result.err.splitlines()
    assert lines and all(LINE.match(line) for line in lines), result.err
    assert len(lines) == len(set(lines))
    assert not (repo / "environments/bad").exists()


def test_any_subset_of_the_format_imports_or_is_refused_line_by_line() -> None:
    """Dropping any one section, or any one field of a host, never crashes the importer;
    the result is either importable or refused with well-formed lines (pure, in-process)."""
    from generator.importers.helpernode import import_helpernode

    full = yaml.safe_load(LAB_A_VARS)
    variants = []
    for key in full:
        variants.append({k: v for k, v in full.items() if k != key})
    for field in ("name", "ipaddr", "macaddr"):
        broken = yaml.safe_load(LAB_A_VARS)
        del broken["masters"][1][field]
        variants.append(broken)
    for data in variants:
        imported = import_helpernode(yaml.safe_dump(data), "x-vars.yaml", "x")
        for line in imported.lines:
            assert LINE.match(line.render()) or line.status == "mapped", line.render()
        missing = [k for k in ("helper", "dns", "bootstrap", "masters") if k not in data]
        if missing or any(set(m) != {"name", "ipaddr", "macaddr"} for m in data["masters"]):
            assert imported.refused, data.keys()


def test_mirror_registry_settings_are_reported_never_copied(repo: Path) -> None:
    text = LAB_A_VARS + ("setup_registry:\n  deploy: true\n  use_mirror_registry: true\n"
                         "mirror_registry_dir: /opt/mirror-registry\n"
                         "init_password: quay-init-secret\n")
    result = _import(repo, "mirror", text)
    assert result.code == 0, result.err
    assert re.search(r"mirror-vars\.yaml:\d+:\d+: at init_password: not supported: ",
                     result.out), result.out
    env_text = (repo / "environments/mirror/env.yaml").read_text()
    assert "quay-init-secret" not in env_text + result.out + result.err
    assert "{name: registry, type: A, value: 192.168.20.111}" in env_text


def test_multicluster_files_are_refused(repo: Path) -> None:
    text = LAB_A_VARS.replace('  clusterid: "ocp4"\n', '  clusterid:\n    - "big"\n'
                              '    - "small"\n')
    result = _import(repo, "multi", text)
    assert result.code == 1
    assert re.search(r"multi-vars\.yaml:\d+:\d+: at dns\.clusterid: refused: several "
                     r"clusters in one file", result.err), result.err
