"""OpenShift/OKD installer inputs: install-config.yaml and the manifests-dir patches.

Debian ships no `openshift-install`, so these are golden-style assertions on the parsed YAML
against the installer's documented fields for platform `none` (UPI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from generator.errors import UserError
from generator.pipeline import render_environment

ROOT = Path(__file__).resolve().parent.parent
BASE = "clusters/ocp4/openshift"


def parse(content: bytes) -> Any:
    return YAML(typ="safe", pure=True).load(content.decode())


def render_tree(repo: Path | None = None) -> dict[str, bytes]:
    return render_environment("env/lab", cwd=repo or ROOT).tree


def edit_env(repo: Path, old: str, new: str) -> None:
    path = repo / "environments" / "lab" / "env.yaml"
    text = path.read_text()
    assert old in text, f"scratch edit anchor {old!r} not found in env.yaml"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def lab_tree() -> dict[str, bytes]:
    return render_tree()


def test_install_config_for_lab_a(lab_tree: dict[str, bytes]) -> None:
    config = parse(lab_tree[f"{BASE}/install-config.yaml"])
    assert config["apiVersion"] == "v1"
    assert config["baseDomain"] == "example.com"
    assert config["metadata"] == {"name": "ocp4"}
    assert config["controlPlane"]["name"] == "master"
    assert config["controlPlane"]["replicas"] == 3
    assert [(c["name"], c["replicas"]) for c in config["compute"]] == [("worker", 0)]
    assert config["networking"] == {
        "clusterNetwork": [{"cidr": "10.254.0.0/16", "hostPrefix": 24}],
        "serviceNetwork": ["172.30.0.0/16"],
        "networkType": "OVNKubernetes",
        "machineNetwork": [{"cidr": "192.168.20.0/24"}],
    }
    assert config["platform"] == {"none": {}}


def test_secrets_are_markers(lab_tree: dict[str, bytes]) -> None:
    config = parse(lab_tree[f"{BASE}/install-config.yaml"])
    assert config["pullSecret"] == "@@gen-secret:pullSecret@@"
    assert config["sshKey"] == "@@gen-secret:sshAuthorizedKeys[0]@@"


def test_yaml_starts_like_the_installer_docs_and_is_deterministic(
        lab_tree: dict[str, bytes]) -> None:
    text = lab_tree[f"{BASE}/install-config.yaml"].decode()
    assert text.startswith("apiVersion: v1\nbaseDomain: example.com\n")
    assert text.endswith("\n") and "{{" not in text
    assert render_tree()[f"{BASE}/install-config.yaml"] == lab_tree[f"{BASE}/install-config.yaml"]


def test_scheduler_patch_keeps_masters_unschedulable(lab_tree: dict[str, bytes]) -> None:
    manifest = parse(lab_tree[f"{BASE}/manifests/cluster-scheduler-02-config.yml"])
    assert manifest["apiVersion"] == "config.openshift.io/v1"
    assert manifest["kind"] == "Scheduler"
    assert manifest["metadata"]["name"] == "cluster"
    assert manifest["spec"]["mastersSchedulable"] is False


def test_masters_schedulable_follows_the_blueprint(repo: Path) -> None:
    edit_env(repo, "  networkType: OVNKubernetes\n",
             "  networkType: OVNKubernetes\n  mastersSchedulable: true\n")
    manifest = parse(render_tree(repo)[f"{BASE}/manifests/cluster-scheduler-02-config.yml"])
    assert manifest["spec"]["mastersSchedulable"] is True


def test_control_plane_replicas_count_the_masters(repo: Path) -> None:
    edit_env(repo, "  - {name: master1, role: master, hypervisor: hv1, "
                   "nics: [{network: lan, ip: 192.168.20.152}]}\n", "")
    edit_env(repo, "  - {name: master2, role: master, hypervisor: hv1, "
                   "nics: [{network: lan, ip: 192.168.20.153}]}\n", "")
    config = parse(render_tree(repo)[f"{BASE}/install-config.yaml"])
    assert config["controlPlane"]["replicas"] == 1


def test_several_ssh_keys_become_one_marker_per_line(repo: Path) -> None:
    edit_env(repo, "    - {file: id_rsa.pub}\n",
             "    - {file: id_rsa.pub}\n    - {env: GEN_SECRET_SECOND_KEY}\n")
    config = parse(render_tree(repo)[f"{BASE}/install-config.yaml"])
    assert config["sshKey"].splitlines() == ["@@gen-secret:sshAuthorizedKeys[0]@@",
                                             "@@gen-secret:sshAuthorizedKeys[1]@@"]


def test_okd_without_pull_secret_gets_the_documented_fake(repo: Path) -> None:
    edit_env(repo, "  pullSecret: {env: GEN_SECRET_PULL}\n", "  flavour: okd\n")
    config = parse(render_tree(repo)[f"{BASE}/install-config.yaml"])
    assert config["pullSecret"] == '{"auths":{"fake":{"auth":"aWQ6cGFzcwo="}}}'


def test_openshift_without_pull_secret_fails_cleanly(repo: Path) -> None:
    edit_env(repo, "  pullSecret: {env: GEN_SECRET_PULL}\n", "")
    with pytest.raises(UserError) as caught:
        render_tree(repo)
    assert "pullSecret" in caught.value.lines()[0]
    result = subprocess.run([sys.executable, "-m", "generator", "render", "env/lab",
                             "--out", str(repo / "out")], cwd=repo, capture_output=True,
                            text=True, env={**os.environ, "GEN_DEBUG": ""}, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "pullSecret" in result.stderr


def test_kubeadm_lab_gets_no_installer_files() -> None:
    tree = render_environment("env/k8s-lab", cwd=ROOT).tree
    assert not [p for p in tree if "/openshift/" in p]
