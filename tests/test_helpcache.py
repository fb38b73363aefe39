"""`gen --help`, `gen -h` and bare `gen` from the help cache (generator/helpcache.py): the
bytes click prints, at every width, stale when the CLI changes, never a foreign file, and
no other invocation touched. Every run is a real `python -m generator` process; the
reference is click itself, reached through generator.cli without the entry module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLICK = ["-c", "import sys; from generator.cli import main; main()"]  # no help cache


def _run(cache: Path, args: list[str], columns: int = 80, pythonpath: Path = ROOT,
         program: list[str] | None = None,
         extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEN_HELP_CACHE", "_GEN_COMPLETE")}
    env.update({"GEN_CACHE_DIR": str(cache), "COLUMNS": str(columns),
                "PYTHONPATH": str(pythonpath), **(extra or {})})
    done = subprocess.run([sys.executable, *(program or ["-m", "generator"]), *args],
                          env=env, cwd=cache.parent,  # -m puts the cwd first on the path
                          capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def _click(cache: Path, args: list[str], columns: int = 80, **kw: object) -> tuple[int, str, str]:
    return _run(cache, args, columns, program=CLICK, **kw)  # type: ignore[arg-type]


def _entries(cache: Path) -> list[Path]:
    folder = cache / "help"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
@pytest.mark.parametrize("columns", [50, 72, 100, 160])
def test_the_cached_text_is_clicks_at_every_width(tmp_path: Path, args: list[str],
                                                   columns: int) -> None:
    cache = tmp_path / "cache"
    reference = _click(tmp_path / "other", args, columns)
    assert "Usage: gen" in reference[1] + reference[2]
    first = _run(cache, args, columns)  # a miss: click runs, its output is stored
    assert len(_entries(cache)) == 1
    second = _run(cache, args, columns)  # a hit: printed from the entry
    assert first == reference
    assert second == reference


def test_a_hit_imports_no_click(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run(cache, ["--help"])
    code, out, err = _run(cache, ["--help"], extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert code == 0 and "Usage: gen" in out
    assert "generator.helpcache" in err and " click" not in err


def test_a_changed_cli_is_not_answered_from_the_cache(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "generator", copy / "generator", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    before = _run(cache, ["--help"], pythonpath=copy)
    assert _run(cache, ["--help"], pythonpath=copy) == before
    cli = copy / "generator" / "cli.py"
    cli.write_text(cli.read_text().replace("Typical loop", "The usual loop"))
    after = _run(cache, ["--help"], pythonpath=copy)
    assert "The usual loop" in after[1] and "Typical loop" not in after[1]
    assert after == _click(tmp_path / "other", ["--help"], pythonpath=copy)


@pytest.mark.parametrize("damage", ["group-writable", "garbage", "other-name", "symlink",
                                    "folder-writable"])
def test_a_foreign_or_damaged_entry_is_not_printed(tmp_path: Path, damage: str) -> None:
    import marshal

    cache = tmp_path / "cache"
    _run(cache, ["--help"])
    (entry,) = _entries(cache)
    name, code, out, err = marshal.loads(entry.read_bytes())
    planted = marshal.dumps((name, 0, "planted text\n", ""))
    entry.write_bytes(planted)
    assert _run(cache, ["--help"])[1] == "planted text\n"  # the entry is what a hit prints
    if damage == "group-writable":
        entry.chmod(0o660)
    elif damage == "garbage":
        entry.write_bytes(b"\x00not marshal")
    elif damage == "other-name":
        entry.write_bytes(marshal.dumps(("0" * 64, 0, "planted text\n", "")))
    elif damage == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(planted)
        target.chmod(0o600)
        entry.unlink()
        entry.symlink_to(target)
    else:
        entry.parent.chmod(0o770)
    assert _run(cache, ["--help"]) == _click(tmp_path / "other", ["--help"])


@pytest.mark.parametrize("args", [["--version"], ["render", "--help"], ["--help", "--help"],
                                  ["-h", "render"], ["nosuch"], ["--nosuch"]])
def test_other_arguments_go_to_click_untouched(tmp_path: Path, args: list[str]) -> None:
    cache = tmp_path / "cache"
    assert _run(cache, args) == _click(tmp_path / "other", args)
    assert _entries(cache) == []


def test_shell_completion_is_never_answered_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run(cache, [])  # a stored bare `gen`
    completion = {"_GEN_COMPLETE": "bash_source"}
    got = _run(cache, [], extra=completion)
    assert got == _click(tmp_path / "other", [], extra=completion)
    assert "complete" in got[1]


def test_the_switch_turns_the_cache_off(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _run(cache, ["--help"], extra={"GEN_HELP_CACHE": "off"})[0] == 0
    assert _entries(cache) == []
