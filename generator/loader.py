"""Load environment and blueprint YAML into plain data, remembering where each value came from.

The result is a `Document`: plain dicts/lists/scalars (fast to validate and to read) plus a
table from field path to (file, line, column), so every later error can name its source.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from generator.errors import InvalidInput, Location, Problem, UserError

FieldPath = tuple[str | int, ...]
ENV_FILE = "env.yaml"
BLUEPRINT_FILE = "blueprint.yaml"


def format_path(path: FieldPath) -> str:
    """`("nodes", 2, "nics", 0, "mac")` -> `nodes[2].nics[0].mac`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(slots=True)
class Document:
    """Plain data with the source position of every value."""

    data: Any
    positions: dict[FieldPath, tuple[str, int, int]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def locate(self, path: FieldPath) -> Location:
        """The position of `path`, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            found = self.positions.get(path[:cut])
            if found is not None:
                file, line, column = found
                return Location(file, line, column, format_path(path))
        return Location(self.files[0] if self.files else "", 0, 0, format_path(path))


class _Composer:
    """Turns ruamel.yaml nodes into plain data, recording (line, column) per path."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self.yaml = YAML(typ="safe", pure=True)
        self.positions: dict[FieldPath, tuple[str, int, int]] = {}
        self.problems: list[Problem] = []

    def build(self, node: Node, path: FieldPath) -> Any:
        self.positions[path] = (self.display_name, node.start_mark.line + 1,
                                node.start_mark.column + 1)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(self._scalar(key_node)) if isinstance(key_node, ScalarNode) else "?"
            if key in result:
                self._problem(key_node, path + (key,), f"duplicate key '{key}'",
                              "keep one of the two entries")
            result[key] = self.build(value_node, path + (key,))
        return result

    def _scalar(self, node: ScalarNode) -> Any:
        value = self.yaml.constructor.construct_object(node, deep=True)
        # Dates and other YAML-only types stay as the text the user wrote.
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(node.value)

    def _problem(self, node: Node, path: FieldPath, message: str, hint: str) -> None:
        location = Location(self.display_name, node.start_mark.line + 1,
                            node.start_mark.column + 1, format_path(path))
        self.problems.append(Problem(message, location, hint))


def load_yaml(text: str, display_name: str) -> Document:
    """Parse one YAML document; syntax errors become a one-line `InvalidInput`."""
    composer = _Composer(display_name)
    try:
        node = composer.yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise InvalidInput([Problem(f"YAML syntax error: {problem}",
                                    Location(display_name, line, column),
                                    "fix the YAML syntax at that position")]) from None
    if node is None:
        return Document({}, {(): (display_name, 1, 1)}, (display_name,))
    data = composer.build(node, ())
    if composer.problems:
        raise InvalidInput(composer.problems)
    return Document(data, composer.positions, (display_name,))


def read_yaml_file(path: Path, display_name: str) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{display_name}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{display_name}: cannot read: {exc}") from None
    return load_yaml(text, display_name)


def _walk(data: Any, path: FieldPath) -> Iterator[FieldPath]:
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, path + (index,))


def _graft(target: Document, source: Document, src: FieldPath, dst: FieldPath,
           value: Any) -> None:
    """Record positions for `value`, copied from `source` at `src`, now living at `dst`."""
    for sub in _walk(value, ()):
        found = source.positions.get(src + sub)
        if found is not None:
            target.positions[dst + sub] = found


def deep_merge(base: Document, overlay: Document) -> Document:
    """Mappings merge key by key (overlay wins); lists and scalars are replaced whole."""
    merged = Document(copy.deepcopy(base.data), dict(base.positions),
                      base.files + overlay.files)
    _merge_into(merged, merged.data, overlay, overlay.data, ())
    return merged


def _merge_into(merged: Document, target: dict[str, Any], overlay: Document,
                data: dict[str, Any], path: FieldPath) -> None:
    for key, value in data.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merged.positions[here] = overlay.positions.get(here, merged.positions.get(here))
            _merge_into(merged, target[key], overlay, value, here)
            continue
        for stale in [p for p in merged.positions if p[: len(here)] == here]:
            del merged.positions[stale]
        target[key] = copy.deepcopy(value)
        _graft(merged, overlay, here, here, value)


def apply_role_defaults(doc: Document) -> None:
    """Fill each node's missing fields from `roles.<role>`; positions point at the default."""
    data = doc.data
    if not isinstance(data, dict):
        return
    roles, nodes = data.get("roles"), data.get("nodes")
    if not isinstance(roles, dict) or not isinstance(nodes, list):
        return
    for index, node in enumerate(nodes):
        defaults = roles.get(node.get("role")) if isinstance(node, dict) else None
        if not isinstance(defaults, dict) or not isinstance(node.get("role"), str):
            continue
        for key, value in defaults.items():
            if key not in node:
                node[key] = copy.deepcopy(value)
                _graft(doc, doc, ("roles", node["role"], key), ("nodes", index, key), value)
