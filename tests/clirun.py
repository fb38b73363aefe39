"""Run the real `gen` CLI in a subprocess, the way users and CI do."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def gen(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
        input_text: str | None = None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, input=input_text)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def replace_in_lab(repo: Path, old: str, new: str) -> str:
    """Edit lab A; return `FILE:LINE` of the first line of `new`."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    assert text.count(old) == 1, old
    env_file.write_text(text.replace(old, new))
    number = text[: text.index(old)].count("\n") + 1
    return f"environments/lab/env.yaml:{number}"


def without_blueprint_tools(repo: Path, blueprint: str = "kubeadm") -> None:
    """The blueprint without its `artifacts.tools` (kubeadm, kubelet, kubectl on dl.k8s.io):
    for tests whose `gen fetch` must need nothing but their own loopback server."""
    path = repo / "blueprints" / blueprint / "blueprint.yaml"
    lines = path.read_text().splitlines(keepends=True)
    start = lines.index("    tools:\n")
    end = next(i for i in range(start + 1, len(lines))
               if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= 4)
    path.write_text("".join(lines[:start] + lines[end:]))


def helper_on_debian(repo: Path) -> None:
    """Lab A's helper with `os: debian12`: tests that run its services' real checkers and
    daemons on this Debian machine install them where Debian's packages expect them."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    old = "{name: helper, role: helper, hypervisor: hv1,"
    assert text.count(old) == 1, old
    env_file.write_text(text.replace(old, old[:-1] + ", os: debian12,"))
