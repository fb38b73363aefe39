"""A content-addressed cache of rendered trees in gen's store, shared by `gen render`
(and `--check`, `--locked`, `gen plan`) and `gen diff`.

The key is built the way a Nix derivation's is, from everything a render reads: the
generator that renders (its version and the sha256 of every source file), the
environment's path in the repo, the contents of its inputs (the environment's folder and
the repo's whole `blueprints/` folder, which holds the blueprint the lock names, following
symlinks that stay in the repo as the loader does), the lock file's bytes, and which
manifests that lock pins are present and sound in the store (a render reads them). Same
key, same render: the tree is read back instead of rendered again.

An entry is `<store>/renders/<key>`: one line naming the format and the sha256 of the
payload, then the payload (a JSON header, then the files' bytes). Every read re-hashes the
payload: a truncated, altered or unreadable entry is ignored, the tree is rendered again
and the entry rewritten. An entry or a `renders/` folder that another user owns or could
write is never read (it could plant files in a rendered tree). Only successful renders are
stored, so every error a render can raise is still raised; the tree holds secret markers,
never a secret's value (as in any rendered tree).

`GEN_RENDER_CACHE=off` (or 0, no, false) turns the cache off for every command: nothing is
read or written, every tree is rendered (to rule the cache out while debugging).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from generator import owncache
from generator.tree import Executable, Tree

FORMAT = b"gen-render-cache 1"
KEEP = 64  # entries kept; the oldest beyond it are removed when one is added
KEEP_BYTES = 2 << 30  # and the oldest beyond this many bytes in all (a 10k-node tree is 49 MB)
SWITCH = "GEN_RENDER_CACHE"


def enabled() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() not in ("0", "off", "no", "false")


def cache_dir(store_root: Path | None = None) -> Path:
    from generator.repo_paths import default_store_root

    return (store_root or default_store_root()) / "renders"


def running_sources() -> tuple[str, dict[str, str]]:
    """(version, relative path -> sha256) of the running generator package (~1 MB).
    Symlinked folders are followed: in a source checkout the package's data (schemas,
    built-in blueprints) is linked in from the repo, in a wheel copied; both are inputs.

    Hashing the package every run was a fifth of a render-cache hit's process, so each
    file's hash is kept beside its identity (device, inode, size, mtime and ctime, as a
    `.pyc` keeps its source's), in gen's cache folder: a file is read again only when its
    identity changed (any write changes the ctime, which no one can set back)."""
    import generator

    package = Path(generator.__file__).resolve().parent
    known = _known_hashes(package)
    sources, seen = {}, {}
    pending = [("", str(package))]
    while pending:  # os.walk(followlinks=True), without its second stat of every entry
        below, folder = pending.pop()
        with os.scandir(folder) as found:
            entries = list(found)
        for entry in entries:
            rel = below + entry.name
            try:
                if entry.is_dir():
                    if entry.name != "__pycache__":
                        pending.append((rel + "/", entry.path))
                    continue
                if entry.name.endswith((".pyc", ".pyo")):
                    continue
                info = entry.stat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            ident = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            digest = known.get(rel)
            # anything but (this identity, a text digest) is hashed again: a damaged entry
            # costs only the hashing it would save
            if digest.__class__ is not tuple or len(digest) != 2 or digest[0] != ident \
                    or digest[1].__class__ is not str:
                digest = (ident, hashlib.sha256(Path(entry.path).read_bytes()).hexdigest())
            sources[rel], seen[rel] = digest[1], digest
    if seen != known:
        _keep_hashes(package, seen)
    return generator.__version__, sources


_HASHES = "gen-source-hashes-1"
_HASHES_KEEP = 8  # package folders whose hashes are kept (the newest written)


def _hashes_file(package: Path) -> Path:
    from generator.regexcache import cache_dir

    name = hashlib.sha256(str(package).encode()).hexdigest()[:32]
    return cache_dir() / "sources" / name


def _known_hashes(package: Path) -> dict[str, Any]:
    """rel -> (identity, sha256) kept by an earlier run for this package folder; {} when
    there is none or it is not ours alone (then every file is hashed, as without it)."""
    import marshal

    try:
        path = _hashes_file(package)
    except RuntimeError:  # no home directory for a cache
        return {}
    data = owncache.read(path.parent, path.name)
    try:
        kind, where, known = marshal.loads(data) if data is not None else (None, None, None)
        if kind != _HASHES or where != str(package) or not isinstance(known, dict):
            return {}
        return known
    except Exception:  # noqa: BLE001 - a damaged file costs only the hashing it would save
        return {}


def _keep_hashes(package: Path, known: dict[str, Any]) -> None:
    import marshal

    with contextlib.suppress(OSError, RuntimeError):
        path = _hashes_file(package)
        if owncache.write(path.parent, path.name,
                          [marshal.dumps((_HASHES, str(package), known))]):
            # one file per package folder: gen diff's temporary worktrees would add one each
            owncache.keep_newest(path.parent, _HASHES_KEEP)


# The libraries a render parses and checks with: an upgrade can change a tree or a refusal.
LIBRARIES = ("yaml", "ruamel.yaml", "jsonschema", "fastjsonschema")


def libraries() -> list[Any]:
    """Where each library a render runs on is installed and its top file's identity (inode,
    size, mtime): an upgrade or a reinstall names other entries. Found, not imported (~2 ms;
    a hit imports none of them)."""
    import importlib.util

    found: list[Any] = []
    for name in LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
            origin = spec.origin if spec is not None else None
            info = Path(origin).stat() if origin else None
        except (ImportError, ValueError, OSError):
            origin, info = None, None
        found.append([name, origin,
                      [info.st_ino, info.st_size, info.st_mtime_ns] if info else None])
    return found


def render_key(version: str, sources: Mapping[str, str], root: Path, rel: PurePosixPath,
               lock: bytes | None, store_root: Path | None = None,
               extra: Mapping[str, Any] | None = None) -> str:
    """The sha256 naming the render of `root/rel` by the generator (see the module doc).

    The whole `blueprints/` folder is hashed (it is small), so the key needs no parse of
    env.yaml to learn which blueprint it names; a built-in blueprint is part of the
    generator's sources. Symlinks are named in the key (the loader refuses some that a
    content hash alone would not see) and followed while they stay in the repo. `extra`
    names what else the caller's entry depends on (`gen render`: the repo's path and
    --locked); gen diff's key has none.
    """
    blueprints = root / "blueprints"
    material = {
        "format": FORMAT.decode(),
        "generator": [version, sorted(sources.items())],
        "environment": [str(rel), _describe(root / rel, os.path.realpath(root))],
        "blueprints": _describe(blueprints, os.path.realpath(root)),
        "lock": hashlib.sha256(lock).hexdigest() if lock is not None else None,
        "libraries": libraries(),
        "manifests": _manifests_in_store(lock, store_root),
    }
    if extra:
        material["extra"] = dict(extra)
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _describe(top: Path, real_root: str) -> list[Any]:
    """What the loader could read under `top`, for the key: one row per entry, by its path
    below `top`. A symlink is named by its target and, when it stays in the repo (the
    loader follows those: `blueprints/NAME` may link a folder kept elsewhere in the repo),
    what it leads to (by its path in the repo) is described too, once, at the link's path
    + NUL (no file name holds one); one leaving the repo is only named (the loader refuses
    to read through it). Only regular files are read: a device, FIFO or socket is named by
    its type (reading /dev/zero never ends). A loop, not recursion: a folder nested
    thousands deep is no internal error."""
    rows: list[Any] = []
    followed: set[str] = set()  # each link target is described once (links may loop)
    pending: list[tuple[Path, str]] = [(top, "")]
    while pending:
        path, rel = pending.pop()
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                target, real = str(path.readlink()), os.path.realpath(path)
                inside = real == real_root or real.startswith(real_root.rstrip("/") + "/")
                if not inside:
                    rows.append([rel, "link", target])
                    continue
                rows.append([rel, "link", target, os.path.relpath(real, real_root)])
                if real not in followed:
                    followed.add(real)
                    pending.append((Path(real), rel + "/\0"))
            elif stat.S_ISREG(info.st_mode):
                rows.append([rel, "file", bool(info.st_mode & stat.S_IXUSR),
                             _file_sha256(path)])
            elif stat.S_ISDIR(info.st_mode):
                with os.scandir(path) as found:
                    names = sorted((e.name for e in found if e.name != "__pycache__"),
                                   reverse=True)
                rows.append([rel, "dir"])
                pending += ((path / name, f"{rel}/{name}") for name in names)
            else:
                rows.append([rel, "other", stat.S_IFMT(info.st_mode)])
        except OSError as exc:  # the render reports what it cannot read; the key differs
            rows.append([rel, "unreadable", exc.errno])
    return rows


def _file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since the lstat
            return "not a regular file"
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _manifests_in_store(lock: bytes | None, store_root: Path | None) -> dict[str, bool]:
    """sha256 -> present and sound, for every manifest the lock pins."""
    try:
        inputs = json.loads(lock or b"{}").get("inputs") or {}
        wanted = sorted({str(entry["locked"]["sha256"]) for key, entry in inputs.items()
                         if key.startswith("manifest/")})
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}  # a damaged lock fails the render itself: nothing is stored for it
    if not wanted:  # most locks: the store's code is not even imported (process start)
        return {}
    from generator.errors import GenError
    from generator.lock.store import Store, default_root

    store = Store(store_root or default_root())
    found = {}
    for sha256 in wanted:
        try:
            store.read(sha256)
            found[sha256] = True
        except (GenError, OSError):
            found[sha256] = False
    return found


def load_entry(key: str, store_root: Path | None = None) -> tuple[dict[str, Any], Tree] | None:
    """(header, tree) of the entry under `key` when it is there, ours and verifies."""
    if not enabled():
        return None
    data = owncache.read(cache_dir(store_root), key)
    if data is None:
        return None
    try:
        return decode(data)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # corrupt: never trusted, the tree is rendered again


def save_entry(key: str, header: Mapping[str, Any], tree: Tree,
               store_root: Path | None = None) -> None:
    """Store an entry (best effort: a read-only or full store only costs the next render)."""
    if not enabled():
        return
    where = cache_dir(store_root)
    with contextlib.suppress(OSError):
        # never into someone else's folder: our trees would be theirs to change
        if owncache.write(where, key, encode(header, tree)):
            owncache.keep_newest(where, KEEP, KEEP_BYTES)


def encode(header: Mapping[str, Any], tree: Tree) -> list[bytes]:
    """The entry's bytes, in parts (the files are not joined into one more copy)."""
    paths = sorted(tree)
    head = dict(header)
    head["files"] = [[p, len(tree[p]), isinstance(tree[p], Executable)] for p in paths]
    parts: list[bytes] = [json.dumps(head, sort_keys=True).encode(), b"\n"]
    parts += (bytes(tree[p]) for p in paths)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return [FORMAT + b" " + digest.hexdigest().encode() + b"\n", *parts]


def decode(data: bytes) -> tuple[dict[str, Any], Tree]:
    """(header, tree) of an entry's bytes; ValueError unless its digest verifies. Offsets,
    not partitions: a 10,000-node entry is ~50 MB, each copy of it ~30 ms."""
    line = data.index(b"\n")
    magic, _, digest = data[:line].rpartition(b" ")
    if magic != FORMAT or hashlib.sha256(memoryview(data)[line + 1:]).hexdigest().encode() \
            != digest:
        raise ValueError("not a sound cache entry")
    head = data.index(b"\n", line + 1)
    header = json.loads(data[line + 1:head])
    if not isinstance(header, dict):
        raise ValueError("not a sound cache entry")
    tree: Tree = {}
    at = head + 1
    for path, size, executable in header.pop("files"):
        content = data[at:at + size]
        at += size
        tree[str(path)] = Executable(content) if executable else content
    if at != len(data):
        raise ValueError("sizes do not add up")
    return header, tree


def strings(values: Iterable[Any]) -> tuple[str, ...]:
    """A header's list of strings, checked (a sound entry of another shape is a miss)."""
    out = tuple(values)
    if not all(isinstance(v, str) for v in out):
        raise TypeError("not a list of strings")
    return out
