"""Import the live domains, networks, pools and volumes of a libvirt host as an environment.

`read_snapshot` is the I/O edge (libvirt-python, persistent definitions as `virsh dumpxml
--inactive` shows them); `import_libvirt` is pure: snapshot in, environment and report out.
Values gen cannot read from libvirt (cluster name and domain, node addresses a network does
not reserve, roles the names do not say) are written with a comment saying so; definitions
gen cannot reproduce are refused (nothing is written) or reported as drift the first plan
will show.
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ruamel.yaml.comments import CommentedMap

from generator.errors import Location
from generator.importers import Imported, Line, cmap, cseq, note
from generator.model import BOOT_ORDER
from generator.reconcile import essence
from generator.units import MIB, scaled_bytes

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ROLES = ("helper", "bootstrap", "master", "worker", "storage", "lb")
# A role is inferred only when a name says it; first match wins (bootstrap before master).
ROLE_WORDS = (("bootstrap", "bootstrap"), ("master", "master"), ("control", "master"),
              ("worker", "worker"), ("compute", "worker"), ("helper", "helper"),
              ("bastion", "helper"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a hypervisor has, as XML text (persistent definitions)."""

    uri: str
    domains: dict[str, str] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)
    pools: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # pool -> name -> xml
    leases: dict[str, str] = field(default_factory=dict)  # mac -> ip (running guests)


@dataclass(frozen=True, slots=True)
class Options:
    env_name: str
    hypervisor: str = "hv1"
    match: tuple[str, ...] = ()
    roles: tuple[tuple[str, str], ...] = ()  # (glob, role), first match wins
    blueprint: str = "openshift-upi"
    # host bridge -> network name, from the environment being merged into (a helper-node
    # import names the LAN `lan` with `bridge: br0`); other bridges are named after
    # themselves
    bridges: tuple[tuple[str, str], ...] = ()

    def bridge_network(self, bridge: str) -> str:
        named = dict(self.bridges).get(bridge)
        if named:
            return named
        plain = re.sub(r"[^a-z0-9-]", "-", bridge.lower()).strip("-")
        return plain or "lan"


def read_snapshot(uri: str) -> Snapshot:
    """Everything the import needs, read once (the only function here that does I/O)."""
    from generator.reconcile.libvirt import libvirt_module, open_connection

    libvirt = libvirt_module()
    conn = open_connection(uri)
    inactive_dom = libvirt.VIR_DOMAIN_XML_INACTIVE
    domains = {d.name(): d.XMLDesc(inactive_dom) for d in conn.listAllDomains(0)}
    networks, leases = {}, {}
    for net in conn.listAllNetworks(0):
        try:
            networks[net.name()] = net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
        except libvirt.libvirtError:
            networks[net.name()] = net.XMLDesc(0)  # test:// has no inactive flag
        try:
            for lease in net.DHCPLeases() if net.isActive() else []:
                if lease.get("mac") and _is_ipv4(lease.get("ipaddr")):  # a v6 one too
                    leases[str(lease["mac"]).lower()] = str(lease["ipaddr"])
        except libvirt.libvirtError:
            pass  # drivers without leases (test://)
    pools, volumes = {}, {}
    for pool in conn.listAllStoragePools(0):
        pools[pool.name()] = pool.XMLDesc(0)
        if pool.isActive():
            try:
                pool.refresh(0)
            except libvirt.libvirtError:
                pass
            volumes[pool.name()] = {v.name(): v.XMLDesc(0) for v in pool.listAllVolumes(0)}
    return Snapshot(uri, domains, networks, pools, volumes, leases)


class _Report:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.lines: list[Line] = []

    def add(self, what: str, status: str, detail: str) -> None:
        self.lines.append(Line(Location(self.uri, 0, 0, what), status, detail))


def import_libvirt(snap: Snapshot, opts: Options) -> Imported:
    """The environment describing the snapshot's (matching) domains and what they use."""
    report = _Report(snap.uri)
    selected = sorted(n for n in snap.domains
                      if not opts.match or any(fnmatch.fnmatchcase(n, p) for p in opts.match))
    if not selected:
        report.add("domains", "refused", "no domain matches" + (
            f" {', '.join(opts.match)}" if opts.match else "") +
            f" (domains: {', '.join(sorted(snap.domains)) or 'none'})")
        return Imported(CommentedMap(), report.lines)
    roots = {n: ET.fromstring(snap.domains[n]) for n in selected}
    used_nets = sorted({s.get("network", "") for r in roots.values()
                        for s in r.findall("devices/interface[@type='network']/source")})
    dhcp_hosts = _dhcp_hosts(snap)
    pool_name, pool_path = _pool(snap, roots, report)
    networks = [_network(snap, name, report) for name in used_nets]
    networks += _bridge_networks(roots, opts, {n["name"] for n in networks}, report)
    nodes = [_node(name, roots[name], snap, opts, pool_name, pool_path, dhcp_hosts, report)
             for name in selected]
    nodes.sort(key=lambda n: (BOOT_ORDER.index(n["role"]) + 1 if n["role"] in BOOT_ORDER
                              else 0, n["name"]))
    domain_types = {r.get("type", "") for r in roots.values()}
    hv = cmap(("name", opts.hypervisor), ("uri", _environment_uri(snap.uri, opts, report)))
    domain_type = sorted(domain_types)[0] if domain_types else "kvm"
    if len(domain_types) > 1 or domain_type not in ("kvm", "qemu"):
        report.add("domains", "refused", f"domain types {', '.join(sorted(domain_types))}: "
                   "gen runs one type (kvm or qemu) per hypervisor")
    hv["domainType"] = domain_type
    hv["pool"] = cmap(("name", pool_name), ("path", pool_path), flow=True)
    bridged = [n for n in networks if "bridge" in n and "libvirt" not in n]
    if bridged:
        hv["bridge"] = bridged[0]["bridge"]
    report.add("hypervisor", "mapped", f"-> hypervisors[{opts.hypervisor}] ({snap.uri}, "
               f"pool {pool_name})")
    _fill_ranges(networks, nodes)
    data = cmap(("apiVersion", "gen/v1"), ("kind", "Environment"),
                ("metadata", cmap(("name", opts.env_name),
                                  ("description", f"imported from {snap.uri}"))),
                ("blueprint", opts.blueprint))
    data["cluster"] = _cluster(opts)
    data["networks"] = cseq(networks)
    data["hypervisors"] = cseq([hv])
    data["nodes"] = cseq(nodes)
    return Imported(data, report.lines)


def _cluster(opts: Options) -> CommentedMap:
    cluster = cmap(("name", opts.env_name if NAME.match(opts.env_name) else "cluster"),
                   ("baseDomain", "example.com"))
    note(cluster, "name", "not in libvirt: the cluster's name (check it)")
    note(cluster, "baseDomain", "not in libvirt: the cluster's base domain (check it)")
    if opts.blueprint in ("openshift-upi",):
        cluster["pullSecret"] = cmap(("env", "GEN_SECRET_PULL"), flow=True)
        note(cluster, "pullSecret", "not in libvirt: a reference, read at converge")
    return cluster


# -- pools, networks ---------------------------------------------------------------------


def _pool(snap: Snapshot, roots: dict[str, ET.Element], report: _Report) -> tuple[str, str]:
    """The pool holding most of the selected domains' volumes (the hypervisor's pool)."""
    counts: dict[str, int] = {}
    for root in roots.values():
        for source in root.findall("devices/disk[@type='volume']/source"):
            counts[source.get("pool", "")] = counts.get(source.get("pool", ""), 0) + 1
    name = max(sorted(counts), key=lambda p: counts[p]) if counts else (
        "default" if "default" in snap.pools else next(iter(sorted(snap.pools)), "default"))
    if name not in snap.pools and not counts:
        report.add(f"pools.{name}", "mapped", "-> hypervisors[].pool: libvirt has none; gen "
                   "creates it at /var/lib/libvirt/images (a create in the plan)")
        return name, "/var/lib/libvirt/images"
    if name not in snap.pools:
        report.add(f"pools.{name}", "refused", "the domains use a pool libvirt does not "
                   "define")
        return name, "/var/lib/libvirt/images"
    pool = ET.fromstring(snap.pools[name])
    if pool.get("type") != "dir":
        report.add(f"pools.{name}", "refused", f"a {pool.get('type')} pool: gen manages "
                   "directory pools only")
    path = pool.findtext("target/path") or "/var/lib/libvirt/images"
    report.add(f"pools.{name}", "mapped", f"-> hypervisors[].pool ({path})")
    return name, path


def _network(snap: Snapshot, name: str, report: _Report) -> CommentedMap:
    where = f"networks.{name}"
    text = snap.networks.get(name)
    if text is None:
        report.add(where, "refused", "a domain uses this network, but libvirt does not "
                   "define it")
        return cmap(("name", name), ("cidr", "192.0.2.0/24"))
    root = ET.fromstring(text)
    if not NAME.match(name):
        report.add(where, "refused", f"'{name}' is not a valid gen name (lowercase letters, "
                   "digits and '-')")
    mode = (root.find("forward").get("mode", "nat")  # type: ignore[union-attr]
            if root.find("forward") is not None else "isolated")
    net = cmap(("name", name))
    ip = _ipv4(root, where, report)
    if mode == "bridge":
        bridge = root.find("bridge")
        net["cidr"] = "192.0.2.0/24"
        note(net, "cidr", "not in libvirt (a bridge to the host LAN): set the LAN's CIDR")
        net["bridge"] = bridge.get("name", "br0") if bridge is not None else "br0"
        report.add(where, "mapped", f"-> networks[{name}] (bridge {net['bridge']}; CIDR not "
                   "in libvirt)")
        return net
    if mode not in ("nat", "isolated", "route"):
        report.add(where, "refused", f"forward mode '{mode}': gen renders nat, isolated, "
                   "route and bridge networks")
    if ip is None:
        report.add(where, "refused", "a routed/NAT/isolated network without an IPv4 address: "
                   "gen gives each such network its gateway address")
        return net
    prefix = ip.get("prefix") or ip.get("netmask") or "24"
    try:
        iface = IPv4Interface(f"{ip.get('address')}/{prefix}")
    except ValueError:
        report.add(where, "refused", f"address {ip.get('address')}/{prefix} is not an IPv4 "
                   "address and prefix")
        return net
    net["cidr"] = str(iface.network)
    net["gateway"] = str(iface.ip)
    libvirt = cmap(("mode", mode), flow=True)
    dhcp = ip.find("dhcp")
    if dhcp is not None:
        libvirt["dhcp"] = True
        if dhcp.find("range") is not None:
            report.add(where + ".dhcp.range", "not supported", "gen's libvirt networks hand "
                       "out reserved addresses only: the plan shows the range's removal")
    net["libvirt"] = libvirt
    report.add(where, "mapped", f"-> networks[{name}] ({mode}, {iface.network})")
    return net


def _ipv4(root: ET.Element, where: str, report: _Report) -> ET.Element | None:
    """The network's first IPv4 address; each IPv6 one gets a `not supported` line."""
    found = None
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") == "ipv4":
            found = found if found is not None else ip
            continue
        report.add(f"{where}.ip[{ip.get('address')}]", "not supported",
                   f"{ip.get('family')} address {ip.get('address')}/{ip.get('prefix')}: gen "
                   "renders IPv4 networks only; adopting the network drops this address")
    return found


def _bridge_networks(roots: dict[str, ET.Element], opts: Options, taken: set[str],
                     report: _Report) -> list[CommentedMap]:
    """Interfaces plugged straight into a host bridge (virt-install --network bridge=br0):
    gen reaches the bridge through a libvirt network of forward mode bridge."""
    bridges = sorted({s.get("bridge", "") for r in roots.values()
                      for s in r.findall("devices/interface[@type='bridge']/source")} - {""})
    out = []
    for bridge in bridges:
        name = opts.bridge_network(bridge)
        if bridge in dict(opts.bridges):  # the environment merged into describes it
            report.add(f"bridges.{bridge}", "mapped", f"-> networks[{name}] (already in the "
                       "environment)")
            continue
        if name in taken:
            continue
        net = cmap(("name", name), ("cidr", "192.0.2.0/24"))
        note(net, "cidr", "not in libvirt (a bridge to the host LAN): set the LAN's CIDR and "
             "each node's nics[].ip")
        net["bridge"] = bridge
        out.append(net)
        report.add(f"bridges.{bridge}", "mapped", f"-> networks[{name}] (host bridge "
                   f"{bridge}; gen defines a libvirt network of forward mode bridge for it)")
    return out


def _dhcp_hosts(snap: Snapshot) -> dict[str, str]:
    """mac -> ip from every network's DHCP reservations, then leases of running guests."""
    out = dict(snap.leases)
    for text in snap.networks.values():
        for host in ET.fromstring(text).findall("ip/dhcp/host"):
            if host.get("mac") and _is_ipv4(host.get("ip")):
                out[str(host.get("mac")).lower()] = str(host.get("ip"))
    return out


def _is_ipv4(value: str | None) -> bool:
    try:
        IPv4Address(value or "")
    except ValueError:
        return False
    return True


def _fill_ranges(networks: list[CommentedMap], nodes: list[CommentedMap]) -> None:
    """A network some NIC has no known address on gets a `range` to allocate from (gen
    needs an address per NIC for DNS and DHCP; libvirt does not know static ones)."""
    for net in networks:
        missing = any("ip" not in nic for n in nodes for nic in n.get("nics", [])
                      if nic["network"] == net["name"])
        if not missing or "cidr" not in net:
            continue
        cidr = IPv4Network(net["cidr"])
        hosts = [h for h in cidr.hosts() if str(h) != net.get("gateway")]
        taken = {nic.get("ip") for n in nodes for nic in n.get("nics", [])}
        free = [h for h in hosts if str(h) not in taken]
        if free:
            net["range"] = cmap(("start", str(free[len(free) // 2])), ("end", str(free[-1])),
                                flow=True)
            note(net, "range", "addresses not in libvirt: NICs without an ip get the next "
                 "free one from here; set each node's nics[].ip to the real address")


# -- domains -----------------------------------------------------------------------------


def _node(name: str, root: ET.Element, snap: Snapshot, opts: Options, pool_name: str,
          pool_path: str, dhcp_hosts: dict[str, str], report: _Report) -> CommentedMap:
    where = f"domains.{name}"
    if not NAME.match(name):
        report.add(where, "refused", f"'{name}' is not a valid gen node name (lowercase "
                   "letters, digits and '-'): rename the domain or leave it out with --match")
    role, inferred = _role(name, opts)
    node = cmap(("name", name), ("role", role), ("hypervisor", opts.hypervisor))
    if not inferred:
        note(node, "role", "not inferred from the name: check it (or --role PATTERN=ROLE)")
    node["vcpu"] = int(root.findtext("vcpu") or "1")
    node["memory"] = _memory(root, report, where)
    os = root.find("os")
    loader = os.find("loader") if os is not None else None
    node["firmware"] = "uefi" if (loader is not None and loader.get("type") == "pflash") or (
        os is not None and os.get("firmware") == "efi") else "bios"
    boots = [b.get("dev") for b in os.findall("boot")] if os is not None else []
    # gen renders PXE nodes disk first (an empty disk falls through to the network)
    node["boot"] = "pxe" if "network" in boots else "image"
    disks = _disks(name, root, snap, pool_name, pool_path, report, where)
    node["disks"] = cseq(disks)
    node["nics"] = cseq(_nics(root, dhcp_hosts, opts, report, where))
    _drift(root, node, report, where)
    for part in essence.unmanaged(root):
        report.add(f"{where}.{part.split()[0].replace('/', '.')}", "not supported",
                   f"{part}: gen does not render it, so `gen plan --adopt` lists the domain "
                   "as a conflict (adopting would drop it)")
    report.add(where, "mapped", f"-> nodes[{name}] (role {role}"
               f"{'' if inferred else ', not inferred'})")
    return node


def _role(name: str, opts: Options) -> tuple[str, bool]:
    for pattern, role in opts.roles:
        if fnmatch.fnmatchcase(name, pattern):
            return role, True
    for word, role in ROLE_WORDS:
        if word in name:
            return role, True
    return "worker", False


def _secure_boot(loader: str) -> bool:
    """A firmware image built for Secure Boot (OVMF_CODE.secboot.fd, OVMF_CODE_4M.ms.fd)."""
    name = loader.rsplit("/", 1)[-1].lower()
    return "secboot" in name or ".ms." in name or ".sb." in name


def _memory(root: ET.Element, report: _Report, where: str) -> str:
    element = root.find("memory")
    kib = _kib(element)
    current = _kib(root.find("currentMemory")) or kib
    if current != kib:
        report.add(where + ".currentMemory", "not supported", f"{current} KiB below the "
                   f"maximum {kib} KiB: gen sets both to memory; the plan shows it")
    if kib % 1024:
        report.add(where + ".memory", "refused", f"{kib} KiB is not a whole number of MiB")
    mib = kib // 1024
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


def _kib(element: ET.Element | None) -> int:
    if element is None or not (element.text or "").strip():
        return 0
    return scaled_bytes(element.text or "0", element.get("unit"), "KiB") // 1024


def _size(capacity_bytes: int) -> str | None:
    if capacity_bytes % MIB:
        return None
    mib = capacity_bytes // MIB
    if mib % (1024 * 1024) == 0:
        return f"{mib // (1024 * 1024)}TiB"
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


@dataclass(frozen=True, slots=True)
class _Pool:
    name: str
    path: str
    volumes: dict[str, dict[str, str]]  # pool -> volume -> xml


def _disks(node: str, root: ET.Element, snap: Snapshot, pool_name: str, pool_path: str,
           report: _Report, where: str) -> list[CommentedMap]:
    pool = _Pool(pool_name, pool_path, snap.volumes)
    out: list[CommentedMap] = []
    for index, disk in enumerate(root.findall("devices/disk")):
        what = f"{where}.disk[{index}]"
        if disk.get("device") != "disk":
            report.add(what, "not supported", f"a {disk.get('device')} device: gen attaches "
                       "disks (and cloud-init seeds) only; the plan shows its removal")
            continue
        item = _disk(node, disk, len(out), pool, report, what)
        if item is not None:
            out.append(item)
    return out


def _disk(node: str, disk: ET.Element, position: int, hv_pool: _Pool, report: _Report,
          what: str) -> CommentedMap | None:
    """One pool-volume disk as a node's `disks` item (None: refused)."""
    source = disk.find("source")
    if disk.get("type") != "volume" or source is None:
        report.add(what, "refused", f"a {disk.get('type')} disk ({_source_text(source)}): "
                   "gen attaches pool volumes only; move it into a pool (virsh "
                   "vol-create-from) or leave the domain out")
        return None
    volume, pool = source.get("volume", ""), source.get("pool", hv_pool.name)
    driver = disk.find("driver")
    fmt = driver.get("type", "raw") if driver is not None else "raw"
    prefix, suffix = f"{node}-", f".{fmt}"
    disk_name = volume[len(prefix):-len(suffix)] \
        if volume.startswith(prefix) and volume.endswith(suffix) else ""
    own_volume = not NAME.match(disk_name)
    if own_volume:  # made by hand (virt-install names it <vm>.qcow2): keep its name
        disk_name = "root" if position == 0 else f"disk{position}"
    xml = hv_pool.volumes.get(pool, {}).get(volume)
    if xml is None:
        report.add(what, "refused", f"volume '{volume}' is not in pool '{pool}'")
        return None
    vol = ET.fromstring(xml)
    capacity = int(vol.findtext("capacity") or "0")
    size = _size(capacity)
    if size is None:
        report.add(what, "refused", f"volume '{volume}' holds {capacity} bytes, not a whole "
                   "number of MiB")
        return None
    item = cmap(("name", disk_name), ("size", size))
    if own_volume:
        item["volume"] = volume
        note(item, "volume", f"the volume's own name (gen's would be {prefix}{disk_name}"
             f"{suffix})")
    if fmt != "qcow2":
        item["format"] = fmt
    if pool != hv_pool.name:
        item["pool"] = pool
    _backing(vol, item, hv_pool.path, report, what)
    target = disk.find("target")
    want = f"vd{chr(ord('a') + position)}"
    if target is None or target.get("dev") != want or target.get("bus") != "virtio":
        report.add(what, "not supported", f"attached as {_attrs(target)}: gen attaches it "
                   f"as {want} on virtio; the plan shows the drift")
    return item


def _backing(vol: ET.Element, item: CommentedMap, pool_path: str, report: _Report,
             what: str) -> None:
    backing = vol.findtext("backingStore/path")
    if not backing:
        return
    base = pool_path.rstrip("/") + "/"
    if backing.startswith(base):
        item["backingImage"] = backing[len(base):]
    else:
        report.add(what, "refused", f"backing file {backing} lies outside the pool "
                   f"{pool_path}")


def _source_text(source: ET.Element | None) -> str:
    if source is None:
        return "no source"
    return ", ".join(f"{k}={v}" for k, v in sorted(source.attrib.items()))


def _attrs(element: ET.Element | None) -> str:
    return "nothing" if element is None else " ".join(
        f"{k}={v}" for k, v in sorted(element.attrib.items()))


def _nics(root: ET.Element, dhcp_hosts: dict[str, str], opts: Options, report: _Report,
          where: str) -> list[CommentedMap]:
    out = []
    for index, iface in enumerate(root.findall("devices/interface")):
        what = f"{where}.interface[{index}]"
        mac = (iface.find("mac").get("address", "")  # type: ignore[union-attr]
               if iface.find("mac") is not None else "").lower()
        source = iface.find("source")
        network = source.get("network") if source is not None else None
        if iface.get("type") == "bridge" and source is not None and source.get("bridge"):
            network = opts.bridge_network(str(source.get("bridge")))
            report.add(what, "not supported", f"plugged into bridge {source.get('bridge')} "
                       f"directly: gen attaches it through network '{network}' (the same "
                       "bridge); the plan shows the drift, which takes effect at next boot")
        elif iface.get("type") != "network" or not network:
            report.add(what, "refused", f"a {iface.get('type')} interface "
                       f"({_source_text(source)}): gen attaches NICs to libvirt networks; "
                       "define a bridge network for the host bridge and attach to it")
            continue
        nic = cmap(("network", network), flow=True)
        ip = dhcp_hosts.get(mac)
        if _is_ipv4(ip):
            nic["ip"] = str(IPv4Address(ip))
        if mac:
            nic["mac"] = mac
        model = iface.find("model")
        if model is None or model.get("type") != "virtio":
            report.add(what, "not supported", f"model {_attrs(model)}: gen uses virtio; "
                       "the plan shows the drift")
        out.append(nic)
    return out


def _drift(root: ET.Element, node: CommentedMap, report: _Report, where: str) -> None:
    """Parts of the definition gen writes one way only: reported, and shown by the plan."""
    os_type = root.find("os/type")
    firmware_machine = "q35" if node["firmware"] == "uefi" else "pc"
    machine = os_type.get("machine", "") if os_type is not None else ""
    base = re.sub(r"^pc-(i440fx|q35)-.*$", lambda m: "pc" if m.group(1) == "i440fx"
                  else "q35", machine)
    if base in ("pc", "q35") and base != firmware_machine:
        node.insert(list(node).index("firmware") + 1, "machine", base)
        report.add(where + ".os.machine", "mapped", f"-> nodes[{node['name']}].machine "
                   f"({machine}; gen's default for {node['firmware']} is {firmware_machine})")
    elif base and base not in ("pc", "q35"):
        report.add(where + ".os.machine", "refused", f"machine {machine}: gen defines pc "
                   "and q35 machines, and a machine change replaces the VM")
    loader = root.findtext("os/loader")
    if node["firmware"] == "uefi" and loader and _secure_boot(loader.strip()):
        report.add(where + ".os.loader", "refused", f"loader {loader.strip()}: gen boots "
                   "UEFI guests without Secure Boot (libvirt picks the firmware), and a "
                   "loader change replaces the VM")
    features = sorted(child.tag for child in root.findall("features/*"))
    if features != ["acpi", "apic"]:
        shown = ", ".join(features) or "none"
        report.add(where + ".features", "not supported", f"features {shown}: gen writes "
                   "acpi and apic; the plan shows the drift")


def _environment_uri(uri: str, opts: Options, report: _Report) -> str:
    """The URI as an environment file may hold it. Parameters only the operator may pass
    (a local socket, key or known-hosts file) are left out of env.yaml: they belong to
    `--uri-override` at plan and converge, where the operator writes them."""
    from generator.semantic import libvirt_uri_problem

    if libvirt_uri_problem(uri) is None:
        return uri
    bare = uri.partition("?")[0]
    if bare.startswith("test:"):
        bare = "test:///default"  # a state file's path is the operator's too
    report.add("hypervisor.uri", "not supported",
               f"{uri} written as {bare}: its file or socket parameters are the operator's; "
               f"pass --uri-override {opts.hypervisor}=URI to plan and converge")
    return bare
