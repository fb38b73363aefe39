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
from functools import partial
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


Positions = dict[FieldPath, tuple[str, int, int]]


class Document:
    """Plain data with the source position of every value.

    A large environment's positions (140,000 values for 10,000 nodes) cost more to record
    than its data, and a valid one asks for a handful: only an error or a warning needs a
    location. So a large document records the positions of its top levels only (`known`,
    every path of at most `known_depth` parts: where a node or a section is) and finds the
    rest when first asked: `replay` rebuilds it the eager way (compose with every position,
    merge, fill role defaults) from its source text."""

    __slots__ = ("data", "files", "replay", "known", "known_depth")

    def __init__(self, data: Any, positions: Positions | None = None,
                 files: tuple[str, ...] = (),
                 replay: Callable[[], Document] | None = None,
                 known_depth: int | None = None) -> None:
        self.data = data
        self.files = files
        # A fresh Document equal to this one with every position recorded, or None: a
        # document built by hand, which has all its positions.
        self.replay = replay
        self.known: Positions = positions if positions is not None else {}
        self.known_depth = known_depth  # None: `known` holds every position

    @property
    def positions(self) -> Positions:
        """Every position (found by replaying the first time, for a large document)."""
        if self.known_depth is not None:
            assert self.replay is not None
            self.known, self.known_depth = self.replay().positions, None
        return self.known

    def locate(self, path: FieldPath) -> Location:
        """The position of `path`, or of its nearest ancestor that has one."""
        positions = self.known if self.known_depth is not None and \
            len(path) <= self.known_depth else self.positions
        for cut in range(len(path), -1, -1):
            found = positions.get(path[:cut])
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
    if text.isascii() and text.isdigit():  # the usual number (vcpu: 4), without a regex
        return int(text, 10)
    if text.count(".") > 1:  # an address (10.0.0.5): no core int or float has two dots
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


class _Unusual(Exception):
    """Input the fast composer leaves to the eager one (see _compose_data)."""


# Events by class for the fast composer, compared by identity.
_SCALAR, _ALIAS = yaml.events.ScalarEvent, yaml.events.AliasEvent
_MAPPING, _SEQUENCE = yaml.events.MappingStartEvent, yaml.events.SequenceStartEvent
_MAPPING_END, _SEQUENCE_END = yaml.events.MappingEndEvent, yaml.events.SequenceEndEvent
_DOCUMENT = yaml.events.DocumentStartEvent


# A document this large or larger records only the positions of its top levels while it
# is composed (Document.known); a smaller one (a blueprint, a lab's env.yaml) costs a few
# milliseconds to compose with every position, so it does.
LAZY_FROM_BYTES = 64 * 1024
# The parts of the paths whose positions a large document records at once: `nodes[12]`,
# what the rules that look at whole nodes or sections point at.
KNOWN_DEPTH = 2


def _compose_data(text: str, display_name: str) -> tuple[Any, Positions]:
    """(data, positions of the paths of at most KNOWN_DEPTH parts) as _Composer composes
    and records them from `text`: why it exists is speed (under half of _Composer's time
    on a 10,000-node env.yaml, which records a path and a position per value).

    It handles only what needs no decision on a problem or a bound: anything else (an
    anchor or alias, a duplicate or complex key, a second document, a root scalar or empty
    document, nesting or a value count near a bound, a syntax error) raises _Unusual or
    yaml's error, and load_yaml composes the text with _Composer, which gives the result,
    the error and its location exactly as always."""
    reader = _Reader(text)
    try:
        check_event, get_event = reader.check_event, reader.get_event
        # (container, pending key, path) of each parent of the open container
        stack: list[tuple[Any, str | None, FieldPath]] = []
        container: Any = None  # the open mapping or sequence
        key: str | None = None  # the open mapping's key waiting for its value
        path: FieldPath = ()  # the open container's path, while it is a known one
        roots: list[Any] = []
        known: Positions = {}
        events = documents = 0
        # every value is an event (some events are no value): stop at MAX_VALUES events
        while events < MAX_VALUES and check_event():
            event: Any = get_event()
            kind = event.__class__
            events += 1
            if kind is _SCALAR:  # most events: the common case inline, in fewer steps
                if len(stack) <= KNOWN_DEPTH:
                    _note(known, display_name, container, key, path, event)
                value = event.value
                if event.tag is not None or not value or value[0] in _NUMBER_START \
                        or event.anchor is not None or not event.implicit[0] \
                        or value in _CORE_SPECIAL:
                    value = _scalar_fast(event)  # else a plain string, as _event_scalar types it
                if key is not None:  # a mapping's value
                    container[key] = value
                    key = None
                elif container.__class__ is dict and value.__class__ is str \
                        and value not in container:
                    key = value  # a mapping's key, not a duplicate
                else:
                    key = _attach_fast(container, key, value)
            elif kind is _MAPPING_END or kind is _SEQUENCE_END:
                container, key, path = stack.pop()
            elif kind is _MAPPING or kind is _SEQUENCE:
                value, parent_key, here = _open(known, display_name, event, container, key, path,
                                                len(stack), roots)
                stack.append((container, parent_key, path))
                container, key, path = value, None, here
            elif kind is _ALIAS or kind is _DOCUMENT and documents:
                raise _Unusual
            elif kind is _DOCUMENT:
                documents += 1
        if events >= MAX_VALUES or not roots:
            raise _Unusual
        return roots[0], known
    finally:
        reader.dispose()


def _open(known: Positions, display_name: str, event: Any, container: Any, key: str | None,
          path: FieldPath, depth: int, roots: list[Any]) -> tuple[Any, str | None, FieldPath]:
    """(the new mapping or sequence, its parent's pending key after, its path if known) for
    a mapping or sequence start event; the root one goes to `roots`."""
    if event.anchor is not None or depth >= MAX_DEPTH - 2:
        raise _Unusual
    here = _note(known, display_name, container, key, path, event) if depth <= KNOWN_DEPTH \
        else ()
    value: Any = {} if event.__class__ is _MAPPING else []
    if container is None:
        roots.append(value)
    else:
        key = _attach_fast(container, key, value)
    return value, key, here


def _note(known: Positions, display_name: str, container: Any, key: str | None,
          path: FieldPath, event: Any) -> FieldPath:
    """Record the position of the node `event` starts, at the path _Composer gives it."""
    if container is None:
        here: FieldPath = ()
    elif container.__class__ is list:
        here = path + (len(container),)
    elif key is None:  # the node is a key
        here = path + ("?",)
    else:
        here = path + (key,)
    mark = event.start_mark
    known[here] = (display_name, mark.line + 1, mark.column + 1)
    return here


def _scalar_fast(event: Any) -> Any:
    """_event_scalar's value for a scalar without an anchor."""
    if event.anchor is not None:
        raise _Unusual
    text = event.value
    if event.tag is None and event.implicit[0] and text and text[0] not in _NUMBER_START \
            and text not in _CORE_SPECIAL:
        return text  # a plain string, as _event_scalar types it, in fewer steps
    return _event_scalar(event)


def _attach_fast(container: Any, key: str | None, value: Any) -> str | None:
    """Put `value` in `container` as _Composer does; the mapping's pending key after."""
    if container.__class__ is list:
        container.append(value)
        return None
    if container.__class__ is not dict:  # a document that is one scalar
        raise _Unusual
    if key is None:
        if value.__class__ is dict or value.__class__ is list:  # a complex key
            raise _Unusual
        key = str(value)
        if key in container:  # a duplicate key: _Composer reports it
            raise _Unusual
        return key
    container[key] = value
    return None


def load_yaml(text: str, display_name: str) -> Document:
    """Parse one YAML document; syntax errors become a one-line `InvalidInput`.

    A large document records its deeper positions when first asked for (Document)."""
    replay = partial(_load_eager, text, display_name)
    if len(text) >= LAZY_FROM_BYTES:
        try:
            data, known = _compose_data(text, display_name)
        except (_Unusual, yaml.YAMLError):
            pass
        else:
            return Document(data, known, (display_name,), replay, KNOWN_DEPTH)
    doc = replay()
    doc.replay = replay  # so that merging it with a large document stays lazy
    return doc


def _load_eager(text: str, display_name: str) -> Document:
    """load_yaml with every position recorded while composing."""
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
    if kind is dict:  # scalars (most values) are kept as they are, without a call
        return {key: item if item.__class__ in _SCALARS else _copy(item)
                for key, item in value.items()}
    if kind is list:
        return [item if item.__class__ in _SCALARS else _copy(item) for item in value]
    return value if kind in _SCALARS else copy.deepcopy(value)


def _subtree_positions(positions: Positions, src: FieldPath, value: Any,
                       limit: int | None = None) -> list[tuple[FieldPath, tuple[str, int, int]]]:
    """(path below `src`, position) for every value of `value` (which lives at `src`) that
    has a position, in walk order; only paths of at most `limit` parts when given."""
    found: list[tuple[FieldPath, tuple[str, int, int]]] = []
    _collect_positions(positions.get, src, value, (), found, limit)
    return found


def _collect_positions(get: Callable[[FieldPath], tuple[str, int, int] | None],
                       src: FieldPath, data: Any, sub: FieldPath,
                       found: list[tuple[FieldPath, tuple[str, int, int]]],
                       limit: int | None) -> None:
    # A module function, not a closure: a closure that calls itself is a reference cycle,
    # kept (with what it holds) until the cyclic GC runs, and a render turns that off.
    pos = get(src + sub)
    if pos is not None:
        found.append((sub, pos))
    if limit is not None and len(src) + len(sub) >= limit:
        return
    if isinstance(data, dict):
        for key, item in data.items():
            _collect_positions(get, src, item, sub + (key,), found, limit)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _collect_positions(get, src, item, sub + (index,), found, limit)


def sub_document(doc: Document, key: str) -> Document:
    """The document of `doc.data[key]` (an empty mapping when it has none), with the
    positions under `key`: a blueprint's `defaults`."""
    known = {path[1:]: pos for path, pos in doc.known.items() if path[:1] == (key,)}
    depth = None if doc.known_depth is None else doc.known_depth - 1
    replay = None if doc.replay is None else partial(_replay_sub_document, doc.replay, key)
    return Document(doc.data.get(key, {}), known, doc.files, replay, depth)


def _replay_sub_document(replay: Callable[[], Document], key: str) -> Document:
    return sub_document(replay(), key)


def deep_merge(base: Document, overlay: Document, consume: bool = False) -> Document:
    """Mappings merge key by key (overlay wins); lists and scalars are replaced whole.

    `consume`: the caller drops `overlay` afterwards, so its values move into the result
    instead of being copied (env.yaml's nodes are most of a large environment).

    The result knows the positions both documents know (the paths of at most the fewer
    parts); its replay merges the two replays, with every position."""
    replay = None
    if base.replay is not None and overlay.replay is not None:
        replay = partial(_replay_merge, base.replay, overlay.replay)
        limit = _fewer(base.known_depth, overlay.known_depth)
    else:  # one was built by hand: no replay to find the other's positions later
        limit = None
    base_known = base.positions if limit is None else \
        {path: pos for path, pos in base.known.items() if len(path) <= limit}
    overlay_known = overlay.positions if limit is None else overlay.known
    merged = Document(_copy(base.data), dict(base_known), base.files + overlay.files, replay,
                      limit)
    # merged.data is a copy: base.data stays as it was, the target the positions saw
    _merge_positions(merged.known, base_known, overlay_known, base.data, overlay.data, (),
                     limit)
    _merge_data(merged.data, overlay.data, _copy if not consume else None)
    return merged


def _fewer(one: int | None, other: int | None) -> int | None:
    """The smaller depth, None meaning every depth."""
    if one is None:
        return other
    return one if other is None else min(one, other)


def _replay_merge(base: Callable[[], Document], overlay: Callable[[], Document]) -> Document:
    return deep_merge(base(), overlay(), consume=True)  # both replays are fresh


def _merge_data(target: dict[str, Any], data: dict[str, Any],
                copy_value: Callable[[Any], Any] | None) -> None:
    """Merge `data` into `target`, as deep_merge says."""
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_data(target[key], value, copy_value)
        else:
            target[key] = copy_value(value) if copy_value else value


def _merge_positions(positions: Positions, base_positions: Positions,
                     overlay_positions: Positions, target: dict[str, Any],
                     data: dict[str, Any], path: FieldPath, limit: int | None) -> None:
    """The positions of merging `data` into `target` (the base's data, not yet merged):
    those of paths of at most `limit` parts when given."""
    if limit is not None and len(path) >= limit:
        return  # the paths below `path` have more parts
    for key, value in data.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            found = overlay_positions.get(here, positions.get(here))
            if found is not None:
                positions[here] = found
            _merge_positions(positions, base_positions, overlay_positions, target[key], value,
                             here, limit)
            continue
        if key in target or key == "?":  # else the base has no positions under `here`
            # Stale positions under `here` can only be the base's (the overlay's are grafted
            # once per path, below): scan the base's few, not the merged tree's many.
            for stale in [p for p in base_positions if p[: len(here)] == here]:
                positions.pop(stale, None)
        for sub, pos in _subtree_positions(overlay_positions, here, value, limit):
            positions[here + sub] = pos


def apply_role_defaults(doc: Document) -> None:
    """Fill each node's missing fields from `roles.<role>`; positions point at the default.

    The positions it adds are at `nodes[i].key` or below: a document that knows only
    shallower ones gets only the data, and its replay fills the defaults with positions."""
    if doc.known_depth is not None and doc.known_depth >= 3:
        doc.positions  # noqa: B018 - found before the data changes, to update them below
    if doc.replay is not None:
        doc.replay = partial(_replay_role_defaults, doc.replay)
    if doc.known_depth is not None:
        _fill_role_defaults(doc.data)
        return
    _apply_role_defaults_eager(doc)


def _replay_role_defaults(replay: Callable[[], Document]) -> Document:
    doc = replay()
    apply_role_defaults(doc)
    return doc


def _nodes_with_roles(data: Any) -> list[tuple[int, dict[str, Any], str, dict[str, Any]]]:
    """(index, node, role, that role's defaults) for each node whose role has defaults; a
    node or role of the wrong type is skipped (the schema reports it)."""
    if not isinstance(data, dict):
        return []
    roles, nodes = data.get("roles"), data.get("nodes")
    if not isinstance(roles, dict) or not isinstance(nodes, list):
        return []
    found: list[tuple[int, dict[str, Any], str, dict[str, Any]]] = []
    for index, node in enumerate(nodes):
        role = node.get("role") if isinstance(node, dict) else None
        if not isinstance(role, str):
            continue
        defaults = roles.get(role)
        if isinstance(defaults, dict):
            found.append((index, node, role, defaults))
    return found


def _fill_role_defaults(data: Any) -> None:
    """What _apply_role_defaults_eager does to the data, without positions."""
    for _, node, _, defaults in _nodes_with_roles(data):
        for key, value in defaults.items():
            if key not in node:  # most defaults are scalars: no call to copy them
                node[key] = value if value.__class__ in _SCALARS else _copy(value)


def _apply_role_defaults_eager(doc: Document) -> None:
    """apply_role_defaults with the positions of the defaults recorded now."""
    # the positions of each role's defaults, found once, not once per node
    default_positions: dict[tuple[str, str], list[tuple[FieldPath, tuple[str, int, int]]]] = {}
    positions = doc.positions
    for index, node, role, defaults in _nodes_with_roles(doc.data):
        for key, value in defaults.items():
            if key not in node:
                node[key] = _copy(value)
                found = default_positions.get((role, key))
                if found is None:
                    found = default_positions[role, key] = _subtree_positions(
                        positions, ("roles", role, key), value)
                for sub, pos in found:
                    positions[("nodes", index, key) + sub] = pos
