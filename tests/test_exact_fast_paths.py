"""Fast paths of the renderers held to the slow spelling they replace, on awkward input."""

from __future__ import annotations

import itertools
from ipaddress import AddressValueError, IPv4Address

import pytest

from generator.families import escape
from generator.tree import check_path, lines

PARTS = ["", "a", "\n", "a\n", "\n\n", None, "é", "x\ny"]


def test_lines_is_the_join_of_its_non_none_parts() -> None:
    for count in range(4):
        for parts in itertools.product(PARTS, repeat=count):
            kept = "\n".join(p for p in parts if p is not None)
            assert lines(*parts) == (kept.rstrip("\n") + "\n").encode(), parts


OCTETS = [str(i) for i in range(1000)] + ["00", "01", "001", "0255", "٣", "１", "+1", "-0",
                                          " 1", "1 ", "0x1", "", "1\n", "1_0"]


def _ipv4(value: str) -> bool:
    try:
        IPv4Address(value)
    except (AddressValueError, ValueError):
        return False
    return True


@pytest.mark.parametrize("position", range(4))
def test_a_record_fast_path_accepts_exactly_what_ipv4address_does(position: int) -> None:
    """escape.record_value's regex for A values never accepts what IPv4Address refuses
    (and here accepts all it accepts), every octet candidate in every position."""
    for octet in OCTETS:
        quad = ["10", "20", "0", "5"]
        quad[position] = octet
        value = ".".join(quad)
        assert (escape._DOTTED_QUAD.fullmatch(value) is not None) == _ipv4(value), value
        if _ipv4(value):
            assert escape.record_value("A", value, None, "a zone file") == value
        else:
            with pytest.raises(escape.UnsafeValue):
                escape.record_value("A", value, None, "a zone file")
    for value in ("10.20.0.5\n", "10.20.0", "10.20.0.5.6", "10.20.0.5 ", "1.2.3.4/32"):
        assert escape._DOTTED_QUAD.fullmatch(value) is None and not _ipv4(value)


def _unsafe_by_parts(path: str) -> bool:
    """check_path's rule spelled out: a leading slash, or an empty, `.` or `..` component."""
    return path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/"))


def test_check_path_refuses_exactly_the_unsafe_paths() -> None:
    pieces = ["a", ".", "..", "", "...", ".a", "a.", "..a", "/"]
    for count in range(1, 5):
        for combo in itertools.product(pieces, repeat=count):
            for path in ("/".join(combo), "".join(combo)):
                try:
                    check_path(path)
                    refused = False
                except ValueError:
                    refused = True
                assert refused == _unsafe_by_parts(path), path
