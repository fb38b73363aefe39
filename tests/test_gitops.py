"""The hand-off to Argo CD and Flux (`kubernetes.engine`, docs/gitops.md).

The bootstrap objects are validated against the engines' own published CRD schemas
(tests/schemas/, source and commit in its README), strictly: an unknown field fails, as it
would with the API server's strict field validation. The kubernetes provider is run against
kmock (the kube stand-in of tests/test_reconcile_kubernetes.py) with the engines' kinds
served, to show it converges only the bootstrap object and leaves the rest to the engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gitops_env
import jsonschema
import pytest
import test_validation as runner
import yaml
from gitops_env import RENDERED_URL, hand_off
from test_reconcile_kubernetes import (
    Kube,
    converge,
    desired_of,
    kube,  # noqa: F401  (the kmock fixture `cluster` builds on)
    names,
    owned_configmap,
    settings,
)

from generator.errors import DestructiveNotApproved
from generator.pipeline import render_environment
from generator.reconcile import kubernetes as k
from generator.reconcile.plan import Desired, build_plan, check_approval

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "tests" / "schemas"
BASE = "clusters/k8s/kubernetes"
CRDS = {("argoproj.io/v1alpha1", "Application"): "argocd/application-crd.yaml",
        ("source.toolkit.fluxcd.io/v1", "GitRepository"):
            "flux/source.toolkit.fluxcd.io_gitrepositories.yaml",
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"):
            "flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml"}


# --- the published schemas -------------------------------------------------------------------

def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever the CRD lists its fields (the API
    server prunes or, with strict field validation, refuses them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and \
            not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((SCHEMAS / CRDS[(api_version, kind)]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    version = api_version.split("/")[1]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{kind} {api_version} is not served by the vendored CRD"
    schema = strict(served[version]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
                  for e in validator.iter_errors(obj))


def test_vendored_crds_are_the_upstream_files_the_readme_names() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    for name in CRDS.values():
        digest = hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest()
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        assert f"`{digest}`" in row, f"{name} changed: update tests/schemas/README.md"
        assert re.search(r"/blob/[0-9a-f]{40}/", row), f"{name}: the README names no commit"


# --- rendering -------------------------------------------------------------------------------

def render(repo: Path) -> dict[str, bytes]:
    return render_environment("env/k8s-lab", cwd=repo).tree


def bootstrap(repo: Path, engine: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(render(repo)[f"{BASE}/bootstrap/{engine}.yaml"])
    return [d for d in docs if d]


def test_argocd_application_is_valid_for_argo_cds_crd(repo: Path) -> None:
    gitops_env.argocd(repo)
    [app] = bootstrap(repo, "argocd")
    assert crd_errors(app) == []
    assert app["metadata"]["namespace"] == "argocd"
    assert app["spec"]["source"] == {"repoURL": RENDERED_URL, "targetRevision": "main",
                                     "path": BASE}
    assert app["spec"]["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True}}
    assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"


def test_flux_objects_are_valid_for_fluxs_crds(repo: Path) -> None:
    gitops_env.flux(repo)
    source, apply = bootstrap(repo, "flux")
    assert [crd_errors(source), crd_errors(apply)] == [[], []]
    assert (source["kind"], apply["kind"]) == ("GitRepository", "Kustomization")
    assert source["spec"]["url"] == "ssh://git@git.example.com/infra/rendered-k8s-lab.git"
    assert source["spec"]["ref"] == {"branch": "rendered/k8s-lab"}
    assert source["spec"]["secretRef"] == {"name": "rendered-repo-key"}
    assert apply["spec"]["sourceRef"] == {"kind": "GitRepository",
                                          "name": source["metadata"]["name"]}
    assert apply["spec"]["path"] == f"./{BASE}" and apply["spec"]["prune"] is True
    assert {o["metadata"]["namespace"] for o in (source, apply)} == {"flux-system"}


def test_the_strict_schemas_refuse_what_the_engines_refuse(repo: Path) -> None:
    """The validation above can fail: a misspelt field, a wrong type, a missing field."""
    gitops_env.argocd(repo)
    [app] = bootstrap(repo, "argocd")
    app["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    app["spec"]["source"]["targetRevision"] = 3
    del app["spec"]["destination"]
    errors = "\n".join(crd_errors(app))
    assert "'selfheal' was unexpected" in errors
    assert "spec.source.targetRevision: 3 is not of type 'string'" in errors
    assert "'destination' is a required property" in errors


def test_prune_self_heal_path_and_namespace_follow_the_environment(repo: Path) -> None:
    settings_ = {"url": RENDERED_URL, "branch": "rendered/k8s-lab", "path": "envs/k8s-lab",
                 "namespace": "gitops", "prune": False, "selfHeal": False}
    hand_off(repo, "argocd", settings_)
    [app] = bootstrap(repo, "argocd")
    assert crd_errors(app) == []
    assert app["spec"]["source"]["path"] == f"envs/k8s-lab/{BASE}"
    assert app["spec"]["source"]["targetRevision"] == "rendered/k8s-lab"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": False}
    assert app["metadata"]["namespace"] == "gitops"


def test_the_engine_never_syncs_its_own_bootstrap(repo: Path, tmp_path: Path) -> None:
    """The bootstrap file sits in the tree the engine pulls but its kustomization does not
    list it: `kubectl kustomize` (what Argo CD and Flux run) builds gen's objects only."""
    gitops_env.argocd(repo)
    tree = render(repo)
    out = tmp_path / "out"
    for path, content in tree.items():
        if path.startswith(BASE):
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(content)
    built = subprocess.run(["kubectl", "kustomize", str(out / BASE)], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(built) if d}
    assert "Deployment" in kinds and "Application" not in kinds


# --- bad input: one located line ------------------------------------------------------------

LINE = f"{gitops_env.ENV_FILE}:53"
URL_HINT = ("(write it like https://git.example.com/infra/rendered.git or "
            "ssh://git@git.example.com/infra/rendered.git: scheme https, ssh or git, no password "
            "or token (the engine holds the credentials), no '.' or '..' parts, query or "
            "fragment)")
# Model checks run after the document rules, whose warnings come first.
WARNING = (f"warning: {gitops_env.ENV_FILE}:33:3: at nodes: a single control-plane node has no "
           "etcd redundancy (use 3 masters for anything but a lab)")
PATH_HINT = ("(write it like pxelinux.0 or efi/grubx64.efi: no leading '/', no '.' or '..' "
             "parts, only letters, digits and ._+@-)")


def _url_case(name: str, url: str, shown: str) -> dict[str, Any]:
    return {"id": name, "raw": f"  gitops: {{url: {url}}}", "engine": "argocd",
            "stderr": [f"{gitops_env.ENV_FILE}:54:17: at kubernetes.gitops.url: {shown} is not a "
                       f"git repository URL "
                       f"gen accepts {URL_HINT}"]}


BAD = [
    {"id": "mistyped-engine", "engine": "argo", "stderr": [
        f"{LINE}:11: at kubernetes.engine: 'argo' is not one of: gen, argocd, flux "
        "(pick one of those values)"]},
    {"id": "engine-without-repo", "engine": "flux", "stderr": [WARNING,
        f"{LINE}:11: at kubernetes.engine: kubernetes engine flux needs the rendered repo to "
        "pull (add gitops: {url: https://git.example.com/infra/rendered.git, branch: main})"]},
    {"id": "repo-nothing-reads", "engine": "gen", "raw": f"  gitops: {{url: {RENDERED_URL}}}",
     "stderr": [WARNING, f"{gitops_env.ENV_FILE}:54:11: at kubernetes.gitops: "
                "kubernetes.gitops is set but engine is gen, so nothing pulls that repo (set "
                "engine: argocd or flux, or remove gitops)"]},
    _url_case("yaml-injection-in-url",
              "\"https://git.example.com/r.git\\nkind: Secret\"",
              "'https://git.example.com/r.git\\nkind: Secret'"),
    _url_case("file-url", "'file:///etc/shadow'", "'file:///etc/shadow'"),
    _url_case("token-in-url", "'https://x:ghp_token@git.example.com/r.git'",
              "'https://x:ghp_token@git.example.com/r.git'"),
    _url_case("scp-like-url", "'git@git.example.com:infra/r.git'",
              "'git@git.example.com:infra/r.git'"),
    _url_case("dotdot-in-url", "'https://git.example.com/infra/../r.git'",
              "'https://git.example.com/infra/../r.git'"),
    {"id": "path-escapes", "engine": "flux",
     "raw": f"  gitops: {{url: {RENDERED_URL}, path: ../../etc}}",
     "stderr": [f"{gitops_env.ENV_FILE}:54:{len(RENDERED_URL) + 25}: at kubernetes.gitops.path: "
                f"'../../etc' is not a relative normalised path {PATH_HINT}"]},
    {"id": "path-absolute", "engine": "flux",
     "raw": f"  gitops: {{url: {RENDERED_URL}, path: /srv/rendered}}",
     "stderr": [f"{gitops_env.ENV_FILE}:54:{len(RENDERED_URL) + 25}: at kubernetes.gitops.path: "
                f"'/srv/rendered' is not a relative normalised path {PATH_HINT}"]},
    {"id": "branch-option", "engine": "argocd",
     "raw": f"  gitops: {{url: {RENDERED_URL}, branch: --upload-pack=x}}",
     "stderr": [f"{gitops_env.ENV_FILE}:54:{len(RENDERED_URL) + 27}: at kubernetes.gitops.branch: "
                "'--upload-pack=x' is not a git branch name (write a branch name like main or "
                "rendered/lab: letters, digits and ._/-, no '..', '//' or '.lock', not ending in "
                "'/' or '.')"]},
    {"id": "flux-self-heal-off", "engine": "flux",
     "raw": f"  gitops: {{url: {RENDERED_URL}, selfHeal: false}}",
     "stderr": [WARNING, f"{gitops_env.ENV_FILE}:54:{len(RENDERED_URL) + 29}: at "
                "kubernetes.gitops.selfHeal:"
                " Flux repairs drift at every interval and cannot be told not to (remove selfHeal"
                " (it applies to Argo CD only))"]},
]


@pytest.mark.parametrize("case", BAD, ids=[c["id"] for c in BAD])
def test_bad_hand_off_is_one_located_line(case: dict[str, Any], repo: Path) -> None:
    """`gen validate` and `gen render` both exit 1 with exactly this line, writing nothing."""
    runner.trim(repo)
    hand_off(repo, case["engine"], raw=case.get("raw"))
    runner.test_bad_blueprint({"id": case["id"], "env": "k8s-lab", "edits": [],
                               "stderr": case["stderr"]}, repo)


# --- the kubernetes provider: only the bootstrap object --------------------------------------

def serve_engine_kinds(cluster: Kube) -> None:
    """Discovery for Argo CD's and Flux's kinds, as their CRDs make the API server serve."""
    docs = [{"kind": "APIResourceList", "groupVersion": api_version,
             "resources": [{"name": f"{kind.lower()}s", "singularName": kind.lower(),
                            "namespaced": True, "kind": kind,
                            "verbs": ["create", "delete", "get", "list", "patch", "update"]}]}
            for api_version, kind in CRDS]
    cluster.emulator.resources.load_data(json.dumps(docs))


def scratch(tmp_path: Path, name: str, engine: str | None) -> Path:
    """A fresh copy of the inputs, lab B handed to `engine` (kept with gen when None)."""
    target = tmp_path / name
    for part in ("environments", "blueprints"):
        shutil.copytree(ROOT / part, target / part)
    if engine is not None:
        getattr(gitops_env, engine)(target)
    return target


@pytest.fixture
def cluster(kube: Kube) -> Kube:  # noqa: F811
    """kmock serving Argo CD's and Flux's kinds too."""
    serve_engine_kinds(kube)
    return kube


def desired(repo: Path) -> Desired:
    return desired_of(render_environment("env/k8s-lab", cwd=repo).loaded.model)


def writes(cluster: Kube) -> set[tuple[str, str]]:
    """(method, path) of every request that changed something."""
    return {(r.method.value, r.url.path) for r in cluster.requests()
            if r.method.value in ("PATCH", "POST", "PUT", "DELETE")}


def exists(cluster: Kube, path: str) -> bool:
    try:
        return bool(cluster.call("GET", path))
    except k.KubeError as exc:
        assert exc.status == 404, exc
        return False


APPLICATION = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/gen-k8s-lab-k8s"


def test_provider_converges_only_the_bootstrap_object(cluster: Kube, tmp_path: Path) -> None:
    want = desired(scratch(tmp_path, "argocd", "argocd"))
    # An object Argo CD applied from the tree carries gen's owner labels too; with --prune,
    # gen must still leave it to the engine.
    synced = owned_configmap(want, "synced-by-argocd")
    cluster.call("POST", "/api/v1/namespaces/default/configmaps", synced)
    before = writes(cluster)
    config = settings(cluster.kubeconfig, prune=True)
    plan = converge(want, config, tmp_path / "state")
    assert names(plan) == [("create", "Application", "argocd/gen-k8s-lab-k8s")]
    assert plan.notices == (
        "kubernetes: cluster k8s: Argo CD syncs the objects of clusters/k8s/kubernetes/; gen "
        "converges only its bootstrap object(s) argocd/gen-k8s-lab-k8s",)
    assert {path for _, path in writes(cluster) - before} <= {
        APPLICATION, APPLICATION.rsplit("/", 1)[0]}
    assert cluster.call("GET", APPLICATION)["spec"]["source"]["path"] == BASE
    assert exists(cluster, "/api/v1/namespaces/default/configmaps/synced-by-argocd")
    assert not exists(cluster, "/apis/apps/v1/namespaces/default/deployments/test-was")
    assert build_plan(want, config).actions == ()


def test_cli_plan_says_the_rest_is_the_engines(cluster: Kube, tmp_path: Path) -> None:
    from clirun import gen

    repo = scratch(tmp_path, "flux", "flux")
    flags = ("--provider", "kubernetes", "--kubeconfig", str(cluster.kubeconfig))
    plan = gen("plan", "env/k8s-lab", *flags, "--detailed-exitcode", cwd=repo)
    assert plan.code == 2, plan.err
    assert "Plan: 2 to add, 0 to change, 0 to replace, 0 to destroy." in plan.out
    said = [line for line in (plan.out + plan.err).splitlines() if "Flux syncs" in line]
    assert len(said) == 1 and said[0].endswith(
        "kubernetes: cluster k8s: Flux syncs the objects of clusters/k8s/kubernetes/; gen "
        "converges only its bootstrap object(s) flux-system/gen-k8s-lab-k8s"), said


def test_engine_objects_are_pruned_again_once_gen_syncs(cluster: Kube, tmp_path: Path) -> None:
    """The same owned object is gen's to prune when the engine is gen (so the test above
    proves the hand-off, not a selector that never matches)."""
    want = desired(scratch(tmp_path, "gen", None))
    cluster.call("POST", "/api/v1/namespaces/default/configmaps",
              owned_configmap(want, "synced-by-argocd"))
    plan = build_plan(want, settings(cluster.kubeconfig, prune=True))
    assert ("delete", "ConfigMap", "default/synced-by-argocd") in names(plan)
    assert len(plan.actions) > 10 and not plan.notices


def test_switching_engines_replaces_the_bootstrap(cluster: Kube, tmp_path: Path) -> None:
    config = settings(cluster.kubeconfig, prune=True)
    converge(desired(scratch(tmp_path, "argocd", "argocd")), config, tmp_path / "state")
    plan = converge(desired(scratch(tmp_path, "flux", "flux")), config, tmp_path / "state")
    assert sorted(names(plan)) == [
        ("create", "GitRepository", "flux-system/gen-k8s-lab-k8s"),
        ("create", "Kustomization", "flux-system/gen-k8s-lab-k8s"),
        ("delete", "Application", "argocd/gen-k8s-lab-k8s")]
    assert not exists(cluster, APPLICATION)
    # Back to gen: Flux garbage-collects what a pruning Kustomization applied when it goes,
    # so removing it is destructive.
    plan = build_plan(desired(scratch(tmp_path, "gen", None)), config)
    [gone] = [a for a in plan.actions if a.kind == "Kustomization"]
    assert gone.op == "delete" and gone.destructive
    assert gone.note.endswith("Flux then deletes every object it applied (prune: true)")
    with pytest.raises(DestructiveNotApproved):
        check_approval(plan, config)


# --- publishing: the CI template that feeds the engine ---------------------------------------

PUBLISH_STEPS = ("Validate", "Clone the published branch", "Render with the committed lock "
                 "and commit", "Push")


def publish(site: Path, rendered_repo: Path) -> None:
    """The steps of ci/github/gen-publish.yml a runner executes after checkout, with bash as
    the runner runs them, on a fresh runner (no rendered/ left from a previous run). The
    deploy-key step is left out: the rendered repo here is a local bare repo."""
    from ruamel.yaml import YAML
    from test_diff_git import GIT_ENV

    workflow = YAML(typ="safe").load((ROOT / "ci/github/gen-publish.yml").read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["publish"]["steps"]}
    shutil.rmtree(site / "rendered", ignore_errors=True)
    env = {**os.environ, **GIT_ENV, "ENV": "lab", "GEN_RENDERED_REPO": str(rendered_repo)}
    for name in PUBLISH_STEPS:
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", steps[name]["run"]],
                              cwd=site, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{name}\n{proc.stdout}\n{proc.stderr}"


def test_publish_template_pushes_one_commit_per_rendered_change(tmp_path: Path) -> None:
    from test_diff_git import commit_all, git, memory_changed, write_lock

    site, rendered_repo = tmp_path / "site", tmp_path / "rendered.git"
    git(tmp_path, "init", "-q", "--bare", str(rendered_repo))
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, site / name)
    (site / ".gitignore").write_text("/rendered/\n")
    write_lock(site, "lab", "a")
    git(site, "init", "-q", "-b", "main")
    commit_all(site, "site")

    publish(site, rendered_repo)
    log = git(rendered_repo, "log", "--format=%s", "rendered/lab").splitlines()
    assert log == ["gen render lab"]
    files = git(rendered_repo, "ls-tree", "-r", "--name-only", "rendered/lab").splitlines()
    assert "hypervisors/hv1/domains/worker1.xml" in files

    publish(site, rendered_repo)  # nothing changed: no commit, the push is a no-op
    assert len(git(rendered_repo, "log", "--format=%H", "rendered/lab").splitlines()) == 1

    memory_changed(site)
    write_lock(site, "lab", "a")
    commit_all(site, "bigger worker1")
    publish(site, rendered_repo)
    source = git(site, "rev-parse", "HEAD").strip()
    message = git(rendered_repo, "log", "-1", "--format=%B", "rendered/lab")
    assert f"Source: {source}\n" in message
    assert git(rendered_repo, "diff", "--name-only", "rendered/lab~1", "rendered/lab") \
        .splitlines() == ["hypervisors/hv1/domains/worker1.xml"]
