"""The loader: plain data, a position for every value, YAML 1.2 typing, merges that keep
positions, and one-line syntax errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from generator.errors import InvalidInput, UserError
from generator.loader import (
    apply_role_defaults,
    deep_merge,
    format_path,
    load_yaml,
    read_yaml_file,
)

DOC = """\
# a comment
cluster:
  name: ocp4
nodes:
  - {name: m0, role: master, nics: [{network: lan, mac: 52:54:00:12:34:56}]}
  - name: w0
    role: worker
"""


def test_positions_are_one_based_line_and_column() -> None:
    doc = load_yaml(DOC, "env.yaml")
    assert doc.data["nodes"][0]["nics"][0]["mac"] == "52:54:00:12:34:56"
    assert doc.positions[("cluster", "name")] == ("env.yaml", 3, 9)
    assert doc.positions[("nodes", 0, "nics", 0, "mac")] == ("env.yaml", 5, 57)
    assert doc.positions[("nodes", 1, "role")] == ("env.yaml", 7, 11)
    location = doc.locate(("nodes", 1, "role"))
    assert location.prefix() == "env.yaml:7:11: at nodes[1].role"


def test_locate_falls_back_to_nearest_ancestor() -> None:
    doc = load_yaml(DOC, "env.yaml")
    location = doc.locate(("nodes", 1, "vcpu"))
    assert (location.line, location.column, location.path) == (6, 5, "nodes[1].vcpu")


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", "yes"), ("no", "no"), ("on", "on"),  # YAML 1.1 booleans are strings in 1.2
    ("true", True), ("False", False), ("~", None), ("", None), ("null", None),
    ("0755", 755), ("0o17", 15), ("0x1F", 31), ("-3", -3), ("+12", 12),
    ("1.5", 1.5), ("1e3", 1000.0), ("4.14", 4.14), (".inf", math.inf),
    ("52:54:00:12:34:56", "52:54:00:12:34:56"), ("1:20", "1:20"),  # no sexagesimal
    ("2024-01-01", "2024-01-01"), ("'3'", "3"), ('"true"', "true"), ("!!str 5", "5"),
    ("!!int '7'", 7), ("10GiB", "10GiB"), ("192.168.20.1", "192.168.20.1"),
])
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert load_yaml(f"a: {text}\n", "x").data == {"a": expected}


def test_nan_stays_a_float() -> None:
    assert math.isnan(load_yaml("a: .nan\n", "x").data["a"])


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")
    assert info.value.lines() == [
        "f.yaml:4:3: at b.c: duplicate key 'c' (keep one of the two entries)"]


@pytest.mark.parametrize(("text", "line", "column"), [
    ("a: [1, 2\nb: 3\n", 2, 2),
    ("a: 1\n b: 2\n", 2, 3),
    ("a: 'open\n", 2, 1),
])
def test_syntax_errors_are_one_line_with_position(text: str, line: int, column: int) -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml(text, "f.yaml")
    (message,) = info.value.lines()
    assert message.startswith(f"f.yaml:{line}:{column}: YAML syntax error: ")
    assert message.endswith("(fix the YAML syntax at that position)")
    assert "\n" not in message


def test_control_characters_are_a_clean_error() -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml("a: 1\nb: x\x00y\n", "f.yaml")
    (message,) = info.value.lines()
    assert message.startswith("f.yaml:2:5: YAML syntax error:")


def test_odd_keys_are_quoted_in_paths() -> None:
    assert format_path(("nodes", 2, "nics", 0, "mac")) == "nodes[2].nics[0].mac"
    assert format_path(("pool", "\x1e")) == "pool['\\x1e']"
    assert format_path(("a", "b c")) == "a['b c']"


def test_empty_document_is_an_empty_mapping() -> None:
    doc = load_yaml("# nothing\n", "f.yaml")
    assert doc.data == {} and doc.locate(()).prefix() == "f.yaml:1:1"


def test_read_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="f.yaml: file not found"):
        read_yaml_file(tmp_path / "missing.yaml", "f.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(UserError, match="cannot read"):
        read_yaml_file(bad, "bad.yaml")


def test_deep_merge_overlay_wins_lists_replace_and_positions_follow() -> None:
    base = load_yaml("cluster:\n  name: a\n  net: [1, 2]\n  keep: x\n", "bp.yaml")
    overlay = load_yaml("cluster:\n  name: b\n  net: [3]\n", "env.yaml")
    merged = deep_merge(base, overlay)
    assert merged.data == {"cluster": {"name": "b", "net": [3], "keep": "x"}}
    assert merged.positions[("cluster", "name")][0] == "env.yaml"
    assert merged.positions[("cluster", "keep")] == ("bp.yaml", 4, 9)
    assert ("cluster", "net", 1) not in merged.positions, "replaced list leaves no stale items"
    assert base.data["cluster"]["name"] == "a", "inputs are not modified"


def test_role_defaults_fill_missing_fields_and_point_at_the_blueprint() -> None:
    blueprint = load_yaml("roles:\n  worker: {vcpu: 2, memory: 8GiB}\n", "bp.yaml")
    env = load_yaml("nodes:\n  - {name: w0, role: worker, vcpu: 4}\n"
                    "  - {name: x, role: [not, a, string]}\n", "env.yaml")
    merged = deep_merge(blueprint, env)
    apply_role_defaults(merged)
    node = merged.data["nodes"][0]
    assert node["vcpu"] == 4 and node["memory"] == "8GiB"
    assert merged.locate(("nodes", 0, "memory")).prefix() == "bp.yaml:2:29: at nodes[0].memory"
    assert merged.locate(("nodes", 0, "vcpu")).file == "env.yaml"
    assert "memory" not in merged.data["nodes"][1], "a malformed role gets no defaults"
