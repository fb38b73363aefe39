"""Normalize libvirt XML (rendered or live) to its essence: a flat {field: value} mapping.

Pure functions over ElementTree elements, shared by the rendered and the live side, so the
same rules apply to both. libvirt fills in a lot on define (uuid, controllers, PCI
addresses, aliases, memballoon, input devices, emulator path, cpu model, clock, seclabels,
auto-named bridges and MACs of networks, pool capacity and volume timestamps); an essence
keeps only what gen renders and what a person could change behind gen's back that gen cares
about. docs/decisions/0046-libvirt-normalization.md lists the rules.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from ipaddress import IPv4Network

from generator.families.libvirt import GEN_NS
from generator.units import scaled_bytes

Essence = dict[str, str]

OWNER = f"{{{GEN_NS}}}owner"
# Domain fields libvirt cannot change on an existing definition without losing the VM's
# identity (firmware vars, machine type, accelerator): changing them is a replace.
DOMAIN_FORCING = ("type", "os.arch", "os.machine", "os.firmware")
# Volume fields that can only change by recreating (wiping) the volume.
VOLUME_FORCING = ("format", "backingStore")


def owner(root: ET.Element) -> dict[str, str]:
    """The attributes of gen's `<metadata><gen:owner .../>` marker; {} for foreign objects."""
    element = root.find(f"metadata/{OWNER}")
    return dict(element.attrib) if element is not None else {}


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
    os_type = root.find("os/type")
    loader = root.find("os/loader")
    memory = size_bytes(root.find("memory"), "KiB")
    current = size_bytes(root.find("currentMemory"), "KiB") or memory
    out: Essence = {
        "type": root.get("type", ""),
        "memory": f"{(memory or 0) // 1024} KiB",
        "currentMemory": f"{(current or 0) // 1024} KiB",
        "vcpu": (root.findtext("vcpu") or "1").strip(),
        "os.arch": os_type.get("arch", "x86_64") if os_type is not None else "",
        "os.machine": machine(os_type.get("machine") if os_type is not None else None),
        # UEFI as rendered (`<os firmware='efi'>`, libvirt picks the file) or as libvirt
        # expands it (a pflash loader): the same firmware either way
        "os.firmware": "efi" if root.find("os[@firmware='efi']") is not None
        or (loader is not None and loader.get("type") == "pflash") else "bios",
        "os.boot": ",".join(b.get("dev", "") for b in root.findall("os/boot")),
        "features": ",".join(sorted(child.tag for child in root.findall("features/*"))),
        # The guest's CPU model decides whether the OS boots at all (x86-64-v2), so a
        # domain defined without it is redefined; libvirt's expansions are ignored.
        "cpu": _cpu(root.find("cpu")),
        "owner": _attrs(owner(root)),
    }
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        out[event] = (root.findtext(event) or "").strip()
    for disk in root.findall("devices/disk"):
        out[f"disk[{_attr(disk, 'target', 'dev')}]"] = _disk(disk)
    for nic in root.findall("devices/interface"):
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


def diff(old: Essence, new: Essence) -> list[tuple[str, str, str | None, str | None]]:
    """(op, field, old, new) for every field that differs, in field order."""
    rows: list[tuple[str, str, str | None, str | None]] = []
    for key in sorted(set(old) | set(new), key=_field_order):
        if key not in old:
            rows.append(("add", key, None, new[key]))
        elif key not in new:
            rows.append(("remove", key, old[key], None))
        elif old[key] != new[key]:
            rows.append(("change", key, old[key], new[key]))
    return rows


def _field_order(key: str) -> tuple[int, str]:
    # Plain fields first, then keyed devices, so plans read top-down like the XML.
    return (1 if re.search(r"\[", key) else 0, key)
