"""NAR hashes must equal `nix hash path --type sha256 --sri` (Debian nix-bin), byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from generator.lock import nar
from generator.pipeline import render_environment
from generator.tree import Executable
from generator.writer import MARKER, write_tree


def nix_hash(path: Path) -> str:
    nix = shutil.which("nix")
    assert nix, "nix is missing: apt-get install nix-bin (listed in tests/run.sh)"
    env = {**os.environ, "NIX_REMOTE": "", "HOME": str(path.parent)}
    proc = subprocess.run([nix, "--extra-experimental-features", "nix-command", "hash", "path",
                           "--type", "sha256", "--sri", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


SMALL = {
    "a.txt": b"hello\n",
    "bin/run.sh": Executable(b"#!/bin/sh\necho hi\n"),
    "deep/er/still/x.json": b"{}\n",
    "empty": b"",
    "eight.bin": b"12345678",  # exactly one padding boundary
    "Z-upper-sorts-first": b"Z\n",
    "unicode-\u00e9.txt": "caf\u00e9\n".encode(),
}


def test_tree_hash_matches_nix_on_a_small_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, SMALL, "t")
    (out / MARKER).unlink()
    assert nar.tree_hash(SMALL) == nix_hash(out)
    assert nar.path_hash(out) == nix_hash(out)


def test_executable_bit_changes_the_hash(tmp_path: Path) -> None:
    plain = {"x": b"#!/bin/sh\n"}
    executable = {"x": Executable(b"#!/bin/sh\n")}
    assert nar.tree_hash(plain) != nar.tree_hash(executable)
    write_tree(tmp_path / "e", executable, "t")
    write_tree(tmp_path / "p", plain, "t")
    for out, tree in ((tmp_path / "e", executable), (tmp_path / "p", plain)):
        (out / MARKER).unlink()
        assert nar.tree_hash(tree) == nix_hash(out)


def test_single_file_and_symlink_match_nix(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"data" * 1000 + b"odd")
    (tmp_path / "d" / "link").symlink_to("f")
    assert nar.path_hash(tmp_path / "d" / "f") == nix_hash(tmp_path / "d" / "f")
    assert nar.tree_hash({"": b"data" * 1000 + b"odd"}) == nix_hash(tmp_path / "d" / "f")
    assert nar.path_hash(tmp_path / "d") == nix_hash(tmp_path / "d")


@pytest.mark.parametrize("env", ["lab", "k8s-lab"])
def test_rendered_environment_and_its_subtrees_match_nix(tmp_path: Path, env: str) -> None:
    tree = dict(render_environment(f"env/{env}").tree)
    tree["hosts/extra/bin/hook"] = Executable(b"#!/bin/sh\nexit 0\n")  # an executable file
    out = tmp_path / "out"
    write_tree(out, tree, env)
    (out / MARKER).unlink()  # the lock hashes the Tree: the marker is not part of it
    assert nar.tree_hash(tree) == nix_hash(out)
    for name, digest in nar.subtree_hashes(tree).items():
        assert digest == nix_hash(out / name), name


def test_umask_and_mtime_do_not_matter(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_tree(tmp_path / "a", SMALL, "t")
    finally:
        os.umask(old)
    os.utime(tmp_path / "a" / "a.txt", (0, 0))
    assert nar.path_hash(tmp_path / "a", exclude=(MARKER,)) == nar.tree_hash(SMALL)


def test_nar_bytes_layout() -> None:
    data = nar.nar_bytes({"": b"x"})
    assert data.startswith(len(b"nix-archive-1").to_bytes(8, "little") + b"nix-archive-1\0\0\0")
    assert len(data) % 8 == 0


def test_large_files_and_sizes_around_the_buffers_match_nix(tmp_path: Path) -> None:
    """Contents passed straight to sha256 (>= 64 KiB), read in chunks (> 1 MiB), and the
    sizes either side of each boundary, on disk and in memory."""
    sizes = [nar._DIRECT - 1, nar._DIRECT, nar._DIRECT + 3, nar.CHUNK, nar.CHUNK + 5,
             3 * nar.CHUNK + 1, nar._FLUSH_AT + 7]
    tree = {f"f{i}": bytes([i]) * size for i, size in enumerate(sizes)}
    tree["many/" + "x" * 200] = b"y" * 17
    write_tree(tmp_path / "t", tree, "t")
    (tmp_path / "t" / MARKER).unlink()
    assert nar.tree_hash(tree) == nar.path_hash(tmp_path / "t") == nix_hash(tmp_path / "t")


def test_a_special_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "pipe")
    with pytest.raises(ValueError, match="NAR cannot hold a 'p' file"):
        nar.path_hash(tmp_path / "d")
