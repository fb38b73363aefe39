"""DHCP family: ISC dhcpd, Kea and dnsmasq configs for lab A, proven by the real daemons.

Each lease test runs the server in one lo-only namespace and `dhclient` in another, joined
by a veth pair: the server end carries the helper's address (192.168.20.111/24, it never
leaves the namespaces), the client end the node's MAC. dhclient runs with its own script
(`-sf`) that records the environment it is given, so the test reads the offered address and
boot file as the node would. The only rewrites are a converge's: Kea's interface and lease
file, the lease/pid files given on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from clirun import gen, replace_in_lab
from netns import Netns, netns

from generator.families import dhcp as family
from generator.model import Environment
from generator.pipeline import render_environment
from generator.tree import Tree

pytestmark = pytest.mark.daemons
LAB = "env/lab"
HELPER = "192.168.20.111/24"
# dhclient gives its script a fresh environment: the capture path is baked into the script.
SCRIPT = '#!/bin/sh\nenv | sort > "{capture}.$reason"\nexit 0\n'


def render(repo: Path) -> tuple[Environment, Tree]:
    rendered = render_environment(LAB, cwd=repo)
    return rendered.loaded.model, rendered.tree


def lab_services(repo: Path, dhcp: str, dns: str = "bind", extra: str = "") -> None:
    """Pick lab A's DHCP and DNS providers in a scratch copy of the repo."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    old = "  dns:\n    provider: bind\n"
    assert text.count(old) == 1
    new = f"  dhcp:\n    provider: {dhcp}\n{extra}  dns:\n    provider: {dns}\n"
    env_file.write_text(text.replace(old, new))


def write(tree: Tree, prefix: str, dest: Path) -> Path:
    for path, content in tree.items():
        if path.startswith(prefix + "/"):
            target = dest / path[len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return dest


def lease(client: Netns, iface: str, tmp: Path, arch: int | None = None,
          timeout: float = 20) -> dict[str, str]:
    """Run dhclient once on `iface`; the environment its script saw on BOUND (or {})."""
    capture = tmp / f"capture-{iface}-{arch}"
    script, conf = tmp / f"capture-{iface}.sh", tmp / "dhclient.conf"
    script.write_text(SCRIPT.format(capture=capture))
    script.chmod(0o755)
    send = f"option arch code 93 = unsigned integer 16;\nsend arch {arch};\n" \
        if arch is not None else ""
    conf.write_text(f"{send}timeout {int(timeout)};\nretry 1;\n")
    proc = client.popen(["dhclient", "-d", "-1", "-v", "-sf", script, "-cf", conf,
                         "-lf", tmp / f"{iface}.leases", "-pf", tmp / f"{iface}.pid", iface])
    bound = Path(f"{capture}.BOUND")
    deadline = time.monotonic() + timeout + 5
    while time.monotonic() < deadline and not bound.exists() and proc.poll() is None:
        time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=10)
    if not bound.exists():
        return {}
    pairs = (line.split("=", 1) for line in bound.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if k.startswith("new_")}


def server_veth(server: Netns, client: Netns, mac: str) -> tuple[str, str]:
    return server.add_veth(client, HELPER, None, peer_mac=mac)


# --- rendered content ------------------------------------------------------------------


def test_lab_a_renders_isc_dhcpd(repo: Path) -> None:
    env, tree = render(repo)
    conf = tree["hosts/helper/dhcp/dhcpd.conf"].decode()
    assert "option arch code 93 = unsigned integer 16;" in conf
    assert "deny unknown-clients;" in conf and "next-server 192.168.20.111;" in conf
    for node in env.nodes:
        if node.name != "helper":
            assert f"hardware ethernet {node.nic.mac};\n  fixed-address {node.ip};" in conf
    assert "host helper " not in conf  # the DHCP host itself needs no reservation


def test_kea_config_is_canonical_json(repo: Path) -> None:
    lab_services(repo, "kea")
    env, tree = render(repo)
    raw = tree["hosts/helper/kea/kea-dhcp4.conf"]
    data = json.loads(raw)
    assert raw == (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    subnet = data["Dhcp4"]["subnet4"][0]
    assert len(subnet["reservations"]) == len(env.nodes) - 1
    assert data["Dhcp4"]["interfaces-config"]["interfaces"] == ["ens3"]


def test_no_dhcp_service_renders_nothing(repo: Path) -> None:
    tree = render_environment("env/k8s-lab", cwd=repo).tree
    assert not [p for p in tree if "/dhcp/" in p or "/kea/" in p or p.endswith("dhcp.conf")]


# --- real checkers ---------------------------------------------------------------------


def test_dhcpd_t_accepts_and_rejects(repo: Path, tmp_path: Path) -> None:
    _, tree = render(repo)
    conf = tmp_path / "dhcpd.conf"
    conf.write_bytes(tree["hosts/helper/dhcp/dhcpd.conf"])
    ok = subprocess.run(["dhcpd", "-t", "-cf", conf], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    conf.write_text(conf.read_text().replace("fixed-address", "fixed-adress", 1))
    assert subprocess.run(["dhcpd", "-t", "-cf", conf], capture_output=True).returncode != 0


def kea_env(tmp: Path) -> dict[str, str]:
    """Kea's pid and lock files go to the test's tmp dir, not /run/kea."""
    return {**os.environ, "KEA_PIDFILE_DIR": str(tmp), "KEA_LOCKFILE_DIR": str(tmp)}


def test_kea_dhcp4_t_accepts_and_rejects(repo: Path, tmp_path: Path) -> None:
    lab_services(repo, "kea", extra="    pool: {start: 192.168.20.200, end: 192.168.20.220}\n")
    _, tree = render(repo)
    conf = tmp_path / "kea-dhcp4.conf"
    conf.write_bytes(tree["hosts/helper/kea/kea-dhcp4.conf"])
    with netns("kea") as ns:
        # kea-dhcp4 -t opens the configured interface: give it the helper's `ens3`.
        ns.run(["ip", "link", "add", "ens3", "type", "veth", "peer", "name", "ens3p"], check=True)
        ok = ns.run(["kea-dhcp4", "-t", conf], env=kea_env(tmp_path))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        data = json.loads(conf.read_text())
        data["Dhcp4"]["subnet4"][0]["reservations"][0]["ip-address"] = "10.0.0.1"  # off-subnet
        conf.write_text(json.dumps(data))
        assert ns.run(["kea-dhcp4", "-t", conf], env=kea_env(tmp_path)).returncode != 0


def test_dnsmasq_test_accepts_dhcp_and_shared_dns(repo: Path, tmp_path: Path) -> None:
    lab_services(repo, "dnsmasq", dns="dnsmasq")
    _, tree = render(repo)
    confdir = write(tree, "hosts/helper/dnsmasq", tmp_path / "dnsmasq")
    assert sorted(p.name for p in confdir.iterdir()) == ["dhcp.conf", "dns.conf"]
    assert "port=0" not in (confdir / "dhcp.conf").read_text()  # one process serves both
    result = subprocess.run(["dnsmasq", "--test", "-C", "/dev/null",
                             f"--conf-dir={confdir},*.conf"], capture_output=True, text=True)
    assert result.returncode == 0 and "syntax check OK" in result.stderr, result.stderr


def test_dnsmasq_dhcp_alone_leaves_port_53_to_bind(repo: Path) -> None:
    lab_services(repo, "dnsmasq")
    _, tree = render(repo)
    assert "port=0" in tree["hosts/helper/dnsmasq/dhcp.conf"].decode().splitlines()
    assert "hosts/helper/dns/named.conf" in tree


# --- real daemons handing leases to dhclient -------------------------------------------


def test_dhcpd_hands_reserved_ip_and_boot_file(repo: Path, tmp_path: Path) -> None:
    env, tree = render(repo)
    conf = tmp_path / "dhcpd.conf"
    conf.write_bytes(tree["hosts/helper/dhcp/dhcpd.conf"])
    (tmp_path / "dhcpd.leases").touch()
    with netns("dhcpd") as server:
        check_leases_isc(server, env, tmp_path, conf)


def check_leases_isc(server: Netns, env: Environment, tmp: Path, conf: Path) -> None:
    """BIOS, UEFI x86-64 (arch 7) and EFI BC (arch 9) clients; dhcpd serves the interfaces
    named when it starts, so one runs per client veth."""
    dhcp = env.services.dhcp
    assert dhcp is not None
    for node_name, arch, boot_file in (("bootstrap", None, dhcp.bios_file),
                                       ("master0", 7, dhcp.uefi_file),
                                       ("worker1", 9, dhcp.uefi_file)):
        node = env.node(node_name)
        with netns("cli") as client:
            here, there = server_veth(server, client, node.nic.mac)
            proc = server.popen(["dhcpd", "-f", "-d", "-cf", conf, "-lf", tmp / "dhcpd.leases",
                                 "-pf", tmp / f"dhcpd-{here}.pid", here])
            try:
                got = lease(client, there, tmp, arch)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        assert got.get("new_ip_address") == str(node.ip), got
        assert got.get("new_filename") == boot_file, got
        assert got.get("new_next_server") == "192.168.20.111", got
        assert got.get("new_host_name") == node.fqdn, got
        assert got.get("new_domain_name_servers") == "192.168.20.111", got


def test_dhcpd_denies_unknown_clients(repo: Path, tmp_path: Path) -> None:
    lab_services(repo, "isc", extra="    pool: {start: 192.168.20.200, end: 192.168.20.220}\n")
    _, tree = render(repo)
    conf = tmp_path / "dhcpd.conf"
    conf.write_bytes(tree["hosts/helper/dhcp/dhcpd.conf"])
    (tmp_path / "dhcpd.leases").touch()
    with netns("dhcpd") as server, netns("cli") as client:
        here, there = server_veth(server, client, "52:54:00:12:34:56")
        server.popen(["dhcpd", "-f", "-d", "-cf", conf, "-lf", tmp_path / "dhcpd.leases",
                      "-pf", tmp_path / "dhcpd.pid", here])
        assert lease(client, there, tmp_path, timeout=5) == {}


def test_kea_hands_reserved_ip_and_boot_file(repo: Path, tmp_path: Path) -> None:
    lab_services(repo, "kea")
    env, tree = render(repo)
    data = json.loads(tree["hosts/helper/kea/kea-dhcp4.conf"])
    with netns("kea") as server:
        dhcp = env.services.dhcp
        assert dhcp is not None
        for node_name, arch, boot_file in (("bootstrap", None, dhcp.bios_file),
                                           ("master0", 7, dhcp.uefi_file)):
            node = env.node(node_name)
            with netns("cli") as client:
                here, there = server_veth(server, client, node.nic.mac)
                conf = tmp_path / f"kea-{here}.conf"
                # A converge's rewrites: the interface on this host, the lease file path.
                data["Dhcp4"]["interfaces-config"]["interfaces"] = [here]
                data["Dhcp4"]["lease-database"]["name"] = str(tmp_path / "kea-leases4.csv")
                conf.write_text(json.dumps(data))
                proc = server.popen(["kea-dhcp4", "-c", conf], env=kea_env(tmp_path))
                try:
                    got = lease(client, there, tmp_path, arch)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
            assert got.get("new_ip_address") == str(node.ip), got
            assert got.get("new_filename") == boot_file, got
            assert got.get("new_next_server") == "192.168.20.111", got
            assert got.get("new_domain_name") == "ocp4.example.com", got


def test_one_dnsmasq_serves_dns_and_dhcp(repo: Path, tmp_path: Path) -> None:
    lab_services(repo, "dnsmasq", dns="dnsmasq")
    env, tree = render(repo)
    confdir = write(tree, "hosts/helper/dnsmasq", tmp_path / "dnsmasq")
    dhcp = env.services.dhcp
    assert dhcp is not None
    for node_name, arch, boot_file in (("bootstrap", None, dhcp.bios_file),
                                       ("master0", 7, dhcp.uefi_file)):
        node = env.node(node_name)
        with netns("dnsmasq") as server, netns("cli") as client:
            here, there = server_veth(server, client, node.nic.mac)
            server.popen(["dnsmasq", "-k", "-C", "/dev/null", f"--conf-dir={confdir},*.conf",
                          f"--pid-file={tmp_path}/dnsmasq.pid", "--user=root",
                          f"--dhcp-leasefile={tmp_path}/dnsmasq.leases", "--log-facility=-"])
            server.wait_port(53, "udp")
            server.wait_port(67, "udp")
            got = lease(client, there, tmp_path, arch)
            answer = server.run(["dig", "@127.0.0.1", "+short", node.fqdn]).stdout.split()
        assert got.get("new_ip_address") == str(node.ip), got
        assert got.get("new_filename") == boot_file, got
        assert got.get("new_next_server") == "192.168.20.111", got
        assert answer == [str(node.ip)]


# --- bad input -------------------------------------------------------------------------


def test_two_nodes_sharing_a_mac_is_one_line_error(repo: Path) -> None:
    mac = "52:54:00:aa:bb:cc"
    replace_in_lab(repo, "ip: 192.168.20.150}", f"ip: 192.168.20.150, mac: '{mac}'}}")
    where = replace_in_lab(repo, "ip: 192.168.20.151}", f"ip: 192.168.20.151, mac: '{mac}'}}")
    line = (repo / "environments/lab/env.yaml").read_text().splitlines()[
        int(where.rsplit(":", 1)[1]) - 1]
    result = gen("validate", LAB, cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"{where}:{line.index(mac)}: at nodes[2].nics[0].mac: MAC address '{mac}' is already "
        "used at nodes[1].nics[0].mac (two NICs sharing a MAC cannot both get their DHCP lease)"]


def test_load_balancer_outside_every_network_is_one_line_error(repo: Path) -> None:
    where = replace_in_lab(repo, "  nfs:\n", "  haproxy:\n    address: 10.9.9.9\n  nfs:\n")
    number = int(where.rsplit(":", 1)[1]) + 1
    result = gen("validate", LAB, cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"environments/lab/env.yaml:{number}:14: at services.haproxy.address: load-balancer "
        "address 10.9.9.9 is outside every declared network "
        "(use a free address in one of: 192.168.20.0/24)"]


def test_load_balancer_vip_feeds_api_records(repo: Path) -> None:
    replace_in_lab(repo, "  nfs:\n", "  haproxy:\n    address: 192.168.20.100\n  nfs:\n")
    _, tree = render(repo)
    zone = tree["hosts/helper/dns/zones/ocp4.example.com.zone"].decode()
    assert "api\tIN\tA\t192.168.20.100" in zone and "*.apps\tIN\tA\t192.168.20.100" in zone


def test_dhcp_pool_outside_its_network_is_one_line_error(repo: Path) -> None:
    lab_services(repo, "isc", extra="    pool: {start: 192.168.19.10, end: 192.168.20.20}\n")
    text = (repo / "environments/lab/env.yaml").read_text()
    line = text.splitlines().index("    pool: {start: 192.168.19.10, end: 192.168.20.20}") + 1
    result = gen("validate", LAB, cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"environments/lab/env.yaml:{line}:19: at services.dhcp.pool.start: pool address "
        "192.168.19.10 is outside 192.168.20.0/24 (use an address in 192.168.20.0/24)"]


def test_family_reserves_every_nic_on_the_dhcp_network(repo: Path) -> None:
    env, _ = render(repo)
    assert env.services.dhcp is not None
    subnet = family.subnet_of(env, env.services.dhcp)
    assert [r.name for r in subnet.reservations] == [n.name for n in env.nodes[1:]]
    assert subnet.next_server == env.node("helper").ip
