"""The one diff core (generator/reconcile/essence.py): `compare`, `added` and `members`, the
walk behind both `gen diff`'s summaries and `gen plan`'s changes.

The property tests apply the DiffItems `compare` returns to the old value and require the new
one: a walk that drops, misplaces or invents a difference cannot pass."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from generator.diff import inputs, semantic
from generator.reconcile import base, essence
from generator.reconcile.essence import KUBERNETES, REVIEW, DiffItem, Rules, compare

NAMED = Rules(lists="named")
_keys = st.sampled_from(["a", "b", "c", "name", "spec", "x1"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "v", "w"]))
_named = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["n1", "n2", "n3"])},
                                        optional={"a": _scalars, "b": _scalars}), max_size=3)
_documents = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), _named, st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=15)


def _steps(path: str) -> list[str]:
    return re.findall(r"\[[^\]]*\]|[^.\[]+", path)


def _child(container: Any, step: str) -> Any:
    if not step.startswith("["):
        return container[step]
    inner = step[1:-1]
    if inner.isdigit() and not any(isinstance(i, dict) and i.get("name") == inner
                                   for i in container):
        return container[int(inner)]
    return next(i for i in container if isinstance(i, dict) and i.get("name") == inner)


def _apply(old: Any, items: list[DiffItem]) -> Any:
    """Carry out the DiffItems on a copy of `old` (named list items added at the end)."""
    root = {"": copy.deepcopy(old)}
    for item in items:
        steps = ["", *_steps(item.path)] if item.path else [""]
        parent: Any = root
        for step in steps[:-1]:
            parent = _child(parent, step)
        last = steps[-1]
        if isinstance(parent, list):
            inner = last[1:-1]
            index = next((n for n, i in enumerate(parent) if isinstance(i, dict)
                          and i.get("name") == inner), None)
            if index is None and inner.isdigit():
                index = int(inner)
            if item.op == "add":
                parent.append(item.new)
            elif item.op == "remove":
                del parent[index]
            else:
                parent[index] = item.new
        elif item.op == "remove":
            del parent[last]
        else:
            parent[last] = item.new
    return root[""]


def _same_members(value: Any) -> Any:
    """Named lists compare as sets of members (compare matches them by name, not place)."""
    if isinstance(value, dict):
        return {k: _same_members(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_same_members(v) for v in value]
        if essence.named_items(value) is not None:
            return sorted(items, key=lambda i: i["name"])
        return items
    return value


@settings(max_examples=400, deadline=None)
@given(_documents, _documents)
def test_applying_the_differences_gives_the_new_value(old: Any, new: Any) -> None:
    assert _apply(old, compare(old, new, REVIEW)) == new
    assert _same_members(_apply(old, compare(old, new, NAMED))) == _same_members(new)
    assert compare(new, new, REVIEW) == compare(new, new, NAMED) == []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _documents, max_size=4))
def test_added_lists_every_leaf_once(value: dict[str, Any]) -> None:
    leaves = essence.added(value, REVIEW)
    assert all(item.op == "add" for item in leaves)
    assert [item.path for item in leaves] == [path for path, _ in _leaves(value)]
    for item in leaves:
        found: Any = value
        for step in _steps(item.path):
            found = found[int(step[1:-1])] if step.startswith("[") else found[step]
        assert found == item.new


def _leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Scalars and empty containers with their paths, keys sorted (an independent walk)."""
    if isinstance(value, dict) and value:
        return [leaf for key in sorted(value)
                for leaf in _leaves(value[key], f"{path}.{key}" if path else key)]
    if isinstance(value, list) and value:
        return [leaf for index, part in enumerate(value)
                for leaf in _leaves(part, f"{path}[{index}]")]
    return [(path, value)]


def test_named_lists_match_by_name_and_index_lists_by_place() -> None:
    old = {"nodes": [{"name": "a", "memory": 4}, {"name": "b", "memory": 8}]}
    new = {"nodes": [{"name": "b", "memory": 16}, {"name": "a", "memory": 4}]}
    assert compare(old, new, NAMED) == [DiffItem("change", "nodes[b].memory", 8, 16)]
    assert [i.path for i in compare(old, new, REVIEW)] == [
        "nodes[0].memory", "nodes[0].name", "nodes[1].memory", "nodes[1].name"]


def test_kubernetes_rules_read_only_the_rendered_fields() -> None:
    live = {"spec": {"replicas": 2, "paused": False, "ports": [{"name": "http", "port": 80}],
                     "resources": {"requests": {"cpu": "0.1"}}}, "status": {"ready": 1},
            "metadata": {"labels": None}}
    desired = {"metadata": {"labels": {"a": "b"}}, "spec": {
        "ports": [{"name": "http", "port": 81}], "resources": {"requests": {"cpu": "100m"}},
        "replicas": 2.0}}
    assert essence.kubernetes_diff(desired, live) == [
        DiffItem("add", "metadata.labels", None, {"a": "b"}),
        DiffItem("change", "spec.ports[http].port", 80, 81)]
    # Order is the rendered object's, not sorted: a plan reads like the manifest.
    assert [i.path for i in compare({}, {"b": 1, "a": 2}, KUBERNETES)] == ["b", "a"]


def test_members_lists_added_removed_then_changed() -> None:
    old = {"w": 1, "a": 1, "m": 1}
    new = {"z": 1, "b": 1, "m": 2, "a": 1}
    assert [(i.op, i.path) for i in essence.members(old, new)] == [
        ("add", "b"), ("add", "z"), ("remove", "w"), ("change", "m")]


def test_gen_diff_and_gen_plan_share_the_core() -> None:
    """One DiffItem type; each command's text is a formatting of the same walk."""
    assert base.DiffItem is essence.DiffItem
    old = {"nodes": [{"name": "w1", "memory": "8GiB", "pullSecret": {"env": "A"}}]}
    new = {"nodes": [{"name": "w1", "memory": "16GiB", "pullSecret": {"env": "B"}},
                     {"name": "w2", "memory": "8GiB"}]}
    assert inputs.field_diff(old, new) == [
        ("~", "nodes[w1].memory", "8GiB -> 16GiB"),
        ("~", "nodes[w1].pullSecret", semantic.SENSITIVE),
        ("+", "nodes[w2].memory", "8GiB"), ("+", "nodes[w2].name", "w2")]
    assert semantic.field_changes({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) == [
        "a.b: 1 -> 2", "+ a.c: 3"]
    assert essence.diff({"vcpu": "2", "disk[vda]": "x"}, {"vcpu": "4"}) == [
        DiffItem("change", "vcpu", "2", "4"), DiffItem("remove", "disk[vda]", "x", None)]


def test_a_secret_reference_is_one_row_however_deep_the_change() -> None:
    old = {"secrets": {"db": {"env": "A"}, "api": {"file": "x"}}}
    new = {"secrets": {"db": {"env": "B"}, "api": {"file": "y"}, "new": {"env": "C"}}}
    assert inputs.field_diff(old, new) == [("~", "secrets", semantic.SENSITIVE)]
    assert inputs.field_diff({}, new) == [("+", "secrets", semantic.SENSITIVE)]
    assert inputs.field_diff(new, {}) == [("-", "secrets", "")]
