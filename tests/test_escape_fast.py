"""The fast paths of the boot-service families' escaping are their general paths.

`escape.name`, `escape.domain` and `escape.record_value` try the accepting regex before the
line check, and `escape.plain_record` lets a zone skip the three checks of a plain record:
each is compared here with the code it replaced (kept below as the reference) on random
strings full of hostile characters, so a value accepted by one and refused by the other, or
refused with another message, fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address, IPv6Address

import pytest

from generator.families import escape

ALPHABET = ("abcXYZ019_-.*@:; \t\n\r\x00\x7f\x85\u2028'\"\\#$,/ä" + "a" * 10 + "." * 4)
FIELD = ("nodes", 3, "name")


def _random(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return ".".join(str(rng.randrange(300)) for _ in range(rng.choice([3, 4, 4, 4, 5])))
    if kind == 1:
        return rng.choice(["@", "", "*.apps", "a." * 130, "x" * 255, "host.example.",
                           "01.2.3.4", "1.2.3.4\n", "-a", "a-", "a..b", "_srv._tcp"])
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


def _outcome(call: Callable[[], str]) -> tuple[str, str]:
    try:
        return ("ok", call())
    except escape.UnsafeValue as error:
        return ("refused", f"{error.message} ({error.hint}) {error.field}")


# --- the general paths, as they were before the fast paths ------------------------------


def name_before(value: str, field: escape.Field, language: str) -> str:
    escape.line(value, field, language)
    if escape._NAME.fullmatch(value) is None:
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))),
                   value[:1] or "")
        raise escape.refuse(field, escape._describe(bad) if bad else "nothing in it", language,
                            escape.HINT_WORD)
    return value


def domain_before(value: str, field: escape.Field, language: str) -> str:
    escape.line(value, field, language)
    if value == "@" or (escape._DOMAIN.fullmatch(value) is not None and len(value) <= 254):
        return value
    bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-*"))), "")
    raise escape.refuse(field, escape._describe(bad) if bad else "a malformed DNS name",
                        language, "use a DNS name: labels of letters, digits, '-' and '_' "
                        "joined by dots")


def record_value_before(rtype: str, value: str, field: escape.Field, language: str) -> str:
    escape.line(value, field, language)
    parts = value.split(" ")
    try:
        if rtype == "A":
            if escape._DOTTED_QUAD.fullmatch(value) is None:
                IPv4Address(value)
        elif rtype == "AAAA":
            IPv6Address(value)
        elif rtype in ("CNAME", "PTR", "NS"):
            domain_before(value, field, language)
        elif rtype == "MX" and len(parts) == 2 and parts[0].isdigit():
            domain_before(parts[1], field, language)
        elif rtype == "SRV" and len(parts) == 4 and all(p.isdigit() for p in parts[:3]):
            domain_before(parts[3], field, language)
        else:
            raise AddressValueError(rtype)
    except (AddressValueError, ValueError):
        path = field() if callable(field) else field
        raise escape.UnsafeValue(
            path, f"the value is not exactly one {rtype} value, so it cannot be written into "
            f"{language}", f"write one {rtype} value, e.g. {escape._EXAMPLES.get(rtype, '...')}"
        ) from None
    return value


@pytest.mark.parametrize("seed", range(3))
def test_names_domains_and_record_values_as_before(seed: int) -> None:
    rng = random.Random(seed)
    accepted = refused = 0
    for _ in range(4000):
        value = _random(rng)
        for new, old in ((escape.name, name_before), (escape.domain, domain_before)):
            outcome = _outcome(lambda: new(value, FIELD, escape.KERNEL))  # noqa: B023
            assert outcome == _outcome(lambda: old(value, FIELD, escape.KERNEL)), value  # noqa: B023
            accepted += outcome[0] == "ok"
            refused += outcome[0] == "refused"
        rtype = rng.choice(escape.RECORD_TYPES)
        if rtype != "TXT":
            value = rng.choice([value, f"10 {value}", f"0 10 2380 {value}"])
            assert _outcome(lambda: escape.record_value(rtype, value, FIELD, "a zone file")) \
                == _outcome(lambda: record_value_before(rtype, value, FIELD, "a zone file"))  # noqa: B023
    assert accepted > 1000 and refused > 1000


@pytest.mark.parametrize("seed", range(3))
def test_a_plain_record_is_what_its_three_checks_return(seed: int) -> None:
    """plain_record only says yes when domain, record_type and record_value each return
    their value unchanged; it may say no to a value they accept (then they run)."""
    rng = random.Random(seed)
    plain = 0
    for _ in range(6000):
        rtype = rng.choice([*escape.RECORD_TYPES, "A", "A", "PTR", "PTR", "a", "PTR "])
        owner, value = _random(rng), _random(rng)
        if escape.plain_record(rtype, owner, value):
            plain += 1
            assert escape.domain(owner, FIELD, "a zone file") == owner
            assert escape.record_type(rtype, FIELD, "a zone file") == rtype
            assert escape.record_value(rtype, value, FIELD, "a zone file") == value
    assert plain > 100
