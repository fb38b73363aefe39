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
