"""Two converges of one environment never interleave: two real `gen converge` processes.

Runner A stops at its confirmation prompt while holding its locks: the flock in its state
dir and the lock on the target host, taken through the host's command prefix
(--files-exec). Runner B stands for a CI runner on another machine (its own state dir) and
must be refused by the target's lock; runner C shares A's machine and is refused by the
local flock. A's locks go with A, even when A is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import Result, gen

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runner_a(repo: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", "converge", "env/lab",
         *flags(tmp_path, "machine-a")],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def flags(tmp_path: Path, machine: str) -> list[str]:
    """Only the files provider, onto one helper root reached through a real prefix (`env`)."""
    return ["--provider", "files", "--files-target", f"helper={tmp_path / 'helper-root'}",
            "--no-install-packages", "--files-exec", "helper=env", "--state-dir",
            str(tmp_path / machine)]


def wait_for_prompt(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    seen = ""
    while "Apply these" not in seen:
        chunk = proc.stderr.read(1)
        assert chunk, f"runner A ended before its prompt: {seen}"
        seen += chunk


def other(repo: Path, tmp_path: Path, machine: str, answer: str = "no\n") -> Result:
    return gen("converge", "env/lab", *flags(tmp_path, machine), cwd=repo,
               env={**os.environ, "PYTHONPATH": str(ROOT)}, input_text=answer, timeout=120)


def test_a_second_runner_elsewhere_is_refused_by_the_target_lock(
        repo: Path, tmp_path: Path, runner_a: subprocess.Popen[str]) -> None:
    wait_for_prompt(runner_a)
    remote = other(repo, tmp_path, "machine-b")
    assert remote.code == 1, remote.err
    assert "another converge of lab holds the lock on host helper: host " in remote.err
    assert f" pid {runner_a.pid} since " in remote.err
    assert not (tmp_path / "helper-root" / "etc").exists()  # B read and wrote nothing
    local = other(repo, tmp_path, "machine-a")
    assert local.code == 1, local.err
    assert f"another converge of lab is running: host {os.uname().nodename} pid " \
           f"{runner_a.pid} since " in local.err
    out, err = runner_a.communicate("no\n", timeout=60)
    assert runner_a.returncode == 1 and "converge cancelled" in err
    after = other(repo, tmp_path, "machine-b")  # A is gone: B gets to its own prompt
    assert after.code == 1 and "converge cancelled" in after.err, after.err
    assert "another converge" not in after.err


def test_a_killed_runner_releases_both_locks(repo: Path, tmp_path: Path,
                                              runner_a: subprocess.Popen[str]) -> None:
    wait_for_prompt(runner_a)
    os.kill(runner_a.pid, signal.SIGKILL)
    runner_a.wait(timeout=30)
    elsewhere = other(repo, tmp_path, "machine-b")
    assert elsewhere.code == 1 and "converge cancelled" in elsewhere.err, elsewhere.err
    same = other(repo, tmp_path, "machine-a")
    assert same.code == 1 and "converge cancelled" in same.err, same.err
    assert f"taking over an abandoned converge lock (pid {runner_a.pid} on host " in same.err


def test_a_target_without_flock_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "cat", "env"):  # a target host without flock(1)
        (bin_dir / tool).symlink_to(f"/bin/{tool}" if Path(f"/bin/{tool}").exists()
                                    else f"/usr/bin/{tool}")
    result = gen("converge", "env/lab", *flags(tmp_path, "machine-a")[:-4],
                 "--files-exec", f"helper=env PATH={bin_dir}", "--state-dir",
                 str(tmp_path / "machine-a"), cwd=repo,
                 env={**os.environ, "PYTHONPATH": str(ROOT)}, input_text="no\n")
    assert result.code == 1, result.err
    assert "could not take the converge lock on host helper:" in result.err
    assert "flock" in result.err
