"""Files of gen's own caches (render cache entries, kept source hashes, the help cache):
read only when they and their folder are ours alone, written whole or not at all.

What another user could write is never read: a planted render-cache entry would put files
into a rendered tree, a planted help text would print into a terminal. A folder is made
0700 and a file 0600 from its first byte; a file is written under a temporary name and
renamed into place, so a reader sees the old file or the new, never half of one. Kept
small and free of heavy imports: `gen --help` reads through it before click is imported.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path


def trusted(info: os.stat_result, kind: int) -> bool:
    """Of file type `kind`, ours, and writable by no one else."""
    return (stat.S_IFMT(info.st_mode) == kind and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def read(folder: Path, name: str) -> bytes | None:
    """The bytes of `folder/name`, or None when either is missing or not ours alone (never
    through a symlink)."""
    try:
        if not trusted(os.lstat(folder), stat.S_IFDIR):
            return None
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not trusted(os.fstat(fd), stat.S_IFREG):
            return None
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            return handle.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def write(folder: Path, name: str, parts: Iterable[bytes]) -> bool:
    """Write `folder/name` (0600, the folder made 0700) from `parts`; False when the folder
    is someone else's (nothing is written into it). OSError when writing fails."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not trusted(os.lstat(folder), stat.S_IFDIR):
        return False
    temp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover temporary keeps its mode; open's applies to new
        with os.fdopen(fd, "wb") as handle:
            handle.writelines(parts)
        temp.replace(folder / name)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    return True


def keep_newest(folder: Path, count: int, max_bytes: int | None = None) -> None:
    """Remove all but the newest `count` files of `folder` (not its temporaries), and the
    oldest beyond `max_bytes` in all (the newest is always kept)."""
    found = []
    for path in folder.iterdir():
        if not path.name.startswith("."):
            try:
                info = path.stat()
            except OSError:
                continue
            found.append((info.st_mtime, info.st_size, path))
    found.sort(key=lambda row: row[0], reverse=True)
    total = 0
    for index, (_, size, path) in enumerate(found):
        total += size
        if index >= count or (max_bytes is not None and index > 0 and total > max_bytes):
            path.unlink(missing_ok=True)
