"""Compiled regular expressions kept across processes, like `.pyc` files for code.

`gen render env/lab` compiles ~100 regular expressions before it does any work: PyYAML's
reader and resolver, click, textwrap, gettext, platform, gen's own modules. Python keeps
compiled patterns only in a per-process cache (`re._cache`), so every run pays for all of
them again (~10% of the process). This module puts back that cache at start from one file
holding each pattern's compiled form (what `re._compiler` hands to `_sre.compile`), and
rewrites the file at exit when the process compiled patterns it did not hold.

The file holds what every run of a command compiled (a `gen render` that renders compiles
hundreds of patterns, one that reads its tree from the render cache a few dozen), so
nothing is built at load: `re._cache` becomes a dict whose `__missing__` builds a stored
pattern the first time `re` asks for it, from its own marshalled bytes. Loading costs one
`marshal.loads` of an index of bytes, whatever the file holds.

The file is keyed by the exact interpreter build (the compiled form is CPython's private
format) and trusted only when it is a regular file of ours that nobody else can write, as
for the compiled schemas. Anything unexpected (another Python, a damaged file, a missing
private API) turns the cache off: patterns are then compiled as usual. Output never
depends on it.
"""

from __future__ import annotations

import _sre  # type: ignore[import-not-found]
import atexit
import marshal
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

# Bump when what is stored changes shape (it is part of every file name and header).
_FORMAT = "gen-regex-3"
_MAX = 512  # re's own cache holds this many; beyond it the oldest are dropped anyway


def cache_dir() -> Path:
    """`$GEN_CACHE_DIR`, else `$XDG_CACHE_HOME/gen`, else `~/.cache/gen`."""
    explicit = os.environ.get("GEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "gen"


def _header() -> str:
    return f"{_FORMAT}\0{sys.version}\0{sys.implementation.cache_tag}"


def _path() -> Path | None:
    """One file per command: each holds what that command compiles (a `gen render` loads
    its ~100 patterns, not the union of every command's, which fills re's cache of 512)."""
    try:
        tag = f"{_FORMAT}-{sys.implementation.cache_tag}-{sys.hexversion:x}-{_command()}"
        return cache_dir() / "regex" / f"{tag}.marshal"
    except RuntimeError:  # no home directory to find a cache in
        return None


def _command() -> str:
    """The gen command this process runs, as far as its first argument says (a name, or
    `-` for anything else: options, nothing, a program that imports gen)."""
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    return first if first.isascii() and first.isalpha() and len(first) <= 16 else "-"


Key = tuple[Any, ...]  # re's cache key: (type of the pattern, pattern, flags)


class _Lazy(dict[Key, Any]):
    """re's cache, holding besides what it compiled the stored patterns, built on first use
    (`re._compile` looks its key up with `_cache[key]`, which calls `__missing__`)."""

    def __init__(self, stored: dict[Key, bytes]) -> None:
        super().__init__()
        self.stored = stored

    def __missing__(self, key: Key) -> re.Pattern[Any]:
        blob = self.stored.get(key)
        if blob is None:
            raise KeyError(key)
        try:
            compiled: re.Pattern[Any] = _sre.compile(*marshal.loads(blob))
        except Exception:  # noqa: BLE001 - a damaged entry: re compiles it (and it is saved)
            del self.stored[key]
            raise KeyError(key) from None
        self[key] = compiled
        return compiled


# The file load() read and what it held; None when the cache is off.
_loaded: tuple[Path, _Lazy] | None = None


def load() -> None:
    """Put the stored patterns into re's cache (each built when first used)."""
    global _loaded
    cache: Any = getattr(re, "_cache", None)
    path = _path()
    if type(cache) is not dict or path is None or not _private_api():
        return
    lazy = _Lazy(_index(path))
    lazy.update(cache)
    re._cache = lazy  # type: ignore[attr-defined]
    _loaded = (path, lazy)


def save_at_exit() -> None:
    """Update the file at exit with what this process compiled. Only the `gen` command
    itself asks (not a program that imports gen, such as a test run, whose own patterns
    every later `gen` would then load)."""
    if _loaded is not None:
        atexit.register(_save, *_loaded)


def _private_api() -> bool:
    compiler = getattr(re, "_compiler", None)
    parser = getattr(re, "_parser", None)
    return (hasattr(_sre, "compile") and hasattr(compiler, "_code")
            and hasattr(parser, "parse"))


def _entry(pattern: str | bytes, flags: int) -> tuple[Any, ...]:
    """The arguments `re._compiler.compile` gives `_sre.compile` for this pattern."""
    parsed = re._parser.parse(pattern, flags)  # type: ignore[attr-defined]
    code = re._compiler._code(parsed, flags)  # type: ignore[attr-defined]
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # the opcodes are int subclasses marshal refuses: plain ints are what _sre reads anyway
    return (pattern, flags | parsed.state.flags, [int(op) for op in code],
            parsed.state.groups - 1, groupindex, tuple(indexgroup))


def _index(path: Path) -> dict[Key, bytes]:
    """re's cache key -> the marshalled `_sre.compile` arguments, for every entry of a
    trusted file; {} for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return {}
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            header, entries = marshal.loads(handle.read())
        if header != _header():
            return {}
        return {(type(pattern), pattern, flags): blob for pattern, flags, blob in entries}
    except Exception:  # noqa: BLE001 - a damaged file only costs the compiling it would save
        return {}
    finally:
        if fd >= 0:
            os.close(fd)


def _read(path: Path) -> list[tuple[Key, re.Pattern[Any]]]:
    """(re's cache key, compiled pattern) for every entry of a trusted file, else []."""
    return [(key, _sre.compile(*marshal.loads(blob))) for key, blob in _index(path).items()]


def _save(path: Path, lazy: _Lazy) -> None:
    """Rewrite the file (temp + rename) when this process compiled patterns it lacked: those,
    the stored ones this run used, then the other stored ones, at most _MAX."""
    cache: Any = getattr(re, "_cache", {})
    keys = [key for key in list(cache)
            if isinstance(key, tuple) and len(key) == 3 and key[1].__class__ in (str, bytes)
            and isinstance(key[2], int)
            and not key[2] & (re.DEBUG | re.LOCALE | re.TEMPLATE)]
    new = [key for key in keys if key not in lazy.stored]
    if not new:
        return
    used = [key for key in keys if key in lazy.stored]
    rest = [key for key in lazy.stored if key not in cache]
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        entries = [(pattern, flags, marshal.dumps(_entry(pattern, flags)))
                   for _, pattern, flags in new[-_MAX:]]
        entries += [(key[1], key[2], lazy.stored[key])
                    for key in (used + rest)[:max(0, _MAX - len(entries))]]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps((_header(), entries)))
        temp.replace(path)
    except Exception:  # noqa: BLE001 - a cache that cannot be written costs speed only
        try:
            temp.unlink()
        except OSError:
            pass
