"""The kubernetes provider: the objects the kubernetes family built against the API server.

Desired objects are the ones `families.kubernetes.built_objects` returns for the render the
plan runs on (`plan.Desired.objects`, per cluster): the family hands them over as data, so
nothing here reads kustomizations back. The kustomize tree under `clusters/<c>/kubernetes/`
stays the committed, reviewable form; a test checks that `kubectl kustomize` builds exactly
these objects from it. A cluster is planned when its kustomization is in the provider's
scope of the rendered tree.

Live objects are read with the `kubernetes` client's ApiClient (kubeconfig from --kubeconfig,
KUBECONFIG or ~/.kube/config; imported lazily) as plain JSON. A live object is compared on
the fields the rendered object has (the API server adds defaults, status, managedFields,
resourceVersion...), plus the fields manager `gen` owns in managedFields but no longer renders
(server-side apply would remove those). Changes apply with server-side apply (field manager
`gen`, force); deletes only ever hit objects labelled for this environment's ApplySet.

docs/testing.md (## Kubernetes provider) states what the kmock-based
tests prove and what only the `live` test can.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from generator.errors import GenError, UserError
from generator.families import gitops
from generator.families.kubernetes import (
    ENVIRONMENT,
    MANAGED_BY,
    PART_OF,
    applyset_id,
)
from generator.model import Environment, SecretRef
from generator.reconcile import csr
from generator.reconcile.base import WAVE_KUBERNETES, Action, DiffItem
from generator.reconcile.essence import (
    KUBERNETES,
    added,
    group_of,
    kubernetes_diff,
    kubernetes_object,
)
from generator.reconcile.installer import installer_kubeconfig
from generator.reconcile.kubeadm_phases import kubeadm_kubeconfig
from generator.reconcile.secrets import MARKER, declared, places, read_local
from generator.records import record
from generator.tree import Tree

Obj = dict[str, Any]
FIELD_MANAGER = "gen"
SENSITIVE = "(sensitive value)"
SENSITIVE_CHANGED = "(sensitive value changed)"
_SCOPE = re.compile(r"^clusters/[^/]+/kubernetes/")
_ROOT = re.compile(r"clusters/[^/]+/kubernetes/kustomization.yaml")
# Order inside the Kubernetes wave: Namespaces and CRDs, then cluster-scoped, then namespaced.
ORDER_FIRST, ORDER_CLUSTER, ORDER_NAMESPACED = 0, 1, 2
FIRST_KINDS = {("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")}
# Kinds looked at for pruning besides the rendered ones and the live ApplySet parent's
# `contains-group-kinds`: so an owned object of a kind dropped from the render is still found
# after an interrupted converge updated the parent (kubectl's former prune allowlist + RBAC,
# without Endpoints: the endpoints controller copies a Service's labels onto them).
PRUNE_KINDS = (
    ("", "ConfigMap"), ("", "Namespace"), ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"), ("", "Pod"), ("", "ReplicationController"), ("", "Secret"),
    ("", "Service"), ("", "ServiceAccount"), ("batch", "Job"), ("batch", "CronJob"),
    ("networking.k8s.io", "Ingress"), ("networking.k8s.io", "IngressClass"),
    ("apps", "DaemonSet"), ("apps", "Deployment"), ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"), ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"), ("storage.k8s.io", "StorageClass"),
)
# Fields the API server refuses to change in place: a change is a delete + apply (replace).
FORCING: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec.selector",), "StatefulSet": ("spec.selector",),
    "DaemonSet": ("spec.selector",), "ReplicaSet": ("spec.selector",),
    "Job": ("spec.selector", "spec.template"),
    "Service": ("spec.clusterIP",),
    "PersistentVolume": ("spec.nfs", "spec.hostPath", "spec.csi", "spec.local", "spec.iscsi",
                         "spec.fc", "spec.rbd", "spec.cephfs"),
    "PersistentVolumeClaim": ("spec.accessModes", "spec.storageClassName", "spec.volumeName",
                              "spec.selector", "spec.volumeMode", "spec.dataSource"),
    "StorageClass": ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"),
    "RoleBinding": ("roleRef",), "ClusterRoleBinding": ("roleRef",),
}
# Replacing these loses data (a claim's volume, a volume's binding): needs --allow-destroy.
# Flux deletes every object a Kustomization applied when the Kustomization goes (prune: true).
DESTRUCTIVE_KINDS = {"PersistentVolumeClaim", "PersistentVolume", "Namespace", "Kustomization"}
# What else a delete takes with it, said in the plan.
DELETE_NOTES = {
    ("", "Namespace"): "; deleting a Namespace deletes every object in it",
    ("kustomize.toolkit.fluxcd.io", "Kustomization"):
        "; Flux then deletes every object it applied (prune: true)",
}



# --- desired objects: what the kubernetes family built ------------------------------------------

@record
class Ref:
    """An object's identity: API group, kind, namespace ("" when cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def ref_of(obj: Obj) -> Ref:
    meta = obj.get("metadata") or {}
    return Ref(group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind", "")),
               str(meta.get("namespace") or ""), str(meta.get("name", "")))


@record
class Manifest:
    """One desired object and the kustomization that lists it (for error messages)."""

    obj: Obj
    source: str

    @property
    def ref(self) -> Ref:
        return ref_of(self.obj)


def scope_of(tree: Tree) -> Tree:
    return {p: c for p, c in tree.items() if _SCOPE.match(p)}


def manifest_objects(tree: Tree, built: Mapping[str, Sequence[Obj]]) -> list[Manifest]:
    """The built objects of every cluster whose kustomization is in `tree`. Pure."""
    out: list[Manifest] = []
    for root in sorted(p for p in tree if _ROOT.fullmatch(p)):
        cluster = root.split("/")[1]
        if cluster not in built:
            raise GenError(f"{root} is rendered but the render handed over no objects for "
                           f"cluster {cluster} (plan.Desired.objects)")
        out += [Manifest(obj, root) for obj in built[cluster]]
    seen: set[Ref] = set()
    for item in out:
        if item.ref in seen:
            raise GenError(f"{item.source}: {item.ref.kind} {item.ref.label} is built twice")
        seen.add(item.ref)
    return out


# --- comparing: rendered against live (the normaliser and walk are essence.py's) --------

def owned_but_not_rendered(live: Obj, desired: Obj) -> list[DiffItem]:
    """Fields manager `gen` applied earlier (managedFields) that the render no longer has:
    server-side apply removes them, so the plan says so."""
    items: list[DiffItem] = []
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and \
                entry.get("subresource") in (None, ""):
            _owned(entry.get("fieldsV1") or {}, desired, live, "", items)
    return items


def _owned(fields: Obj, desired: Any, live: Any, path: str, out: list[DiffItem]) -> None:
    for key, sub in fields.items():
        kind, _, rest = key.partition(":")
        if kind == "f":
            here = f"{path}.{rest}" if path else rest
            have = live.get(rest) if isinstance(live, dict) else None
            if not isinstance(desired, dict) or rest not in desired:
                out.append(DiffItem("remove", here, have))
            elif sub:
                _owned(sub, desired[rest], have, here, out)
        elif kind == "k":
            keys = json.loads(rest)
            label = f"{path}[{','.join(f'{k}={v}' for k, v in keys.items())}]"
            want = _keyed(desired, keys)
            if want is None:
                out.append(DiffItem("remove", label, _keyed(live, keys)))
            elif sub:
                _owned(sub, want, _keyed(live, keys), label, out)
        elif kind == "v":
            value = json.loads(rest)
            if not isinstance(desired, list) or value not in desired:
                out.append(DiffItem("remove", f"{path}[{value}]", value))


def _keyed(items: Any, keys: Obj) -> Any:
    """The list element whose merge keys match (a key the rendered item leaves to its
    default, such as a port's protocol, matches too)."""
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and all(item.get(k, v) == v for k, v in keys.items()):
            return item
    return None


def masked(items: list[DiffItem], kind: str, markers: bool) -> tuple[DiffItem, ...]:
    """Never show a Secret's values, nor values filled from secret references."""
    out = []
    for item in items:
        secret = kind == "Secret" and item.path.split(".")[0].split("[")[0] in (
            "data", "stringData")
        if secret or (markers and (_has_marker(item.old) or _has_marker(item.new))):
            item = DiffItem(item.op, item.path, SENSITIVE if item.old is not None else None,
                            SENSITIVE_CHANGED if item.new is not None else None)
        out.append(item)
    return tuple(out)


def _has_marker(value: Any) -> bool:
    return bool(MARKER.search(json.dumps(value))) if value is not None else False


def forcing_field(kind: str, items: list[DiffItem]) -> str | None:
    for item in items:
        for prefix in FORCING.get(kind, ()):
            if item.path == prefix or item.path.startswith((f"{prefix}.", f"{prefix}[")):
                return prefix
    return None


def order_of(ref: Ref, namespaced: bool) -> int:
    if (ref.group, ref.kind) in FIRST_KINDS:
        return ORDER_FIRST
    return ORDER_NAMESPACED if namespaced else ORDER_CLUSTER


def owned_by(obj: Obj, env: Environment) -> bool:
    """Labelled for this environment (the ApplySet parent has no part-of label)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY) == "gen" and labels.get(ENVIRONMENT) == env.name


def prunable(obj: Obj, env: Environment) -> bool:
    """Owned for pruning: gen's three owner labels with this environment's ApplySet id, and
    not made by a controller (a Pod of a Deployment copies its template's labels)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    controlled = any(o.get("controller") for o in meta.get("ownerReferences") or [])
    return owned_by(obj, env) and labels.get(PART_OF) == applyset_id(env) and not controlled


def selector(env: Environment) -> str:
    return f"{MANAGED_BY}=gen,{ENVIRONMENT}={env.name},{PART_OF}={applyset_id(env)}"


# --- the API server ------------------------------------------------------------------------

class KubeError(Exception):
    """A non-2xx answer from the API server, reduced to its Status (never the body sent)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    def redacted(self, values: list[str]) -> KubeError:
        """The same error with every given secret value replaced (a server may echo one)."""
        def hide(text: str) -> str:
            for value in values:
                text = text.replace(value, "(sensitive)") if value else text
            return text

        return KubeError(self.status, hide(self.reason), hide(self.message))


@record
class Resource:
    """Where a kind lives on the server."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else \
            f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Api:
    """JSON over the kubernetes client's ApiClient (its kubeconfig, TLS and auth handling)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._groups: dict[str, str] | None = None  # group -> preferred version
        self._versions: dict[str, dict[str, Resource]] = {}  # apiVersion -> kind -> Resource

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                body: Any = None, content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        prepared = self.client.param_serialize(method, path, query_params=query or [],
                                               header_params=headers, body=body,
                                               auth_settings=["BearerToken"])
        response = self.client.call_api(*prepared, _request_timeout=(10, 60))
        data = response.read()
        if response.status >= 400:
            try:
                status = json.loads(data)
                message = str(status.get("message", ""))[:300]
                reason = str(status.get("reason", response.reason))
            except ValueError:
                message, reason = "", str(response.reason)
            raise KubeError(response.status, reason, message)
        return json.loads(data) if data else None

    def kinds(self, api_version: str) -> dict[str, Resource]:
        if api_version not in self._versions:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.request("GET", path)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                listing = {}
            self._versions[api_version] = {
                r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in (listing or {}).get("resources", []) if "/" not in r["name"]}
        return self._versions[api_version]

    def resource(self, api_version: str, kind: str) -> Resource | None:
        return self.kinds(api_version).get(kind)

    def preferred(self, group: str) -> str | None:
        """The preferred apiVersion of a group ("" is core v1)."""
        if not group:
            return "v1"
        if self._groups is None:
            listing = self.request("GET", "/apis") or {}
            self._groups = {g["name"]: g["preferredVersion"]["groupVersion"]
                            for g in listing.get("groups", []) if g.get("preferredVersion")}
        return self._groups.get(group)

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = self.request("GET", resource.path(namespace, name))
            return found
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, resource: Resource, label_selector: str) -> list[Obj]:
        listing = self.request("GET", resource.path(), [("labelSelector", label_selector)])
        items: list[Obj] = (listing or {}).get("items") or []
        for item in items:  # list items omit apiVersion/kind
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return items

    def apply(self, resource: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        path = resource.path(meta.get("namespace", ""), meta["name"])
        try:
            applied: Obj = self.request("PATCH", path, query, obj, "application/apply-patch+yaml")
            return applied
        except KubeError as exc:
            # A real API server creates a missing object on apply; an emulator without
            # server-side apply answers 404/405. Create it then: on a real server this path is
            # only reached when apply itself failed (e.g. its namespace is missing), and the
            # create fails the same way, so the error still surfaces.
            if exc.status not in (404, 405):
                raise
        created: Obj = self.request("POST", resource.path(meta.get("namespace", "")),
                                    [("fieldManager", FIELD_MANAGER)], obj)
        return created

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", resource.path(namespace, name), [],
                         {"apiVersion": "v1", "kind": "DeleteOptions",
                          "propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status != 404:  # already gone: deleting is idempotent
                raise


def connect(kubeconfig: str | None, context: str | None) -> Api:
    """An Api from a kubeconfig (the option, else $KUBECONFIG, else ~/.kube/config)."""
    from kubernetes import config  # heavy: only when a plan touches a cluster

    try:
        client = config.new_client_from_config(  # type: ignore[no-untyped-call,unused-ignore]
            config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise UserError(f"kubernetes: cannot load kubeconfig ({exc})",
                        "pass --kubeconfig PATH or set KUBECONFIG") from None
    return Api(client)


# --- the provider ---------------------------------------------------------------------------

@dataclass
class KubernetesProvider:
    """Converges the rendered Kubernetes objects of the environment's cluster."""

    kubeconfig: str | None = None
    context: str | None = None
    wait: bool = False
    wait_timeout: float = 300.0
    required: bool = False  # a missing kubeconfig or an unreachable server is an error
    api: Api | None = None
    name: str = "kubernetes"
    notices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # scopes not looked at (plan.Plan)
    secrets: dict[str, SecretRef] = field(default_factory=dict)  # what objects may carry
    placed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the others' files
    read_seconds: float = 0.0
    built: Mapping[str, Sequence[Obj]] = field(default_factory=dict)  # cluster -> objects

    def use_built(self, objects: Mapping[str, Sequence[Obj]]) -> None:
        """The objects the kubernetes family built in the render being planned."""
        self.built = objects
    installer_root: Any = None  # the installer provider's state: its kubeconfig by default
    kubeadm_root: Any = None  # the kubeadm provider's state: its admin.conf by default

    def scope(self, tree: Tree) -> Tree:
        return scope_of(tree)

    def _api(self) -> Api:
        if self.api is None:
            self.api = connect(self.kubeconfig, self.context)
        return self.api

    # -- plan -----------------------------------------------------------------------------

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        manifests = manifest_objects(tree, self.built)
        self.kubeconfig = self.kubeconfig or installer_kubeconfig(self.installer_root, env.name)
        admin = kubeadm_kubeconfig(self.kubeadm_root, env)
        if not self.kubeconfig and admin is not None:
            if not admin.is_file():
                # the kubeadm phases of this converge bring the cluster up first
                self.notices.append("kubernetes: the cluster is not up yet (no admin.conf "
                                    "from kubeadm init); its objects are planned after it")
                self.skipped.append("kubernetes: cluster objects (kubeadm init not run yet)")
                return []
            self.kubeconfig = str(admin)
        if not manifests:
            # Nodes ask for certificates all the same; only a cluster named for this
            # environment (--kubeconfig, the installer's) is asked, never $KUBECONFIG's.
            return csr.provider_plan(self, env) if self.kubeconfig else []
        if gitops.handed_off(env):
            self.notices.append(gitops.engine_notice(env))
        self.secrets, self.placed = object_secrets(env)
        began = time.monotonic()
        try:
            self._api()
        except UserError:
            if self.required:
                raise
            self.notices.append("kubernetes: no kubeconfig; Kubernetes objects not planned "
                                "(pass --kubeconfig or set KUBECONFIG once the cluster is up)")
            self.skipped.append("kubernetes: cluster objects (no kubeconfig)")
            return []
        try:
            return self._plan(env, manifests) + csr.provider_plan(self, env)
        except KubeError as exc:
            raise UserError(f"kubernetes: the API server refused a read: {exc}",
                            "check the kubeconfig's credentials and RBAC") from None
        except OSError as exc:
            return self._unreachable(exc)
        except Exception as exc:  # urllib3's MaxRetryError and friends: the server is down
            if type(exc).__module__.startswith("urllib3"):
                return self._unreachable(exc)
            raise
        finally:
            self.read_seconds = time.monotonic() - began

    def _unreachable(self, exc: BaseException) -> list[Action]:
        reason = str(getattr(exc, "reason", exc)).splitlines()[0][:200]
        if self.required:
            raise UserError(f"kubernetes: API server unreachable ({reason})",
                            "check the kubeconfig's server and that the cluster is up") from None
        self.notices.append(f"kubernetes: API server unreachable ({reason}); Kubernetes "
                            "objects not planned")
        self.skipped.append("kubernetes: cluster objects (API server unreachable)")
        return []

    def _plan(self, env: Environment, manifests: list[Manifest]) -> list[Action]:
        api = self._api()
        crds = _crd_resources([m.obj for m in manifests])
        actions: list[Action] = []
        rendered: set[Ref] = set()
        for item in manifests:
            obj = item.obj
            resource = api.resource(obj["apiVersion"], obj["kind"])
            note = ""
            if resource is None:
                resource = crds.get((obj["apiVersion"], obj["kind"]))
                if resource is None:
                    raise UserError(f"{item.source}: the API server has no kind {obj['kind']} "
                                    f"in {obj['apiVersion']}", "install its CRD or fix the "
                                    "manifest's apiVersion")
                note = "kind defined by a CRD in this render"
            obj = _with_namespace(obj, resource)
            ref = ref_of(obj)
            rendered.add(ref)
            live = None if note else api.get(resource, ref.namespace, ref.name)
            action = self._compare(env, resource, obj, live, note)
            if action is not None:
                actions.append(action)
        actions += self._prunes(env, api, manifests, rendered)
        return actions

    def _compare(self, env: Environment, resource: Resource, obj: Obj, live: Obj | None,
                 note: str) -> Action | None:
        ref = ref_of(obj)
        markers = _has_marker(obj)
        payload = {"object": obj, "resource": resource}
        order = order_of(ref, resource.namespaced)
        if live is None:
            return Action("create", self.name, ref.kind, ref.label, WAVE_KUBERNETES,
                          masked(added(kubernetes_object(obj), KUBERNETES), ref.kind, markers),
                          note=note, order=order, payload=payload)
        if not owned_by(live, env):
            self.conflicts.append(f"kubernetes: {ref.kind} {ref.label} exists without gen's "
                                  f"owner labels for environment {env.name}; gen will not "
                                  "take it over (delete or relabel it by hand)")
            return None
        filled = self._filled(obj) if markers else obj
        essence = kubernetes_object(filled)
        # Ownership is checked against both spellings of a Secret's values (stringData as
        # applied, data as stored), whichever the server recorded in managedFields.
        items = kubernetes_diff(essence, live) + owned_but_not_rendered(live, {**filled, **essence})
        if not items:
            return None
        changes = masked(items, ref.kind, markers)
        forcing = forcing_field(ref.kind, items)
        if forcing is not None:
            return Action("replace", self.name, ref.kind, ref.label, WAVE_KUBERNETES, changes,
                          forcing_field=forcing, destructive=ref.kind in DESTRUCTIVE_KINDS,
                          note="the API server cannot change this field in place",
                          order=order, payload=payload)
        return Action("update", self.name, ref.kind, ref.label, WAVE_KUBERNETES, changes,
                      order=order, payload=payload)

    def _prunes(self, env: Environment, api: Api, manifests: list[Manifest],
                rendered: set[Ref]) -> list[Action]:
        kinds = {(m.ref.group, m.ref.kind) for m in manifests} | set(gitops.BOOTSTRAP_KINDS)
        if not gitops.handed_off(env):
            # With Argo CD or Flux syncing the tree, the objects it applied carry gen's labels
            # too but are the engine's to prune: gen looks only at bootstrap kinds then.
            kinds |= set(PRUNE_KINDS) | _parent_kinds(api, [m.obj for m in manifests])
        actions = []
        for group, kind in sorted(kinds):
            version = api.preferred(group)
            resource = api.resource(version, kind) if version else None
            if resource is None:
                continue
            for live in api.list(resource, selector(env)):
                # Filtered here too: a label selector the server ignored must not widen
                # what gen deletes.
                ref = ref_of(live)
                if not prunable(live, env) or ref in rendered:
                    continue
                actions.append(Action(
                    "delete", self.name, kind, ref.label, WAVE_KUBERNETES,
                    destructive=kind in DESTRUCTIVE_KINDS,
                    order=order_of(ref, resource.namespaced),
                    note="owned by gen, no longer rendered" + DELETE_NOTES.get((group, kind), ""),
                    payload={"resource": resource, "namespace": ref.namespace,
                             "name": ref.name}))
        return actions

    # -- apply ----------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        api = self._api()
        if action.kind == csr.KIND:
            return csr.approve(api, action)
        resource: Resource = action.payload["resource"]
        if action.op == "delete":
            api.delete(resource, action.payload["namespace"], action.payload["name"])
            return
        obj = self._filled(action.payload["object"])
        meta = obj["metadata"]
        if action.op == "replace":
            api.delete(resource, meta.get("namespace", ""), meta["name"])
            self._gone(api, resource, meta.get("namespace", ""), meta["name"])
        try:
            self._apply(api, resource, obj, bool(action.note))
        except KubeError as exc:
            raise exc.redacted(self._values_in(action.payload["object"])) from None
        if self.wait and obj["kind"] == "Deployment" and group_of(obj["apiVersion"]) == "apps":
            self._wait_deployment(api, resource, meta["namespace"], meta["name"])

    def _apply(self, api: Api, resource: Resource, obj: Obj, custom: bool) -> None:
        deadline = time.monotonic() + (self.wait_timeout if custom else 0)
        while True:
            try:
                api.apply(resource, obj)
                return
            except KubeError as exc:
                # A custom resource right after its CRD: the API needs a moment to serve it.
                if exc.status != 404 or time.monotonic() >= deadline:
                    raise
                time.sleep(1)

    def _gone(self, api: Api, resource: Resource, namespace: str, name: str) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while api.get(resource, namespace, name) is not None:
            if time.monotonic() >= deadline:
                raise UserError(f"kubernetes: {resource.kind} {namespace}/{name} was not "
                                f"deleted within {self.wait_timeout:.0f}s (finalizers?)",
                                "check its finalizers, then converge again")
            time.sleep(0.5)

    def _wait_deployment(self, api: Api, resource: Resource, namespace: str, name: str) -> None:
        """kubectl rollout status: observed, updated and available replicas all in."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            live = api.get(resource, namespace, name) or {}
            if deployment_ready(live):
                return
            if time.monotonic() >= deadline:
                status = live.get("status") or {}
                raise UserError(
                    f"kubernetes: Deployment {namespace}/{name} not available after "
                    f"{self.wait_timeout:.0f}s ({status.get('availableReplicas', 0)} of "
                    f"{(live.get('spec') or {}).get('replicas', 1)} replicas available)",
                    "look at its pods (kubectl describe), or converge with --no-wait")
            time.sleep(min(2.0, max(0.1, self.wait_timeout / 50)))

    def _values_in(self, obj: Obj) -> list[str]:
        """The values of the secrets an object's markers name (to keep them out of errors)."""
        names = set(MARKER.findall(json.dumps(obj)))
        return [_secret_value(name, self.secrets, self.placed) for name in sorted(names)]

    def _filled(self, obj: Obj) -> Obj:
        """Secret markers replaced by values read on this machine (the API client's host)."""
        if not _has_marker(obj):
            return obj
        filled: Obj = _fill(obj, self.secrets, self.placed)
        return filled


def object_secrets(env: Environment) -> tuple[dict[str, SecretRef], dict[str, tuple[str, ...]]]:
    """The secrets a Kubernetes object may carry, and where the others go.

    Only the operator's own `secrets:` may be filled into objects (secrets.places gives
    them every place); the pull secret, SSH keys, kubeadm join data and OpenStack passwords
    go only into the files their renderers write, so an object naming one is refused."""
    allowed = places(env)
    refs = declared(env)
    anywhere = {name: ref for name, ref in refs.items() if "*" in allowed.get(name, ())}
    return anywhere, {name: globs for name, globs in allowed.items() if name not in anywhere}


def deployment_ready(live: Obj) -> bool:
    meta, spec, status = (live.get(k) or {} for k in ("metadata", "spec", "status"))
    want = spec.get("replicas", 1)
    if "generation" in meta and status.get("observedGeneration", -1) < meta["generation"]:
        return False
    return bool(status.get("updatedReplicas", 0) >= want and
                status.get("availableReplicas", 0) >= want and
                status.get("replicas", 0) <= want)


def _fill(value: Any, secrets: dict[str, SecretRef],
          placed: Mapping[str, tuple[str, ...]] | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, secrets, placed) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, secrets, placed) for v in value]
    if isinstance(value, str):
        return MARKER.sub(lambda m: _secret_value(m.group(1), secrets, placed), value)
    return value


def _secret_value(name: str, secrets: dict[str, SecretRef],
                  placed: Mapping[str, tuple[str, ...]] | None = None) -> str:
    ref = secrets.get(name)
    if ref is None and placed and name in placed:
        raise UserError(f"kubernetes: a manifest refers to secret '{name}', which gen fills "
                        f"only in {', '.join(placed[name])}",
                        "a secret goes only where its field puts it; declare an own one "
                        "under secrets: for Kubernetes objects")
    if ref is None:
        raise UserError(f"kubernetes: a manifest refers to secret '{name}', which the "
                        "environment does not declare", "add it under secrets:")
    try:
        return read_local(ref).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"secret '{name}' is not UTF-8 text",
                        "Kubernetes object fields hold text; base64-encode binary values") from None


def _with_namespace(obj: Obj, resource: Resource) -> Obj:
    """Namespaced objects without a namespace go to `default` (kubectl would use the
    context's namespace; a render must not depend on who runs it)."""
    if resource.namespaced and not obj["metadata"].get("namespace"):
        return {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
    return obj


def _crd_resources(objs: list[Obj]) -> dict[tuple[str, str], Resource]:
    """Kinds the render's own CRDs define: unknown to the server until the CRD is applied."""
    out = {}
    for obj in objs:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or []:
            api_version = f"{spec.get('group')}/{version.get('name')}"
            out[(api_version, str(names.get("kind")))] = Resource(
                api_version, str(names.get("kind")), str(names.get("plural")),
                spec.get("scope") == "Namespaced")
    return out


def _parent_kinds(api: Api, objs: list[Obj]) -> set[tuple[str, str]]:
    """The group-kinds the live ApplySet parent recorded on the previous converge."""
    from generator.families.kubernetes import APPLYSET_ID

    kinds: set[tuple[str, str]] = set()
    for obj in objs:
        if APPLYSET_ID not in (obj["metadata"].get("labels") or {}):
            continue
        resource = api.resource("v1", "ConfigMap")
        live = api.get(resource, obj["metadata"].get("namespace", ""),
                       obj["metadata"]["name"]) if resource else None
        note = ((live or {}).get("metadata", {}).get("annotations") or {}).get(
            "applyset.kubernetes.io/contains-group-kinds", "")
        for entry in filter(None, note.split(",")):
            kind, _, group = entry.partition(".")
            kinds.add((group, kind))
    return kinds
