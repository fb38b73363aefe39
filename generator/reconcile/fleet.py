"""Talking to many hypervisors or hosts at once, with results as if one at a time.

Reading live state is waiting: on libvirt calls that cross a network (`qemu+ssh://`), on
ssh. A plan asks every hypervisor concurrently (`--parallel N` threads; libvirt-python
releases the GIL inside each call) and gets the answers back in the order it asked, so its
output, its notices and the error it reports are the same as a one-at-a-time run's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from generator.reconcile.base import DEFAULT_PARALLEL

# While readers run, a thread whose call returned waits for the GIL behind one parsing XML
# for up to the interpreter's switch interval (5 ms): at 20 calls of 20 ms per hypervisor
# that serialised 20 readers to 2.3x the slowest one's time; 0.5 ms brings it to 1.1x
# (bench/bench_fleet.py). Set for the concurrent part only.
SWITCH_INTERVAL = 0.0005

Item = TypeVar("Item")
Result = TypeVar("Result")


def in_order(work: Callable[[Item], Result], items: Sequence[Item],
             parallel: int = DEFAULT_PARALLEL) -> list[Result]:
    """`[work(i) for i in items]`, up to `parallel` at a time.

    When several fail, the failure of the first item in order is raised (the one a
    sequential run would have met), and items not started yet are not started.
    """
    if parallel <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(parallel, len(items)),
                              thread_name_prefix="gen-fleet")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    futures: list[Future[Result]] = []
    try:
        futures = [pool.submit(work, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        sys.setswitchinterval(interval)
