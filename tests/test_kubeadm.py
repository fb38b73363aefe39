"""kubeadm family: lab B's init and join configs.

No kubeadm binary is installable here (Debian has no `kubeadm` package, PyPI none), so the
documents are checked against a small JSON Schema transcribed from the kubeadm v1beta3 /
v1beta4 and kubelet v1beta1 Go types (only the fields gen writes, unknown fields rejected,
like kubeadm's strict decoding), plus golden-style assertions for lab B.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml as pyyaml

from generator.environment import load_environment
from generator.families import Pins, kubeadm
from generator.model import Environment

ROOT = Path(__file__).resolve().parent.parent
BASE = "clusters/k8s/kubeadm"

_STR = {"type": "string"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_ENDPOINT = {"type": "object", "additionalProperties": False,
             "properties": {"advertiseAddress": {"format": "ipv4", "type": "string"},
                            "bindPort": _PORT}}
_ARGS_V1BETA3 = {"type": "object", "additionalProperties": _STR}
_ARGS_V1BETA4 = {"type": "array", "items": {
    "type": "object", "additionalProperties": False, "required": ["name", "value"],
    "properties": {"name": _STR, "value": _STR}}}


def _node_registration(args: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": _STR, "criSocket": {"pattern": "^unix:///", "type": "string"},
                           "kubeletExtraArgs": args, "taints": {"type": "array"}}}


def kubeadm_schema(version: str) -> dict:
    """InitConfiguration / ClusterConfiguration / JoinConfiguration / KubeletConfiguration."""
    args = _ARGS_V1BETA4 if version == "v1beta4" else _ARGS_V1BETA3
    api = {"const": f"kubeadm.k8s.io/{version}"}
    init = {"additionalProperties": False, "required": ["apiVersion", "kind"], "properties": {
        "apiVersion": api, "kind": {"const": "InitConfiguration"},
        "bootstrapTokens": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["token"],
            "properties": {"token": _STR, "description": _STR,
                           "ttl": {"pattern": "^[0-9hms]+$", "type": "string"},
                           "usages": {"type": "array", "items": {
                               "enum": ["signing", "authentication"]}},
                           "groups": {"type": "array", "items": {
                               "pattern": "^system:bootstrappers:", "type": "string"}}}}},
        "nodeRegistration": _node_registration(args), "localAPIEndpoint": _ENDPOINT,
        "certificateKey": _STR, "skipPhases": {"type": "array"}}}
    cluster = {"additionalProperties": False, "required": ["apiVersion", "kind"], "properties": {
        "apiVersion": api, "kind": {"const": "ClusterConfiguration"}, "clusterName": _STR,
        "kubernetesVersion": {"pattern": r"^v1\.[0-9]+\.[0-9]+$", "type": "string"},
        "controlPlaneEndpoint": {"pattern": r"^[0-9.]+:[0-9]+$", "type": "string"},
        "apiServer": {"type": "object", "additionalProperties": False, "properties": {
            "certSANs": {"type": "array", "items": _STR}}},
        "networking": {"type": "object", "additionalProperties": False, "properties": {
            "dnsDomain": _STR, "podSubnet": _STR, "serviceSubnet": _STR}}}}
    join = {"additionalProperties": False, "required": ["apiVersion", "kind", "discovery"],
            "properties": {
        "apiVersion": api, "kind": {"const": "JoinConfiguration"},
        "discovery": {"type": "object", "additionalProperties": False, "properties": {
            "bootstrapToken": {"type": "object", "additionalProperties": False,
                               "required": ["apiServerEndpoint", "token"], "properties": {
                "apiServerEndpoint": _STR, "token": _STR,
                "caCertHashes": {"type": "array", "items": _STR},
                "unsafeSkipCAVerification": {"type": "boolean"}}}}},
        "nodeRegistration": _node_registration(args),
        "controlPlane": {"type": "object", "additionalProperties": False, "properties": {
            "localAPIEndpoint": _ENDPOINT, "certificateKey": _STR}}}}
    kubelet = {"additionalProperties": False, "required": ["apiVersion", "kind"], "properties": {
        "apiVersion": {"const": "kubelet.config.k8s.io/v1beta1"},
        "kind": {"const": "KubeletConfiguration"},
        "cgroupDriver": {"enum": ["systemd", "cgroupfs"]},
        "containerLogMaxSize": {"pattern": "^[0-9]+(Ki|Mi|Gi)$", "type": "string"}}}
    return {"oneOf": [{"type": "object", **s} for s in (init, cluster, join, kubelet)]}


@pytest.fixture(scope="module")
def lab_b() -> Environment:
    return load_environment("env/k8s-lab", ROOT).model


def docs(content: bytes) -> list[dict]:
    return [d for d in pyyaml.safe_load_all(content) if d is not None]


def check(tree: dict[str, bytes], version: str) -> None:
    schema = kubeadm_schema(version)
    checker = jsonschema.FormatChecker()
    for content in tree.values():
        for doc in docs(content):
            jsonschema.validate(doc, schema, format_checker=checker)


@pytest.mark.skipif(shutil.which("kubeadm") is None,
                    reason="kubeadm is not installed here; the schema tests above stand in")
def test_kubeadm_validates_every_rendered_config(lab_b, tmp_path: Path) -> None:
    """Where kubeadm exists (>= 1.26), its own validator must accept each rendered file."""
    import subprocess

    for path, content in kubeadm.render(lab_b, Pins()).items():
        file = tmp_path / path.rsplit("/", 1)[1]
        file.write_bytes(content)
        result = subprocess.run(["kubeadm", "config", "validate", "--config", str(file)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_lab_b_files_and_schema(lab_b):
    tree = kubeadm.render(lab_b, Pins())
    assert sorted(tree) == [f"{BASE}/init.yaml", f"{BASE}/join-test-node1.yaml",
                            f"{BASE}/join-test-node2.yaml", f"{BASE}/join-test-node3.yaml"]
    check(tree, "v1beta3")


def test_schema_rejects_a_wrong_field(lab_b):
    doc = kubeadm.cluster_configuration(lab_b)
    doc["networking"]["podCIDR"] = "10.244.0.0/16"  # not a kubeadm field (podSubnet is)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, kubeadm_schema("v1beta3"))


def test_lab_b_init_configuration(lab_b):
    init, cluster, kubelet = docs(kubeadm.render(lab_b, Pins())[f"{BASE}/init.yaml"])
    assert init["kind"] == "InitConfiguration"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.111.169", "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == "test-master"
    assert init["bootstrapTokens"][0]["token"] == "@@gen-secret:kubeadm-token@@"
    assert "certificateKey" not in init  # one control plane: nothing to upload
    assert cluster["kubernetesVersion"] == "v1.30.14"
    assert cluster["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    # One control plane: `kubeadm init` reaches itself, as the field notes did, so it
    # depends on no other host; clients may still use HAProxy on test-storage1.
    assert cluster["controlPlaneEndpoint"] == "192.168.111.169:6443"
    assert cluster["apiServer"] == {"certSANs": ["192.168.111.177"]}
    assert cluster["networking"] == {"dnsDomain": "cluster.local",
                                     "podSubnet": "10.244.0.0/16",
                                     "serviceSubnet": "10.96.0.0/12"}
    assert kubelet["cgroupDriver"] == "systemd"


def test_lab_b_join_configuration_carries_markers_only(lab_b):
    tree = kubeadm.render(lab_b, Pins())
    (join,) = docs(tree[f"{BASE}/join-test-node2.yaml"])
    token = join["discovery"]["bootstrapToken"]
    assert token == {"apiServerEndpoint": "192.168.111.169:6443",
                     "token": "@@gen-secret:kubeadm-token@@",
                     "caCertHashes": ["@@gen-secret:kubeadm-ca-cert-hash@@"]}
    assert join["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.111.173"}
    assert "controlPlane" not in join
    assert b"sha256:" not in b"".join(tree.values())


def test_without_load_balancer_the_first_control_plane_is_the_endpoint(lab_b):
    env = dataclasses.replace(lab_b, services=dataclasses.replace(lab_b.services,
                                                                  haproxy=None))
    assert kubeadm.control_plane_endpoint(env) == "192.168.111.169:6443"


def test_three_control_planes_join_with_certificate_key(lab_b):
    workers = lab_b.nodes_with_role("worker")
    promoted = tuple(dataclasses.replace(n, role="master") if n in workers[:2] else n
                     for n in lab_b.nodes)
    env = dataclasses.replace(lab_b, nodes=promoted)
    tree = kubeadm.render(env, Pins())
    check(tree, "v1beta3")
    init, cluster = docs(tree[f"{BASE}/init.yaml"])[:2]
    assert init["certificateKey"] == "@@gen-secret:kubeadm-certificate-key@@"
    # Several control planes: only the load balancer survives one of them going down.
    assert cluster["controlPlaneEndpoint"] == "192.168.111.177:6443"
    (join,) = docs(tree[f"{BASE}/join-test-node1.yaml"])
    assert join["controlPlane"] == {
        "localAPIEndpoint": {"advertiseAddress": "192.168.111.172", "bindPort": 6443},
        "certificateKey": "@@gen-secret:kubeadm-certificate-key@@"}


def test_kubernetes_1_31_switches_to_v1beta4(lab_b):
    env = dataclasses.replace(lab_b, cluster=dataclasses.replace(
        lab_b.cluster, kubernetes_version="1.31.2"))
    tree = kubeadm.render(env, Pins())
    check(tree, "v1beta4")
    cluster = docs(tree[f"{BASE}/init.yaml"])[1]
    assert cluster["kubernetesVersion"] == "v1.31.2"
    (join,) = docs(tree[f"{BASE}/join-test-node1.yaml"])
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "192.168.111.172"}]


def test_openshift_clusters_get_no_kubeadm_files():
    lab_a = load_environment("env/lab", ROOT).model
    assert kubeadm.render(lab_a, Pins()) == {}
