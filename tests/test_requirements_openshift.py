"""One check per row of docs/requirements-openshift.md, against lab A as rendered.

The rows are the OpenShift 4.16 bare-metal UPI documentation's requirements (machines,
networking, ports, DNS, load balancing, PXE). The table and the checks cannot drift apart:
a row id without a check, or a check without a row, fails `test_every_row_has_a_check`.
Zones are read through BIND's own parser (`named-checkzone -D`), CPU models through
libvirt's CPU map; the live halves (HAProxy's /readyz pool, PXE over TFTP, BIND answering)
are in tests/test_haproxy.py, tests/test_pxe.py and tests/test_dns.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_haproxy import parse
from test_libvirt import X86_64_V2, cpu_map_features

from generator.families import pxe
from generator.model import Environment, Node
from generator.pipeline import render_environment
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "requirements-openshift.md"
ROW = re.compile(r"^\| ([A-Z]+-\d+) \|", re.MULTILINE)
GIB = 1024**3


@dataclass(frozen=True)
class Lab:
    env: Environment
    tree: Tree

    def text(self, path: str) -> str:
        return self.tree[path].decode()

    def domain(self, node: Node) -> ET.Element:
        return ET.fromstring(self.tree[f"hypervisors/{node.hypervisor}/domains/{node.name}.xml"])

    def cluster_nodes(self) -> tuple[Node, ...]:
        return self.env.nodes_with_role("bootstrap", "master", "worker")

    def pxelinux(self, node: Node) -> list[str]:
        """The node's kernel arguments, from its pxelinux APPEND line."""
        cfg = self.text(f"hosts/helper/tftp/pxelinux.cfg/01-{pxe.dashed(node.nic.mac)}")
        append = next(line for line in cfg.splitlines() if line.strip().startswith("APPEND"))
        return append.split()[1:]

    def arg(self, node: Node, key: str) -> str:
        values = [a.split("=", 1)[1] for a in self.pxelinux(node) if a.startswith(key + "=")]
        assert len(values) == 1, f"{node.name}: {key}= appears {len(values)} times"
        return values[0]

    def haproxy(self) -> dict[str, dict[str, list[str]]]:
        return parse(self.text("hosts/helper/haproxy/haproxy.cfg"))

    def keyfile(self, node: Node) -> dict[str, dict[str, str]]:
        config = json.loads(self.tree[f"clusters/ocp4/ignition/{node.name}.ign"])
        entry = next(f for f in config["storage"]["files"]
                     if f["path"].startswith("/etc/NetworkManager/system-connections/"))
        sections: dict[str, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in unquote(entry["contents"]["source"].removeprefix("data:,")).splitlines():
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
            elif "=" in line:
                key, _, value = line.partition("=")
                current[key] = value
        return sections

    def ignition_file(self, node: Node, path: str) -> str:
        config = json.loads(self.tree[f"clusters/ocp4/ignition/{node.name}.ign"])
        entry = next(f for f in config["storage"]["files"] if f["path"] == path)
        return unquote(entry["contents"]["source"].removeprefix("data:,"))


@cache
def lab() -> Lab:
    rendered = render_environment("env/lab", cwd=ROOT)
    return Lab(rendered.loaded.model, rendered.tree)


@cache
def zone_records() -> tuple[tuple[str, str, str], ...]:
    """(owner, type, data) of every record of every rendered zone, as BIND parses them."""
    tool = shutil.which("named-checkzone")
    assert tool, "named-checkzone missing (bind9-utils)"
    out: list[tuple[str, str, str]] = []
    for path, content in lab().tree.items():
        match = re.fullmatch(r"hosts/helper/dns/zones/(.+)\.zone", path)
        if not match:
            continue
        result = subprocess.run([tool, "-q", "-D", "-o", "-", match.group(1), "/dev/stdin"],
                                input=content, capture_output=True, check=True)
        for line in result.stdout.decode().splitlines():
            owner, _ttl, _cls, rtype, *data = line.split()
            out.append((owner, rtype, " ".join(data)))
    assert out, "no zones rendered"
    return tuple(out)


def records(owner: str, rtype: str) -> set[str]:
    return {data for o, t, data in zone_records() if o == owner and t == rtype}


def lb_ip() -> str:
    return str(lab().env.node("helper").ip)


def fqdn(name: str) -> str:
    return f"{name}.{lab().env.cluster.domain}."


def ptr_owner(node: Node) -> str:
    return ".".join(reversed(str(node.ip).split("."))) + ".in-addr.arpa."


# --- machines ------------------------------------------------------------------------------

def m1() -> None:
    env = lab().env
    assert len(env.nodes_with_role("bootstrap")) == 1
    assert len(env.nodes_with_role("master")) == 3
    assert len(env.nodes_with_role("worker")) != 1  # two or more, or none (three-node)
    for node in lab().cluster_nodes():
        assert lab().domain(node).findtext("name") == node.name


def m2() -> None:
    minimum = {"bootstrap": (4, 16), "master": (4, 16), "worker": (2, 8)}
    for node in lab().cluster_nodes():
        vcpu, ram_gib = minimum[node.role]
        domain = lab().domain(node)
        assert int(domain.findtext("vcpu") or 0) >= vcpu, node.name
        assert int(domain.findtext("memory") or 0) * 1024 >= ram_gib * GIB, node.name
        root = ET.fromstring(lab().tree[f"hypervisors/hv1/volumes/{node.name}-root.qcow2.xml"])
        assert int(root.findtext("capacity") or 0) >= 100 * 1000**3, node.name


def m3() -> None:
    for node in lab().cluster_nodes():
        domain = lab().domain(node)
        cpu = domain.find("cpu")
        assert cpu is not None, f"{node.name}: no <cpu>, libvirt gives qemu64"
        if domain.get("type") == "kvm":
            assert cpu.get("mode") == "host-model", node.name
        else:
            assert X86_64_V2 <= cpu_map_features(cpu.findtext("model") or ""), node.name


# --- networking ----------------------------------------------------------------------------

def n1() -> None:
    for node in lab().cluster_nodes():
        name, mac = lab().arg(node, "ifname").split(":", 1)
        assert mac == node.nic.mac.lower(), node.name
        assert lab().arg(node, "ip").split(":")[5] == name, node.name


def n2() -> None:
    dhcp = lab().text("hosts/helper/dhcp/dhcpd.conf")
    net = lab().env.network("lan")
    for node in lab().cluster_nodes():
        assert lab().arg(node, "ip").split(":")[0] == str(node.ip)
        block = re.search(rf"host {node.name} \{{\n  hardware ethernet ([0-9a-f:]+);\n"
                          r"  fixed-address ([0-9.]+);", dhcp)
        assert block and block.groups() == (node.nic.mac, str(node.ip)), node.name
        assert lab().keyfile(node)["ipv4"]["address1"] == f"{node.ip}/{net.cidr.prefixlen}"


def n3() -> None:
    dhcp = lab().text("hosts/helper/dhcp/dhcpd.conf")
    for node in lab().cluster_nodes():
        assert lab().ignition_file(node, "/etc/hostname") == node.fqdn + "\n"
        assert f'option host-name "{node.fqdn}";' in dhcp
        assert records(ptr_owner(node), "PTR") == {node.fqdn + "."}
        assert lab().arg(node, "ip").split(":")[4] == node.fqdn


def n4() -> None:
    for node in lab().cluster_nodes():
        assert lab().arg(node, "nameserver") == lb_ip()
        assert lab().keyfile(node)["ipv4"]["dns"] == f"{lb_ip()};"


def n5() -> None:
    for node in lab().cluster_nodes():
        keyfile = lab().keyfile(node)
        assert "interface-name" not in keyfile["connection"], node.name
        assert keyfile["ethernet"]["mac-address"].lower() == node.nic.mac, node.name


# --- ports ---------------------------------------------------------------------------------

def no_filter_between_nodes() -> None:
    """Every cluster node's NIC on one bridged libvirt network, no nwfilter on any of them."""
    networks = set()
    for node in lab().cluster_nodes():
        interfaces = lab().domain(node).findall("devices/interface")
        assert interfaces, node.name
        assert all(i.find("filterref") is None for i in interfaces), node.name
        networks.add(interfaces[0].find("source").get("network"))  # type: ignore[union-attr]
    assert len(networks) == 1, networks
    network = ET.fromstring(lab().tree[f"hypervisors/hv1/networks/{networks.pop()}.xml"])
    assert network.find("forward").get("mode") == "bridge"  # type: ignore[union-attr]


def time_source(rendered: Lab) -> None:
    """The network's time servers in every node's chrony.conf, else a default route to the
    OS's public pools."""
    net = rendered.env.network("lan")
    for node in rendered.cluster_nodes():
        config = json.loads(rendered.tree[f"clusters/ocp4/ignition/{node.name}.ign"])
        paths = {f["path"] for f in config["storage"]["files"]}
        if net.ntp:
            chrony = rendered.ignition_file(node, "/etc/chrony.conf").splitlines()
            assert [line for line in chrony if line.startswith(("server ", "pool "))] == [
                f"server {t} iburst" for t in net.ntp], node.name
        else:
            assert "/etc/chrony.conf" not in paths, node.name
            assert net.gateway is not None
            assert rendered.keyfile(node)["ipv4"]["gateway"] == str(net.gateway)
            assert rendered.arg(node, "ip").split(":")[2] == str(net.gateway)


def t1() -> None:
    time_source(lab())


# --- DNS -----------------------------------------------------------------------------------

def d1() -> None:
    assert records(fqdn("api"), "A") == {lb_ip()}


def d2() -> None:
    assert records(fqdn("api-int"), "A") == {lb_ip()}


def d3() -> None:
    assert records(fqdn("*.apps"), "A") == {lb_ip()}


def a_and_ptr(role: str) -> None:
    nodes = lab().env.nodes_with_role(role)
    assert nodes
    for node in nodes:
        assert records(fqdn(node.name), "A") == {str(node.ip)}
        assert records(ptr_owner(node), "PTR") == {fqdn(node.name)}


def d7() -> None:
    """The documented deviation: the LB address's one PTR names the helper it belongs to."""
    helper = lab().env.node("helper")
    assert lab().env.services.haproxy is not None
    assert lab().env.services.haproxy.address is None
    assert records(ptr_owner(helper), "PTR") == {fqdn("helper")}


# --- load balancing ------------------------------------------------------------------------

def servers(backend: str) -> list[list[str]]:
    return [line.split() for line in lab().haproxy()[f"backend {backend}"]["server"]]


def lb1() -> None:
    config = lab().haproxy()
    for name in ("api", "machine-config"):
        assert config[f"frontend {name}"]["mode"] == ["tcp"]
        assert config[f"backend {name}"]["mode"] == ["tcp"]


def lb2() -> None:
    backend = lab().haproxy()["backend api"]
    assert backend["balance"] == ["roundrobin"]
    assert not any(key.startswith("stick") for key in backend)


def control_pool(backend: str, port: int) -> None:
    env = lab().env
    found = {s[1]: s for s in servers(backend)}
    for node in env.nodes_with_role("master"):
        assert found[f"{node.ip}:{port}"][-1] != "backup", node.name
    for node in env.nodes_with_role("bootstrap"):
        assert found[f"{node.ip}:{port}"][-1] == "backup", node.name
    assert len(found) == len(env.nodes_with_role("bootstrap", "master"))


def lb3() -> None:
    control_pool("api", 6443)


def lb4() -> None:
    backend = lab().haproxy()["backend api"]
    assert "httpchk GET /readyz HTTP/1.0" in backend["option"]
    assert backend["http-check"] == ["expect status 200"]
    assert all("check-ssl" in s and "check" in s for s in servers("api"))


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s)?", value).groups()  # type: ignore[union-attr]
    return int(number) / 1000 if unit == "ms" else int(number)


def lb5() -> None:
    for server in servers("api"):
        options = dict(zip(server[2:], server[3:], strict=False))
        inter, fall, rise = seconds(options["inter"]), int(options["fall"]), int(options["rise"])
        assert inter in (5, 10) and rise == 2 and fall == 3, server
        assert fall * inter <= 30, server


def lb6() -> None:
    control_pool("machine-config", 22623)
    assert lab().env.node("helper").ip.is_private


def lb7() -> None:
    config = lab().haproxy()
    for name in ("ingress-http", "ingress-https"):
        assert config[f"frontend {name}"]["mode"] == ["tcp"]
        assert config[f"backend {name}"]["mode"] == ["tcp"]


def lb8() -> None:
    for name in ("ingress-http", "ingress-https"):
        assert lab().haproxy()[f"backend {name}"]["balance"] == ["source"]


def lb9() -> None:
    workers = {f"{n.ip}" for n in lab().env.nodes_with_role("worker")}
    for name in ("ingress-http", "ingress-https"):
        assert {s[1].rsplit(":", 1)[0] for s in servers(name)} == workers


def lb10() -> None:
    config = lab().haproxy()
    for title, body in config.items():
        if title.startswith("frontend "):
            port = body["bind"][0].rsplit(":", 1)[1]
            backend = body["default_backend"][0]
            assert {s[1].rsplit(":", 1)[1] for s in servers(backend)} == {port}, title


# --- PXE -----------------------------------------------------------------------------------

def x1() -> None:
    manifest = json.loads(lab().tree["hosts/helper/tftp/manifest.json"])["files"]
    http = json.loads(lab().tree["hosts/helper/http/manifest.json"])
    for kind in ("kernel", "initramfs"):
        assert f"images/rhcos-live-{kind}" in manifest
        assert f"install/rhcos-live-{kind}" in http["files"]
    for node in lab().cluster_nodes():
        rootfs = urlparse(lab().arg(node, "coreos.live.rootfs_url"))
        assert rootfs.scheme == "http" and rootfs.hostname == lb_ip()
        assert rootfs.path.removeprefix("/") in http["files"]


def x2() -> None:
    kinds = [a for a in lab().env.os_artifacts if a.kind in ("kernel", "initramfs", "rootfs")]
    assert len(kinds) == 3
    assert len({(a.stream_file, a.stream_url) for a in kinds}) == 1
    assert kinds[0].stream_file or kinds[0].stream_url


def x3() -> None:
    for node in lab().cluster_nodes():
        first = lab().domain(node).find("devices/disk/target")
        assert first is not None and first.get("bus") == "virtio"
        assert lab().arg(node, "coreos.inst.install_dev") == f"/dev/{first.get('dev')}"


def x4() -> None:
    http = json.loads(lab().tree["hosts/helper/http/manifest.json"])
    for node in lab().cluster_nodes():
        url = urlparse(lab().arg(node, "coreos.inst.ignition_url"))
        assert url.scheme == "http" and url.path == f"/ignition/{node.name}.ign"
        assert http["files"][url.path.removeprefix("/")]["path"] == \
            f"clusters/ocp4/ignition/{node.name}.ign"


def x5() -> None:
    net = lab().env.network("lan")
    for node in lab().cluster_nodes():
        name = lab().arg(node, "ifname").split(":")[0]
        assert lab().arg(node, "ip") == (f"{node.ip}::{net.gateway}:{net.cidr.netmask}:"
                                         f"{node.fqdn}:{name}:none")
        args = lab().pxelinux(node)
        assert args.index(f"ifname={name}:{node.nic.mac}") < args.index(
            f"ip={lab().arg(node, 'ip')}")


def x6() -> None:
    dhcp = lab().text("hosts/helper/dhcp/dhcpd.conf")
    assert 'filename "grubx64.efi";' in dhcp and 'filename "pxelinux.0";' in dhcp
    for node in lab().cluster_nodes():
        mac = pxe.dashed(node.nic.mac)
        assert f"hosts/helper/tftp/pxelinux.cfg/01-{mac}" in lab().tree
        # GRUB's prefix follows the helper's OS profile (el9: the TFTP root; Debian: grub/)
        prefix = lab().env.services.dhcp.os.grub_prefix
        grub = "/".join(filter(None, ("hosts/helper/tftp", prefix, f"grub.cfg-01-{mac}")))
        assert grub in lab().tree


CHECKS: dict[str, Callable[[], None]] = {
    "M-1": m1, "M-2": m2, "M-3": m3,
    "N-1": n1, "N-2": n2, "N-3": n3, "N-4": n4, "N-5": n5,
    **{f"P-{i}": no_filter_between_nodes for i in range(1, 12)},
    "T-1": t1,
    "D-1": d1, "D-2": d2, "D-3": d3,
    "D-4": lambda: a_and_ptr("bootstrap"), "D-5": lambda: a_and_ptr("master"),
    "D-6": lambda: a_and_ptr("worker"), "D-7": d7,
    "LB-1": lb1, "LB-2": lb2, "LB-3": lb3, "LB-4": lb4, "LB-5": lb5, "LB-6": lb6,
    "LB-7": lb7, "LB-8": lb8, "LB-9": lb9, "LB-10": lb10,
    "X-1": x1, "X-2": x2, "X-3": x3, "X-4": x4, "X-5": x5, "X-6": x6,
}


def doc_rows() -> list[str]:
    return ROW.findall(DOC.read_text(encoding="utf-8"))


def test_every_row_has_a_check() -> None:
    rows = doc_rows()
    assert len(rows) == len(set(rows)), "duplicate row ids"
    assert sorted(rows) == sorted(CHECKS)


@pytest.mark.parametrize("row", doc_rows())
def test_requirement(row: str) -> None:
    CHECKS[row]()


def test_d7_with_a_load_balancer_address_of_its_own(repo: Path) -> None:
    """D-7 met where it can be: with a VIP (`services.haproxy.address`), api and api-int get
    their PTR records, as BIND reads the rendered reverse zone."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    assert "services:\n  dns:\n" in text
    env_file.write_text(text.replace("services:\n  dns:\n",
                                     "services:\n  haproxy:\n    address: 192.168.20.110\n"
                                     "  dns:\n", 1))
    tree = render_environment("env/lab", cwd=repo).tree
    zone = tree["hosts/helper/dns/zones/20.168.192.in-addr.arpa.zone"]
    result = subprocess.run(["named-checkzone", "-q", "-D", "-o", "-",
                             "20.168.192.in-addr.arpa", "/dev/stdin"], input=zone,
                            capture_output=True, check=True)
    ptrs = {tuple(line.split()[::4]) for line in result.stdout.decode().splitlines()
            if " PTR " in line.replace("\t", " ")}
    assert ("110.20.168.192.in-addr.arpa.", "api.ocp4.example.com.") in ptrs
    assert ("110.20.168.192.in-addr.arpa.", "api-int.ocp4.example.com.") in ptrs
    assert ("111.20.168.192.in-addr.arpa.", "helper.ocp4.example.com.") in ptrs


def test_t1_with_time_servers_of_the_network(repo: Path) -> None:
    """T-1 for a disconnected lab: `networks[].ntp` replaces the public pools in chrony.conf."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    old = "    dns: [192.168.20.111]\n"
    assert text.count(old) == 1
    env_file.write_text(text.replace(old, old + "    ntp: [192.168.20.1, 192.168.20.2]\n"))
    rendered = render_environment("env/lab", cwd=repo)
    variant = Lab(rendered.loaded.model, rendered.tree)
    assert variant.env.network("lan").ntp
    time_source(variant)
