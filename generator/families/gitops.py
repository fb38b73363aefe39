"""The hand-off to Argo CD or Flux (`kubernetes.engine`): the bootstrap objects that point an
engine at the cluster's kustomize tree in the published rendered repo.

With `engine: argocd` the kubernetes family adds one Argo CD `Application`, with `engine: flux`
a Flux `GitRepository` and `Kustomization`, in `clusters/<c>/kubernetes/bootstrap/`. That
directory is not listed in the tree's `kustomization.yaml`, so the engine syncs everything
else and never its own bootstrap object; gen's kubernetes provider converges only these.

One `Application` per cluster rather than one `ApplicationSet` for all: gen renders, locks
and diffs one environment at a time, each cluster runs its own engine (the destination is
the in-cluster API server), and a per-cluster object keeps each environment's hand-off in
its own rendered tree and pull-request diff; an ApplicationSet would make one environment's
render depend on every other environment of the repo.
"""

from __future__ import annotations

import posixpath
from typing import Any

from generator.errors import Problem
from generator.model import Environment

Obj = dict[str, Any]
ARGOCD_API = "argoproj.io/v1alpha1"
FLUX_SOURCE_API = "source.toolkit.fluxcd.io/v1"
FLUX_KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"
IN_CLUSTER = "https://kubernetes.default.svc"
# Namespaced objects without a namespace land here, as they do when gen applies them (Argo CD;
# Flux's targetNamespace would override every object's own, so the Kustomization has none).
DESTINATION_NAMESPACE = "default"
ENGINES = {"argocd": "Argo CD", "flux": "Flux"}
# Every (group, kind) a bootstrap can hold, of either engine: the kubernetes provider looks
# for owned ones of all of them, so switching engines (or back to gen) removes the old one.
BOOTSTRAP_KINDS = (("argoproj.io", "Application"),
                   ("source.toolkit.fluxcd.io", "GitRepository"),
                   ("kustomize.toolkit.fluxcd.io", "Kustomization"))
# How often Flux looks for a new commit, and re-applies (and so repairs drift).
FLUX_SOURCE_INTERVAL = "1m"
FLUX_APPLY_INTERVAL = "10m"


def handed_off(env: Environment) -> bool:
    """Argo CD or Flux, not gen's own provider, syncs the cluster's objects."""
    return env.kubernetes.engine in ENGINES


def bootstrap_name(env: Environment) -> str:
    return f"gen-{env.name}-{env.cluster.name}"


def bootstrap_file(env: Environment) -> str:
    """The bootstrap file's path inside `clusters/<c>/kubernetes/`."""
    return f"bootstrap/{env.kubernetes.engine}.yaml"


def synced_path(env: Environment) -> str:
    """The kustomize tree's directory inside the published repo."""
    gitops = env.kubernetes.gitops
    assert gitops is not None
    return posixpath.join(gitops.path, "clusters", env.cluster.name, "kubernetes")


def bootstrap_objects(env: Environment, labels: dict[str, str]) -> list[Obj]:
    """The engine's bootstrap objects, each carrying `labels` (gen's owner labels)."""
    if env.kubernetes.engine == "argocd":
        return [argocd_application(env, labels)]
    return flux_objects(env, labels)


def _metadata(env: Environment, labels: dict[str, str]) -> Obj:
    gitops = env.kubernetes.gitops
    assert gitops is not None
    return {"name": bootstrap_name(env), "namespace": gitops.namespace, "labels": dict(labels)}


def argocd_application(env: Environment, labels: dict[str, str]) -> Obj:
    """An Argo CD Application syncing the tree into its own cluster, automatically.

    No `resources-finalizer`: deleting the Application (switching engines) leaves the
    workloads running for the next owner instead of deleting them."""
    gitops = env.kubernetes.gitops
    assert gitops is not None
    return {"apiVersion": ARGOCD_API, "kind": "Application",
            "metadata": _metadata(env, labels),
            "spec": {"project": "default",
                     "source": {"repoURL": gitops.url, "targetRevision": gitops.branch,
                                "path": synced_path(env)},
                     "destination": {"server": IN_CLUSTER,
                                     "namespace": DESTINATION_NAMESPACE},
                     "syncPolicy": {"automated": {"prune": gitops.prune,
                                                  "selfHeal": gitops.self_heal}}}}


def flux_objects(env: Environment, labels: dict[str, str]) -> list[Obj]:
    """A Flux GitRepository for the rendered repo and a Kustomization applying the tree."""
    gitops = env.kubernetes.gitops
    assert gitops is not None
    source: Obj = {"interval": FLUX_SOURCE_INTERVAL, "url": gitops.url,
                   "ref": {"branch": gitops.branch}}
    if gitops.secret_ref is not None:
        source["secretRef"] = {"name": gitops.secret_ref}
    name = bootstrap_name(env)
    return [
        {"apiVersion": FLUX_SOURCE_API, "kind": "GitRepository",
         "metadata": _metadata(env, labels), "spec": source},
        {"apiVersion": FLUX_KUSTOMIZE_API, "kind": "Kustomization",
         "metadata": _metadata(env, labels),
         "spec": {"interval": FLUX_APPLY_INTERVAL, "sourceRef": {"kind": "GitRepository",
                                                                 "name": name},
                  "path": f"./{synced_path(env)}", "prune": gitops.prune}},
    ]


def engine_notice(env: Environment) -> str:
    """What `gen plan` says about the objects it leaves to the engine (one line)."""
    engine = ENGINES[env.kubernetes.engine]
    gitops = env.kubernetes.gitops
    namespace = gitops.namespace if gitops is not None else ""
    return (f"kubernetes: cluster {env.cluster.name}: {engine} syncs the objects of "
            f"clusters/{env.cluster.name}/kubernetes/; gen converges only its bootstrap "
            f"object(s) {namespace}/{bootstrap_name(env)}")


def check(env: Environment, declares_objects: bool) -> list[Problem]:
    """What the hand-off refuses: an engine without a repo to pull, a repo nothing reads,
    an engine with nothing to sync, and settings the chosen engine has no way to honour."""
    k8s = env.kubernetes
    gitops = k8s.gitops
    problems: list[Problem] = []
    if k8s.engine in ENGINES and gitops is None:
        problems.append(Problem(
            f"kubernetes engine {k8s.engine} needs the rendered repo to pull",
            env.where(("kubernetes", "engine")),
            "add gitops: {url: https://git.example.com/infra/rendered.git, branch: main}"))
    if k8s.engine == "gen" and gitops is not None:
        problems.append(Problem(
            "kubernetes.gitops is set but engine is gen, so nothing pulls that repo",
            env.where(("kubernetes", "gitops")), "set engine: argocd or flux, or remove gitops"))
    if k8s.engine in ENGINES and not declares_objects:
        problems.append(Problem(
            f"kubernetes engine {k8s.engine} has nothing to sync: the environment declares "
            "no Kubernetes objects", env.where(("kubernetes", "engine")),
            "declare a CNI, ingress, storage, registry or apps, or remove engine"))
    if k8s.engine == "flux" and gitops is not None and not gitops.self_heal:
        problems.append(Problem(
            "Flux repairs drift at every interval and cannot be told not to",
            env.where(("kubernetes", "gitops", "selfHeal")),
            "remove selfHeal (it applies to Argo CD only)"))
    if k8s.engine == "argocd" and gitops is not None and gitops.secret_ref is not None:
        problems.append(Problem(
            "Argo CD finds a repository's credentials by its URL, not by a secretRef",
            env.where(("kubernetes", "gitops", "secretRef")),
            "remove secretRef; add the repository to Argo CD (argocd repo add, or a Secret "
            "labelled argocd.argoproj.io/secret-type: repository)"))
    return problems
