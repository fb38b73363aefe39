"""JSON Schema validation of blueprint and environment documents, with one-line messages."""

from __future__ import annotations

import difflib
import functools
import json
import re
from typing import Any

from generator.errors import Problem
from generator.loader import Document, FieldPath
from generator.resources import schema_file

SCHEMA_FILE = schema_file("blueprint.schema.json")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The schema as both validators apply it: every pattern a full match (see below)."""
    with SCHEMA_FILE.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = _full_match(json.load(handle))
    return schema


# The schema's patterns are ECMA regexes, where `$` (without the m flag) is the end of the
# input. Python's `re` (jsonschema and fastjsonschema both use `re.search`) also lets `$`
# match before a final newline, so `name: "worker1\n"` would pass `^[a-z0-9-]+$` and land
# in file names and configs. Translating each unescaped `$` to `\Z` gives the ECMA meaning
# in Python while the file stays a standard schema editors understand; no pattern uses `$`
# inside a character class. tests/test_hostile_input.py proves the translation per pattern.
_DOLLAR = re.compile(r"(?<!\\)\$")


def full_match_pattern(pattern: str) -> str:
    return _DOLLAR.sub(r"\\Z", pattern)


def _full_match(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: full_match_pattern(v) if k == "pattern" and isinstance(v, str)
                else _full_match(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_full_match(v) for v in node]
    return node


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator, validators

    # JSON Schema counts 4.0 as an integer; gen would then render `<vcpu>4.0</vcpu>` or
    # `port 8080.0`. Integers here are whole numbers written without a fraction.
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, type_checker=checker)(load_schema())


# Documents first go through a compiled validator; only when it rejects does jsonschema
# run (imported then), to explain. The compiled code is cached across processes
# (generator/compiled_schema.py), so even the labs' small documents take the fast path.


@functools.cache
def _compiled() -> Any:
    from generator.compiled_schema import compile_schema

    # The schema uses only draft-07 keywords. `integer` compiled as jsonschema's checker
    # above applies it (an int, not 4.0), so the two agree on floats without a walk.
    # Its errors are never shown (jsonschema explains), so `$ref` calls skip naming values.
    return compile_schema(load_schema(), "http://json-schema.org/draft-07/schema#",
                          whole_integers=True, unnamed_refs=True)


def _quickly_valid(doc: Document) -> bool:
    """True only when the compiled validator accepts `doc` (never a false "valid": the
    schema has no `number` type, and its `integer` refuses floats as jsonschema's does)."""
    try:
        _compiled()(doc.data)
    except Exception:  # noqa: BLE001 - any doubt: let jsonschema decide and explain
        return False
    return True


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false"}


def _pattern_fails(schema: dict[str, Any], value: Any) -> bool:
    """A too-long value that also breaks its type's pattern gets the type's one message (the
    pattern error says the same, and `dedupe` keeps one line)."""
    pattern = schema.get("pattern")
    return isinstance(pattern, str) and isinstance(value, str) and not re.search(pattern, value)


def _describe(error: Any) -> tuple[FieldPath, str, str]:
    """(path, message, hint) for one jsonschema error."""
    path: FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind, value = error.validator, error.instance
    if "x-message" in schema and (kind in ("pattern", "oneOf", "type", "anyOf") or (
            kind == "maxLength" and _pattern_fails(schema, value))):
        # Whatever stands where a secret reference belongs may be the secret itself: an
        # error (a CI log) must not repeat it.
        shown = "the value (not shown)" if schema.get("x-redact") else _short(value)
        return path, f"{shown} {schema['x-message']}", schema.get("x-hint", "")
    if kind == "required":
        return path, f"missing required key {error.message.split(' is a')[0]}", "add it"
    if kind == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return path, f"{_short(value)} is not one of: {choices}", "pick one of those values"
    if kind == "const":
        return path, f"{_short(value)} must be {_short(error.validator_value)}", ""
    if kind == "type":
        wanted = _TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
        return path, f"expected {wanted}, got {_short(value)}", ""
    if kind in ("minimum", "maximum"):
        word = "at least" if kind == "minimum" else "at most"
        return path, f"{_short(value)} must be {word} {error.validator_value}", ""
    if kind == "maxLength":
        return path, f"{_short(value)} is longer than {error.validator_value} characters", ""
    if kind == "minLength":
        if error.validator_value == 1:
            return path, "must not be empty", ""
        return path, f"{_short(value)} is shorter than {error.validator_value} characters", ""
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return path, f"needs {word} {error.validator_value} item(s)", ""
    if kind == "pattern":
        return path, f"{_short(value)} does not match {error.validator_value}", ""
    return path, error.message, ""


def schema_problems(doc: Document) -> list[Problem]:
    """Every schema violation in `doc`, each located in its source file."""
    if _quickly_valid(doc):
        return []
    problems = []
    for error in _validator().iter_errors(doc.data):
        if error.validator in ("if", "then", "else"):
            continue
        if error.validator == "additionalProperties":
            # One line per unknown key, each at its own position.
            allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            for key in [k for k in error.instance if k not in allowed]:
                path, message, hint = _unknown_key(tuple(error.absolute_path), key, allowed)
                problems.append(Problem(message, doc.locate(path), hint))
            continue
        path, message, hint = _describe(error)
        if error.validator == "required":
            hint = _role_hint(doc, path, message, hint)
        problems.append(Problem(message, doc.locate(path), hint))
    return dedupe(problems)


def _unknown_key(path: FieldPath, key: str, allowed: Any) -> tuple[FieldPath, str, str]:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
    return path + (key,), f"unknown key {key!r}", hint


def _role_hint(doc: Document, path: FieldPath, message: str, hint: str) -> str:
    """A node missing a field its role could default: say where the default would go."""
    defaultable = load_schema()["$defs"].get("nodeDefaults", {}).get("properties", {})
    missing = message.split("'")[1] if message.count("'") >= 2 else ""
    if (len(path) != 2 or path[0] != "nodes" or missing not in defaultable
            or not isinstance(doc.data, dict)):
        return hint
    nodes = doc.data.get("nodes")
    node = nodes[path[1]] if isinstance(nodes, list) and isinstance(path[1], int) else None
    role = node.get("role") if isinstance(node, dict) else None
    roles = load_schema()["$defs"].get("node", {}).get("properties", {}).get("role", {})
    if not isinstance(role, str) or role not in roles.get("enum", ()):
        return hint
    return f"add it, or give role '{role}' a default under roles in the blueprint"


def dedupe(problems: list[Problem]) -> list[Problem]:
    """One line per mistake: the same message at the same source position is reported once.

    A role default is copied into every node of that role, so a bad default would otherwise
    be reported once per node; the `roles.<role>` path is the one kept, as that is where the
    fix goes.
    """
    kept: dict[tuple[object, ...], Problem] = {}
    for problem in problems:
        loc = problem.location
        key = ((loc.file, loc.line, loc.column) if loc else None, problem.message, problem.hint,
               problem.warning)
        current = kept.get(key)
        if current is None or (_in_node(current) and not _in_node(problem)):
            kept[key] = problem
    return list(kept.values())


def _in_node(problem: Problem) -> bool:
    return problem.location is not None and problem.location.path.startswith("nodes[")
