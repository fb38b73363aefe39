"""One unit table: every reader of libvirt sizes scales the same way, TiB and kB included."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from generator.diff.semantic import domain_essence
from generator.reconcile import essence
from generator.units import BYTES_PER_UNIT, parse_size


def test_sizes_users_write() -> None:
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("16GiB") == 16 << 30
    assert parse_size("2TiB") == 2 << 40


@pytest.mark.parametrize("unit", sorted(BYTES_PER_UNIT) + ["KIB", "TiB", "GB"])
def test_diff_and_reconciler_read_libvirt_memory_alike(unit: str) -> None:
    count = 3 * 1024**3 if BYTES_PER_UNIT[unit.lower()] == 1 else 3072
    root = ET.fromstring(f"<domain><memory unit='{unit}'>{count}</memory></domain>")
    scaled = count * BYTES_PER_UNIT[unit.lower()]
    assert essence.domain(root)["memory"] == f"{scaled // 1024} KiB"
    assert domain_essence(root)["memory"] == f"{scaled // 1024**2} MiB"


def test_memory_without_unit_is_kib_for_both() -> None:
    root = ET.fromstring("<domain><memory>4194304</memory></domain>")
    assert essence.domain(root)["memory"] == "4194304 KiB"
    assert domain_essence(root)["memory"] == "4096 MiB"
