"""Load environment and blueprint YAML into plain data, remembering where each value came from.

The result is a `Document`: plain dicts/lists/scalars (fast to validate and to read) plus a
table from field path to (file, line, column), so every later error can name its source.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.error import MarkedYAMLError
from yaml.nodes import ScalarNode

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


# Every core int or float starts with one of these: any other text is a string (most
# scalars, such as names, skip both patterns).
_NUMBER_START = frozenset("+-.0123456789")


def _core_scalar(text: str) -> Any:
    """A plain scalar typed by the YAML 1.2 core schema."""
    if text in _CORE_SPECIAL:
        return _CORE_SPECIAL[text]
    if text[0] not in _NUMBER_START:  # not empty: "" is in _CORE_SPECIAL
        return text
    if _CORE_INT.match(text):
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    if _CORE_FLOAT.match(text):
        return float(text)
    return text


# Bounds on what one file may cost, whoever wrote it (docs/threat-model.md). The largest
# benchmark environment (5,000 nodes) is ~0.5 MB and ~90,000 values and nests 7 levels.
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
# Values copied by aliases, all aliases of a file together: an alias bomb (each level nine
# aliases of the one before) stops here, before the copy that would pass it.
MAX_ALIASED = 100_000


class _Frame:
    """An open mapping or sequence while composing: where it lives and what comes next."""

    __slots__ = ("container", "path", "anchor", "start", "key", "key_mark", "discard")

    def __init__(self, container: Any, path: FieldPath, anchor: str | None, start: int,
                 discard: bool = False) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.start = start  # index of this node's first entry in _Composer.entries
        self.key: str | None = None  # a mapping's key waiting for its value
        self.key_mark: Any = None
        self.discard = discard  # a complex (non-scalar) mapping key: composed, then dropped


class _TooBig(Exception):
    def __init__(self, mark: Any, message: str, hint: str) -> None:
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


# Events by class (libyaml's parser makes PyYAML's event classes), so dispatching on one
# needs no class name built per event.
_EVENT_KINDS = {cls: cls.__name__ for cls in (
    yaml.events.DocumentStartEvent, yaml.events.ScalarEvent, yaml.events.AliasEvent,
    yaml.events.SequenceStartEvent, yaml.events.MappingStartEvent,
    yaml.events.SequenceEndEvent, yaml.events.MappingEndEvent)}
_CLOSE_KINDS = ("SequenceEndEvent", "MappingEndEvent")


class _Composer:
    """Turns libyaml's parse events into plain data, recording (line, column) per path.

    Composing from events (not from libyaml's node graph) keeps every bound checked before
    the work it bounds: nesting deeper than MAX_DEPTH stops at the first level too deep
    (libyaml's own composer recurses in C and overflows the stack on 100,000 `[`), and an
    alias is refused before it is copied when the copy would pass MAX_VALUES.
    """

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self.entries: list[tuple[FieldPath, tuple[str, int, int]]] = []
        self.problems: list[Problem] = []
        # anchor -> (value, path, first entry, end entry); None while it is being composed
        self.anchors: dict[str, tuple[Any, FieldPath, int, int] | None] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.aliased = 0

    @property
    def positions(self) -> dict[FieldPath, tuple[str, int, int]]:
        return dict(self.entries)

    def compose(self, reader: Any) -> tuple[bool, Any]:
        """(found a document, its data) for the single document in `reader`'s stream."""
        documents = 0
        check_event, get_event = reader.check_event, reader.get_event
        node, close = self._node, self._close
        while check_event():
            event = get_event()
            kind = _EVENT_KINDS.get(event.__class__)
            if kind is None:  # a stream start or end, a document end
                continue
            if kind == "DocumentStartEvent":
                documents += 1
                if documents > 1:
                    raise _TooBig(event.start_mark, "expected a single document in the stream",
                                  "keep one document: remove the '---' line")
            elif kind in _CLOSE_KINDS:
                close()
            else:
                node(event, kind)
        return documents > 0, self.root

    def _node(self, event: Any, kind: str) -> Any:
        stack = self.stack
        if (kind == "ScalarEvent" and event.anchor is None and stack
                and len(stack) < MAX_DEPTH and len(self.entries) < MAX_VALUES
                and not stack[-1].discard):
            return self._plain_scalar(event, stack[-1])
        path, parent = self._slot(event)
        if len(self.stack) >= MAX_DEPTH:
            raise _TooBig(event.start_mark, f"YAML nesting deeper than {MAX_DEPTH} levels",
                          "flatten the document")
        if kind == "AliasEvent":
            return self._alias(event, path, parent)
        if len(self.entries) >= MAX_VALUES:
            raise _TooBig(event.start_mark, f"more than {MAX_VALUES} values in one file",
                          "split the environment")
        mark = event.start_mark
        self.entries.append((path, (self.display_name, mark.line + 1, mark.column + 1)))
        if kind == "ScalarEvent":
            value = _event_scalar(event)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, path, len(self.entries) - 1,
                                              len(self.entries))
            self._attach(parent, path, value, event)
            return value
        container: Any = {} if kind == "MappingStartEvent" else []
        discard = parent is not None and parent.container.__class__ is dict and \
            parent.key is None and not parent.discard
        if not discard:
            self._attach(parent, path, container, event)
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        self.stack.append(_Frame(container, path, event.anchor, len(self.entries) - 1,
                                 discard or bool(parent and parent.discard)))
        return container

    def _plain_scalar(self, event: Any, top: _Frame) -> Any:
        """_node for the most common event, a scalar without an anchor in a container that
        is kept: the same slot, entry and value, in one call instead of four."""
        mark = event.start_mark
        tag, text = event.tag, event.value
        if tag is None and event.implicit[0] and text and text[0] not in _NUMBER_START \
                and text not in _CORE_SPECIAL:
            value = text  # a plain string, as _event_scalar types it, in fewer steps
        else:
            value = _event_scalar(event)
        container = top.container
        if container.__class__ is list:
            path = top.path + (len(container),)
            self.entries.append((path, (self.display_name, mark.line + 1, mark.column + 1)))
            container.append(value)
        elif top.key is None:  # a key
            path = top.path + ("?",)
            self.entries.append((path, (self.display_name, mark.line + 1, mark.column + 1)))
            key = str(value)
            if key in container:
                self._problem(mark, top.path + (key,), f"duplicate key {key!r}",
                              "keep one of the two entries")
            top.key, top.key_mark = key, mark
        else:
            path = top.path + (top.key,)
            self.entries.append((path, (self.display_name, mark.line + 1, mark.column + 1)))
            container[top.key] = value
            top.key = None
        return value

    def _slot(self, event: Any) -> tuple[FieldPath, _Frame | None]:
        if not self.stack:
            return (), None
        top = self.stack[-1]
        if isinstance(top.container, list):
            return top.path + (len(top.container),), top
        if top.key is None:
            return top.path + ("?",), top  # this node is a key
        return top.path + (top.key,), top

    def _attach(self, parent: _Frame | None, path: FieldPath, value: Any, event: Any) -> None:
        if parent is None:
            self.root = value
            return
        if parent.discard:
            return
        if isinstance(parent.container, list):
            parent.container.append(value)
        elif parent.key is None:
            # A key: plain text of a scalar, "?" for anything else (the schema reports it).
            key = str(value) if not isinstance(value, (dict, list)) else "?"
            if key in parent.container:
                self._problem(event.start_mark, parent.path + (key,), f"duplicate key {key!r}",
                              "keep one of the two entries")
                # the earlier value's positions are overwritten by the later value's
            parent.key, parent.key_mark = key, event.start_mark
        else:
            parent.container[parent.key] = value
            parent.key = None

    def _close(self) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.container, frame.path, frame.start,
                                          len(self.entries))
        if frame.discard and self.stack and not self.stack[-1].discard:
            # A complex key finished: it counts as the key "?" of its mapping.
            parent = self.stack[-1]
            parent.key, parent.key_mark = "?", None

    def _alias(self, event: Any, path: FieldPath, parent: _Frame | None) -> Any:
        name = event.anchor
        if name not in self.anchors:
            raise _TooBig(event.start_mark, f"found undefined alias {name!r}",
                          "define the anchor (&name) before using it")
        anchored = self.anchors[name]
        if anchored is None:
            raise _TooBig(event.start_mark, f"alias *{name} refers to its own anchor",
                          "a value cannot contain itself")
        value, anchor_path, first, end = anchored
        self.aliased += end - first
        if self.aliased > MAX_ALIASED or len(self.entries) + (end - first) > MAX_VALUES:
            raise _TooBig(event.start_mark, f"aliases would expand to more than {MAX_ALIASED} "
                          "values", "write the values out instead of nesting aliases")
        cut = len(anchor_path)
        self.entries.extend((path + sub[cut:], pos) for sub, pos in self.entries[first:end])
        copied = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        self._attach(parent, path, copied, event)
        return copied

    def _problem(self, mark: Any, path: FieldPath, message: str, hint: str) -> None:
        location = Location(self.display_name, mark.line + 1, mark.column + 1,
                            format_path(path))
        self.problems.append(Problem(message, location, hint))


_CORE_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
              "tag:yaml.org,2002:null")


def _event_scalar(event: Any) -> Any:
    """A scalar typed as YAML 1.2's core schema types plain scalars; quoted scalars and
    explicit tags (dates, binary, ...) stay as the text written, except the core types
    asked for by name (`!!int "3"`)."""
    if event.tag is None or event.tag == "!":
        return _core_scalar(event.value) if event.implicit[0] else event.value
    if event.tag in _CORE_TAGS:
        value = _core_scalar(event.value)
        return value if not isinstance(value, str) else event.value
    return event.value


def load_yaml(text: str, display_name: str) -> Document:
    """Parse one YAML document; syntax errors become a one-line `InvalidInput`."""
    composer = _Composer(display_name)
    line = column = 0
    hint = "fix the YAML syntax at that position"
    found, data = False, None
    try:
        reader = _Reader(text)
        try:
            found, data = composer.compose(reader)
        finally:
            reader.dispose()
    except _TooBig as exc:
        line, column = exc.mark.line + 1, exc.mark.column + 1
        problem, hint = exc.message, exc.hint
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
                                    Location(display_name, line, column), hint)]) from None
    if not found or not composer.entries:
        return Document({}, {(): (display_name, 1, 1)}, (display_name,))
    if composer.problems:
        raise InvalidInput(composer.problems)
    return Document(data, composer.positions, (display_name,))


def read_regular_file(path: Path, display_name: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, read without hanging or
    exhausting memory: a FIFO, a device (/dev/zero), a directory or an oversized file is
    refused before its content is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{display_name}: file not found") from None
    except OSError as exc:
        raise UserError(f"{display_name}: cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{display_name}: cannot read: not a regular file",
                            "name a plain file, not a directory, device or pipe")
        if info.st_size > limit:
            raise UserError(f"{display_name}: cannot read: larger than {limit} bytes",
                            "split it or shrink it")
        with os.fdopen(os.dup(fd), "rb") as handle:
            content = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{display_name}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(content) > limit:  # it grew while we read it
        raise UserError(f"{display_name}: cannot read: larger than {limit} bytes",
                        "split it or shrink it")
    return content


def decode_utf8(content: bytes, display_name: str) -> str:
    """UTF-8 text, or a one-line error naming the line and column of the first bad byte."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = content.rfind(b"\n", 0, exc.start) + 1
        line = content.count(b"\n", 0, exc.start) + 1
        column = len(content[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        raise UserError(f"{display_name}:{line}:{column}: cannot read: byte "
                        f"0x{content[exc.start]:02x} is not UTF-8",
                        "save the file as UTF-8") from None


def read_yaml_file(path: Path, display_name: str, within: Path | None = None) -> Document:
    """Parse env.yaml or blueprint.yaml, which must lie inside `within` (the repo, or the
    built-in blueprint's folder) with every symlink followed: a pull request could otherwise
    link it to any YAML file the CI host can read and gen would echo its keys and values
    into the public log, one error line each."""
    real = os.path.realpath(path)
    base = os.path.realpath(within or path)
    if real != base and not real.startswith(base.rstrip("/") + "/"):
        raise UserError(f"{display_name}: leads outside the repository through a symlink "
                        f"(to {real})", "commit the file itself instead of a link to it")
    return load_yaml(decode_utf8(read_regular_file(path, display_name), display_name),
                     display_name)


_SCALARS = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    """A deep copy of plain YAML data: what copy.deepcopy returns for it, without its memo
    (composed data shares no parts: aliases are copied), several times faster."""
    kind = value.__class__
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    return value if kind in _SCALARS else copy.deepcopy(value)


def _subtree_positions(positions: dict[FieldPath, tuple[str, int, int]], src: FieldPath,
                       value: Any) -> list[tuple[FieldPath, tuple[str, int, int]]]:
    """(path below `src`, position) for every value of `value` (which lives at `src`) that
    has a position, in walk order."""
    found: list[tuple[FieldPath, tuple[str, int, int]]] = []
    _collect_positions(positions.get, src, value, (), found)
    return found


def _collect_positions(get: Callable[[FieldPath], tuple[str, int, int] | None],
                       src: FieldPath, data: Any, sub: FieldPath,
                       found: list[tuple[FieldPath, tuple[str, int, int]]]) -> None:
    # A module function, not a closure: a closure that calls itself is a reference cycle,
    # kept (with what it holds) until the cyclic GC runs, and a render turns that off.
    pos = get(src + sub)
    if pos is not None:
        found.append((sub, pos))
    if isinstance(data, dict):
        for key, item in data.items():
            _collect_positions(get, src, item, sub + (key,), found)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _collect_positions(get, src, item, sub + (index,), found)


def _graft(target: Document, source: Document, src: FieldPath, dst: FieldPath,
           value: Any) -> None:
    """Record positions for `value`, copied from `source` at `src`, now living at `dst`."""
    positions = target.positions
    for sub, pos in _subtree_positions(source.positions, src, value):
        positions[dst + sub] = pos


def deep_merge(base: Document, overlay: Document, consume: bool = False) -> Document:
    """Mappings merge key by key (overlay wins); lists and scalars are replaced whole.

    `consume`: the caller drops `overlay` afterwards, so its values move into the result
    instead of being copied (env.yaml's nodes are most of a large environment)."""
    merged = Document(_copy(base.data), dict(base.positions), base.files + overlay.files)
    _merge_into(merged, merged.data, overlay, overlay.data, (), _copy if not consume else None,
                base.positions)
    return merged


def _merge_into(merged: Document, target: dict[str, Any], overlay: Document,
                data: dict[str, Any], path: FieldPath,
                copy_value: Callable[[Any], Any] | None,
                base_positions: dict[FieldPath, tuple[str, int, int]]) -> None:
    for key, value in data.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            found = overlay.positions.get(here, merged.positions.get(here))
            if found is not None:
                merged.positions[here] = found
            _merge_into(merged, target[key], overlay, value, here, copy_value, base_positions)
            continue
        if key in target or key == "?":  # else the base has no positions under `here`
            # Stale positions under `here` can only be the base's (the overlay's are grafted
            # once per path, below): scan the base's few, not the merged tree's many.
            for stale in [p for p in base_positions if p[: len(here)] == here]:
                merged.positions.pop(stale, None)
        target[key] = copy_value(value) if copy_value else value
        _graft(merged, overlay, here, here, value)


def apply_role_defaults(doc: Document) -> None:
    """Fill each node's missing fields from `roles.<role>`; positions point at the default."""
    data = doc.data
    if not isinstance(data, dict):
        return
    roles, nodes = data.get("roles"), data.get("nodes")
    if not isinstance(roles, dict) or not isinstance(nodes, list):
        return
    # the positions of each role's defaults, found once, not once per node
    default_positions: dict[tuple[str, str], list[tuple[FieldPath, tuple[str, int, int]]]] = {}
    positions = doc.positions
    for index, node in enumerate(nodes):
        role = node.get("role") if isinstance(node, dict) else None
        if not isinstance(role, str):  # the schema reports it
            continue
        defaults = roles.get(role)
        if not isinstance(defaults, dict):
            continue
        for key, value in defaults.items():
            if key not in node:
                node[key] = _copy(value)
                found = default_positions.get((role, key))
                if found is None:
                    found = default_positions[role, key] = _subtree_positions(
                        positions, ("roles", role, key), value)
                for sub, pos in found:
                    positions[("nodes", index, key) + sub] = pos
