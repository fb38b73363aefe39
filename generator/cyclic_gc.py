"""Python's cyclic garbage collector around a render, a lock check or a plan.

A render allocates millions of objects that hold no cycles (strings, tuples, bytes), so
reference counting frees them all; the collector only rescans them, ever more as they grow
(13% of a 10,000-node render, and the cause of its superlinear growth). So it is off while
one runs. Turning it back on has a cost of its own: the allocations counted meanwhile make
the next allocation run a full collection over everything still alive, and the interpreter
collects once more at exit. In the `gen` process itself (cli.main) what is alive then is
first moved to the collector's permanent generation (`gc.freeze`), which no collection
scans: the process is about to print its summary and exit. Callers in-process (tests,
scripts) get the collector back exactly as it was. The price, in the `gen` process: a
reference cycle made while the collector was off is never collected (gen's renders make
none that hold anything needing cleanup: files are closed by `with`, descriptors by hand).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_freeze_on_resume = False


def freeze_on_resume() -> None:
    """Called once by the `gen` process's entry point (not by in-process callers)."""
    global _freeze_on_resume
    _freeze_on_resume = True


@contextmanager
def paused() -> Iterator[None]:
    """The cyclic collector off for the block, back on (as it was) afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if _freeze_on_resume:
                gc.freeze()
            gc.enable()
