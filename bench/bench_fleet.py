"""Fleet plan: 20 hypervisors read concurrently; prints its figures.

Each hypervisor is a libvirt test-driver state holding what the render gives it (an
environment from genenv.py: NODES nodes over 20 hypervisors), opened through a harness that
adds LATENCY seconds to every call on the connection and on every object it hands back,
as a remote `qemu+ssh://` libvirtd would (`name()` is answered locally by libvirt, so it
is exempt).

Floor: the slowest single hypervisor, read and planned alone through the same harness.
Figure: `build_plan` of the libvirt provider over all 20 at the default `--parallel`
(DEFAULT_PARALLEL, capped by the hypervisor count: one reader per hypervisor here); also
`--parallel 4` (the default before) and 1 for comparison. Target: <= 1.5x the floor.
Medians of RUNS, paired (each run measures the floor and the fleet back to back).

Run from the repo root: PYTHONPATH=$PWD python3 bench/bench_fleet.py [--runs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_reconcile import state_from_tree  # noqa: E402
from genenv import write_environment  # noqa: E402

HYPERVISORS = 20
NODES = 100
LATENCY = 0.020
LOCAL = frozenset({"name"})  # libvirt answers these without a round trip


class Remote:
    """A libvirt object (connection, domain, network, pool, volume) LATENCY away."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if not callable(method):
            return method
        if name in LOCAL:
            return method

        def call(*args: Any) -> Any:
            time.sleep(LATENCY)
            return _remote(method(*args))
        return call


def _remote(value: Any) -> Any:
    if isinstance(value, list):
        return [_remote(v) for v in value]
    if type(value).__module__ == "libvirt":
        return Remote(value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=NODES)
    args = parser.parse_args()

    from generator.reconcile import libvirt
    from generator.reconcile.base import DEFAULT_PARALLEL
    from generator.reconcile.plan import Settings, build_plan, load_desired
    from generator.reconcile.providers import by_name

    with tempfile.TemporaryDirectory() as tmp:
        env_dir = write_environment(Path(tmp), args.nodes, HYPERVISORS)
        desired = load_desired(str(env_dir))
        # the test driver cannot hold the helper's base image or seed: not part of a read
        desired = dataclasses.replace(desired, tree={
            p: c for p, c in desired.tree.items()
            if "/images/" not in p and "/cloud-init/" not in p})
        names = [hv.name for hv in desired.env.hypervisors]
        uris = {}
        for hv in names:
            state = Path(tmp) / f"{hv}.xml"
            state_from_tree(dict(desired.tree), state, hv)
            uris[hv] = f"test://{state}"

        def connect(uri: str) -> Any:
            return Remote(libvirt.open_connection(uri))

        def single(hv: str) -> float:
            """One hypervisor read and planned alone."""
            provider = libvirt.LibvirtProvider({hv: uris[hv]}, connect=connect)
            began = time.monotonic()
            want = libvirt.desired_objects(desired.tree, hv)
            live = libvirt.read_live(connect(uris[hv]), want)
            libvirt.plan_hypervisor(provider, desired.env, hv, want, live)
            return time.monotonic() - began

        def fleet(parallel: int) -> tuple[float, int]:
            provider = libvirt.LibvirtProvider(uris, connect=connect, parallel=parallel)
            settings = Settings(uri_overrides=tuple(uris.items()), providers=("libvirt",),
                                parallel=parallel)
            began = time.monotonic()
            plan = build_plan(desired, settings, [(by_name()["libvirt"], provider)])
            return time.monotonic() - began, len(plan.actions)

        for hv in names:  # connect once (the test driver parses its state), off the clock
            libvirt.open_connection(uris[hv])
        floors, default, four, serial = [], [], [], []
        for _ in range(args.runs):
            floors.append(max(single(hv) for hv in names))
            default.append(fleet(DEFAULT_PARALLEL)[0])
            four.append(fleet(4)[0])
        serial.append(fleet(1)[0])
        _, actions = fleet(DEFAULT_PARALLEL)
        floor = median(floors)
        ratio = median(d / f for d, f in zip(default, floors, strict=True))
        print(f"fleet plan, {HYPERVISORS} hypervisors x {args.nodes // HYPERVISORS} nodes, "
              f"{LATENCY * 1000:.0f} ms per call ({actions} actions; medians of {args.runs}, "
              "paired):")
        print(f"  slowest single hypervisor (floor): {floor:.2f} s")
        print(f"  default --parallel {DEFAULT_PARALLEL} ({min(DEFAULT_PARALLEL, HYPERVISORS)} "
              f"readers): {median(default):.2f} s, ratio {ratio:.2f} (target <= 1.5)")
        print(f"  --parallel 4 (the default before): {median(four):.2f} s, ratio "
              f"{median(d / f for d, f in zip(four, floors, strict=True)):.2f}")
        print(f"  --parallel 1 (one at a time, once): {serial[0]:.2f} s, ratio "
              f"{serial[0] / floor:.2f}")
        bench_apply(desired, names, Path(tmp), connect, args.runs)


def bench_apply(desired: Any, names: list[str], tmp: Path, connect: Any, runs: int) -> None:
    """A creating converge's apply on 20 empty hypervisors: --parallel 20 against 1."""
    from generator.reconcile import libvirt
    from generator.reconcile.converge import Journal, apply_plan
    from generator.reconcile.plan import Settings, build_plan
    from generator.reconcile.providers import by_name

    def once(parallel: int, run: int) -> tuple[float, int]:
        libvirt.forget_connections()
        uris = {}
        for hv in names:
            empty = tmp / f"empty-{parallel}-{run}-{hv}.xml"
            empty.write_text("<node/>\n")
            uris[hv] = f"test://{empty}"
        provider = libvirt.LibvirtProvider(uris, connect=connect, parallel=parallel)
        plan = build_plan(desired, Settings(uri_overrides=tuple(uris.items()),
                                            providers=("libvirt",), parallel=parallel),
                          [(by_name()["libvirt"], provider)])
        began = time.monotonic()
        apply_plan(plan, Journal(tmp / f"state-{parallel}-{run}", desired.env.name),
                   parallel=parallel)
        return time.monotonic() - began, len(plan.actions)

    wide, serial = [], []
    for run in range(runs):
        seconds, actions = once(HYPERVISORS, run)
        wide.append(seconds)
        serial.append(once(1, run)[0])
    print(f"converge apply, {actions} creating actions on {HYPERVISORS} empty hypervisors, "
          f"{LATENCY * 1000:.0f} ms per call: --parallel {HYPERVISORS} {median(wide):.2f} s, "
          f"--parallel 1 {median(serial):.2f} s, "
          f"{median(s / w for s, w in zip(serial, wide, strict=True)):.1f}x faster (medians "
          f"of {runs}, paired)")


if __name__ == "__main__":
    main()
