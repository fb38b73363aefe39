"""`gen lock`, `gen update`, `gen verify` and `gen fetch`: the Nix-like lockfile's verbs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from generator.cli import FORMAT, STORE, emit, warn
from generator.errors import LockMismatch, UserError

OFFLINE = click.option("--offline", is_flag=True,
                       help="Resolve only what needs no network (local stream files, digests "
                            "already written); leave the rest unpinned and say so.")
INSECURE = click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST[:PORT]",
                        help="Talk plain HTTP to this registry (loopback ones always are).")


@dataclass(frozen=True, slots=True)
class _Ctx:
    loaded: Any
    path: Path
    where: str
    old: Any
    store: Any


def _context(env: str, store: Path | None) -> _Ctx:
    from generator.environment import load_environment
    from generator.lock.lockfile import lock_path, read_lock
    from generator.lock.store import Store, default_root

    loaded = load_environment(env)
    warn(loaded.warnings)
    path = lock_path(loaded.source.root, loaded.source.name)
    where = loaded.source.display(path)
    return _Ctx(loaded, path, where, read_lock(path, where), Store(store or default_root()))


def _resolver(ctx: _Ctx, offline: bool, insecure: tuple[str, ...]) -> Any:
    from generator.lock.compute import Resolver

    return Resolver(ctx.store, ctx.loaded.source.env_dir, offline, frozenset(insecure),
                    progress=ProgressLine.for_key)


@click.command("lock")
@click.argument("env")
@OFFLINE
@INSECURE
@STORE
@FORMAT
def lock_cmd(env: str, offline: bool, insecure: tuple[str, ...], store: Path | None,
             fmt: str) -> None:
    """Pin ENV's inputs into lock/<env>.lock, adding only what is missing.

    Entries already pinned are kept as they are (use `gen update` to move them); an entry
    whose original changed in the environment is pinned again. The input dirs' NAR hashes
    and the rendered tree's hashes are recorded too. Image tags resolve to digests through
    the registry API, OS artifacts to URL + sha256 from CoreOS stream metadata, manifests to
    their sha256 (their content kept in the store).
    """
    from generator.lock.compute import lock_changes, lock_environment
    from generator.lock.lockfile import write_lock

    ctx = _context(env, store)
    result = lock_environment(ctx.loaded, ctx.old, _resolver(ctx, offline, insecure),
                              allow_missing=offline)
    written = write_lock(ctx.path, result.lock)
    changes = lock_changes(ctx.old, result.lock) if ctx.old else []
    for key, why in result.unresolved:
        click.echo(f"warning: {key} left unpinned: {why}", err=True)
    head = (f"{ctx.where}: {'written' if written else 'unchanged'}, "
            f"{len(result.lock.inputs)} inputs pinned, {len(result.resolved)} resolved now"
            + (f", {len(result.unresolved)} left unpinned" if result.unresolved else ""))
    emit(fmt, {"lock": ctx.where, "written": written, "resolved": list(result.resolved),
               "unresolved": [k for k, _ in result.unresolved], "changes": changes,
               "outputs": result.lock.outputs.nar_hash},
         "\n".join([head, *(f"  {c}" for c in changes)]))


@click.command("update")
@click.argument("env")
@click.argument("inputs", nargs=-1)
@OFFLINE
@INSECURE
@STORE
@FORMAT
def update_cmd(env: str, inputs: tuple[str, ...], offline: bool, insecure: tuple[str, ...],
               store: Path | None, fmt: str) -> None:
    """Re-resolve INPUTS of ENV (all by default) and print old -> new for each.

    INPUT is a lock key such as `image/registry`, `os/rhcos-live-kernel` or
    `manifest/cni/flannel`, or just the part after the slash when that is unambiguous.
    """
    from generator.lock.compute import lock_changes, lock_environment, wanted_inputs
    from generator.lock.lockfile import write_lock

    ctx = _context(env, store)
    keys = _pick(list(wanted_inputs(ctx.loaded)), inputs)
    result = lock_environment(ctx.loaded, ctx.old, _resolver(ctx, offline, insecure), keys,
                              allow_missing=offline)
    write_lock(ctx.path, result.lock)
    changes = lock_changes(ctx.old, result.lock) if ctx.old else ["(new lock)"]
    rows = []
    for key in keys:
        old = ctx.old.inputs.get(key) if ctx.old else None
        new = result.lock.inputs.get(key)
        rows.append({"input": key, "old": old.describe() if old else None,
                     "new": new.describe() if new else None})  # type: ignore[union-attr]
    for key, why in result.unresolved:
        click.echo(f"warning: {key} left unpinned: {why}", err=True)
    text = [f"{r['input']}: {r['old'] or '(none)'} -> {r['new'] or '(unpinned)'}"
            if r["old"] != r["new"] else f"{r['input']}: unchanged ({r['new']})" for r in rows]
    outs = [c for c in changes if c.startswith(("output", "input environment",
                                                "input blueprint", "generator"))]
    emit(fmt, {"lock": ctx.where, "inputs": rows, "changes": changes},
         "\n".join([*text, *outs, f"{ctx.where}: {len(changes)} change(s)"]))


def _pick(known: list[str], names: tuple[str, ...]) -> list[str]:
    if not names:
        return known
    picked = []
    for name in names:
        matches = [k for k in known if k == name or k.split("/", 1)[1] == name]
        if len(matches) != 1:
            what = "is ambiguous" if matches else "is not an input of this environment"
            raise UserError(f"'{name}' {what}", f"inputs: {', '.join(known) or 'none'}")
        picked.append(matches[0])
    return picked


@click.command("verify")
@click.argument("env")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Rendered dir to check against the lock (default: rendered/<env>, "
                   "checked when it exists).")
@STORE
@FORMAT
def verify_cmd(env: str, out: Path | None, store: Path | None, fmt: str) -> None:
    """Re-render ENV with its lock and check every hash; exit 4 naming what differs.

    Checks the lock itself (schema, canonical form, consistency), that rendering with it
    reproduces every output subtree hash, and that the rendered directory on disk still
    hashes to the lock's tree hash (catching hand edits there). Needs no network.
    """
    from generator import cyclic_gc
    from generator.families import render_all
    from generator.lock.compute import (
        UnpinnedImages,
        locked_differences,
        pins_from,
        unpinned_images,
    )

    with cyclic_gc.paused():
        ctx = _context(env, store)
        if ctx.old is None:
            raise LockMismatch(f"{ctx.where} does not exist (run `gen lock {env}` and commit "
                               "it)")
        lock = ctx.old
        pins, _ = pins_from(lock.inputs, ctx.store, strict=True)
        tree = render_all(ctx.loaded.model, pins, locate=ctx.loaded.locate)
        differences = locked_differences(ctx.loaded, lock, tree) + _offline_recheck(ctx)
        unpinned = unpinned_images(ctx.loaded, pins, ctx.where)
        if unpinned:
            raise UnpinnedImages(unpinned, differences)
        if differences:
            raise _Mismatch(f"{ctx.where} does not match a fresh render:", differences)
        target = out or ctx.loaded.source.root / "rendered" / ctx.loaded.source.name
        disk = _check_disk(target, lock, tree, explicit=out is not None)
    emit(fmt, {"lock": ctx.where, "verified": True, "narHash": lock.outputs.nar_hash,
               "subtrees": len(lock.outputs.subtrees), "out": str(target) if disk else None},
         f"{ctx.where}: verified ({len(lock.inputs)} inputs, {len(lock.outputs.subtrees)} "
         f"subtrees, {lock.outputs.nar_hash})"
         + (f"; {target} matches" if disk else f"; {target} not rendered, not checked"))


def _offline_recheck(ctx: _Ctx) -> list[str]:
    """Re-resolve what needs no network (local stream files) to catch an edited pin."""
    from generator.lock.compute import Resolver
    from generator.lock.resolve import Offline

    resolver = Resolver(ctx.store, ctx.loaded.source.env_dir, offline=True)
    lines = []
    for key, entry in sorted(ctx.old.pinned().items()):
        if key.startswith("manifest/") or (key.startswith("os/") and "url" in entry.original):
            continue  # these need a download to check; `gen fetch` verifies their content
        try:
            fresh = resolver.resolve(key, entry.original)
        except (Offline, UserError):
            continue
        if fresh != entry.locked:
            lines.append(f"input {key}: the lock pins {entry.describe()}, its source says "
                         f"{fresh if isinstance(fresh, str) else fresh['sha256']}")
    return lines


def _check_disk(target: Path, lock: Any, tree: dict[str, bytes], explicit: bool) -> bool:
    from generator.lock import nar
    from generator.writer import MARKER, compare, read_tree

    if not target.is_dir():
        if explicit:
            raise UserError(f"{target} is not a directory", "render it first, or fix --out")
        return False
    head = (f"{target} was modified after rendering; it no longer matches the lock "
            "(re-render it, or find who edited it):")
    # `tree` hashes to the lock's narHash (checked before), so the directory matches the lock
    # exactly when its NAR is the tree's: compared byte for byte, not hashed a third time.
    if nar.path_matches(target, tree, exclude=(".git", MARKER)):
        return True
    try:  # never through a symlink, never blocking on a FIFO
        disk = read_tree(target)
    except UserError as exc:
        raise _Mismatch(head, [exc.message]) from None
    changes = compare(disk, tree)
    subtrees = nar.subtree_hashes(disk)
    lines = [f"{name}: {subtrees.get(name, 'absent')} (lock: {lock.outputs.subtrees.get(name)})"
             for name in sorted(set(subtrees) | set(lock.outputs.subtrees))
             if subtrees.get(name) != lock.outputs.subtrees.get(name)]
    lines += [f"{op} {path}" for op, paths in (("+", changes.removed), ("~", changes.changed),
                                               ("-", changes.added)) for path in paths]
    raise _Mismatch(head, lines or ["an entry that holds no file differs: an empty directory, "
                                    "or a temporary a killed `gen render` left"])


class _Mismatch(LockMismatch):
    def __init__(self, head: str, rows: list[str]) -> None:
        super().__init__(head)
        self.head, self.rows = head, rows

    def lines(self) -> list[str]:
        return [self.head, *(f"  {row}" for row in self.rows)]


@click.command("fetch")
@click.argument("env")
@click.option("--images/--no-images", default=True, show_default=True,
              help="Also copy every pinned container image into the store (OCI: manifests "
                   "and blobs by digest).")
@click.option("--all-architectures", is_flag=True,
              help="Keep every architecture of a multi-arch image, not only the nodes' "
                   "(a mirror that refuses sparse indexes, like docker-registry, needs it).")
@INSECURE
@STORE
@FORMAT
def fetch_cmd(env: str, images: bool, all_architectures: bool, insecure: tuple[str, ...],
              store: Path | None, fmt: str) -> None:
    """Download every artifact ENV's lock pins into the content store, verifying sha256.

    Objects already present are re-verified; a corrupt one is reported and fetched again.
    Container images are copied by digest as OCI objects (a layer shared by two images is
    stored once); of a multi-arch index only the nodes' architectures, unless
    --all-architectures. An interrupted fetch resumes: what is in the store is not fetched
    again. Progress (bytes, rate, time left) goes to stderr, per artifact and per image.
    """
    from generator.lock.resolve import download
    from generator.lock.store import StoreCorrupt

    ctx = _context(env, store)
    if ctx.old is None:
        raise LockMismatch(f"{ctx.where} does not exist (run `gen lock {env}` first)")
    todo = [(k, v.locked.get("location") or v.locked["url"], v.locked["sha256"])
            for k, v in sorted(ctx.old.pinned().items())
            if not k.startswith(("image/", "release/"))]  # a release is a digest, no file
    report: dict[str, str] = {}
    for index, (key, url, sha256) in enumerate(todo, 1):
        try:
            if ctx.store.has(sha256):
                ctx.store.verify(sha256)
                report[key] = "present"
                continue
        except StoreCorrupt as exc:
            click.echo(f"warning: {exc.lines()[0].split(' (run')[0]}; fetching it again",
                       err=True)
            try:
                exc.path.unlink()
            except OSError as err:  # a directory planted under the object's name, say
                raise UserError(f"cannot replace {exc.path}: {err.strerror}",
                                "remove it by hand, then run `gen fetch` again") from None
        download(url, ctx.store, sha256, key,
                 ProgressLine.for_key(f"[{index}/{len(todo)}] {key}"),
                 bases=(ctx.loaded.source.env_dir, ctx.loaded.source.blueprint_dir))
        report[key] = "fetched"
    lines = [f"{key}: {state}" for key, state in report.items()]
    fetched = _fetch_images(ctx, all_architectures, frozenset(insecure)) if images else []
    lines += [f"{f.key}: {f.reference}: {f.fetched} object(s) fetched ({_size(f.bytes)}), "
              f"{f.present} present" for f in fetched]
    if not images:
        lines += [f"{key}: pinned by digest, not fetched (--no-images)"
                  for key in sorted(k for k in ctx.old.pinned() if k.startswith("image/"))]
    emit(fmt, {"store": str(ctx.store.root), "artifacts": report,
               "images": {f.key: {"reference": f.reference, "fetched": f.fetched,
                                  "present": f.present, "bytes": f.bytes} for f in fetched}},
         "\n".join([*lines, f"store {ctx.store.root}: {len(report)} artifact(s) and "
                             f"{len(fetched)} image(s) verified"]))


def _fetch_images(ctx: _Ctx, all_architectures: bool, insecure: frozenset[str]) -> list[Any]:
    """Copy every pinned image into the store, one registry connection per registry."""
    from generator.lock.images import ALL, architectures, client_for, fetch_image, pinned_images

    archs = ALL if all_architectures else architectures(ctx.loaded.model)
    refs = pinned_images(ctx.old)
    clients: dict[str, Any] = {}
    done = []
    try:
        for index, (key, image) in enumerate(refs.items(), 1):
            if image.api_host not in clients:
                clients[image.api_host] = client_for(image, insecure)
            client = clients[image.api_host]
            done.append(fetch_image(ctx.store, key, image, archs, client, ProgressLine.for_key(
                f"[{index}/{len(refs)}] {key}")))
    finally:
        for client in clients.values():
            client.close()
    return done


class ProgressLine:
    """A one-line download display on stderr: bytes, rate and time left."""

    def __init__(self, label: str) -> None:
        self.label, self.start, self.last = label, time.monotonic(), 0.0

    @classmethod
    def for_key(cls, label: str) -> Any:
        return cls(label).update

    def update(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - self.last < 0.1 and not finished:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        left = (f", {_size(total - done)} left, ~{(total - done) / rate:.0f}s"
                if total is not None and rate > 0 else "")
        size = f"{_size(done)} / {_size(total)}" if total is not None else _size(done)
        line = f"{self.label}: {size} at {_size(rate)}/s{left}"
        if sys.stderr.isatty():
            click.echo(f"\r{line}\033[K" + ("\n" if finished else ""), err=True, nl=False)
        elif finished:
            click.echo(line, err=True)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"
