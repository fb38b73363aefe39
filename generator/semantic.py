"""Checks the schema cannot express: uniqueness, address plans, quorum, references.

Pure, in two steps. Document rules run on the schema-valid Document: what must hold before
the typed model can be built (unique names, references that resolve, well-formed CIDRs).
Model rules run on the typed model `expand` built from it, so every default they compare
is expand's own, never re-applied here; each reports at the source position the model
keeps. Both return Problems (errors and warnings) in any order.
Role minimums (docs/architecture.md): a missing or duplicated bootstrap, or zero control
planes, is an error; nodes smaller than the reference labs' minimums only warn, so scaled
down test labs still render.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from socket import inet_aton, inet_ntoa
from typing import Any

from generator import model as m
from generator.errors import Problem
from generator.expand import ipv4
from generator.loader import Document, FieldPath, format_path
from generator.model import SECRET_MARKER_PREFIX
from generator.rules import version_problems
from generator.units import MIB, parse_size

# (vcpu, memory MiB) minimums per flavour family and role, from reference/labs.md.
MINIMUMS = {
    "openshift": {"bootstrap": (4, 16384), "master": (4, 16384), "worker": (2, 8192)},
    "kubeadm": {"master": (2, 2048), "worker": (1, 1024)},
}


class Checker:
    """Collects problems against one document, and its typed model once expanded."""

    def __init__(self, doc: Document, env: m.Environment | None = None) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.problems: list[Problem] = []
        self._env = env
        self.flagged: list[tuple[FieldPath, str]] | None = None  # see _flagged_strings
        self._nics: list[tuple[FieldPath, dict[str, Any], dict[str, Any]]] | None = None

    @property
    def env(self) -> m.Environment:
        """The typed model, expand's defaults filled in (model rules only)."""
        if self._env is None:
            raise AssertionError("a model rule ran before expand")
        return self._env

    def error(self, path: FieldPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(message, self.doc.locate(path), hint))

    def warn(self, path: FieldPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(message, self.doc.locate(path), hint, warning=True))

    def nodes(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return enumerate(self.data.get("nodes", []))

    def nics(self) -> list[tuple[FieldPath, dict[str, Any], dict[str, Any]]]:
        """Every NIC with its path and node, in document order. Listed once per checker:
        seven rules walk the NICs, and at 10,000 nodes rebuilding the paths for each was a
        tenth of the document rules."""
        if self._nics is None:
            self._nics = [(("nodes", i, "nics", j), node, nic) for i, node in self.nodes()
                          for j, nic in enumerate(node.get("nics", []))]
        return self._nics


def semantic_problems(doc: Document) -> list[Problem]:
    """The document rules; when they find no error, `expand` can build the model."""
    checker = Checker(doc)
    for check in CHECKS:
        check(checker)
    return checker.problems + version_problems(doc)


def model_problems(doc: Document, env: m.Environment) -> list[Problem]:
    """The model rules, on the model `expand` built from `doc`."""
    checker = Checker(doc, env)
    for check in MODEL_CHECKS:
        check(checker)
    return checker.problems


def _unique(c: Checker, items: Sequence[tuple[FieldPath, str]], what: str,
            hint: str) -> None:
    # Nearly always every value is distinct: one set of the lowered values proves it
    # without a dictionary entry per value (10,000 nodes' names, IPs and MACs).
    if len({value.lower() for _, value in items}) == len(items):
        return
    seen: dict[str, FieldPath] = {}
    for path, value in items:
        key = value.lower()
        if key in seen:
            c.error(path, f"{what} '{value}' is already used at {format_path(seen[key])}",
                    hint)
        else:
            seen[key] = path


def check_unique_names(c: Checker) -> None:
    for section in ("nodes", "networks", "hypervisors"):
        items = [((section, i, "name"), x["name"]) for i, x in enumerate(c.data.get(section, []))]
        _unique(c, items, f"{section[:-1]} name", "give each one its own name")


def check_unique_addresses(c: Checker) -> None:
    ips = [(p + ("ip",), nic["ip"]) for p, _, nic in c.nics() if "ip" in nic]
    _unique(c, ips, "IP address", "give each NIC its own address")
    macs = [(p + ("mac",), nic["mac"]) for p, _, nic in c.nics() if "mac" in nic]
    _unique(c, macs, "MAC address", "two NICs sharing a MAC cannot both get their DHCP lease")


def check_unique_volumes(c: Checker) -> None:
    """Two disks on one volume (an explicit `volume:` of an adopted lab, or one colliding
    with another node's default name) would share, and wipe, each other's data."""
    items = []
    for i, node in enumerate(c.env.nodes):
        if node.hypervisor:
            items += [(("nodes", i, "disks", j),
                       f"{node.hypervisor}/{disk.pool}/{node.volume_name(j)}")
                      for j, disk in enumerate(node.disks)]
    _unique(c, items, "volume", "give each disk its own volume")


def check_unicast_macs(c: Checker) -> None:
    for path, _, nic in c.nics():
        if "mac" in nic and int(nic["mac"][:2], 16) & 1:
            c.error(path + ("mac",), f"'{nic['mac']}' is a multicast MAC address",
                    "the first octet must be even, e.g. 52:54:00:...")
        elif "mac" in nic and int(nic["mac"].replace(":", ""), 16) == 0:
            c.error(path + ("mac",), f"'{nic['mac']}' is the all-zero MAC address",
                    "no NIC has it; use the NIC's real MAC or leave mac out to derive one")


def _networks(c: Checker) -> dict[str, tuple[int, IPv4Network]]:
    # Host bits set is reported once by check_network_cidrs; the network still exists, so
    # NICs on it must not also be reported as on an unknown network.
    return {net["name"]: (i, IPv4Network(net["cidr"], strict=False))
            for i, net in enumerate(c.data.get("networks", []))}


def check_network_cidrs(c: Checker) -> None:
    for i, net in enumerate(c.data.get("networks", [])):
        try:
            network = IPv4Network(net["cidr"])
        except ValueError:
            fixed = ip_network(net["cidr"], strict=False)
            c.error(("networks", i, "cidr"), f"'{net['cidr']}' has host bits set",
                    f"write {fixed}")
            continue
        _check_in_subnet(c, ("networks", i, "gateway"), net.get("gateway"), network, "gateway")
        for key in ("start", "end"):
            _check_in_subnet(c, ("networks", i, "range", key),
                             net.get("range", {}).get(key), network, "range address")
        if "range" in net:
            _check_range_order(c, ("networks", i, "range"), net["range"]["start"],
                               net["range"]["end"])
        for j, server in enumerate(net.get("dns", [])):
            _check_server(c, ("networks", i, "dns", j), server, "DNS server")
        if "bridge" not in net and "libvirt" not in net:
            c.error(("networks", i), f"network '{net['name']}' has neither bridge nor libvirt",
                    "set bridge: <host bridge> or libvirt: {mode: nat}")


def _check_range_order(c: Checker, path: FieldPath, start: str, end: str) -> None:
    if IPv4Address(start) > IPv4Address(end):
        c.error(path, f"range starts at {start}, after its end {end}", "swap start and end")


def _check_server(c: Checker, path: FieldPath, value: str, what: str) -> None:
    """An address a daemon or a node sends queries to: a real unicast host."""
    address = IPv4Address(value)
    if address.is_unspecified or address.is_multicast or address == IPv4Address(
            "255.255.255.255") or address.is_reserved:
        c.error(path, f"{what} {value} is not a host address",
                "name the server's own unicast address")


def check_gateways(c: Checker) -> None:
    """A gateway is a router, never one of the nodes gen addresses."""
    gateways = {net.get("gateway"): i for i, net in enumerate(c.data.get("networks", []))
                if net.get("gateway")}
    for _, node, nic in c.nics():
        if nic.get("ip") in gateways:
            i = gateways[nic["ip"]]
            c.error(("networks", i, "gateway"), f"gateway {nic['ip']} is the address of node "
                    f"'{node['name']}'", "name the router's address, or give the node another")


def check_dns_servers(c: Checker) -> None:
    dns = c.data.get("services", {}).get("dns") or {}
    for j, server in enumerate(dns.get("forwarders", [])):
        _check_server(c, ("services", "dns", "forwarders", j), server, "forwarder")


def _check_in_subnet(c: Checker, path: FieldPath, value: str | None, network: IPv4Network,
                     what: str) -> None:
    if value is None:
        return
    address = ipv4(value)
    if address not in network:
        c.error(path, f"{what} {value} is outside {network}", f"use an address in {network}")
    elif network.prefixlen < 31 and address in (network.network_address,
                                                 network.broadcast_address):
        kind = "network" if address == network.network_address else "broadcast"
        c.error(path, f"{value} is the {kind} address of {network}",
                "use a host address inside the subnet")


def check_nic_addresses(c: Checker) -> None:
    networks = _networks(c)
    hosts = {name: _host_range(network) for name, (_, network) in networks.items()}
    for path, _, nic in c.nics():
        if nic["network"] not in networks:
            known = ", ".join(sorted(networks)) or "none"
            c.error(path + ("network",), f"unknown network '{nic['network']}'",
                    f"declared networks: {known}")
        elif "ip" in nic and not _is_host_in(nic["ip"], hosts[nic["network"]]):
            _check_in_subnet(c, path + ("ip",), nic["ip"], networks[nic["network"]][1], "IP")


def _host_range(network: IPv4Network) -> tuple[int, int]:
    """The first and last address `_check_in_subnet` accepts in `network`, as integers."""
    first, last = int(network.network_address), int(network.broadcast_address)
    return (first + 1, last - 1) if network.prefixlen < 31 else (first, last)


def _is_host_in(text: str, hosts: tuple[int, int]) -> bool:
    """Whether `_check_in_subnet` would accept `text` in the network of `hosts`, for the
    common case only: a canonical dotted quad (inet_aton's address prints back as the
    text, so ipaddress reads the same integer) in the host range. False sends the address
    to `_check_in_subnet`, which decides and words the problem (10,000 NICs parsed by
    ipaddress were a sixth of the document rules)."""
    try:
        packed = inet_aton(text)
    except (OSError, ValueError, TypeError):
        return False
    return inet_ntoa(packed) == text and hosts[0] <= int.from_bytes(packed) <= hosts[1]


def check_cidr_overlap(c: Checker) -> None:
    cluster = c.data.get("cluster", {})
    ranges: list[tuple[FieldPath, str, str]] = []
    for i, item in enumerate(cluster.get("clusterNetwork", [])):
        ranges.append((("cluster", "clusterNetwork", i, "cidr"), item["cidr"], "pod network"))
    for i, cidr in enumerate(cluster.get("serviceNetwork", [])):
        ranges.append((("cluster", "serviceNetwork", i), cidr, "service network"))
    for i, net in enumerate(c.data.get("networks", [])):
        ranges.append((("networks", i, "cidr"), net["cidr"], f"host network '{net['name']}'"))
    parsed = [(p, ip_network(v, strict=False), what) for p, v, what in ranges]
    for k, (path, net, what) in enumerate(parsed):
        for _, other, other_what in parsed[:k]:
            if net.overlaps(other):
                c.error(path, f"{what} {net} overlaps {other_what} {other}",
                        "pod, service and host CIDRs must not overlap")


def check_hypervisors(c: Checker) -> None:
    known = {h["name"] for h in c.data.get("hypervisors", [])}
    for i, node in c.nodes():
        hv = node.get("hypervisor")
        if hv is not None and hv not in known:
            c.error(("nodes", i, "hypervisor"), f"unknown hypervisor '{hv}'",
                    f"declared hypervisors: {', '.join(sorted(known)) or 'none'}")
        if hv is None and node.get("boot") == "pxe":
            for j, nic in enumerate(node["nics"][:1]):
                if "mac" not in nic:
                    c.error(("nodes", i, "nics", j), f"PXE node '{node['name']}' has no MAC",
                            "bare-metal PXE nodes need their NIC's MAC for the DHCP reservation")


# Host directories a storage pool must not be: a libvirt dir pool lists every file in its
# directory as a volume, so a pool at /etc offers /etc/shadow to `disks[].volume`.
SYSTEM_DIRS = ("/etc", "/root", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/proc",
               "/sys", "/dev", "/run", "/var/run", "/var/lib/libvirt/qemu")


def check_pool_paths(c: Checker) -> None:
    for i, hv in enumerate(c.data.get("hypervisors", [])):
        path = (hv.get("pool") or {}).get("path")
        if path is None:
            continue
        system = next((d for d in SYSTEM_DIRS if path == d or path.startswith(d + "/")),
                      "/" if path == "/" else None)
        if system is not None:
            c.error(("hypervisors", i, "pool", "path"), f"pool path {path} is a system "
                    f"directory ({system}): every file in it would be a volume a VM can attach",
                    "use a directory of its own such as /var/lib/libvirt/images")


# Words dnsmasq reads in the last field of `dhcp-host=MAC,IP,NAME` as something other than a
# host name (dnsmasq(8)): `ignore` (never answer the host), a lease time (`infinite`, digits
# with an optional s/m/h/d/w unit). All are valid RFC 1123 labels, so the name type allows them.
_DNSMASQ_HOST_KEYWORD = re.compile(r"ignore|infinite|[0-9]+[smhdw]?")


def check_dnsmasq_host_names(c: Checker) -> None:
    if (c.data.get("services", {}).get("dhcp") or {}).get("provider") != "dnsmasq":
        return
    for i, node in c.nodes():
        if _DNSMASQ_HOST_KEYWORD.fullmatch(node["name"]):
            c.error(("nodes", i, "name"), f"node name '{node['name']}' is a dnsmasq keyword "
                    "or lease time, which dnsmasq's dhcp-host reads instead of a host name",
                    "pick a name that is not ignore, infinite or a number with an optional "
                    "s/m/h/d/w unit, like worker1")


def check_control_plane(c: Checker) -> None:
    flavour = c.data.get("cluster", {}).get("flavour")
    if flavour == "kolla":
        return  # an all-in-one OpenStack host has no etcd quorum to keep
    roles = [node["role"] for _, node in c.nodes()]
    masters = roles.count("master")
    if masters == 0:
        c.error(("nodes",), "no control-plane node (role master)", "add 1, 3 or 5 masters")
    elif masters not in (1, 3, 5):
        c.error(("nodes",), f"{masters} control-plane nodes cannot keep etcd quorum well",
                "use 1, 3 or 5 masters")
    elif masters == 1:
        c.warn(("nodes",), "a single control-plane node has no etcd redundancy",
               "use 3 masters for anything but a lab")
    bootstraps = roles.count("bootstrap")
    # A retired bootstrap (cluster.bootstrapComplete) may stay declared or be removed.
    retired = c.data.get("cluster", {}).get("bootstrapComplete", False)
    if flavour in ("openshift", "okd") and bootstraps not in ((0, 1) if retired else (1,)):
        c.error(("nodes",), f"{flavour} UPI needs exactly one bootstrap node, found {bootstraps}",
                "declare one node with role bootstrap" + ("" if bootstraps else ", or set "
                "cluster.bootstrapComplete: true once the cluster has bootstrapped"))
    if retired and flavour not in ("openshift", "okd"):
        c.error(("cluster", "bootstrapComplete"), f"{flavour} clusters have no bootstrap to "
                "retire", "remove cluster.bootstrapComplete")
    if flavour == "kubeadm" and bootstraps:
        c.error(("nodes",), "kubeadm clusters have no bootstrap node",
                "use role master for the first control plane")


def check_role_minimums(c: Checker) -> None:
    flavour = c.data.get("cluster", {}).get("flavour")
    family = "kubeadm" if flavour == "kubeadm" else "openshift"
    for i, node in c.nodes():
        minimum = MINIMUMS[family].get(node["role"]) if flavour != "kolla" else None
        if minimum is None:
            continue
        vcpu, memory = minimum
        if node["vcpu"] < vcpu or parse_size(node["memory"]) < memory * MIB:
            c.warn(("nodes", i), f"{node['role']} '{node['name']}' has {node['vcpu']} vCPU and "
                   f"{node['memory']}, below the {vcpu} vCPU / {memory} MiB minimum",
                   "fine for a test lab, too small for a real cluster")


def check_service_hosts(c: Checker) -> None:
    services = c.data.get("services", {})
    names = {node["name"] for _, node in c.nodes()}
    for key in ("host", "dns", "dhcp", "http", "haproxy", "nfs"):
        value = services.get(key)
        host, path = (value, ("services", "host")) if key == "host" else (
            (value or {}).get("host"), ("services", key, "host"))
        if host is not None and host not in names:
            c.error(path, f"service host '{host}' is not a node",
                    f"name one of the nodes: {', '.join(sorted(names))}")


def check_records(c: Checker) -> None:
    names = {node["name"] for _, node in c.nodes()}
    masters = sum(node["role"] == "master" for _, node in c.nodes())
    reserved = names | {"api", "api-int", "*.apps"} | {f"etcd-{i}" for i in range(masters)}
    records = c.data.get("services", {}).get("dns", {}).get("records", [])
    for i, record in enumerate(records):
        if record["name"] in names:
            c.error(("services", "dns", "records", i, "name"),
                    f"record '{record['name']}' collides with node '{record['name']}'",
                    "gen publishes every node's A and PTR records; choose another name")
        elif record["name"] in reserved:
            c.error(("services", "dns", "records", i, "name"),
                    f"record '{record['name']}' collides with a name gen already publishes",
                    "choose another name; nodes, api, api-int and *.apps are generated")
        if record["type"] == "A":
            try:
                IPv4Address(record["value"])
            except ValueError:
                c.error(("services", "dns", "records", i, "value"),
                        f"'{record['value']}' is not an IPv4 address for an A record", "")


def check_ip_sources(c: Checker) -> None:
    ranged = {net["name"] for net in c.data.get("networks", []) if "range" in net}
    for path, node, nic in c.nics():
        if "ip" not in nic and nic["network"] not in ranged:
            c.error(path, f"NIC of '{node['name']}' has no ip and network '{nic['network']}' "
                    "has no range", "set ip: or declare range: {start, end} on the network")


MAX_MEMORY_TIB = 16


def check_sizes(c: Checker) -> None:
    for i, node in c.nodes():
        if parse_size(node["memory"]) < 256 * MIB:
            c.error(("nodes", i, "memory"), f"{node['memory']} is too little memory",
                    "give a VM at least 256MiB")
        elif parse_size(node["memory"]) > MAX_MEMORY_TIB * 1024 * 1024 * MIB:
            # QEMU/KVM's limit for x86-64 guests; larger values validate but fail at converge.
            c.error(("nodes", i, "memory"), f"{node['memory']} is more memory than a VM can "
                    f"have", f"give a VM at most {MAX_MEMORY_TIB}TiB")


def check_openstack(c: Checker) -> None:
    stack = c.data.get("openstack")
    if c.data.get("cluster", {}).get("flavour") != "kolla":
        if stack is not None:
            c.error(("openstack",), "openstack settings need cluster.flavour kolla",
                    "remove the openstack section or set flavour: kolla")
        return
    if stack is None:
        c.error(("cluster", "flavour"), "flavour kolla needs an openstack section",
                "add openstack: {internalVip: <free address>}")
        return
    hosts = [node for _, node in c.nodes() if node["role"] == "master"]
    if len(hosts) != 1:
        c.error(("nodes",), f"kolla all-in-one needs exactly one master node, found {len(hosts)}",
                "declare the all-in-one host as the one role: master node")
        return
    host, vip = hosts[0], IPv4Address(stack["internalVip"])
    first = _networks(c).get(host["nics"][0]["network"])
    if first is not None and vip not in first[1]:
        c.error(("openstack", "internalVip"), f"internal VIP {vip} is outside {first[1]}",
                "pick a free address on the host's first network")
    if any(nic.get("ip") == str(vip) for _, _, nic in c.nics()):
        c.error(("openstack", "internalVip"), f"internal VIP {vip} is a node's address",
                "the VIP must be a free address keepalived can claim")


def check_openstack_host(c: Checker) -> None:
    """The all-in-one host has the cinder disk, and kolla-ansible's data is that of the
    release deployed (families/kolla.py)."""
    stack, hosts = c.env.openstack, c.env.nodes_with_role("master")
    if c.env.cluster.flavour != "kolla" or stack is None or len(hosts) != 1:
        return  # reported by check_openstack
    if stack.cinder_disk not in [d.name for d in hosts[0].disks]:
        c.error(("openstack", "cinderDisk"), f"node '{hosts[0].name}' has no disk "
                f"'{stack.cinder_disk}'", "add a second disk for the cinder-volumes LVM group")
    kolla = stack.kolla_ansible
    if kolla is None:
        c.error(("openstack",), "no kolla-ansible data for the inventory and passwords",
                "use a blueprint that ships openstack.kollaAnsible (blueprints/kolla-aio)")
    elif kolla.openstack_release != stack.release:
        c.error(("openstack", "release"), f"release {stack.release} does not match "
                f"kolla-ansible {kolla.version}, which deploys {kolla.openstack_release}",
                f"use release {kolla.openstack_release} or the blueprint data of the "
                "kolla-ansible release that deploys it")


OPENSHIFT_TOOLS = ("openshift-install", "oc")  # their release must be the cluster's
KUBERNETES_TOOLS = ("kubeadm", "kubelet", "kubectl")  # their version must be the cluster's


def check_tool_versions(c: Checker) -> None:
    """openshift-install installs the release it was built for: a pinned installer of
    another release than `cluster.version` would install that release instead. The pinned
    Kubernetes binaries must be the version cloud-init installs and kubeadm deploys."""
    if c.env.cluster.flavour == "kubeadm":
        _check_kubernetes_tools(c)
    version = c.env.cluster.version
    if version is None:
        return
    release = c.env.release
    if release is not None and not _of_release(release.version, version):
        c.error(("artifacts", "release", "version"), f"release {release.version} is not of "
                f"{version} (cluster.version)", f"pin a {version} release, or change "
                "cluster.version")
    for tool in c.env.tools:
        if tool.name in OPENSHIFT_TOOLS and not (
                tool.version == version or tool.version.startswith((f"{version}.",
                                                                    f"{version}-"))):
            c.error(("artifacts", "tools", tool.name, "version"),
                    f"{tool.name} {tool.version} is not of release {version} "
                    "(cluster.version)", f"pin the {tool.name} archive of a {version} "
                    "release, or change cluster.version")


def _of_release(pinned: str, version: str) -> bool:
    return pinned == version or pinned.startswith((f"{version}.", f"{version}-"))


def _check_kubernetes_tools(c: Checker) -> None:
    from generator.families.escape import UnsafeValue
    from generator.families.kubeadm import kubernetes_version

    try:
        wanted = kubernetes_version(c.env)
    except UnsafeValue:  # a malformed version is reported by its own check
        return
    for tool in c.env.tools:
        if tool.name in KUBERNETES_TOOLS and tool.version.removeprefix("v") != \
                wanted.removeprefix("v"):
            c.error(("artifacts", "tools", tool.name, "version"),
                    f"{tool.name} {tool.version} is not the cluster's Kubernetes {wanted} "
                    "(cluster.kubernetesVersion)", f"pin the {tool.name} of {wanted} (and its "
                    "sha256), or change cluster.kubernetesVersion")


def check_load_balancer(c: Checker) -> None:
    """A load-balancer VIP must lie in a declared network and not be another node's address."""
    haproxy = c.env.services.haproxy
    if haproxy is None or haproxy.address is None:
        return
    path, vip = ("services", "haproxy", "address"), haproxy.address
    networks = [net.cidr for net in c.env.networks]
    if not any(vip in net for net in networks):
        known = ", ".join(map(str, networks)) or "none declared"
        c.error(path, f"load-balancer address {vip} is outside every declared network",
                f"use a free address in one of: {known}")
    for node in c.env.nodes:
        for nic in node.nics:
            if nic.ip == vip and node.name != haproxy.host:
                c.error(path, f"load-balancer address {vip} is the address of node "
                        f"'{node.name}'", "use a free address, or the HAProxy host's own")


def check_dhcp_network(c: Checker) -> None:
    """The DHCP network must exist, hold the pool and have the DHCP host on it."""
    dhcp = c.env.services.dhcp
    if dhcp is None or not dhcp.network:
        return  # no host: reported by check_service_host_known
    networks = {net.name: net.cidr for net in c.env.networks}
    name = dhcp.network
    if name not in networks:
        c.error(("services", "dhcp", "network"), f"unknown network '{name}'",
                f"declared networks: {', '.join(sorted(networks)) or 'none'}")
        return
    if dhcp.pool is not None:
        for key, address in zip(("start", "end"), dhcp.pool, strict=True):
            _check_in_subnet(c, ("services", "dhcp", "pool", key), str(address),
                             networks[name], "pool address")
        _check_range_order(c, ("services", "dhcp", "pool"), *map(str, dhcp.pool))
        _check_nodes_outside_pool(c, name, str(dhcp.pool[0]), str(dhcp.pool[1]))
    node = next((n for n in c.env.nodes if n.name == dhcp.host), None)
    if node is not None and all(nic.network != name for nic in node.nics):
        c.error(("services", "dhcp", "host"), f"DHCP host '{dhcp.host}' has no NIC on '{name}'",
                "serve DHCP from a node on that network")


def _check_nodes_outside_pool(c: Checker, network: str, start: str, end: str) -> None:
    """A node's address inside the dynamic pool may be leased to another machine first.
    A warning: helper-node labs commonly reserve node addresses inside the pool (dhcpd
    still serves the reservation to its MAC), and `gen import helpernode` keeps them."""
    try:
        first, last = int(ip_address(start)), int(ip_address(end))
    except ValueError:
        return  # reported by the pool's own checks
    for path, node, nic in c.nics():
        if nic.get("network") != network or "ip" not in nic:
            continue
        try:
            address = int(ip_address(str(nic["ip"])))
        except ValueError:
            continue  # reported by the address checks
        if first <= address <= last:
            c.warn(path + ("ip",), f"node '{node['name']}' address {nic['ip']} is inside "
                    f"the DHCP pool {start}-{end}, which dhcpd leases to other machines",
                    "use an address outside services.dhcp.pool")


def check_service_host_known(c: Checker) -> None:
    """Every declared service needs a node to run on (renderers address files to it)."""
    services = c.env.services
    for key in ("dns", "dhcp", "http", "haproxy", "nfs"):
        service = getattr(services, key)
        if service is not None and not service.host:
            c.error(("services", key), f"services.{key} has no host",
                    f"set services.{key}.host or services.host to a node, or add a helper node")


def check_record_values(c: Checker) -> None:
    """SRV and CNAME values must parse: renderers split them into their parts."""
    records = c.data.get("services", {}).get("dns", {}).get("records", [])
    for i, record in enumerate(records):
        value, path = record["value"], ("services", "dns", "records", i, "value")
        if record["type"] == "SRV" and not _srv_ok(value):
            c.error(path, f"'{value}' is not an SRV value",
                    "write '<priority> <weight> <port> <target>', e.g. '0 10 2380 etcd-0'")
        if record["type"] == "CNAME" and not _DNS_NAME.fullmatch(value):
            c.error(path, f"'{value}' is not a host name for a CNAME record",
                    "name a host relative to the cluster domain, or end it with a dot")


_DNS_NAME = re.compile(r"([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}"
                       r"[a-z0-9])?)*\.?", re.IGNORECASE)


def _srv_ok(value: str) -> bool:
    parts = value.split()
    return (len(parts) == 4 and all(p.isdigit() and int(p) < 65536 for p in parts[:3])
            and _DNS_NAME.fullmatch(parts[3]) is not None)


# --- PXE, HAProxy and NFS (boot services) ----------------------------------------------

DISK_IMAGE_KINDS = ("image", "disk")  # a disk image either way (kind: disk, or the default)


def check_node_images(c: Checker) -> None:
    """A node's `image:` names a disk-image artifact of artifacts.os: converge uploads that
    pinned image into the pool, and the node's root disk backs onto it."""
    kinds = {a.name: a.kind for a in c.env.os_artifacts}
    images = sorted(name for name, kind in kinds.items() if kind in DISK_IMAGE_KINDS)
    choices = f"use one of: {', '.join(images)}" if images else \
        "declare the image under artifacts.os with its url and sha256"
    for i, node in enumerate(c.env.nodes):
        if node.image is None or node.image in images:
            continue
        why = (f"is an OS artifact of kind {kinds[node.image]}, not a disk image"
               if node.image in kinds else "names no artifact under artifacts.os")
        c.error(("nodes", i, "image"), f"image '{node.image}' of node '{node.name}' {why}",
                choices)


def check_haproxy_ports(c: Checker) -> None:
    """Ingress NodePorts: distinct, never crossed with the cluster's own, and ports free."""
    haproxy, k8s_model = c.env.services.haproxy, c.env.kubernetes
    if haproxy is None:
        return
    path = ("services", "haproxy", "ingressNodePorts")
    # Whether each side names its NodePorts is in the document; their values, defaults
    # filled in, in the model.
    lb = c.data["services"]["haproxy"].get("ingressNodePorts")
    ingress = c.data.get("kubernetes", {}).get("ingress", {})
    k8s = ({"http": k8s_model.ingress_http_nodeport, "https": k8s_model.ingress_https_nodeport}
           if k8s_model.ingress and ingress.get("nodePorts") else None)
    if lb and lb["http"] == lb["https"]:
        c.error(path, f"http and https both go to NodePort {lb['http']}",
                "give the https NodePort its own number")
    elif lb and k8s and (lb["http"], lb["https"]) == (k8s["https"], k8s["http"]):
        c.error(path, f"http {lb['http']} and https {lb['https']} are crossed: the ingress "
                f"serves http on {k8s['http']} and https on {k8s['https']}",
                "swap them: port 80 goes to the http NodePort")
    elif lb and k8s and (lb["http"], lb["https"]) != (k8s["http"], k8s["https"]):
        c.error(path, "ingress NodePorts differ from kubernetes.ingress.nodePorts",
                f"use http {k8s['http']} and https {k8s['https']}")
    elif k8s and not lb:
        c.error(("services", "haproxy"), "HAProxy does not know the ingress NodePorts",
                f"set ingressNodePorts: {{http: {k8s['http']}, https: {k8s['https']}}}")
    _check_port_clash(c, haproxy)


def _check_port_clash(c: Checker, haproxy: m.HaproxyService) -> None:
    http = c.env.services.http
    if http is None or http.host != haproxy.host:
        return
    if http.port in (80, 443, 6443, 22623, haproxy.stats_port):
        c.error(("services", "http", "port"), f"HTTP port {http.port} is taken by HAProxy on "
                "the same host", "use 8080")


def check_shared_ports(c: Checker) -> None:
    """Two listeners on one port of one host: HAProxy binds with SO_REUSEPORT, so a stats
    page on a frontend's port silently takes a share of that frontend's connections."""
    services = c.env.services
    haproxy = services.haproxy
    if haproxy is not None:
        kubeadm = c.env.cluster.flavour == "kubeadm"
        frontends = {80: "ingress-http", 443: "ingress-https", 6443: "api",
                     **({} if kubeadm else {22623: "machine-config"})}
        if haproxy.stats_port in frontends:
            c.error(("services", "haproxy", "statsPort"), f"stats port {haproxy.stats_port} "
                    f"is the port of HAProxy's {frontends[haproxy.stats_port]} frontend",
                    "use 9000")
    http, dns = services.http, services.dns
    if http and dns and http.port == 53 and http.host == dns.host:
        c.error(("services", "http", "port"), "HTTP port 53 is taken by DNS on the same host",
                "use 8080")


# --- hostile input: what the schema's types cannot say ---------------------------------

_URI = re.compile(r"(?P<driver>qemu|test)(\+(?P<transport>ssh|libssh|libssh2|tls|tcp|unix))?"
                  r"://(?P<server>[A-Za-z0-9._@:\[\]-]*)(?P<path>/[A-Za-z0-9._/-]*)"
                  r"(\?(?P<query>[^#]*))?")
# Query parameters an environment (so a pull request) may set: they only choose how to reach
# and authenticate to libvirtd. Left out on purpose: `command` (runs a program), `netcat`
# (names the program ssh runs remotely), `socket` (redirects the connection to any local
# socket), `proxy`, `name` (another URI), and every parameter that names a local file or
# weakens the host-key check: `keyfile`, `pkipath` (read a file), `known_hosts` with
# `known_hosts_verify=auto` (appends the server's key line to any file), `no_verify`.
URI_PARAMETERS = frozenset({"no_tty", "sshauth", "mode", "tls_priority"})
# The operator's --uri-override (typed by whoever runs gen, never read from the repo) may
# also name their own key, known_hosts file, certificates and libvirtd socket.
OPERATOR_URI_PARAMETERS = URI_PARAMETERS | {"keyfile", "known_hosts", "known_hosts_verify",
                                            "no_verify", "pkipath", "socket"}
_URI_VALUE = re.compile(r"[A-Za-z0-9._/~@:,+-]*")


def libvirt_uri_problem(uri: str, operator: bool = False) -> str | None:
    """Why gen will not open `uri`, or None. libvirt can run programs named in a URI (the
    `ext` transport, `command=`, `netcat=`) and read or write local files (`keyfile=`,
    `known_hosts=`); an environment file must never choose a program or a local
    file, so only known transports and connection parameters pass."""
    match = _URI.fullmatch(uri)
    if match is None:
        return "is not a qemu:// or test:// URI over ssh, libssh, libssh2, tls, tcp or unix"
    if not operator and match["driver"] == "test" and uri != "test:///default":
        # libvirt's test driver reads the state file the URI names and prints what it
        # cannot parse: from an environment that would show any local file in a CI log.
        return "names a test-driver state file, which only the operator may pass"
    allowed = OPERATOR_URI_PARAMETERS if operator else URI_PARAMETERS
    for item in (match["query"] or "").split("&") if match["query"] else ():
        name, eq, value = item.partition("=")
        if not eq or name not in allowed:
            return f"has query parameter {name!r}, which gen does not allow"
        if not _URI_VALUE.fullmatch(value):
            return f"has an odd value for {name!r}"
    return None


def check_hypervisor_uris(c: Checker) -> None:
    for i, hv in enumerate(c.data.get("hypervisors", [])):
        problem = libvirt_uri_problem(hv["uri"])
        if problem:
            c.error(("hypervisors", i, "uri"), f"libvirt URI {hv['uri']!r} {problem}",
                    "write it like qemu:///system or qemu+ssh://root@hv1/system; a key or "
                    "known_hosts file is the operator's: --uri-override hv1=URI; "
                    f"allowed parameters: {', '.join(sorted(URI_PARAMETERS))}")


_GENERATED_SECRETS = ("pullSecret", "kubeadm-token", "kubeadm-ca-cert-hash",
                      "kubeadm-certificate-key")


def _flagged_strings(c: Checker) -> list[tuple[FieldPath, str]]:
    """Every string of the document (a key or a value) that holds a secret marker or starts
    with file://, with its path, in document order: one walk serves both rules below, and a
    path tuple is built only for a string found (not for every value of 10,000 nodes)."""
    if c.flagged is None:
        found: list[tuple[FieldPath, str]] = []
        data = c.data
        if isinstance(data, str):
            if _FLAGGED_MARKER in data or data.startswith(_FLAGGED_URL):
                found.append(((), data))
        elif isinstance(data, dict):
            for key, value in data.items():  # a section that cannot hold one: its key only
                _scan_flagged({key: value if _may_hold_flagged(value) else None}, [], found)
        elif isinstance(data, list):
            _scan_flagged(data, [], found)
        c.flagged = found
    return c.flagged


_FLAGGED_MARKER, _FLAGGED_URL = SECRET_MARKER_PREFIX, "file://"
_FLAGGED_BYTES = (_FLAGGED_MARKER.encode(), _FLAGGED_URL.encode())


def _may_hold_flagged(value: Any) -> bool:
    """False only when no string inside `value` (key or value) can hold a secret marker
    or file://: pickle writes every string as its UTF-8 bytes, and both patterns are ASCII,
    so a string holding one puts its bytes in the pickle. One pickle in C skips a
    section's walk in Python (the 10,000 nodes: most of the document rules' time). Fast
    mode keeps no memo (every string is written out whole, twice as fast) and refuses a
    cycle with ValueError; anything it cannot pickle is walked."""
    if not isinstance(value, (dict, list)):
        return True
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    try:
        pickler.dump(value)
    except (pickle.PicklingError, TypeError, ValueError, AttributeError, RecursionError):
        return True
    blob = buffer.getvalue()
    return _FLAGGED_BYTES[0] in blob or _FLAGGED_BYTES[1] in blob


def _scan_flagged(data: dict[str, Any] | list[Any], path: list[str | int],
                  found: list[tuple[FieldPath, str]]) -> None:
    """_flagged_strings' walk: a string's path is built where one is found, a container's
    pushed only to descend into it (a module function: a self-calling closure would be a
    reference cycle, and a render runs with the cyclic GC off)."""
    keyed = isinstance(data, dict)
    pairs: Iterable[tuple[Any, Any]] = data.items() if isinstance(data, dict) else \
        enumerate(data)
    for key, value in pairs:
        if keyed and (_FLAGGED_MARKER in key or key.startswith(_FLAGGED_URL)):
            found.append(((*path, key), key))
        if isinstance(value, str):
            if _FLAGGED_MARKER in value or value.startswith(_FLAGGED_URL):
                found.append(((*path, key), value))
        elif isinstance(value, (dict, list)):
            path.append(key)
            _scan_flagged(value, path, found)
            path.pop()


def check_secret_markers(c: Checker) -> None:
    """A secret marker is what gen itself writes where a declared secret goes; written in
    the environment it would make converge fill a secret into any file (a TXT record, a
    description). Secret references ({env}/{file}) are the only way to name a secret."""
    for path, text in _flagged_strings(c):
        if SECRET_MARKER_PREFIX in text:
            c.error(path, f"a secret marker ({SECRET_MARKER_PREFIX}...@@) is not allowed here",
                    "name secrets only by reference in secret fields: {env: NAME} or "
                    "{file: PATH}")


def check_file_urls(c: Checker) -> None:
    """A file:// URL names a file inside the environment's (or blueprint's) folder; with a
    `..` it passed validate and lock and then made render call the lock damaged."""
    from generator.confine import relative_file_problem

    for path, text in _flagged_strings(c):
        if text.startswith("file://") and path and path[-1] == "url":
            problem = relative_file_problem(text.removeprefix("file://"))
            if problem is not None:
                c.error(path, problem, "write file://PATH relative to the environment's folder")


def check_secret_names(c: Checker) -> None:
    """Every secret name is one place's: a name under secrets: or openstack.passwords must
    not stand for another secret gen fills elsewhere."""
    taken = set(_GENERATED_SECRETS)
    for section in (("secrets",), ("openstack", "passwords")):
        holder: Any = c.data
        for part in section:
            holder = holder.get(part) if isinstance(holder, dict) else None
        for name in holder or {}:
            if name in taken or name.startswith("sshAuthorizedKeys"):
                c.error(section + (name,), f"secret name '{name}' is already used by another "
                        "secret", "give this secret its own name")
            taken.add(name)


def check_interfaces(c: Checker) -> None:
    """Each NIC of a node configures its own interface (one keyfile, one netplan entry)."""
    for i, node in enumerate(c.env.nodes):
        seen: set[str] = set()
        for j, nic in enumerate(node.nics):
            if nic.interface in seen:
                c.error(("nodes", i, "nics", j), f"node '{node.name}' has two NICs on "
                        f"interface {nic.interface}", "give each of the node's nics a distinct "
                        "interface name")
            seen.add(nic.interface)


def check_kubernetes_refs(c: Checker) -> None:
    k8s = c.data.get("kubernetes", {})
    apps = k8s.get("apps", [])
    _unique(c, [(("kubernetes", "apps", i, "name"), a["name"]) for i, a in enumerate(apps)],
            "app name", "give each app its own name")
    registry = k8s.get("registry") or {}
    if registry.get("enabled"):
        for key in ("host", "size", "nfsPath"):
            if key not in registry:
                c.error(("kubernetes", "registry"), f"an enabled registry needs {key}",
                        f"add kubernetes.registry.{key}")


def check_nfs_storage(c: Checker) -> None:
    """The NFS storage class mounts from the node that serves services.nfs."""
    nfs, service = c.env.kubernetes.nfs, c.env.services.nfs
    if nfs is None:
        return
    host = service.host if service is not None and service.host else None
    path = ("kubernetes", "storage", "nfs", "server")
    if nfs.server not in {node.name for node in c.env.nodes}:
        c.error(path, f"NFS server '{nfs.server}' is not a node",
                f"name the NFS host{f' ({host})' if host else ''}")
    elif host is not None and nfs.server != host:
        c.error(path, f"NFS server '{nfs.server}' is not the host of services.nfs ({host})",
                f"use {host}")



def _secret_refs(data: dict[str, Any]) -> Iterator[tuple[FieldPath, dict[str, Any]]]:
    cluster = data.get("cluster") or {}
    if isinstance(cluster.get("pullSecret"), dict):
        yield ("cluster", "pullSecret"), cluster["pullSecret"]
    for i, key in enumerate(cluster.get("sshAuthorizedKeys") or []):
        yield ("cluster", "sshAuthorizedKeys", i), key
    for section in (("secrets",), ("openstack", "passwords")):
        holder: Any = data
        for part in section:
            holder = holder.get(part) if isinstance(holder, dict) else None
        for name, ref in (holder or {}).items():
            yield section + (name,), ref


def check_secret_refs(c: Checker) -> None:
    """A reference names only what the operator set aside for gen: a file inside the
    secrets directory or a GEN_SECRET_* variable (reconcile/secrets.ref_problem), never
    ~/.ssh/id_rsa or another variable CI or root happens to hold."""
    from generator.reconcile.secrets import REF_HINT, ref_problem

    for path, ref in _secret_refs(c.data):
        for source in ("env", "file"):
            if isinstance(ref, dict) and isinstance(ref.get(source), str):
                problem = ref_problem(source, ref[source])
                if problem is not None:
                    c.error(path, problem, REF_HINT)


def _boot_file_clash(name: str) -> str | None:
    """What a TFTP boot file name would replace, or None (families/pxe.py's layout under
    every OS profile: GRUB's configs sit in `grub/` on Debian, in the root on el9)."""
    from generator.families.pxe import IMAGES

    first = name.split("/", 1)[0]
    if first.lower().startswith(".gen"):
        return "gen's own state"
    if first in ("pxelinux.cfg", "ipxe", "grub", IMAGES) or first.startswith("grub.cfg") \
            or name in ("boot.ipxe", "manifest.json", "ldlinux.c32"):
        return "a file gen renders or publishes in the TFTP root"
    return None


def check_boot_files(c: Checker) -> None:
    """DHCP boot files are published into the TFTP root beside gen's rendered files; a name
    equal to one of those (`grub/grub.cfg`, `boot.ipxe`, `.gen-managed.json`) would let the
    boot loader's bytes replace it, so each is its own file."""
    dhcp = (c.data.get("services") or {}).get("dhcp") or {}
    names = dhcp.get("bootFiles") or {}
    for key in ("bios", "uefi"):
        name = names.get(key)
        if not isinstance(name, str):
            continue
        clash = _boot_file_clash(name)
        if clash is not None:
            c.error(("services", "dhcp", "bootFiles", key), f"boot file '{name}' is {clash}",
                    "name the boot loader's own file, such as pxelinux.0 or grubx64.efi")
    # expand.py's defaults when a name is not given
    bios, uefi = names.get("bios", "pxelinux.0"), names.get("uefi", "grubx64.efi")
    if bios == uefi:
        key = "uefi" if "uefi" in names else "bios"
        c.error(("services", "dhcp", "bootFiles", key), "the UEFI boot file is the BIOS "
                "boot file", "give each its own name, such as pxelinux.0 and grubx64.efi")
    elif isinstance(bios, str) and isinstance(uefi, str):
        # both are published into one TFTP root: `boot` and `boot/grubx64.efi` cannot both
        # be there, one a file and the other below it as a directory
        for directory, file, key in ((bios, uefi, "uefi"), (uefi, bios, "bios")):
            if file.startswith(directory.rstrip("/") + "/"):
                c.error(("services", "dhcp", "bootFiles", key),  # only a given name nests
                        f"boot file '{file}' lies below boot file '{directory}', which would "
                        "have to be a file and a directory at once",
                        "give each its own name, such as pxelinux.0 and grubx64.efi")


MAX_NETWORKS = 64  # each network is a libvirt network per hypervisor, DHCP subnets, zones


def check_network_count(c: Checker) -> None:
    """Bounded output: at most MAX_NETWORKS networks and dns.MAX_REVERSE_ZONES reverse zones
    (a /9 or /17 network alone needs 128), so a pull request cannot make a render write
    tens of thousands of files."""
    from generator.families.dns import MAX_REVERSE_ZONES, reverse_zone_blocks

    networks = c.data.get("networks") or []
    if len(networks) > MAX_NETWORKS:
        c.error(("networks",), f"{len(networks)} networks are more than {MAX_NETWORKS} per "
                "environment", "split the site into several environments")
        return
    blocks: set[IPv4Network] = set()
    for net in networks:
        try:
            blocks.update(reverse_zone_blocks(IPv4Network(net["cidr"])))
        except (ValueError, KeyError, TypeError):
            continue  # check_network_cidrs names it
        if len(blocks) > MAX_REVERSE_ZONES:
            c.error(("networks",), f"the networks need more than {MAX_REVERSE_ZONES} "
                    "reverse DNS zones", "use networks aligned on /8, /16 or /24 (or "
                    "smaller than /24), or fewer of them")
            return


# Kernel arguments that make the node run a program the argument names, or drop to a root
# shell on its console, before Ignition or the installer: code from data on every node.
_PROGRAM_KERNEL_ARGS = ("init", "rdinit", "rd.break", "rd.shell", "rd.emergency",
                        "systemd.unit", "systemd.debug_shell", "systemd.debug-shell",
                        "emergency", "rescue", "single")


def check_kernel_args_run_nothing(c: Checker) -> None:
    pxe = (c.data.get("services") or {}).get("pxe") or {}
    for k, arg in enumerate(pxe.get("kernelArgs") or []):
        key = arg.split("=", 1)[0] if isinstance(arg, str) else ""
        if key.lower() in _PROGRAM_KERNEL_ARGS:
            c.error(("services", "pxe", "kernelArgs", k), f"kernel argument '{key}' runs a "
                    "program or a shell on the node instead of the installer",
                    "debug a node from its console; gen never passes it")

def check_mirror(c: Checker) -> None:
    """The mirror's credentials name a declared secret; its host names a node."""
    mirror = c.data.get("mirror") or {}
    name = mirror.get("credentials")
    if name is not None and name not in (c.data.get("secrets") or {}):
        c.error(("mirror", "credentials"), f"secret '{name}' is not declared",
                f"declare it under secrets ({name}: {{file: ...}} or {{env: GEN_SECRET_...}})")
    host = mirror.get("host")
    if host is not None and host not in {n.name for n in c.env.nodes}:
        c.error(("mirror", "host"), f"node '{host}' does not exist",
                f"name one of: {', '.join(n.name for n in c.env.nodes)}")

CHECKS = (check_unique_names, check_unique_addresses, check_unicast_macs, check_network_cidrs,
          check_nic_addresses, check_cidr_overlap, check_hypervisors, check_control_plane,
          check_role_minimums, check_service_hosts, check_records, check_ip_sources, check_sizes,
          check_openstack, check_record_values, check_gateways,
          check_dns_servers, check_hypervisor_uris, check_secret_markers, check_file_urls,
          check_secret_names,
          check_kubernetes_refs, check_pool_paths, check_dnsmasq_host_names,
          check_secret_refs, check_boot_files, check_network_count,
          check_kernel_args_run_nothing)
MODEL_CHECKS = (check_load_balancer, check_dhcp_network, check_service_host_known,
                check_haproxy_ports, check_interfaces, check_nfs_storage, check_unique_volumes,
                check_node_images, check_openstack_host, check_shared_ports,
                check_tool_versions, check_mirror)
