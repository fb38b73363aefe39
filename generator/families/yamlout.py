"""Deterministic YAML from plain data: the one YAML emitter the node and cluster families use.

Documents are built as dicts and lists (insertion order is the order written, so families put
`apiVersion`, `kind`, `metadata` first) and serialized here in one fixed style: block
collections, 2-space indent, sequences not indented under their key (kubectl's style), no
line wrapping, no anchors, multi-line strings as literal blocks. Same data in, same bytes out.

Why not ruamel.yaml's emitter: it costs about 60 µs per scalar (pure Python, with per-node
tag and resolver work), which is seconds for the per-node files of a 1,000-node
environment. This emitter handles only the data the families build (dict, list, str, int,
bool, None) and quotes every string a YAML 1.1 or 1.2 reader could take for anything but a
string; tests/test_kubernetes.py proves with hypothesis that ruamel.yaml (YAML 1.2) and
PyYAML (YAML 1.1, what Go's sigs.k8s.io/yaml follows) both read back exactly the data written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Plain (unquoted) strings: a conservative alphabet, and never a leading character YAML
# gives a meaning to (indicators, digits and signs that could start a number or a date).
_PLAIN = re.compile(r"[A-Za-z_/$(][A-Za-z0-9_./$()@:=+,~ -]*")
# Words YAML 1.1 reads as booleans or null (PyYAML, go-yaml v2); YAML 1.2 is a subset.
_RESERVED = frozenset("y n yes no on off true false null".split())


def _plain_ok(text: str) -> bool:
    return (_PLAIN.fullmatch(text) is not None and text.lower() not in _RESERVED
            and ": " not in text and " #" not in text and not text.endswith((":", " ")))


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)  # YAML's own escapes: no JSON surrogate pairs for astral characters
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def _quoted(text: str) -> str:
    if text.isprintable():
        return "'" + text.replace("'", "''") + "'"
    return '"' + "".join(map(_escape, text)) + '"'


def _printable_or_ws(text: str) -> bool:
    return all(c.isprintable() or c in "\n\t" for c in text)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if _plain_ok(value) else _quoted(value)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _literal_ok(text: str) -> bool:
    """Literal blocks for multi-line text, unless it needs escapes or an indent indicator."""
    return ("\n" in text and not text.startswith((" ", "\n")) and "\r" not in text
            and _printable_or_ws(text) and "\t" not in text.split("\n", 1)[0])


def _literal(head: str, text: str, indent: int, out: list[str]) -> None:
    body = text[:-1] if text.endswith("\n") else text
    trailing = len(text) - len(text.rstrip("\n"))
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    out.append(f"{head} |{chomp}")
    pad = " " * indent
    out.extend(pad + line if line else "" for line in body.split("\n"))


def _entry(head: str, value: Any, indent: int, out: list[str], in_seq: bool) -> None:
    if isinstance(value, dict) and value:
        if in_seq:  # `- key: value` with the remaining keys aligned under the first
            start = len(out)
            _block(value, indent + 2, out)
            out[start] = f"{head} {out[start][indent + 2:]}"
        else:
            out.append(head)
            _block(value, indent + 2, out)
    elif isinstance(value, list) and value:
        out.append(head)
        _block(value, indent + 2 if in_seq else indent, out)
    elif isinstance(value, str) and _literal_ok(value):
        _literal(head, value, indent + 2, out)
    elif isinstance(value, dict):
        out.append(f"{head} {{}}")
    elif isinstance(value, list):
        out.append(f"{head} []")
    else:
        out.append(f"{head} {_scalar(value)}")


def _block(value: dict[str, Any] | list[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, not {type(key).__name__}")
            _entry(f"{pad}{_scalar(key)}:", item, indent, out, in_seq=False)
    else:
        for item in value:
            _entry(f"{pad}-", item, indent, out, in_seq=True)


def dump(document: Any) -> str:
    """One document as YAML text (no `---` marker), ending with a newline."""
    if isinstance(document, dict | list) and document:
        out: list[str] = []
        _block(document, 0, out)
        return "\n".join(out) + "\n"
    if isinstance(document, dict | list):
        return "{}\n" if isinstance(document, dict) else "[]\n"
    return _scalar(document) + "\n"


def dump_all(documents: Iterable[Any], header: str | None = None) -> bytes:
    """Several documents, each introduced by `---`; an optional first comment line."""
    parts = [f"# {header}\n"] if header else []
    parts += [f"---\n{dump(doc)}" for doc in documents]
    return "".join(parts).encode()


def dump_one(document: Any, header: str | None = None) -> bytes:
    """A single document without a `---` marker; `header` is a first line such as
    `#cloud-config`."""
    return ((f"{header}\n" if header else "") + dump(document)).encode()
