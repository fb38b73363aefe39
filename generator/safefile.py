"""Reading a file gen did not write (a lock, a store object, stream metadata) safely.

A pull request can replace such a file with a symlink to /dev/zero, a FIFO or a directory:
reading it the plain way then exhausts memory or blocks forever. Here a file is opened
non-blocking (a FIFO's open returns at once), must be a regular file, and is read up to a
size limit; whoever calls turns `UnsafeFile` into its own error and exit code.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generator.errors import UserError
from generator.repo_paths import inside as inside  # re-exported (it lives with the paths)

MiB = 1 << 20
FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafeFile(UserError):
    """A file that is not a plain, bounded regular file; `reason` says how."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@contextmanager
def open_regular(path: Path, follow: bool = True) -> Iterator[tuple[int, os.stat_result]]:
    """A descriptor and its fstat for a regular file (FileNotFoundError passes through).

    Without `follow` a symlink at `path` itself is refused."""
    try:
        fd = os.open(path, FLAGS | (0 if follow else os.O_NOFOLLOW))
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not follow and path.is_symlink():
            raise UnsafeFile(path, "is a symlink, not a plain file") from None
        raise UnsafeFile(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(path, f"is not a regular file (it is {_kind(info.st_mode)})")
        os.set_blocking(fd, True)
        yield fd, info
    finally:
        os.close(fd)


def read_regular(path: Path, limit: int, follow: bool = True) -> bytes:
    """The whole content of a regular file of at most `limit` bytes."""
    with open_regular(path, follow) as (fd, info):
        if info.st_size > limit:
            raise UnsafeFile(path, f"is larger than {_size(limit)}")
        chunks, total = [], 0
        while chunk := os.read(fd, min(MiB, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise UnsafeFile(path, f"is larger than {_size(limit)}")
        return b"".join(chunks)


def replace_file(path: Path, text: str) -> None:
    """Replace `path` (a file gen edits in place, such as env.yaml) atomically.

    The new content goes to a temp file with a random name created with O_EXCL|O_NOFOLLOW
    in the same directory (so a symlink planted at a predictable name is never followed),
    is fsynced, then renamed over `path`. A symlink or non-regular file at `path` itself
    is refused: replacing it would silently turn a link into a file."""
    check_replaceable(path)
    data = text.encode("utf-8")
    dir_fd = os.open(path.parent, DIR_FLAGS)
    try:
        temp, fd = _new_temp(dir_fd, path.name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def check_replaceable(path: Path) -> None:
    """Refuse, before anything is read, a `path` that replace_file would refuse."""
    if path.is_symlink():
        raise UnsafeFile(path, "is a symlink, not a plain file; not writing through it")
    if path.exists() and not path.is_file():
        raise UnsafeFile(path, f"is not a regular file (it is {_kind(path.lstat().st_mode)})")


def _new_temp(dir_fd: int, name: str) -> tuple[str, int]:
    """A fresh temp file next to `name`: (its name, a descriptor open for writing)."""
    for _ in range(16):
        temp = f".{name}.{secrets.token_hex(8)}.gen-tmp"
        try:
            return temp, os.open(temp, NEW_FLAGS, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise UserError(f"{name}: cannot create a temp file next to it")


def _kind(mode: int) -> str:
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR:
             "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
    return kinds.get(stat.S_IFMT(mode), "not a plain file")


def _size(count: int) -> str:
    return f"{count // MiB} MiB" if count >= MiB else f"{count} bytes"
