"""NAR serialization and SRI hashing, byte-compatible with `nix hash path --type sha256 --sri`.

A NAR (Nix ARchive) is a canonical serialization of a file tree: directory entries sorted by
name, no timestamps, no owners, and of the permission bits only "executable". Every string is
written as a little-endian u64 length, the bytes, and zero padding to a multiple of 8.

Two sources hash the same way: an in-memory Tree (so a lock's output hashes need no files on
disk) and a directory on disk (to check a rendered output dir against the lock).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from generator.tree import Executable, subtree_of

CHUNK = 1 << 20
_ZEROS = bytes(8)


class _Sink(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def _str(sink: _Sink, data: bytes) -> None:
    sink.update(len(data).to_bytes(8, "little"))
    sink.update(data)
    if len(data) % 8:
        sink.update(_ZEROS[: 8 - len(data) % 8])


def _strs(sink: _Sink, *items: bytes) -> None:
    for item in items:
        _str(sink, item)


def sri(digest: bytes) -> str:
    """`sha256-<base64>`: the SRI form nix prints with `--sri`."""
    return "sha256-" + base64.b64encode(digest).decode()


# --- in-memory trees ---------------------------------------------------------------------

_Node = dict[str, Any]  # name -> bytes (a file) or a nested _Node (a directory)


def _nest(tree: Mapping[str, bytes]) -> _Node | bytes:
    """Paths -> nested dicts. A tree holding only the path "" is that single file."""
    if set(tree) == {""}:
        return tree[""]
    root: _Node = {}
    for path, content in tree.items():
        *dirs, name = path.split("/")
        node = root
        for part in dirs:
            node = node.setdefault(part, {})
        node[name] = content
    return root


def _dump_node(sink: _Sink, node: _Node | bytes) -> None:
    if isinstance(node, bytes):
        _strs(sink, b"(", b"type", b"regular")
        if isinstance(node, Executable):
            _strs(sink, b"executable", b"")
        _strs(sink, b"contents", node, b")")
        return
    _strs(sink, b"(", b"type", b"directory")
    for name in sorted(node, key=str.encode):  # nix orders entries by their bytes
        _strs(sink, b"entry", b"(", b"name", name.encode(), b"node")
        _dump_node(sink, node[name])
        _str(sink, b")")
    _str(sink, b")")


def dump_tree(sink: _Sink, tree: Mapping[str, bytes]) -> None:
    """Write the NAR of a Tree (a directory holding its files) into `sink`."""
    _str(sink, b"nix-archive-1")
    _dump_node(sink, _nest(tree))


def tree_hash(tree: Mapping[str, bytes]) -> str:
    """SRI NAR hash of a Tree: what `nix hash path` prints for the tree written to disk."""
    digest = hashlib.sha256()
    dump_tree(digest, tree)
    return sri(digest.digest())


def nar_bytes(tree: Mapping[str, bytes]) -> bytes:
    """The NAR itself (for tests and debugging; hashing streams instead)."""
    chunks: list[bytes] = []

    class _List:
        def update(self, data: bytes | memoryview, /) -> None:
            chunks.append(bytes(data))

    dump_tree(_List(), tree)
    return b"".join(chunks)


def split_subtrees(tree: Mapping[str, bytes],
                   key: Callable[[str], str] = subtree_of) -> dict[str, dict[str, bytes]]:
    """Group a Tree by lock subtree; paths inside each group are relative to the subtree."""
    groups: dict[str, dict[str, bytes]] = {}
    for path, content in tree.items():
        name = key(path)
        groups.setdefault(name, {})[path[len(name) + 1:] if path != name else ""] = content
    return groups


def subtree_hashes(tree: Mapping[str, bytes]) -> dict[str, str]:
    """Subtree name -> SRI NAR hash of the files that belong to it."""
    return {name: tree_hash(group) for name, group in sorted(split_subtrees(tree).items())}


# --- files on disk -----------------------------------------------------------------------

def _dump_path(sink: _Sink, path: Path, exclude: Iterable[str] = ()) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        _strs(sink, b"(", b"type", b"symlink", b"target", os.fsencode(path.readlink()), b")")
    elif stat.S_ISDIR(info.st_mode):
        skip = set(exclude)
        _strs(sink, b"(", b"type", b"directory")
        # listdir: plain names, cheaper than Path objects for large trees
        for name in sorted(os.listdir(path), key=os.fsencode):  # noqa: PTH208
            if name in skip:
                continue
            _strs(sink, b"entry", b"(", b"name", os.fsencode(name), b"node")
            _dump_path(sink, path / name)
            _str(sink, b")")
        _str(sink, b")")
    elif stat.S_ISREG(info.st_mode):
        _strs(sink, b"(", b"type", b"regular")
        if info.st_mode & stat.S_IXUSR:
            _strs(sink, b"executable", b"")
        _dump_file(sink, path, info.st_size)
        _str(sink, b")")
    else:
        raise ValueError(f"{path}: NAR cannot hold a {stat.filemode(info.st_mode)[0]!r} file")


def _dump_file(sink: _Sink, path: Path, size: int) -> None:
    _str(sink, b"contents")
    sink.update(size.to_bytes(8, "little"))
    if size <= CHUNK:  # most rendered files: one read, no big buffer per file
        data = path.read_bytes()
        if len(data) != size:
            raise ValueError(f"{path} changed size while being hashed")
        sink.update(data)
        if size % 8:
            sink.update(_ZEROS[: 8 - size % 8])
        return
    written = 0
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            sink.update(view[:count])
            written += count
    if written != size:
        raise ValueError(f"{path} changed size while being hashed")
    if size % 8:
        sink.update(_ZEROS[: 8 - size % 8])


def path_hash(path: Path, exclude: Iterable[str] = ()) -> str:
    """SRI NAR hash of a file or directory; `exclude` names top-level entries to leave out."""
    digest = hashlib.sha256()
    _str(digest, b"nix-archive-1")
    _dump_path(digest, Path(path), exclude)
    return sri(digest.digest())


def source_hash(path: Path) -> str:
    """NAR hash of a source dir without Python bytecode caches (they differ per machine)."""
    return tree_hash(read_sources(path))


def read_sources(root: Path) -> dict[str, bytes]:
    tree: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            data = full.read_bytes()
            tree[rel] = Executable(data) if os.access(full, os.X_OK) else data
    return tree


def read_dir(root: Path, exclude: Iterable[str] = ()) -> dict[str, bytes]:
    """A directory as a Tree, the executable bit read the way NAR reads it (S_IXUSR)."""
    skip = set(exclude)
    tree: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in skip:
                continue
            data = full.read_bytes()
            tree[rel] = Executable(data) if full.stat().st_mode & stat.S_IXUSR else data
    return tree
