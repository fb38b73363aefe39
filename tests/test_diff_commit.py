"""`gen render --commit`: the output directory as a git repo, one commit per changed tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.clirun import gen
from tests.test_diff_git import GIT_ENV, commit_all, git, memory_changed, write_lock


def log(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%H%n%B%n--end--").split("--end--\n")[:-1]


def test_commits_only_when_the_tree_changes(repo: Path) -> None:
    (repo / ".gitignore").write_text("/rendered/\n")  # as in the monorepo itself
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "site")
    source = git(repo, "rev-parse", "HEAD").strip()
    out = repo / "rendered" / "lab"
    env = {**os.environ, **GIT_ENV}

    first = gen("render", "env/lab", "--out", str(out), "--commit", cwd=repo, env=env)
    assert first.code == 0, first.err
    assert (out / ".git").is_dir()
    (entry,) = log(out)
    assert "gen render lab\n" in entry
    assert "Environment: lab\nLock: unlocked\n" in entry
    assert f"Source: {source}\n" in entry
    assert git(out, "status", "--porcelain") == ""
    assert git(out, "ls-files").count("hypervisors/hv1/domains/") == 7

    again = gen("render", "env/lab", "--out", str(out), "--commit", cwd=repo, env=env)
    assert again.code == 0, again.err
    assert "nothing to commit" in again.err
    assert len(log(out)) == 1

    memory_changed(repo)  # uncommitted: the source is dirty
    lock = write_lock(repo, "lab", "c")
    third = gen("render", "env/lab", "--out", str(out), "--commit", cwd=repo, env=env)
    assert third.code == 0, third.err
    entries = log(out)
    assert len(entries) == 2
    assert f"Lock: sha256:{hashlib.sha256(lock.read_bytes()).hexdigest()}\n" in entries[0]
    assert f"Source: {source}+dirty\n" in entries[0]
    changed = git(out, "show", "--name-status", "--format=", "HEAD").split()
    assert "hypervisors/hv1/domains/worker1.xml" in changed
    assert "hypervisors/hv1/domains/worker0.xml" not in changed


def test_commit_works_without_a_configured_identity(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": str(tmp_path)})
    result = gen("render", "env/k8s-lab", "--out", str(out), "--commit", cwd=repo, env=env)
    assert result.code == 0, result.err
    author = subprocess.run(["git", "log", "-1", "--format=%an <%ae>"], cwd=out, env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert author == "gen <gen@localhost>"
    assert "Source: none" in git(out, "log", "-1", "--format=%B")
