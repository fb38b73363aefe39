"""A rendered tree: relative POSIX path -> file content. Pure data; one writer writes it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Executable(bytes):
    """File content that must be written with the executable bit (NAR keeps only that bit)."""

    __slots__ = ()


Tree = dict[str, bytes]


def canonical_json(value: Any) -> bytes:
    """Sorted keys, 2-space indent, LF, trailing newline: stable bytes for the same data."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def lines(*parts: str | None) -> bytes:
    """Join non-None lines with LF and end with one newline."""
    return ("\n".join(p for p in parts if p is not None).rstrip("\n") + "\n").encode()


def subtree_of(path: str) -> str:
    """The lock subtree a path belongs to: `hypervisors/hv1`, `hosts/helper`, `clusters/ocp4`."""
    parts = path.split("/", 2)
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def prefixed(prefix: str, tree: Mapping[str, bytes]) -> Tree:
    return {f"{prefix}/{path}": content for path, content in tree.items()}


def check_path(path: str) -> None:
    """Renderers build paths from names; make sure none can escape the output directory."""
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe rendered path: {path!r}")
