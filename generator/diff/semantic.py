"""Per-family semantic summaries of changed rendered files.

Each family claims changed files by its descriptor's output patterns (generator.families:
the paths it really renders) and summarizes the files it claims into
Findings (`+ domain hv1/worker2`, `~ domain hv1/master0: vcpu 4 -> 8`). Families are
written by different modules and evolve; a summarizer that cannot parse a file falls back to
`~ file PATH`, and files no family claims land under "Other files". The unified diff of
every file is always shown as well, so a summary is a reading aid, never the only record.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from generator.diff.trees import ADDED, MODIFIED, REMOVED, FileChange
from generator.reconcile import essence
from generator.units import MIB

SENSITIVE = "(sensitive value changed)"
MAX_VALUE = 160  # room for a full image reference with its digest
OPS = {ADDED: "+", REMOVED: "-", MODIFIED: "~"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One semantic change: `op` is + - ~, `subject` names the resource, `detail` says what.

    `block` optionally carries a unified diff of embedded content (Ignition files).
    """

    op: str
    subject: str
    detail: str = ""
    block: str = ""
    data: tuple[tuple[str, str], ...] = ()  # the same change as fields, for JSON readers

    def line(self) -> str:
        return f"{self.op} {self.subject}: {self.detail}" if self.detail else \
            f"{self.op} {self.subject}"


Summarizer = Callable[[Sequence[FileChange]], list[Finding]]


@dataclass(frozen=True, slots=True)
class Family:
    key: str
    title: str
    patterns: tuple[str, ...]
    summarize: Summarizer

    def claims(self, path: str) -> bool:
        return any(fnmatchcase(path, p) for p in self.patterns)


def file_findings(changes: Iterable[FileChange]) -> list[Finding]:
    """The fallback: one line per changed file."""
    return [Finding(OPS[c.status], "file", c.path) for c in changes]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _text(content: bytes | None) -> str:
    return content.decode("utf-8", "replace") if content else ""


def keyed_changes(subject: str, old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    """Findings for two keyed maps of descriptions: added, removed, and changed fields."""
    return member_findings(subject, old, new, _describe, lambda _k, a, b: field_changes(a, b))


def member_findings(subject: str, old: Mapping[str, Any], new: Mapping[str, Any],
                    added: Callable[[Any], str],
                    changed: Callable[[str, Any, Any], list[str]]) -> list[Finding]:
    """`+ SUBJECT key: added(value)` for new members, `- SUBJECT key` for removed ones, then
    `~ SUBJECT key: rows` for changed ones (none when `changed` finds nothing to say)."""
    found = []
    for item in essence.members(old, new):
        name = f"{subject} {item.path}" if subject else item.path
        if item.op == "add":
            found.append(Finding("+", name, added(item.new)))
        elif item.op == "remove":
            found.append(Finding("-", name))
        else:
            rows = changed(item.path, item.old, item.new)
            if rows:
                found.append(Finding("~", name, "; ".join(rows)))
    return found


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items() if v not in (None, ""))
    return _short(value)


def field_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`a.b: 1 -> 2`, `+ a.c: 3`, `- a.d` for nested dicts/lists (lists compared by index)."""
    return [_change_row(item) for item in essence.compare(old, new, essence.REVIEW, prefix)]


def _change_row(item: essence.DiffItem) -> str:
    if item.op == "add":
        return f"+ {item.path}: {_short(item.new)}"
    if item.op == "remove":
        return f"- {item.path}"
    return f"{item.path or 'value'}: {_short(item.old)} -> {_short(item.new)}"


def _sides(changes: Sequence[FileChange], parse: Callable[[FileChange, bytes], dict[str, Any]]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for change in changes:
        if change.old is not None:
            old.update(parse(change, change.old))
        if change.new is not None:
            new.update(parse(change, change.new))
    return old, new


# --- libvirt -------------------------------------------------------------------------------

def domain_essence(root: ET.Element) -> dict[str, Any]:
    """The reviewable fields of a libvirt domain: sizes, firmware, boot, NICs, disks.

    Read through the reconciler's normaliser (generator.reconcile.essence), so `gen diff`
    and `gen plan` see a domain's sizes, devices and boot order alike."""
    whole = essence.domain(root)
    memory = essence.size_bytes(root.find("memory"), "KiB")
    nics = {}
    for nic in root.iterfind("devices/interface"):
        fields = essence.nic_fields(nic)
        mac = nic.find("mac")
        nics[mac.get("address", "?") if mac is not None else "?"] = {
            "on": fields["source"], "model": fields["model"] or None}
    disks = {}
    for disk in root.iterfind("devices/disk"):
        fields = essence.disk_fields(disk)
        target = disk.find("target")
        disks[target.get("dev", "?") if target is not None else "?"] = {
            "device": fields["device"], "source": fields["source"]}
    return {
        "vcpu": whole["vcpu"],
        "memory": f"{memory // MIB} MiB" if memory is not None else None,
        # as env.yaml spells it, whether the XML names the loader or lets libvirt choose
        "firmware": "uefi" if whole["os.firmware"] == "efi" else "bios",
        "boot": whole["os.boot"].replace(",", " "),
        "nics": nics,
        "disks": disks,
    }


def _domain_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    rows = [f"{k} {old[k]} -> {new[k]}" for k in ("vcpu", "memory", "firmware", "boot")
            if old[k] != new[k]]
    for kind, label in (("nics", "NIC"), ("disks", "disk")):
        a, b = old[kind], new[kind]
        rows += [f"{label} added {k} ({_describe(b[k])})" for k in sorted(set(b) - set(a))]
        rows += [f"{label} removed {k}" for k in sorted(set(a) - set(b))]
        rows += [f"{label} {k} " + "; ".join(field_changes(a[k], b[k]))
                 for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return rows


def xml_leaves(element: ET.Element, path: str = "") -> dict[str, str]:
    """Flatten XML to `path@attr -> value` / `path -> text`; repeated siblings get `[i]`."""
    path = path or _local(element.tag)
    out = {f"{path}@{k}": v for k, v in element.attrib.items()}
    if (element.text or "").strip():
        out[path] = (element.text or "").strip()
    counts = Counter(_local(c.tag) for c in element)
    seen: Counter[str] = Counter()
    for child in element:
        tag = _local(child.tag)
        index = f"[{seen[tag]}]" if counts[tag] > 1 else ""
        seen[tag] += 1
        out.update(xml_leaves(child, f"{path}/{tag}{index}"))
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


LIBVIRT_KINDS = {"domains": "domain", "networks": "network", "pools": "pool",
                 "volumes": "volume"}


def summarize_libvirt(changes: Sequence[FileChange]) -> list[Finding]:
    found: list[Finding] = []
    for change in changes:
        parts = change.path.split("/")
        kind = LIBVIRT_KINDS.get(parts[2], "object") if len(parts) > 3 else "object"
        subject = f"{kind} {parts[1]}/{parts[-1].rsplit('.', 1)[0]}"
        found.append(_libvirt_finding(kind, subject, change))
    return found


def _libvirt_finding(kind: str, subject: str, change: FileChange) -> Finding:
    old = ET.fromstring(change.old) if change.old else None
    new = ET.fromstring(change.new) if change.new else None
    if kind == "domain":
        if new is not None and old is None:
            e = domain_essence(new)
            return Finding("+", subject, f"{e['vcpu']} vCPU, {e['memory']}, "
                           f"{len(e['nics'])} NIC(s), {len(e['disks'])} disk(s)")
        if old is not None and new is not None:
            rows = _domain_changes(domain_essence(old), domain_essence(new))
            if rows:
                return Finding("~", subject, "; ".join(rows))
    if old is not None and new is not None:
        rows = field_changes(xml_leaves(old), xml_leaves(new))
        return Finding("~", subject, "; ".join(rows[:8]) + (" ..." if len(rows) > 8 else ""))
    return Finding(OPS[change.status], subject)


# --- DNS -----------------------------------------------------------------------------------

DNSMASQ_DNS = ("address", "host-record", "cname", "srv-host", "ptr-record", "txt-record",
               "mx-host", "server", "local", "domain")
RR_TYPES = {"A", "AAAA", "CNAME", "PTR", "SRV", "TXT", "MX", "NS"}


def zone_records(text: str) -> set[tuple[str, str, str]]:
    """(name, type, rdata) of a zone file, SOA left out (its serial churns by design)."""
    records: set[tuple[str, str, str]] = set()
    origin, name = "", "@"
    for raw in re.sub(r"\([^)]*\)", lambda m: m.group(0).replace("\n", " "), text).splitlines():
        line = raw.split(";", 1)[0].rstrip()
        if not line.strip():
            continue
        if line.startswith("$ORIGIN"):
            origin = line.split()[1]
            continue
        if line.startswith("$"):
            continue
        tokens = line.split()
        if not line[0].isspace():
            name, tokens = tokens[0], tokens[1:]
        while tokens and (tokens[0].isdigit() or tokens[0].upper() in ("IN", "CH")):
            tokens = tokens[1:]
        if len(tokens) >= 2 and tokens[0].upper() in RR_TYPES:
            full = name if name.endswith(".") or not origin else f"{name}.{origin}"
            records.add((full, tokens[0].upper(), " ".join(tokens[1:])))
    return records


def dnsmasq_lines(text: str, directives: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in directives:
            rows.append((key, value))
    return rows


def dns_records(change: FileChange, content: bytes) -> set[tuple[str, str, str]]:
    text = _text(content)
    if "dnsmasq" in change.path or change.path.endswith(".conf") and "address=" in text:
        out = set()
        for key, value in dnsmasq_lines(text, DNSMASQ_DNS):
            name = value.strip("/").split("/")[0] if key == "address" else value.split(",")[0]
            out.add((name, key, value))
        return out
    return zone_records(text)


def summarize_dns(changes: Sequence[FileChange]) -> list[Finding]:
    old: set[tuple[str, str, str]] = set()
    new: set[tuple[str, str, str]] = set()
    for change in changes:
        old |= dns_records(change, change.old) if change.old else set()
        new |= dns_records(change, change.new) if change.new else set()
    found = []
    for key in sorted({(n, t) for n, t, _ in old ^ new}):
        before = sorted(v for n, t, v in old - new if (n, t) == key)
        after = sorted(v for n, t, v in new - old if (n, t) == key)
        subject = f"{key[1]} {key[0]}"
        if len(before) == 1 and len(after) == 1:
            found.append(Finding("~", subject, f"{before[0]} -> {after[0]}"))
        else:
            found += [Finding("-", subject, v) for v in before]
            found += [Finding("+", subject, v) for v in after]
    return found


# --- DHCP ----------------------------------------------------------------------------------

MAC_RE = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$", re.I)
IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def reservations(change: FileChange, content: bytes) -> dict[str, Any]:
    """Host reservations of ISC dhcpd, Kea (JSON) or dnsmasq: name -> {mac, ip}."""
    text = _text(content)
    if text.lstrip().startswith("{"):
        return {_kea_key(r): {"mac": r.get("hw-address"), "ip": r.get("ip-address")}
                for r in _walk_key(json.loads(text), "reservations")}
    out: dict[str, Any] = {}
    for name, body in re.findall(r"host\s+(\S+)\s*\{([^}]*)\}", text):
        mac = re.search(r"hardware\s+ethernet\s+([^;\s]+)", body)
        ip = re.search(r"fixed-address\s+([^;\s]+)", body)
        out[name.strip('"')] = {"mac": mac.group(1) if mac else None,
                                "ip": ip.group(1) if ip else None}
    for _key, value in dnsmasq_lines(text, ("dhcp-host",)):
        parts = value.split(",")
        mac_text = next((p for p in parts if MAC_RE.match(p)), None)
        ip_text = next((p for p in parts if IP_RE.match(p)), None)
        names = [p for p in parts if p not in (mac_text, ip_text)
                 and not p.startswith(("set:", "tag:", "id:"))
                 and not re.fullmatch(r"\d+[smhdw]?|infinite|ignore", p)]
        out[names[0] if names else mac_text or value] = {"mac": mac_text, "ip": ip_text}
    return out


def _kea_key(res: dict[str, Any]) -> str:
    return str(res.get("hostname") or res.get("hw-address") or res.get("ip-address"))


def _walk_key(value: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        own = value.get(key, []) if isinstance(value.get(key), list) else []
        return [*own, *(r for k, v in value.items() if k != key for r in _walk_key(v, key))]
    if isinstance(value, list):
        return [r for item in value for r in _walk_key(item, key)]
    return []


def summarize_dhcp(changes: Sequence[FileChange]) -> list[Finding]:
    old, new = _sides(changes, reservations)
    return keyed_changes("reservation", old, new)


# --- HAProxy -------------------------------------------------------------------------------

def haproxy_sections(change: FileChange, content: bytes) -> dict[str, Any]:
    """`backend NAME`/`frontend NAME`/`listen NAME` -> {servers or binds}."""
    sections: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    for raw in _text(content).splitlines():
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        if tokens[0] in ("frontend", "backend", "listen") and len(tokens) > 1:
            current = sections.setdefault(f"{tokens[0]} {tokens[1]}", {})
        elif tokens[0] in ("global", "defaults", "resolvers", "peers", "userlist"):
            current = None
        elif current is not None and tokens[0] == "server" and len(tokens) > 2:
            current[f"server {tokens[1]}"] = " ".join(tokens[2:])
        elif current is not None and tokens[0] in ("bind", "balance", "mode", "default_backend"):
            current[tokens[0]] = " ".join(tokens[1:])
    return sections


def summarize_haproxy(changes: Sequence[FileChange]) -> list[Finding]:
    old, new = _sides(changes, haproxy_sections)
    found = []
    for name in sorted(set(new) - set(old)):
        servers = sum(1 for k in new[name] if k.startswith("server "))
        found.append(Finding("+", name, f"{servers} server(s)" if servers else ""))
    found += [Finding("-", name) for name in sorted(set(old) - set(new))]
    for name in sorted(set(old) & set(new)):
        found += [Finding(f.op, f"{name} {f.subject.split(' ', 1)[1]}", f.detail)
                  for f in keyed_changes("_", old[name], new[name])]
    return found


# --- PXE -----------------------------------------------------------------------------------

def kernel_lines(change: FileChange, content: bytes) -> dict[str, Any]:
    """Per boot entry (pxelinux LABEL, grub menuentry, iPXE file) -> kernel arguments."""
    out: dict[str, Any] = {}
    label = ""
    for raw in _text(content).splitlines():
        tokens = raw.strip().split()
        if not tokens:
            continue
        head = tokens[0].lower()
        if head in ("label", "menuentry"):
            label = " ".join(tokens[1:]).strip("'\"{ ")
        elif head in ("append", "linux", "linuxefi", "kernel"):
            args = tokens[1:] if head == "append" else tokens[2:]
            key = f"{change.path}" + (f" [{label}]" if label else "")
            out.setdefault(key, []).extend(args)
    return out


def summarize_pxe(changes: Sequence[FileChange]) -> list[Finding]:
    old, new = _sides(changes, kernel_lines)
    return member_findings("boot entry", old, new, lambda v: f"{len(v)} kernel argument(s)",
                           lambda _k, a, b: _arg_changes(a, b))


def _arg_changes(old: list[str], new: list[str]) -> list[str]:
    def keyed(args: list[str]) -> dict[str, str]:
        return {a.split("=", 1)[0]: a for a in args}

    a, b = keyed(old), keyed(new)
    rows = [f"+ {b[k]}" for k in b if k not in a]
    rows += [f"- {a[k]}" for k in a if k not in b]
    rows += [f"{a[k]} -> {b[k]}" for k in a if k in b and a[k] != b[k]]
    return rows


# --- Ignition ------------------------------------------------------------------------------

def decode_data_url(source: str, compression: str | None = None) -> str | None:
    """The text of a `data:` URL (base64 or percent-encoded, optionally gzip); None if not one."""
    if not source.startswith("data:"):
        return None
    meta, _, data = source[5:].partition(",")
    try:
        raw = base64.b64decode(data) if meta.endswith(";base64") else \
            urllib.parse.unquote_to_bytes(data)
        if compression == "gzip":
            raw = gzip.decompress(raw)
    except (binascii.Error, OSError, EOFError):
        return None
    return raw.decode("utf-8", "replace")


def ignition_parts(change: FileChange, content: bytes) -> dict[str, Any]:
    """Files (decoded), units and users of one Ignition config, keyed under its path."""
    config = json.loads(content)
    parts: dict[str, Any] = {}
    for item in config.get("storage", {}).get("files", []):
        contents = item.get("contents") or {}
        source = contents.get("source") or ""
        decoded = decode_data_url(source, contents.get("compression"))
        parts[f"file {item.get('path')}"] = {
            "mode": item.get("mode"), "source": source if decoded is None else None,
            "content": decoded}
    for unit in config.get("systemd", {}).get("units", []):
        parts[f"unit {unit.get('name')}"] = {k: v for k, v in unit.items() if k != "name"}
    for user in config.get("passwd", {}).get("users", []):
        parts[f"user {user.get('name')}"] = {k: v for k, v in user.items() if k != "name"}
    for key in ("merge", "replace"):
        refs = config.get("ignition", {}).get("config", {}).get(key)
        for ref in refs if isinstance(refs, list) else [refs] if refs else []:
            parts[f"config {key} {ref.get('source')}"] = ref
    return {f"{change.path}|{k}": v for k, v in parts.items()}


def summarize_ignition(changes: Sequence[FileChange]) -> list[Finding]:
    old, new = _sides(changes, ignition_parts)
    found = []
    for key in sorted(set(old) | set(new)):
        path, part = key.split("|", 1)
        subject = f"{path.rsplit('/', 1)[-1]} {part}"
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        block = ""
        if part.startswith("file "):
            block = _content_diff(part[5:], before, after)
        if before is None:
            found.append(Finding("+", subject, "", block))
        elif after is None:
            found.append(Finding("-", subject, "", block))
        else:
            rows = field_changes({k: v for k, v in before.items() if k != "content"},
                                 {k: v for k, v in after.items() if k != "content"})
            if before.get("content") != after.get("content"):
                rows.insert(0, "content changed")
            found.append(Finding("~", subject, "; ".join(rows), block))
    return found


def _content_diff(name: str, before: Any, after: Any) -> str:
    import difflib

    old = (before or {}).get("content") or ""
    new = (after or {}).get("content") or ""
    if old == new:
        return ""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"a{name}", f"b{name}", n=2))


# --- Kubernetes ----------------------------------------------------------------------------

SECRET_KINDS = {"Secret"}
SECRET_FIELDS = ("data", "stringData")


def k8s_objects(change: FileChange, content: bytes) -> dict[str, Any]:
    """`Kind namespace/name` -> object, for every document (and List item) of a file."""
    text = _text(content)
    if change.path.endswith(".json"):
        docs = [json.loads(text)]
    else:
        from ruamel.yaml import YAML

        # pure: the same YAML 1.2 reading whether or not ruamel.yaml.clib is installed
        docs = list(YAML(typ="safe", pure=True).load_all(text))
    out = {}
    for doc in docs:
        for obj in doc.get("items", []) if isinstance(doc, dict) and doc.get(
                "kind", "").endswith("List") else [doc]:
            if not isinstance(obj, dict) or "kind" not in obj:
                continue
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace")
            out[f"{obj['kind']} {ns + '/' if ns else ''}{meta.get('name', '?')}"] = obj
    return out


def summarize_kubernetes(changes: Sequence[FileChange]) -> list[Finding]:
    old, new = _sides(changes, k8s_objects)
    return member_findings("", old, new, lambda _v: "", _object_changes)


def _object_changes(key: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if key.split(" ", 1)[0] in SECRET_KINDS:
        rows = []
        for name in SECRET_FIELDS:
            if old.get(name) != new.get(name):
                rows.append(f"{name}: {SENSITIVE}")
        rest = {k: v for k, v in old.items() if k not in SECRET_FIELDS}
        rows += field_changes(rest, {k: v for k, v in new.items() if k not in SECRET_FIELDS})
        return rows
    return field_changes(old, new)


# --- NFS -----------------------------------------------------------------------------------

def nfs_exports(change: FileChange, content: bytes) -> dict[str, Any]:
    out = {}
    for raw in _text(content).splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            path, _, clients = line.partition(" ")
            out[path] = " ".join(clients.split())
    return out


def nfs_directories(change: FileChange, content: bytes) -> dict[str, Any]:
    """manifest.json's export directories: path -> owner, group and mode."""
    try:
        wanted = json.loads(content).get("exportDirectories", [])
    except (ValueError, AttributeError):
        return {}
    return {d["path"]: {k: v for k, v in d.items() if k != "path"} for d in wanted
            if isinstance(d, dict) and isinstance(d.get("path"), str)}


def summarize_nfs(changes: Sequence[FileChange]) -> list[Finding]:
    manifests = [c for c in changes if c.path.endswith("/manifest.json")]
    old, new = _sides([c for c in changes if c not in manifests], nfs_exports)
    old_dirs, new_dirs = _sides(manifests, nfs_directories)
    return keyed_changes("export", old, new) + keyed_changes("directory", old_dirs, new_dirs)


# --- routing -------------------------------------------------------------------------------
# Which section a changed file lands in comes from the family descriptors
# (generator.families): the paths each family renders and its summariser.

OTHER = Family("other", "Other files", ("*",), file_findings)


def summarised_families() -> tuple[Family, ...]:
    """One diff section per family that has a summariser, in the descriptors' order."""
    from generator.families import descriptors

    return tuple(Family(d.name, d.title, d.patterns, d.summarise) for d in descriptors()
                 if d.summarise is not None)


def families_of(path: str, families: Sequence[Family] | None = None) -> list[Family]:
    """Every family that claims a path; Other when none."""
    claimed = [f for f in families or summarised_families() if f.claims(path)]
    return claimed or [OTHER]


def summarize(family: Family, changes: Sequence[FileChange],
              shown: Sequence[FileChange] | None = None) -> list[Finding]:
    """A family's findings; if its summarizer fails or says nothing, one line per file.

    `shown` are the files this family is the first claimant of: only those fall back to
    `~ file PATH` (a dnsmasq DHCP-only file says nothing about DNS, and that is fine).
    """
    shown = changes if shown is None else shown
    try:
        found = family.summarize(changes)
    except Exception:  # noqa: BLE001 - a best-effort reading aid must never fail the diff
        return file_findings(changes)
    return found or file_findings(shown)
