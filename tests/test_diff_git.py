"""`gen diff` over scripted histories in real temporary git repos, against golden markdown.

Each scenario copies environments/ and blueprints/ into a fresh repo, commits, edits,
commits again, and runs the real CLI: `gen diff env/E --base HEAD~1 --head HEAD --format
markdown`. The markdown must equal tests/golden_diff/<scenario>.md (commit ids normalized);
`pytest --update-golden` rewrites them (review the git diff, then commit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clirun import gen

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden_diff"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
SECRET_VALUE = "pull-secret-value-that-must-never-appear"
SHA = re.compile(r"\(([0-9a-f]{7})\)")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A git repo holding a copy of the monorepo inputs, one commit on main."""
    repo = tmp_path / "site"
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_lock(repo, "k8s-lab", "a")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "site")
    return repo


def write_lock(repo: Path, env: str, fill: str, other: dict[str, str] | None = None) -> Path:
    """A real lock (gen's own lock API, schema-valid) with made-up digests: no network.

    Images pin to `<repo>@sha256:<fill*64>`; OS artifacts resolve offline from local stream
    metadata when the environment has it, else pin their URL with sha256 fill*64 (`other`
    gives some keys another fill character); client tools resolve offline from the
    blueprint's checksum excerpt.
    Manifests would need their content in the store, so they stay unpinned.
    """
    from generator.environment import load_environment
    from generator.errors import UserError
    from generator.families import render_all
    from generator.lock.compute import Resolver, assemble, pins_from, wanted_inputs
    from generator.lock.lockfile import Pinned, lock_path
    from generator.lock.lockfile import write_lock as write
    from generator.lock.store import Store

    loaded = load_environment(f"env/{env}", repo)
    store = Store(repo / ".no-store")
    resolver = Resolver(store, loaded.source.env_dir, offline=True,
                        blueprint_dir=loaded.source.blueprint_dir)
    artifacts: dict[str, Any] = {}
    for key, original in wanted_inputs(loaded).items():
        kind = key.partition("/")[0]
        digest = (other or {}).get(key, fill) * 64
        if kind == "image":
            artifacts[key] = Pinned(original, f"{original.rsplit(':', 1)[0]}@sha256:{digest}")
        elif kind == "tool":  # pinned from the blueprint's shipped checksum excerpt
            artifacts[key] = Pinned(original, resolver.resolve(key, original))
        elif kind == "os":
            try:  # local stream metadata resolves offline, as `gen lock --offline` does
                artifacts[key] = Pinned(original, resolver.resolve(key, original))
            except UserError:
                url = original.get("url") or f"https://mirror.invalid/{key}"
                artifacts[key] = Pinned(original, {"location": url, "sha256": digest})
    pins = pins_from(artifacts, store, strict=False)[0]
    path = lock_path(repo, env)
    path.parent.mkdir(exist_ok=True)
    write(path, assemble(loaded, artifacts, render_all(loaded.model, pins)))
    return path


def edit(repo: Path, env: str, old: str, new: str) -> None:
    path = repo / "environments" / env / "env.yaml"
    text = path.read_text()
    assert old in text, f"scenario out of date: {old!r} not in {env}/env.yaml"
    path.write_text(text.replace(old, new, 1))


def node_added(repo: Path) -> str:
    edit(repo, "lab", "  - {name: worker1,",
         "  - {name: worker2, role: worker, hypervisor: hv1, "
         "nics: [{network: lan, ip: 192.168.20.163}]}\n  - {name: worker1,")
    return "lab"


def memory_changed(repo: Path) -> str:
    edit(repo, "lab", "{name: worker1, role: worker, hypervisor: hv1,",
         "{name: worker1, role: worker, hypervisor: hv1, vcpu: 8, memory: 16GiB,")
    return "lab"


def image_bumped(repo: Path) -> str:
    edit(repo, "k8s-lab", "tomcat: docker.io/library/tomcat:9",
         "tomcat: docker.io/library/tomcat:10")
    write_lock(repo, "k8s-lab", "a", {"image/tomcat": "b"})
    return "k8s-lab"


def secret_changed(repo: Path) -> str:
    edit(repo, "lab", "pullSecret: {env: GEN_SECRET_PULL}", "pullSecret: {env: GEN_SECRET_PULL_V2}")
    return "lab"


def file_removed(repo: Path) -> str:
    text = (repo / "environments/lab/env.yaml").read_text()
    start = text.index("  nfs:\n")
    end = text.index("\n\n", start)
    (repo / "environments/lab/env.yaml").write_text(text[:start] + text[end + 1:])
    return "lab"


def environment_renamed(repo: Path) -> str:
    git(repo, "mv", "environments/lab", "environments/lab-a")
    return "lab-a"


SCENARIOS: dict[str, Callable[[Path], str]] = {
    f.__name__: f for f in (node_added, memory_changed, image_bumped, secret_changed,
                            file_removed, environment_renamed)}


def normalized(markdown: str) -> str:
    return SHA.sub("(SHA)", markdown)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scripted_history_matches_golden_markdown(history: Path, scenario: str,
                                                  update_golden: bool) -> None:
    env = SCENARIOS[scenario](history)
    commit_all(history, scenario)
    run_env = {**os.environ, "GEN_SECRET_PULL": SECRET_VALUE, "GEN_SECRET_PULL_V2": SECRET_VALUE}
    result = gen("diff", f"env/{env}", "--base", "HEAD~1", "--head", "HEAD", "--format",
                 "markdown", cwd=history, env=run_env)
    assert result.code == 0, result.err
    assert SECRET_VALUE not in result.out
    assert result.out.startswith(f"<!-- gen-diff:{env} -->\n")
    golden = GOLDEN / f"{scenario}.md"
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(normalized(result.out))
    assert golden.is_file(), f"missing {golden}; run `pytest --update-golden`"
    assert normalized(result.out) == golden.read_text(), (
        f"gen diff output differs from {golden.name}; if intended, run "
        "`pytest --update-golden` and review the git diff")


def test_secret_change_is_sensitive_and_never_shows_the_reference(history: Path) -> None:
    secret_changed(history)
    commit_all(history, "rotate")
    for fmt in ("text", "json", "markdown", "html"):
        result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", fmt,
                     cwd=history, env={**os.environ, "GEN_SECRET_PULL_V2": SECRET_VALUE})
        assert result.code == 0, result.err
        assert "(sensitive value changed)" in result.out
        assert "GEN_SECRET_PULL" not in result.out and SECRET_VALUE not in result.out


def test_working_tree_is_the_default_head_and_detailed_exitcode(history: Path) -> None:
    unchanged = gen("diff", "env/lab", "--detailed-exitcode", cwd=history)
    assert unchanged.code == 0, unchanged.err
    assert "no changes" in unchanged.out
    memory_changed(history)  # uncommitted
    changed = gen("diff", "env/lab", "--detailed-exitcode", "--no-color", cwd=history)
    assert changed.code == 2, changed.err
    assert "HEAD (" in changed.out and "-> working tree" in changed.out
    assert "~ domain hv1/worker1: vcpu 2 -> 8; memory 8192 MiB -> 16384 MiB" in changed.out


def test_default_base_is_the_merge_base_with_main(history: Path) -> None:
    git(history, "checkout", "-q", "-b", "feature")
    memory_changed(history)
    commit_all(history, "bigger worker")
    node_added(history)
    commit_all(history, "more workers")
    result = gen("diff", "env/lab", "--format", "json", cwd=history)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["base"]["label"] == "merge-base with main"
    assert report["base"]["commit"] == git(history, "rev-parse", "main").strip()
    findings = [f["subject"] for fam in report["families"] for f in fam["findings"]]
    assert "domain hv1/worker1" in findings and "domain hv1/worker2" in findings


def test_markdown_parts_written_to_a_directory(history: Path, tmp_path: Path) -> None:
    node_added(history)
    commit_all(history, "node")
    out = tmp_path / "comment"
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format",
                 "markdown", "--max-chars", "4000", "--out", str(out), cwd=history)
    assert result.code == 0, result.err
    parts = sorted(out.glob("gen-diff-lab-*.md"))
    assert len(parts) > 1 and [str(p) for p in parts] == result.out.split()
    for index, part in enumerate(parts, 1):
        text = part.read_text()
        assert len(text) <= 4000
        assert text.startswith(f"<!-- gen-diff:lab -->\n<!-- gen-diff-part:{index}/{len(parts)}")


def test_unknown_revision_is_a_clean_error(history: Path) -> None:
    result = gen("diff", "env/lab", "--base", "no-such-ref", cwd=history)
    assert result.code == 1
    assert "unknown git revision 'no-such-ref'" in result.err
