"""nar.path_matches: `gen verify`'s byte comparison of a rendered directory with the fresh
render agrees with hashing it (`nar.path_hash`, itself checked against `nix hash path` in
test_nar.py) on every change a NAR can see: contents, length, executable bit, an extra or
missing file, an empty directory, a symlink, a FIFO, a large file changed at its end."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from generator.lock import nar
from generator.tree import Executable, Tree

BIG = 3 * nar.CHUNK + 5  # read in chunks, not in one read
TREE: Tree = {
    "hosts/helper/dns/zone": b"$ORIGIN lab.\n",
    "hosts/helper/dns/run.sh": Executable(b"#!/bin/sh\n"),
    "libvirt/hv1/master0.xml": b"<domain/>\n",
    "libvirt/hv1/big.img": b"\0" * BIG,
    "README": b"top-level file\n",
    "empty-file": b"",
}
EXCLUDE = (".git", ".gen-rendered")


def write(root: Path, tree: Tree) -> None:
    for path, data in tree.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if isinstance(data, Executable) else 0o644)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


CHANGES: dict[str, Callable[[Path], None]] = {
    "nothing": lambda root: None,
    "a byte": lambda root: flip_last_byte(root / "libvirt/hv1/master0.xml"),
    "the end of a big file": lambda root: flip_last_byte(root / "libvirt/hv1/big.img"),
    "a big file grown": lambda root: (root / "libvirt/hv1/big.img").write_bytes(b"\0" * (BIG + 1)),
    "a byte appended": lambda root: (root / "README").write_bytes(b"top-level file\n\n"),
    "truncated": lambda root: (root / "README").write_bytes(b"top"),
    "an empty file filled": lambda root: (root / "empty-file").write_bytes(b"x"),
    "executable bit set": lambda root: (root / "README").chmod(0o744),
    "executable bit cleared": lambda root: (root / "hosts/helper/dns/run.sh").chmod(0o644),
    "an extra file": lambda root: (root / "hosts/helper/extra").write_bytes(b""),
    "a missing file": lambda root: (root / "hosts/helper/dns/zone").unlink(),
    "an empty directory": lambda root: (root / "hosts/helper/dns/empty").mkdir(),
    "a symlink for a file": lambda root: ((root / "README").unlink(),
                                          (root / "README").symlink_to("empty-file")),
    "a symlink beside": lambda root: (root / "libvirt/link").symlink_to("hv1"),
    "a FIFO": lambda root: os.mkfifo(root / "hosts/fifo"),
    "a staged temporary": lambda root: (root / "libvirt/.x.gen-tmp").write_bytes(b""),
    "a directory for a file": lambda root: ((root / "empty-file").unlink(),
                                            (root / "empty-file").mkdir()),
    "an excluded entry added": lambda root: (root / ".git").mkdir(),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_matches_exactly_when_the_nar_hash_does(tmp_path: Path, change: str) -> None:
    write(tmp_path, TREE)
    CHANGES[change](tmp_path)
    try:
        same_hash = nar.path_hash(tmp_path, exclude=EXCLUDE) == nar.tree_hash(TREE)
    except ValueError:  # NAR cannot hold a FIFO: such a directory matches no tree
        same_hash = False
    assert nar.path_matches(tmp_path, TREE, exclude=EXCLUDE) is same_hash
    assert same_hash is (change in ("nothing", "an excluded entry added"))


def test_a_missing_or_symlinked_directory_does_not_match(tmp_path: Path) -> None:
    write(tmp_path / "real", TREE)
    (tmp_path / "link").symlink_to("real")
    assert nar.path_matches(tmp_path / "real", TREE)
    assert not nar.path_matches(tmp_path / "link", TREE)
    assert not nar.path_matches(tmp_path / "absent", TREE)
