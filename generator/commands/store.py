"""`gen store export` and `gen store import`: carry a lock's store objects to another site."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli import FORMAT, STORE, emit, warn
from generator.errors import LockMismatch


@click.group("store")
def store_group() -> None:
    """Move the content store's objects between sites (disconnected installs).

    \b
    Where the network is reachable:   gen fetch env/NAME; gen store export env/NAME FILE
    At the disconnected site:         gen store import FILE; gen verify env/NAME
    """


@store_group.command("export")
@click.argument("env")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images/--no-images", default=True, show_default=True,
              help="Carry the pinned container images too (fetched by `gen fetch`).")
@STORE
@FORMAT
def export_cmd(env: str, file: Path, images: bool, store: Path | None, fmt: str) -> None:
    """Write every store object ENV's lock needs into FILE (a tar with a sha256 manifest).

    The objects are re-hashed as they are written; a missing or corrupt one stops the export
    (run `gen fetch ENV` first). Container images go too: their manifests and blobs, for the
    nodes' architectures (and any other the store holds).
    """
    from generator.environment import load_environment
    from generator.lock.images import architectures
    from generator.lock.lockfile import lock_path, read_lock
    from generator.lock.store import Store, default_root
    from generator.lock.transfer import export_archive, needed_objects

    loaded = load_environment(env)
    warn(loaded.warnings)
    path = lock_path(loaded.source.root, loaded.source.name)
    where = loaded.source.display(path)
    lock = read_lock(path, where)
    if lock is None:
        raise LockMismatch(f"{where} does not exist (run `gen lock {env}` first)")
    target = Store(store or default_root())
    needed = needed_objects(lock, target if images else None, architectures(loaded.model))
    entries = export_archive(target, loaded.source.name, needed, file)
    size = sum(e.size for e in entries)
    emit(fmt, {"archive": str(file), "environment": loaded.source.name,
               "objects": {e.sha256: list(e.inputs) for e in entries}, "bytes": size},
         "\n".join([*(f"{', '.join(e.inputs)}: sha256:{e.sha256}" for e in entries),
                    f"{file}: {len(entries)} object(s), {size} bytes, from {target.root}"]))


@store_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@STORE
@FORMAT
def import_cmd(file: Path, store: Path | None, fmt: str) -> None:
    """Verify every object in FILE (written by `gen store export`) and add it to the store.

    Every object must hash to its name and have the size the manifest lists; otherwise the
    archive is refused and nothing is added. Objects already present and sound are kept.
    """
    from generator.lock.store import Store, default_root
    from generator.lock.transfer import import_archive

    target = Store(store or default_root())
    environment, entries, added = import_archive(target, file)
    emit(fmt, {"archive": str(file), "environment": environment, "store": str(target.root),
               "added": added, "present": [e.sha256 for e in entries if e.sha256 not in added]},
         f"{file}: {len(entries)} object(s) verified for {environment or 'an environment'}, "
         f"{len(added)} added to {target.root}, {len(entries) - len(added)} already there")
