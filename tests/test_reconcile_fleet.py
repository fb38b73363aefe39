"""A fleet of hypervisors is read concurrently (`--parallel N`), and the plan is the same.

Lab A scaled (reconcile_fixtures.scale_lab) and spread over three hypervisors, each a
libvirt test-driver state of its own. The connections are libvirt's real test driver;
the harness below only wraps one to make three readers meet at a barrier, which they can
only do when they run at the same time.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from reconcile_fixtures import scale_lab, state_file
from test_reconcile_plan import run

from generator.reconcile import libvirt as provider
from generator.reconcile.plan import Settings, build_plan, load_desired
from generator.reconcile.providers import by_name

HYPERVISORS = ("hv1", "hv2", "hv3")
PLACED = {"master1": "hv2", "worker0": "hv3", "worker1": "hv3"}


@pytest.fixture(autouse=True)
def fresh_connections():  # type: ignore[no-untyped-def]
    provider.forget_connections()
    yield
    provider.forget_connections()


@pytest.fixture
def fleet(repo: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """Lab A on hv1..hv3; returns the environment and its --uri-override flags."""
    env_yaml = scale_lab(repo, tmp_path / "pool")
    text = env_yaml.read_text()
    block = text[text.index("  - name: hv1\n"):text.index("\nnodes:")]
    extra = "".join("\n" + block.replace("name: hv1", f"name: {hv}", 1) for hv in HYPERVISORS[1:])
    text = text.replace(block, block + extra, 1)
    for node, hv in PLACED.items():
        line = next(x for x in text.splitlines() if x.startswith(f"  - {{name: {node},"))
        text = text.replace(line, line.replace("hypervisor: hv1,", f"hypervisor: {hv},"), 1)
    env_yaml.write_text(text)
    overrides = []
    for hv in HYPERVISORS:
        overrides += ["--uri-override", f"{hv}={state_file(tmp_path / hv)}"]
    return str(repo / "environments" / "lab"), overrides


def plan(fleet: tuple[str, list[str]], *args: str) -> str:
    env, overrides = fleet
    result = run("plan", env, *overrides, "--provider", "libvirt", *args)
    assert result.code == 0, result.err
    provider.forget_connections()  # the next plan starts from the same empty states
    return result.out


def test_parallel_plan_is_the_one_at_a_time_plan(fleet: tuple[str, list[str]]) -> None:
    one = plan(fleet, "--parallel", "1")
    for hv in HYPERVISORS:
        assert f"libvirt domain {hv}/" in one  # every hypervisor has something to create
    assert plan(fleet, "--parallel", "3") == one
    assert plan(fleet) == one  # the default (4)
    assert plan(fleet, "--parallel", "3", "--format", "json") == plan(
        fleet, "--parallel", "1", "--format", "json")


class MeetAtBarrier:
    """A real test-driver connection whose first listing waits for the other readers."""

    def __init__(self, conn: Any, barrier: threading.Barrier) -> None:
        self._conn = conn
        self._barrier = barrier

    def listAllNetworks(self, flags: int) -> Any:  # noqa: N802 - libvirt's name
        self._barrier.wait()
        return self._conn.listAllNetworks(flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("parallel", [3, 1])
def test_hypervisors_are_read_at_the_same_time(fleet: tuple[str, list[str]],
                                               parallel: int) -> None:
    env, overrides = fleet
    uris = dict(item.split("=", 1) for item in overrides[1::2])
    barrier = threading.Barrier(len(HYPERVISORS), timeout=5)
    settings = Settings(uri_overrides=tuple(uris.items()), providers=("libvirt",),
                        parallel=parallel)
    libvirt = provider.LibvirtProvider(
        uris, connect=lambda uri: MeetAtBarrier(provider.open_connection(uri), barrier),
        parallel=parallel)
    desired = load_desired(env)
    if parallel == 1:  # one at a time, the first reader waits alone: the barrier breaks
        with pytest.raises(threading.BrokenBarrierError):
            build_plan(desired, settings, [(by_name()["libvirt"], libvirt)])
        return
    found = build_plan(desired, settings, [(by_name()["libvirt"], libvirt)])
    assert {a.name.split("/")[0] for a in found.actions} == set(HYPERVISORS)


def test_the_first_unreachable_hypervisor_in_order_is_the_error(
        fleet: tuple[str, list[str]], tmp_path: Path) -> None:
    env, overrides = fleet
    broken = overrides + ["--uri-override", f"hv2=test://{tmp_path}/missing2.xml",
                          "--uri-override", f"hv3=test://{tmp_path}/missing3.xml"]
    for parallel in ("1", "3"):
        result = run("plan", env, *broken, "--provider", "libvirt", "--parallel", parallel)
        assert result.code == 1
        assert f"cannot connect to libvirt at test://{tmp_path}/missing2.xml" in result.err
        assert "missing3" not in result.err and "Traceback" not in result.err
        provider.forget_connections()


def converge(fleet: tuple[str, list[str]], state: Path, parallel: str) -> tuple[str, ...]:
    env, overrides = fleet
    result = run("converge", env, *overrides, "--provider", "libvirt", "--auto-approve",
                 "--state-dir", str(state), "--parallel", parallel)
    assert result.code == 0, result.err
    return tuple(re.sub(r"\d+\.\d+s", "T", text) for text in (result.out, result.err))


def live(fleet: tuple[str, list[str]]) -> dict[str, list[tuple[str, bool]]]:
    uris = dict(item.split("=", 1) for item in fleet[1][1::2])
    return {hv: sorted((d.name(), bool(d.isActive()))
                       for d in provider.open_connection(uri).listAllDomains(0))
            for hv, uri in uris.items()}


def test_converge_applies_across_hypervisors_to_the_same_end(
        fleet: tuple[str, list[str]], tmp_path: Path) -> None:
    """Same plan, same end state; the progress of a batch is said in plan order (every
    action announced, then the results), the same on every run."""
    out, err = converge(fleet, tmp_path / "one", "1")
    ended = live(fleet)
    assert ended["hv2"] == [("master1", True)] and len(ended["hv3"]) == 2
    runs = []
    for attempt in range(2):
        provider.forget_connections()  # the test driver starts again from its empty files
        assert live(fleet) == {hv: [] for hv in HYPERVISORS}
        runs.append(converge(fleet, tmp_path / f"three{attempt}", "3"))
        assert live(fleet) == ended
    assert runs[0] == runs[1] and runs[0][0] == out
    assert sorted(runs[0][1].splitlines()) == sorted(err.splitlines())
    masters = [line for line in runs[0][1].splitlines() if "master" in line]
    assert [line.endswith("...") for line in masters] == [True] * 3 + [False] * 3


def test_batches_keep_boot_order_and_one_hypervisor_at_a_time(
        fleet: tuple[str, list[str]]) -> None:
    """Only actions of one wave and one boot order on two or more hypervisors run together."""
    from generator.reconcile.converge import batches

    env, overrides = fleet
    uris = dict(item.split("=", 1) for item in overrides[1::2])
    found = build_plan(load_desired(env), Settings(uri_overrides=tuple(uris.items()),
                                                   providers=("libvirt",)))
    items = list(enumerate(found.actions, 1))
    grouped = [[a.name for _, a in batch] for batch in batches(items, 3)]
    assert ["hv1/master0", "hv1/master2", "hv2/master1"] in [
        sorted(b) for b in grouped if any("master" in n for n in b)]
    assert [n for b in grouped for n in b] == [a.name for a in found.actions]  # plan order
    assert ["hv1/bootstrap"] in grouped  # bootstrap starts before any master
    assert ["hv3/worker0"] in grouped and ["hv3/worker1"] in grouped  # one hypervisor only
    assert all(len(b) == 1 for b in batches(items, 1))
