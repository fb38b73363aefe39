"""Store transfer: one archive holding every store object an environment's lock needs.

The archive is a plain tar. Its first member is `manifest.json` (format, environment, and for
each object its sha256, size and the lock keys that need it); then one member
`sha256/<hex>` per object, in manifest order. Nothing else is allowed in it: no directories,
links or devices, no name that is not a content address, so an entry can never land outside
the store. Writing is deterministic (sorted, mtime 0, owner 0, mode 0644): the same lock and
store give the same bytes, so two sites can compare archives by hash.

Import trusts nothing in the file: every member's size must be the one the manifest lists,
every object must hash to its name, and each is streamed (never held whole in memory) into a
staging directory inside the store. Only when the whole archive checked out are the objects
renamed into place, so a tampered or truncated archive adds nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from generator.errors import UserError
from generator.lock.store import CHUNK, HEX, Store, StoreCorrupt, StoreMissing

FORMAT = "gen-store-archive/1"
MANIFEST = "manifest.json"
MANIFEST_LIMIT = 4 << 20  # a few thousand objects fit easily; more is not a real lock
OBJECT_LIMIT = 64 << 30  # larger than any OS image; a bigger claim is a forged size


@dataclass(frozen=True, slots=True)
class Entry:
    sha256: str
    size: int
    inputs: tuple[str, ...]


def needed_objects(lock: Any, store: Store | None = None,
                   archs: frozenset[str] = frozenset({"amd64"})) -> dict[str, tuple[str, ...]]:
    """sha256 -> lock keys, for every pinned input whose content lives in the store.

    With a store, the images' objects too (`gen fetch` put them there): each image's
    manifest, and the manifests and blobs it names for `archs` (and any other child the
    store holds)."""
    from generator.lock.images import objects, pinned_images

    needed: dict[str, list[str]] = {}
    for key, entry in sorted(lock.pinned().items()):
        if key.startswith("image/"):
            continue
        needed.setdefault(entry.locked["sha256"], []).append(key)
    for key, image in (pinned_images(lock) if store is not None else {}).items():
        assert image.digest is not None and store is not None
        for blob in objects(store, image.digest, archs, key):
            keys = needed.setdefault(blob.hex, [])
            if key not in keys:
                keys.append(key)
    return {sha: tuple(keys) for sha, keys in sorted(needed.items())}


class ArchiveRefused(UserError):
    def __init__(self, archive: Path, message: str) -> None:
        super().__init__(f"{archive}: {message}",
                         "the archive is damaged or was altered; nothing was imported, "
                         "export it again at the source")


def export_archive(store: Store, environment: str, needed: dict[str, tuple[str, ...]],
                   target: Path) -> list[Entry]:
    """Write the archive to `target` (via a temp file renamed into place)."""
    entries = [_present(store, sha, keys) for sha, keys in needed.items()]
    manifest = _manifest_bytes(environment, entries)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with temp.open("wb") as raw:
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_member(MANIFEST, len(manifest)), io.BytesIO(manifest))
                for entry in entries:
                    _add_object(tar, store, entry)
            raw.flush()
            os.fsync(raw.fileno())
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)
    return entries


def _present(store: Store, sha256: str, keys: tuple[str, ...]) -> Entry:
    path = store.path(sha256)
    if not store.has(sha256):
        raise StoreMissing(sha256, keys[0], store.root)
    return Entry(sha256, path.stat().st_size, keys)


def _manifest_bytes(environment: str, entries: list[Entry]) -> bytes:
    body = {"format": FORMAT, "environment": environment,
            "objects": [{"sha256": e.sha256, "size": e.size, "inputs": list(e.inputs)}
                        for e in entries]}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_object(tar: tarfile.TarFile, store: Store, entry: Entry) -> None:
    """Stream the object into the tar, hashing it on the way (it is checked as it is read)."""
    path = store.path(entry.sha256)
    with store._open(path, entry.sha256) as (fd, info):
        if info.st_size != entry.size:
            raise StoreCorrupt(path, entry.sha256, "(it changed size while exporting)")
        reader = _HashingReader(fd)
        tar.addfile(_member(f"sha256/{entry.sha256}", entry.size), reader)
        if reader.digest.hexdigest() != entry.sha256:
            raise StoreCorrupt(path, entry.sha256, reader.digest.hexdigest())


class _HashingReader:
    def __init__(self, fd: int) -> None:
        self.fd, self.digest = fd, hashlib.sha256()

    def read(self, size: int = CHUNK) -> bytes:
        chunk = os.read(self.fd, min(size, CHUNK) if size > 0 else CHUNK)
        self.digest.update(chunk)
        return chunk


def import_archive(store: Store, archive: Path) -> tuple[str, list[Entry], list[str]]:
    """Check every entry of `archive`, then add the objects to the store.

    Returns (environment, entries, sha256s that were new to the store)."""
    root = store.root / "sha256"
    root.mkdir(parents=True, exist_ok=True)
    staging = store.root / f".import-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        environment, entries = _check_into(archive, staging)
        added = [e.sha256 for e in entries if not _sound(store, e.sha256)]
        for sha in added:
            target = store.path(sha)
            if target.is_dir() and not target.is_symlink():
                raise UserError(f"cannot replace {target}: it is a directory",
                                "remove it by hand, then import again")
        for sha in added:
            store.path(sha).unlink(missing_ok=True)  # a corrupt copy: the checked one wins
            (staging / sha).replace(store.path(sha))
        return environment, entries, added
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sound(store: Store, sha256: str) -> bool:
    try:
        store.verify(sha256)
        return True
    except (StoreCorrupt, FileNotFoundError):
        return False


def _check_into(archive: Path, staging: Path) -> tuple[str, list[Entry]]:
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            members = _members(tar, archive)
            environment, entries = _read_manifest(archive, tar, next(members, None))
            expected = {e.sha256: e for e in entries}
            seen: set[str] = set()
            for member in members:
                _check_object(archive, tar, member, expected, seen, staging)
            missing = sorted(set(expected) - seen)
            if missing:
                raise ArchiveRefused(archive, f"object sha256:{missing[0]} is listed in "
                                              f"{MANIFEST} but not in the archive")
            return environment, entries
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveRefused(archive, f"not a readable tar archive ({exc})") from None
    except FileNotFoundError:
        raise UserError(f"{archive}: no such file", "give the path of an archive written by "
                        "`gen store export`") from None
    except IsADirectoryError:
        raise UserError(f"{archive} is a directory", "give an archive file") from None


def _members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        if not member.isreg():
            raise ArchiveRefused(archive, f"member '{member.name}' is not a regular file "
                                          "(links, directories and devices are refused)")
        yield member


def _read_manifest(archive: Path, tar: tarfile.TarFile,
                   member: tarfile.TarInfo | None) -> tuple[str, list[Entry]]:
    if member is None or member.name != MANIFEST:
        raise ArchiveRefused(archive, f"the first member must be {MANIFEST}")
    if member.size > MANIFEST_LIMIT:
        raise ArchiveRefused(archive, f"{MANIFEST} is {member.size} bytes, more than the "
                                      f"{MANIFEST_LIMIT} allowed")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular member always has content
    try:
        body = json.loads(handle.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveRefused(archive, f"{MANIFEST} is not JSON ({exc})") from None
    return _parse_manifest(archive, body)


def _parse_manifest(archive: Path, body: Any) -> tuple[str, list[Entry]]:
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ArchiveRefused(archive, f"{MANIFEST}: format is not '{FORMAT}'")
    objects = body.get("objects")
    if not isinstance(objects, list):
        raise ArchiveRefused(archive, f"{MANIFEST}: objects must be a list")
    entries: dict[str, Entry] = {}
    for index, item in enumerate(objects):
        where = f"{MANIFEST}: at objects[{index}]"
        sha, size = (item.get("sha256"), item.get("size")) if isinstance(item, dict) else (0, 0)
        if not isinstance(sha, str) or not HEX.match(sha) or sha in entries:
            raise ArchiveRefused(archive, f"{where}.sha256: not a new sha256 hex digest")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= OBJECT_LIMIT:
            raise ArchiveRefused(archive, f"{where}.size: not a size up to {OBJECT_LIMIT}")
        inputs = item.get("inputs")
        names = tuple(str(i) for i in inputs) if isinstance(inputs, list) else ()
        entries[sha] = Entry(sha, size, names)
    return str(body.get("environment", "")), list(entries.values())


def _check_object(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo,
                  expected: dict[str, Entry], seen: set[str], staging: Path) -> None:
    sha = member.name.removeprefix("sha256/")
    if member.name != f"sha256/{sha}" or sha not in expected or sha in seen:
        raise ArchiveRefused(archive, f"member '{member.name}' is not an object listed in "
                                      f"{MANIFEST} (or is there twice)")
    if member.size != expected[sha].size:
        raise ArchiveRefused(archive, f"member {member.name} is {member.size} bytes, "
                                      f"{MANIFEST} says {expected[sha].size}")
    handle = tar.extractfile(member)
    assert handle is not None
    actual = _stream_to(handle, staging / sha)
    if actual != sha:
        raise ArchiveRefused(archive, f"member {member.name}: content hashes to "
                                      f"sha256:{actual}")
    seen.add(sha)


def _stream_to(handle: IO[bytes], path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("xb") as out:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()

