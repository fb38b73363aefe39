"""The bad-blueprint corpus: every kind of mistake gets one exact, one-line error.

Each case in tests/bad/cases.yaml edits a scratch copy of the repo (tests/conftest.py
`repo`, trimmed to the two reference labs and their blueprints so that messages listing
known names stay stable), then runs the real CLI in a subprocess: `gen validate` and
`gen render` must both exit 1, print exactly the expected stderr lines (FILE:LINE:COL: at
FIELD.PATH: message (fix)), show no traceback, and write nothing at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

CASES_FILE = Path(__file__).resolve().parent / "bad" / "cases.yaml"
KEEP = {"environments": {"lab", "k8s-lab"}, "blueprints": {"openshift-upi", "kubeadm"}}


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = YAML(typ="safe", pure=True).load(CASES_FILE.read_text())
    return cases


def trim(repo: Path) -> None:
    """Only the reference labs and their blueprints, whatever else the repo grows."""
    for section, keep in KEEP.items():
        for child in (repo / section).iterdir():
            if child.name not in keep:
                shutil.rmtree(child)


def apply_edits(repo: Path, case: dict[str, Any]) -> None:
    env = case.get("env", "lab")
    for edit in case["edits"]:
        file = repo / edit.get("file", f"environments/{env}/env.yaml")
        text = file.read_text()
        if "content" in edit:
            text = edit["content"]
        else:
            assert text.count(edit["replace"]) == 1, (
                f"case {case['id']}: {edit['replace']!r} must occur exactly once in {file}")
            text = text.replace(edit["replace"], edit["with"])
        file.write_text(text)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root with its content hash and mtime: 'nothing written' is equality."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            result[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_mtime_ns)
    return result


def run_gen(repo: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "GEN_DEBUG"}
    return subprocess.Popen([sys.executable, "-m", "generator", *args], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_case(repo: Path, case: dict[str, Any]) -> dict[str, tuple[int, str, str]]:
    """Run validate and render concurrently on the edited repo; command -> (rc, out, err)."""
    trim(repo)
    apply_edits(repo, case)
    env_ref = f"env/{case.get('env', 'lab')}"
    procs = {"validate": run_gen(repo, "validate", env_ref),
             "render": run_gen(repo, "render", env_ref)}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = (proc.returncode, out, err)
    return results


CASES = load_cases()


def test_corpus_is_large_and_well_formed() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 30
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert case["stderr"], f"{case['id']}: expected stderr lines are required"
        assert set(case) <= {"id", "about", "env", "edits", "stderr"}, case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_blueprint(case: dict[str, Any], repo: Path) -> None:
    trim(repo)
    apply_edits(repo, case)
    before = snapshot(repo)
    env_ref = f"env/{case.get('env', 'lab')}"
    procs = {"validate": run_gen(repo, "validate", env_ref),
             "render": run_gen(repo, "render", env_ref)}
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, f"gen {command} crashed:\n{err}"
        assert err.splitlines() == case["stderr"], f"gen {command}: stderr differs"
        assert proc.returncode == 1, f"gen {command} exited {proc.returncode}"
        assert out == "", f"gen {command} printed to stdout: {out}"
    assert not (repo / "rendered").exists()
    assert snapshot(repo) == before, "a failed render wrote or touched files"


def test_corpus_edits_apply_to_a_valid_base(repo: Path) -> None:
    """The unedited trimmed repo is valid, so every failure above comes from its edit."""
    trim(repo)
    for env in ("lab", "k8s-lab"):
        proc = run_gen(repo, "validate", f"env/{env}")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "valid" in out
