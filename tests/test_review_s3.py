"""Review s3 findings: each test failed on the main this branch started from.

Environments are the reference labs (optionally with one extra block appended to their
env.yaml text); the checks are gen's own, with no mock of gen's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.environment import load_environment_dir
from generator.errors import InvalidInput, UserError
from generator.families import Pins
from generator.families.kubernetes import built_objects
from generator.model import Environment
from generator.reconcile.kubernetes import KubernetesProvider, object_secrets

ROOT = Path(__file__).resolve().parent.parent
K8S_LAB = ROOT / "environments" / "k8s-lab"
OWN_SECRET = "secrets:\n  app-token: {env: GEN_SECRET_TEST_APP_TOKEN}\n"


def _k8s_lab(extra: str = "") -> Environment:
    text = (K8S_LAB / "env.yaml").read_text() + extra
    return load_environment_dir(K8S_LAB, text).model


def _configmap(value: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "kube-system"}, "data": {"v": value}}


# --- 1. the kubernetes provider fills a marker only where its secret is declared for ------

@pytest.mark.parametrize("name, place", [
    ("kubeadm-token", "init.yaml"), ("sshAuthorizedKeys[0]", "install-config.yaml")])
def test_kubernetes_provider_refuses_secrets_placed_in_files(
        monkeypatch: pytest.MonkeyPatch, name: str, place: str) -> None:
    """gen's own secrets (join token, SSH keys, pull secret) go only into the files their
    renderers write: a Kubernetes object carrying their marker is refused, not filled."""
    monkeypatch.setenv("GEN_SECRET_TEST_APP_TOKEN", "app-token-value")
    provider = KubernetesProvider()
    provider.secrets, provider.placed = object_secrets(_k8s_lab(OWN_SECRET))
    with pytest.raises(UserError) as refused:
        provider._filled(_configmap(f"@@gen-secret:{name}@@"))
    assert f"secret '{name}', which gen fills only in" in refused.value.message
    assert place in refused.value.message
    # the operator's own secret still goes into objects
    assert provider._filled(_configmap("@@gen-secret:app-token@@"))["data"] == {
        "v": "app-token-value"}


def test_kubernetes_provider_undeclared_secret_message_kept() -> None:
    provider = KubernetesProvider()
    provider.secrets, provider.placed = object_secrets(_k8s_lab())
    with pytest.raises(UserError, match="which the environment does not declare"):
        provider._filled(_configmap("@@gen-secret:nobody@@"))


def test_cni_manifest_with_a_secret_marker_is_refused() -> None:
    """The CNI manifest is upstream text a pull request chooses: never a carrier of markers."""
    env = _k8s_lab(OWN_SECRET)
    assert env.kubernetes.cni_manifest is not None
    evil = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak, namespace: kube-system}\n"
            b"data: {value: '@@gen-secret:app-token@@'}\n")
    with pytest.raises(UserError) as refused:
        built_objects(env, Pins(manifests={env.kubernetes.cni_manifest.name: evil}))
    assert "CNI manifest" in refused.value.message and "secret marker" in refused.value.message
    assert "\n" not in refused.value.lines()[0]
    clean = evil.replace(b"@@gen-secret:app-token@@", b"plain")
    assert built_objects(env, Pins(manifests={env.kubernetes.cni_manifest.name: clean}))


# --- 2. NFS exports live under an export root --------------------------------------------

def _with_export(path: str) -> str:
    text = (K8S_LAB / "env.yaml").read_text()
    old = "      - path: /share_storage\n"
    assert old in text
    return text.replace(old, f"      - path: {path}\n", 1)


@pytest.mark.parametrize("path", [
    "/var/spool/cron", "/var/named", "/var/lib/tftpboot", "/var/lib/gen", "/var/log",
    "/home/alice", "/exportsX", "/var/nfsd"])
def test_export_outside_the_export_roots_is_refused(path: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_environment_dir(K8S_LAB, _with_export(path))
    (shown,) = [line for line in refused.value.lines() if not line.startswith("warning:")]
    assert shown.startswith("environments/k8s-lab/env.yaml:48:15: at services.nfs.exports[0].path:")
    assert f"export path '{path}' is not a plain path under an export root" in shown


@pytest.mark.parametrize("path", ["/share_storage", "/exports/registry", "/srv/nfs/a",
                                  "/data", "/var/nfs/k8s"])
def test_export_under_an_export_root_is_accepted(path: str) -> None:
    assert load_environment_dir(K8S_LAB, _with_export(path)).model.services.nfs is not None


def test_files_provider_refuses_a_manifest_export_outside_the_roots() -> None:
    """Defence in depth: a rendered manifest naming /var/spool/cron is refused at converge."""
    import json

    from generator.reconcile.files import _export_directories

    manifest = {"exportDirectories": [{"path": "/var/spool/cron", "owner": "nobody",
                                       "group": "nogroup", "mode": "0777"}]}
    with pytest.raises(UserError, match="is not a plain directory outside the system trees"):
        _export_directories({"manifest.json": json.dumps(manifest).encode()})


@pytest.mark.parametrize("mode", ["'4755'", "'6777'"])
def test_setuid_export_directory_mode_is_refused(mode: str) -> None:
    text = _with_export(f"/share_storage\n        mode: {mode}")
    with pytest.raises(InvalidInput) as refused:
        load_environment_dir(K8S_LAB, text)
    assert "is not a directory mode" in "\n".join(refused.value.lines())


def test_setgid_export_directory_mode_stays_accepted() -> None:
    """k8s-lab's shared directory is 2775 (new files keep the group): still fine."""
    text = _with_export("/share_storage\n        mode: '2775'")
    assert load_environment_dir(K8S_LAB, text).model.services.nfs is not None


# --- 3. a file:// URL may not climb out of the environment's folder -----------------------

@pytest.mark.parametrize("url", ["file://../lab/env.yaml", "file://img/../../lab/env.yaml",
                                 "file://.."])
def test_file_url_with_dotdot_is_refused_at_validate(url: str) -> None:
    text = (K8S_LAB / "env.yaml").read_text()
    old = "      url: https://cloud.debian.org/images/cloud/bookworm/latest/"
    assert old in text
    text = text.replace(old + "debian-12-genericcloud-amd64.qcow2", f"      url: '{url}'", 1)
    with pytest.raises(InvalidInput) as refused:
        load_environment_dir(K8S_LAB, text)
    (shown,) = [line for line in refused.value.lines() if not line.startswith("warning:")]
    assert "at artifacts.os.debian-12-genericcloud.url:" in shown
    assert "must stay inside its folder (no '..'" in shown


def test_file_url_with_dots_in_a_name_stays_accepted() -> None:
    text = (K8S_LAB / "env.yaml").read_text().replace(
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
        "file://images/debian..12.qcow2", 1)
    assert load_environment_dir(K8S_LAB, text).model is not None


# --- 4. application objects may not be gen's own objects -----------------------------------

APP = "    - name: test-was\n      image: tomcat\n"


@pytest.mark.parametrize("name, image, clash", [
    ("docker-registry", "tomcat", "makes Deployment default/docker-registry, which gen's registry"),
    ("web", "docker-registry", "makes Service default/svc-docker-registry, which gen's registry"),
])
def test_app_objects_clashing_with_gens_own_are_refused(name: str, image: str,
                                                        clash: str) -> None:
    text = (K8S_LAB / "env.yaml").read_text()
    assert APP in text
    text = text.replace(APP, f"    - name: {name}\n      image: {image}\n", 1)
    with pytest.raises(InvalidInput) as refused:
        load_environment_dir(K8S_LAB, text)
    (shown,) = [line for line in refused.value.lines() if not line.startswith("warning:")]
    assert "at kubernetes.apps[0].name:" in shown
    assert f"kubernetes app '{name}' " + clash in shown, shown


# --- 5. a node's static address in the DHCP pool is named (a warning) --------------------

LAB = ROOT / "environments" / "lab"


def _lab_with_pool(start: str, end: str) -> str:
    text = (LAB / "env.yaml").read_text()
    assert "services:\n" in text
    return text.replace("services:\n", f"services:\n  dhcp:\n    pool: {{start: {start}, "
                        f"end: {end}}}\n", 1)


def _pool_warnings(start: str, end: str) -> list[str]:
    loaded = load_environment_dir(LAB, _lab_with_pool(start, end))
    return [w.render() for w in loaded.warnings if "DHCP pool" in w.message]


def test_node_address_inside_the_dhcp_pool_is_a_warning() -> None:
    # a warning, not a refusal: helper-node labs reserve node addresses inside the pool
    warned = _pool_warnings("192.168.20.140", "192.168.20.160")
    assert warned and all("is inside the DHCP pool 192.168.20.140-192.168.20.160" in line
                          for line in warned), warned
    assert any("at nodes[2].nics[0].ip: node 'master0' address 192.168.20.151" in line
               for line in warned), warned


def test_node_addresses_outside_the_dhcp_pool_are_accepted() -> None:
    assert _pool_warnings("192.168.20.200", "192.168.20.220") == []


# --- 6. one boot file may not be the directory of the other ---------------------------------

@pytest.mark.parametrize("bios, uefi, key, shown", [
    ("boot", "boot/grubx64.efi", "uefi", "boot file 'boot/grubx64.efi' lies below boot file"),
    ("efi/x/pxelinux.0", "efi/x", "bios", "boot file 'efi/x/pxelinux.0' lies below boot file"),
])
def test_nested_boot_files_are_refused(bios: str, uefi: str, key: str, shown: str) -> None:
    text = _lab_with_pool("192.168.20.200", "192.168.20.220").replace(
        "  dhcp:\n", f"  dhcp:\n    bootFiles: {{bios: {bios}, uefi: {uefi}}}\n", 1)
    with pytest.raises(InvalidInput) as refused:
        load_environment_dir(LAB, text)
    (error,) = [line for line in refused.value.lines() if not line.startswith("warning:")]
    assert f"at services.dhcp.bootFiles.{key}: {shown}" in error, error


def test_sibling_boot_files_are_accepted() -> None:
    text = _lab_with_pool("192.168.20.200", "192.168.20.220").replace(
        "  dhcp:\n", "  dhcp:\n    bootFiles: {bios: boot/pxelinux.0, uefi: boot/grubx64.efi}\n", 1)
    assert load_environment_dir(LAB, text).model
