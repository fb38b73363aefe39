"""`gen --help`, `gen -h` and bare `gen` answered without importing click, like a `.pyc`.

Importing click alone costs about half of the interpreter's own start, so a process that
only prints the top-level help pays mostly for that import. The text click printed is kept
in `<gen cache dir>/help/<key>` and printed again while nothing it depends on changed; the
key names all of that: the exact arguments, gen's CLI source (`generator/cli.py`, whose
SUMMARIES list the commands, and `generator/__init__.py`), click's installed files (their
inode, size and mtime, found without importing click), the interpreter, the terminal's
columns as click reads them (`shutil.get_terminal_size`, which honours `$COLUMNS`) and
the locale variables gettext reads (click translates its headings). Anything else, any
other argument, or `$_GEN_COMPLETE` (shell completion) goes to click untouched.

A miss runs click exactly as `gen` would, with its output captured, stores what it wrote
(stdout, stderr, exit status), then writes it out. An entry is trusted only when it is a
regular file of ours in a folder of ours that nobody else can write (as for the regex
cache); a damaged or foreign entry is a miss. `GEN_HELP_CACHE=off` turns the cache off.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from generator import owncache

# The argument lists answered from the cache: exactly these, nothing around them.
ARGVS: tuple[list[str], ...] = ([], ["--help"], ["-h"])
_FORMAT = "gen-help-1"
_KEEP = 16  # entries kept (terminal sizes, interpreters); the oldest beyond are removed
_LOCALE = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
_CLICK_FILES = ("__init__.py", "core.py", "formatting.py", "decorators.py")


def applies(argv: list[str]) -> bool:
    """Whether `gen` with these arguments may be answered from the cache."""
    return (argv in ARGVS and "_GEN_COMPLETE" not in os.environ
            and os.environ.get("GEN_HELP_CACHE", "").strip().lower()
            not in ("0", "off", "no", "false"))


def key(argv: list[str]) -> str | None:
    """The entry's name for `argv` in this process's situation; None when click is not found
    (click itself then reports what is wrong)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{_FORMAT}\0{argv!r}\0{sys.version}\0".encode())
    for name in ("cli.py", "__init__.py", "helpcache.py"):
        try:
            digest.update(hashlib.sha256((package / name).read_bytes()).digest())
        except OSError:
            return None
    click = _click_dir()
    if click is None:
        return None
    for name in _CLICK_FILES:
        try:
            info = (click / name).stat()
        except OSError:
            return None
        digest.update(f"{click / name}\0{info.st_ino}\0{info.st_size}\0"
                      f"{info.st_mtime_ns}\0".encode())
    columns = shutil.get_terminal_size().columns
    locale = [os.environ.get(name) for name in _LOCALE]
    digest.update(f"{columns}\0{locale!r}".encode())
    return digest.hexdigest()


def _click_dir() -> Path | None:
    """Where `import click` would load click from, without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("click")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def _folder() -> Path:
    from generator.regexcache import cache_dir

    return cache_dir() / "help"


def load(name: str) -> tuple[int, str, str] | None:
    """(exit status, stdout, stderr) stored under `name`, or None."""
    try:
        data = owncache.read(_folder(), name)
    except RuntimeError:  # no home directory to find a cache in
        return None
    try:
        stored, code, out, err = marshal.loads(data) if data is not None else (None,) * 4
        if stored != name or type(code) is not int or type(out) is not str \
                or type(err) is not str:
            return None
        return code, out, err
    except Exception:  # noqa: BLE001 - a damaged entry is a miss: click answers
        return None


def save(name: str, code: int, out: str, err: str) -> None:
    """Store an entry (best effort: a cache that cannot be written costs speed only)."""
    try:
        folder = _folder()
        if owncache.write(folder, name, [marshal.dumps((name, code, out, err))]):
            owncache.keep_newest(folder, _KEEP)
    except (OSError, RuntimeError):
        pass


def run(argv: list[str]) -> NoReturn:
    """Answer `gen ARGV` from the cache, or from click (storing what it printed)."""
    name = key(argv)
    found = load(name) if name is not None else None
    if found is None:
        found = _from_click()
        if name is not None:
            save(name, *found)
    code, out, err = found
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.stderr.write(err)
        sys.stderr.flush()
    except BrokenPipeError:  # `gen --help | head`: as click's own path, not an error
        code = 0
    sys.exit(code)


def _from_click() -> tuple[int, str, str]:
    """Run the CLI as `gen` runs it, capturing what it writes and its exit status."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from generator.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    if not isinstance(code, int):  # sys.exit("message"): printed, status 1, as Python does
        err.write(f"{code}\n")
        code = 1
    return code, out.getvalue(), err.getvalue()
