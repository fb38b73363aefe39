"""Golden trees: the whole rendered tree of each built-in environment, byte for byte.

tests/golden/<env>/ holds what `gen render env/<env>` writes (minus the `.gen-rendered`
marker). A difference fails with a readable diff; `pytest --update-golden` rewrites the
golden trees from the current renderers (review the git diff, then commit).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gitops_env
import pytest
from clirun import helper_on_debian

from generator.tree import Executable, Tree
from generator.writer import compare, read_tree

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
ENVIRONMENTS = ("lab", "k8s-lab")
# Variants: a built-in environment rendered after one edit, so the golden trees cover every
# host OS profile (lab A's helper is el9 by its blueprint; k8s-lab's hosts are debian12) and each
# Kubernetes hand-off engine (Argo CD, Flux).
VARIANTS = {"lab-debian12": ("lab", helper_on_debian),
            "k8s-lab-argocd": ("k8s-lab", gitops_env.argocd),
            "k8s-lab-flux": ("k8s-lab", gitops_env.flux)}
MAX_DIFF_LINES = 400


def render_cli(env: str, out: Path, cwd: Path = ROOT) -> Tree:
    """Render through the real CLI, as a user would, and read back what it wrote."""
    result = subprocess.run(
        [sys.executable, "-m", "generator", "render", f"env/{env}", "--out", str(out)],
        cwd=cwd, capture_output=True, text=True, env={**os.environ, "GEN_DEBUG": ""},
        check=False)
    assert result.returncode == 0, f"gen render env/{env} failed:\n{result.stderr}"
    return read_tree(out)


def describe_differences(golden: Tree, rendered: Tree) -> str:
    """Added/removed paths and a unified diff of every changed file."""
    changes = compare(golden, rendered)
    out = [f"rendered tree differs from tests/golden ({len(changes.added)} added, "
           f"{len(changes.changed)} changed, {len(changes.removed)} removed); "
           "if intended, run `pytest --update-golden` and review the git diff"]
    out += [f"+ {p} (not in golden)" for p in changes.added]
    out += [f"- {p} (golden only)" for p in changes.removed]
    for path in changes.changed:
        old, new = golden[path], rendered[path]
        if old == new:
            out.append(f"~ {path}: executable bit differs")
            continue
        try:
            diff = difflib.unified_diff(old.decode().splitlines(), new.decode().splitlines(),
                                        f"golden/{path}", f"rendered/{path}", lineterm="")
            out.extend(diff)
        except UnicodeDecodeError:
            out.append(f"~ {path}: binary content differs ({len(old)} -> {len(new)} bytes)")
    if len(out) > MAX_DIFF_LINES:
        out = out[:MAX_DIFF_LINES] + [f"... {len(out) - MAX_DIFF_LINES} more lines"]
    return "\n".join(out)


def write_golden(target: Path, tree: Tree) -> None:
    """Replace the golden tree with `tree` exactly (stale files go)."""
    if target.exists():
        shutil.rmtree(target)
    for path, content in tree.items():
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(0o755 if isinstance(content, Executable) else 0o644)


@pytest.mark.parametrize("env", [*ENVIRONMENTS, *VARIANTS])
def test_golden_tree(env: str, tmp_path: Path, update_golden: bool) -> None:
    cwd = ROOT
    if env in VARIANTS:
        base, edit = VARIANTS[env]
        cwd = tmp_path / "repo"
        for name in ("environments", "blueprints"):
            shutil.copytree(ROOT / name, cwd / name)
        edit(cwd)
    rendered = render_cli(VARIANTS[env][0] if env in VARIANTS else env, tmp_path / "out", cwd)
    assert rendered, f"gen render env/{env} wrote nothing"
    target = GOLDEN / env
    if update_golden:
        write_golden(target, rendered)
        return
    assert target.is_dir(), f"no golden tree for {env}: run `pytest --update-golden`"
    golden = read_tree(target)
    if compare(golden, rendered).empty:
        return
    pytest.fail(describe_differences(golden, rendered), pytrace=False)


def test_difference_report_is_readable() -> None:
    """The failure message names added, removed and changed files with a unified diff."""
    golden = {"a.txt": b"one\ntwo\n", "gone.txt": b"x\n", "run.sh": Executable(b"#!/bin/sh\n")}
    rendered = {"a.txt": b"one\nthree\n", "new.txt": b"y\n", "run.sh": b"#!/bin/sh\n"}
    report = describe_differences(golden, rendered)
    assert "+ new.txt (not in golden)" in report
    assert "- gone.txt (golden only)" in report
    assert "-two" in report and "+three" in report
    assert "~ run.sh: executable bit differs" in report


def test_write_golden_replaces_whole_tree(tmp_path: Path) -> None:
    target = tmp_path / "golden"
    write_golden(target, {"old/file.xml": b"old\n"})
    write_golden(target, {"new/file.xml": b"new\n", "bin/x": Executable(b"x\n")})
    assert read_tree(target) == {"bin/x": b"x\n", "new/file.xml": b"new\n"}
    assert isinstance(read_tree(target)["bin/x"], Executable)
