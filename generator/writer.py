"""The one writer: puts a Tree on disk atomically, touching only what changed.

Changed files are first staged as temporary files beside their targets and made durable
with one syncfs of the output's filesystem (not an fsync per file: that costs seconds on a
6,000-file tree), so a full disk or a crash fails before any file is replaced; then each is
renamed into place (atomic per file), and files no longer rendered are removed. Unchanged
files are not rewritten, so their mtimes stay. A `.gen-rendered` marker guards against
writing into a directory gen does not own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from generator.errors import UserError
from generator.tree import Executable, Tree

MARKER = ".gen-rendered"
IGNORED_TOP = {".git", MARKER}


@dataclass(frozen=True, slots=True)
class Changes:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def read_tree(root: Path) -> Tree:
    """The files under `root` (minus .git and the marker) as a Tree."""
    tree: Tree = {}
    if not root.is_dir():
        return tree
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path():
            dirnames[:] = [d for d in dirnames if d not in IGNORED_TOP]
        dirnames.sort()
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            if rel in IGNORED_TOP:
                continue
            path = Path(dirpath) / name
            data = path.read_bytes()
            tree[rel] = Executable(data) if os.access(path, os.X_OK) else data
    return tree


def compare(current: Tree, desired: Tree) -> Changes:
    def same(path: str) -> bool:
        return (current[path] == desired[path]
                and isinstance(current[path], Executable) == isinstance(desired[path],
                                                                        Executable))

    return Changes(
        added=tuple(sorted(set(desired) - set(current))),
        changed=tuple(sorted(p for p in set(desired) & set(current) if not same(p))),
        removed=tuple(sorted(set(current) - set(desired))),
    )


def guard_output(out: Path, env_name: str) -> None:
    """Refuse to take over a non-empty directory that gen did not render."""
    if not out.exists():
        return
    marker = out / MARKER
    entries = [p for p in out.iterdir() if p.name not in IGNORED_TOP]
    if entries and not marker.is_file():
        raise UserError(f"{out} is not empty and was not rendered by gen",
                        "choose an empty or new directory for --out")
    if marker.is_file() and marker.read_text().strip() != env_name:
        raise UserError(f"{out} holds the rendered environment "
                        f"'{marker.read_text().strip()}', not '{env_name}'",
                        "render each environment into its own directory")


def write_tree(out: Path, tree: Tree, env_name: str) -> Changes:
    guard_output(out, env_name)
    changes = compare(read_tree(out), tree)
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    made: set[Path] = set()
    try:
        for path in changes.added + changes.changed:
            staged.append((_stage(out / path, tree[path], made), out / path))
    except OSError as exc:  # nothing was renamed yet: drop the temporaries, keep the old tree
        failed = (out / path).with_name(f".{(out / path).name}.gen-tmp")
        for temp in [t for t, _ in staged] + ([failed] if failed.is_file() else []):
            temp.unlink(missing_ok=True)
        raise UserError(f"cannot write {out / path}: {exc.strerror or exc}",
                        "check the output directory (permissions, free space)") from None
    if staged:
        _syncfs(out)
    for temp, final in staged:
        temp.replace(final)
    for path in changes.removed:
        (out / path).unlink()
        _prune_empty_dirs(out, (out / path).parent)
    marker = out / MARKER
    if not marker.is_file() or marker.read_text() != env_name + "\n":
        marker.write_text(env_name + "\n")
        marker.chmod(0o644)  # like every rendered file: the same mode whatever the umask
    _fsync_dir(out)
    return changes


def _stage(final: Path, content: bytes, made: set[Path]) -> Path:
    """Write `content` beside `final` (few syscalls: file creation dominates big renders)."""
    if final.parent not in made:
        final.parent.mkdir(parents=True, exist_ok=True)
        made.add(final.parent)
    temp = final.with_name(f".{final.name}.gen-tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        # the same mode whatever the umask (NAR keeps only the executable bit)
        os.fchmod(fd, 0o755 if isinstance(content, Executable) else 0o644)
    finally:
        os.close(fd)
    return temp


def _prune_empty_dirs(root: Path, directory: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding `path` (Linux syncfs), else everything (os.sync)."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None).syncfs  # the C library gen already runs on
    except (OSError, AttributeError):
        syncfs = None
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
