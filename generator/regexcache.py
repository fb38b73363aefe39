"""Compiled regular expressions kept across processes, like `.pyc` files for code.

`gen render env/lab` compiles ~100 regular expressions before it does any work: PyYAML's
reader and resolver, click, textwrap, gettext, platform, gen's own modules. Python keeps
compiled patterns only in a per-process cache (`re._cache`), so every run pays for all of
them again (~10% of the process). This module fills that cache at start from one file
holding each pattern's compiled form (what `re._compiler` hands to `_sre.compile`), and
rewrites the file at exit when the process compiled patterns it did not hold.

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
_FORMAT = "gen-regex-2"
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
        tag = f"{sys.implementation.cache_tag}-{sys.hexversion:x}-{_command()}"
        return cache_dir() / "regex" / f"{tag}.marshal"
    except RuntimeError:  # no home directory to find a cache in
        return None


def _command() -> str:
    """The gen command this process runs, as far as its first argument says (a name, or
    `-` for anything else: options, nothing, a program that imports gen)."""
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    return first if first.isascii() and first.isalpha() and len(first) <= 16 else "-"


# What load() found: (the file, re's cache keys it held); None when the cache is off.
_loaded: tuple[Path, set[tuple[Any, ...]]] | None = None


def load() -> None:
    """Fill re's cache from the file."""
    global _loaded
    cache: Any = getattr(re, "_cache", None)
    path = _path()
    if not isinstance(cache, dict) or path is None or not _private_api():
        return
    keys: set[tuple[Any, ...]] = set()
    for key, compiled in _read(path):
        cache.setdefault(key, compiled)
        keys.add(key)
    _loaded = (path, keys)


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


def _read(path: Path) -> list[tuple[tuple[Any, ...], re.Pattern[Any]]]:
    """(re's cache key, compiled pattern) for every entry of a trusted file, else []."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return []
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            header, entries = marshal.loads(handle.read())
        if header != _header():
            return []
        out = []
        for flags, entry in entries:
            pattern = entry[0]
            out.append(((type(pattern), pattern, flags), _sre.compile(*entry)))
        return out
    except Exception:  # noqa: BLE001 - a damaged file only costs the compiling it would save
        return []
    finally:
        if fd >= 0:
            os.close(fd)


def _save(path: Path, loaded: set[tuple[Any, ...]]) -> None:
    """Rewrite the file (temp + rename) when this process compiled patterns it lacked."""
    cache: Any = getattr(re, "_cache", {})
    keys = [key for key in list(cache)
            if isinstance(key, tuple) and len(key) == 3 and key[1].__class__ in (str, bytes)
            and isinstance(key[2], int)
            and not key[2] & (re.DEBUG | re.LOCALE | re.TEMPLATE)][-_MAX:]
    if not keys or set(keys) <= loaded:
        return
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        entries = [(flags, _entry(pattern, flags)) for _, pattern, flags in keys]
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
