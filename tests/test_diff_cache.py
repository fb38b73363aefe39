"""`gen diff`'s render cache (generator/diff/cache.py) in a real git repo and a real store.

A second diff of the same revisions reads both sides from `<store>/renders/` and prints
the same report; an entry that does not verify (altered or truncated) is never used: the
side is rendered again and the entry rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_diff_git import commit_all, git

from generator.diff import cache
from tests.clirun import gen, replace_in_lab

ARGS = ("diff", "env/lab", "--base", "HEAD", "--format", "json")


@pytest.fixture
def site(history: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Lab A committed, then worker1 edited in the working tree; a store of its own."""
    replace_in_lab(history, "{name: worker1, role: worker, hypervisor: hv1,",
                   "{name: worker1, role: worker, hypervisor: hv1, vcpu: 6,")
    env = {**os.environ, "GEN_STORE": str(tmp_path / "store")}
    return history, env


@pytest.fixture
def history(tmp_path: Path) -> Path:
    import shutil

    repo = tmp_path / "site"
    root = Path(__file__).resolve().parent.parent
    for name in ("environments", "blueprints"):
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "site")
    return repo


def entries(env: dict[str, str]) -> list[Path]:
    where = Path(env["GEN_STORE"]) / "renders"
    return sorted(p for p in where.iterdir() if not p.name.startswith("."))


def diff(site: tuple[Path, dict[str, str]]) -> str:
    repo, env = site
    result = gen(*ARGS, cwd=repo, env=env)
    assert result.code == 0, result.err
    assert "worker1" in result.out and "vcpu" in result.out
    return result.out


def test_a_second_diff_reads_both_sides_from_the_cache(
        site: tuple[Path, dict[str, str]]) -> None:
    first = diff(site)
    stored = entries(site[1])
    assert len(stored) == 2  # base and head, one entry each
    before = {p: p.stat().st_mtime_ns for p in stored}
    assert diff(site) == first
    assert {p: p.stat().st_mtime_ns for p in entries(site[1])} == before  # hits: not rewritten


def test_a_sound_entry_is_what_the_diff_shows(site: tuple[Path, dict[str, str]]) -> None:
    """The cache is really read: a (sound) entry with a different tree changes the report."""
    diff(site)
    path = entries(site[1])[0]  # one side's entry: the file is on that side only
    entry = cache._decode(path.read_bytes())
    planted = cache.Rendered(entry.env, entry.tree | {"planted/by-the-test.txt": b"x\n"},
                             entry.secrets, entry.topology)
    path.write_bytes(cache._encode(planted))
    result = gen(*ARGS, cwd=site[0], env=site[1])
    assert "planted/by-the-test.txt" in result.out


@pytest.mark.parametrize("damage", ["altered", "truncated"])
def test_an_entry_that_does_not_verify_is_rendered_again(
        site: tuple[Path, dict[str, str]], damage: str) -> None:
    first = diff(site)
    for path in entries(site[1]):
        data = bytearray(path.read_bytes())
        if damage == "altered":  # one byte of a file's content, checksum left as it was
            at = data.rindex(b"worker1")
            data[at] = ord("W")
        else:
            del data[len(data) // 2:]
        path.write_bytes(bytes(data))
        assert cache.load(path.name, Path(site[1]["GEN_STORE"])) is None
    assert diff(site) == first
    for path in entries(site[1]):  # rewritten sound
        assert cache.load(path.name, Path(site[1]["GEN_STORE"])) is not None


def test_an_edit_after_the_first_diff_is_a_miss(site: tuple[Path, dict[str, str]]) -> None:
    """The key covers the inputs: a further edit of the head renders it again."""
    diff(site)
    replace_in_lab(site[0], "vcpu: 6,", "vcpu: 7,")
    again = diff(site)
    assert "7" in again and len(entries(site[1])) == 3
