"""Quoting and escaping per output language: the one place a value from an environment
enters a text config.

Every emitter that pastes a value into a line-based language (named.conf, zone files,
dhcpd.conf, dnsmasq, HAProxy, GRUB, iPXE, pxelinux, the kernel command line, exports(5),
keyfiles, comments) passes it through one of these functions first. Each returns the text to
write, quoted or escaped so that the value stays inside its slot, or refuses it with
`UnsafeValue` when the language has no safe spelling for it (a newline on a kernel command
line, a comma in a dnsmasq field). The schema is meant to refuse such values earlier; this
module assumes it did not (defence in depth), so no value, whatever passed validation, can
add a statement, record, section, option, kernel argument or menu line.

Kea, Ignition, libvirt XML, YAML and JSON are built as data structures and serialized by
their own encoders, never glued, so they need nothing from here except for text inside a
structure that is itself a line-based language (an Ignition keyfile, a cloud-init command),
and the XML entities libvirt's serializer writes (`xml_text`, `xml_attribute`).

A refusal names the document field (`nodes[2].name`); the caller that holds the document
turns it into `FILE:LINE:COL: at FIELD: message (fix)` (see `families.render_all`). A field
of `None` is the environment's directory name, which is not in any file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import NoReturn

from generator.errors import UserError
from generator.loader import FieldPath as FieldPath  # re-exported for the families
from generator.loader import format_path

# A field is given as its path, or as a function computing it (node indexes are only looked
# up when a value is refused), or None for the environment's directory name.
Field = FieldPath | Callable[[], FieldPath] | None

# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators: anything a
# parser, an editor or a terminal may take for the end of a line or a control sequence.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACE = re.compile(r"\s")
_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte",
          " ": "a space", '"': "a double quote", "'": "a single quote", "\\": "a backslash",
          "#": "a '#'", ",": "a comma", ";": "a semicolon", "$": "a '$'", ":": "a colon",
          "/": "a slash"}

HINT_LINE = "write it on one line, without control characters"
HINT_WORD = "use letters, digits and . _ - only"


class UnsafeValue(UserError):
    """A value the output language cannot hold safely; refused instead of emitted."""

    def __init__(self, field: FieldPath | None, reason: str, hint: str) -> None:
        self.field = field
        self.reason = reason
        message = f"at {format_path(field)}: {reason}" if field else reason
        super().__init__(message, hint)


def _describe(char: str) -> str:
    return _NAMES.get(char, f"the character U+{ord(char):04X}" if not char.isprintable()
                      else f"'{char}'")


def refuse(field: Field, what: str, language: str, hint: str) -> UnsafeValue:
    """The error for a value `what` (e.g. "a newline") that `language` cannot hold."""
    path = field() if callable(field) else field
    subject = "the environment's directory name" if path is None else "the value"
    return UnsafeValue(path, f"{subject} has {what}, which cannot be written into {language}",
                       hint if path is not None else "rename the environment's directory: "
                       + HINT_WORD)


def line(value: str, field: Field, language: str) -> str:
    """Text for a rest-of-line slot (a comment, a menu label): no line breaks, no controls."""
    found = _CONTROL.search(value)
    if found:
        raise refuse(field, _describe(found.group()), language, HINT_LINE)
    return value


comment = line


def word(value: str, field: Field, language: str, forbidden: str = "",
         hint: str = HINT_WORD) -> str:
    """One unquoted token: printable, no whitespace, none of `forbidden`, not empty."""
    if value and _unsafe_in_word(forbidden).search(value) is None:
        return value  # the common case, one regex scan
    line(value, field, language)
    found = _SPACE.search(value)
    if found is None and forbidden:
        found = re.search(f"[{re.escape(forbidden)}]", value)
    if found:
        raise refuse(field, _describe(found.group()), language, hint)
    if not value:
        raise refuse(field, "nothing in it", language, hint)
    return value


@functools.cache
def _unsafe_in_word(forbidden: str) -> re.Pattern[str]:
    """Everything `word` refuses, as one character class."""
    return re.compile(f"[{_CONTROL.pattern[1:-1]}\\s{re.escape(forbidden)}]")


# --- names ------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DOMAIN = re.compile(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                     r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def name(value: str, field: Field, language: str) -> str:
    """A node, interface or artifact name written bare: letters, digits and `._-`."""
    if _NAME.fullmatch(value) is not None:
        return value  # the common case, one regex scan: a match holds no control character
    line(value, field, language)
    bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))),
               value[:1] or "")
    raise refuse(field, _describe(bad) if bad else "nothing in it", language, HINT_WORD)


def domain(value: str, field: Field, language: str) -> str:
    """A DNS name (relative or absolute, `*.` wildcard allowed) or `@`."""
    if _is_domain(value):
        return value  # the common case, one regex scan: a match holds no control character
    line(value, field, language)
    bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-*"))), "")
    _raise(field, _describe(bad) if bad else "a malformed DNS name", language,
                  "use a DNS name: labels of letters, digits, '-' and '_' joined by dots")


def _is_domain(value: str) -> bool:
    return value == "@" or (len(value) <= 254 and _DOMAIN.fullmatch(value) is not None)


def _raise(field: Field, what: str, language: str, hint: str) -> NoReturn:
    raise refuse(field, what, language, hint)


# --- BIND -------------------------------------------------------------------------------


def bind_string(value: str, field: Field) -> str:
    """A named.conf quoted string. BIND's lexer reads `\\"` as a quote but keeps both
    characters of `\\\\`, so a backslash has no faithful spelling there and is refused."""
    line(value, field, "a named.conf string")
    if "\\" in value:
        raise refuse(field, "a backslash", "a named.conf string", "write it without a backslash")
    return '"' + value.replace('"', '\\"') + '"'


_TXT_PLAIN = frozenset(range(0x20, 0x7f)) - {ord('"'), ord("\\")}
_TXT_CHUNK = 255  # one character-string holds at most 255 octets (RFC 1035)
_QUOTED_STRINGS = re.compile(r'"((?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*)"')


def txt(value: str, field: Field) -> str:
    """A TXT record's RDATA for a zone file: quoted character-strings, every byte that is not
    printable ASCII written as `\\DDD`, so a newline is data and never ends the record.

    A value already written as quoted strings (`"v=spf1 ..." "more"`) keeps its strings;
    anything else is one text, split into 255-octet strings.
    """
    strings = _pre_quoted(value)
    if strings is None:
        data = value.encode()
        strings = [data[i:i + _TXT_CHUNK] for i in range(0, len(data), _TXT_CHUNK)] or [b""]
    return " ".join('"' + "".join(chr(b) if b in _TXT_PLAIN else f"\\{b:03d}" for b in s) + '"'
                    for s in strings)


def _pre_quoted(value: str) -> list[bytes] | None:
    """The character-strings of `"a" "b"` (escapes decoded), or None when it is not that."""
    if not (value.startswith('"') and value.endswith('"') and len(value) > 1):
        return None
    strings, pos = [], 0
    while pos < len(value):
        found = _QUOTED_STRINGS.match(value, pos)
        if found is None:
            return None
        strings.append(_unescape_zone(found.group(1)))
        pos = found.end()
        while pos < len(value) and value[pos] == " ":
            pos += 1
    if any(len(s) > _TXT_CHUNK for s in strings):
        return None
    return strings


def _unescape_zone(text: str) -> bytes:
    out, i = bytearray(), 0
    raw = text.encode()
    while i < len(raw):
        if raw[i] == ord("\\"):
            digits = raw[i + 1:i + 4]
            if len(digits) == 3 and digits.isdigit() and int(digits) < 256:
                out.append(int(digits))
                i += 4
                continue
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(raw[i])
        i += 1
    return bytes(out)


RECORD_TYPES = ("A", "AAAA", "CNAME", "PTR", "NS", "MX", "SRV", "TXT")


def record_type(value: str, field: Field, language: str) -> str:
    if value not in RECORD_TYPES:
        line(value, field, language)
        _raise(field, f"a record type gen does not write ({value!r})", language,
               f"use one of {', '.join(RECORD_TYPES)}")
    return value


def record_value(rtype: str, value: str, field: Field, language: str) -> str:
    """The RDATA of a non-TXT record, checked to be exactly one value of its type."""
    # The common cases (a node's A and PTR records), one regex scan: a match holds no
    # control character, so `line` below could not have refused it.
    if rtype == "A" and _DOTTED_QUAD.fullmatch(value) is not None:
        return value
    if rtype in ("CNAME", "PTR", "NS") and _is_domain(value):
        return value
    line(value, field, language)
    parts = value.split(" ")
    try:
        if rtype == "A":
            if _DOTTED_QUAD.fullmatch(value) is None:  # the common case, one regex scan
                IPv4Address(value)
        elif rtype == "AAAA":
            IPv6Address(value)
        elif rtype in ("CNAME", "PTR", "NS"):
            domain(value, field, language)
        elif rtype == "MX" and len(parts) == 2 and parts[0].isdigit():
            domain(parts[1], field, language)
        elif rtype == "SRV" and len(parts) == 4 and all(p.isdigit() for p in parts[:3]):
            domain(parts[3], field, language)
        else:
            raise AddressValueError(rtype)
    except (AddressValueError, ValueError):
        path = field() if callable(field) else field
        raise UnsafeValue(path, f"the value is not exactly one {rtype} value, so it cannot be "
                          f"written into {language}",
                          f"write one {rtype} value, e.g. {_EXAMPLES.get(rtype, '...')}") from None
    return value


def plain_record(rtype: str, owner: str, value: str) -> bool:
    """True when `domain(owner)`, `record_type(rtype)` and `record_value(rtype, value)` would
    all return their value as it is (an A or name-valued record a node gives the zone): a
    zone writes it without the three calls, which are most of a 10,000-node zone's time."""
    if not _is_domain(owner):
        return False
    if rtype == "A":
        return _DOTTED_QUAD.fullmatch(value) is not None
    return rtype in ("CNAME", "PTR", "NS") and _is_domain(value)


# A subset of what IPv4Address accepts: four ASCII decimal octets, 0-255, no leading zero.
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")
_EXAMPLES = {"A": "192.168.20.10", "AAAA": "2001:db8::10", "CNAME": "api", "PTR": "host.example.",
             "NS": "ns1", "MX": "10 mail", "SRV": "0 10 2380 etcd-0"}


# --- ISC dhcpd --------------------------------------------------------------------------


def dhcpd_string(value: str, field: Field) -> str:
    """A dhcpd.conf quoted string (its lexer reads `\\"` and `\\\\` inside quotes)."""
    line(value, field, "a dhcpd.conf string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- dnsmasq ----------------------------------------------------------------------------

DNSMASQ = "a dnsmasq option"
_ONE_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def dnsmasq_field(value: str, field: Field) -> str:
    """One comma-separated field of a dnsmasq option, written bare: dnsmasq splits on commas
    and drops whitespace around them, and a `#` may start a comment."""
    return word(value, field, DNSMASQ, ',#"\\', "use letters, digits and . _ - / only")


def dnsmasq_text(value: str, field: Field) -> str:
    """A quoted dnsmasq string (txt-record): commas and `#` are data inside the quotes.
    A value already written as one quoted string stays as it is."""
    line(value, field, DNSMASQ)
    if _ONE_QUOTED.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- HAProxy ----------------------------------------------------------------------------


def haproxy_word(value: str, field: Field) -> str:
    """One HAProxy config word written bare (a server name, a balance algorithm)."""
    return word(value, field, "an HAProxy config word", "#\"'\\$")


# --- boot loaders and the kernel command line ------------------------------------------

KERNEL = "a kernel command line"
# Characters GRUB script and iPXE give a meaning to (quotes, variables, command separators,
# comments, blocks), on top of whitespace, which separates kernel arguments.
_BOOT_SPECIALS = "\"'\\;$&|<>{}#`"


def kernel_arg(value: str, field: Field) -> str:
    """Exactly one kernel argument, safe on pxelinux APPEND, GRUB `linux` and iPXE `kernel`
    lines: no whitespace (it would start another argument), no quoting or script syntax."""
    return word(value, field, KERNEL, _BOOT_SPECIALS,
                "one argument per entry, without spaces, quotes or any of ;$&|<>{}#`")


def kernel_value(value: str, field: Field, separator: str = "") -> str:
    """A value inside a gen-written kernel argument (`coreos.inst.install_dev=VALUE`);
    `separator` is also refused (`:` inside dracut's `ip=` fields)."""
    return word(value, field, KERNEL, _BOOT_SPECIALS + separator,
                "a single word without spaces, quotes or any of ;$&|<>{}#`" + separator)


def grub_quoted(value: str, field: Field) -> str:
    """A GRUB script single-quoted word: nothing is special inside, `'` is spelled `'\\''`."""
    line(value, field, "a GRUB menu entry")
    return "'" + value.replace("'", "'\\''") + "'"


# --- exports(5) -------------------------------------------------------------------------

EXPORTS = "an exports(5) line"


def export_path(value: str, field: Field) -> str:
    """An absolute export path written bare: no whitespace, quotes, `\\` or `#`."""
    word(value, field, EXPORTS, '"\\#', "an absolute path without spaces, quotes, '\\' or '#'")
    if not value.startswith("/"):
        _raise(field, "a relative path", EXPORTS, "export an absolute path")
    return value


def export_word(value: str, field: Field) -> str:
    """A client or an option inside `client(opt,...)`."""
    return word(value, field, EXPORTS, '"\\#(),')


# --- shell words (cloud-init commands) --------------------------------------------------

_SHELL_SAFE = re.compile(r"[A-Za-z0-9._+:~=/@%-]+")


def shell_word(value: str, field: Field) -> str:
    """A word pasted into a shell command line: only characters no shell interprets."""
    line(value, field, "a shell command")
    if _SHELL_SAFE.fullmatch(value) is None:
        bad = next((c for c in value if _SHELL_SAFE.fullmatch(c) is None), "")
        _raise(field, _describe(bad) if bad else "nothing in it", "a shell command",
               "use letters, digits and . _ + : ~ = / @ % - only")
    return value


_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def mac(value: str, field: Field, language: str) -> str:
    if _MAC.fullmatch(value) is None:
        line(value, field, language)
        path = field() if callable(field) else field
        raise UnsafeValue(path, f"the value is not a MAC address, so it cannot be written into "
                          f"{language}", "write six hex bytes, e.g. 52:54:00:aa:bb:cc")
    return value


def number(value: object, field: Field, language: str) -> str:
    """A count, a port or a time written bare: an int, never text that looks like one."""
    if type(value) is not int:
        path = field() if callable(field) else field
        raise UnsafeValue(path, f"the value is not a whole number, so it cannot be written into "
                          f"{language}", "write a number without quotes")
    return str(value)


CLUSTER_DOMAIN: FieldPath = ("cluster", "baseDomain")


def fqdn(value: str, host: str, field: Field, language: str) -> str:
    """`<host>.<cluster domain>`: the host part is refused at its own field (a node's name),
    the rest at the cluster's base domain."""
    name(host, field, language)
    domain(value[len(host) + 1:], CLUSTER_DOMAIN, language)
    return value


def xml_text(value: str) -> str:
    """Character data inside an XML element: `&`, `<` and `>` as entities, the way
    ElementTree writes them (libvirt's files stay byte-identical to its serializer's)."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return value


def xml_attribute(value: str) -> str:
    """A double-quoted XML attribute value: ElementTree's entities, line breaks and tabs as
    character references so a parser does not normalise them to spaces."""
    value = xml_text(value)
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if "\n" in value:
        value = value.replace("\n", "&#10;")
    if "\t" in value:
        value = value.replace("\t", "&#09;")
    return value
