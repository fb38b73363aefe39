"""The cross-process cache of compiled regular expressions (generator/regexcache.py): every
pattern it hands back is the one Python compiles itself, and a bad file is never trusted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from generator import regexcache


def _gen(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEN_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "generator", *args], env=env, check=True,
                          capture_output=True, text=True)


@pytest.fixture
def warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache written by a real `gen --help` run; its file."""
    cache = tmp_path / "cache"
    _gen(cache, "--help")
    monkeypatch.setenv("GEN_CACHE_DIR", str(cache))
    path = regexcache._path()
    assert path is not None and path.is_file()
    return path


def test_cached_patterns_equal_freshly_compiled_ones(warm: Path) -> None:
    entries = regexcache._read(warm)
    assert len(entries) >= 10  # click's, textwrap's, gettext's, platform's ...
    for (kind, pattern, flags), compiled in entries:
        fresh = re._compiler.compile(pattern, flags)  # type: ignore[attr-defined]
        assert type(pattern) is kind
        # Pattern equality compares the flags, the pattern and the compiled code itself
        assert compiled == fresh, pattern
        assert (compiled.groups, compiled.groupindex) == (fresh.groups, fresh.groupindex)
    assert warm.stat().st_mode & 0o777 == 0o600


def test_a_warm_cache_changes_no_output(warm: Path, tmp_path: Path) -> None:
    cold = _gen(tmp_path / "other-cache", "--help").stdout
    assert _gen(warm.parent.parent, "--help").stdout == cold


@pytest.mark.parametrize("damage", ["garbage", "group-writable", "other-python", "symlink"])
def test_a_bad_file_is_ignored(warm: Path, tmp_path: Path, damage: str) -> None:
    import marshal

    header, entries = marshal.loads(warm.read_bytes())
    if damage == "garbage":
        warm.write_bytes(b"\x00not marshal")
    elif damage == "group-writable":
        warm.chmod(0o660)
    elif damage == "other-python":
        warm.write_bytes(marshal.dumps((header.replace("3.", "9."), entries)))
    else:
        target = tmp_path / "elsewhere"
        target.write_bytes(warm.read_bytes())
        target.chmod(0o600)
        warm.unlink()
        warm.symlink_to(target)
    assert regexcache._read(warm) == []
    assert "Usage: gen" in _gen(warm.parent.parent, "--help").stdout
