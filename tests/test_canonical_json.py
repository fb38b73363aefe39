"""canonical_json's fast encoder writes exactly what json.dumps(indent=2, sort_keys=True,
ensure_ascii=False) writes, for plain data and for what it hands back to json."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from generator.tree import canonical_json

SCALARS = ["a", "é\u2028\"\\x\n\t\x00", "", "ünïcode ☃ 𝄞", 0, -5, 10**30, 1.5, 1e-7, 2.0,
           -0.0, 1e300, True, False, None]
KEYS = ["b", "a", "ä", "A", "key\n", "", "10", "9", "\x00"]


def reference(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def generate(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 4 or pick < 0.3:
        return rng.choice(SCALARS)
    if pick < 0.55:
        return [generate(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if pick < 0.6:
        return tuple(generate(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return {rng.choice(KEYS): generate(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_random_documents_encode_like_json() -> None:
    rng = random.Random(20)
    for _ in range(5000):
        value = generate(rng)
        assert canonical_json(value) == reference(value), value


@pytest.mark.parametrize("value", [{1: "int key"}, {"a": {None: 1}}, float("nan"),
                                   [float("inf")], {"x": float("-inf")}, {"t": (1, [2])}])
def test_what_the_fast_path_leaves_to_json(value: Any) -> None:
    assert canonical_json(value) == reference(value)


def test_unserialisable_values_still_raise_like_json() -> None:
    with pytest.raises(TypeError):
        canonical_json({"a": {1, 2}})
