"""Apply a plan: one converge per environment (a flock here and one on each target host), a
journal of what was done, actions applied in plan order with their timings reported as they go.

Resuming is re-planning: every action is idempotent and the plan is recomputed from live
state, so an interrupted converge (even SIGKILL) is finished by running converge again. The
journal says what the interrupted run had done and which action was in flight, so the
operator sees what is being resumed; a completed journal is kept as `last.jsonl`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generator.errors import GenError, UserError
from generator.reconcile.base import Action
from generator.reconcile.plan import Desired, Plan, Settings
from generator.reconcile.providers import by_name

DEFAULT_LOCK_TTL = 2 * 3600.0  # seconds after which a lock is considered abandoned


class ConvergeLocked(UserError):
    """Another converge of the same environment holds the lock."""


class ApplyFailed(UserError):
    """An action failed; earlier actions stay applied, later ones were not attempted."""


def default_state_dir() -> Path:
    """`~/.cache/gen/state` (the commands layer passes --state-dir when given)."""
    return Path.home() / ".cache" / "gen" / "state"


# -- the converge lock -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    started: float
    id: str

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"host {self.host} pid {self.pid} since {when}"


def _me() -> Holder:
    now = time.time()
    return Holder(socket.gethostname(), os.getpid(), now, f"{socket.gethostname()}:{os.getpid()}"
                  f":{int(now * 1000)}")


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(str(data["host"]), int(data["pid"]), float(data["started"]), str(data["id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def converge_lock(state: Path, env: str, ttl: float = DEFAULT_LOCK_TTL, wait: float = 0.0,
                  say: Callable[[str], None] = lambda _: None) -> Iterator[Holder]:
    """Hold `<state>/<env>/converge.lock` (flock) for the block; say who holds it if busy.

    The kernel drops a flock when its holder dies, even by SIGKILL, so a crashed converge
    never blocks the next one and a live one is never taken over. The file records the
    holder (host, pid, start) for the busy message; it is emptied, never unlinked, on
    release: unlinking a flocked path lets a waiter lock an orphaned inode.
    """
    path = state / env / "converge.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _flock(fd, path, env, ttl, wait)
        me = _me()
        left = _read_holder(path)
        if left is not None:
            say(f"taking over an abandoned converge lock (pid {left.pid} on host {left.host} "
                "ended without releasing it)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": me.host, "pid": me.pid, "started": me.started,
                                  "id": me.id}).encode(), 0)
        os.fsync(fd)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _flock(fd: int, path: Path, env: str, ttl: float, wait: float) -> None:
    import fcntl

    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _busy(env, _read_holder(path), ttl, str(path)) from None
            time.sleep(0.2)


def _busy(env: str, holder: Holder | None, ttl: float, where: str) -> ConvergeLocked:
    who = holder.describe() if holder else "holder unknown"
    hung = holder is not None and time.time() - holder.started > ttl
    return ConvergeLocked(f"another converge of {env} is running: {who}",
                          f"it has run longer than {int(ttl)} s and may be hung: stop that "
                          "process (the lock goes with it)" if hung else
                          f"wait for it (--lock-wait), or stop that process; lock: {where}")


# -- the lock on each target host --------------------------------------------------------

TARGET_LOCK = "/run/lock/gen/converge-{env}.lock"
LOCK_BUSY = 75  # EX_TEMPFAIL: what the lock script exits with when another runner holds it
SSH_FAILED = 255  # ssh's own exit code when it cannot connect

# Runs on the target through its command prefix. flock(1) holds fd 9 for as long as this
# shell's last command (`cat`) runs, and `cat` ends when gen closes its stdin or dies (the
# pipe, or the ssh connection, closes): a lock can never outlive the converge that took it.
_LOCK_SCRIPT = """
mkdir -p "${1%/*}" && exec 9>>"$1" || exit 1
flock -E 75 -w "$3" 9 || { rc=$?; [ $rc -eq 75 ] && cat "$1"; exit $rc; }
printf '%s\n' "$2" > "$1"
echo locked
exec cat >/dev/null
"""


class TargetUnreachable(UserError):
    """ssh could not reach a target host (its VM may not exist yet)."""


# Hosts whose lock waits until they answer: host -> takes the lock (for the files provider).
_DEFERRED: dict[str, Callable[[], None]] = {}


@contextlib.contextmanager
def target_locks(targets: dict[str, Any], env: str, wait: float = 0.0,
                 say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the converge lock of `env` on every target host (a files provider `Target`).

    The local flock only stops runners on this machine; two CI runners on different
    machines meet on the targets, so each target is locked too, in host order (a fixed
    order, so two runners cannot deadlock), before anything is read from it. A host ssh
    cannot reach yet (a helper VM this converge creates) is locked when it first answers,
    before anything is written to it (`take_deferred_lock`).
    """
    me = _me()
    record = json.dumps({"host": me.host, "pid": me.pid, "started": me.started, "id": me.id})
    with contextlib.ExitStack() as stack:
        for host in sorted(targets):
            try:
                stack.enter_context(_target_lock(host, targets[host], env, record, wait))
            except TargetUnreachable as exc:
                say(f"{exc.message}; its converge lock is taken when it answers")
                _DEFERRED[host] = functools.partial(
                    stack.enter_context, _target_lock(host, targets[host], env, record, wait))
        try:
            yield
        finally:
            _DEFERRED.clear()


def take_deferred_lock(host: str) -> None:
    """Take the converge lock of a host that did not answer when the converge began."""
    take = _DEFERRED.pop(host, None)
    if take is not None:
        take()


@contextlib.contextmanager
def _target_lock(host: str, target: Any, env: str, record: str,
                 wait: float) -> Iterator[None]:
    import subprocess

    from generator.reconcile.files import not_up_yet, unreachable

    where = target.path(TARGET_LOCK.format(env=env))
    argv = ["sh", "-c", _LOCK_SCRIPT, "sh", where, record, str(max(wait, 0.0))]
    proc = subprocess.Popen(target.command(argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline() if proc.stdout else b""  # blocks until held or refused
        if first.strip() != b"locked":
            out, err = proc.communicate(timeout=60)
            if proc.returncode == SSH_FAILED and target.over_ssh:
                said = err.decode(errors="replace").strip().splitlines() or ["no answer"]
                if not not_up_yet(err.decode(errors="replace")):
                    raise unreachable(target.prefix, said[-1][:200])  # waiting will not help
                raise TargetUnreachable(f"host {host} does not answer over ssh yet: "
                                        f"{said[-1][:200]}")
            raise _target_refused(host, env, where, proc.returncode, first + out, err)
        yield
    finally:
        if proc.stdin:
            proc.stdin.close()  # ends `cat` on the target: the lock is released
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _target_refused(host: str, env: str, where: str, code: int, out: bytes,
                    err: bytes) -> UserError:
    if code == LOCK_BUSY:
        holder = None
        with contextlib.suppress(ValueError, KeyError, TypeError):
            data = json.loads(out.decode(errors="replace").strip() or "{}")
            holder = Holder(str(data["host"]), int(data["pid"]), float(data["started"]),
                            str(data["id"]))
        who = holder.describe() if holder else "holder unknown"
        return ConvergeLocked(f"another converge of {env} holds the lock on host {host}: {who}",
                              f"wait for it (--lock-wait); lock: {where} on {host}")
    text = (err or out).decode(errors="replace").strip()
    return UserError(f"could not take the converge lock on host {host}: "
                     f"{text.splitlines()[-1] if text else f'exit {code}'}",
                     "check --files-exec for that host (flock(1) must exist there)")


# -- the journal -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """What an interrupted converge left behind."""

    started: float
    planned: int
    done: tuple[str, ...]
    in_flight: str | None

    def describe(self) -> str:
        text = (f"resuming an interrupted converge: {len(self.done)} of {self.planned} "
                "action(s) were done")
        return text + (f"; {self.in_flight} was in flight" if self.in_flight else "")


class Journal:
    """Append-only JSON lines under `<state>/<env>/journal.jsonl`, committed per wave.

    Each record is one write(2) to a descriptor held open for the run, so it is in the
    kernel's page cache before the action it announces starts: a SIGKILLed converge leaves
    every record it wrote (only a crash of the machine itself can lose them). `commit`
    fsyncs what was written, once per wave and at the end, instead of once per record (an
    fsync per record made journaling cost as much as applying on a disk).
    """

    def __init__(self, state: Path, env: str) -> None:
        self.path = state / env / "journal.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None

    def unfinished(self) -> Resume | None:
        """The interrupted run's progress, if the journal has no `complete` record."""
        records = self.records()
        if not records or records[-1].get("event") == "complete":
            return None
        start = next((r for r in records if r.get("event") == "start"), {})
        done = tuple(r["key"] for r in records if r.get("event") == "done")
        begun = [r["key"] for r in records if r.get("event") == "begin"]
        flight = begun[-1] if begun and begun[-1] not in done else None
        return Resume(float(start.get("time", 0)), int(start.get("planned", 0)), done, flight)

    def records(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a torn last line after SIGKILL
                out.append(json.loads(line))
        return out

    def start(self, plan: Plan, resume: Resume | None) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags | (0 if resume else os.O_TRUNC), 0o644)
        self.write(event="start", time=time.time(), tree=plan.tree_hash,
                   planned=len(plan.actions) + (len(resume.done) if resume else 0),
                   actions=[a.key for a in plan.actions], resumed=resume is not None)
        self.commit()

    def write(self, **record: Any) -> None:
        """Append one record with a single write(2): no torn line unless killed inside it."""
        if self._fd is None:  # written outside a run (never by apply_plan): open, append
            with self.path.open("a") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            return
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data):]

    def commit(self) -> None:
        """Make what was written durable (fsync): at each wave's end, a failure, the end."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def complete(self) -> None:
        self.write(event="complete", time=time.time())
        self.commit()
        self.close()
        self.path.replace(self.path.with_name("last.jsonl"))


# -- applying ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    action: Action
    seconds: float


Progress = Callable[[str], None]


def apply_plan(plan: Plan, journal: Journal, resume: Resume | None = None,
               progress: Progress = lambda _: None, limit: int | None = None,
               parallel: int = 1) -> list[Applied]:
    """Apply every action in order, journaling each; stop at the first failure.

    `limit` applies only the first N actions and leaves the journal unfinished (tests use it
    to stand in for an interrupted run).
    """
    journal.start(plan, resume)
    try:
        done = _apply_in_order(plan, journal, progress, limit, parallel)
        if limit is None or limit >= len(plan.actions):
            journal.complete()
    finally:
        journal.commit()
        journal.close()
    return done


def _apply_in_order(plan: Plan, journal: Journal, progress: Progress, limit: int | None,
                    parallel: int = 1) -> list[Applied]:
    done: list[Applied] = []
    total = len(plan.actions)
    wave: tuple[bool, int] | None = None
    for batch in batches(list(enumerate(plan.actions[:limit], 1)), parallel):
        if wave is not None and wave != wave_of(batch[0][1]):
            journal.commit()  # the wave before is done: one fsync for all its records
        wave = wave_of(batch[0][1])
        if len(batch) == 1:
            done.append(_apply_one(plan, journal, progress, *batch[0], total))
        else:
            done += _apply_together(plan, journal, progress, batch, total, parallel)
    return done


def _apply_one(plan: Plan, journal: Journal, progress: Progress, index: int, action: Action,
               total: int) -> Applied:
    label = f"[{index}/{total}] {action_label(action)}"
    # said once its begin record is written: what a reader saw begin is in the journal
    seconds = _carry_out(plan, journal, action, lambda: progress(f"{label} ..."))
    progress(f"{label} done in {seconds:.2f}s")
    return Applied(action, seconds)


def _carry_out(plan: Plan, journal: Journal, action: Action,
               began_hook: Callable[[], None] = lambda: None) -> float:
    """Apply one action between its journal records; ApplyFailed for a live-system error."""
    journal.write(event="begin", key=action.key, time=time.time())
    began_hook()
    began = time.monotonic()
    try:
        by_name()[action.provider].apply(plan.providers[action.provider], action)
    except GenError:
        raise
    except Exception as exc:  # a live-system error: report it, keep the journal open
        journal.write(event="failed", key=action.key, error=str(exc))
        raise ApplyFailed(f"{action_label(action)} failed: {exc}",
                          "fix the cause and run converge again; it resumes from here") \
            from exc
    seconds = time.monotonic() - began
    journal.write(event="done", key=action.key, seconds=round(seconds, 4))
    return seconds


def _apply_together(plan: Plan, journal: Journal, progress: Progress,
                    batch: list[tuple[int, Action]], total: int,
                    parallel: int) -> list[Applied]:
    """One batch, each hypervisor's actions in order on its own thread. Progress is said
    in plan order (every action announced, then each result once those before it are in),
    so the output is the same whatever finishes first; the first failure in plan order is
    raised once every started action has ended."""
    from generator.reconcile.fleet import in_order

    lanes: dict[Any, list[tuple[int, Action]]] = {}
    for item in batch:
        lanes.setdefault(lane_of(item[1]), []).append(item)
    for index, action in batch:
        progress(f"[{index}/{total}] {action_label(action)} ...")

    def run(lane: list[tuple[int, Action]]) -> dict[int, float | GenError]:
        out: dict[int, float | GenError] = {}
        for index, action in lane:
            try:
                out[index] = _carry_out(plan, journal, action)
            except GenError as exc:
                out[index] = exc
                break  # this hypervisor stops; the others finish what they started
        return out

    results: dict[int, float | GenError] = {}
    for found in in_order(run, list(lanes.values()), parallel):
        results.update(found)
    applied = []
    for index, action in batch:
        outcome = results.get(index)
        if isinstance(outcome, GenError):
            raise outcome
        if outcome is None:  # not attempted: an earlier action on its hypervisor failed
            continue
        progress(f"[{index}/{total}] {action_label(action)} done in {outcome:.2f}s")
        applied.append(Applied(action, outcome))
    return applied


def lane_of(action: Action) -> tuple[str, str] | None:
    """The hypervisor a libvirt action talks to; None for any other action (never batched)."""
    hv = action.payload.get("hv")
    return (action.provider, str(hv)) if action.provider == "libvirt" and hv else None


def batches(items: list[tuple[int, Action]], parallel: int) -> list[list[tuple[int, Action]]]:
    """Consecutive actions that may run at once: libvirt actions of one wave and one boot
    order (bootstrap before masters still holds across hypervisors) on two or more
    hypervisors. Everything else is a batch of one, in plan order."""
    out: list[list[tuple[int, Action]]] = []
    for item in items:
        action = item[1]
        if out and parallel > 1 and lane_of(action) is not None:
            last = out[-1][-1][1]
            if lane_of(last) is not None and (wave_of(last), last.order) == (
                    wave_of(action), action.order):
                out[-1].append(item)
                continue
        out.append([item])
    return [batch for group in out for batch in _single_lane_split(group)]


def _single_lane_split(group: list[tuple[int, Action]]) -> list[list[tuple[int, Action]]]:
    """A batch on one hypervisor only gains nothing from threads: one action at a time."""
    if len({lane_of(a) for _, a in group}) > 1:
        return [group]
    return [[item] for item in group]


def wave_of(action: Action) -> tuple[bool, int]:
    """The wave an action runs in: deletes form their own waves after everything else."""
    return (action.op == "delete", action.wave)


def action_label(action: Action) -> str:
    from generator.reconcile.base import SYMBOL

    return f"{SYMBOL[action.op]} {action.provider} {action.kind} {action.name}"


# -- one converge, end to end ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Converged:
    """What a converge did: its plan, the actions applied, and where the time went."""

    plan: Plan
    applied: tuple[Applied, ...] = ()
    seconds: dict[str, float] | None = None  # None: nothing was applied

    @property
    def summary(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in (self.seconds or {}).items()}


def replan_point(plan: Plan) -> int | None:
    """How many actions to apply before planning again: up to the assets phase, whose role
    configs the files provider publishes (it could not read them at plan time), or up to
    the last kubeadm membership phase, after which the kubernetes provider can read the
    cluster through the admin.conf it fetched, or up to the mirror registry's install when
    the mirror could not be looked at (it is not running before that), so one converge of a
    new site also pushes the images into it."""
    from generator.reconcile.installer import ASSETS

    last = None
    registry = None
    mirror_skipped = any(scope.startswith("mirror:") for scope in plan.skipped)
    for index, action in enumerate(plan.actions):
        if action.provider == "installer" and action.payload.get("phase") == ASSETS:
            return index + 1 if index + 1 < len(plan.actions) else None
        if action.provider == "kubeadm" and action.payload.get("replan"):
            last = index
        if mirror_skipped and action.provider == "files" \
                and action.payload.get("service") == "registry":
            registry = index
    points = [i + 1 for i in (last, registry) if i is not None and i + 1 < len(plan.actions)]
    if mirror_skipped and registry is not None and registry + 1 == len(plan.actions):
        points.append(len(plan.actions))  # nothing after it: plan again to push the images
    return min(points) if points else None


def converge(desired: Desired, settings: Settings, state: Path, *, lock_timeout: float,
             lock_wait: float, show: Callable[[Plan], None], confirm: Callable[[int], None],
             say: Progress, began: float | None = None) -> Converged:
    """Lock the environment (here and on every target host), resume or start a journal,
    plan, `show` the plan, refuse what is not approved, `confirm`, then apply in order.

    `show`, `confirm` and `say` are the command line's: this function prints nothing.
    """
    from generator.reconcile.plan import build_plan, check_approval
    from generator.reconcile.providers import FilesOptions

    began = time.monotonic() if began is None else began
    targets = settings.options_of(FilesOptions).hosts()
    with converge_lock(state, desired.env.name, lock_timeout, lock_wait, say), \
            target_locks(targets, desired.env.name, lock_wait, say):
        journal = Journal(state, desired.env.name)
        resume = journal.unfinished()
        if resume is not None:
            say(resume.describe())
        result = build_plan(desired, settings)
        planned = time.monotonic()
        show(result)
        check_approval(result, settings)
        if result.empty:
            if resume is not None:
                journal.start(result, resume)
                journal.complete()
            return Converged(result)
        confirm(len(result.actions))
        limit = replan_point(result)
        applied = apply_plan(result, journal, resume, say, limit=limit,
                             parallel=settings.parallel)
        if limit is not None:  # what was applied so far lets providers see more
            result = build_plan(desired, settings)
            check_approval(result, settings)
            applied += apply_plan(result, journal, journal.unfinished(), say,
                                  parallel=settings.parallel)
    live = sum(a.seconds for a in applied)
    return Converged(result, tuple(applied), {
        "total": time.monotonic() - began, "apply": live, "plan": planned - began,
        "liveRead": result.read_seconds})
