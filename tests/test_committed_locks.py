"""The committed locks match the committed inputs and renderers (a stale lock fails CI).

Whenever an environment, a blueprint or a renderer changes, `gen lock --offline env/<env>`
must be re-run and the lock committed; this test is the reminder. Only offline-resolvable
entries are compared: k8s-lab's images and manifest need the network to pin.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from clirun import gen

ROOT = Path(__file__).resolve().parent.parent
# The code under test is this checkout's (PYTHONPATH), not whatever copy is installed.
SOURCE = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
ENVIRONMENTS = sorted(p.name for p in (ROOT / "environments").iterdir()
                      if (p / "env.yaml").is_file())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_offline_relock_changes_nothing(repo: Path, env: str) -> None:
    shutil.copy(ROOT / "lock" / f"{env}.lock", repo / "lock" / f"{env}.lock")
    committed = (repo / "lock" / f"{env}.lock").read_bytes()
    result = gen("lock", "--offline", f"env/{env}", cwd=repo,
                 env={"GEN_STORE": str(repo / "store"), "PATH": "/usr/bin:/bin",
                      "HOME": str(repo), "PYTHONPATH": str(ROOT)})
    assert result.code == 0, result.err
    assert (repo / "lock" / f"{env}.lock").read_bytes() == committed, (
        f"lock/{env}.lock is stale: run `gen lock --offline env/{env}` and commit it\n"
        + result.out)


def test_lab_renders_locked(repo: Path) -> None:
    shutil.copy(ROOT / "lock" / "lab.lock", repo / "lock" / "lab.lock")
    env = {"GEN_STORE": str(repo / "store"), "PATH": "/usr/bin:/bin", "HOME": str(repo),
           "PYTHONPATH": str(ROOT)}
    rendered = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert rendered.code == 0, rendered.err
    checked = gen("render", "env/lab", "--locked", "--check", cwd=repo, env=env)
    assert checked.code == 0, checked.err
