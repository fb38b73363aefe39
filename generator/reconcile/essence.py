"""One normalisation and diff core, shared by `gen diff` and `gen plan`.

Both commands compare two sides of the same kind of thing (two rendered revisions, or a
rendered and a live object) in two steps: normalise each side to its essence with the same
rules, then `compare` the essences into `DiffItem`s. The normalisers live here together:

- libvirt XML (rendered or live) to a flat {field: value} mapping. libvirt fills in a lot on
  define (uuid, controllers, PCI addresses, aliases, memballoon, input devices, emulator
  path, cpu model, clock, seclabels, auto-named bridges and MACs of networks, pool capacity
  and volume timestamps); an essence keeps only what gen renders and what a person could
  change behind gen's back that gen cares about. docs/decisions/0046-libvirt-normalization.md
  lists the rules.
- Kubernetes objects: a rendered object without what the API server owns, compared on the
  fields it has, quantities by value (`kubernetes_object`, `KUBERNETES`).
- Files: a content digest, and whether live content is the rendered one with its secret
  markers filled in (`file_digest`, `fills`).

`compare` is the one structural walk; `Rules` say how a caller reads its values (key order,
how lists match, what counts as equal). Callers turn DiffItems into their own text.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from ipaddress import IPv4Network
from typing import Any, Literal

from generator.families.libvirt import GEN_NS
from generator.model import SECRET_MARKER_BYTES, SECRET_MARKER_PREFIX
from generator.records import record
from generator.units import scaled_bytes

Essence = dict[str, str]


# --- the diff core ---------------------------------------------------------------------------

@record
class DiffItem:
    """One field-level difference: `op` is add | remove | change."""

    op: str
    path: str
    old: Any = None
    new: Any = None


def _equal(old: Any, new: Any, path: str) -> bool:
    return bool(old == new)


@record
class Rules:
    """How `compare` reads two values.

    `order`: the sort key of the union of a mapping's keys; None walks the new side's keys
    in its own order and ignores keys only the old side has (a live object's defaults and
    other managers' fields are not drift). `lists`: "index" pairs equal-length lists item
    by item (`[0]`); "named" matches lists of uniquely named mappings by name (`[worker1]`)
    before falling back to "index"; "labelled" pairs by index but names the path by the
    new item's name. `same` decides equality of anything not walked into. `none_is_absent`:
    a None on the old side is a missing field (the API server's nulls).
    """

    order: Callable[[Any], Any] | None = str
    lists: Literal["index", "named", "labelled"] = "index"
    same: Callable[[Any, Any, str], bool] = _equal
    none_is_absent: bool = False


REVIEW = Rules()  # `gen diff`'s summaries: sorted keys, lists by index


def compare(old: Any, new: Any, rules: Rules = REVIEW, path: str = "") -> list[DiffItem]:
    """Every difference from `old` to `new`, mappings and lists walked as `rules` say."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _compare_maps(old, new, rules, path, listed=False)
    if isinstance(old, list) and isinstance(new, list):
        if rules.lists == "named":
            old_named, new_named = named_items(old), named_items(new)
            if old_named is not None and new_named is not None:
                return _compare_maps(old_named, new_named, rules, path, listed=True)
        if len(old) == len(new):
            return [item for index, (a, b) in enumerate(zip(old, new, strict=True))
                    for item in compare(a, b, rules, f"{path}[{_label(rules, b, index)}]")]
    if rules.same(old, new, path):
        return []
    return [DiffItem("change", path, old, new)]


def _compare_maps(old: Mapping[Any, Any], new: Mapping[Any, Any], rules: Rules, path: str,
                  listed: bool) -> list[DiffItem]:
    keys = list(new) if rules.order is None else sorted(set(old) | set(new), key=rules.order)
    items: list[DiffItem] = []
    for key in keys:
        sub = f"{path}[{key}]" if listed else f"{path}.{key}" if path else str(key)
        if key not in old or (rules.none_is_absent and old[key] is None
                              and new.get(key) is not None):
            items.append(DiffItem("add", sub, None, new[key]))
        elif key not in new:
            items.append(DiffItem("remove", sub, old[key], None))
        else:
            items += compare(old[key], new[key], rules, sub)
    return items


def added(value: Any, rules: Rules = REVIEW, path: str = "") -> list[DiffItem]:
    """A new value leaf by leaf, its parts named as `compare` names them. Under "named"
    rules a list of unnamed items stays one leaf (a list of words reads best whole)."""
    if isinstance(value, dict) and value:
        keys = list(value) if rules.order is None else sorted(value, key=rules.order)
        return [item for key in keys
                for item in added(value[key], rules, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list) and value:
        if rules.lists == "named":
            named = named_items(value)
            if named is not None:
                return [item for name, part in named.items()
                        for item in added(part, rules, f"{path}[{name}]")]
        else:
            return [item for index, part in enumerate(value)
                    for item in added(part, rules, f"{path}[{_label(rules, part, index)}]")]
    return [DiffItem("add", path, None, value)]


def _label(rules: Rules, item: Any, index: int) -> str:
    if rules.lists == "labelled" and isinstance(item, dict) and isinstance(item.get("name"), str):
        return str(item["name"])
    return str(index)


def members(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[DiffItem]:
    """A keyed collection member by member: added, removed, then changed (each sorted by key),
    the way `gen diff` lists resources."""
    items = [DiffItem("add", k, None, new[k]) for k in sorted(set(new) - set(old))]
    items += [DiffItem("remove", k, old[k], None) for k in sorted(set(old) - set(new))]
    items += [DiffItem("change", k, old[k], new[k]) for k in sorted(set(old) & set(new))
              if old[k] != new[k]]
    return items


def named_items(items: list[Any]) -> dict[str, Any] | None:
    """Items by their `name` when every item has a distinct one (nodes, networks...)."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str)
                            for i in items):
        return None
    named = {i["name"]: i for i in items}
    return named if len(named) == len(items) else None


# --- libvirt XML -----------------------------------------------------------------------------

OWNER = f"{{{GEN_NS}}}owner"
# Domain fields libvirt cannot change on an existing definition without losing the VM's
# identity (firmware vars, machine type, accelerator): changing them is a replace.
DOMAIN_FORCING = ("type", "os.arch", "os.machine", "os.firmware")
# Volume fields that can only change by recreating (wiping) the volume.
VOLUME_FORCING = ("format", "backingStore")


def owner(root: ET.Element) -> dict[str, str]:
    """The attributes of gen's `<metadata><gen:owner .../>` marker; {} for foreign objects.

    What `root.find("metadata/" + OWNER)` finds (the first marker under the first metadata
    that holds one), by walking the children: a path with a `/` or a namespace goes through
    ElementPath, and a plan asks every rendered and live object several times."""
    for child in root:
        if child.tag == "metadata":
            for element in child:
                if element.tag == OWNER:
                    return dict(element.attrib)
    return {}


def size_bytes(element: ET.Element | None, default_unit: str = "bytes") -> int | None:
    """A libvirt size element (`<memory unit='KiB'>`, `<capacity>`) in bytes; None if absent."""
    if element is None or element.text is None:
        return None
    return scaled_bytes(element.text, element.get("unit"), default_unit)


def machine(value: str | None) -> str:
    """`pc-i440fx-7.2` -> `pc`, `pc-q35-8.0` -> `q35`: libvirt expands the alias on define."""
    if not value:
        return ""
    if value.startswith("pc-i440fx-") or value == "pc":
        return "pc"
    if value.startswith("pc-q35-") or value == "q35":
        return "q35"
    return value


def domain(root: ET.Element) -> Essence:
    """A domain's essence: identity, size, firmware, boot order, disks and NICs by key."""
    # One pass over the children instead of a dozen ElementPath finds: a plan takes the
    # essence of every rendered and every live domain (1,000 for 500 VMs). `first`/`under`
    # give what root.find("tag") / root.findall("parent/child") give.
    children: dict[str, list[ET.Element]] = {}
    for child in root:
        children.setdefault(child.tag, []).append(child)

    def first(tag: str) -> ET.Element | None:
        found = children.get(tag)
        return found[0] if found else None

    def under(parent: str, tag: str | None = None) -> list[ET.Element]:
        return [c for p in children.get(parent, ()) for c in p if tag is None or c.tag == tag]

    def text(tag: str) -> str:
        element = first(tag)
        return (element.text or "") if element is not None else ""

    os_type = next(iter(under("os", "type")), None)
    loader = next(iter(under("os", "loader")), None)
    memory = size_bytes(first("memory"), "KiB")
    current = size_bytes(first("currentMemory"), "KiB") or memory
    marker = next(iter(under("metadata", OWNER)), None)
    out: Essence = {
        "type": root.get("type", ""),
        "memory": f"{(memory or 0) // 1024} KiB",
        "currentMemory": f"{(current or 0) // 1024} KiB",
        "vcpu": (text("vcpu") or "1").strip(),
        "os.arch": os_type.get("arch", "x86_64") if os_type is not None else "",
        "os.machine": machine(os_type.get("machine") if os_type is not None else None),
        # UEFI as rendered (`<os firmware='efi'>`, libvirt picks the file) or as libvirt
        # expands it (a pflash loader): the same firmware either way
        "os.firmware": "efi" if any(o.get("firmware") == "efi" for o in children.get("os", ()))
        or (loader is not None and loader.get("type") == "pflash") else "bios",
        "os.boot": ",".join(b.get("dev", "") for b in under("os", "boot")),
        "features": ",".join(sorted(child.tag for child in under("features"))),
        # The guest's CPU model decides whether the OS boots at all (x86-64-v2), so a
        # domain defined without it is redefined; libvirt's expansions are ignored.
        "cpu": _cpu(first("cpu")),
        "owner": _attrs(dict(marker.attrib) if marker is not None else {}),
    }
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        out[event] = text(event).strip()
    for disk in under("devices", "disk"):
        out[f"disk[{_attr(disk, 'target', 'dev')}]"] = _disk(disk)
    for nic in under("devices", "interface"):
        out[f"interface[{_attr(nic, 'mac', 'address').lower()}]"] = _nic(nic)
    return out


# Devices and <os> children a domain may have that adopting it keeps: the ones gen renders,
# and the ones libvirt adds by itself on define (emulator, controllers, PS/2 input, the
# balloon, a silent audio backend, q35's iTCO watchdog). Any other (a PCI passthrough, a
# shared filesystem, a graphics console, direct kernel boot) gen cannot describe, so a
# redefine from the environment would drop it: adoption refuses such a domain instead.
RENDERED_DEVICES = frozenset({"disk", "interface", "serial", "console", "emulator",
                              "controller", "input", "memballoon"})
RENDERED_OS = frozenset({"type", "loader", "nvram", "boot", "firmware"})


def unmanaged(root: ET.Element) -> list[str]:
    """`devices/hostdev type=pci`-style names of the parts of a domain gen does not render
    (tag and attributes only: a kernel command line's text may hold anything)."""
    out = []
    for section, known in (("devices", RENDERED_DEVICES), ("os", RENDERED_OS)):
        for child in root.findall(f"{section}/*"):
            if child.tag in known or _implicit(child):
                continue
            attrs = _attrs(dict(child.attrib))
            out.append(f"{section}/{child.tag}" + (f" {attrs}" if attrs else ""))
    return out


def _implicit(device: ET.Element) -> bool:
    """A device libvirt adds to a domain defined without it (checked on libvirt 9/10)."""
    return (device.tag == "audio" and device.get("type") == "none") or (
        device.tag == "watchdog" and device.get("model") == "itco")


def _cpu(cpu: ET.Element | None) -> str:
    if cpu is None:
        return ""
    return _attrs({"mode": cpu.get("mode", ""), "model": (cpu.findtext("model") or "").strip()})


def _attr(parent: ET.Element, tag: str, name: str) -> str:
    child = parent.find(tag)
    return child.get(name, "") if child is not None else ""


def _attrs(attrib: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(attrib.items()))


def _disk(disk: ET.Element) -> str:
    return _attrs(disk_fields(disk))


def disk_fields(disk: ET.Element) -> dict[str, str]:
    """A disk's essential fields (also what `gen diff` summarises)."""
    source = disk.find("source")
    where = ""
    if source is not None:
        where = (f"{source.get('pool')}/{source.get('volume')}" if source.get("volume")
                 else source.get("file") or source.get("dev") or "")
    return {"device": disk.get("device", "disk"), "bus": _attr(disk, "target", "bus"),
            "format": _attr(disk, "driver", "type"), "source": where,
            "readonly": "yes" if disk.find("readonly") is not None else "no"}


def _nic(nic: ET.Element) -> str:
    return _attrs(nic_fields(nic))


def nic_fields(nic: ET.Element) -> dict[str, str]:
    """An interface's essential fields (also what `gen diff` summarises)."""
    source = nic.find("source")
    # Live interfaces gain portid= and bridge= on their source; only the network counts.
    target = "" if source is None else (source.get("network") or source.get("bridge") or "")
    return {"type": nic.get("type", ""), "source": target, "model": _attr(nic, "model", "type")}


def network(root: ET.Element) -> Essence:
    """A network's essence; libvirt-chosen bridge names and MACs are not part of it."""
    forward = root.find("forward")
    mode = forward.get("mode", "nat") if forward is not None else "isolated"
    out: Essence = {"forward": mode, "owner": _attrs(owner(root))}
    if mode == "bridge":  # only a host bridge's name is chosen by the user
        out["bridge"] = _attr(root, "bridge", "name")
    for ip in root.findall("ip"):
        address = ip.get("address", "")
        prefix = ip.get("prefix") or (
            str(IPv4Network(f"0.0.0.0/{ip.get('netmask')}").prefixlen) if ip.get("netmask")
            else "")
        out[f"ip[{address}]"] = f"prefix={prefix}"
        for host in ip.findall("dhcp/host"):
            out[f"dhcp.host[{host.get('mac', '').lower()}]"] = _attrs(
                {"name": host.get("name", ""), "ip": host.get("ip", "")})
        for span in ip.findall("dhcp/range"):
            out[f"dhcp.range[{span.get('start')}]"] = span.get("end", "")
    tag = root.find("vlan/tag")
    if tag is not None:
        out["vlan"] = tag.get("id", "")
    return out


def pool(root: ET.Element) -> Essence:
    """A pool's essence: its type and target path (capacity figures are live facts)."""
    return {"type": root.get("type", ""), "target.path": (root.findtext("target/path") or "")}


def volume(root: ET.Element) -> Essence:
    """A volume's essence: capacity in bytes, format, backing store (allocation is live)."""
    capacity = size_bytes(root.find("capacity")) or 0
    return {"capacity": str(capacity), "format": _attr(root, "target/format", "type") or "raw",
            "backingStore": (root.findtext("backingStore/path") or "").strip()}


def _field_order(key: str) -> tuple[int, str]:
    # Plain fields first, then keyed devices, so plans read top-down like the XML.
    return (1 if re.search(r"\[", key) else 0, key)


LIBVIRT = Rules(order=_field_order)


def diff(old: Essence, new: Essence) -> list[DiffItem]:
    """Every field of two libvirt essences that differs, in field order."""
    if old == new:  # flat str -> str mappings: what compare would find empty (most objects)
        return []
    return compare(old, new, LIBVIRT)


# --- Kubernetes objects ----------------------------------------------------------------------

# Quantities the server canonicalizes ("0.5" -> "500m"): compared by value under these keys.
_QUANTITY_PARENTS = {"requests", "limits", "capacity", "hard", "allocatable"}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX: dict[str | None, int | Decimal] = {
    None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3,
    "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_SERVER_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation",
                    "managedFields", "selfLink")


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def kubernetes_object(obj: dict[str, Any]) -> dict[str, Any]:
    """What is compared: the rendered object without status and server-owned metadata; a
    Secret's stringData folded into data (the server stores only base64 data)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items()
                       if k not in _SERVER_METADATA}
    if obj.get("kind") == "Secret" and group_of(obj.get("apiVersion", "")) == "" and \
            "stringData" in obj:
        data = dict(obj.get("data") or {})
        for key, value in (obj.get("stringData") or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        out = {k: v for k, v in out.items() if k != "stringData"}
        out["data"] = data
    return out


def _same_value(desired: Any, live: Any, path: str) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if isinstance(desired, int | float) and isinstance(live, int | float) and \
            not isinstance(desired, bool) and not isinstance(live, bool):
        return bool(desired == live)
    parent = path.rsplit(".", 2)[-2] if path.count(".") >= 1 else ""
    if parent in _QUANTITY_PARENTS:
        a, b = _quantity(desired), _quantity(live)
        return a is not None and a == b
    return False


def _quantity(value: Any) -> Decimal | None:
    match = _QUANTITY.match(str(value))
    if match is None:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2)
    if suffix and suffix[0] in "eE":
        return number * Decimal(10) ** int(suffix[1:])
    return number * Decimal(_SUFFIX[suffix])


# A live object against a rendered one: only the rendered fields, in their order; list items
# named in the path; types compared strictly but numbers and quantities by value.
KUBERNETES = Rules(order=None, lists="labelled", same=_same_value, none_is_absent=True)


def kubernetes_diff(desired: Any, live: Any) -> list[DiffItem]:
    """Field-level differences on the fields `desired` has (live extras are server defaults
    or other managers' fields, not drift); `old` is the live value."""
    return compare(live, desired, KUBERNETES)


# --- files -----------------------------------------------------------------------------------

_MARKER_PREFIX = SECRET_MARKER_PREFIX.encode()


def file_digest(source: bytes | tuple[str, str]) -> str:
    """A file's identity: sha256 of its content, or (kind, ref) of a published artifact."""
    if isinstance(source, bytes):
        return "sha256:" + hashlib.sha256(source).hexdigest()
    return f"{source[0]}:{source[1]}"


def fills(rendered: bytes, live: bytes) -> bool:
    """True when `live` is `rendered` with its secret markers filled in."""
    if _MARKER_PREFIX not in rendered:
        return False
    parts = SECRET_MARKER_BYTES.split(rendered)[::2]  # split keeps the group: names at odd places
    return re.fullmatch(rb"(?s:.+?)".join(re.escape(p) for p in parts), live) is not None
