"""The one writer: puts a Tree on disk atomically, touching only what changed.

Changed files are first staged as temporary files beside their targets and made durable
with one syncfs of the output's filesystem (not an fsync per file: that costs seconds on a
6,000-file tree), so a full disk or a crash fails before any file is replaced; then each is
renamed into place (atomic per file), and files no longer rendered are removed. Unchanged
files are not rewritten, so their mtimes stay. A `.gen-rendered` marker guards against
writing into a directory gen does not own.

Nothing inside the output is followed: every directory and file is opened relative to its
parent's descriptor with O_NOFOLLOW, so a symlink planted in the output (a `hosts` link to
/etc, a `.gen-tmp` link, a `.gen-rendered` link to a secret) cannot send a write or a read
elsewhere; gen refuses such an output before it writes anything. The marker is written
before the first staged file, so a render killed half-way leaves a directory gen owns and
the next render resumes it (removing the dead run's temporaries). Temporaries carry the
process id and a random part, and renders into one directory take turns (flock on the
directory), so concurrent renders neither collide nor see each other's half-written state.

A first render (no output directory yet) takes a shorter path: the whole tree is written
into one staging directory beside the output (`.<out>.<pid>-<random>.gen-tmp`, flocked
while it is being filled), made durable with one syncfs, and renamed into place at once
without replacing anything (renameat2 RENAME_NOREPLACE). No temporary, fchmod or rename
per file: on a 60,000-file tree that was a tenth of the render. A failure removes the
staging directory; one a SIGKILLed run left is removed by the next first render (its flock
is free); the output never exists half-written. When the rename cannot be made (the output
appeared meanwhile: a concurrent render, or no renameat2), the staged copy is dropped and
the per-file path runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator.errors import UserError
from generator.tree import Executable, Tree

MARKER = ".gen-rendered"
IGNORED_TOP = {".git", MARKER}
TEMP = re.compile(r"\..+\.gen-tmp\Z", re.DOTALL)  # a staged file, ours or a killed run's
MARKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # shown only when a name
MARKER_MAX = 256  # a marker is one name: never read more (it may be a planted big file)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks
NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FIX_LINK = "remove it: gen never writes through symlinks, then render again"


@dataclass(frozen=True, slots=True)
class Changes:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


@dataclass(frozen=True, slots=True)
class _Scan:
    """What is on disk: the rendered files, and temporaries a killed run left behind."""

    tree: Tree
    leftovers: tuple[str, ...]


def read_tree(root: Path) -> Tree:
    """The files under `root` (minus .git and the marker) as a Tree.

    A symlink or a special file (FIFO, device, socket) anywhere in it is refused with a
    UserError; staged temporaries are not part of the tree."""
    try:
        fd = os.open(root, DIR_FLAGS)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _refusal(root, exc) from None
    try:
        return _scan(fd, root).tree
    finally:
        os.close(fd)


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
    try:
        fd = os.open(out, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _refusal(out, exc) from None
    try:
        _guard(fd, out, env_name)
    finally:
        os.close(fd)


def write_tree(out: Path, tree: Tree, env_name: str, within: Path | None = None) -> Changes:
    """Make `out` hold exactly `tree`. With `within` (the repo, for the default
    `rendered/<env>`), no directory between `within` and `out` is followed either: a
    committed `rendered` symlink cannot send the output elsewhere."""
    fresh = _write_fresh(out, tree, env_name, within)
    if fresh is not None:
        return fresh
    with _output_dir(out, within) as fd:
        _guard(fd, out, env_name)
        scan = _scan(fd, out)
        changes = compare(scan.tree, tree)
        _write_marker(fd, out, env_name)  # first: a killed first render stays ours
        with _Dirs(fd, out) as dirs:
            staged = _stage_all(dirs, out, tree, changes.added + changes.changed)
            if staged:
                _syncfs(fd)
            done = 0
            try:
                for parent, temp, name in staged:
                    os.replace(temp, name, src_dir_fd=dirs.open(parent),
                               dst_dir_fd=dirs.open(parent))
                    done += 1
                for path in changes.removed + scan.leftovers:
                    parent, _, name = path.rpartition("/")
                    os.unlink(name, dir_fd=dirs.open(parent))
            except OSError as exc:  # a directory where a file now goes, say
                _drop(dirs, staged[done:])
                where = out / (f"{parent}/{name}" if parent else name)
                raise UserError(f"cannot replace {where}: {exc.strerror or exc}",
                                "remove it by hand, then render again") from None
            for path in changes.removed + scan.leftovers:
                dirs.prune_empty(path.rpartition("/")[0])
        os.fsync(fd)
    return changes


STAGING = re.compile(r"\d+-[0-9a-f]{8}\.gen-tmp\Z")  # after `.<out name>.`
RENAME_NOREPLACE = 1  # renameat2(2)


def _write_fresh(out: Path, tree: Tree, env_name: str, within: Path | None) -> Changes | None:
    """A first render staged whole beside `out` and renamed into place once; None when
    `out` exists already (or cannot be made this way): the per-file path handles it, and
    reports any error about the output exactly as before."""
    if out.name in ("", ".", ".."):
        return None
    parent_fd = _parent_dir(out, within)
    if parent_fd is None:
        return None
    try:
        try:
            os.stat(out.name, dir_fd=parent_fd, follow_symlinks=False)
            return None
        except FileNotFoundError:
            pass
        _remove_dead_staging(parent_fd, out.name)
        staging = f".{out.name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.gen-tmp"
        try:
            os.mkdir(staging, 0o755, dir_fd=parent_fd)
            fd = os.open(staging, DIR_FLAGS, dir_fd=parent_fd)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # alive: another render leaves it alone
            placed = _fill_and_place(fd, parent_fd, staging, out, tree, env_name)
        finally:
            os.close(fd)
        if not placed:
            return None
        os.fsync(parent_fd)  # the rename is durable
    finally:
        os.close(parent_fd)
    return Changes(added=tuple(sorted(tree)), changed=(), removed=())


def _fill_and_place(fd: int, parent_fd: int, staging: str, out: Path, tree: Tree,
                    env_name: str) -> bool:
    """Write the marker and every file into the staging directory `fd`, flush, rename it
    to `out`; False (staging removed) when `out` appeared meanwhile."""
    try:
        _write_marker(fd, out, env_name)
        with _Dirs(fd, out) as dirs:
            _create_all(dirs, out, tree)
        _syncfs(fd)
        placed = _rename_noreplace(parent_fd, staging, out)
    except BaseException:
        shutil.rmtree(staging, dir_fd=parent_fd, ignore_errors=True)
        raise
    if not placed:
        shutil.rmtree(staging, dir_fd=parent_fd, ignore_errors=True)
    return placed


def _parent_dir(out: Path, within: Path | None) -> int | None:
    """The directory `out` goes in, created if needed, reached the way `_output_dir`
    reaches `out`; None when it cannot be made (the per-file path reports why)."""
    if within is not None and out.is_relative_to(within) and out != within:
        if out.parent == within:
            try:
                return os.open(within, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return None
        return _open_below(within, out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _remove_dead_staging(parent_fd: int, name: str) -> None:
    """Staging directories of `name` that a killed render left (their flock is free)."""
    prefix = f".{name[:200]}."
    with os.scandir(parent_fd) as entries:
        dead = [e.name for e in entries if e.name.startswith(prefix)
                and STAGING.match(e.name, len(prefix)) and e.is_dir(follow_symlinks=False)]
    for staging in dead:
        try:
            fd = os.open(staging, DIR_FLAGS, dir_fd=parent_fd)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live render's
            os.close(fd)
            continue
        try:
            shutil.rmtree(staging, dir_fd=parent_fd, ignore_errors=True)
        finally:
            os.close(fd)


def _create_all(dirs: _Dirs, out: Path, tree: Tree) -> None:
    """Create every file of `tree` under a fresh directory: one open, write, close each
    (fchmod only when the umask would take a bit of the mode away)."""
    umask = _umask()
    exact = umask is not None and umask & 0o755 == 0
    path = ""
    # The tree is sorted, so a directory's files come together: its descriptor is looked
    # up once per run of them, not per file (60,000 files at 10,000 nodes).
    folder, folder_fd = "", dirs.root_fd
    try:
        for path, content in tree.items():
            parent, _, name = path.rpartition("/")
            if parent != folder:
                folder, folder_fd = parent, dirs.open(parent, create=True)
            mode = 0o755 if isinstance(content, Executable) else 0o644
            fd = os.open(name, NEW_FLAGS, mode, dir_fd=folder_fd)
            try:
                written = os.write(fd, content)
                if written < len(content):
                    view = memoryview(content)[written:]
                    while view:
                        view = view[os.write(fd, view):]
                if not exact:
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write {out / path}: {exc.strerror or exc}",
                        "check the output directory (permissions, free space)") from None


def _umask() -> int | None:
    """The process's umask, read without setting it (Linux 4.7+); None when unknown."""
    try:
        with Path("/proc/self/status").open("rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rename_noreplace(parent_fd: int, staging: str, out: Path) -> bool:
    """Rename `staging` to `out` in `parent_fd` unless `out` exists; False when it does or
    the system cannot promise that (no renameat2, a filesystem without the flag, a container
    whose seccomp profile answers renameat2 with EPERM: a real permission problem then
    surfaces from the per-file path, with its own message)."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(parent_fd, os.fsencode(staging), parent_fd, os.fsencode(out.name),
                 RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP,
               errno.EPERM):
        return False
    raise UserError(f"cannot create {out}: {os.strerror(err)}",
                    "check the output directory (permissions, free space)")


@contextmanager
def _output_dir(out: Path, within: Path | None) -> Iterator[int]:
    """The output directory, created if needed, opened without following a symlink and
    held under an exclusive flock so concurrent renders into it take turns."""
    if within is not None and out.is_relative_to(within) and out != within:
        fd = _open_below(within, out)
    else:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir(0o755, exist_ok=True)
            fd = os.open(out, DIR_FLAGS)
        except OSError as exc:
            raise _refusal(out, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the flock


def _open_below(top: Path, out: Path) -> int:
    """`out`, created as needed, reached from `top` one no-follow component at a time."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = top
    try:
        for name in out.relative_to(top).parts:
            here = here / name
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise _refusal(here, exc) from None
    return fd


def _refusal(path: Path, exc: OSError) -> UserError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
        return UserError(f"{path} is a symlink", FIX_LINK)
    return UserError(f"cannot use {path} as the output: {exc.strerror or exc}",
                     "check the output directory (permissions, free space)")


def _guard(fd: int, out: Path, env_name: str) -> None:
    marker = _read_marker(fd, out)
    if marker is None:
        if not _only_temporaries(fd):
            raise UserError(f"{out} is not empty and was not rendered by gen",
                            "choose an empty or new directory for --out")
        return
    owner = marker.strip()
    if owner == env_name:
        return
    if not MARKER_NAME.fullmatch(owner):  # never echo what a planted marker holds
        raise UserError(f"{out / MARKER} does not hold an environment name, so gen did not "
                        "write it", "remove it if this directory is gen's output")
    raise UserError(f"{out} holds the rendered environment '{owner}', not '{env_name}'",
                    "render each environment into its own directory")


def _only_temporaries(fd: int, top: bool = True) -> bool:
    """True when the directory holds nothing but (directories of) staged temporaries: what
    a killed render of an older gen, which wrote its marker last, left behind."""
    with os.scandir(fd) as entries:
        for entry in entries:
            if top and entry.name in IGNORED_TOP:
                continue
            if entry.is_dir(follow_symlinks=False):
                try:
                    sub = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    return False
                try:
                    if not _only_temporaries(sub, top=False):
                        return False
                finally:
                    os.close(sub)
            elif not (entry.is_file(follow_symlinks=False) and TEMP.match(entry.name)):
                return False
    return True


def _read_marker(fd: int, out: Path) -> str | None:
    """The marker's text (bounded), None without one; never through a symlink."""
    try:
        handle = os.open(MARKER, READ_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{out / MARKER} is a symlink", FIX_LINK) from None
        raise UserError(f"cannot read {out / MARKER}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise UserError(f"{out / MARKER} is not a regular file",
                            "remove it; gen writes the marker itself")
        text = os.read(handle, MARKER_MAX + 1)
    finally:
        os.close(handle)
    if len(text) > MARKER_MAX:
        return ""  # too long to be a name
    return text.decode("utf-8", errors="replace")


def _write_marker(fd: int, out: Path, env_name: str) -> None:
    if _read_marker(fd, out) == env_name + "\n":
        return
    content = (env_name + "\n").encode()
    temp = _new_temp(fd, MARKER, content, 0o644)  # the same mode whatever the umask
    os.replace(temp, MARKER, src_dir_fd=fd, dst_dir_fd=fd)
    os.fsync(fd)  # the marker is durable before the first staged file exists


def _scan(fd: int, root: Path) -> _Scan:
    tree: Tree = {}
    leftovers: list[str] = []
    _scan_dir(fd, root, "", tree, leftovers)
    return _Scan(dict(sorted(tree.items())), tuple(sorted(leftovers)))


def _scan_dir(fd: int, root: Path, rel_dir: str, tree: Tree, leftovers: list[str]) -> None:
    with os.scandir(fd) as entries:
        found = sorted(entries, key=lambda e: e.name)
    for entry in found:
        rel = f"{rel_dir}{entry.name}"
        if not rel_dir and entry.name in IGNORED_TOP:
            continue
        if entry.is_symlink():
            raise UserError(f"{root / rel} is a symlink inside the output", FIX_LINK)
        if entry.is_dir(follow_symlinks=False):
            try:
                sub = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UserError(f"cannot read {root / rel}: {exc.strerror}") from None
            try:
                _scan_dir(sub, root, rel + "/", tree, leftovers)
            finally:
                os.close(sub)
        elif not entry.is_file(follow_symlinks=False):
            raise UserError(f"{root / rel} is not a regular file (a FIFO, socket or device)",
                            "remove it; the output holds only rendered files")
        elif TEMP.match(entry.name):
            leftovers.append(rel)
        else:
            tree[rel] = _read_regular(fd, entry.name, root, rel)


def _read_regular(dir_fd: int, name: str, root: Path, rel: str) -> bytes:
    """One file of the output; its Path is built only for an error message (not per file
    of a 60,000-file tree)."""
    try:
        handle = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{root / rel} is a symlink inside the output", FIX_LINK) from None
        raise UserError(f"cannot read {root / rel}: {exc.strerror}") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):  # swapped since the directory was listed
            raise UserError(f"{root / rel} is not a regular file",
                            "remove it; the output holds only rendered files")
        chunks = []
        size = info.st_size
        while size > 0 and (chunk := os.read(handle, size)):
            chunks.append(chunk)
            size -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(handle)
    return Executable(data) if info.st_mode & stat.S_IXUSR else data


class _Dirs:
    """Directory descriptors under the output, each opened from its parent's descriptor
    without following symlinks (created on demand); a bounded cache of them."""

    LIMIT = 128

    def __init__(self, root_fd: int, root: Path) -> None:
        self.root_fd, self.root = root_fd, root
        self.fds: dict[str, int] = {}

    def __enter__(self) -> _Dirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def open(self, rel: str, create: bool = False) -> int:
        if not rel:
            return self.root_fd
        if rel in self.fds:
            return self.fds[rel]
        parent_rel, _, name = rel.rpartition("/")
        parent = self.open(parent_rel, create)
        if create:
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(f"{self.root / rel} is a symlink inside the output",
                                FIX_LINK) from None
            raise
        if len(self.fds) >= self.LIMIT:  # bounded: a wide tree must not exhaust fds
            self.close()
        self.fds[rel] = fd
        return fd

    def prune_empty(self, rel: str) -> None:
        """Remove `rel` and its parents while they are empty (never the output itself)."""
        while rel:
            parent_rel, _, name = rel.rpartition("/")
            if rel in self.fds:
                os.close(self.fds.pop(rel))
            try:
                os.rmdir(name, dir_fd=self.open(parent_rel))
            except OSError:  # not empty, or already gone: stop here
                return
            rel = parent_rel


def _stage_all(dirs: _Dirs, out: Path, tree: Tree, paths: tuple[str, ...],
               ) -> list[tuple[str, str, str]]:
    """Stage every path; on failure remove what was staged and keep the old tree."""
    staged: list[tuple[str, str, str]] = []
    path = ""
    try:
        for path in paths:
            parent, _, name = path.rpartition("/")
            content = tree[path]
            mode = 0o755 if isinstance(content, Executable) else 0o644
            staged.append((parent, _new_temp(dirs.open(parent, create=True), name, content,
                                             mode), name))
    except (OSError, UserError) as exc:  # nothing was renamed yet: drop the temporaries
        _drop(dirs, staged)
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot write {out / path}: {exc.strerror or exc}",
                        "check the output directory (permissions, free space)") from None
    return staged


def _drop(dirs: _Dirs, staged: list[tuple[str, str, str]]) -> None:
    for parent, temp, _ in staged:
        try:
            os.unlink(temp, dir_fd=dirs.open(parent))
        except OSError:
            pass


def _new_temp(dir_fd: int, name: str, content: bytes, mode: int) -> str:
    """Write `content` to a fresh temporary beside `name` (never an existing file or link);
    return its name. Few syscalls: file creation dominates big renders."""
    while True:
        temp = f".{name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.gen-tmp"
        try:
            fd = os.open(temp, NEW_FLAGS, 0o600, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            # the same mode whatever the umask (NAR keeps only the executable bit)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    except OSError:
        os.unlink(temp, dir_fd=dir_fd)
        raise
    return temp


def _syncfs(fd: int) -> None:
    """Flush the filesystem holding `fd` (Linux syncfs), else everything (os.sync)."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None).syncfs  # the C library gen already runs on
    except (OSError, AttributeError):
        syncfs = None
    if syncfs is None:
        os.sync()
        return
    syncfs(fd)
