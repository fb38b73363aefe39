"""kubernetes provider: lab B's rendered manifests converged against the kmock emulator.

kmock (PyPI) runs a KubernetesEmulator as a real HTTP server on 127.0.0.1 in a thread; the
provider talks to it through the `kubernetes` client and a generated kubeconfig, exactly as
it talks to an API server. kmock stores objects and merges PATCH bodies as JSON; it has no
server-side apply, no defaulting, no managedFields, no label selectors and no URL route for
Namespace objects themselves. The harness fills only the last gap (it routes
`/api/v1/namespaces[/name]` to a `namespaces` resource, as the real server's router does);
everything else the provider must cope with on its own. What these tests cannot prove is
listed in docs/testing.md (## Kubernetes provider).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from generator.errors import DestructiveNotApproved, GenError, UserError
from generator.families import Pins, render_all
from generator.families.kubernetes import built_objects, owner_labels
from generator.families.yamlout import dump_all, dump_one
from generator.model import Environment
from generator.pipeline import render_environment
from generator.reconcile import kubernetes as k
from generator.reconcile.converge import Journal, apply_plan
from generator.reconcile.essence import DiffItem, kubernetes_diff
from generator.reconcile.output import format_text, to_json
from generator.reconcile.plan import Desired, Plan, Settings, build_plan, check_approval
from generator.reconcile.providers import KubernetesOptions, by_name

ROOT = Path(__file__).resolve().parent.parent
BASE = "clusters/k8s/kubernetes"


# --- the emulator ----------------------------------------------------------------------------

def _route_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """kmock's URL parser reads `/api/v1/namespaces/NAME` as a namespace with no resource
    (and fails on `/api/v1/namespaces`); route both to the `namespaces` resource, as the real
    API server's router does. The only change made to the emulator."""
    from kmock._internal import parsing

    original = parsing.parse_path

    def parse_path(path: str) -> Any:
        match = re.fullmatch(r"/api/v1/namespaces(?:/([^/]+))?/?", path)
        if match is None:
            return original(path)
        return parsing.ParsedPath(group="", version="v1", plural="namespaces",
                                  name=match.group(1))

    monkeypatch.setattr(parsing, "parse_path", parse_path)


@dataclass
class Kube:
    """A running emulator: its URL, a kubeconfig for it, and raw access for making drift."""

    emulator: Any
    port: int
    kubeconfig: Path
    api: k.Api

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/merge-patch+json") -> Any:
        return self.api.request(method, path, body=body, content_type=content_type)

    def requests(self) -> list[Any]:
        return list(self.emulator)


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}]}))
    return path


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kube]:
    from kmock import KubernetesEmulator, Server

    _route_namespaces(monkeypatch)

    box: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:
        async def main() -> None:
            emulator = KubernetesEmulator()
            emulator.resources.load_bundled()
            async with emulator, Server(emulator, host="127.0.0.1") as server:
                box.update(emulator=emulator, port=server.port, loop=asyncio.get_running_loop(),
                           stop=asyncio.Event())
                ready.set()
                await box["stop"].wait()
        try:
            asyncio.run(main())
        finally:
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20) and "port" in box, "kmock did not start"
    config = _kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{box['port']}")
    try:
        yield Kube(box["emulator"], box["port"], config, k.connect(str(config), None))
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(20)
        assert not thread.is_alive(), "kmock did not stop"


# --- helpers ---------------------------------------------------------------------------------

def desired_of(env: Environment, pins: Pins | None = None) -> Desired:
    """What `gen plan` plans from: the rendered tree and the objects built with it."""
    pins = pins or Pins()
    return Desired(env, render_all(env, pins), "test", False, built_objects(env, pins))


def lab_b() -> Desired:
    return desired_of(render_environment("env/k8s-lab", cwd=ROOT).loaded.model)


def handed_over(desired: Desired, objs: list[dict[str, Any]]) -> Desired:
    """`desired` planning `objs` instead of lab B's objects: a kustomize tree listing them,
    and the same objects handed to the reconciler."""
    tree = {f"{BASE}/objects.yaml": dump_all(objs),
            f"{BASE}/kustomization.yaml": dump_one({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": ["objects.yaml"]})}
    return replace(desired, tree=tree, objects={BASE.split("/")[1]: objs})


def settings(kube_config: Path | str, **extra: Any) -> Settings:
    options = {"kubeconfig": str(kube_config), **extra.pop("options", {})}
    return Settings(providers=("kubernetes",), options=(KubernetesOptions(**options),), **extra)


def converge(desired: Desired, config: Settings, state: Path) -> Plan:
    plan = build_plan(desired, config)
    check_approval(plan, config)
    apply_plan(plan, Journal(state, desired.env.name))
    return plan


def names(plan: Plan) -> list[tuple[str, str, str]]:
    return [(a.op, a.kind, a.name) for a in plan.actions]


def ssa_requests(kube: Kube) -> list[Any]:
    return [r for r in kube.requests() if r.method.value == "PATCH"
            and r.headers.get("Content-Type") == "application/apply-patch+yaml"]


def server_defaults(kube: Kube) -> None:
    """Make stored objects look like a real API server's: metadata it owns, defaults in
    lists and maps, status, other managers' labels, kubectl's annotation."""
    paths = {
        "/apis/apps/v1/namespaces/default/deployments/test-was": _deployment_defaults,
        "/apis/apps/v1/namespaces/ingress-nginx/deployments/ingress-nginx-controller":
            _deployment_defaults,
        "/api/v1/namespaces/default/services/svc-tomcat": _service_defaults,
        "/api/v1/namespaces/ingress-nginx": _namespace_defaults,
    }
    for path, change in paths.items():
        obj = kube.call("GET", path)
        kube.call("PATCH", path, change(obj))


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {**meta, "uid": "0f3c9a1e-1111-2222-3333-444455556666", "resourceVersion": "4711",
            "generation": 2, "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {**meta["labels"], "pod-template-hash": "abc"},
            "annotations": {**(meta.get("annotations") or {}),
                            "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "apiVersion": obj["apiVersion"], "subresource": "status",
                               "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:status": {"f:replicas": {}}}}]}


def _deployment_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    pod = spec["template"]["spec"]
    containers = [{**c, "terminationMessagePath": "/dev/termination-log",
                   "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                   "resources": {"requests": {"cpu": "0.1", "memory": "90Mi"}}
                   if "resources" in c else {}} for c in pod["containers"]]
    return {"metadata": _metadata(obj), "spec": {
        **spec, "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {**spec["template"], "spec": {
            **pod, "containers": containers, "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {}}}},
        "status": {"replicas": spec["replicas"], "availableReplicas": spec["replicas"],
                   "observedGeneration": 2}}


def _service_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": _metadata(obj), "spec": {
        **obj["spec"], "clusterIP": "10.96.14.2", "clusterIPs": ["10.96.14.2"],
        "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}}


def _namespace_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    meta = _metadata(obj)
    meta["labels"]["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    return {"metadata": meta, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}}


def owned_configmap(desired: Desired, name: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": owner_labels(desired.env)}, "data": {"left": "behind"}}


# --- the converge cycle on lab B -------------------------------------------------------------

def test_plan_on_empty_cluster_creates_everything_in_order(kube: Kube) -> None:
    desired = lab_b()
    plan = build_plan(desired, settings(kube.kubeconfig))
    rendered = desired.objects["k8s"]
    assert plan.count("create") == len(rendered) == 21 and len(plan.actions) == 21
    assert {a.provider for a in plan.actions} == {"kubernetes"}
    orders = [a.order for a in plan.actions]
    assert orders == sorted(orders)
    assert names(plan)[0] == ("create", "Namespace", "ingress-nginx")
    cluster = [a.kind for a in plan.actions if a.order == k.ORDER_CLUSTER]
    assert sorted(cluster) == ["ClusterRole", "ClusterRoleBinding", "IngressClass",
                               "PersistentVolume", "PersistentVolume"]
    namespaced = [a.name for a in plan.actions if a.order == k.ORDER_NAMESPACED]
    assert "default/test-was" in namespaced and "kube-system/gen-k8s-lab-k8s" in namespaced
    text = format_text(plan)
    assert "+ kubernetes Deployment default/test-was" in text
    assert text.rstrip().endswith("Plan: 21 to add, 0 to change, 0 to replace, 0 to destroy.")
    assert not plan.conflicts and not plan.notices


def test_converge_replan_drift_repair_and_prune(kube: Kube, tmp_path: Path) -> None:
    desired = lab_b()
    config = settings(kube.kubeconfig)
    converge(desired, config, tmp_path / "state")

    # Server-side apply on the wire: field manager gen, forced, apply-patch content type.
    applies = ssa_requests(kube)
    assert len(applies) == 21
    assert all(r.params.get("fieldManager") == "gen" and r.params.get("force") == "true"
               for r in applies)
    deployment = kube.call("GET", "/apis/apps/v1/namespaces/default/deployments/test-was")
    assert deployment["metadata"]["labels"] == {
        "app": "test-was", **owner_labels(desired.env)}

    # A converge right after a converge plans zero changes, also once the "server" has
    # added its defaults, metadata and status.
    assert build_plan(desired, config).empty
    server_defaults(kube)
    assert build_plan(desired, config).empty

    # Drift behind gen's back.
    kube.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/test-was",
              {"spec": {"replicas": 1}})
    kube.call("DELETE", "/api/v1/namespaces/default/services/svc-tomcat")
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "foreign", "namespace": "default",
                            "labels": {"app": "someone-else"}}, "data": {"keep": "me"}}
    kube.call("POST", "/api/v1/namespaces/default/configmaps", foreign, "application/json")
    other_env = owned_configmap(replace(desired, env=replace(desired.env, name="elsewhere")),
                                "other-env")
    kube.call("POST", "/api/v1/namespaces/default/configmaps", other_env, "application/json")
    kube.call("POST", "/api/v1/namespaces/default/configmaps", owned_configmap(desired, "stale"),
              "application/json")

    plan = build_plan(desired, config)
    assert names(plan) == [("update", "Deployment", "default/test-was"),
                           ("create", "Service", "default/svc-tomcat")]
    update = plan.actions[0]
    assert [(c.op, c.path, c.old, c.new) for c in update.changes] == [
        ("change", "spec.replicas", 1, 3)]
    assert any("ConfigMap default/stale" in n and "--prune" in n for n in plan.notices)
    assert "foreign" not in format_text(plan) and "other-env" not in format_text(plan)

    pruning = settings(kube.kubeconfig, prune=True)
    plan = build_plan(desired, pruning)
    assert names(plan)[-1] == ("delete", "ConfigMap", "default/stale")
    assert plan.count("delete") == 1
    converge(desired, pruning, tmp_path / "state")

    assert build_plan(desired, pruning).empty
    live = kube.call("GET", "/apis/apps/v1/namespaces/default/deployments/test-was")
    assert live["spec"]["replicas"] == 3
    with pytest.raises(k.KubeError):
        kube.call("GET", "/api/v1/namespaces/default/configmaps/stale")
    # Foreign objects are never touched: no write request ever named them.
    assert kube.call("GET", "/api/v1/namespaces/default/configmaps/foreign")["data"] == {
        "keep": "me"}
    assert kube.call("GET", "/api/v1/namespaces/default/configmaps/other-env")
    writes = [r for r in kube.requests() if r.method.value in ("PATCH", "DELETE", "PUT")]
    assert not [r for r in writes if r.url.path.endswith(("/foreign", "/other-env"))]
    posts = [r.data["metadata"]["name"] for r in kube.requests() if r.method.value == "POST"]
    assert posts.count("foreign") == posts.count("other-env") == 1  # the test's own


def test_object_dropped_from_render_is_pruned_only_with_prune(kube: Kube, tmp_path: Path) -> None:
    desired = lab_b()
    converge(desired, settings(kube.kubeconfig), tmp_path / "state")
    smaller = desired_of(replace(desired.env, kubernetes=replace(desired.env.kubernetes,
                                                                 apps=())))
    plan = build_plan(smaller, settings(kube.kubeconfig))
    assert plan.empty and any("5 owned object(s)" in n for n in plan.notices)
    plan = build_plan(smaller, settings(kube.kubeconfig, prune=True, allow_destroy=True))
    # Namespaced objects before cluster-scoped ones (a workload before its claim before
    # its volume).
    assert names(plan) == [("delete", "Deployment", "default/test-was"),
                           ("delete", "Ingress", "default/test-was"),
                           ("delete", "PersistentVolumeClaim", "default/pvc-testwas"),
                           ("delete", "Service", "default/svc-tomcat"),
                           ("delete", "PersistentVolume", "pv-testwas")]
    # Claims and volumes hold data: deleting them needs --allow-destroy.
    with pytest.raises(DestructiveNotApproved):
        check_approval(plan, settings(kube.kubeconfig, prune=True))
    converge(smaller, settings(kube.kubeconfig, prune=True, allow_destroy=True),
             tmp_path / "state")
    assert build_plan(smaller, settings(kube.kubeconfig, prune=True)).empty
    deletes = [r for r in kube.requests() if r.method.value == "DELETE"]
    assert len(deletes) == 5 and all(r.data.get("propagationPolicy") == "Background"
                                     for r in deletes)


def test_empty_desired_set_never_prunes(kube: Kube, tmp_path: Path) -> None:
    desired = lab_b()
    converge(desired, settings(kube.kubeconfig), tmp_path / "state")
    nothing = {p: c for p, c in desired.tree.items() if not p.startswith(BASE)}
    plan = build_plan(replace(desired, tree=nothing), settings(kube.kubeconfig, prune=True,
                                                               allow_destroy=True))
    assert plan.empty


def test_foreign_object_holding_a_rendered_name_is_a_conflict(kube: Kube) -> None:
    kube.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": "ingress-nginx"}},
              "application/json")
    desired = lab_b()
    config = settings(kube.kubeconfig)
    plan = build_plan(desired, config)
    assert plan.count("create") == 20
    assert len(plan.conflicts) == 1 and "Namespace ingress-nginx" in plan.conflicts[0]
    with pytest.raises(UserError, match="conflict"):
        check_approval(plan, config)


def test_immutable_field_change_is_a_replace_naming_the_field(kube: Kube,
                                                              tmp_path: Path) -> None:
    desired = lab_b()
    converge(desired, settings(kube.kubeconfig), tmp_path / "state")
    kube.call("PATCH", "/api/v1/persistentvolumes/pv-testwas",
              {"spec": {"nfs": {"path": "/elsewhere"}}})
    plan = build_plan(desired, settings(kube.kubeconfig))
    assert names(plan) == [("replace", "PersistentVolume", "pv-testwas")]
    action = plan.actions[0]
    assert action.forcing_field == "spec.nfs" and action.destructive
    assert "-/+ kubernetes PersistentVolume pv-testwas  (forced by spec.nfs" in format_text(plan)
    with pytest.raises(DestructiveNotApproved):
        check_approval(plan, settings(kube.kubeconfig))
    converge(desired, settings(kube.kubeconfig, allow_destroy=True), tmp_path / "state")
    assert kube.call("GET", "/api/v1/persistentvolumes/pv-testwas")["spec"]["nfs"]["path"] == \
        "/share_storage/test_service"
    assert build_plan(desired, settings(kube.kubeconfig)).empty


def test_cli_plan_converge_replan(kube: Kube, repo: Path, tmp_path: Path) -> None:
    from tests.clirun import gen

    flags = ("--provider", "kubernetes", "--kubeconfig", str(kube.kubeconfig))
    first = gen("plan", "env/k8s-lab", *flags, "--detailed-exitcode", cwd=repo)
    assert first.code == 2, first.err
    assert "Wave 50: Kubernetes objects" in first.out
    assert "Plan: 21 to add, 0 to change, 0 to replace, 0 to destroy." in first.out
    done = gen("converge", "env/k8s-lab", *flags, "--auto-approve", "--state-dir",
               str(tmp_path / "state"), "--wait-timeout", "5", cwd=repo)
    assert done.code == 0, done.err
    assert "[21/21] + kubernetes" in done.err and "Apply complete." in done.out
    again = gen("plan", "env/k8s-lab", *flags, "--detailed-exitcode", "--format", "json",
                cwd=repo)
    assert again.code == 0, again.err
    assert json.loads(again.out)["summary"] == {"add": 0, "change": 0, "replace": 0,
                                                "destroy": 0}


# --- secrets, waiting, reachability ------------------------------------------------------------

def _secret_tree(desired: Desired) -> Desired:
    labels = owner_labels(desired.env)
    objs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault",
                                                               "labels": labels}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "db", "namespace": "vault", "labels": labels}, "type": "Opaque",
         "stringData": {"password": "hunter2-plain"}},
    ]
    return handed_over(desired, objs)


def test_secret_values_never_appear_in_plans(kube: Kube, tmp_path: Path) -> None:
    desired = _secret_tree(lab_b())
    config = settings(kube.kubeconfig)
    plan = build_plan(desired, config)
    created = format_text(plan, config, verbose=True) + json.dumps(to_json(plan, config))
    assert "stringData" not in created and "data.password" in created
    assert "hunter2" not in created and k.SENSITIVE_CHANGED in created
    converge(desired, config, tmp_path / "state")
    # What a real server stores: data, base64; no stringData (kmock keeps what was sent).
    path = "/api/v1/namespaces/vault/secrets/db"
    stored = kube.call("GET", path)
    assert stored["stringData"] == {"password": "hunter2-plain"}
    kube.emulator.objects[_res("", "v1", "secrets"), "vault", "db"] = {
        **{k_: v for k_, v in stored.items() if k_ != "stringData"},
        "data": {"password": base64.b64encode(b"hunter2-plain").decode()}}
    assert build_plan(desired, config).empty
    kube.call("PATCH", path, {"data": {"password": base64.b64encode(b"changed-x").decode()}})
    plan = build_plan(desired, config)
    assert names(plan) == [("update", "Secret", "vault/db")]
    shown = format_text(plan, config, verbose=True) + json.dumps(to_json(plan, config))
    assert "hunter2" not in shown and "changed-x" not in shown
    assert base64.b64encode(b"changed-x").decode() not in shown
    assert "data.password: (sensitive value) -> (sensitive value changed)" in shown


def test_indexed_secret_references_are_masked_and_filled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`sshAuthorizedKeys[0]` is a reference name too: its marker is hidden and filled."""
    from generator.model import SecretRef

    marker = "@@gen-secret:sshAuthorizedKeys[0]@@"
    shown = k.masked([DiffItem("change", "data.key", "old", f"key {marker}")], "ConfigMap",
                     markers=True)
    assert marker not in str(shown) and k.SENSITIVE_CHANGED in str(shown)
    monkeypatch.setenv("GEN_TEST_SSH_KEY", "ssh-ed25519 AAAA gen-test")
    ref = SecretRef("sshAuthorizedKeys[0]", "env", "GEN_TEST_SSH_KEY")
    assert k._fill({"data": {"key": f"key {marker}"}}, {ref.name: ref}) == {
        "data": {"key": "key ssh-ed25519 AAAA gen-test"}}


def _res(group: str, version: str, plural: str) -> Any:
    from kmock import resource

    return resource(group, version, plural)


def test_wait_for_deployment_health(kube: Kube, tmp_path: Path) -> None:
    desired = lab_b()
    fast = settings(kube.kubeconfig, options={"wait": True, "wait_timeout": 1.5})
    plan = build_plan(desired, fast)
    began = time.monotonic()
    with pytest.raises(Exception, match="not available after"):
        apply_plan(plan, Journal(tmp_path / "state", desired.env.name))
    assert time.monotonic() - began >= 1.5

    # A stand-in for the deployment controller: reports the rollout done a moment later.
    stop = threading.Event()

    def controller() -> None:
        while not stop.wait(0.2):
            for ns, name, replicas in (("ingress-nginx", "ingress-nginx-controller", 1),
                                       ("default", "docker-registry", 1),
                                       ("default", "test-was", 3)):
                path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
                try:
                    kube.call("PATCH", path, {"status": {
                        "replicas": replicas, "updatedReplicas": replicas,
                        "availableReplicas": replicas}})
                except k.KubeError:
                    pass

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    try:
        patient = settings(kube.kubeconfig, options={"wait": True, "wait_timeout": 20})
        converge(desired, patient, tmp_path / "state")
    finally:
        stop.set()
        thread.join(5)
    assert build_plan(desired, patient).empty


def test_unreachable_server_and_missing_kubeconfig(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    desired = lab_b()
    closed = _kubeconfig(tmp_path / "closed", "http://127.0.0.1:9")
    # Not asked for explicitly (all providers): a notice, so VMs can be planned first.
    kubernetes = by_name()["kubernetes"]
    provider = kubernetes.start(Settings(), KubernetesOptions())
    provider.api = k.connect(str(closed), None)
    provider.use_built(desired.objects)
    found = kubernetes.plan(provider, desired.env, kubernetes.scope(desired.tree), desired.tree)
    assert found.actions == () and "unreachable" in found.notices[0]
    # Asked for: an error naming the cause.
    with pytest.raises(UserError, match="unreachable"):
        build_plan(desired, settings(closed))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    quiet_provider = kubernetes.start(Settings(), KubernetesOptions())
    quiet_provider.use_built(desired.objects)
    quiet = kubernetes.plan(quiet_provider, desired.env, kubernetes.scope(desired.tree),
                            desired.tree)
    assert quiet.actions == () and "no kubeconfig" in quiet.notices[0]
    with pytest.raises(UserError, match="kubeconfig"):
        build_plan(desired, Settings(providers=("kubernetes",)))


# --- pure parts --------------------------------------------------------------------------------

def test_plan_reads_the_built_objects_of_the_clusters_in_scope() -> None:
    """The objects come from the render, never from parsing the tree; the tree (the
    provider's scope) only says which clusters are planned."""
    desired = lab_b()
    scope = k.scope_of(desired.tree)
    assert [m.obj for m in k.manifest_objects(scope, desired.objects)] == \
        list(desired.objects["k8s"])
    assert k.manifest_objects({}, desired.objects) == []
    with pytest.raises(GenError, match="handed over no objects for cluster k8s"):
        k.manifest_objects(scope, {})
    twice = {"k8s": [*desired.objects["k8s"], desired.objects["k8s"][-1]]}
    with pytest.raises(GenError, match="is built twice"):
        k.manifest_objects(scope, twice)


def test_diff_compares_rendered_fields_only_with_quantities_by_value() -> None:
    want = {"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}]}}}}
    live = {"spec": {"replicas": 2, "paused": False, "template": {"spec": {"containers": [
        {"name": "c", "terminationMessagePath": "/dev/termination-log",
         "resources": {"requests": {"cpu": "0.1", "memory": "1073741824"}}}]}}}}
    assert kubernetes_diff(want, live) == []
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "200m"
    assert kubernetes_diff(want, live) == [DiffItem(
        "change", "spec.template.spec.containers[c].resources.requests.cpu", "200m", "100m")]
    assert kubernetes_diff({"a": [1, 2]}, {"a": [1]}) == [DiffItem("change", "a", [1], [1, 2])]
    assert kubernetes_diff({"a": {"b": "x"}}, {}) == [DiffItem("add", "a", None, {"b": "x"})]
    assert kubernetes_diff({"a": "1"}, {"a": 1}) == [DiffItem("change", "a", 1, "1")]


def test_fields_gen_owned_but_no_longer_renders_are_removals() -> None:
    desired = {"metadata": {"name": "x", "labels": {"app": "x"}}, "spec": {"template": {
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}}}
    live = {"metadata": {"name": "x", "labels": {"app": "x", "tier": "web"}, "managedFields": [
        {"manager": "gen", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                'k:{"name":"c"}': {".": {}, "f:name": {}, "f:ports": {
                    'k:{"containerPort":80,"protocol":"TCP"}': {".": {}},
                    'k:{"containerPort":81,"protocol":"TCP"}': {".": {}}}},
                'k:{"name":"sidecar"}': {".": {}}}}}}}},
        {"manager": "kubectl-edit", "operation": "Update",
         "fieldsV1": {"f:spec": {"f:paused": {}}}}]}, "spec": {"paused": True}}
    removed = [(i.op, i.path, i.old) for i in k.owned_but_not_rendered(live, desired)]
    assert removed == [
        ("remove", "metadata.labels.tier", "web"),
        ("remove", "spec.template.spec.containers[name=c].ports[containerPort=81,protocol=TCP]",
         None),
        ("remove", "spec.template.spec.containers[name=sidecar]", None)]


def test_deployment_readiness() -> None:
    assert not k.deployment_ready({"spec": {"replicas": 2}, "status": {}})
    ready = {"metadata": {"generation": 3}, "spec": {"replicas": 2}, "status": {
        "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
    assert k.deployment_ready(ready)
    assert not k.deployment_ready({**ready, "metadata": {"generation": 4}})
    assert not k.deployment_ready({**ready, "status": {**ready["status"], "replicas": 3}})


def test_api_errors_never_carry_a_filled_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server may echo a rejected field value; converge output and journal must not."""
    from generator.model import SecretRef
    from generator.reconcile.kubernetes import KubeError, KubernetesProvider

    monkeypatch.setenv("GEN_TEST_TOKEN", "hunter2-secret")
    provider = KubernetesProvider(secrets={"token": SecretRef("token", "env", "GEN_TEST_TOKEN")})
    obj = {"kind": "Secret", "stringData": {"t": "@@gen-secret:token@@"}}
    echoed = KubeError(422, "Invalid", 'Secret "x" is invalid: data: "hunter2-secret" bad')
    hidden = echoed.redacted(provider._values_in(obj))
    assert "hunter2-secret" not in str(hidden)
    assert str(hidden) == 'HTTP 422 Invalid: Secret "x" is invalid: data: "(sensitive)" bad'
