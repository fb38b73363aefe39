"""Rendering is a pure function of the inputs: the process environment changes nothing.

Each lab is rendered three times by the real CLI in subprocesses that differ in TZ, LANG/
LC_ALL, umask, PYTHONHASHSEED and working directory (repo root, the environment's own
directory, and / with an absolute environment path); the trees, file modes included, must
be identical byte for byte.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = [
    {"cwd": ROOT, "ref": "env/{env}", "umask": 0o022,
     "env": {"TZ": "UTC", "LANG": "C", "LC_ALL": "C", "PYTHONHASHSEED": "0"}},
    {"cwd": ROOT / "environments" / "{env}", "ref": "env/{env}", "umask": 0o077,
     "env": {"TZ": "Pacific/Kiritimati", "LANG": "tr_TR.UTF-8", "LC_ALL": "tr_TR.UTF-8",
             "PYTHONHASHSEED": "12345"}},
    {"cwd": Path("/"), "ref": str(ROOT / "environments" / "{env}"), "umask": 0o002,
     "env": {"TZ": "America/St_Johns", "LANG": "de_DE.UTF-8", "LC_ALL": "",
             "PYTHONHASHSEED": "random"}},
]


def render_variant(env: str, variant: dict, out: Path) -> dict[str, tuple[bytes, int]]:
    environ = {k: v for k, v in os.environ.items() if k not in ("GEN_DEBUG", "LC_ALL")}
    environ["GEN_RENDER_CACHE"] = "off"  # every variant really renders (no cache hit)
    environ.update(variant["env"])
    umask = variant["umask"]
    result = subprocess.run(
        [sys.executable, "-m", "generator", "render", variant["ref"].format(env=env),
         "--out", str(out)],
        cwd=str(variant["cwd"]).format(env=env), env=environ, capture_output=True, text=True,
        preexec_fn=lambda: os.umask(umask), check=False)
    assert result.returncode == 0, result.stderr
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            files[path.relative_to(out).as_posix()] = (path.read_bytes(), mode)
    return files


@pytest.mark.parametrize("env", ["lab", "k8s-lab"])
def test_render_is_independent_of_process_environment(env: str, tmp_path: Path) -> None:
    trees = [render_variant(env, v, tmp_path / f"out{i}") for i, v in enumerate(VARIANTS)]
    assert len(trees[0]) > 10
    for index, tree in enumerate(trees[1:], start=1):
        assert set(tree) == set(trees[0]), f"variant {index} rendered other files"
        differing = [p for p in tree if tree[p] != trees[0][p]]
        assert not differing, f"variant {index} differs in {differing[:10]}"


def test_rendering_twice_changes_nothing(tmp_path: Path) -> None:
    """A second render into the same directory reports no change and keeps every mtime."""
    out = tmp_path / "out"
    render_variant("lab", VARIANTS[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "generator", "render", "env/lab", "--out",
                             str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "0 added, 0 changed, 0 removed" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
