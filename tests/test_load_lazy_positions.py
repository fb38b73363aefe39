"""A large document's positions are found lazily (loader.Document: the top levels while
composing, the rest by replaying the eager composer, merge and role defaults when first
asked), and its data by a lean composer that leaves anything unusual to the eager one. Both
must give exactly what the eager path gives: the same data, every position, every error and
its location. Each input here goes through both (LAZY_FROM_BYTES switched between 0 and
never) and the outcomes are compared (issue 20, bench/bench_load.py)."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_validation as runner
from ruamel.yaml import YAML

from generator import loader
from generator.environment import load_documents, load_environment_dir
from generator.errors import GenError
from generator.loader import Document, FieldPath, apply_role_defaults, deep_merge, load_yaml

ROOT = Path(__file__).resolve().parent.parent
NEVER = 1 << 40


def _paths_to_ask(positions: dict[FieldPath, Any]) -> list[FieldPath]:
    """Every recorded path, one child of each that has none, and the root."""
    return [(), *positions, *[p + ("no-such-key",) for p in positions]]


def _outcome(load: Callable[[], Document]) -> dict[str, Any]:
    """What a load gives: its error lines, or its data, positions and answers to locate."""
    try:
        doc = load()
    except GenError as error:
        return {"error": str(error)}
    known, depth = dict(doc.known), doc.known_depth
    # asked before anything forces a replay: these come from `known` alone
    shallow = {p: doc.locate(p) for p in _paths_to_ask(known)
               if depth is not None and len(p) <= depth}
    replayed_early = depth is not None and doc.known_depth is None
    positions = doc.positions
    return {"data": repr(doc.data), "known": known, "depth": depth, "shallow": shallow,
            "replayed_early": replayed_early, "positions": positions,
            "locate": {p: doc.locate(p) for p in _paths_to_ask(positions)}}


def _both(monkeypatch: pytest.MonkeyPatch,
          load: Callable[[], Document]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(lazy outcome, eager outcome) of the same load."""
    monkeypatch.setattr(loader, "LAZY_FROM_BYTES", 0)
    lazy = _outcome(load)
    monkeypatch.setattr(loader, "LAZY_FROM_BYTES", NEVER)
    eager = _outcome(load)
    return lazy, eager


def _assert_alike(lazy: dict[str, Any], eager: dict[str, Any]) -> None:
    assert ("error" in lazy) == ("error" in eager)
    if "error" in eager:
        assert lazy["error"] == eager["error"]
        return
    assert eager["depth"] is None
    assert lazy["data"] == eager["data"]
    assert lazy["positions"] == eager["positions"]
    assert lazy["locate"] == eager["locate"]
    assert not lazy["replayed_early"]
    if lazy["depth"] is not None:
        depth = lazy["depth"]
        assert lazy["known"] == {p: pos for p, pos in eager["positions"].items()
                                 if len(p) <= depth}
        assert lazy["shallow"] == {p: eager["locate"][p] for p in lazy["shallow"]}


EDGE_YAML = [
    "a: 1\na: 2\n", "a: {b: 1, b: 2}\n", "? [x, y]\n: 1\nb: 2\n", "{[a, b]: c, d: e}\n",
    "a: &x {b: [1, 2]}\nc: *x\nd: {e: *x}\n", "a: &x 1\nb: *x\n", "a: *nope\n",
    "a: &x [*x]\n", "<<: {a: 1}\nb: 2\n", "a: 1\n---\nb: 2\n", "just a scalar\n", "", "# c\n",
    "[" * 100_000 + "\n", "a: [" * 63 + "]" * 63 + "\n", "a: [" * 64 + "]" * 64 + "\n",
    *["[" * n + "]" * n + "\n" for n in (61, 62, 63, 64, 65, 66)],
    *["[" * n + "x" + "]" * n + "\n" for n in (62, 63, 64, 65)],
    "a: b: c\n", "a: 'x\n", "\x00\n", "a:\n  - b\n   - c\n",
    "a: !!int '3'\nb: !!str 4\nc: ! 5\nd: !<gen:plain> 6\ne: !!float '1.5'\nf: !!bool no\n",
    "k: [yes, no, 0x1f, 0o17, 017, 1e3, -.5, .inf, -.INF, .nan, ~, null, '', \"\", +8, .]\n",
    "1: a\ntrue: b\nnull: c\n1.5: d\n0x10: e\n",
    "1: a\n'1': b\n", "nodes: [{role: m}, {role: m, x: 1}]\nroles: {m: {x: 2, y: [1]}}\n",
    "a:\n  b:\n    c: [1, {d: e}]\n  f: g\nh: [i, [j, k]]\n", "- a\n- b: c\n", "a: !!set {x, y}\n",
    "a: |\n  text\n  more\nb: >-\n  folded\n",
]


@pytest.mark.parametrize("text", EDGE_YAML, ids=range(len(EDGE_YAML)))
def test_edge_yaml_loads_alike(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    _assert_alike(*_both(monkeypatch, lambda: load_yaml(text, "f.yaml")))


@pytest.mark.parametrize("bound", range(8, 20))
def test_the_value_bound_stops_both_alike(monkeypatch: pytest.MonkeyPatch, bound: int) -> None:
    """MAX_VALUES, lowered to where these documents cross it: same data or same error."""
    monkeypatch.setattr(loader, "MAX_VALUES", bound)
    for text in ("[a, b, c, d, e, f, g, h, i, j, k, l, m, n]\n", "a: 1\nb: [2, 3]\nc: {d: 4}\n",
                 "- [1, 2]\n- [3, 4]\n- {x: y}\n- z\n"):
        _assert_alike(*_both(monkeypatch, lambda text=text: load_yaml(text, "f.yaml")))


def _repo_yaml() -> list[Path]:
    return sorted([*ROOT.glob("environments/*/env.yaml"), *ROOT.glob("blueprints/*/*.yaml"),
                   *ROOT.glob("generator/blueprints/*/*.yaml")])


@pytest.mark.parametrize("path", _repo_yaml(), ids=lambda p: str(p.relative_to(ROOT)))
def test_repo_yaml_loads_alike(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    text = path.read_text()
    _assert_alike(*_both(monkeypatch, lambda: load_yaml(text, path.name)))


SCALARS = ["x", "yes", "0x1f", "0o17", "017", "1e3", "-.5", ".inf", "~", "null", "''", '"q"',
           "'1'", "!!int '3'", "!!str 4", "! 5", "!<gen:plain> 6", "52:54:00:aa:bb:cc", "true",
           "-7", "+8", ".", "role", "m", "w"]
KEYS = ["a", "b", "c", "1", "true", "role", "x", "'a'", "nodes", "roles", "m", "w", "?"]


class _Writer:
    """Random YAML: block mappings and sequences at the top, flow below, with anchors,
    aliases, duplicate and complex keys now and then."""

    def __init__(self, rng: random.Random, unusual: float) -> None:
        self.rng, self.unusual = rng, unusual
        self.anchors: list[str] = []

    def _props(self) -> str:
        if self.rng.random() < self.unusual:
            self.anchors.append(f"a{len(self.anchors)}")
            return f"&{self.anchors[-1]} "
        return ""

    def _key(self) -> str:
        if self.rng.random() < self.unusual / 4:
            return "[k, l]"
        return self.rng.choice(KEYS)

    def flow(self, depth: int) -> str:
        roll = self.rng.random()
        if self.anchors and roll < self.unusual / 2:
            return "*" + self.rng.choice(self.anchors)
        if depth > 3 or roll < 0.5:
            return self._props() + self.rng.choice(SCALARS)
        props = self._props()
        count = self.rng.randrange(4)
        if roll < 0.75:
            return props + "[" + ", ".join(self.flow(depth + 1) for _ in range(count)) + "]"
        keys = self._keys(count)
        return props + "{" + ", ".join(f"{k}: {self.flow(depth + 1)}" for k in keys) + "}"

    def _keys(self, count: int) -> list[str]:
        keys = [self._key() for _ in range(count)]
        if self.rng.random() >= self.unusual:
            keys = list(dict.fromkeys(keys))  # usually no duplicate
        return keys

    def block(self, indent: int, depth: int) -> Iterator[str]:
        pad = " " * indent
        if depth >= 2 or self.rng.random() < 0.2:
            yield f"{pad}{self.flow(depth)}"
            return
        if self.rng.random() < 0.4:
            for _ in range(self.rng.randrange(1, 4)):
                yield f"{pad}-"
                yield from self.block(indent + 2, depth + 1)
            return
        for key in self._keys(self.rng.randrange(1, 5)):
            if key.startswith("["):
                key = "x"  # a complex key in block style is `? `: flow keeps it simple
            yield f"{pad}{key}:"
            yield from self.block(indent + 2, depth + 1)


@pytest.mark.parametrize("seed", range(12))
def test_random_yaml_loads_merges_and_fills_alike(monkeypatch: pytest.MonkeyPatch,
                                                  seed: int) -> None:
    rng = random.Random(seed)
    kinds = set()
    for _ in range(40):
        unusual = rng.choice([0.0, 0.0, 0.05, 0.2])
        base = "\n".join(_Writer(rng, unusual).block(0, 0)) + "\n"
        overlay = "\n".join(_Writer(rng, unusual).block(0, 0)) + "\n"
        lazy, eager = _both(monkeypatch, lambda text=base: load_yaml(text, "base.yaml"))
        _assert_alike(lazy, eager)
        kinds.add("error" if "error" in eager else "lazy" if lazy["depth"] else "eager")

        consume = rng.random() < 0.5

        def merged(base: str = base, overlay: str = overlay, consume: bool = consume
                   ) -> Document:
            one, two = load_yaml(base, "base.yaml"), load_yaml(overlay, "env.yaml")
            if not isinstance(one.data, dict) or not isinstance(two.data, dict):
                raise GenError("not two mappings")
            doc = deep_merge(one, two, consume=consume)
            apply_role_defaults(doc)
            return doc

        _assert_alike(*_both(monkeypatch, merged))
    assert {"lazy", "eager"} <= kinds  # both paths taken (eager: the unusual input)


def test_hostile_and_bad_corpora_validate_alike(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """Every case of the hostile-input and bad-input corpora (edits to lab or k8s-lab), in
    process: the same documents and the same problems, lazy or eager."""
    cases = [*YAML(typ="safe").load((ROOT / "tests/hostile/input.yaml").read_text()),
             *YAML(typ="safe").load((ROOT / "tests/bad/cases.yaml").read_text())]
    assert len(cases) > 100
    for number, case in enumerate(cases):
        repo = tmp_path / str(number)
        for name in ("environments", "blueprints"):
            shutil.copytree(ROOT / name, repo / name)
        runner.trim(repo)
        runner.apply_edits(repo, case)
        env_dir = repo / "environments" / case.get("env", "lab")
        _assert_alike(*_both(monkeypatch, lambda env=env_dir: load_documents(env)[1]))
        results = []
        for threshold in (0, NEVER):
            monkeypatch.setattr(loader, "LAZY_FROM_BYTES", threshold)
            try:
                results.append(repr(load_environment_dir(env_dir).warnings))
            except GenError as error:
                results.append(str(error))
        assert results[0] == results[1], case["id"]
        shutil.rmtree(repo)


def test_a_large_valid_environment_validates_without_replaying(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """1,000 nodes (100 KB: lazy by size): the same document as the eager path, and a full
    validation that asks only for top-level positions (a replay would cost more than
    the lazy composing saves)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from genenv import write_environment

    env_dir = write_environment(tmp_path, nodes=1000, hypervisors=4)
    assert (env_dir / "env.yaml").stat().st_size >= loader.LAZY_FROM_BYTES
    lazy = _outcome(lambda: load_documents(env_dir)[1])
    monkeypatch.setattr(loader, "LAZY_FROM_BYTES", NEVER)
    eager = _outcome(lambda: load_documents(env_dir)[1])
    monkeypatch.undo()
    assert lazy["depth"] == loader.KNOWN_DEPTH
    _assert_alike(lazy, eager)
    loaded = load_environment_dir(env_dir)
    locate = loaded.locate
    assert locate is not None
    doc = getattr(locate, "__self__")  # noqa: B009 - the Document behind the bound method
    assert doc.known_depth is not None, "validating a valid environment replayed it"


def _core_scalar_by_regex(text: str) -> object:
    """loader._core_scalar as it was before its digits-only and two-dots shortcuts: the
    regexes alone."""
    if text in loader._CORE_SPECIAL:
        return loader._CORE_SPECIAL[text]
    if loader._CORE_INT.match(text):
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    return float(text) if loader._CORE_FLOAT.match(text) else text


@pytest.mark.parametrize("text", ["0", "007", "12", "1\u0663", "1\u00b2", "9" * 40, "1_000",
                                  "12\n", "0x1f", "0o17", "+3", "-0", "1e3", "4GiB", ".",
                                  "10.0.0.5", "1.2.", "1..2", ".1.", "1.5", "-.5e3", "1.e2"])
def test_digits_shortcut_types_as_the_regexes_do(text: str) -> None:
    found, expected = loader._core_scalar(text), _core_scalar_by_regex(text)
    assert (type(found), found) == (type(expected), expected)


@pytest.mark.parametrize("consume", [False, True])
def test_stale_positions_after_overlay_replacement_alike(monkeypatch: pytest.MonkeyPatch,
                                                         consume: bool) -> None:
    """The fast-path merge case (a list replacing a mapping, an alias, role defaults, a
    node with no role) through both paths, the blueprint side deeper than known_depth."""
    from test_load_fast_paths import MERGE_BASE, MERGE_ENV

    def merged(env_text: str) -> Callable[[], Document]:
        def merge() -> Document:
            doc = deep_merge(load_yaml(MERGE_BASE, "bp.yaml"), load_yaml(env_text, "env.yaml"),
                             consume=consume)
            apply_role_defaults(doc)
            return doc
        return merge

    lazy, eager = _both(monkeypatch, merged(MERGE_ENV))
    _assert_alike(lazy, eager)
    assert ("keep", "me") not in eager["positions"]
    plain_base = MERGE_ENV.replace(" &m", "").replace("*m", "{k: v}")  # no alias: lazy
    monkeypatch.setattr(loader, "LAZY_FROM_BYTES", 0)
    assert load_yaml(plain_base, "env.yaml").known_depth == loader.KNOWN_DEPTH

    lazy, eager = _both(monkeypatch, merged(plain_base))
    assert lazy["depth"] == loader.KNOWN_DEPTH
    _assert_alike(lazy, eager)
