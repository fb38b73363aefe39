"""DNS family: BIND and dnsmasq configs for lab A, proven by the real checkers and daemons.

Every daemon runs in its own lo-only network namespace (tests/netns.py) on port 53 of
127.0.0.1; the only rewrites are the ones a converge does: BIND's `directory` and its
/run/named paths point into the test's tmp dir. The forwarders (8.8.8.8) are unreachable
from the namespace, and DNSSEC validation is off, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import random
import select
import string
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from clirun import gen, replace_in_lab
from netns import Netns, netns

from generator.families import dns as family
from generator.model import Environment
from generator.pipeline import render_environment
from generator.tree import Tree

pytestmark = pytest.mark.daemons
LAB = "env/lab"
# A random *.apps name per run (the same for both providers, so their answers compare).
APPS_LABEL = "".join(random.choices(string.ascii_lowercase, k=10))
EXTRA_RECORDS = """    records:
      - {name: mirror, type: A, value: 192.168.20.111}
      - {name: console, type: CNAME, value: api}
      - {name: note, type: TXT, value: "gen says hi"}
      - {name: _http._tcp.mirror, type: SRV, value: "0 5 8080 mirror"}
"""


def render(repo: Path, env: str = LAB) -> tuple[Environment, Tree]:
    rendered = render_environment(env, cwd=repo)
    return rendered.loaded.model, rendered.tree


def set_provider(repo: Path, provider: str, records: bool = False) -> None:
    """Switch lab A's DNS provider (and optionally add extra records) in a scratch copy."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    old = "    provider: bind\n    forwarders: [8.8.8.8, 8.8.4.4]\n"
    assert old in text
    new = f"    provider: {provider}\n    forwarders: [8.8.8.8, 8.8.4.4]\n"
    env_file.write_text(text.replace(old, new + (EXTRA_RECORDS if records else "")))


def write(tree: Tree, prefix: str, dest: Path) -> Path:
    """Install the files under `prefix` into `dest`, as the files provider would."""
    for path, content in tree.items():
        if path.startswith(prefix + "/"):
            target = dest / path[len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return dest


def install_bind(tree: Tree, env: Environment, dest: Path) -> Path:
    """named.conf with `directory` and the /run/named paths moved into dest (a converge's job)."""
    dns = env.services.dns
    assert dns is not None
    write(tree, f"hosts/{dns.host}/dns", dest)
    conf = dest / "named.conf"
    text = conf.read_text()
    assert f'directory "{dns.directory}";' in text
    text = text.replace(f'directory "{dns.directory}";', f'directory "{dest}";')
    conf.write_text(text.replace("/run/named/", f"{dest}/"))
    return conf


def start_bind(ns: Netns, conf: Path, timeout: float = 60) -> None:
    """Start named in the foreground and wait until it says every zone is loaded: it
    listens before it has loaded them all (a /16 has 256 reverse zones), and a query for a
    zone still loading is refused, so a loaded machine made the PTR test fail at random."""
    proc = ns.popen(["named", "-g", "-c", conf])
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    log, deadline = b"", time.monotonic() + timeout
    while b"all zones loaded" not in log:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"named did not load its zones: {log.decode()[-2000:]}")
        select.select([proc.stdout], [], [], 0.2)
        log += proc.stdout.read() or b""
    ns.wait_port(53, "udp")


def start_dnsmasq(ns: Netns, confdir: Path, tmp: Path) -> None:
    ns.popen(["dnsmasq", "-k", "-C", "/dev/null", f"--conf-dir={confdir},*.conf",
              f"--pid-file={tmp}/dnsmasq.pid", "--user=root", "--log-facility=-"])
    ns.wait_port(53, "udp")


def dig(ns: Netns, *query: str) -> tuple[str, tuple[str, ...]]:
    """(status, sorted answer lines) for one query against 127.0.0.1."""
    out = ns.run(["dig", "@127.0.0.1", "+tries=1", "+time=3", "+noall", "+comments",
                  "+answer", *query], check=True).stdout
    status = next(line.split("status: ")[1].split(",")[0] for line in out.splitlines()
                  if "status: " in line)
    answers = tuple(sorted(" ".join(line.split()) for line in out.splitlines()
                           if line and not line.startswith(";")))
    return status, answers


def queries(env: Environment) -> list[tuple[str, ...]]:
    """Every name of the environment: A and PTR per node, api, api-int, a random *.apps
    name, etcd-N, the etcd SRV, extra records, and two names that must not exist."""
    domain, label = env.cluster.domain, APPS_LABEL
    result: list[tuple[str, ...]] = []
    for node in env.nodes:
        result += [("A", node.fqdn), ("-x", str(node.ip))]
    for name in ("api", "api-int", f"{label}.apps", "nope"):
        result.append(("A", f"{name}.{domain}"))
    result += [("A", f"etcd-{i}.{domain}") for i in range(len(env.nodes_with_role("master")))]
    result.append(("SRV", f"_etcd-server-ssl._tcp.{domain}"))
    for record in env.services.dns.records if env.services.dns else ():
        result.append((record.type, f"{record.name}.{domain}"))
    free = next(ip for ip in env.networks[0].cidr.hosts() if ip not in {n.ip for n in env.nodes})
    result.append(("-x", str(free)))
    return result


def answers(ns: Netns, env: Environment) -> dict[tuple[str, ...], tuple[str, tuple[str, ...]]]:
    # Key the random *.apps name by its wildcard.
    return {tuple(q if ".apps." not in q else "*" + q[q.index(".apps."):] for q in query):
            dig(ns, *query) for query in queries(env)}


def expect_lab_answers(got: dict[tuple[str, ...], tuple[str, tuple[str, ...]]],
                       env: Environment) -> None:
    """The answers the model says lab A must give (both providers)."""
    domain, lb = env.cluster.domain, "192.168.20.111"
    for node in env.nodes:
        assert got[("A", node.fqdn)] == ("NOERROR", (f"{node.fqdn}. 300 IN A {node.ip}",))
        ptr = ".".join(reversed(str(node.ip).split("."))) + ".in-addr.arpa."
        assert got[("-x", str(node.ip))] == ("NOERROR", (f"{ptr} 300 IN PTR {node.fqdn}.",))
    for name in ("api", "api-int"):
        assert got[("A", f"{name}.{domain}")] == ("NOERROR", (f"{name}.{domain}. 300 IN A {lb}",))
    status, (line,) = got[("A", f"*.apps.{domain}")]
    assert status == "NOERROR" and line.endswith(f".apps.{domain}. 300 IN A {lb}")
    for i, ip in enumerate(("151", "152", "153")):
        assert got[("A", f"etcd-{i}.{domain}")][1] == (
            f"etcd-{i}.{domain}. 300 IN A 192.168.20.{ip}",)
    assert got[("SRV", f"_etcd-server-ssl._tcp.{domain}")] == ("NOERROR", tuple(
        f"_etcd-server-ssl._tcp.{domain}. 300 IN SRV 0 10 2380 etcd-{i}.{domain}."
        for i in range(3)))
    assert got[("A", f"nope.{domain}")] == ("NXDOMAIN", ())


# --- pure properties -------------------------------------------------------------------


@pytest.mark.parametrize(("cidr", "zones"), [
    ("192.168.20.0/24", ["20.168.192.in-addr.arpa"]),
    ("10.1.0.0/16", ["1.10.in-addr.arpa"]),
    ("10.0.0.0/8", ["10.in-addr.arpa"]),
    ("192.168.20.64/26", ["20.168.192.in-addr.arpa"]),
    ("192.168.16.0/22", [f"{i}.168.192.in-addr.arpa" for i in range(16, 20)]),
    ("172.16.0.0/12", [f"{i}.172.in-addr.arpa" for i in range(16, 32)]),
])
def test_reverse_zones_cover_any_prefix(cidr: str, zones: list[str]) -> None:
    blocks = family.reverse_zone_blocks(IPv4Network(cidr))
    assert [family.reverse_zone_name(b) for b in blocks] == zones
    assert all(IPv4Network(cidr).subnet_of(b) or b.subnet_of(IPv4Network(cidr)) for b in blocks)


def test_serial_derives_from_records_not_the_clock(repo: Path) -> None:
    env, tree = render(repo)
    zone = "hosts/helper/dns/zones/ocp4.example.com.zone"
    assert render(repo)[1][zone] == tree[zone]
    set_provider(repo, "bind", records=True)
    changed = render(repo)[1][zone]
    serial = [line for line in tree[zone].decode().splitlines() if "SOA" in line][0]
    assert serial not in changed.decode()
    assert str(family.serial(family.forward_records(env))) in serial


def test_lab_a_renders_bind_files(repo: Path) -> None:
    _, tree = render(repo)
    dns_files = sorted(p for p in tree if p.startswith("hosts/helper/dns/"))
    assert dns_files == ["hosts/helper/dns/named.conf",
                         "hosts/helper/dns/zones/20.168.192.in-addr.arpa.zone",
                         "hosts/helper/dns/zones/ocp4.example.com.zone"]
    conf = tree["hosts/helper/dns/named.conf"].decode()
    assert "dnssec-validation no;" in conf and "forwarders { 8.8.8.8; 8.8.4.4; };" in conf
    assert 'file "zones/ocp4.example.com.zone"' in conf  # relative to `directory`


def test_no_dns_service_renders_nothing(repo: Path) -> None:
    _, tree = render(repo, "env/k8s-lab")
    assert not [p for p in tree if "/dns/" in p or p.endswith("dns.conf")]


# --- real checkers ---------------------------------------------------------------------


def test_named_checkconf_and_checkzone(repo: Path, tmp_path: Path) -> None:
    env, tree = render(repo)
    conf = install_bind(tree, env, tmp_path / "bind")
    result = subprocess.run(["named-checkconf", "-z", conf], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for zone_file in sorted((tmp_path / "bind/zones").iterdir()):
        zone = zone_file.name.removesuffix(".zone")
        result = subprocess.run(["named-checkzone", "-k", "fail", "-n", "fail", zone, zone_file],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout


def test_dnsmasq_test_accepts_fragment(repo: Path, tmp_path: Path) -> None:
    set_provider(repo, "dnsmasq", records=True)
    _, tree = render(repo)
    confdir = write(tree, "hosts/helper/dnsmasq", tmp_path / "dnsmasq")
    result = subprocess.run(["dnsmasq", "--test", "-C", confdir / "dns.conf"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "syntax check OK" in result.stderr, result.stderr


def test_named_rejects_a_broken_zone(repo: Path, tmp_path: Path) -> None:
    """The checker test can fail: a CNAME beside other data at one name is refused."""
    env, tree = render(repo)
    conf = install_bind(tree, env, tmp_path / "bind")
    zone = tmp_path / "bind/zones/ocp4.example.com.zone"
    zone.write_text(zone.read_text() + "api\tIN\tCNAME\thelper\n")
    assert subprocess.run(["named-checkconf", "-z", conf], capture_output=True).returncode != 0


# --- real daemons ----------------------------------------------------------------------


def test_bind_answers_every_name_of_lab_a(repo: Path, tmp_path: Path) -> None:
    env, tree = render(repo)
    conf = install_bind(tree, env, tmp_path / "bind")
    with netns("bind") as ns:
        start_bind(ns, conf)
        expect_lab_answers(answers(ns, env), env)


def test_dnsmasq_answers_every_name_of_lab_a(repo: Path, tmp_path: Path) -> None:
    set_provider(repo, "dnsmasq")
    env, tree = render(repo)
    confdir = write(tree, "hosts/helper/dnsmasq", tmp_path / "dnsmasq")
    with netns("dnsmasq") as ns:
        start_dnsmasq(ns, confdir, tmp_path)
        expect_lab_answers(answers(ns, env), env)


def test_bind_and_dnsmasq_give_the_same_answers(repo: Path, tmp_path: Path) -> None:
    set_provider(repo, "bind", records=True)
    env, bind_tree = render(repo)
    conf = install_bind(bind_tree, env, tmp_path / "bind")
    replace_in_lab(repo, "provider: bind\n    forwarders", "provider: dnsmasq\n    forwarders")
    env2, mask_tree = render(repo)
    assert env2.services.dns is not None and env2.services.dns.provider == "dnsmasq"
    confdir = write(mask_tree, "hosts/helper/dnsmasq", tmp_path / "dnsmasq")
    with netns("bind") as ns:
        start_bind(ns, conf)
        from_bind = answers(ns, env)
    with netns("dnsmasq") as ns:
        start_dnsmasq(ns, confdir, tmp_path)
        from_dnsmasq = answers(ns, env)
    expect_lab_answers(from_bind, env)
    assert from_dnsmasq == from_bind
    assert from_bind[("CNAME", "console.ocp4.example.com")][1] == (
        "console.ocp4.example.com. 300 IN CNAME api.ocp4.example.com.",)


@pytest.mark.parametrize("cidr", ["192.168.16.0/20", "192.168.20.0/23", "192.168.0.0/16"])
def test_bind_serves_ptr_for_any_prefix_length(repo: Path, tmp_path: Path, cidr: str) -> None:
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text().replace("cidr: 192.168.20.0/24", f"cidr: {cidr}"))
    env, tree = render(repo)
    conf = install_bind(tree, env, tmp_path / "bind")
    result = subprocess.run(["named-checkconf", "-z", conf], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    zones = len(family.reverse_zone_blocks(IPv4Network(cidr)))
    assert len(list((tmp_path / "bind/zones").iterdir())) == zones + 1
    with netns("bind") as ns:
        start_bind(ns, conf)
        node = env.node("master1")
        assert dig(ns, "-x", str(node.ip))[1][0].endswith(f"PTR {node.fqdn}.")


# --- bad input -------------------------------------------------------------------------


def add_record(repo: Path, line: str, column_of: str) -> str:
    """Add one `records:` line to lab A's DNS; return `FILE:LINE:COL` of `column_of` in it."""
    forwarders = "    forwarders: [8.8.8.8, 8.8.4.4]\n"
    replace_in_lab(repo, forwarders, forwarders + line + "\n")
    lines = (repo / "environments/lab/env.yaml").read_text().splitlines()
    number = lines.index(line) + 1
    return f"environments/lab/env.yaml:{number}:{line.index(column_of) + 1}"


def test_record_colliding_with_a_node_is_one_line_error(repo: Path) -> None:
    where = add_record(repo, "    records: [{name: master0, type: A, value: 192.168.20.9}]",
                       "master0")
    result = gen("validate", LAB, cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"{where}: at services.dns.records[0].name: record 'master0' collides with node "
        "'master0' (gen publishes every node's A and PTR records; choose another name)"]


def test_bad_srv_value_is_one_line_error(repo: Path) -> None:
    where = add_record(repo, "    records: [{name: _x._tcp, type: SRV, value: '10 2380 etcd-0'}]",
                       "'10")
    result = gen("validate", LAB, cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"{where}: at services.dns.records[0].value: '10 2380 etcd-0' is not an SRV value "
        "(write '<priority> <weight> <port> <target>', e.g. '0 10 2380 etcd-0')"]


def test_dns_without_any_host_is_one_line_error(repo: Path) -> None:
    """k8s-lab has no helper node and no services.host: DNS must name its host."""
    env_file = repo / "environments/k8s-lab/env.yaml"
    text = env_file.read_text()
    env_file.write_text(text.replace("services:\n", "services:\n  dns: {provider: bind}\n", 1))
    number = text.splitlines().index("services:") + 2
    result = gen("validate", "env/k8s-lab", cwd=repo)
    assert result.code == 1
    assert [line for line in result.err.splitlines() if not line.startswith("warning:")] == [
        f"environments/k8s-lab/env.yaml:{number}:8: at services.dns: services.dns has no host "
        "(set services.dns.host or services.host to a node, or add a helper node)"]
