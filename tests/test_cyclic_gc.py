"""The cyclic collector around a render (generator/cyclic_gc.py): the `gen` process keeps
what a render made out of every later collection; an in-process caller gets the collector
back exactly as it was."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from generator import cyclic_gc
from generator.pipeline import render_environment

ROOT = Path(__file__).resolve().parent.parent

# The `gen` process itself, with a hook that reports the collector's state at exit.
REPORT_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: print("gc", gc.isenabled(), gc.get_freeze_count(), file=sys.stderr))
from generator.entry import main
main()
"""


def test_the_gen_process_freezes_what_a_render_made_and_collects_again(
        repo: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", REPORT_AT_EXIT, "render", "env/lab", "--no-cache",
         "--out", str(tmp_path / "out")],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("gc "))
    _, enabled, frozen = line.split()
    assert enabled == "True"  # back on for whatever follows the render
    assert int(frozen) > 10_000  # the model, the tree, the modules: out of every collection


def test_an_in_process_render_gets_the_collector_back_unfrozen(repo: Path) -> None:
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    with cyclic_gc.paused():
        assert not gc.isenabled()
        render_environment("env/lab", cwd=repo)
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # nothing moved out of the caller's collections


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with cyclic_gc.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
