"""The fast paths of loading a large environment give what the plain code gave: the
composer's shortcut for plain scalars, merging without deep copies, role defaults whose
positions are found once, the one-walk scan for secret markers and file:// URLs, and
expand's IPv4 parser (issue 20, bench/bench_load.py)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from generator.environment import load_documents
from generator.errors import InvalidInput
from generator.expand import derived_mac, ipv4
from generator.loader import apply_role_defaults, deep_merge, load_yaml
from generator.model import SECRET_MARKER_PREFIX
from generator.semantic import semantic_problems

ROOT = Path(__file__).resolve().parent.parent

ODD_ADDRESSES = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3",
                 "1.2.3.4.5", "\uff11.2.3.4", "+1.2.3.4", " 1.2.3.4", "1.2.3.4 ", "1..3.4",
                 "00.1.1.1", "1.2.3.\u0663", "1.2.3.-4", "1.2.3.4\n", "", "...", "1_0.1.1.1"]


def _parsed(parse: Any, text: str) -> object:
    try:
        return parse(text)
    except ValueError as refused:
        return (type(refused), str(refused))


@pytest.mark.parametrize("text", ODD_ADDRESSES + [f"{a}.{b}.{c}.{d}" for a, b, c, d in
                                                  [(10, 10, 0, 2), (192, 168, 255, 0),
                                                   (0, 300, 1, 1), (1, 2, 3, 999)]])
def test_ipv4_parses_and_refuses_like_ipaddress(text: str) -> None:
    assert _parsed(ipv4, text) == _parsed(IPv4Address, text)


def test_derived_mac_is_the_first_three_digest_bytes() -> None:
    for node in ("master0", "worker9999", "n#1"):
        digest = hashlib.sha256(f"lab/{node}/1".encode()).digest()
        assert derived_mac("lab", node, 1) == "52:54:00:" + ":".join(f"{b:02x}" for b in
                                                                    digest[:3])


MERGE_BASE = """\
cluster: {name: base, extra: [1, {deep: x}]}
roles:
  master: {vcpu: 4, disks: [{name: root, size: 120GiB}], labels: {a: b}}
  worker: {vcpu: 2}
keep: {me: 1}
"""
MERGE_ENV = """\
cluster: {name: mine, more: &m {k: v}}
keep: [replaced]
nodes:
  - {name: m0, role: master}
  - {name: m1, role: master, vcpu: 8, again: *m}
  - {name: w0, role: worker}
  - {name: x0, role: nothing}
  - plain
"""


@pytest.mark.parametrize("consume", [False, True])
def test_merge_and_role_defaults_copy_and_locate_as_before(consume: bool) -> None:
    base, overlay = load_yaml(MERGE_BASE, "bp.yaml"), load_yaml(MERGE_ENV, "env.yaml")
    before = copy.deepcopy(base.data), copy.deepcopy(overlay.data)
    merged = deep_merge(base, overlay, consume=consume)
    apply_role_defaults(merged)
    assert merged.data["cluster"] == {"name": "mine", "extra": [1, {"deep": "x"}],
                                      "more": {"k": "v"}}
    assert merged.data["keep"] == ["replaced"]
    m0, m1 = merged.data["nodes"][:2]
    assert m0["disks"] == [{"name": "root", "size": "120GiB"}] and m1["vcpu"] == 8
    # each node's default is its own copy, and the blueprint's data is never changed
    m0["disks"][0]["name"] = "changed"
    assert m1["disks"][0]["name"] == "root" and base.data == before[0]
    if not consume:
        assert overlay.data == before[1]
    # a default points at the role's value, an alias's copy at its anchor's
    assert merged.positions[("nodes", 1, "disks", 0, "size")] == ("bp.yaml", 3, 48)
    assert merged.positions[("nodes", 0, "vcpu")] == ("bp.yaml", 3, 18)
    assert merged.positions[("nodes", 1, "vcpu")] == ("env.yaml", 5, 36)
    assert merged.positions[("nodes", 1, "again", "k")] == ("env.yaml", 1, 36)
    assert merged.positions[("cluster", "extra", 1, "deep")] == ("bp.yaml", 1, 41)
    assert ("keep", "me") not in merged.positions
    assert merged.positions[("keep", 0)] == ("env.yaml", 2, 8)


def _reference_strings(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, str]]:
    """Every string of `data` with its path, as the rules scanned it before (every path
    built)."""
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield path + (key,), key
            yield from _reference_strings(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _reference_strings(value, path + (index,))


def test_marker_and_file_url_rules_report_every_place_once() -> None:
    source, doc = load_documents(ROOT / "environments" / "lab")
    marker = f"{SECRET_MARKER_PREFIX}x@@"
    data = doc.data
    data["nodes"][1]["nics"][0]["interface"] = f"a{marker}"
    data["services"]["dns"].setdefault("records", []).append(
        {"name": "t", "type": "TXT", "value": marker})
    data["cluster"][f"k{marker}"] = "v"
    data["artifacts"]["os"]["rhcos-live-kernel"]["url"] = "file://../lab/env.yaml"
    data["artifacts"]["os"]["rhcos-live-kernel"]["sha256"] = "file://not-a-url-field"
    found = [(p.location.path, p.message.split(" (")[0]) for p in semantic_problems(doc)
             if "marker" in p.message or "must stay inside" in p.message]
    expected_markers = [path for path, text in _reference_strings(data) if
                        SECRET_MARKER_PREFIX in text]
    assert len(expected_markers) == 3
    assert [p for p, m in found if "secret marker" in m] == [
        doc.locate(path).path for path in expected_markers]
    assert [p for p, m in found if "secret marker" not in m] == [
        "artifacts.os.rhcos-live-kernel.url"]


def test_plain_scalar_shortcut_keeps_values_positions_and_errors() -> None:
    text = "a: 1\nb: [x, 0x1f, 1.5, ~, 'q', !!int '7', -.inf, +3]\nc: {d: e}\n"
    doc = load_yaml(text, "f.yaml")
    assert doc.data["b"][:2] == ["x", 31] and doc.data["b"][3:6] == [None, "q", 7]
    assert doc.data["b"][6] == float("-inf") and doc.data["b"][7] == 3
    assert doc.positions[("b", 4)] == ("f.yaml", 2, 22)
    assert doc.positions[("c", "d")] == ("f.yaml", 3, 8)
    with pytest.raises(InvalidInput) as duplicate:
        load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    (problem,) = duplicate.value.problems
    assert problem.location.prefix() == "f.yaml:3:1: at a"
    assert problem.message == "duplicate key 'a'"
