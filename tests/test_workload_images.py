"""Every workload image in the Kubernetes manifests runs by the digest the lock pins.

A reference written in place (not an `artifacts.images` name) is pinned under its own key;
a locked render (and `gen verify`) refuses an image the lock does not pin, with one located
line per image. The tag -> digest resolution itself is proven against a real registry in
tests/test_lock_offline_mirror.py and tests/test_resolve_registry.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clirun import gen

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "ab" * 32


def _env(repo: Path) -> dict[str, str]:
    return {"GEN_STORE": str(repo / "store"), "PATH": "/usr/bin:/bin", "HOME": str(repo),
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}


def _edit(repo: Path, old: str, new: str) -> int:
    """Edit k8s-lab; the 1-based line of `new`."""
    path = repo / "environments/k8s-lab/env.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def test_locked_render_refuses_each_unpinned_workload_image_where_it_is_named(
        repo: Path) -> None:
    assert gen("lock", "--offline", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 0
    result = gen("render", "--locked", "env/k8s-lab", cwd=repo, env=_env(repo))
    assert result.code == 4, result.err
    lines = result.err.splitlines()
    line = next(n for n, text in enumerate(
        (repo / "environments/k8s-lab/env.yaml").read_text().splitlines(), 1)
        if text.strip() == "image: tomcat")
    assert (f"environments/k8s-lab/env.yaml:{line}:14: at kubernetes.apps[0].image: app "
            "'test-was' runs image docker.io/library/tomcat:9, which lock/k8s-lab.lock does "
            "not pin by digest (run `gen lock env/k8s-lab` where its registry or the site's "
            "mirror answers, and commit the lock)") in lines
    # gen's add-on defaults are refused too, at the switch that adds them
    assert any(x.startswith("environments/k8s-lab/env.yaml:") and "at kubernetes.ingress: "
               "the ingress controller runs image registry.k8s.io/ingress-nginx/controller:"
               in x for x in lines), result.err
    assert gen("verify", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 4


def test_reference_written_in_place_is_pinned_under_its_own_key_and_rendered_by_digest(
        repo: Path) -> None:
    in_place = f"docker.io/library/nginx:1.27@{DIGEST}"
    _edit(repo, "      image: tomcat\n", f"      image: {in_place}\n")
    result = gen("lock", "--offline", "env/k8s-lab", cwd=repo, env=_env(repo))
    assert result.code == 0, result.err
    inputs = json.loads((repo / "lock/k8s-lab.lock").read_text())["inputs"]
    assert inputs[f"image/{in_place}"] == {"original": in_place,
                                           "locked": f"docker.io/library/nginx@{DIGEST}"}
    assert gen("render", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 0
    app = (repo / "rendered/k8s-lab/clusters/k8s/kubernetes/apps/test-was.yaml").read_text()
    assert f"image: docker.io/library/nginx@{DIGEST}\n" in app
    assert "nginx:1.27" not in app  # the digest alone decides what runs


def test_ingress_image_the_environment_names_is_the_one_pinned_and_run(repo: Path) -> None:
    """`kubernetes.ingress.image` is honoured (it was accepted and ignored): pinned under
    its own key, refused at its own field while unpinned, rendered by its digest."""
    in_place = f"quay.io/example/ingress-controller:v9@{DIGEST}"
    text = (repo / "environments/k8s-lab/env.yaml").read_text()
    indent = text[text.index("\n  ingress:\n") + 1:].split("\n")[1]
    indent = indent[: len(indent) - len(indent.lstrip())]
    line = _edit(repo, "\n  ingress:\n", f"\n  ingress:\n{indent}image: quay.io/example/"
                 "ingress-controller:v9\n") + 2  # the line before, `ingress:`, then image
    assert gen("lock", "--offline", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 0
    result = gen("render", "--locked", "env/k8s-lab", cwd=repo, env=_env(repo))
    assert result.code == 4
    assert any(x.startswith(f"environments/k8s-lab/env.yaml:{line}:")
               and "at kubernetes.ingress.image: the ingress controller runs image "
               "quay.io/example/ingress-controller:v9, which" in x
               for x in result.err.splitlines()), result.err
    _edit(repo, "image: quay.io/example/ingress-controller:v9\n", f"image: {in_place}\n")
    assert gen("lock", "--offline", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 0
    assert gen("render", "env/k8s-lab", cwd=repo, env=_env(repo)).code == 0
    manifest = (repo / "rendered/k8s-lab/clusters/k8s/kubernetes/ingress-nginx.yaml").read_text()
    assert f"image: quay.io/example/ingress-controller@{DIGEST}\n" in manifest
    assert "registry.k8s.io/ingress-nginx" not in manifest
