"""nar.tree_hashes: the whole tree's NAR hash and every subtree's from one walk equal the
two separate walks' (tree_hash, subtree_hashes; those are checked against `nix hash path`
in test_nar.py), on a rendered environment and on the shapes subtree_of distinguishes."""

from __future__ import annotations

import pytest

from generator.lock import nar
from generator.pipeline import render_environment
from generator.tree import Executable, Tree

SHAPES: list[Tree] = [
    {},
    {"top-level-file": b"x"},
    {"a/file": b"1", "a/dir/f": b"2", "a/dir/deep/g": Executable(b"3" * 70_000),
     "a/empty": b"", "a/dir.x/y": b"sorted by bytes", "b": b"q", "c/d/e": b"r"},
    {"only/files/here.txt": b"1", "only/files/there.txt": b"2"},
    {"mixed/z.txt": b"after the dir", "mixed/a/b": b"in the dir"},
]


@pytest.mark.parametrize("tree", SHAPES, ids=range(len(SHAPES)))
def test_one_walk_gives_both_hashes(tree: Tree) -> None:
    assert nar.tree_hashes(tree) == (nar.tree_hash(tree), nar.subtree_hashes(tree))


def test_one_walk_on_a_rendered_environment() -> None:
    tree = render_environment("env/lab").tree
    whole, subtrees = nar.tree_hashes(tree)
    assert whole == nar.tree_hash(tree)
    assert subtrees == nar.subtree_hashes(tree) and len(subtrees) == 3
    changed = dict(tree)
    path = next(p for p in sorted(tree) if p.count("/") >= 2)
    changed[path] = tree[path] + b"\n"
    whole2, subtrees2 = nar.tree_hashes(changed)
    assert whole2 != whole
    assert {k for k in subtrees if subtrees[k] != subtrees2[k]} == {"/".join(path.split("/")[:2])}
