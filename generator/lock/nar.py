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
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from generator.tree import Executable, subtree_of

CHUNK = 1 << 20
_ZEROS = bytes(8)


class _Sink(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


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


def _frame(data: bytes) -> bytes:
    """One NAR string: u64 length, the bytes, zero padding to a multiple of 8."""
    return len(data).to_bytes(8, "little") + data + _ZEROS[: -len(data) % 8]


# The fixed parts of every node, framed once: hashing then takes a few large updates
# instead of one small `update` per field (which bounded hashing at ~40 MB/s).
_MAGIC = _frame(b"nix-archive-1")
_REGULAR = _frame(b"(") + _frame(b"type") + _frame(b"regular")
_EXECUTABLE = _frame(b"executable") + _frame(b"")
_CONTENTS = _frame(b"contents")
_DIRECTORY = _frame(b"(") + _frame(b"type") + _frame(b"directory")
_ENTRY = _frame(b"entry") + _frame(b"(") + _frame(b"name")
_NODE = _frame(b"node")
_CLOSE = _frame(b")")
_SYMLINK = _frame(b"(") + _frame(b"type") + _frame(b"symlink") + _frame(b"target")
_FLUSH_AT = 1 << 18  # join small parts into updates of about this size
_DIRECT = 1 << 16  # contents at least this big go to the sink without a copy


class _Buffer:
    """Collects NAR parts and passes them to the sink in large updates."""

    __slots__ = ("sink", "parts", "size")

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _FLUSH_AT:
            self.flush()

    def contents(self, data: bytes | memoryview, size: int) -> None:
        """A file's contents: its framing, the bytes (big ones passed through), padding."""
        self.add(_CONTENTS + size.to_bytes(8, "little"))
        if size >= _DIRECT:
            self.flush()
            self.sink.update(data)
        else:
            self.add(bytes(data))
        if size % 8:
            self.add(_ZEROS[: 8 - size % 8])

    def flush(self) -> None:
        if self.parts:
            self.sink.update(b"".join(self.parts))
            self.parts.clear()
            self.size = 0


def _name(name: str) -> bytes:
    """An entry's name as the bytes it has on disk: a name read from a directory that is not
    UTF-8 holds its bytes as surrogates (os.fsdecode), which plain encode() refuses."""
    return name.encode("utf-8", "surrogateescape")


def _dump_node(out: _Buffer, node: _Node | bytes) -> None:
    if isinstance(node, bytes):
        out.add(_REGULAR + _EXECUTABLE if isinstance(node, Executable) else _REGULAR)
        out.contents(node, len(node))
        out.add(_CLOSE)
        return
    out.add(_DIRECTORY)
    for name in sorted(node, key=_name):  # nix orders entries by their bytes
        out.add(_ENTRY + _frame(_name(name)) + _NODE)
        _dump_node(out, node[name])
        out.add(_CLOSE)
    out.add(_CLOSE)


def dump_tree(sink: _Sink, tree: Mapping[str, bytes]) -> None:
    """Write the NAR of a Tree (a directory holding its files) into `sink`."""
    out = _Buffer(sink)
    out.add(_MAGIC)
    _dump_node(out, _nest(tree))
    out.flush()


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


def tree_hashes(tree: Mapping[str, bytes]) -> tuple[str, dict[str, str]]:
    """(tree_hash(tree), subtree_hashes(tree)) in one walk: each file is framed once and
    its bytes go, in the same updates, to the whole tree's digest and its subtree's (`gen
    lock` and `gen verify` need both; two walks read and framed every byte twice).

    A subtree is a substring of the whole NAR (tree.subtree_of): `TOP/DIR/...` is the node
    of TOP/DIR; `TOP/FILE` files form subtree TOP, a directory of just those entries; a
    top-level file is its own subtree, a regular-file NAR.
    """
    root = _nest(tree)
    if not isinstance(root, dict):
        return tree_hash(tree), subtree_hashes(tree)
    whole = hashlib.sha256()
    fan = _Fan(whole)
    out = _Buffer(fan)
    subs: dict[str, Any] = {}
    out.add(_MAGIC + _DIRECTORY)
    for top in sorted(root, key=_name):
        out.add(_ENTRY + _frame(_name(top)) + _NODE)
        node = root[top]
        if isinstance(node, bytes):
            subs[top] = _fanned(out, fan, _MAGIC, partial(_dump_node, out, node))
        else:
            _dump_top(out, fan, top, node, subs)
        out.add(_CLOSE)
    out.add(_CLOSE)
    out.flush()
    return sri(whole.digest()), {name: sri(subs[name].digest()) for name in sorted(subs)}


class _Fan:
    """A sink feeding the whole tree's digest and, while one is open, a subtree's."""

    __slots__ = ("whole", "also")

    def __init__(self, whole: Any) -> None:
        self.whole = whole
        self.also: Any = None

    def update(self, data: bytes | memoryview, /) -> None:
        self.whole.update(data)
        if self.also is not None:
            self.also.update(data)


def _fanned(out: _Buffer, fan: _Fan, head: bytes, dump: Callable[[], None],
            digest: Any = None) -> Any:
    """Run `dump` with its bytes also going to `digest` (new: started with `head`)."""
    out.flush()
    fan.also = digest if digest is not None else hashlib.sha256(head)
    dump()
    out.flush()
    digest, fan.also = fan.also, None
    return digest


def _dump_top(out: _Buffer, fan: _Fan, top: str, node: _Node, subs: dict[str, Any]) -> None:
    """A top-level directory: its subdirectories are subtrees, its files together one."""
    out.add(_DIRECTORY)
    files = None
    for name in sorted(node, key=_name):
        child = node[name]
        entry = _ENTRY + _frame(_name(name)) + _NODE
        if isinstance(child, bytes):
            def dump(entry: bytes = entry, child: bytes = child) -> None:
                out.add(entry)
                _dump_node(out, child)
                out.add(_CLOSE)
            files = _fanned(out, fan, _MAGIC + _DIRECTORY, dump, files)
        else:
            out.add(entry)
            subs[f"{top}/{name}"] = _fanned(out, fan, _MAGIC, partial(_dump_node, out, child))
            out.add(_CLOSE)
    if files is not None:
        files.update(_CLOSE)
        subs[top] = files
    out.add(_CLOSE)


# --- files on disk -----------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _dump_path(out: _Buffer, path: Path, exclude: Iterable[str] = ()) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        out.add(_SYMLINK + _frame(os.fsencode(path.readlink())) + _CLOSE)
    elif stat.S_ISDIR(info.st_mode):
        fd = os.open(path, _DIR_FLAGS)
        try:
            _dump_dir(out, fd, path, set(exclude))
        finally:
            os.close(fd)
    elif stat.S_ISREG(info.st_mode):
        _dump_file(out, None, os.fspath(path), info, path)
    else:
        raise ValueError(f"{path}: NAR cannot hold a {stat.filemode(info.st_mode)[0]!r} file")


def _dump_dir(out: _Buffer, fd: int, where: Path, skip: set[str]) -> None:
    """A directory, read through its descriptor: names, not Path objects, per entry."""
    with os.scandir(fd) as listing:
        entries = sorted((os.fsencode(e.name), e) for e in listing if e.name not in skip)
    out.add(_DIRECTORY)
    for name, entry in entries:  # nix orders entries by their bytes
        out.add(_ENTRY + _frame(name) + _NODE)
        info = entry.stat(follow_symlinks=False)
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(entry.name, dir_fd=fd)
            out.add(_SYMLINK + _frame(os.fsencode(target)) + _CLOSE)
        elif stat.S_ISDIR(mode):
            sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            try:
                _dump_dir(out, sub, where / entry.name, set())
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode):
            _dump_file(out, fd, entry.name, info, where / entry.name)
        else:
            raise ValueError(f"{where / entry.name}: NAR cannot hold a "
                             f"{stat.filemode(mode)[0]!r} file")
        out.add(_CLOSE)
    out.add(_CLOSE)


def _dump_file(out: _Buffer, dir_fd: int | None, name: str, info: os.stat_result,
               where: Path) -> None:
    size = info.st_size
    out.add(_REGULAR + _EXECUTABLE if info.st_mode & stat.S_IXUSR else _REGULAR)
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    if size <= CHUNK:  # most rendered files: one read (one byte more shows a grown file)
        try:
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
        if len(data) != size:
            raise ValueError(f"{where} changed size while being hashed")
        out.contents(data, size)
    else:
        with os.fdopen(fd, "rb", buffering=0) as handle:
            out.add(_CONTENTS + size.to_bytes(8, "little"))
            out.flush()
            written = 0
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while count := handle.readinto(buffer):
                out.sink.update(view[:count])
                written += count
        if written != size:
            raise ValueError(f"{where} changed size while being hashed")
        if size % 8:
            out.add(_ZEROS[: 8 - size % 8])
    out.add(_CLOSE)


def path_hash(path: Path, exclude: Iterable[str] = ()) -> str:
    """SRI NAR hash of a file or directory; `exclude` names top-level entries to leave out."""
    digest = hashlib.sha256()
    out = _Buffer(digest)
    out.add(_MAGIC)
    _dump_path(out, Path(path), exclude)
    out.flush()
    return sri(digest.digest())


def path_matches(path: Path, tree: Mapping[str, bytes], exclude: Iterable[str] = ()) -> bool:
    """Whether the directory `path` (minus the top-level `exclude`) is exactly `tree`, in
    every way its NAR would show: the same names, no other entry (an empty directory, a
    symlink, a FIFO, a staged temporary), the same bytes and executable bits.

    Equal NARs have equal hashes, so `gen verify`, which has already hashed the fresh render
    against the lock, checks the rendered directory by comparing bytes instead of hashing
    them again: every byte is hashed for the digests the lock records and no more.
    """
    root = _nest(tree)
    if not isinstance(root, dict):
        return False  # a single-file tree is never a rendered directory
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        return _dir_matches(fd, root, set(exclude))
    except OSError:  # a file removed or replaced while being read: it does not match
        return False
    finally:
        os.close(fd)


def _dir_matches(fd: int, node: _Node, skip: set[str]) -> bool:
    with os.scandir(fd) as listing:
        entries = {e.name: e for e in listing if e.name not in skip}
    if entries.keys() != node.keys():
        return False
    for name, entry in entries.items():
        want = node[name]
        mode = entry.stat(follow_symlinks=False).st_mode
        if isinstance(want, dict):
            if not stat.S_ISDIR(mode):
                return False
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                if not _dir_matches(sub, want, set()):
                    return False
            finally:
                os.close(sub)
        elif not stat.S_ISREG(mode) or not _file_is(fd, name, want):
            return False
    return True


def _file_is(dir_fd: int, name: str, want: bytes) -> bool:
    """The file is a regular file holding `want`, executable exactly when `want` is. Its
    type and mode are read from the opened descriptor, so a file swapped for a FIFO or a
    device after the directory was listed does not pass (one byte more than `want` is read
    to see a longer file)."""
    fd = os.open(name, _FILE_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode) or bool(mode & stat.S_IXUSR) != isinstance(want, Executable):
            return False
        return os.read(fd, len(want) + 1) == want if len(want) < CHUNK else _long_file_is(fd, want)
    finally:
        os.close(fd)


def _long_file_is(fd: int, want: bytes) -> bool:
    view, offset = memoryview(want), 0
    while chunk := os.read(fd, CHUNK):
        if view[offset:offset + len(chunk)] != chunk:
            return False
        offset += len(chunk)
    return offset == len(want)


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
