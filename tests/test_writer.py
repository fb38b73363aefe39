"""The one writer: atomic, minimal, and careful about directories it does not own."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from generator import writer
from generator.errors import UserError
from generator.tree import Executable
from generator.writer import MARKER, compare, read_tree, write_tree


def state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file (hidden ones too) with content hash, mtime and mode."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            result[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return result


def gen(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GEN_DEBUG"}
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=repo, env=environ,
                          capture_output=True, text=True, check=False)


def test_first_write_creates_tree_and_marker(tmp_path: Path) -> None:
    out = tmp_path / "out"
    changes = write_tree(out, {"a/b.txt": b"b\n", "run.sh": Executable(b"#!/bin/sh\n")}, "lab")
    assert changes.added == ("a/b.txt", "run.sh") and not changes.changed
    assert (out / MARKER).read_text() == "lab\n"
    assert os.access(out / "run.sh", os.X_OK) and not os.access(out / "a/b.txt", os.X_OK)
    assert read_tree(out) == {"a/b.txt": b"b\n", "run.sh": b"#!/bin/sh\n"}
    assert not list(out.rglob("*.gen-tmp"))


def test_unchanged_files_keep_mtime_changed_and_removed_are_handled(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"keep.txt": b"same\n", "change.txt": b"old\n", "gone/x.txt": b"x\n"}, "lab")
    past = 1_000_000_000
    for name in ("keep.txt", "change.txt"):
        os.utime(out / name, ns=(past, past))
    changes = write_tree(out, {"keep.txt": b"same\n", "change.txt": b"new\n",
                               "new/y.txt": b"y\n"}, "lab")
    assert (changes.added, changes.changed, changes.removed) == (
        ("new/y.txt",), ("change.txt",), ("gone/x.txt",))
    assert (out / "keep.txt").stat().st_mtime_ns == past
    assert (out / "change.txt").stat().st_mtime_ns != past
    assert (out / "change.txt").read_bytes() == b"new\n"
    assert not (out / "gone").exists(), "emptied directories are pruned"
    again = write_tree(out, read_tree(out), "lab")
    assert again.empty


def test_executable_bit_alone_is_a_change(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"run.sh": b"#!/bin/sh\n"}, "lab")
    changes = write_tree(out, {"run.sh": Executable(b"#!/bin/sh\n")}, "lab")
    assert changes.changed == ("run.sh",) and os.access(out / "run.sh", os.X_OK)


def test_git_directory_in_output_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"a.txt": b"a\n"}, "lab")
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    changes = write_tree(out, {"b.txt": b"b\n"}, "lab")
    assert changes.removed == ("a.txt",)
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"


def test_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious\n")
    before = state(out)
    with pytest.raises(UserError, match="is not empty and was not rendered by gen"):
        write_tree(out, {"a.txt": b"a\n"}, "lab")
    assert state(out) == before


def test_refuses_another_environments_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"a.txt": b"a\n"}, "k8s-lab")
    before = state(out)
    with pytest.raises(UserError, match="holds the rendered environment 'k8s-lab'"):
        write_tree(out, {"a.txt": b"b\n"}, "lab")
    assert state(out) == before


def test_an_empty_existing_directory_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert write_tree(out, {"a.txt": b"a\n"}, "lab").added == ("a.txt",)


def test_failed_staging_changes_nothing(tmp_path: Path) -> None:
    """A file that cannot be staged aborts before any rename: old files intact, no litter."""
    out = tmp_path / "out"
    write_tree(out, {"a.txt": b"old a\n", "z.txt": b"old z\n"}, "lab")
    before = state(out)
    # staging z.txt/inner fails: z.txt is still a file when its directory is needed
    with pytest.raises(UserError, match="cannot write .*z.txt/inner: Not a directory"):
        write_tree(out, {"a.txt": b"new a\n", "z.txt/inner": b"new z\n"}, "lab")
    assert state(out) == before, "staged temporaries are cleaned up, nothing replaced"


def staging_beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.endswith(".gen-tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_first_write_is_staged_whole_with_exact_modes(tmp_path: Path, umask: int) -> None:
    """A first render builds the tree in one staging directory beside the output and
    renames it once: nothing staged is left, modes are 0644/0755 whatever the umask."""
    out = tmp_path / "deep" / "out"
    old = os.umask(umask)
    try:
        changes = write_tree(out, {"a/b.txt": b"b\n", "run.sh": Executable(b"#!/bin/sh\n"),
                                   "big": b"x" * (1 << 20)}, "lab")
    finally:
        os.umask(old)
    assert changes.added == ("a/b.txt", "big", "run.sh")
    modes = {p: stat.S_IMODE(m) for p, (_, _, m) in state(out).items()}
    assert modes == {MARKER: 0o644, "a/b.txt": 0o644, "big": 0o644, "run.sh": 0o755}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 & ~umask
    assert read_tree(out)["big"] == b"x" * (1 << 20)
    assert staging_beside(out) == [] and not list(out.rglob("*.gen-tmp"))


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_first_write_of_a_wide_tree_puts_every_file_in_its_directory(
        tmp_path: Path, order: str) -> None:
    """The first write keeps one directory's descriptor while its files come in a row:
    with more directories than the descriptor cache holds (it is emptied on the way),
    directories revisited after a subdirectory, files at the top after directories, and
    the tree in any order, every file lands in its own directory with its mode."""
    import random

    tree: dict[str, bytes] = {}
    for i in range(writer._Dirs.LIMIT * 2 + 3):
        tree[f"d{i % 40}/s{i}/f"] = f"{i}\n".encode()
        tree[f"d{i % 40}/s{i}.x"] = Executable(f"#{i}\n".encode()) if i % 7 == 0 else b"x"
        tree[f"d{i % 40}/s{i}/deeper/g"] = b"g"
    tree |= {"top": b"t", "d0/z": b"z"}
    paths = sorted(tree)
    if order == "shuffled":
        random.Random(3).shuffle(paths)
    out = tmp_path / "out"
    write_tree(out, {p: tree[p] for p in paths}, "lab")
    assert read_tree(out) == {p: bytes(c) for p, c in tree.items()}
    modes = {p: stat.S_IMODE(m) for p, (_, _, m) in state(out).items() if p != MARKER}
    assert modes == {p: 0o755 if isinstance(c, Executable) else 0o644 for p, c in tree.items()}


def test_failed_first_write_leaves_no_output_and_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="cannot write .*z.txt/inner: Not a directory"):
        write_tree(out, {"a.txt": b"a\n", "z.txt": b"z\n", "z.txt/inner": b"i\n"}, "lab")
    assert not out.exists() and staging_beside(out) == []


def test_dead_staging_is_removed_and_a_live_one_left_alone(tmp_path: Path) -> None:
    """Staging directories a killed first render left beside the output are removed by the
    next; one another render still holds (flocked) is not touched."""
    out = tmp_path / "out"
    dead = tmp_path / ".out.4242-deadbeef.gen-tmp"
    live = tmp_path / ".out.4343-0123abcd.gen-tmp"
    other = tmp_path / ".outer.4444-0123abcd.gen-tmp"  # another output's
    for staging in (dead, live, other):
        (staging / "hosts").mkdir(parents=True)
        (staging / "hosts" / "half").write_bytes(b"half")
    holder = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        write_tree(out, {"a.txt": b"a\n"}, "lab")
        assert staging_beside(out) == sorted([live.name, other.name])
    finally:
        os.close(holder)
    assert read_tree(out) == {"a.txt": b"a\n"}


def test_first_write_does_not_replace_an_output_made_meanwhile(tmp_path: Path) -> None:
    """The staged tree is renamed only where nothing exists (RENAME_NOREPLACE): an output
    that appeared after the check (another render's) is written the per-file way."""
    out = tmp_path / "out"
    writer_rename = writer._rename_noreplace

    def appear_first(parent_fd: int, staging: str, target: Path) -> bool:
        writer._rename_noreplace = writer_rename
        write_tree(target, {"other.txt": b"o\n"}, "lab")  # a concurrent render won
        return writer_rename(parent_fd, staging, target)

    writer._rename_noreplace = appear_first
    try:
        changes = write_tree(out, {"a.txt": b"a\n"}, "lab")
    finally:
        writer._rename_noreplace = writer_rename
    assert changes.added == ("a.txt",) and changes.removed == ("other.txt",)
    assert read_tree(out) == {"a.txt": b"a\n"} and staging_beside(out) == []


def test_compare_reports_each_kind_of_difference() -> None:
    changes = compare({"same": b"1", "edit": b"1", "old": b"1"},
                      {"same": b"1", "edit": b"2", "new": b"1"})
    assert (changes.added, changes.changed, changes.removed) == (("new",), ("edit",), ("old",))


# ---- through the CLI -------------------------------------------------------------------


def test_cli_render_writes_then_check_passes(repo: Path) -> None:
    first = gen(repo, "render", "env/lab")
    assert first.returncode == 0, first.stderr
    out = repo / "rendered" / "lab"
    assert (out / MARKER).is_file() and (out / "hypervisors/hv1/domains/master0.xml").is_file()
    check = gen(repo, "render", "env/lab", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout


def test_cli_check_lists_differences_and_writes_nothing(repo: Path) -> None:
    assert gen(repo, "render", "env/lab").returncode == 0
    out = repo / "rendered" / "lab"
    (out / "hypervisors/hv1/domains/master0.xml").write_text("edited by hand\n")
    (out / "hypervisors/hv1/domains/worker1.xml").unlink()
    (out / "stray.txt").write_text("not rendered\n")
    before = state(out)
    check = gen(repo, "render", "env/lab", "--check")
    assert check.returncode == 1
    lines = check.stdout.splitlines()
    assert "stale, 3 difference(s)" in lines[0]
    assert set(lines[1:]) == {"+ hypervisors/hv1/domains/worker1.xml",
                              "~ hypervisors/hv1/domains/master0.xml", "- stray.txt"}
    assert state(out) == before
    as_json = gen(repo, "render", "env/lab", "--check", "--format", "json")
    assert as_json.returncode == 1 and '"stale": true' in as_json.stdout


def test_cli_refuses_foreign_out_dir(repo: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    result = gen(repo, "render", "env/lab", "--out", str(foreign))
    assert result.returncode == 1
    assert result.stderr == (f"{foreign} is not empty and was not rendered by gen "
                             "(choose an empty or new directory for --out)\n")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_cli_failed_render_leaves_previous_output_untouched(repo: Path) -> None:
    assert gen(repo, "render", "env/lab").returncode == 0
    out = repo / "rendered" / "lab"
    before = state(out)
    env = repo / "environments" / "lab" / "env.yaml"
    env.write_text(env.read_text().replace("ip: 192.168.20.162", "ip: 192.168.20.161"))
    result = gen(repo, "render", "env/lab")
    assert result.returncode == 1 and "is already used" in result.stderr
    assert state(out) == before
