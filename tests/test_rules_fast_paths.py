"""The document rules' fast paths decide as their general paths do (issue 20, wave 7):
the pickle pre-test that skips a section's secret-marker / file:// walk, the inet_aton
test that lets a NIC address skip `_check_in_subnet`, the one-set test of `_unique`, and
the size cache, the blueprint validator's unnamed `$ref` calls, and the model's Address
(an IPv4Address that keeps its text). Random and hostile values go through both paths."""

from __future__ import annotations

import copy
import ipaddress
import operator
import pickle
import random
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from generator.expand import ipv4
from generator.loader import Document
from generator.model import SECRET_MARKER_PREFIX, Address
from generator.semantic import (
    Checker,
    _check_in_subnet,
    _flagged_strings,
    _host_range,
    _is_host_in,
    _scan_flagged,
    _unique,
)
from generator.units import parse_size

ROOT = Path(__file__).resolve().parent.parent

PIECES = ["", "a", "file://", "file:/", "FILE://", "@@gen-secret:", "@@gen-secret", "@@",
          "é", "\udc80", "\x00", "\n", "'", '"', "\\", "ß", "\u2028", "x" * 300, "file://x",
          "zz@@gen-secret:n@@", "\ud83d\ude00", " file://"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randint(0, 9 if depth < 4 else 5)
    if kind <= 2:
        return _text(rng)
    if kind == 3:
        return rng.choice([0, -1, 2**70, 1.5, True, None])
    if kind <= 5:
        return rng.choice([[], {}, "plain"])
    if kind <= 7:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng) + str(k): _value(rng, depth + 1) for k in range(rng.randint(0, 4))}


def _walked(data: Any) -> list[tuple[Any, str]]:
    """The general path: the whole document walked, no section skipped."""
    found: list[tuple[Any, str]] = []
    _scan_flagged({"_": data}, [], found)
    return [(path[1:], text) for path, text in found]


@pytest.mark.parametrize("seed", range(300))
def test_flagged_strings_skip_only_sections_without_one(seed: int) -> None:
    rng = random.Random(seed)
    data = {_text(rng) + str(k): _value(rng, 0) for k in range(rng.randint(1, 6))}
    shared = [f"{SECRET_MARKER_PREFIX}x@@"]
    if seed % 5 == 0:  # an alias: one list in two sections
        data["a"], data["b"] = shared, {"c": shared}
    got = _flagged_strings(Checker(Document(data)))
    assert got == _walked(data)


def test_flagged_strings_walk_what_pickle_refuses_and_deep_nesting() -> None:
    deep: Any = "file://z"
    for _ in range(80):  # past pickle's fast-mode nesting limit (50)
        deep = [deep]
    data = {"odd": {"f": lambda: 0, "v": "file://x"}, "deep": {"k": ["file://y", deep]}}
    assert [text for _, text in _flagged_strings(Checker(Document(data)))] == \
        ["file://x", "file://y", "file://z"]


ADDRESSES = ["10.0.0.0", "10.0.0.1", "10.0.0.254", "10.0.0.255", "10.0.1.0", "9.255.255.255",
             "010.0.0.1", "10.0.0.01", "10.0.1", "10.1", "167772161", "0x0a.0.0.1",
             "10.0.0.1 ", " 10.0.0.1", "10.0.0.1\n", "10.0.0.\u0661", "10.0.0.1\x00",
             "10.0.0.256", "10.0.0.1.", "", "1e1.0.0.1", "10.0.0.+1", "10.0.0.1/32"]


@pytest.mark.parametrize("cidr", ["10.0.0.0/24", "10.0.0.0/31", "10.0.0.1/32", "10.0.0.0/8",
                                  "0.0.0.0/0"])
def test_host_range_test_accepts_only_what_check_in_subnet_accepts(cidr: str) -> None:
    network = IPv4Network(cidr)
    rng = random.Random(cidr)
    texts = ADDRESSES + [".".join(str(rng.choice([0, 1, 10, 255, 256, rng.randint(0, 255)]))
                                  for _ in range(4)) for _ in range(400)]
    for text in texts:
        checker = Checker(Document({}))
        try:
            _check_in_subnet(checker, ("ip",), text, network, "IP")
        except ValueError:
            accepted = False  # not an address at all
        else:
            accepted = not checker.problems
        fast = _is_host_in(text, _host_range(network))
        assert not fast or accepted, text
        if accepted and text.isascii() and text == text.strip() and \
                all(p == str(int(p)) for p in text.split(".")):
            assert fast, text  # the common case does take the fast path


@pytest.mark.parametrize("seed", range(100))
def test_unique_reports_as_the_dictionary_walk(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.choice(["a", "A", "b", "ß", "SS", "ss", "İ", "i̇", "c"])
              for _ in range(rng.randint(0, 6))]
    items = [(("x", k), v) for k, v in enumerate(values)]
    checker = Checker(Document({}))
    _unique(checker, items, "name", "hint")
    seen: dict[str, int] = {}
    expected = []
    for k, value in enumerate(values):
        if value.lower() in seen:
            expected.append(f"name '{value}' is already used at x[{seen[value.lower()]}]")
        else:
            seen[value.lower()] = k
    assert [p.message for p in checker.problems] == expected


def test_size_cache_returns_and_raises_as_uncached() -> None:
    for text in ["16GiB", "16gib", "512MiB", "2TiB", "16GiB"]:
        assert parse_size(text) == parse_size.__wrapped__(text)
    for bad in ["16XiB", "GiB", "x16GiB"]:
        for _ in range(2):
            with pytest.raises((KeyError, ValueError)):
                parse_size(bad)


FORMAT_SPECS = ["", "s", ">20s", "<16s", "b", "#b", "x", "#X", "n", "_b", "#_x", ">15", "d",
                "q", "^", "10"]


def _outcome(action: Any, *args: Any) -> object:
    try:
        return action(*args)
    except (TypeError, ValueError, ipaddress.AddressValueError) as refused:
        return (type(refused), str(refused))


@pytest.mark.parametrize("seed", range(20))
def test_address_behaves_and_pickles_as_ipv4address(seed: int) -> None:
    """model.Address keeps its text; everything else about it is IPv4Address's."""
    rng = random.Random(seed)
    values = [0, 1, 2**32 - 1, 2**32 - 2] + [rng.randrange(2**32) for _ in range(50)]
    for value in values:
        fast, plain = Address(value), IPv4Address(value)
        assert (str(fast), repr(fast), hash(fast)) == (str(plain), repr(plain), hash(plain))
        assert fast == plain and plain == fast and {fast: 1}[plain] == 1
        assert not fast < plain and not plain < fast
        for spec in FORMAT_SPECS:
            assert _outcome(format, fast, spec) == _outcome(format, plain, spec)
        assert f"{fast}" == f"{plain}" and "%s" % (fast,) == "%s" % (plain,)  # noqa: UP031
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            assert pickle.dumps(fast, protocol) == pickle.dumps(plain, protocol)
        assert type(pickle.loads(pickle.dumps(fast))) is IPv4Address
        for step in (1, -1, 7):
            moved = _outcome(operator.add, fast, step)
            assert moved == _outcome(operator.add, plain, step)
            assert isinstance(moved, tuple) or str(moved) == str(plain + step)
        assert (fast in IPv4Network("10.0.0.0/8")) == (plain in IPv4Network("10.0.0.0/8"))


@pytest.mark.parametrize("text", ADDRESSES + ["0.0.0.0", "255.255.255.255", "1.2.3.4"])
def test_ipv4_keeps_text_only_for_the_canonical_quad(text: str) -> None:
    got, want = _outcome(ipv4, text), _outcome(IPv4Address, text)
    assert got == want
    if isinstance(got, Address):
        assert str(got) == str(want) == text


def _mutated(rng: random.Random, data: Any) -> Any:
    """`data` with one value somewhere replaced by a hostile one, a key added or dropped."""
    data = copy.deepcopy(data)
    holder, key = data, None
    for _ in range(rng.randint(1, 6)):
        keys = list(holder) if isinstance(holder, dict) else list(range(len(holder)))
        if not keys:
            break
        key = rng.choice(keys)
        if not isinstance(holder[key], (dict, list)) or rng.random() < 0.2:
            break
        holder, key = holder[key], None
    action = rng.randint(0, 3)
    if action == 0 and isinstance(holder, dict) and key is not None:
        del holder[key]
    elif action == 1 and isinstance(holder, dict):
        holder[rng.choice(["x", "name", "ip", "size", "nics"])] = rng.choice(HOSTILE)
    elif key is not None:
        holder[key] = rng.choice([*HOSTILE, *_near(holder[key])])
    return data


def _near(value: Any) -> list[Any]:
    """Values just across a border from `value`: its type's neighbours and odd spellings."""
    if isinstance(value, bool):
        return [int(value), str(value).lower()]
    if isinstance(value, int):
        return [float(value), value * 1000, -value, str(value), True]
    if isinstance(value, str):
        return [value.upper(), value + " ", value + "/..", value * 9, value[:-1], value + "é"]
    return []


HOSTILE = ["", "A", "-a", "a" * 70, "1.2.3.256", "16GB", "0GiB", 4.0, True, None, -1, 2**40,
           [], {}, [{}], {"name": "x"}, "file://../x", "\u00e9", "10.0.0.1"]


@pytest.mark.parametrize("env", ["lab", "k8s-lab"])
def test_unnamed_refs_accept_and_refuse_what_the_named_validator_does(env: str) -> None:
    """The blueprint validator's `$ref` calls pass no name (compiled_schema._unnamed_refs):
    only its messages may differ, never which documents it accepts."""
    from generator.compiled_schema import compile_schema
    from generator.environment import load_documents
    from generator.schema import load_schema

    draft = "http://json-schema.org/draft-07/schema#"
    named = compile_schema(load_schema(), draft, whole_integers=True)
    unnamed = compile_schema(load_schema(), draft, whole_integers=True, unnamed_refs=True)
    _, doc = load_documents(ROOT / "environments" / env)
    rng = random.Random(env)
    refused = 0
    for _ in range(1000):
        data = _mutated(rng, doc.data)
        verdicts = []
        for validate in (named, unnamed):
            try:
                validate(data)
                verdicts.append(True)
            except fastjsonschema.JsonSchemaValueException:
                verdicts.append(False)
        assert verdicts[0] == verdicts[1]
        refused += not verdicts[0]
    assert refused > 100  # the mutations do reach the validators' refusals


def test_unnamed_refs_rewrite_every_ref_call_of_the_blueprint_schema() -> None:
    from generator import compiled_schema
    from generator.schema import load_schema

    schema = {**load_schema(), "$schema": "http://json-schema.org/draft-07/schema#"}
    _, generator = fastjsonschema._factory(schema, compiled_schema._NO_REMOTE)
    source = compiled_schema._without_locals(generator.func_code)
    calls = source.count(", custom_formats, (name_prefix")
    rewritten = compiled_schema._unnamed_refs(source)
    assert calls > 100 and rewritten.count(", custom_formats, None)") == calls
    assert ", custom_formats, (name_prefix" not in rewritten
    compile(rewritten, "b", "exec")
