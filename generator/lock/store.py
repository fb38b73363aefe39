"""The content-addressed store: every pinned artifact under its sha256, verified on every read.

Layout: `<root>/sha256/<hex>`. Objects are written to a temp file in the same directory and
renamed into place only after their hash checks out, so a crash never leaves a bad object
under a good name. Copying the whole directory to a disconnected site is enough to render
(and serve boot artifacts) there. The root is `~/.cache/gen/store` unless `GEN_STORE` or
`--store` says otherwise (read at the CLI edge, never by the core).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from generator.errors import LockMismatch, UserError

HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def default_root(environ: dict[str, str] | None = None) -> Path:
    """`$GEN_STORE`, else `$XDG_CACHE_HOME/gen/store`, else `~/.cache/gen/store`."""
    env = os.environ if environ is None else environ
    if env.get("GEN_STORE"):
        return Path(env["GEN_STORE"]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "gen" / "store"


class StoreCorrupt(LockMismatch):
    """A store object whose content no longer hashes to its name."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"store object {path} is corrupt: its content hashes to sha256:{actual}, "
                         f"not sha256:{expected} (run `gen fetch` to replace it)")
        self.path, self.expected, self.actual = path, expected, actual


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
        return self.path(sha256).is_file()

    def verify(self, sha256: str) -> Path:
        """The object's path after re-hashing it; StoreCorrupt when it no longer matches."""
        path = self.path(sha256)
        actual = file_sha256(path)
        if actual != sha256:
            raise StoreCorrupt(path, sha256, actual)
        return path

    def read(self, sha256: str, what: str = "artifact") -> bytes:
        """Verified content of an object (StoreMissing / StoreCorrupt otherwise)."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreMissing(sha256, what, self.root) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise StoreCorrupt(path, sha256, actual)
        return data

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
