"""Sizes as users write them (`16GiB`) and as libvirt writes them (`<memory unit='KiB'>`).

The one unit table of gen: the environment schema, the libvirt importer, the reconciler's
libvirt essence and `gen diff` all scale through it, so no reader lacks a unit another
knows (TiB, kB).
"""

from __future__ import annotations

import functools

# libvirt's scaled integers: case-insensitive; a bare letter or "iB" is binary, "B" decimal.
BYTES_PER_UNIT: dict[str, int] = {"b": 1, "bytes": 1,
                                  **{p: 1024**i for i, p in enumerate("kmgtpe", 1)},
                                  **{f"{p}ib": 1024**i for i, p in enumerate("kmgtpe", 1)},
                                  **{f"{p}b": 1000**i for i, p in enumerate("kmgtpe", 1)}}
MIB = 1024**2


# Cached by text: a large environment writes the same few sizes on every node (10,000
# nodes: 50,000 calls, ten distinct texts). A text that raises is not cached, so raises
# again, the same way.
@functools.lru_cache(maxsize=1024)
def parse_size(text: str) -> int:
    """`'16GiB'` -> bytes. The schema has already checked the shape (MiB, GiB or TiB)."""
    return int(text[:-3]) * BYTES_PER_UNIT[text[-3:].lower()]


def scaled_bytes(count: str, unit: str | None, default_unit: str) -> int:
    """libvirt's `<memory unit='MiB'>8</memory>` -> bytes; no unit means `default_unit`
    (KiB for memory, bytes for capacities), and so does one libvirt would not write."""
    factor = BYTES_PER_UNIT.get((unit or default_unit).lower())
    return int(count.strip()) * (factor or BYTES_PER_UNIT[default_unit.lower()])
