"""The pure core end to end: environment reference in, rendered Tree out."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# The environment, the families and the lock are imported where a render needs them: a
# render-cache hit (render_cached) reads its tree back without any of them (process start).
if TYPE_CHECKING:
    from generator.environment import Loaded
    from generator.families import Pins
    from generator.tree import Tree


def _no_pins() -> Pins:
    from generator.families import Pins

    return Pins()


@dataclass(frozen=True, slots=True)
class Rendered:
    loaded: Loaded
    tree: Tree
    notes: tuple[str, ...] = ()  # lock warnings (stale or unfetched pins)
    pins: Pins = field(default_factory=_no_pins)  # what the tree was rendered with

    @property
    def env_name(self) -> str:
        return self.loaded.source.name

    def default_out(self) -> Path:
        return self.loaded.source.root / "rendered" / self.env_name


def render_environment(ref: str, cwd: Path | None = None, pins: Pins | None = None) -> Rendered:
    from generator.environment import load_environment
    from generator.families import Pins, render_all

    loaded = load_environment(ref, cwd)
    pins = pins or Pins()
    return Rendered(loaded, render_all(loaded.model, pins, locate=loaded.locate), pins=pins)


def render_with_lock(ref: str, cwd: Path | None = None, store_root: Path | None = None,
                     locked: bool = False) -> Rendered:
    """Render with what lock/<env>.lock pins (entries that still match the environment).

    Without a lock this is an unpinned render. `locked` (`--locked`/`--frozen`) requires the
    lock and raises LockMismatch (exit 4) if it would change. Never touches the network.
    """
    from generator.environment import load_environment
    from generator.errors import LockMismatch
    from generator.families import render_all
    from generator.lock.compute import check_locked, render_pins, unpinned_manifests
    from generator.lock.lockfile import lock_path, read_lock
    from generator.lock.store import Store, default_root

    loaded = load_environment(ref, cwd)
    path = lock_path(loaded.source.root, loaded.source.name)
    where = loaded.source.display(path)
    lock = read_lock(path, where)
    if locked and lock is None:
        raise LockMismatch(f"{where} does not exist (run `gen lock env/{loaded.source.name}` "
                           "and commit it)")
    pins, notes = render_pins(loaded, lock, Store(store_root or default_root()), strict=locked)
    notes += unpinned_manifests(loaded, pins)
    tree = render_all(loaded.model, pins, locate=loaded.locate)
    if locked and lock is not None:
        check_locked(loaded, lock, tree, where)
    return Rendered(loaded, tree, tuple(notes), pins)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A render as `gen render` reports it, read back from the render cache or rendered."""

    env_name: str
    root: Path  # the repo root
    tree: Tree
    warnings: tuple[str, ...]  # the loader's warnings, one rendered line each
    notes: tuple[str, ...]  # lock warnings (stale or unfetched pins)
    rendered: Rendered | None = None  # the full render (model, pins) on a miss; None on a hit
    key: str | None = None  # the render cache key the inputs had (None: cache off)

    @property
    def hit(self) -> bool:
        return self.rendered is None

    def default_out(self) -> Path:
        return self.root / "rendered" / self.env_name


def render_cached(ref: str, cwd: Path | None = None, store_root: Path | None = None,
                  locked: bool = False, cache: bool = True) -> Outcome:
    """render_with_lock through the content-addressed render cache (generator.render_cache).

    A hit reads the tree, the loader's warnings and the lock notes back, verified, without
    loading the environment; a miss renders and stores them. Only a successful render is
    stored, and `locked` is part of the key, so every error (a stale lock's exit 4 too)
    comes from a real render. `cache=False` (`--no-cache`) neither reads nor writes.
    """
    from generator import render_cache

    key = render_key(ref, cwd, store_root, locked) if cache else None
    if key is not None:
        entry = render_cache.load_entry(key, store_root)
        if entry is not None:
            with suppress(KeyError, TypeError, ValueError):
                header, tree = entry
                return Outcome(str(header["env"]), Path(header["root"]), tree,
                               render_cache.strings(header["warnings"]),
                               render_cache.strings(header["notes"]), key=key)
    rendered = render_with_lock(ref, cwd, store_root, locked)
    warnings = tuple(w.render() for w in rendered.loaded.warnings)
    root = rendered.loaded.source.root
    # The key was taken before the render read its inputs: stored only when they are still
    # what it names (an edit meanwhile would file the new inputs' tree under the old key).
    if key is not None and render_key(ref, cwd, store_root, locked) == key:
        render_cache.save_entry(key, {"env": rendered.env_name, "root": str(root),
                                      "warnings": list(warnings),
                                      "notes": list(rendered.notes)},
                                rendered.tree, store_root)
    return Outcome(rendered.env_name, root, rendered.tree, warnings, rendered.notes, rendered,
                   key)


def render_key(ref: str, cwd: Path | None, store_root: Path | None,
               locked: bool) -> str | None:
    """The render cache's key for `ref`, or None when the render itself must speak: the
    environment is not found, or its lock is not a plain file (the render refuses it)."""
    import os
    import sys
    from pathlib import PurePosixPath

    from generator import render_cache
    from generator.repo_paths import default_store_root, find_root, lock_path, resolve_env_dir

    if not render_cache.enabled():
        return None
    try:
        env_dir = resolve_env_dir(ref, cwd)
        root = find_root(env_dir.parent)
        rel = PurePosixPath(env_dir.relative_to(root).as_posix())
        path = lock_path(root, env_dir.name)
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            return None
        lock = path.read_bytes() if path.is_file() else None
        version, sources = render_cache.running_sources()
        return render_cache.render_key(version, sources, root, rel, lock, store_root,
                                       {"command": "render", "root": str(root),
                                        "locked": locked, "python": sys.version,
                                        # a note on a missing manifest names the store
                                        "store": str(store_root or default_store_root())})
    except (OSError, ValueError):
        return None
    except Exception as exc:  # a GenError: importing generator.errors only when one is raised
        from generator.errors import GenError

        if isinstance(exc, GenError):
            return None
        raise
