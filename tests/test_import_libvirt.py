"""`gen import libvirt` and adoption (`gen plan/converge --adopt`).

First against libvirt's test driver: its state lives in the connection, so the real CLI
entry point runs in-process (as in test_reconcile_plan.py) on a state file holding lab A as
built by hand (tests/lab_by_hand.py). Then against a private real libvirtd (marker
`libvirtd`): the lab is defined with virsh the way virt-install leaves it (q35 machines,
volumes named after the VMs), helper and bootstrap run as real qemu processes, and
import -> render -> plan (only adoptions) -> converge -> empty re-plan must leave every VM
running with the same domain id and qemu pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab_by_hand import LAB, domain_xml, driver_state, network_xml, pool_xml, volume_xml
from test_reconcile_plan import run as run_in_process

from generator.reconcile import libvirt as provider

GEN_NS = "https://gen.invalid/xmlns/libvirt/1"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


# The test-driver state the `host` fixture made: env.yaml holds test:///default (a state
# file's path is operator-only), so plan and converge get it as an operator passes it.
OPERATOR: dict[str, str] = {}


def run(*argv: str) -> Result:
    if argv[:1] in (("plan",), ("converge",)) and "uri" in OPERATOR:
        argv = (*argv, "--uri-override", f"hv1={OPERATOR['uri']}")
    return run_in_process(*argv)


@pytest.fixture(autouse=True)
def fresh_connections() -> Iterator[None]:
    provider.forget_connections()
    yield
    provider.forget_connections()


@pytest.fixture
def host(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A test-driver host holding hand-built lab A; the cwd is the scratch repo."""
    monkeypatch.chdir(repo)
    (tmp_path / "pool").mkdir()
    state = tmp_path / "state.xml"
    state.write_text(driver_state(str(tmp_path / "pool")))
    monkeypatch.setitem(OPERATOR, "uri", f"test://{state}")
    return f"test://{state}"


def plan_json(*args: str) -> dict:  # type: ignore[type-arg]
    result = run("plan", "env/adopted", "--provider", "libvirt", "--format", "json", *args)
    assert result.code in (0, 1, 2), result.err
    return json.loads(result.out) if result.out else {"conflicts": result.err}


def env_nodes(repo: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    import yaml

    data = yaml.safe_load((repo / "environments/adopted/env.yaml").read_text())
    return {n["name"]: n for n in data["nodes"]}


# -- import ---------------------------------------------------------------------------------


def test_import_describes_every_domain(host: str, repo: Path) -> None:
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    nodes = env_nodes(repo)
    assert list(nodes) == ["helper", "bootstrap", "master0", "master1", "master2",
                           "worker0", "worker1"]  # boot order, as the environment reads
    for name, (ip, mac, disk, pxe) in LAB.items():
        node = nodes[name]
        assert node["role"] == name.rstrip("012"), node
        assert (node["vcpu"], node["memory"], node["hypervisor"]) == (1, "256MiB", "hv1")
        assert node["nics"] == [{"network": "lan", "ip": ip, "mac": mac}]
        assert node["disks"] == ([{"name": "root", "size": "16MiB"}] if disk else [])
        assert node["boot"] == ("pxe" if pxe else "image")
    text = (repo / "environments/adopted/env.yaml").read_text()
    assert "baseDomain: example.com # not in libvirt" in text
    assert "libvirt: {mode: isolated, dhcp: true}" in text
    assert run("validate", "env/adopted").code == 0


def test_roles_only_where_names_say_so(host: str, repo: Path, tmp_path: Path) -> None:
    state = Path(host[len("test://"):])
    extra = domain_xml("worker0").replace("worker0", "infra1").replace(
        "52:54:00:a0:00:61", "52:54:00:a0:00:71")
    extra2 = extra.replace("infra1", "scratch").replace("52:54:00:a0:00:71",
                                                        "52:54:00:a0:00:72")
    state.write_text(state.read_text().replace("</node>", extra + extra2 + "</node>"))
    result = run("import", "libvirt", host, "--env", "adopted", "--role", "infra*=worker",
                 "--match", "[hbmwi]*")
    assert result.code == 0, result.err
    nodes = env_nodes(repo)
    assert nodes["infra1"]["role"] == "worker" and "scratch" not in nodes
    text = (repo / "environments/adopted/env.yaml").read_text()
    assert "not inferred from the name" not in text
    result = run("import", "libvirt", host, "--env", "other")
    assert result.code == 0, result.err
    other = (repo / "environments/other/env.yaml").read_text()
    assert other.count("role: worker  # not inferred from the name") == 2  # infra1, scratch


def test_bad_role_is_a_usage_error(host: str) -> None:
    assert run("import", "libvirt", host, "--env", "x", "--role", "a*=king").code == 64


@pytest.mark.parametrize(("old", "new", "message"), [
    ("<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
     "<source pool='default' volume='helper-root.qcow2'/>",
     "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
     "<source file='/srv/helper.qcow2'/>",
     "domains.helper.disk[0]: refused: a file disk (file=/srv/helper.qcow2): gen attaches "
     "pool volumes only"),
    ("<type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>",
     "<type arch='x86_64' machine='isapc'>hvm</type><boot dev='hd'/></os>",
     "domains.helper.os.machine: refused: machine isapc"),
    ("<type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>",
     "<type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>"
     "/usr/share/OVMF/OVMF_CODE.secboot.fd</loader><boot dev='hd'/></os>",
     "domains.helper.os.loader: refused: loader /usr/share/OVMF/OVMF_CODE.secboot.fd"),
])
def test_definitions_gen_cannot_reproduce_are_refused(host: str, repo: Path, old: str,
                                                      new: str, message: str) -> None:
    state = Path(host[len("test://"):])
    text = state.read_text()
    assert text.count(old) == 1, old
    state.write_text(text.replace(old, new))
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 1
    assert any(line.startswith(f"{host}: at {message}") for line in result.err.splitlines()), \
        result.err
    assert not (repo / "environments/adopted").exists()


def test_virt_install_style_lab_is_adopted_without_drift(host: str, repo: Path) -> None:
    """virt-install names volumes after the VM and picks q35 for BIOS guests: the import
    keeps both (`volume:`, `machine:`), so adopting changes nothing but the marker."""
    state = Path(host[len("test://"):])
    text = state.read_text().replace("machine='pc'", "machine='q35'")
    for name in ("helper", "bootstrap"):
        text = text.replace(f"{name}-root.qcow2", f"{name}.qcow2")
    state.write_text(text)
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    nodes = env_nodes(repo)
    assert nodes["helper"]["disks"] == [{"name": "root", "size": "16MiB",
                                         "volume": "helper.qcow2"}]
    assert {n["machine"] for n in nodes.values()} == {"q35"}
    plan = plan_json("--adopt")
    adopts = [a for a in plan["actions"] if a["op"] == "adopt" and a["kind"] == "domain"]
    assert len(adopts) == len(LAB) and plan["conflicts"] == []
    assert all([c["path"] for c in a["changes"]] == ["owner"] for a in adopts), adopts
    assert {a["kind"] for a in plan["actions"] if a["op"] != "adopt"} == {"pool"}


def test_two_disks_on_one_volume_are_refused(host: str, repo: Path) -> None:
    assert run("import", "libvirt", host, "--env", "adopted").code == 0
    result = run("set", "env/adopted", "nodes[bootstrap].disks[0].volume",
                 "helper-root.qcow2")
    assert result.code == 1
    assert "volume 'hv1/default/helper-root.qcow2' is already used at nodes[0].disks[0]" \
        in result.err, result.err


def test_import_merges_into_a_helpernode_import(host: str, repo: Path) -> None:
    """helper-node vars give addresses and the cluster; libvirt adds the VMs (by name)."""
    from test_import_helpernode import LAB_A_VARS

    (repo / "vars.yaml").write_text(LAB_A_VARS.replace('"Worker0"', '"worker0"'))
    assert run("import", "helpernode", "vars.yaml", "--env", "adopted").code == 0
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    text = (repo / "environments/adopted/env.yaml").read_text()
    assert "name: ocp4" in text and "# the playbook's exports" in text  # kept
    nodes = env_nodes(repo)
    assert nodes["master1"]["hypervisor"] == "hv1" and nodes["jumpbox"]["role"] == "storage"
    assert nodes["master1"]["nics"][0]["mac"] == LAB["master1"][1]


# -- adoption on the test driver ------------------------------------------------------------


def _domain_ids(uri: str) -> dict[str, tuple[int, str]]:
    conn = provider.open_connection(uri)
    return {d.name(): (d.ID(), d.UUIDString()) for d in conn.listAllDomains(0)}


def test_plan_shows_adoptions_and_converge_takes_them_over(host: str, repo: Path,
                                                           tmp_path: Path) -> None:
    assert run("import", "libvirt", host, "--env", "adopted").code == 0
    before = _domain_ids(host)
    plan = plan_json("--adopt")
    ops = {(a["op"], a["kind"], a["name"]) for a in plan["actions"]}
    adoptions = {("adopt", "network", "hv1/lan")} | {("adopt", "domain", f"hv1/{n}")
                                                      for n in LAB}
    # The test driver cannot mark a pool autostart in its state file; nothing else differs.
    assert ops - adoptions == {("update", "pool", "hv1/default")}
    assert plan["summary"]["adopt"] == 8 and plan["conflicts"] == []
    for action in plan["actions"]:
        if action["op"] == "adopt":
            assert action["changes"][0]["path"] == "owner"
            assert [c["path"] for c in action["changes"][1:]] in ([], ["autostart"])
    result = run("converge", "env/adopted", "--provider", "libvirt", "--adopt",
                 "--auto-approve", "--state-dir", str(tmp_path / "s"))
    assert result.code == 0, result.err
    # The test driver shows a running network's live definition only (no INACTIVE flag),
    # so the marker written to the persistent one stays invisible there until a restart;
    # the real libvirtd test below proves the network adopted and the re-plan empty.
    again = plan_json("--adopt")
    assert [(a["op"], a["name"]) for a in again["actions"]] == [("adopt", "hv1/lan")]
    assert _domain_ids(host) == before  # same ids (never restarted) and uuids
    conn = provider.open_connection(host)
    marker = ET.fromstring(conn.lookupByName("master0").XMLDesc(2)).find(  # inactive
        f"metadata/{{{GEN_NS}}}owner")
    assert marker is not None and marker.get("env") == "adopted"


def test_without_adopt_unmarked_objects_stay_conflicts(host: str, repo: Path) -> None:
    assert run("import", "libvirt", host, "--env", "adopted").code == 0
    result = run("plan", "env/adopted", "--provider", "libvirt")
    assert result.code == 1
    assert "owned by nobody (no gen marker)" in result.out + result.err
    assert "plan --adopt" in result.out + result.err


def test_another_environments_object_is_never_adopted(host: str, repo: Path) -> None:
    state = Path(host[len("test://"):])
    marked = domain_xml("worker1").replace(
        "<name>worker1</name>", f"<name>worker1</name><metadata><gen:owner xmlns:gen="
        f"'{GEN_NS}' env='prod' kind='domain' node='worker1' role='worker'/></metadata>")
    state.write_text(state.read_text().replace(domain_xml("worker1"), marked))
    assert run("import", "libvirt", host, "--env", "adopted").code == 0
    plan = plan_json("--adopt")
    assert ("adopt", "hv1/worker1") not in {(a["op"], a["name"]) for a in plan["actions"]}
    assert any("'worker1' exists but is owned by environment 'prod'" in c
               for c in plan["conflicts"])


def test_drift_is_listed_by_field_before_approval(host: str, repo: Path,
                                                  tmp_path: Path) -> None:
    assert run("import", "libvirt", host, "--env", "adopted").code == 0
    assert run("set", "env/adopted", "nodes[worker0].vcpu", "2").code == 0
    plan = plan_json("--adopt")
    worker0 = next(a for a in plan["actions"] if a["name"] == "hv1/worker0")
    assert worker0["op"] == "adopt"
    assert {"op": "change", "path": "vcpu", "old": "1", "new": "2"} in worker0["changes"]
    assert worker0["note"] == "takes effect at next boot"
    text = run("plan", "env/adopted", "--provider", "libvirt", "--adopt").out
    assert "<= libvirt domain hv1/worker0  (takes effect at next boot)" in text
    assert "~ vcpu: 1 -> 2" in text
    # drift that would replace the VM is a conflict, never an adoption
    assert run("set", "env/adopted", "nodes[master0].firmware", "uefi").code == 0
    plan = plan_json("--adopt")
    assert any("cannot adopt domain 'master0'" in c for c in plan["conflicts"])
    converge = run("converge", "env/adopted", "--provider", "libvirt", "--adopt",
                   "--auto-approve", "--state-dir", str(tmp_path / "s"))
    assert converge.code == 1


# -- a private real libvirtd ------------------------------------------------------------------


def virsh(uri: str, *args: str) -> str:
    proc = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _build_by_hand(uri: str, pool: Path, work: Path) -> None:
    """What a person did with virsh and virt-install's habits (q35 machines, volumes named
    after the VM): network, pool, volumes, domains; helper and bootstrap started (at most
    two VMs run on this machine)."""
    files = {"net.xml": network_xml(), "pool.xml": pool_xml(str(pool))}
    for name, (_, _, disk, _) in LAB.items():
        files[f"{name}.xml"] = domain_xml(name, virt_install=True)
        if disk:
            files[f"{name}-vol.xml"] = volume_xml(name, virt_install=True)
    for file, text in files.items():
        (work / file).write_text(text)
    virsh(uri, "net-define", str(work / "net.xml"))
    virsh(uri, "net-start", "lan")
    virsh(uri, "net-autostart", "lan")
    virsh(uri, "pool-define", str(work / "pool.xml"))
    virsh(uri, "pool-build", "default")
    virsh(uri, "pool-start", "default")
    virsh(uri, "pool-autostart", "default")
    for name, (_, _, disk, _) in LAB.items():
        if disk:
            virsh(uri, "vol-create", "default", str(work / f"{name}-vol.xml"))
        virsh(uri, "define", str(work / f"{name}.xml"))
    for name in ("helper", "bootstrap"):
        virsh(uri, "start", name)


def _running(uri: str, base: Path) -> dict[str, tuple[str, str]]:
    """name -> (domain id, qemu pid) of every running domain."""
    out = {}
    for name in virsh(uri, "list", "--name").split():
        pid = (base / "run" / "qemu" / f"{name}.pid").read_text().strip()
        out[name] = (virsh(uri, "domid", name).strip(), pid)
    return out


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    from reconcile_fixtures import private_libvirtd

    with private_libvirtd() as uri:
        yield uri


@pytest.fixture
def by_hand(libvirtd: str, repo: Path, tmp_path: Path) -> Iterator[str]:
    from reconcile_fixtures import wipe_libvirt

    _build_by_hand(libvirtd, tmp_path / "pool", tmp_path)
    yield libvirtd
    wipe_libvirt(libvirtd)


START = ("--start", "helper,bootstrap", "--provider", "libvirt")


def live(uri: str) -> tuple[str, ...]:
    """The import leaves the private libvirtd's socket out of env.yaml (an operator-only
    parameter): plan and converge get it the way an operator passes it."""
    return (*START, "--uri-override", f"hv1={uri}")


@pytest.mark.libvirtd
def test_hand_built_lab_is_adopted_without_restarting_a_vm(by_hand: str, repo: Path,
                                                           tmp_path: Path) -> None:
    uri = by_hand
    base: Path = uri.base  # type: ignore[attr-defined]
    before = _running(uri, base)
    assert set(before) == {"helper", "bootstrap"}

    imported = cli(repo, "import", "libvirt", uri, "--env", "adopted")
    assert imported.returncode == 0, imported.stderr
    rendered = cli(repo, "render", "env/adopted")
    assert rendered.returncode == 0, rendered.stderr
    plan = cli(repo, "plan", "env/adopted", *live(uri), "--adopt", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert {(a["op"], a["kind"], a["name"]) for a in actions} == {
        ("adopt", "network", "hv1/lan")} | {("adopt", "domain", f"hv1/{n}") for n in LAB}
    assert all([c["path"] for c in a["changes"]] == ["owner"] for a in actions), actions

    converge = cli(repo, "converge", "env/adopted", *live(uri), "--adopt", "--auto-approve",
                   "--state-dir", str(tmp_path / "state"))
    assert converge.returncode == 0, converge.stdout + converge.stderr
    again = cli(repo, "plan", "env/adopted", *live(uri), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    assert _running(uri, base) == before  # same domain ids, same qemu processes
    for name in LAB:
        owner = ET.fromstring(virsh(uri, "dumpxml", "--inactive", name)).find(
            f"metadata/{{{GEN_NS}}}owner")
        assert owner is not None and owner.get("env") == "adopted", name
    net = ET.fromstring(virsh(uri, "net-dumpxml", "--inactive", "lan"))
    assert net.find(f"metadata/{{{GEN_NS}}}owner") is not None


@pytest.mark.libvirtd
def test_drift_on_a_running_vm_is_adopted_for_next_boot(by_hand: str, repo: Path,
                                                        tmp_path: Path) -> None:
    uri = by_hand
    base: Path = uri.base  # type: ignore[attr-defined]
    before = _running(uri, base)
    assert cli(repo, "import", "libvirt", uri, "--env", "adopted").returncode == 0
    assert cli(repo, "set", "env/adopted", "nodes[helper].vcpu", "2").returncode == 0
    plan = cli(repo, "plan", "env/adopted", *live(uri), "--adopt")
    assert plan.returncode == 0, plan.stderr
    assert "<= libvirt domain hv1/helper  (takes effect at next boot)" in plan.stdout
    assert "~ vcpu: 1 -> 2" in plan.stdout
    converge = cli(repo, "converge", "env/adopted", *live(uri), "--adopt", "--auto-approve",
                   "--state-dir", str(tmp_path / "state"))
    assert converge.returncode == 0, converge.stdout + converge.stderr
    assert cli(repo, "plan", "env/adopted", *live(uri), "--detailed-exitcode").returncode == 0
    assert _running(uri, base) == before  # redefined for next boot, not restarted
    assert ET.fromstring(virsh(uri, "dumpxml", "--inactive", "helper")).findtext("vcpu") == "2"
    assert ET.fromstring(virsh(uri, "dumpxml", "helper")).findtext("vcpu") == "1"


def test_bridged_helpernode_lab_is_adopted(host: str, repo: Path, tmp_path: Path) -> None:
    """Lab A as the field notes build it: VMs plugged straight into the host bridge br0,
    the helper node's playbook vars holding addresses. Both imports into one environment;
    the plan adopts every VM (the NIC moves to a libvirt network on the same bridge at next
    boot), converge takes them over without a restart, and the re-plan is empty."""
    from test_import_helpernode import LAB_A_VARS

    state = Path(host[len("test://"):])
    text = state.read_text()
    text = text.replace("<interface type='network'>", "<interface type='bridge'>")
    text = text.replace("<source network='lan'/>", "<source bridge='br0'/>")
    state.write_text(text.replace(network_xml(), ""))
    (repo / "vars.yaml").write_text(LAB_A_VARS.replace('"Worker0"', '"worker0"'))
    assert run("import", "helpernode", "vars.yaml", "--env", "adopted").code == 0
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    assert "at bridges.br0: mapped: -> networks[lan] (already in the environment)" in result.out
    nodes = env_nodes(repo)
    assert nodes["worker1"]["nics"] == [{"network": "lan", "ip": "192.168.20.162",
                                         "mac": LAB["worker1"][1]}]
    before = _domain_ids(host)
    plan = plan_json("--adopt")
    ops = {(a["op"], a["kind"], a["name"]) for a in plan["actions"]}
    assert ops == {("create", "network", "hv1/lan"), ("update", "pool", "hv1/default")} | {
        ("adopt", "domain", f"hv1/{n}") for n in LAB}, ops
    master0 = next(a for a in plan["actions"] if a["name"] == "hv1/master0")
    assert [c["path"] for c in master0["changes"]][:1] == ["owner"]
    assert any(c["path"].startswith("interface") for c in master0["changes"]), master0
    assert master0["note"] == "takes effect at next boot"
    result = run("converge", "env/adopted", "--provider", "libvirt", "--adopt",
                 "--auto-approve", "--state-dir", str(tmp_path / "s"))
    assert result.code == 0, result.err
    again = run("plan", "env/adopted", "--provider", "libvirt", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert _domain_ids(host) == before


@pytest.mark.parametrize(("old", "new", "part"), [
    ("</interface>", "</interface><hostdev mode='subsystem' type='pci'><source><address "
     "domain='0' bus='1' slot='0' function='0'/></source></hostdev>", "devices/hostdev"),
    ("</interface>", "</interface><filesystem type='mount'><source dir='/srv/share'/>"
     "<target dir='share'/></filesystem>", "devices/filesystem"),
    ("<boot dev='hd'/>", "<kernel>/boot/vmlinuz</kernel><cmdline>console=ttyS0</cmdline>",
     "os/kernel"),
])
def test_devices_gen_cannot_render_are_reported_and_never_adopted(
        host: str, repo: Path, tmp_path: Path, old: str, new: str, part: str) -> None:
    """A passthrough device, a shared folder or direct kernel boot would vanish when the
    domain is redefined from the environment: the import says so, and adoption refuses."""
    state = Path(host[len("test://"):])
    plain = domain_xml("worker0")
    assert plain.count(old) == 1
    state.write_text(state.read_text().replace(plain, plain.replace(old, new)))
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    tag = part.replace("/", ".")
    lines = [line for line in result.out.splitlines() if f"domains.worker0.{tag}" in line]
    assert len(lines) == 1 and ": not supported: " in lines[0], result.out
    plan = plan_json("--adopt")
    assert ("adopt", "hv1/worker0") not in {(a["op"], a["name"]) for a in plan["actions"]}
    conflicts = [c for c in plan["conflicts"] if "'worker0'" in c]
    assert len(conflicts) == 1 and part in conflicts[0], plan["conflicts"]
    converge = run("converge", "env/adopted", "--provider", "libvirt", "--adopt",
                   "--auto-approve", "--state-dir", str(tmp_path / "s"))
    assert converge.code == 1
    live = provider.open_connection(host).lookupByName("worker0").XMLDesc(2)
    assert ET.fromstring(live).find(part) is not None


V6 = ("<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host id='0:4:7e:7d:f0:7d:a8:bc"
      "' name='master0' ip='fd00::10'/><range start='fd00::100' end='fd00::1ff'/></dhcp></ip>")


def test_an_ipv6_address_is_reported_and_the_ipv4_part_imported(host: str, repo: Path) -> None:
    state = Path(host[len("test://"):])
    state.write_text(state.read_text().replace("</dhcp></ip></network>",
                                               "</dhcp></ip>" + V6 + "</network>", 1))
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if "fd00::1" in line]
    assert lines == [f"{host}: at networks.lan.ip[fd00::1]: not supported: ipv6 address "
                     "fd00::1/64: gen renders IPv4 networks only; adopting the network drops "
                     "this address"], result.out
    assert env_nodes(repo)["master0"]["nics"][0]["ip"] == LAB["master0"][0]


def test_an_ipv6_only_network_is_refused_in_one_line(host: str, repo: Path) -> None:
    state = Path(host[len("test://"):])
    text = state.read_text()
    v4 = text[text.index("<ip address='192.168.20.1'"):text.index("</ip></network>") + 5]
    state.write_text(text.replace(v4, V6, 1))
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 1, result
    assert f"{host}: at networks.lan: refused: a routed/NAT/isolated network without an " \
           "IPv4 address" in result.err
    assert not (repo / "environments/adopted").exists()


def test_devices_libvirt_adds_by_itself_do_not_block_adoption(host: str, repo: Path) -> None:
    """What libvirt 9/10 adds to a domain defined without it (read back from a real
    libvirtd's dumpxml) is no reason to refuse an adoption."""
    state = Path(host[len("test://"):])
    plain = domain_xml("worker0")
    added = ("<controller type='usb' index='0' model='qemu-xhci'/><input type='mouse' "
             "bus='ps2'/><audio id='1' type='none'/><memballoon model='virtio'/></devices>")
    state.write_text(state.read_text().replace(plain, plain.replace("</devices>", added)))
    result = run("import", "libvirt", host, "--env", "adopted")
    assert result.code == 0, result.err
    assert "domains.worker0.devices" not in result.out
    plan = plan_json("--adopt")
    assert ("adopt", "hv1/worker0") in {(a["op"], a["name"]) for a in plan["actions"]}
    assert plan["conflicts"] == []
