"""kolla-aio (reference lab C), measured against kolla-ansible itself.

kolla-ansible of the release the blueprint pins is installed from PyPI in the test
environment (pyproject's [test] extra); its own files are the oracle, never a list typed
here:
- `ansible-inventory --graph` of gen's inventory holds every group of kolla's all-in-one;
- `ansible-playbook --list-hosts site.yml` matches a host for every play that matches one
  with kolla's own all-in-one, with kolla's runtime grouping (the `group_by` of its first
  play: one `enable_<service>_True` group per enabled service) emulated by an extra
  inventory that puts every host in each such group, for both inventories alike. No play
  runs: --list-hosts only parses;
- `kolla-genpwd` on gen's passwords.yml fills every key gen left empty and changes none of
  the keys the environment supplies.
cloud-init's own renderers (`cloud-init devel net-convert` to ENI, networkd and netplan)
accept every rendered network-config of the labs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml as pyyaml
from clirun import gen
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = ROOT / "blueprints" / "kolla-aio" / "blueprint.yaml"
# The code under test is this checkout's, also where a test clears the environment.
PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


@pytest.fixture
def kolla(repo: Path) -> Path:
    answers = repo / "answers.yaml"
    answers.write_text("subnet: 192.168.30.0/24\ninternal_vip_host: 250\n")
    assert gen("new", "aio", "--blueprint", "kolla-aio", "--answers", str(answers),
               "--no-lock", cwd=repo).code == 0
    result = gen("render", "env/aio", cwd=repo)
    assert result.code == 0, result.err
    return repo / "rendered" / "aio"


def _load(path: Path) -> object:
    return YAML(typ="safe", pure=True).load(path.read_text())


def test_globals_and_inventory(kolla: Path) -> None:
    base = kolla / "clusters" / "openstack" / "kolla"
    config = _load(base / "globals.yml")
    assert config["kolla_internal_vip_address"] == "192.168.30.250"
    assert config["enable_haproxy"] == "yes"
    assert config["cinder_volume_group"] == "cinder-volumes"
    assert config["openstack_release"] == pinned()["openstackRelease"]
    inventory = (base / "inventory" / "all-in-one").read_text()
    assert "aio ansible_host=192.168.30.10 ansible_user=kolla ansible_become=true" in inventory


def test_passwords_hold_no_secret_values(kolla: Path) -> None:
    passwords = _load(kolla / "clusters" / "openstack" / "kolla" / "passwords.yml")
    assert isinstance(passwords, dict)
    supplied = {k: v for k, v in passwords.items() if isinstance(v, str)}
    assert supplied == {k: f"@@gen-secret:{k}@@" for k in
                        ("database_password", "keystone_admin_password", "rabbitmq_password")}
    others = [v for k, v in passwords.items() if k not in supplied]
    assert all(v is None or v == {"private_key": None, "public_key": None} for v in others)


# --- kolla-ansible itself ------------------------------------------------------------------

@cache
def pinned() -> dict:
    """The blueprint's kolla-ansible data (openstack.kollaAnsible)."""
    data = pyyaml.safe_load(BLUEPRINT.read_text())
    return data["defaults"]["openstack"]["kollaAnsible"]


@cache
def kolla_share() -> Path:
    """kolla-ansible's installed data (ansible/, etc_examples/), of the pinned version."""
    genpwd = shutil.which("kolla-genpwd")
    assert genpwd, "kolla-ansible is missing: pip install -e '.[test]'"
    prefix = Path(genpwd).parent.parent
    share = prefix / "share" / "kolla-ansible"
    assert (share / "ansible" / "site.yml").is_file(), share
    # The version from the dist-info beside the tools (a venv or /usr/local alike).
    found = sorted(prefix.glob("lib/python3*/site-packages/kolla_ansible-*.dist-info"))
    assert found, f"no kolla_ansible dist-info under {prefix}"
    version = found[-1].name.removeprefix("kolla_ansible-").removesuffix(".dist-info")
    assert version == pinned()["version"], (
        f"kolla-ansible {version} installed, the blueprint pins {pinned()['version']}")
    return share


def ansible(tool: str, *args: str, cwd: Path) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} missing (kolla-ansible's ansible-core)"
    proc = subprocess.run([found, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={"PATH": str(Path(found).parent) + ":/usr/bin:/bin",
                                            "ANSIBLE_LOCAL_TEMP": str(cwd / "tmp"),
                                            "HOME": str(cwd)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def graph_groups(inventory: Path, tmp_path: Path) -> set[str]:
    out = ansible("ansible-inventory", "-i", str(inventory), "--graph", cwd=tmp_path)
    return set(re.findall(r"@([^:\s]+):", out)) - {"all", "ungrouped"}


def test_inventory_has_every_group_of_kollas_all_in_one(kolla: Path, tmp_path: Path) -> None:
    ours = graph_groups(kolla / "clusters/openstack/kolla/inventory/all-in-one", tmp_path)
    theirs = graph_groups(kolla_share() / "ansible/inventory/all-in-one", tmp_path)
    assert len(theirs) > 150
    assert theirs - ours == set()
    assert ours - theirs == set()


def plays(inventory: Path, tmp_path: Path) -> list[tuple[str, int]]:
    """(play pattern, matched host count) of site.yml, runtime groups emulated."""
    site = kolla_share() / "ansible" / "site.yml"
    first = ansible("ansible-playbook", "-i", str(inventory), "--list-hosts", str(site),
                    cwd=tmp_path)
    runtime = sorted(set(re.findall(r"&?(enable_\w+_True)", first)))
    hosts = set(re.findall(r"^\s{6}(\S+)$", first, re.M))
    extra = tmp_path / f"runtime-{inventory.parent.name}.ini"
    extra.write_text("".join(f"[{g}]\n" + "".join(f"{h}\n" for h in sorted(hosts)) + "\n"
                             for g in runtime))
    out = ansible("ansible-playbook", "-i", str(inventory), "-i", str(extra), "--list-hosts",
                  str(site), cwd=tmp_path)
    return [(m.group(1), int(m.group(2))) for m in re.finditer(
        r"^  play #\d+ \((.*)\): .*\n\s+pattern: .*\n\s+hosts \((\d+)\):", out, re.M)]


def test_every_play_of_site_yml_matches_a_host(kolla: Path, tmp_path: Path) -> None:
    theirs = plays(kolla_share() / "ansible/inventory/all-in-one", tmp_path)
    ours = plays(kolla / "clusters/openstack/kolla/inventory/all-in-one", tmp_path)
    assert [p for p, _ in ours] == [p for p, _ in theirs]
    needed = [p for p, n in theirs if n > 0]
    assert len(needed) > 60, theirs
    assert [p for p, n in ours if n == 0 and p in needed] == []


def genpwd(source: Path, work: Path) -> dict:
    """kolla-genpwd run on a copy of `source`; the result, loaded."""
    shutil.copyfile(source, work)
    tool = shutil.which("kolla-genpwd")
    assert tool, "kolla-genpwd missing"
    subprocess.run([tool, "-p", str(work)], check=True, capture_output=True, timeout=300)
    return dict(pyyaml.safe_load(work.read_text()))


def test_kolla_genpwd_fills_only_what_gen_left_empty(kolla: Path, tmp_path: Path) -> None:
    """Every key kolla knows, in its order; kolla-genpwd fills on gen's file exactly what it
    fills on kolla's own example, and leaves the environment's secret markers alone."""
    rendered = kolla / "clusters/openstack/kolla/passwords.yml"
    example = kolla_share() / "etc_examples/kolla/passwords.yml"
    before = pyyaml.safe_load(rendered.read_text())
    assert list(before) == list(pyyaml.safe_load(example.read_text()))
    after = genpwd(rendered, tmp_path / "ours.yml")
    reference = genpwd(example, tmp_path / "theirs.yml")
    assert set(after) == set(before)
    for key, value in before.items():
        if isinstance(value, str):  # supplied by the environment: a marker, kept as it is
            assert after[key] == value, key
        else:
            assert bool(after[key]) == bool(reference[key]), key
    assert sum(1 for v in after.values() if v) >= len(after) - 1


def test_user_data_passes_cloud_init_schema(kolla: Path) -> None:
    user_data = kolla / "clusters" / "openstack" / "cloud-init" / "aio" / "user-data"
    assert shutil.which("cloud-init"), "cloud-init (Debian package) is required"
    proc = subprocess.run(["cloud-init", "schema", "--config-file", str(user_data)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vgcreate cinder-volumes /dev/vdb" in user_data.read_text()


def net_convert(config: Path, out: Path, renderer: str) -> dict[str, str]:
    """cloud-init's own renderer applied to a network-config: output file -> content."""
    tool = shutil.which("cloud-init")
    assert tool, "cloud-init (Debian package) is required"
    proc = subprocess.run([tool, "devel", "net-convert", "-p", str(config), "-k", "yaml",
                           "-d", str(out), "-D", "debian", "-O", renderer],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{config} via {renderer}: {proc.stdout}{proc.stderr}"
    return {str(f.relative_to(out)): f.read_text() for f in out.rglob("*") if f.is_file()}


def lab_network_configs(kolla: Path) -> list[Path]:
    """Every network-config the labs render: lab C's (scaffolded) and lab B's; lab A's
    nodes get Ignition, not cloud-init."""
    result = gen("render", "env/k8s-lab", "--out", str(kolla.parent / "k8s-lab"), cwd=ROOT)
    assert result.code == 0, result.err
    configs = sorted(kolla.rglob("network-config")) + sorted(
        (kolla.parent / "k8s-lab").rglob("network-config"))
    assert len(configs) == 6, configs
    return configs


@pytest.mark.parametrize("renderer", ["eni", "networkd", "netplan"])
def test_every_network_config_passes_cloud_inits_renderers(kolla: Path, tmp_path: Path,
                                                           renderer: str) -> None:
    for index, config in enumerate(lab_network_configs(kolla)):
        out = net_convert(config, tmp_path / f"{renderer}-{index}", renderer)
        assert out, f"{config}: {renderer} wrote nothing"


def test_aio_nics_come_up_with_the_external_one_unaddressed(kolla: Path, tmp_path: Path) -> None:
    """ens3 static with its default route, ens4 (Neutron's) up with no address, by each
    renderer's own output."""
    config = kolla / "clusters/openstack/cloud-init/aio/network-config"
    eni = net_convert(config, tmp_path / "eni", "eni")["etc/network/interfaces.d/50-cloud-init"]
    assert "auto ens3\niface ens3 inet static" in eni and "gateway 192.168.30.1" in eni
    assert "auto ens4\niface ens4 inet manual" in eni
    networkd = net_convert(config, tmp_path / "networkd", "networkd")
    ens4 = networkd["etc/systemd/network/10-cloud-init-ens4.network"]
    assert "Name=ens4" in ens4 and "[Address]" not in ens4
    assert "Gateway=192.168.30.1" in networkd["etc/systemd/network/10-cloud-init-ens3.network"]
    netplan = pyyaml.safe_load(net_convert(config, tmp_path / "netplan", "netplan")[
        "etc/netplan/50-cloud-init.yaml"])
    ethernets = netplan["network"]["ethernets"]
    assert set(ethernets) == {"ens3", "ens4"} and "addresses" not in ethernets["ens4"]


def test_user_data_keeps_the_host_name_on_the_management_address(kolla: Path) -> None:
    """kolla's RabbitMQ precheck: the host name must not resolve to 127.0.1.1."""
    data = _load(kolla / "clusters/openstack/cloud-init/aio/user-data")
    assert isinstance(data, dict) and data["manage_etc_hosts"] is False
    hosts = next(f for f in data["write_files"] if f["path"] == "/etc/hosts")["content"]
    assert "192.168.30.10 aio.openstack.example.com aio" in hosts and "127.0.1.1" not in hosts
    kolla_user = next(u for u in data["users"] if isinstance(u, dict))
    assert kolla_user["name"] == "kolla" and kolla_user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"


def test_seed_iso_is_attached_to_the_aio_vm(kolla: Path) -> None:
    seed = json.loads((kolla / "clusters/openstack/cloud-init/aio/seed.json").read_text())
    assert seed["volume"] == "aio-seed.iso" and seed["label"] == "cidata"
    domain = (kolla / "hypervisors/hv1/domains/aio.xml").read_text()
    assert 'device="cdrom"' in domain and 'volume="aio-seed.iso"' in domain


def test_libvirt_xml_validates_with_two_disks_and_nics(kolla: Path) -> None:
    assert shutil.which("virt-xml-validate"), "virt-xml-validate (libvirt-clients) is required"
    xmls = sorted((kolla / "hypervisors").rglob("*.xml"))
    assert any(p.name == "aio-cinder.qcow2.xml" for p in xmls)
    for path in xmls:
        proc = subprocess.run(["virt-xml-validate", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    domain = (kolla / "hypervisors" / "hv1" / "domains" / "aio.xml").read_text()
    assert domain.count("<interface ") == 2 and 'dev="vdb"' in domain


def test_vip_on_a_node_address_is_refused(repo: Path) -> None:
    answers = repo / "answers.yaml"
    answers.write_text("subnet: 192.168.30.0/24\ninternal_vip_host: 10\n")
    result = gen("new", "aio", "--blueprint", "kolla-aio", "--answers", str(answers), cwd=repo)
    assert result.code == 1
    assert result.err.strip() == ("answer internal_vip_host: 192.168.30.10 is already a "
                                  "node's address (pick a host number no node uses)")
    assert not (repo / "environments" / "aio").exists()


# --- converge onto the deploy host --------------------------------------------------------

def test_converge_puts_the_kolla_files_on_the_host(kolla: Path, tmp_path: Path) -> None:
    """`gen converge --provider files` installs globals.yml, the inventory and the passwords
    into /etc/kolla (mode 0600), where kolla's own mergepwd and genpwd fill passwords.yml;
    a second plan has nothing to do and a second converge keeps the generated values."""
    import os

    repo = kolla.parent.parent
    root = tmp_path / "aio-root"
    tools = str(Path(shutil.which("kolla-genpwd") or "kolla-genpwd-missing").parent)
    env = {**os.environ, "PATH": f"{os.environ['PATH']}:{tools}",
           "GEN_SECRET_KOLLA_KEYSTONE_ADMIN_PASSWORD": "ks-admin-secret",
           "GEN_SECRET_KOLLA_DATABASE_PASSWORD": "db-secret",
           "GEN_SECRET_KOLLA_RABBITMQ_PASSWORD": "rmq-secret"}
    flags = ["--provider", "files", "--files-target", f"aio={root}", "--files-exec", "aio=local",
             "--state-dir", str(tmp_path / "state")]
    first = gen("converge", "env/aio", "--auto-approve", *flags, cwd=repo, env=env)
    assert first.code == 0, first.out + first.err
    etc = root / "etc/kolla"
    assert (etc / "globals.yml").read_bytes() == (
        kolla / "clusters/openstack/kolla/globals.yml").read_bytes()
    assert (etc / "inventory/all-in-one").is_file()
    for name in ("passwords.yml", "passwords.gen.yml", "globals.yml"):
        assert (etc / name).stat().st_mode & 0o777 == 0o600, name
    passwords = pyyaml.safe_load((etc / "passwords.yml").read_text())
    assert passwords["database_password"] == "db-secret"
    assert passwords["keystone_admin_password"] == "ks-admin-secret"
    assert passwords["rabbitmq_password"] == "rmq-secret"
    assert passwords["memcache_secret_key"] and passwords["nova_keystone_password"]
    assert "ks-admin-secret" not in first.out + first.err
    filled = (etc / "passwords.yml").read_bytes()

    plan = gen("plan", "env/aio", "--detailed-exitcode", *flags[:-2], cwd=repo, env=env)
    assert plan.code == 0, plan.out + plan.err
    (etc / "passwords.gen.yml").write_text("tampered: true\n")
    again = gen("converge", "env/aio", "--auto-approve", *flags, cwd=repo, env=env)
    assert again.code == 0, again.out + again.err
    assert (etc / "passwords.yml").read_bytes() == filled  # generated values kept


def test_lock_pins_the_kolla_ansible_release(kolla: Path) -> None:
    repo = kolla.parent.parent
    result = gen("lock", "--offline", "env/aio", cwd=repo,
                 env={"GEN_STORE": str(repo / "store"), "HOME": str(repo),
                      "PATH": "/usr/bin:/bin", **PYTHONPATH})
    assert result.code == 0, result.err
    entry = json.loads((repo / "lock/aio.lock").read_text())["inputs"]["tool/kolla-ansible"]
    assert entry["locked"] == {"version": pinned()["version"], "url": pinned()["url"],
                               "sha256": pinned()["sha256"]}
    assert entry["locked"]["url"].endswith(f"kolla_ansible-{pinned()['version']}-py3-none-any.whl")


def test_release_without_matching_kolla_data_is_refused(kolla: Path) -> None:
    repo = kolla.parent.parent
    env_file = repo / "environments/aio/env.yaml"
    env_file.write_text(env_file.read_text().replace(
        "openstack:\n", 'openstack:\n  release: "2025.1"\n'))
    result = gen("render", "env/aio", cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines()[-1].endswith(
        "at openstack.release: release 2025.1 does not match kolla-ansible 18.8.0, which "
        "deploys 2024.1 (use release 2024.1 or the blueprint data of the kolla-ansible "
        "release that deploys it)")
