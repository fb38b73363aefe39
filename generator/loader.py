"""Load environment and blueprint YAML into plain data, remembering where each value came from.

The result is a `Document`: plain dicts/lists/scalars (fast to validate and to read) plus a
table from field path to (file, line, column), so every later error can name its source.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.error import MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from generator.errors import InvalidInput, Location, Problem, UserError

FieldPath = tuple[str | int, ...]
ENV_FILE = "env.yaml"
BLUEPRINT_FILE = "blueprint.yaml"


def format_path(path: FieldPath) -> str:
    """`("nodes", 2, "nics", 0, "mac")` -> `nodes[2].nics[0].mac`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable() or not part or any(c in part for c in " '\"[]"):
            text += f"[{part!r}]"  # odd keys quoted, so a message stays one readable line
        else:
            text += f".{part}" if text else part
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


# libyaml (through PyYAML's CParser) only tokenizes and composes: some 30x faster than a
# pure-Python parser, which matters for 1,000-node environments. Plain scalars are then
# typed by YAML 1.2's core schema, not PyYAML's YAML 1.1 rules, so `52:54:00:12:34:56` or
# `yes` stay strings and `0755` is decimal, as with any YAML 1.2 tool.
_CORE_INT = re.compile(r"[-+]?[0-9]+$|0o[0-7]+$|0x[0-9a-fA-F]+$")
_CORE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_CORE_SPECIAL = {"~": None, "null": None, "Null": None, "NULL": None, "": None,
                 "true": True, "True": True, "TRUE": True,
                 "false": False, "False": False, "FALSE": False,
                 ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
                 "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
                 "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
                 ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}
_PLAIN = "gen:plain"  # tag given to untagged plain scalars, typed in _core_scalar


class _PlainResolver(yaml.resolver.BaseResolver):
    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


try:
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None  # type: ignore[misc,assignment]

if _CParser is not None:
    class _Reader(_CParser, _PlainResolver):
        """libyaml parser + composer; no constructor."""

        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            _PlainResolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml: same result, slower
    class _Reader(yaml.reader.Reader, yaml.scanner.Scanner,  # type: ignore[no-redef]
                  yaml.parser.Parser, yaml.composer.Composer, _PlainResolver):
        def __init__(self, text: str) -> None:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _PlainResolver.__init__(self)


def _core_scalar(text: str) -> Any:
    """A plain scalar typed by the YAML 1.2 core schema."""
    if text in _CORE_SPECIAL:
        return _CORE_SPECIAL[text]
    if _CORE_INT.match(text):
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    if _CORE_FLOAT.match(text):
        return float(text)
    return text


class _Composer:
    """Turns YAML nodes into plain data, recording (line, column) per path."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self.positions: dict[FieldPath, tuple[str, int, int]] = {}
        self.problems: list[Problem] = []

    def build(self, node: Node, path: FieldPath) -> Any:
        self.positions[path] = (self.display_name, node.start_mark.line + 1,
                                node.start_mark.column + 1)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(self._scalar(key_node)) if isinstance(key_node, ScalarNode) else "?"
            if key in result:
                self._problem(key_node, path + (key,), f"duplicate key {key!r}",
                              "keep one of the two entries")
            result[key] = self.build(value_node, path + (key,))
        return result

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag == _PLAIN:
            return _core_scalar(node.value)
        # Quoted scalars and explicit tags (dates, binary, ...) stay as the text written,
        # except the core types asked for by name (`!!int "3"`).
        if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
            value = _core_scalar(node.value)
            return value if not isinstance(value, str) else node.value
        return node.value

    def _problem(self, node: Node, path: FieldPath, message: str, hint: str) -> None:
        location = Location(self.display_name, node.start_mark.line + 1,
                            node.start_mark.column + 1, format_path(path))
        self.problems.append(Problem(message, location, hint))


def load_yaml(text: str, display_name: str) -> Document:
    """Parse one YAML document; syntax errors become a one-line `InvalidInput`."""
    composer = _Composer(display_name)
    line = column = 0
    try:
        reader = _Reader(text)
        try:
            node = reader.get_single_node()
        finally:
            reader.dispose()
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"character {exc.character!r} is not allowed in YAML"
    else:
        problem = ""
    if problem:
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
            found = overlay.positions.get(here, merged.positions.get(here))
            if found is not None:
                merged.positions[here] = found
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
        role = node.get("role") if isinstance(node, dict) else None
        defaults = roles.get(role) if isinstance(role, str) else None  # the schema reports it
        if not isinstance(defaults, dict):
            continue
        for key, value in defaults.items():
            if key not in node:
                node[key] = copy.deepcopy(value)
                _graft(doc, doc, ("roles", node["role"], key), ("nodes", index, key), value)
