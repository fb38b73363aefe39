"""kolla-aio (reference lab C): the rendered files pass the same real checks as the others."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import gen
from ruamel.yaml import YAML


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
    inventory = (base / "inventory" / "all-in-one").read_text()
    for group in ("control", "network", "compute", "monitoring", "storage", "deployment"):
        assert f"[{group}]" in inventory
    assert "aio ansible_host=192.168.30.10" in inventory


def test_passwords_are_secret_markers_only(kolla: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = _load(kolla / "clusters" / "openstack" / "kolla" / "passwords.yml")
    assert passwords and all(v == f"@@gen-secret:{k}@@" for k, v in passwords.items())


def test_user_data_passes_cloud_init_schema(kolla: Path) -> None:
    user_data = kolla / "clusters" / "openstack" / "cloud-init" / "aio" / "user-data"
    assert shutil.which("cloud-init"), "cloud-init (Debian package) is required"
    proc = subprocess.run(["cloud-init", "schema", "--config-file", str(user_data)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vgcreate cinder-volumes /dev/vdb" in user_data.read_text()


def test_network_config_has_two_nics(kolla: Path) -> None:
    config = _load(kolla / "clusters" / "openstack" / "cloud-init" / "aio" / "network-config")
    assert config["version"] == 2
    first, second = config["ethernets"]["nic0"], config["ethernets"]["nic1"]
    assert first["addresses"] == ["192.168.30.10/24"] and second["dhcp4"] is False


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
