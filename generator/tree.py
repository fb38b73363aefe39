"""A rendered tree: relative POSIX path -> file content. Pure data; one writer writes it."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Collection, Mapping
from typing import Any, cast


class Executable(bytes):
    """File content that must be written with the executable bit (NAR keeps only that bit)."""

    __slots__ = ()


Tree = dict[str, bytes]


def canonical_json(value: Any) -> bytes:
    """Sorted keys, 2-space indent, LF, trailing newline: stable bytes for the same data.

    Exactly `json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)`, faster: with
    an indent, json falls back to its pure-Python generator encoder, a large part of
    rendering 10,000 Ignition configs. Plain JSON data (str keys, finite floats) goes
    through `_encode`; anything else through json itself."""
    out: list[str] = []
    try:
        _encode(value, out, "\n")
    except (_Unusual, RecursionError):
        return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode()
    out.append("\n")
    return "".join(out).encode()


def canonical_json_fragment(value: Any, newline: str) -> str:
    """`value` as `canonical_json` encodes it nested where its lines start with `newline`
    (no trailing newline): the same bytes as that part of a whole document, so a caller can
    encode a part shared by many documents once. Plain JSON data only (ValueError else)."""
    out: list[str] = []
    try:
        _encode(value, out, newline)
    except _Unusual:
        raise ValueError("not plain JSON data") from None
    return "".join(out)


class _Unusual(Exception):
    """A value `_encode` leaves to json (non-str keys, NaN, custom types)."""


_quote = json.encoder.encode_basestring  # json's own C string encoder (ensure_ascii=False)
_SCALARS = {True: "true", False: "false", None: "null"}


def _encode(value: Any, out: list[str], newline: str) -> None:
    """Append the JSON of `value` to `out`, nested lines starting with `newline`."""
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None or value is True or value is False:
        out.append(_SCALARS[value])
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _Unusual
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        _encode_dict(value, out, newline)
    elif isinstance(value, (list, tuple)):
        _encode_list(value, out, newline)
    else:
        raise _Unusual


def _encode_dict(value: dict[Any, Any], out: list[str], newline: str) -> None:
    if not value:
        out.append("{}")
        return
    if not all(type(key) is str for key in value):
        raise _Unusual
    inner = newline + "  "
    separator = "{" + inner
    for key in sorted(value):
        out.append(separator)
        separator = "," + inner
        out.append(_quote(key))
        out.append(": ")
        _encode(value[key], out, inner)
    out.append(newline + "}")


def _encode_list(value: list[Any] | tuple[Any, ...], out: list[str], newline: str) -> None:
    if not value:
        out.append("[]")
        return
    inner = newline + "  "
    separator = "[" + inner
    for item in value:
        out.append(separator)
        separator = "," + inner
        _encode(item, out, inner)
    out.append(newline + "]")


def lines(*parts: str | None) -> bytes:
    """Join non-None lines with LF and end with one newline."""
    # Most callers pass no None: joining the tuple itself skips a generator (~100,000
    # calls in a 10,000-node render).
    text = ("\n".join(p for p in parts if p is not None) if None in parts
            else "\n".join(cast("tuple[str, ...]", parts)))
    return (text.rstrip("\n") + "\n").encode()


def subtree_of(path: str) -> str:
    """The lock subtree a path belongs to: `hypervisors/hv1`, `hosts/helper`, `clusters/ocp4`."""
    parts = path.split("/", 2)
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def prefixed(prefix: str, tree: Mapping[str, bytes]) -> Tree:
    return {f"{prefix}/{path}": content for path, content in tree.items()}


def check_path(path: str) -> None:
    """Renderers build paths from names; make sure none can escape the output directory."""
    # Framed in slashes, an empty, `.` or `..` component (a leading slash is an empty one)
    # is a `//`, `/./` or `/../`: three substring scans instead of a split per file.
    framed = f"/{path}/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        raise ValueError(f"unsafe rendered path: {path!r}")


def paths_are_safe(paths: Collection[str]) -> bool:
    """True exactly when `check_path` passes every one of `paths`, in one scan of them all.

    Why: 60,000 calls at 10,000 nodes. The paths are framed like check_path's and joined
    by a NUL, which none of the three patterns holds: a match lies inside one path's own
    frame, and every frame is in the joined text."""
    if not paths:
        return True
    framed = "/" + "/\x00/".join(paths) + "/"
    return "//" not in framed and "/./" not in framed and "/../" not in framed
