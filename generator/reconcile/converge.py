"""Apply a plan: one converge per environment (a lock file naming its holder), a journal of
what was done, actions applied in plan order with their timings reported as they go.

Resuming is re-planning: every action is idempotent and the plan is recomputed from live
state, so an interrupted converge (even SIGKILL) is finished by running converge again. The
journal says what the interrupted run had done and which action was in flight, so the
operator sees what is being resumed; a completed journal is kept as `last.jsonl`.
"""

from __future__ import annotations

import contextlib
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
from generator.reconcile.plan import Plan

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


def _abandoned(holder: Holder | None, ttl: float) -> str | None:
    """Why a lock may be taken over, or None if its holder is alive and in time."""
    if holder is None:
        return "unreadable lock file"
    if time.time() - holder.started > ttl:
        return f"older than {int(ttl)} s"
    if holder.host == socket.gethostname() and not _alive(holder.pid):
        return f"pid {holder.pid} is gone"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def converge_lock(state: Path, env: str, ttl: float = DEFAULT_LOCK_TTL, wait: float = 0.0,
                  say: Callable[[str], None] = lambda _: None) -> Iterator[Holder]:
    """Hold `<state>/<env>/converge.lock` for the block; say who holds it if busy.

    The lock appears with its holder already written (a hard link of a finished temp file,
    which fails like O_EXCL when the lock exists): a competitor never reads a half-written
    lock and mistakes it for an abandoned one.
    """
    path = state / env / "converge.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _me()
    mine = path.with_name(f".converge.lock.{os.getpid()}")
    mine.write_text(json.dumps({"host": me.host, "pid": me.pid, "started": me.started,
                                "id": me.id}))
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                holder = _read_holder(path)
                reason = _abandoned(holder, ttl)
                if reason is not None:
                    say(f"taking over an abandoned converge lock ({reason})")
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                if time.monotonic() >= deadline:
                    raise ConvergeLocked(
                        f"another converge of {env} is running: {holder.describe()}"  # type: ignore[union-attr]
                        , f"wait for it, or remove {path} if that process is really gone"
                    ) from None
                time.sleep(0.2)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield me
    finally:
        if (_read_holder(path) or me).id == me.id:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


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
    """Append-only JSON lines under `<state>/<env>/journal.jsonl`, fsynced per record."""

    def __init__(self, state: Path, env: str) -> None:
        self.path = state / env / "journal.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

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
        if resume is None:
            self.path.write_text("")
        self.write(event="start", time=time.time(), tree=plan.tree_hash,
                   planned=len(plan.actions) + (len(resume.done) if resume else 0),
                   actions=[a.key for a in plan.actions], resumed=resume is not None)

    def write(self, **record: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def complete(self) -> None:
        self.write(event="complete", time=time.time())
        self.path.replace(self.path.with_name("last.jsonl"))


# -- applying ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    action: Action
    seconds: float


Progress = Callable[[str], None]


def apply_plan(plan: Plan, journal: Journal, resume: Resume | None = None,
               progress: Progress = lambda _: None, limit: int | None = None) -> list[Applied]:
    """Apply every action in order, journaling each; stop at the first failure.

    `limit` applies only the first N actions and leaves the journal unfinished (tests use it
    to stand in for an interrupted run).
    """
    journal.start(plan, resume)
    done: list[Applied] = []
    total = len(plan.actions)
    for index, action in enumerate(plan.actions[:limit], 1):
        label = f"[{index}/{total}] {action_label(action)}"
        progress(f"{label} ...")
        journal.write(event="begin", key=action.key, time=time.time())
        began = time.monotonic()
        try:
            plan.providers[action.provider].apply(action)
        except GenError:
            raise
        except Exception as exc:  # a live-system error: report it, keep the journal open
            journal.write(event="failed", key=action.key, error=str(exc))
            raise ApplyFailed(f"{action_label(action)} failed: {exc}",
                              "fix the cause and run converge again; it resumes from here") \
                from exc
        seconds = time.monotonic() - began
        journal.write(event="done", key=action.key, seconds=round(seconds, 4))
        progress(f"{label} done in {seconds:.2f}s")
        done.append(Applied(action, seconds))
    if limit is None or limit >= total:
        journal.complete()
    return done


def action_label(action: Action) -> str:
    from generator.reconcile.base import SYMBOL

    return f"{SYMBOL[action.op]} {action.provider} {action.kind} {action.name}"
