"""The content-addressed store: every pinned artifact under its sha256, verified on every read.

Layout: `<root>/sha256/<hex>`. Objects are written to a temp file in the same directory and
renamed into place only after their hash checks out, so a crash never leaves a bad object
under a good name. Copying the whole directory to a disconnected site is enough to render
(and serve boot artifacts) there. An object is read only when it is a regular file inside
the store (a symlink may point to another object, never out of the store): a FIFO, a device
such as /dev/zero or a directory under an object's name is reported, never read. The root
is `~/.cache/gen/store` unless `GEN_STORE` or `--store` says otherwise (read at the CLI
edge, never by the core).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator.errors import LockMismatch, UserError
from generator.repo_paths import default_store_root
from generator.safefile import UnsafeFile, inside, open_regular

HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


default_root = default_store_root  # its old name, still used by most callers


class StoreCorrupt(LockMismatch):
    """A store object whose content no longer hashes to its name."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"store object {path} is corrupt: its content hashes to sha256:{actual}, "
                         f"not sha256:{expected} (run `gen fetch` to replace it)")
        self.path, self.expected, self.actual = path, expected, actual


class StoreUnsafe(StoreCorrupt):
    """A store object that is not a regular file inside the store (`gen fetch` replaces it)."""

    def __init__(self, path: Path, expected: str, reason: str) -> None:
        LockMismatch.__init__(self, f"store object {path} {reason} (run `gen fetch` to "
                                    "replace it)")
        self.path, self.expected, self.actual = path, expected, ""


class StoreMissing(LockMismatch):
    def __init__(self, expected: str, what: str, root: Path) -> None:
        super().__init__(f"{what}: sha256:{expected} is not in the store {root} "
                         "(run `gen fetch ENV` where the network is reachable, or copy the store)")


@dataclass(frozen=True, slots=True)
class Store:
    """A content-addressed directory of sha256-named objects."""

    root: Path

    def path(self, sha256: str) -> Path:
        if not HEX.match(sha256):
            raise UserError(f"'{sha256}' is not a sha256 hex digest", "64 lowercase hex digits")
        return self.root / "sha256" / sha256

    def has(self, sha256: str) -> bool:
        """True when something is there under the name (verify says whether it is sound)."""
        return os.path.lexists(self.path(sha256))

    def verify(self, sha256: str) -> Path:
        """The object's path after re-hashing it; StoreCorrupt when it no longer matches."""
        path = self.path(sha256)
        actual = self._hash(path, sha256)
        if actual != sha256:
            raise StoreCorrupt(path, sha256, actual)
        return path

    def read(self, sha256: str, what: str = "artifact") -> bytes:
        """Verified content of an object (StoreMissing / StoreCorrupt otherwise)."""
        path = self.path(sha256)
        try:
            with self._open(path, sha256) as (fd, info):
                data = _read_exactly(fd, info.st_size)
        except FileNotFoundError:
            raise StoreMissing(sha256, what, self.root) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise StoreCorrupt(path, sha256, actual)
        return data

    @contextmanager
    def _open(self, path: Path, sha256: str) -> Iterator[tuple[int, os.stat_result]]:
        """The object opened for reading: a regular file inside the store, or StoreUnsafe."""
        if not inside(path, self.root):
            raise StoreUnsafe(path, sha256, "is a symlink that leaves the store")
        try:
            with open_regular(path) as opened:
                yield opened
        except UnsafeFile as exc:
            raise StoreUnsafe(path, sha256, exc.reason) from None

    def _hash(self, path: Path, sha256: str) -> str:
        with self._open(path, sha256) as (fd, info):
            return _hash_fd(fd, info.st_size)

    def put_bytes(self, data: bytes, expected: str | None = None, what: str = "") -> str:
        return self.put_chunks([data], expected, what)

    def put_chunks(self, chunks: Iterable[bytes], expected: str | None = None,
                   what: str = "") -> str:
        """Stream chunks into the store; refuse them if they do not hash to `expected`."""
        directory = self.root / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f".tmp-{os.getpid()}-{id(chunks)}"
        digest = hashlib.sha256()
        try:
            with temp.open("wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise ChecksumMismatch(what or "download", expected, actual)
            temp.replace(directory / actual)
            return actual
        finally:
            temp.unlink(missing_ok=True)


class ChecksumMismatch(UserError):
    """Downloaded content that does not match the checksum it was promised to have."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: checksum mismatch: expected sha256 {expected}, got {actual}",
                         "the source changed or the download is corrupt; refusing it")


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            if progress:
                progress(count)
    return digest.hexdigest()


def _read_exactly(fd: int, size: int) -> bytes:
    """At most `size` bytes and one more (a file that grew then fails its hash check)."""
    chunks, left = [], size + 1
    while left > 0 and (chunk := os.read(fd, min(CHUNK, left))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _hash_fd(fd: int, size: int) -> str:
    digest, left = hashlib.sha256(), size + 1
    while left > 0 and (chunk := os.read(fd, min(CHUNK, left))):
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()
