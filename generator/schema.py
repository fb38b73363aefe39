"""JSON Schema validation of blueprint and environment documents, with one-line messages."""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any

from generator.errors import Problem
from generator.loader import Document, FieldPath

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "blueprint.schema.json"


@functools.cache
def load_schema() -> dict[str, Any]:
    with SCHEMA_FILE.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false"}


def _describe(error: Any) -> tuple[FieldPath, str, str]:
    """(path, message, hint) for one jsonschema error."""
    path: FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind, value = error.validator, error.instance
    if "x-message" in schema and kind in ("pattern", "oneOf", "type", "anyOf"):
        return path, f"{_short(value)} {schema['x-message']}", schema.get("x-hint", "")
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
        return path + (key,), f"unknown key '{key}'", hint
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
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return path, f"needs {word} {error.validator_value} item(s)", ""
    if kind == "pattern":
        return path, f"{_short(value)} does not match {error.validator_value}", ""
    return path, error.message, ""


def schema_problems(doc: Document) -> list[Problem]:
    """Every schema violation in `doc`, each located in its source file."""
    problems = []
    for error in _validator().iter_errors(doc.data):
        if error.validator in ("if", "then", "else"):
            continue
        path, message, hint = _describe(error)
        problems.append(Problem(message, doc.locate(path), hint))
    return problems
