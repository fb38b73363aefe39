"""Kubernetes manifests: one kustomize tree per cluster under `clusters/<c>/kubernetes/`.

`kustomization.yaml` lists: the ApplySet parent (`applyset.yaml`), the CNI from its pinned
upstream manifest (`cni/<name>/`, only when the lock has its content), ingress-nginx, NFS
storage (the nfs-subdir-external-provisioner and its StorageClass when asked for; static
PVs otherwise), lab B's private registry and the declared applications.

Every object gen writes carries the owner labels (`owner_labels`), and the CNI's upstream
objects get them from a kustomize `labels` transformer, so the upstream file stays
byte-identical to what the lock pinned. The reconciler prunes only objects whose
`applyset.kubernetes.io/part-of` label holds this cluster's ApplySet id.

With `kubernetes.engine` argocd or flux, the same tree is rendered for the engine to pull, plus
its bootstrap objects in `bootstrap/` (gitops.py), which are all the reconciler converges.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from generator.errors import Problem, UserError
from generator.families import Pins, gitops
from generator.families.yamlout import dump_all, dump_one
from generator.model import SECRET_MARKER_BYTES, SECRET_MARKER_PREFIX, App, Environment
from generator.tree import Tree

MANAGED_BY = "app.kubernetes.io/managed-by"
ENVIRONMENT = "gen.dev/environment"
PART_OF = "applyset.kubernetes.io/part-of"
APPLYSET_ID = "applyset.kubernetes.io/id"
PARENT_NAMESPACE = "kube-system"
TOOLING = "gen/v1"
APP_NAMESPACE = "default"
INGRESS_NAMESPACE = "ingress-nginx"
NFS_NAMESPACE = "nfs-provisioner"
NFS_PROVISIONER = "k8s-sigs.io/nfs-subdir-external-provisioner"
FLANNEL_DEFAULT_NETWORK = IPv4Network("10.244.0.0/16")
# Used only when neither the environment (or its blueprint) nor the lock names the image.
DEFAULT_IMAGES = {
    "ingress-nginx": "registry.k8s.io/ingress-nginx/controller:v1.11.5",
    "nfs-subdir-external-provisioner":
        "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2",
}
Obj = dict[str, Any]


def render(env: Environment, pins: Pins) -> Tree:
    """The cluster's kustomize tree; nothing when the environment declares no objects."""
    build = _build(env, pins)
    if build is None:
        return {}
    base = f"clusters/{env.cluster.name}/kubernetes"
    tree: Tree = {f"{base}/{path}": dump_all(objs) for path, objs in build.files.items()}
    resources = ["applyset.yaml"]
    if build.cni is not None:
        name, content = build.cni
        tree.update({f"{base}/cni/{name}/{p}": c for p, c in cni_tree(env, name, content).items()})
        resources.append(f"cni/{name}")
    resources += list(build.files)
    tree[f"{base}/applyset.yaml"] = dump_all([build.parent])
    tree[f"{base}/kustomization.yaml"] = dump_one(_kustomization(resources))
    if gitops.handed_off(env):  # not in `resources`: the engine never syncs its own bootstrap
        tree[f"{base}/{gitops.bootstrap_file(env)}"] = dump_all(
            gitops.bootstrap_objects(env, owner_labels(env)))
    return tree


def built_objects(env: Environment, pins: Pins) -> dict[str, list[Obj]]:
    """Cluster name -> the objects `kubectl kustomize` builds from the tree `render` writes
    (the CNI's upstream objects with gen's labels and patch applied): what the reconciler
    converges, handed over as data so it never has to read kustomizations back. When Argo CD
    or Flux syncs the tree, only the engine's bootstrap objects."""
    build = _build(env, pins)
    if build is None:
        return {}
    if gitops.handed_off(env):
        return {env.cluster.name: gitops.bootstrap_objects(env, owner_labels(env))}
    objects = [build.parent]
    if build.cni is not None:
        objects += cni_objects(env, build.cni[0], build.upstream)
    objects += [obj for objs in build.files.values() for obj in objs]
    return {env.cluster.name: objects}


@dataclass(frozen=True, slots=True)
class _Build:
    """What one render builds: gen's own files (path -> objects), the pinned CNI manifest
    (name, upstream content) and its objects as upstream wrote them, and the ApplySet parent
    naming every member."""

    files: dict[str, list[Obj]]
    cni: tuple[str, bytes] | None
    upstream: list[Obj]
    parent: Obj


def _build(env: Environment, pins: Pins) -> _Build | None:
    k8s = env.kubernetes
    content = _cni_content(env, pins)
    files: dict[str, list[Obj]] = {}
    if k8s.ingress:
        files["ingress-nginx.yaml"] = ingress_nginx(env, pins)
    if k8s.nfs is not None and k8s.nfs.provisioner == "subdir":
        files["storage.yaml"] = nfs_provisioner(env, pins)
    if k8s.registry is not None:
        files["registry.yaml"] = registry(env, pins)
    for app in k8s.apps:
        files[f"apps/{app.name}.yaml"] = application(env, pins, app)
    if not files and content is None:
        return None
    upstream = _parse_objects(content) if content is not None else []
    cni = (k8s.cni or "cni", content) if content is not None else None
    members = [obj for objs in files.values() for obj in objs] + upstream
    return _Build(files, cni, upstream, applyset_parent(env, members))


def check(env: Environment) -> list[Problem]:
    """An application's objects may not be objects gen makes itself (the registry's
    `docker-registry` Deployment, `svc-...` Services, the ingress controller, the NFS
    provisioner) nor another application's: one would silently replace the other."""
    k8s = env.kubernetes
    pins = Pins()  # object ids do not depend on pinned digests
    makers: dict[tuple[str, str, str], str] = {}
    for what, build in (("gen's ingress controller", ingress_nginx if k8s.ingress else None),
                        ("gen's NFS provisioner", nfs_provisioner
                         if k8s.nfs is not None and k8s.nfs.provisioner == "subdir" else None),
                        ("gen's registry", registry if k8s.registry is not None else None)):
        if build is not None:
            makers.update({_object_id(obj): what for obj in build(env, pins)})
    problems: list[Problem] = []
    for i, app in enumerate(k8s.apps):
        ids = [_object_id(obj) for obj in application(env, pins, app)]
        clash = next((object_id for object_id in ids if object_id in makers), None)
        if clash is not None:
            kind, namespace, name = clash
            shown = f"{namespace}/{name}" if namespace else name
            problems.append(Problem(
                f"kubernetes app '{app.name}' makes {kind} {shown}, which "
                f"{makers[clash]} makes too", env.where(("kubernetes", "apps", i, "name")),
                "rename the app; its Service is named after its image, svc-IMAGE"))
        makers.update({object_id: f"app '{app.name}'" for object_id in ids})
    declares = bool(k8s.ingress or _dynamic(env) or k8s.registry is not None or k8s.apps
                    or k8s.cni_manifest is not None)
    return problems + gitops.check(env, declares)


def _object_id(obj: Obj) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


# --- ownership -----------------------------------------------------------------------------

def applyset_parent_name(env: Environment) -> str:
    return f"gen-{env.name}-{env.cluster.name}"


def applyset_id(env: Environment) -> str:
    """kubectl's ApplySet id of the parent ConfigMap: base64url(sha256(name.ns.kind.group))."""
    key = f"{applyset_parent_name(env)}.{PARENT_NAMESPACE}.ConfigMap."
    digest = base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).rstrip(b"=")
    return f"applyset-{digest.decode()}-v1"


def owner_labels(env: Environment) -> dict[str, str]:
    """The inventory contract: every object gen renders into a cluster carries these."""
    return {MANAGED_BY: "gen", ENVIRONMENT: env.name, PART_OF: applyset_id(env)}


def applyset_parent(env: Environment, members: list[Obj]) -> Obj:
    """The ApplySet parent: names the member kinds and namespaces, so pruning can find them."""
    kinds = sorted({_group_kind(o) for o in members})
    namespaces = sorted({o["metadata"]["namespace"] for o in members
                         if o["metadata"].get("namespace") not in (None, PARENT_NAMESPACE)})
    labels = {MANAGED_BY: "gen", ENVIRONMENT: env.name, APPLYSET_ID: applyset_id(env)}
    annotations = {"applyset.kubernetes.io/tooling": TOOLING,
                   "applyset.kubernetes.io/contains-group-kinds": ",".join(kinds)}
    if namespaces:
        annotations["applyset.kubernetes.io/additional-namespaces"] = ",".join(namespaces)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": applyset_parent_name(env), "namespace": PARENT_NAMESPACE,
                         "labels": labels, "annotations": annotations}}


def _group_kind(obj: Obj) -> str:
    api = obj["apiVersion"]
    return f"{obj['kind']}.{api.split('/')[0]}" if "/" in api else obj["kind"]


def _obj(env: Environment, api: str, kind: str, name: str, namespace: str | None = None,
         labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         **body: Any) -> Obj:
    metadata: Obj = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = {**(labels or {}), **owner_labels(env)}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": api, "kind": kind, "metadata": metadata, **body}


def _kustomization(resources: list[str], **extra: Any) -> Obj:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            **extra, "resources": resources}


def image(env: Environment, pins: Pins, name: str) -> str:
    """The locked digest form (`registry/repository@sha256:...`) when pinned, else the
    environment's tag, else gen's default: what a node pulls, so a mirror can serve it."""
    key, ref = image_key(env, name)
    return pins.images.get(key, ref)


def image_key(env: Environment, name: str) -> tuple[str, str]:
    """(the lock's `image/<key>`, the reference rendered unpinned) for an image a manifest
    names: an `artifacts.images` name keys itself; a reference written in place, or gen's
    default for an add-on, is its own key, so the lock pins it all the same."""
    if name in dict(env.images):
        return name, env.image(name)
    ref = DEFAULT_IMAGES.get(name, name)
    return ref, ref


@dataclass(frozen=True, slots=True)
class WorkloadImage:
    """An image a rendered workload runs: where the environment asks for it, and its key."""

    path: tuple[str | int, ...]  # the field that names it (located at its nearest ancestor)
    what: str  # "app 'test-was'"
    key: str
    ref: str


def workload_images(env: Environment) -> list[WorkloadImage]:
    """Every image the cluster's manifests run (the CNI's upstream file aside: it is pinned
    as a whole by its sha256), in the order the manifests name them."""
    k8s = env.kubernetes
    named: list[tuple[tuple[str | int, ...], str, str]] = []
    if k8s.ingress:
        named.append((("kubernetes", "ingress", *(("image",) if k8s.ingress_image else ())),
                      "the ingress controller", k8s.ingress_image or "ingress-nginx"))
    if k8s.nfs is not None and k8s.nfs.provisioner == "subdir":
        named.append((("kubernetes", "storage", "nfs", "image"), "the NFS provisioner",
                      k8s.nfs.image))
    if k8s.registry is not None:
        named.append((("kubernetes", "registry", "image"), "the registry", k8s.registry.image))
    named += [(("kubernetes", "apps", i, "image"), f"app '{app.name}'", app.image)
              for i, app in enumerate(k8s.apps)]
    return [WorkloadImage(path, what, *image_key(env, name)) for path, what, name in named]


# --- CNI -----------------------------------------------------------------------------------

def _cni_content(env: Environment, pins: Pins) -> bytes | None:
    """The pinned upstream manifest from gen's store; never fetched while rendering."""
    ref = env.kubernetes.cni_manifest
    content = pins.manifests.get(ref.name) if ref is not None else None
    if ref is not None and content is not None and SECRET_MARKER_BYTES.search(content):
        # An upstream manifest is not gen's output: a marker in it would make the
        # kubernetes provider publish a secret into whatever object it sits in.
        raise UserError(f"kubernetes: the CNI manifest {ref.name} carries a secret marker "
                        f"({SECRET_MARKER_PREFIX}...@@), which gen never fills in an upstream "
                        "manifest", "use a manifest without markers")
    return content


def cni_tree(env: Environment, name: str, content: bytes) -> Tree:
    """The upstream file verbatim, plus a kustomization adding gen's labels (and the pod
    network when it differs from flannel's default)."""
    upstream = f"kube-{name}.yml"
    extra: Obj = {"labels": [{"pairs": owner_labels(env), "includeSelectors": False}]}
    patch = _cni_patch(env, name)
    if patch is not None:
        extra["patches"] = [{"patch": dump_one(patch).decode()}]
    return {upstream: content, "kustomization.yaml": dump_one(_kustomization([upstream],
                                                                           **extra))}


def cni_objects(env: Environment, name: str, upstream: list[Obj]) -> list[Obj]:
    """The upstream objects as `cni_tree`'s kustomization builds them: gen's owner labels
    added to each object's own labels (not selectors or templates), the patch merged."""
    patch = _cni_patch(env, name)
    out = []
    for obj in upstream:
        meta = {**obj["metadata"], "labels": {**(obj["metadata"].get("labels") or {}),
                                              **owner_labels(env)}}
        built = {**obj, "metadata": meta}
        if patch is not None and (obj["kind"], meta.get("name"), meta.get("namespace")) == (
                patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]):
            built["data"] = {**(obj.get("data") or {}), **patch["data"]}
        out.append(built)
    return out


def _cni_patch(env: Environment, name: str) -> Obj | None:
    """Flannel's net-conf.json for a pod network other than flannel's default. No trailing
    newline: kustomize drops it from a patch's block scalar, and the reconciler must apply
    exactly what `kubectl kustomize` builds."""
    pod_network = env.cluster.cluster_network[0].cidr
    if name != "flannel" or pod_network == FLANNEL_DEFAULT_NETWORK:
        return None
    net_conf = json.dumps({"Network": str(pod_network), "EnableNFTables": False,
                           "Backend": {"Type": "vxlan"}}, indent=2)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
            "data": {"net-conf.json": net_conf}}


def _parse_objects(content: bytes) -> list[Obj]:
    """The upstream objects (for the ApplySet parent's kinds and namespaces), read with
    PyYAML's libyaml parser where built (a flannel-sized file takes ~80 ms in pure Python)."""
    import yaml

    docs: Any = yaml.load_all(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return [d for d in docs if isinstance(d, dict) and "kind" in d and "metadata" in d]


# --- ingress-nginx -------------------------------------------------------------------------

def ingress_nginx(env: Environment, pins: Pins) -> list[Obj]:
    """A compact, faithful subset of ingress-nginx's bare-metal deploy.yaml (controller,
    RBAC, NodePort Service, IngressClass); the admission webhook and its jobs are left out."""
    ns, name = INGRESS_NAMESPACE, "ingress-nginx"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    controller = {**labels, "app.kubernetes.io/component": "controller"}
    k8s = env.kubernetes
    controller_image = image(env, pins, k8s.ingress_image or "ingress-nginx")
    return [
        _obj(env, "v1", "Namespace", ns, labels=labels),
        _obj(env, "v1", "ServiceAccount", name, ns, labels=controller,
             automountServiceAccountToken=True),
        _obj(env, "v1", "ConfigMap", f"{name}-controller", ns, labels=controller,
             data={"allow-snippet-annotations": "false"}),
        _obj(env, "rbac.authorization.k8s.io/v1", "ClusterRole", name, labels=labels,
             rules=_ingress_cluster_rules()),
        _obj(env, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", name, labels=labels,
             roleRef=_ref("ClusterRole", name), subjects=[_sa(name, ns)]),
        _obj(env, "rbac.authorization.k8s.io/v1", "Role", name, ns, labels=controller,
             rules=_ingress_rules()),
        _obj(env, "rbac.authorization.k8s.io/v1", "RoleBinding", name, ns, labels=controller,
             roleRef=_ref("Role", name), subjects=[_sa(name, ns)]),
        _obj(env, "v1", "Service", f"{name}-controller", ns, labels=controller, spec={
            "type": "NodePort", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
            "selector": controller, "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http",
                 "appProtocol": "http", "nodePort": k8s.ingress_http_nodeport},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https",
                 "appProtocol": "https", "nodePort": k8s.ingress_https_nodeport}]}),
        _obj(env, "apps/v1", "Deployment", f"{name}-controller", ns, labels=controller, spec={
            "replicas": 1, "revisionHistoryLimit": 10, "minReadySeconds": 0,
            "selector": {"matchLabels": controller},
            "template": {"metadata": {"labels": controller},
                         "spec": _ingress_pod(controller_image, name)}}),
        _obj(env, "networking.k8s.io/v1", "IngressClass", "nginx", labels=controller,
             spec={"controller": "k8s.io/ingress-nginx"}),
    ]


def _ref(kind: str, name: str) -> Obj:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def _sa(name: str, namespace: str) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _rule(groups: list[str], resources: list[str], verbs: list[str], **extra: Any) -> Obj:
    return {"apiGroups": groups, "resources": resources, **extra, "verbs": verbs}


def _ingress_cluster_rules() -> list[Obj]:
    watch = ["list", "watch"]
    return [
        _rule([""], ["configmaps", "endpoints", "nodes", "pods", "secrets", "namespaces"],
              watch),
        _rule(["coordination.k8s.io"], ["leases"], watch),
        _rule([""], ["nodes"], ["get"]),
        _rule([""], ["services"], ["get", *watch]),
        _rule(["networking.k8s.io"], ["ingresses"], ["get", *watch]),
        _rule([""], ["events"], ["create", "patch"]),
        _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
        _rule(["networking.k8s.io"], ["ingressclasses"], ["get", *watch]),
        _rule(["discovery.k8s.io"], ["endpointslices"], [*watch, "get"]),
    ]


def _ingress_rules() -> list[Obj]:
    watch = ["list", "watch"]
    return [
        _rule([""], ["namespaces"], ["get"]),
        _rule([""], ["configmaps", "pods", "secrets", "endpoints"], ["get", *watch]),
        _rule([""], ["services"], ["get", *watch]),
        _rule(["networking.k8s.io"], ["ingresses"], ["get", *watch]),
        _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
        _rule(["networking.k8s.io"], ["ingressclasses"], ["get", *watch]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "update"],
              resourceNames=["ingress-nginx-leader"]),
        _rule(["coordination.k8s.io"], ["leases"], ["create"]),
        _rule([""], ["events"], ["create", "patch"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], [*watch, "get"]),
    ]


def _ingress_pod(ref: str, name: str) -> Obj:
    env_from_field = [{"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                      for var, path in (("POD_NAME", "metadata.name"),
                                        ("POD_NAMESPACE", "metadata.namespace"))]
    probe = {"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
             "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1,
             "successThreshold": 1, "failureThreshold": 5}
    return {
        "dnsPolicy": "ClusterFirst", "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": name, "terminationGracePeriodSeconds": 300,
        "containers": [{
            "name": "controller", "image": ref, "imagePullPolicy": "IfNotPresent",
            "args": ["/nginx-ingress-controller", "--election-id=ingress-nginx-leader",
                     "--controller-class=k8s.io/ingress-nginx", "--ingress-class=nginx",
                     "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller"],
            "env": [*env_from_field,
                    {"name": "LD_PRELOAD", "value": "/usr/local/lib/libmimalloc.so"}],
            "lifecycle": {"preStop": {"exec": {"command": ["/wait-shutdown"]}}},
            "livenessProbe": probe, "readinessProbe": {**probe, "failureThreshold": 3},
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                      {"name": "https", "containerPort": 443, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 101,
                "readOnlyRootFilesystem": False, "seccompProfile": {"type": "RuntimeDefault"},
                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
        }],
    }


# --- NFS storage ---------------------------------------------------------------------------

def _nfs_server(env: Environment) -> str:
    nfs = env.kubernetes.nfs
    return str(env.node(nfs.server).ip) if nfs is not None else ""


def _quantity(size_bytes: int) -> str:
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def _dynamic(env: Environment) -> bool:
    nfs = env.kubernetes.nfs
    return nfs is not None and nfs.provisioner == "subdir"


def volume(env: Environment, short: str, size_bytes: int, nfs_path: str,
           labels: dict[str, str]) -> list[Obj]:
    """A claim `pvc-<short>`: bound to the static NFS PV `pv-<short>` (lab B), or provisioned
    from the StorageClass in the same directory (subdir provisioner, pathPattern)."""
    size = _quantity(size_bytes)
    access = ["ReadWriteMany"]
    if _dynamic(env):
        nfs = env.kubernetes.nfs
        assert nfs is not None
        sub = nfs_path.removeprefix(nfs.path.rstrip("/") + "/").strip("/") or f"pvc-{short}"
        return [_obj(env, "v1", "PersistentVolumeClaim", f"pvc-{short}", APP_NAMESPACE,
                     labels=labels, annotations={"nfs.io/storage-path": sub}, spec={
                         "accessModes": access, "storageClassName": nfs.storage_class,
                         "resources": {"requests": {"storage": size}}})]
    # Static binding: an empty class keeps a default StorageClass from grabbing the claim.
    return [
        _obj(env, "v1", "PersistentVolume", f"pv-{short}", labels=labels, spec={
            "capacity": {"storage": size}, "accessModes": access,
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "nfs": {"server": _nfs_server(env), "path": nfs_path}}),
        _obj(env, "v1", "PersistentVolumeClaim", f"pvc-{short}", APP_NAMESPACE, labels=labels,
             spec={"accessModes": access, "storageClassName": "", "volumeName": f"pv-{short}",
                   "resources": {"requests": {"storage": size}}}),
    ]


def nfs_provisioner(env: Environment, pins: Pins) -> list[Obj]:
    """nfs-subdir-external-provisioner (its upstream deploy/ objects) and its StorageClass."""
    nfs = env.kubernetes.nfs
    assert nfs is not None
    ns, name = NFS_NAMESPACE, "nfs-client-provisioner"
    labels = {"app": name}
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        _obj(env, "v1", "Namespace", ns),
        _obj(env, "v1", "ServiceAccount", name, ns, labels=labels),
        _obj(env, rbac, "ClusterRole", f"{name}-runner", rules=[
            _rule([""], ["nodes"], ["get", "list", "watch"]),
            _rule([""], ["persistentvolumes"], ["get", "list", "watch", "create", "delete"]),
            _rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "update"]),
            _rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
            _rule([""], ["events"], ["create", "update", "patch"])]),
        _obj(env, rbac, "ClusterRoleBinding", f"run-{name}",
             subjects=[_sa(name, ns)], roleRef=_ref("ClusterRole", f"{name}-runner")),
        _obj(env, rbac, "Role", f"leader-locking-{name}", ns, rules=[
            _rule([""], ["endpoints"], ["get", "list", "watch", "create", "update", "patch"])]),
        _obj(env, rbac, "RoleBinding", f"leader-locking-{name}", ns,
             subjects=[_sa(name, ns)], roleRef=_ref("Role", f"leader-locking-{name}")),
        _obj(env, "apps/v1", "Deployment", name, ns, labels=labels, spec={
            "replicas": 1, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": name,
                "containers": [{
                    "name": name, "image": image(env, pins, nfs.image),
                    "volumeMounts": [{"name": "nfs-client-root",
                                      "mountPath": "/persistentvolumes"}],
                    "env": [{"name": "PROVISIONER_NAME", "value": NFS_PROVISIONER},
                            {"name": "NFS_SERVER", "value": _nfs_server(env)},
                            {"name": "NFS_PATH", "value": nfs.path}]}],
                "volumes": [{"name": "nfs-client-root",
                             "nfs": {"server": _nfs_server(env), "path": nfs.path}}]}}}),
        _obj(env, "storage.k8s.io/v1", "StorageClass", nfs.storage_class,
             provisioner=NFS_PROVISIONER, reclaimPolicy="Retain",
             parameters={"archiveOnDelete": "false",
                         "pathPattern": "${.PVC.annotations.nfs.io/storage-path}"}),
    ]


# --- registry and applications -------------------------------------------------------------

def _workload(env: Environment, name: str, ref: str, replicas: int, port: int,
              claim: str | None, mount_path: str | None) -> Obj:
    labels = {"app": name}
    container: Obj = {"name": name, "image": ref,
                      "ports": [{"containerPort": port, "protocol": "TCP"}]}
    pod: Obj = {"containers": [container]}
    if claim is not None and mount_path is not None:
        container["volumeMounts"] = [{"name": "data", "mountPath": mount_path}]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return _obj(env, "apps/v1", "Deployment", name, APP_NAMESPACE, labels=labels, spec={
        "replicas": replicas, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod}})


def _service(env: Environment, name: str, app: str, port: int) -> Obj:
    return _obj(env, "v1", "Service", name, APP_NAMESPACE, labels={"app": app}, spec={
        "selector": {"app": app},
        "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]})


def _ingress(env: Environment, name: str, host: str, service: str, port: int,
             annotations: dict[str, str] | None = None) -> Obj:
    backend = {"service": {"name": service, "port": {"number": port}}}
    return _obj(env, "networking.k8s.io/v1", "Ingress", name, APP_NAMESPACE,
                labels={"app": name}, annotations=annotations, spec={
                    "ingressClassName": "nginx",
                    "rules": [{"host": host, "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend}]}}]})


def registry(env: Environment, pins: Pins) -> list[Obj]:
    """Lab B's private registry: storage, Deployment, Service, Ingress without a body limit."""
    reg = env.kubernetes.registry
    assert reg is not None
    name, port = "docker-registry", 5000
    return [
        *volume(env, name, reg.size_bytes, reg.nfs_path, {"app": name}),
        _workload(env, name, image(env, pins, reg.image), 1, port, f"pvc-{name}",
                  "/var/lib/registry"),
        _service(env, f"svc-{name}", name, port),
        # Image layers are large: "0" lifts nginx's request body limit for pushes.
        _ingress(env, name, reg.host, f"svc-{name}", port,
                 {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
    ]


def service_name(env: Environment, app: App) -> str:
    """Lab B names a Service after its image (`svc-tomcat`); the app name if that collides."""
    base = app.image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    clash = sum(1 for a in env.kubernetes.apps if a.image == app.image) > 1
    return f"svc-{app.name if clash else base}"


def application(env: Environment, pins: Pins, app: App) -> list[Obj]:
    """An application of lab B's shape: NFS-backed claim, Deployment, Service, Ingress."""
    short = app.name.replace("-", "")
    claim = f"pvc-{short}" if app.size_bytes and app.nfs_path else None
    objs: list[Obj] = []
    if claim is not None:
        objs += volume(env, short, app.size_bytes or 0, app.nfs_path or "", {"app": app.name})
    objs.append(_workload(env, app.name, image(env, pins, app.image), app.replicas, app.port,
                          claim, app.mount_path))
    objs.append(_service(env, service_name(env, app), app.name, app.port))
    if app.host:
        objs.append(_ingress(env, app.name, app.host, service_name(env, app), app.port))
    return objs
