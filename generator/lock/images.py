"""Container images in the content store, as OCI: pulled by `gen fetch`, pushed to a mirror.

An image the lock pins (`registry/repository@sha256:...`) is kept as plain store objects: its
manifest (or multi-arch index) under the manifest's own digest, and every config and layer
blob under its digest, so a layer two images share is stored once. Nothing else is needed:
a manifest names its blobs by digest, and `media_type` reads each manifest's type back from
its own JSON. Every object is verified on the way in (`Store.put_chunks` refuses bytes that
do not hash to the digest) and again on every read.

Of a multi-arch index only the architectures the environment's nodes run are fetched
(children already in the store, say from `gen fetch --all-architectures`, are kept and
carried too). The index itself is stored unchanged, because the lock pins its digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from generator.errors import UserError
from generator.lock.oci import Client, RegistryError, media_type, parse_manifest
from generator.lock.resolve import ImageRef, parse_image
from generator.lock.store import CHUNK, Store, StoreCorrupt, StoreMissing
from generator.model import Environment

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
# CoreOS stream / OS artifact architecture names -> OCI platform architecture
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}
ALL = frozenset({"*"})


@dataclass(frozen=True, slots=True)
class Blob:
    """One object of an image, in push order: blobs before the manifests that name them."""

    digest: str  # sha256:<hex>
    size: int
    manifest: bool  # a manifest or index (PUT by digest), else a blob (uploaded)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def architectures(env: Environment) -> frozenset[str]:
    """The OCI architectures the environment's nodes run: those of its OS artifacts, amd64
    when it names none (every reference lab is x86_64)."""
    found = {OCI_ARCH.get(a.arch, a.arch) for a in env.os_artifacts}
    return frozenset(found or {"amd64"})


def pinned_images(lock: Any) -> dict[str, ImageRef]:
    """Lock key -> the pinned reference (with its digest), for every `image/` input."""
    refs = {}
    for key, entry in sorted(lock.pinned().items()):
        if key.startswith("image/"):
            refs[key] = parse_image(str(entry.locked))
    return refs


def client_for(image: ImageRef, insecure: frozenset[str]) -> Client:
    from generator.lock.resolve import _plain_http

    return Client(image.api_host, plain_http=_plain_http(image.api_host, insecure))


# --- walking an image in the store ------------------------------------------------------------

def _wanted(descriptor: dict[str, Any], archs: frozenset[str]) -> bool:
    platform = descriptor.get("platform") or {}
    if archs == ALL:
        return True
    return platform.get("architecture") in archs and platform.get("os", "linux") == "linux"


def _descriptor(item: Any, what: str) -> tuple[str, int]:
    from generator.lock.oci import DIGEST

    if (not isinstance(item, dict) or not isinstance(item.get("digest"), str)
            or not DIGEST.fullmatch(item["digest"]) or not isinstance(item.get("size"), int)
            or item["size"] < 0):
        raise RegistryError(f"{what}: a descriptor without a sha256 digest and size")
    return item["digest"], item["size"]


def objects(store: Store, digest: str, archs: frozenset[str], what: str) -> list[Blob]:
    """Every store object of the image `digest`, in push order; StoreMissing for an object
    it needs (a child of an index outside `archs` is taken only when present)."""
    body = store.read(digest.removeprefix("sha256:"), what)
    data = parse_manifest(body, what)
    out: list[Blob] = []
    if media_type(body) in INDEX_TYPES:
        for item in data.get("manifests") or []:
            child, _ = _descriptor(item, what)
            if _wanted(item, archs) or store.has(child.removeprefix("sha256:")):
                out += [b for b in objects(store, child, archs, what) if b not in out]
    else:
        for item in [data.get("config"), *(data.get("layers") or [])]:
            blob = Blob(*_descriptor(item, what), manifest=False)
            if blob not in out:
                out.append(blob)
    out.append(Blob(digest, len(body), manifest=True))
    return out


# --- fetch: registry -> store ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fetched:
    key: str
    reference: str
    fetched: int  # objects downloaded now
    present: int  # objects already in the store (verified)
    bytes: int  # bytes downloaded now


def fetch_image(store: Store, key: str, image: ImageRef, archs: frozenset[str],
                client: Client, progress: Callable[[int, int | None], None]) -> Fetched:
    """Copy the pinned image into the store; objects already there (and sound) are kept."""
    assert image.digest is not None
    what = f"{key} ({image.pinned(image.digest)})"
    counts = {"fetched": 0, "present": 0, "bytes": 0}
    plan = _manifests(store, client, image.repository, image.digest, archs, what, counts)
    blobs = [b for b in plan if not b.manifest]
    todo = [b for b in blobs if not _sound(store, b.hex)]
    counts["present"] += len(blobs) - len(todo)
    total, done = sum(b.size for b in todo), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress(done, total)

    for blob in todo:
        store.put_chunks(_sized(client.blob_chunks(image.repository, blob.digest, advance),
                                blob.size, what), blob.hex, f"{what} blob {blob.digest}")
        counts["fetched"] += 1
        counts["bytes"] += blob.size
    if not todo:
        progress(0, 0)  # one line for an image found whole in the store
    return Fetched(key, image.pinned(image.digest), counts["fetched"], counts["present"],
                   counts["bytes"])


def _manifests(store: Store, client: Client, repository: str, digest: str,
               archs: frozenset[str], what: str, counts: dict[str, int]) -> list[Blob]:
    """Store every manifest the image needs (index, wanted children) and list its objects."""
    hexd = digest.removeprefix("sha256:")
    if _sound(store, hexd):
        counts["present"] += 1
        body = store.read(hexd, what)
    else:
        body = client.manifest(repository, digest)
        store.put_bytes(body, hexd, f"{what} manifest {digest}")
        counts["fetched"] += 1
        counts["bytes"] += len(body)
    data = parse_manifest(body, what)
    out: list[Blob] = []
    if media_type(body) in INDEX_TYPES:
        wanted = [item for item in data.get("manifests") or [] if _wanted(item, archs)]
        if not wanted:
            raise UserError(f"{what}: the index has no image for {', '.join(sorted(archs))}",
                            "pin an image built for the nodes' architecture")
        for item in wanted:
            child, _ = _descriptor(item, what)
            out += _manifests(store, client, repository, child, archs, what, counts)
    else:
        out += [Blob(*_descriptor(item, what), manifest=False)
                for item in [data.get("config"), *(data.get("layers") or [])]]
    out.append(Blob(digest, len(body), manifest=True))
    return out


def _sized(chunks: Iterator[bytes], size: int, what: str) -> Iterator[bytes]:
    """The chunks, refused as soon as they run past the descriptor's size."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise RegistryError(f"{what}: a blob is larger than its manifest says",
                                "check the registry; nothing was stored")
        yield chunk


def _sound(store: Store, hexd: str) -> bool:
    """True when the object is in the store and hashes to its name (a bad one is removed so
    that the fetch replaces it)."""
    if not store.has(hexd):
        return False
    try:
        store.verify(hexd)
        return True
    except StoreCorrupt as exc:
        try:
            exc.path.unlink()
        except OSError as err:
            raise UserError(f"cannot replace {exc.path}: {err.strerror}",
                            "remove it by hand, then run `gen fetch` again") from None
        return False


# --- push: store -> mirror ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Missing:
    """What the mirror lacks of one image: the objects to send, in push order."""

    key: str
    repository: str  # in the mirror
    digest: str
    objects: tuple[Blob, ...]

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.objects)


def missing(store: Store, client: Client, key: str, repository: str, digest: str,
            archs: frozenset[str]) -> Missing:
    """The objects of the stored image `digest` the mirror's `repository` does not hold
    (none when the image's manifest is there: a registry keeps a manifest only once every
    object it names is there)."""
    if client.has_manifest(repository, digest):
        return Missing(key, repository, digest, ())
    todo = []
    for blob in objects(store, digest, archs, key):
        present = (client.has_manifest(repository, blob.digest) if blob.manifest
                   else client.has_blob(repository, blob.digest))
        if not present:
            todo.append(blob)
    return Missing(key, repository, digest, tuple(todo))


def push(store: Store, client: Client, gap: Missing,
         progress: Callable[[int, int | None], None]) -> None:
    """Send the missing objects, blobs streamed from the store (verified as they are read),
    then each manifest by digest."""
    total, done = gap.bytes, 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress(done, total)

    for blob in gap.objects:
        if blob.manifest:
            body = store.read(blob.hex, gap.key)
            client.put_manifest(gap.repository, blob.digest, body, media_type(body))
            advance(len(body))
        else:
            client.upload_blob(gap.repository, blob.digest, blob.size,
                               stored_chunks(store, blob, gap.key, advance))


def stored_chunks(store: Store, blob: Blob, what: str,
                  progress: Callable[[int], None]) -> Iterator[bytes]:
    """A store object's bytes, hashed as they are read: StoreCorrupt at the end when they do
    not hash to the name (the registry refuses such an upload too, by its digest)."""
    path = store.path(blob.hex)
    if not store.has(blob.hex):
        raise StoreMissing(blob.hex, what, store.root)
    with store._open(path, blob.hex) as (fd, info):
        if info.st_size != blob.size:
            raise StoreCorrupt(path, blob.hex, f"(an object of {info.st_size} bytes, "
                                               f"the manifest says {blob.size})")
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            progress(len(chunk))
            yield chunk
        if digest.hexdigest() != blob.hex:
            raise StoreCorrupt(path, blob.hex, digest.hexdigest())

