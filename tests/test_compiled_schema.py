"""The cross-process cache of compiled JSON Schemas (generator/compiled_schema.py): a hit
validates exactly like a fresh compile, and a bad entry is never trusted."""

from __future__ import annotations

import marshal
from pathlib import Path

import fastjsonschema
import pytest

from generator import compiled_schema
from generator.schema import load_schema

DRAFT7 = "http://json-schema.org/draft-07/schema#"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^[a-z]+\\Z"},
                                           "size": {"type": "integer", "minimum": 1}},
          "required": ["name"], "additionalProperties": False}
GOOD = [{"name": "abc"}, {"name": "x", "size": 3}]
BAD = [{}, {"name": "ABC"}, {"name": "a", "size": 0}, {"name": "a", "extra": 1}, [], "x"]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "schemas"


def verdicts(validate: compiled_schema.Validator) -> list[bool]:
    out = []
    for doc in GOOD + BAD:
        try:
            validate(doc)
            out.append(True)
        except fastjsonschema.JsonSchemaValueException:
            out.append(False)
    return out


def test_miss_then_hit_validate_like_fastjsonschema(cache: Path) -> None:
    expected = verdicts(fastjsonschema.compile(SCHEMA))
    assert expected == [True] * len(GOOD) + [False] * len(BAD)
    assert verdicts(compiled_schema.compile_schema(SCHEMA)) == expected
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].stat().st_mode & 0o777 == 0o600
    assert verdicts(compiled_schema.compile_schema(SCHEMA)) == expected  # from the cache


def test_the_key_names_the_schema(cache: Path) -> None:
    compiled_schema.compile_schema(SCHEMA)
    looser = {**SCHEMA, "additionalProperties": True}
    assert verdicts(compiled_schema.compile_schema(looser))[len(GOOD) + 3] is True
    assert len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "group-writable", "symlink"])
def test_a_bad_entry_is_ignored(cache: Path, tmp_path: Path, damage: str) -> None:
    compiled_schema.compile_schema(SCHEMA)
    (entry,) = cache.iterdir()
    if damage == "garbage":
        entry.write_bytes(b"\x00not marshal")
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "group-writable":
        # a valid entry for a schema that accepts everything, planted writable by others
        lax = compiled_schema._compile({}, "lax")
        entry.write_bytes(marshal.dumps(lax))
        entry.chmod(0o660)
    else:
        lax_dir = tmp_path / "other"
        lax_dir.mkdir()
        target = lax_dir / "lax"
        target.write_bytes(marshal.dumps(compiled_schema._compile({}, "lax")))
        target.chmod(0o600)
        entry.unlink()
        entry.symlink_to(target)
    assert verdicts(compiled_schema.compile_schema(SCHEMA)) == (
        [True] * len(GOOD) + [False] * len(BAD))


def test_an_unwritable_cache_still_validates(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GEN_CACHE_DIR", str(blocker))
    assert verdicts(compiled_schema.compile_schema(SCHEMA)) == (
        [True] * len(GOOD) + [False] * len(BAD))
    assert blocker.read_text() == "not a directory"


def test_the_blueprint_schema_round_trips_through_the_cache(cache: Path) -> None:
    first = compiled_schema.compile_schema(load_schema(), DRAFT7)
    again = compiled_schema.compile_schema(load_schema(), DRAFT7)
    assert list(cache.iterdir())
    doc = {"apiVersion": "gen/v1"}
    for validate in (first, again):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate(doc)


def test_compile_cached_code_runs_the_same_from_the_cache(cache: Path) -> None:
    source = "def twice(x):\n    return [x, x]\n"
    results = []
    for _ in range(2):  # a miss (compiles and writes), then a hit (reads)
        namespace: dict[str, object] = {}
        exec(compiled_schema.compile_cached(source, "<twice>"), namespace)  # noqa: S102
        results.append(namespace["twice"](3))  # type: ignore[operator]
    (entry,) = (cache.parent / "code").iterdir()
    assert results == [[3, 3], [3, 3]] and entry.stat().st_mode & 0o777 == 0o600
    entry.write_bytes(b"\x00not marshal")  # a corrupt entry is compiled again
    namespace = {}
    exec(compiled_schema.compile_cached(source, "<twice>"), namespace)  # noqa: S102
    assert namespace["twice"]("a") == ["a", "a"]  # type: ignore[operator]


REFS = {"$defs": {"nic": {"type": "object", "properties": {"ip": {"type": "string",
                                                               "maxLength": 3}}}},
        "type": "object",
        "properties": {"nodes": {"type": "array", "items": {
            "type": "object", "properties": {"nics": {"type": "array",
                                                      "items": {"$ref": "#/$defs/nic"}}}}},
                       "byname": {"type": "object",
                                  "additionalProperties": {"$ref": "#/$defs/nic"}}}}


def _names(code: object) -> set[str]:
    """Every global or attribute name a code object or its nested functions use."""
    found = set(getattr(code, "co_names", ()))
    for const in getattr(code, "co_consts", ()):
        if hasattr(const, "co_names"):
            found |= _names(const)
    return found


@pytest.mark.parametrize("doc", [{"nodes": [{"nics": [{"ip": "1"}, {"ip": "1234"}]}]},
                                 {"nodes": [{}, {"nics": [{"ip": 5}]}]},
                                 {"byname": {"a b": {"ip": "12345"}}}])
def test_ref_calls_name_the_value_without_locals(doc: dict[str, object]) -> None:
    # A `$ref` inside an array or a map is called per item; the rewritten call must name the
    # failing value exactly as fastjsonschema's own code does, and never call locals().
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as theirs:
        fastjsonschema.compile({**REFS, "$schema": DRAFT7})(doc)
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as ours:
        compiled_schema.compile_schema(REFS, DRAFT7)(doc)
    assert (ours.value.message, ours.value.name) == (theirs.value.message, theirs.value.name)
    assert "[" in ours.value.name or "byname" in ours.value.name
    assert "locals" not in _names(compiled_schema._compile({**REFS, "$schema": DRAFT7}, "t")[1])


def test_the_blueprint_schema_never_calls_locals() -> None:
    code = compiled_schema._compile({**load_schema(), "$schema": DRAFT7}, "blueprint")[1]
    assert "locals" not in _names(code)


def test_whole_integers_refuses_floats_as_gen_jsonschema_does() -> None:
    # fastjsonschema counts 4.0 as an integer; the blueprint validator must not (gen would
    # render `<vcpu>4.0</vcpu>`), with no separate walk looking for floats.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    lax = compiled_schema.compile_schema(schema, DRAFT7)
    strict = compiled_schema.compile_schema(schema, DRAFT7, whole_integers=True)
    lax({"n": 4.0})
    for bad in (4.0, True, "4"):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            strict({"n": bad})
    strict({"n": 4})
    strict({"m": 4.5})
    code = compiled_schema._compile({**load_schema(), "$schema": DRAFT7}, "b", True)[1]
    assert "is_integer" not in _names(code)


def test_a_remote_ref_is_refused_without_touching_the_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """fastjsonschema fetches a `$ref` to another document with urllib unless told how to
    resolve its scheme; gen's compiler refuses every remote reference instead."""
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "properties": {"a": {"$ref": "https://example.com/other.json#/x"}}}
    with pytest.raises(Exception, match="never fetch a reference"):
        compiled_schema.compile_schema(schema)
