"""Sizes as users write them (`16GiB`) and as formats want them (bytes, KiB, MiB)."""

from __future__ import annotations

UNITS = {"MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def parse_size(text: str) -> int:
    """`'16GiB'` -> bytes. The schema has already checked the shape."""
    return int(text[:-3]) * UNITS[text[-3:]]
