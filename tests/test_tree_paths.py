"""The rendered tree's path guard and its one-scan form, and render_all's merge."""

from __future__ import annotations

import itertools
import random

from generator.families import merge_trees
from generator.tree import check_path, paths_are_safe

PIECES = ["a", ".", "..", "", "/", "\x00", "...", ".a", "a.", "é", "\n", "./", "/.", "../"]


def _safe(path: str) -> bool:
    try:
        check_path(path)
    except ValueError:
        return False
    return True


def test_one_scan_refuses_exactly_what_check_path_refuses() -> None:
    """Every path of up to three awkward pieces, alone and in random lists of them (NULs
    included, where the joined form puts its separators): paths_are_safe is True exactly
    when check_path passes each path."""
    paths = ["".join(parts) for count in range(4)
             for parts in itertools.product(PIECES, repeat=count)]
    for path in paths:
        assert paths_are_safe([path]) == _safe(path), repr(path)
    rng = random.Random(11)
    safe = [p for p in paths if _safe(p)]
    for _ in range(20000):
        sample = rng.sample(safe if rng.random() < .5 else paths, rng.randrange(1, 6))
        assert paths_are_safe(sample) == all(map(_safe, sample)), sample
    assert paths_are_safe([]) and paths_are_safe({}) and not paths_are_safe([""])


def _merged_path_by_path(trees: list[tuple[str, dict[str, bytes]]]) -> dict[str, bytes]:
    """render_all's merge as it was before the one-scan test: the reference."""
    tree: dict[str, bytes] = {}
    for name, rendered in trees:
        for path, content in rendered.items():
            check_path(path)
            if path in tree:
                raise AssertionError(f"families collide on {path} ({name})")
            tree[path] = content
    return dict(sorted(tree.items()))


def _outcome(trees: list[tuple[str, dict[str, bytes]]], merge: object) -> object:
    try:
        return list(merge(iter(trees)).items())  # type: ignore[operator]
    except (ValueError, AssertionError) as refused:
        return type(refused), str(refused)


def test_merge_refuses_the_same_first_path_as_the_path_by_path_merge() -> None:
    """Random families of safe, unsafe and shared paths: merge_trees gives the same sorted
    tree, or refuses the same path with the same error, as checking each path in turn."""
    rng = random.Random(12)
    names = ["a/b", "a/c", "b", "c/d/e", "a/b/c", "z", "é/x", "a"]
    unsafe = ["a/../b", "./a", "a//b", "", "a/.", "/abs"]
    refusals = merged = 0
    for _ in range(3000):
        trees = []
        for family in range(rng.randrange(1, 4)):
            pool = names + (unsafe if rng.random() < .2 else [])
            paths = rng.sample(pool, rng.randrange(0, 5))
            trees.append((f"f{family}", {p: p.encode() for p in paths}))
        expected = _outcome(trees, _merged_path_by_path)
        assert _outcome(trees, merge_trees) == expected, trees
        if isinstance(expected, list):
            merged += 1
        else:
            refusals += 1
    assert merged and refusals
