"""The pure core end to end: environment reference in, rendered Tree out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from generator.environment import Loaded, load_environment
from generator.families import Pins, render_all
from generator.tree import Tree


@dataclass(frozen=True, slots=True)
class Rendered:
    loaded: Loaded
    tree: Tree
    notes: tuple[str, ...] = ()  # lock warnings (stale or unfetched pins)
    pins: Pins = field(default_factory=Pins)  # what the tree was rendered with

    @property
    def env_name(self) -> str:
        return self.loaded.source.name

    def default_out(self) -> Path:
        return self.loaded.source.root / "rendered" / self.env_name


def render_environment(ref: str, cwd: Path | None = None, pins: Pins | None = None) -> Rendered:
    loaded = load_environment(ref, cwd)
    pins = pins or Pins()
    return Rendered(loaded, render_all(loaded.model, pins, locate=loaded.locate), pins=pins)


def render_with_lock(ref: str, cwd: Path | None = None, store_root: Path | None = None,
                     locked: bool = False) -> Rendered:
    """Render with what lock/<env>.lock pins (entries that still match the environment).

    Without a lock this is an unpinned render. `locked` (`--locked`/`--frozen`) requires the
    lock and raises LockMismatch (exit 4) if it would change. Never touches the network.
    """
    from generator.errors import LockMismatch
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
