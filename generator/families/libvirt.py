"""libvirt definitions per hypervisor: networks, the storage pool, volumes and domains.

Built as element trees, never glued from strings: every value passes through the XML
escaping in families/escape.py when the tree is written. Every object carries a
`<metadata>` element in gen's XML namespace naming the environment, so the reconciler can
tell what it owns.

The element tree is gen's own small one, written in one pass: ElementTree's `indent` and
`tostring` walk each tree three times in Python (~15% of a 10,000-node render). Its output
is byte-identical to theirs (two-space indent, `<tag />` when empty, the namespace declared
on the root first), which the golden trees hold it to. The volumes and domains of one
hypervisor are written from one template per shape (see `Shapes`), the template being the
document of that shape's first tree.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from generator.families import Pins, cloudinit
from generator.families.escape import xml_attribute, xml_text
from generator.model import Environment, Hypervisor, Network, Node
from generator.tree import Tree, canonical_json, lines

GEN_NS = "https://gen.invalid/xmlns/libvirt/1"
GEN_PREFIX = "gen:"  # gen's namespace, declared on the root of a tree that uses it
# The reconciler edits live definitions with ElementTree: the same prefix there.
ET.register_namespace("gen", GEN_NS)
# Without <cpu> libvirt gives qemu64, which lacks the x86-64-v2 instructions (cx16, lahf_lm,
# popcnt, sse4_1, sse4_2, ssse3) that RHEL 9 userspace, so RHCOS 4.13+, requires. Under KVM
# the host's own model is the best fit; QEMU 7.2's TCG has no host model to copy and no
# `x86-64-v2` model (that is a RHEL-only QEMU name), but emulates every instruction of
# Nehalem, the first named model carrying all six flags.
TCG_CPU_MODEL = "Nehalem"


def render(env: Environment, pins: Pins) -> Tree:
    tree: Tree = {}
    # One pass over the nodes, not one per hypervisor (10,000 nodes on 20 hypervisors).
    by_hypervisor: dict[str, list[Node]] = {}
    for node in env.nodes:
        by_hypervisor.setdefault(node.hypervisor, []).append(node)
    for hv in env.hypervisors:
        nodes = by_hypervisor.get(hv.name, [])
        if not nodes:
            continue
        base = f"hypervisors/{hv.name}"
        used = {nic.network for n in nodes for nic in n.nics}
        for net in env.networks:
            if net.name in used:
                tree[f"{base}/networks/{net.name}.xml"] = _xml(network_xml(env, net, hv))
        tree[f"{base}/pools/{hv.pool_name}.xml"] = _xml(pool_xml(env, hv))
        volumes, domains = Shapes(), Shapes()  # per hypervisor: its values are constants
        for node in nodes:
            for disk_index in range(len(node.disks)):
                key, values = _volume_shape(node, disk_index, hv)
                tree[f"{base}/volumes/{volume_name(node, disk_index)}.xml"] = volumes.document(
                    key, values, volume_xml, env, node, disk_index, hv)
            key, values = _domain_shape(env, node, hv)
            tree[f"{base}/domains/{node.name}.xml"] = domains.document(
                key, values, domain_xml, env, node, hv)
        for name in base_images(env, nodes):
            tree[f"{base}/images/{name}.json"] = base_image(env, hv, name, pins)
    return tree


def base_images(env: Environment, nodes: list[Node]) -> list[str]:
    """The disk-image artifacts these nodes' disks back onto: converge uploads each one,
    pinned, into the hypervisor's pool before it creates the overlays."""
    declared = {a.name for a in env.os_artifacts}
    used = {_backing(node, i) for node in nodes for i in range(len(node.disks))}
    return sorted(name for name in used if name in declared)


def base_image(env: Environment, hv: Hypervisor, name: str, pins: Pins) -> bytes:
    """What converge uploads: the volume, and the sha256 it must hash to (the lock's pin,
    else the one the artifact declares; null when neither: converge then refuses)."""
    artifact = next(a for a in env.os_artifacts if a.name == name)
    location, sha256 = pins.os.get(name, (artifact.url, artifact.sha256))
    return canonical_json({"volume": name, "pool": hv.pool_name, "format": "qcow2",
                           "artifact": name, "location": location, "sha256": sha256})


class Element:
    """One XML element: a tag, attributes in the order given, text or children."""

    __slots__ = ("tag", "attrib", "text", "children")

    def __init__(self, tag: str, attrib: dict[str, str] | None = None,
                 text: str | None = None, **more: str) -> None:
        self.tag = tag
        self.attrib = {**attrib, **more} if attrib else more
        self.text = text
        self.children: list[Element] = []

    def append(self, child: Element) -> None:
        self.children.append(child)

    def insert(self, index: int, child: Element) -> None:
        self.children.insert(index, child)

    def find(self, tag: str) -> Element | None:
        return next((c for c in self.children if c.tag == tag), None)


def _xml(element: Element) -> bytes:
    """The document as ElementTree's `indent(space="  ")` + `tostring` writes it, plus LF."""
    out = ["<", element.tag]
    if _uses_gen(element):
        out.append(f' xmlns:gen="{xml_attribute(GEN_NS)}"')
    _write_open(element, out, "\n")
    return lines("".join(out))


def _uses_gen(element: Element) -> bool:
    return element.tag.startswith(GEN_PREFIX) or any(_uses_gen(c) for c in element.children)


def _write(element: Element, out: list[str], newline: str) -> None:
    out.append("<")
    out.append(element.tag)
    _write_open(element, out, newline)


def _write_open(element: Element, out: list[str], newline: str) -> None:
    """The element's attributes, content and end, its tag already written."""
    for key, value in element.attrib.items():
        out.append(f' {key}="{xml_attribute(value)}"')
    if element.children:
        inner = newline + "  "
        out.append(">")
        for child in element.children:
            out.append(inner)
            _write(child, out, inner)
        out.append(f"{newline}</{element.tag}>")
    elif element.text:
        out.append(f">{xml_text(element.text)}</{element.tag}>")
    else:
        out.append(" />")


# --- documents of one shape: one template, per-node values filled in -------------------
#
# The volumes and domains of one hypervisor differ, node to node, in a few values (names,
# sizes, MACs) inside the same elements. Writing each as a tree costs ~40 element objects
# and ~40 writer calls per node; instead the first node of each shape is built as a tree and
# written, and that document, with the node's own values cut out as slots, is the template
# the others fill (their values escaped exactly as the writer escapes them). The shape key
# names everything that changes which elements and attributes a document has; the
# `_*_shape` functions list a node's values in document order beside the tree builders.


class _Value:
    """An attribute value or element text at its place in a written document."""

    __slots__ = ("value", "text")

    def __init__(self, value: str, text: bool) -> None:
        self.value = value
        self.text = text


class Template:
    """A document with `%s` slots for values; `texts` says which slots are element text."""

    __slots__ = ("format", "texts")

    def __init__(self, format: str, texts: tuple[bool, ...]) -> None:
        self.format = format
        self.texts = texts

    def fill(self, values: Sequence[str]) -> bytes:
        if _XML_SPECIAL.search("".join(values)) is not None:  # rare: escape one by one
            values = [xml_text(v) if text else xml_attribute(v)
                      for v, text in zip(values, self.texts, strict=True)]
        return (self.format % tuple(values)).encode()


# Every character xml_text or xml_attribute replaces: a value without any is written as is.
_XML_SPECIAL = re.compile('[&<>"\r\n\t]')


def template(element: Element, values: Sequence[str]) -> Template | None:
    """`element`'s document with the positions holding `values` (in document order) as
    slots, or None when that is ambiguous: a value of `values` also written elsewhere in
    the document (as a constant, or as a value not listed), or the values out of order.
    Proven on the spot: the template filled with `values` is the tree's own document."""
    parts: list[str | _Value] = ["<", element.tag]
    if _uses_gen(element):
        parts.append(f' xmlns:gen="{xml_attribute(GEN_NS)}"')
    _parts(element, parts, "\n")
    wanted = set(values)
    slots = [p for p in parts if isinstance(p, _Value) and p.value in wanted]
    if [p.value for p in slots] != list(values):
        return None
    pieces, texts = [], []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part.replace("%", "%%"))
        elif part.value in wanted:
            pieces.append("%s")
            texts.append(part.text)
        else:
            written = xml_text(part.value) if part.text else xml_attribute(part.value)
            pieces.append(written.replace("%", "%%"))
    pieces.append("\n")
    made = Template("".join(pieces), tuple(texts))
    return made if made.fill(values) == _xml(element) else None


def _parts(element: Element, out: list[str | _Value], newline: str) -> None:
    """`_write_open` with the values left as `_Value`s."""
    for key, value in element.attrib.items():
        out += (f' {key}="', _Value(value, False), '"')
    if element.children:
        inner = newline + "  "
        out.append(">")
        for child in element.children:
            out += (inner, "<", child.tag)
            _parts(child, out, inner)
        out.append(f"{newline}</{element.tag}>")
    elif element.text:
        out += (">", _Value(element.text, True), f"</{element.tag}>")
    else:
        out.append(" />")


class Shapes:
    """Templates by shape key; a shape whose template was ambiguous is written as trees."""

    __slots__ = ("templates",)

    def __init__(self) -> None:
        self.templates: dict[Hashable, Template | None] = {}

    def document(self, key: Hashable, values: Sequence[str],
                 build: Callable[..., Element], *args: Any) -> bytes:
        """The document `build(*args)` writes, filled into its shape's template if any."""
        found = self.templates.get(key, _UNSEEN)
        if isinstance(found, Template):
            return found.fill(values)
        element = build(*args)
        if found is _UNSEEN:
            self.templates[key] = template(element, values)
        return _xml(element)


_UNSEEN = object()


def _volume_shape(node: Node, disk_index: int, hv: Hypervisor) -> tuple[Hashable, list[str]]:
    """volume_xml's shape and per-node values (the backing store's constant format too:
    a qcow2 volume has the same text in both places)."""
    disk = node.disks[disk_index]
    name = volume_name(node, disk_index)
    values = [name, str(disk.size_bytes), disk.format]
    backing = _backing(node, disk_index)
    if backing:
        values += (f"{hv.pool_path}/{backing}", "qcow2")
    return (bool(backing), bool(name)), values


def _domain_shape(env: Environment, node: Node, hv: Hypervisor) -> tuple[Hashable, list[str]]:
    """domain_xml's shape and per-node values, in document order (the hypervisor's and
    the environment's values are constants of the template, but for the seed's pool: the
    disks' pool is most often the same text)."""
    protection = _protection(node)
    seed = cloudinit.needs_seed(env, node)
    uefi = node.firmware == "uefi"
    memory = str(node.memory_mib * 1024)
    values = [node.name, node.name, node.role, *protection.values(), memory, memory,
              str(node.vcpu), node.machine or ("q35" if uefi else "pc")]
    for index, disk in enumerate(node.disks):
        values += (disk.format, disk.pool, volume_name(node, index))
    if seed:
        values += (hv.pool_name, cloudinit.seed_volume(node))
    for nic in node.nics:
        values += (nic.mac, nic.network)
    values.append(serial_log(node.name))
    return (tuple(protection), seed, uefi, node.boot == "pxe", len(node.disks),
            len(node.nics), bool(node.name)), values


def _sub(parent: Element, tag: str, text: str | None = None, **attrib: str) -> Element:
    child = Element(tag, attrib, text)
    parent.children.append(child)
    return child


def ownership(env: Environment, kind: str, **extra: str) -> Element:
    """`<metadata><gen:owner env=... kind=.../></metadata>`: gen's inventory marker."""
    metadata = Element("metadata")
    _sub(metadata, f"{GEN_PREFIX}owner", env=env.name, kind=kind, **extra)
    return metadata


def network_xml(env: Environment, net: Network, hv: Hypervisor) -> Element:
    root = Element("network")
    _sub(root, "name", net.name)
    root.append(ownership(env, "network"))
    if net.libvirt_mode is None:
        _sub(root, "forward", mode="bridge")
        _sub(root, "bridge", name=net.bridge or hv.bridge or "br0")
    else:
        if net.libvirt_mode != "isolated":
            _sub(root, "forward", mode=net.libvirt_mode)
        _sub(root, "ip", address=str(net.gateway or next(net.cidr.hosts())),
             netmask=str(net.cidr.netmask))
        if net.libvirt_dhcp:
            _dhcp_hosts(env, net, root.find("ip"))  # type: ignore[arg-type]
    if net.vlan is not None:
        _sub(_sub(root, "vlan"), "tag", id=str(net.vlan))
    return root


def _dhcp_hosts(env: Environment, net: Network, ip: Element) -> None:
    dhcp = _sub(ip, "dhcp")
    for node in env.nodes:
        for nic in node.nics:
            if nic.network == net.name:
                _sub(dhcp, "host", mac=nic.mac, name=node.name, ip=str(nic.ip))


def pool_xml(env: Environment, hv: Hypervisor) -> Element:
    root = Element("pool", type="dir")
    _sub(root, "name", hv.pool_name)
    _sub(_sub(root, "target"), "path", hv.pool_path)
    return root


def volume_name(node: Node, disk_index: int) -> str:
    """`<node>-<disk>.<format>`, or the name of a volume made by hand (`volume:`)."""
    return node.volume_name(disk_index)


def volume_xml(env: Environment, node: Node, disk_index: int, hv: Hypervisor) -> Element:
    """The volume of `node`'s disk, in the pool of `hv` (the node's hypervisor)."""
    disk = node.disks[disk_index]
    root = Element("volume", type="file")
    _sub(root, "name", volume_name(node, disk_index))
    _sub(root, "capacity", str(disk.size_bytes), unit="bytes")
    # Thin qcow2: allocate nothing up front (libvirt would otherwise assume full allocation).
    _sub(root, "allocation", "0", unit="bytes")
    _sub(_sub(root, "target"), "format", type=disk.format)
    backing = _backing(node, disk_index)
    if backing:
        store = _sub(root, "backingStore")
        _sub(store, "path", f"{hv.pool_path}/{backing}")
        _sub(store, "format", type="qcow2")
    return root


def _backing(node: Node, disk_index: int) -> str | None:
    """The image a disk is an overlay of: its own `backingImage`, or the node's `image:`
    for the root disk of an image-booted node."""
    disk = node.disks[disk_index]
    return disk.backing_image or (node.image if disk_index == 0 and node.boot == "image"
                                  else None)


def domain_xml(env: Environment, node: Node, hv: Hypervisor) -> Element:
    root = Element("domain", type=hv.domain_type)
    _sub(root, "name", node.name)
    root.append(ownership(env, "domain", node=node.name, role=node.role, **_protection(node)))
    _sub(root, "memory", str(node.memory_mib * 1024), unit="KiB")
    _sub(root, "currentMemory", str(node.memory_mib * 1024), unit="KiB")
    _sub(root, "vcpu", str(node.vcpu), placement="static")
    _os(root, node)
    root.append(cpu_xml(hv))
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    _devices(devices, node)
    if cloudinit.needs_seed(env, node):
        devices.insert(len(node.disks), seed_cdrom(node, hv))
        devices.insert(len(node.disks) + 1, Element("controller", type="scsi", index="0",
                                                    model="virtio-scsi"))
    return root


def cpu_xml(hv: Hypervisor) -> Element:
    """An x86-64-v2 capable CPU: host-model under KVM, a named model under TCG."""
    if hv.domain_type == "kvm":
        return Element("cpu", mode="host-model", check="partial")
    cpu = Element("cpu", mode="custom", match="exact", check="partial")
    # fallback=forbid: a hypervisor that cannot give this model refuses to start the domain
    # rather than silently falling back to something older.
    _sub(cpu, "model", TCG_CPU_MODEL, fallback="forbid")
    return cpu


def _protection(node: Node) -> dict[str, str]:
    """`protect: true` recorded on the live object, so a prune still honours it after the
    node or disk left the environment (the reconciler reads it back)."""
    marks = {"protect": "true"} if node.protect else {}
    disks = [volume_name(node, i) for i, d in enumerate(node.disks) if d.protect]
    return {**marks, "protect-volumes": " ".join(disks)} if disks else marks


def _os(root: Element, node: Node) -> None:
    # UEFI: libvirt picks the firmware (and the NVRAM template) from the hypervisor's own
    # firmware descriptors, so the XML names no distribution's OVMF paths. Without Secure
    # Boot: network boot loaders such as Debian's grubnetx64.efi are not signed.
    os = _sub(root, "os", firmware="efi") if node.firmware == "uefi" else _sub(root, "os")
    machine = node.machine or ("q35" if node.firmware == "uefi" else "pc")
    _sub(os, "type", "hvm", arch="x86_64", machine=machine)
    if node.firmware == "uefi":
        features = _sub(os, "firmware")
        _sub(features, "feature", enabled="no", name="secure-boot")
    # Disk first, then the network, as UPI guides set nodes up: an empty disk falls through
    # to PXE and installs; an installed node boots its disk and never reinstalls by itself
    # (docs/decisions/0077-boot-once-disk-first.md).
    _sub(os, "boot", dev="hd")
    if node.boot == "pxe":
        _sub(os, "boot", dev="network")


def seed_cdrom(node: Node, hv: Hypervisor) -> Element:
    """The cloud-init NoCloud seed ISO (built at converge; see families/cloudinit.py), on
    the virtio-scsi controller domain_xml adds: every cloud kernel drives virtio-scsi, on
    both machine types, whereas Debian's cloud kernel (genericcloud images) has no AHCI, so
    a SATA cdrom was invisible there and cloud-init fell back to no datasource."""
    disk = Element("disk", type="volume", device="cdrom")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", pool=hv.pool_name, volume=cloudinit.seed_volume(node))
    _sub(disk, "target", dev="sda", bus="scsi")
    _sub(disk, "readonly")
    return disk


def serial_log(name: str) -> str:
    """Where the hypervisor's virtlogd writes the domain's serial console."""
    return f"/var/log/libvirt/qemu/{name}-serial.log"


def _devices(devices: Element, node: Node) -> None:
    for index, disk in enumerate(node.disks):
        element = _sub(devices, "disk", type="volume", device="disk")
        _sub(element, "driver", name="qemu", type=disk.format)
        _sub(element, "source", pool=disk.pool, volume=volume_name(node, index))
        _sub(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
    for nic in node.nics:
        element = _sub(devices, "interface", type="network")
        _sub(element, "mac", address=nic.mac)
        _sub(element, "source", network=nic.network)
        _sub(element, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    # virtlogd keeps the serial console in a file: an installer's boot (firmware, loader,
    # kernel) can be read after the fact, by a person or by tests/e2e.
    _sub(serial, "log", file=serial_log(node.name))
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
