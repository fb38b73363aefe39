"""Import a helper-node playbook `vars.yaml` (redhat-cop/ocp4-helpernode, its vars-doc.md
format) as an openshift-upi environment.

Every field of the file gets one report line: `mapped` (with the environment path it went
to), `not supported` (the playbook does something gen does not manage; the import goes on)
or `refused` (gen cannot describe it faithfully, or the value is wrong; nothing is written).

What the playbook's templates build from the file, and how gen rebuilds it:
- DNS: an A record per helper/bootstrap/master/worker/other host, `api`, `api-int` and
  `*.apps` -> `dns.lb_ipaddr` (default the helper), `etcd-N` + SRV per master, `ns1` and
  `smtp` -> the helper, `registry` -> the helper with `setup_registry.deploy`; PTRs for the
  hosts. gen writes every host as a node (A + PTR), the load balancer as
  `services.haproxy.address`, and `ns1`/`smtp`/`registry` as `services.dns.records`.
- DHCP: a reservation (MAC -> address) per bootstrap/master/worker/other host, the pool,
  the router, the helper as DNS server, `deny unknown-clients`, PXE from the helper.
- HAProxy: 6443 and 22623 to bootstrap + masters, 80/443 to the workers (the masters when
  there are none), `balance source`.
- NFS: `/export` to bootstrap, masters and workers (rw,sync,no_wdelay,no_root_squash,insecure).
The helper-node project knows nothing of hypervisors: nodes are imported as bare metal
(no `hypervisor`); `gen import libvirt` (or `gen node`/`gen set`) places them on one.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ruamel.yaml.comments import CommentedMap

from generator.errors import Location
from generator.importers import Imported, Line, cmap, cseq, note
from generator.loader import Document, FieldPath, format_path, load_yaml

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
IFACE = re.compile(r"^[a-z][a-z0-9]{0,14}$")
HELPER_REF = re.compile(r"^\{\{\s*helper\.ipaddr\s*\}\}$")
VERSION = re.compile(r"openshift-(?:install|client)-linux-(\d+\.\d+)")
NFS_OPTIONS = ["rw", "sync", "no_wdelay", "no_root_squash", "insecure"]
NETWORK = "lan"


class _Reader:
    """The vars document plus the report being built."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.lines: list[Line] = []
        self.seen: set[FieldPath] = set()
        self._reported: set[Line] = set()

    def where(self, path: FieldPath) -> Location:
        return self.doc.locate(path)

    def get(self, path: FieldPath, default: Any = None) -> Any:
        value: Any = self.doc.data
        for part in path:
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return default
            elif not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    def mapped(self, path: FieldPath, target: str) -> None:
        self._line(path, "mapped", f"-> {target}")

    def unsupported(self, path: FieldPath, why: str) -> None:
        self._line(path, "not supported", why)

    def refuse(self, path: FieldPath, why: str) -> None:
        self._line(path, "refused", why)

    def _line(self, path: FieldPath, status: str, detail: str) -> None:
        self.seen.add(path)
        line = Line(self.where(path), status, detail)
        if line not in self._reported:  # a value read twice is reported once
            self._reported.add(line)
            self.lines.append(line)

    def text(self, path: FieldPath, required: bool = True) -> str | None:
        """A scalar as text; a missing required one or a non-scalar is refused."""
        value = self.get(path)
        parent = self.get(path[:-1])
        if parent is not None and not isinstance(parent, dict) and isinstance(path[-1], str):
            return None  # the section itself is reported (see _sections)
        if value is None:
            if required:
                self.refuse(path, "missing: the helper-node playbook requires it")
            return None
        if isinstance(value, (dict, list)):
            self.refuse(path, "must be a single value")
            return None
        return str(value).strip()

    def boolean(self, path: FieldPath) -> bool | None:
        """A YAML 1.2 boolean (true/false), None when absent; anything else ("false" in
        quotes, yes, maybe) is refused, never guessed at."""
        value = self.get(path)
        if value is None or isinstance(value, bool):
            return value
        shown = repr(value) if not isinstance(value, (dict, list)) else "a collection"
        self.refuse(path, f"{shown[:60]} is not true or false (write true or false, "
                    "unquoted)")
        return None

    def address(self, path: FieldPath, required: bool = True) -> str | None:
        value = self.text(path, required)
        if value is None:
            return None
        if HELPER_REF.match(value) and path != ("helper", "ipaddr"):
            value = str(self.get(("helper", "ipaddr"), ""))
        try:
            return str(IPv4Address(value))
        except ValueError:
            self.refuse(path, f"'{value}' is not an IPv4 address")
            return None


def import_helpernode(text: str, display: str, env_name: str) -> Imported:
    """The environment described by a helper-node vars file (pure)."""
    doc = load_yaml(text, display)
    if not isinstance(doc.data, dict) or not doc.data:
        line = Line(Location(display), "refused", "a helper-node vars file is a mapping "
                    "(helper:, dns:, dhcp:, bootstrap:, masters:, ...)")
        return Imported(CommentedMap(), [line])
    r = _Reader(doc)
    _sections(r)
    data = _environment(r, env_name, display)
    _unknown(r)
    r.lines.sort(key=lambda line: (line.location.line, line.location.column,
                                   line.location.path))
    return Imported(data, r.lines)


# Sections that must be mappings (the rest of the format's sections are checked where read).
_MAPPINGS = {"helper": "name, ipaddr", "dns": "domain, clusterid, forwarder1, ...",
             "dhcp": "router, bcast, netmask, poolstart, poolend, ipid, netmaskid",
             "bootstrap": "name, ipaddr, macaddr"}


def _sections(r: _Reader) -> None:
    for key, fields in _MAPPINGS.items():
        value = r.get((key,))
        if value is not None and not isinstance(value, dict):
            r.refuse((key,), f"must be a mapping ({fields})")


def _environment(r: _Reader, env_name: str, display: str) -> CommentedMap:
    static = _flag(r, "staticips", "nodes get boot: image (ISO installs, no PXE files); "
                   "the blueprint still renders a dhcpd.conf (deny unknown-clients) whose "
                   "reservations carry derived MACs no machine has: leave DHCP uninstalled")
    _refuse_if_true(r, "ipi", "IPI installs are not a gen blueprint (openshift-upi is UPI)")
    _refuse_if_true(r, "ppc64le", "gen renders x86_64 (pxelinux/GRUB for PC) only")
    if r.get(("high_availability",)) is not None:
        r.refuse(("high_availability",), "several helpers sharing a keepalived VIP are not "
                 "supported: import with one helper")
    cluster_domain = _cluster(r)
    network, net = _network(r)
    helper = _helper(r, net)
    hosts = _hosts(r, net, static)
    data = cmap(("apiVersion", "gen/v1"), ("kind", "Environment"),
                ("metadata", cmap(("name", env_name),
                                  ("description", f"imported from helper-node vars {display}"))),
                ("blueprint", "openshift-upi"))
    data["cluster"] = cluster_domain
    data["networks"] = cseq([network])
    data["hypervisors"] = cseq([_hypervisor()])
    nodes = [helper] + hosts
    data["nodes"] = cseq(nodes)
    workers = [n for n in hosts if n["role"] == "worker"]
    if not workers and any(n["role"] == "master" for n in hosts):
        cluster_domain["mastersSchedulable"] = True
        note(cluster_domain, "mastersSchedulable", "no workers: a compact cluster, the "
             "masters run the routers (the playbook points 80/443 at them)")
    data["services"] = _services(r, hosts, helper, net, static)
    artifacts = _artifacts(r, data["services"])
    if artifacts:
        data["artifacts"] = cmap(("os", artifacts))
    return data


def _flag(r: _Reader, key: str, meaning: str) -> bool:
    value = r.boolean((key,))
    if value is None:
        return False
    r.mapped((key,), meaning if value else "the default (false)")
    return value


def _refuse_if_true(r: _Reader, key: str, why: str) -> None:
    value = r.boolean((key,))
    if value is True:
        r.refuse((key,), why)
    elif value is False:
        r.mapped((key,), "the default (false)")


def _cluster(r: _Reader) -> CommentedMap:
    if isinstance(r.get(("dns", "clusterid")), list):
        r.refuse(("dns", "clusterid"), "several clusters in one file (the multicluster "
                 "format) are not supported: write one vars file per cluster and import "
                 "each into its own environment")
        clusterid = None
    else:
        clusterid = r.text(("dns", "clusterid"))
    domain = r.text(("dns", "domain"))
    cluster = cmap(("name", (clusterid or "cluster").lower()),
                   ("baseDomain", (domain or "example.com").lower()))
    if clusterid is not None:
        _check_name(r, ("dns", "clusterid"), clusterid.lower(), "cluster.name")
    if domain is not None:
        r.mapped(("dns", "domain"), "cluster.baseDomain")
    version = _version(r)
    if version:
        cluster["version"] = version
    cluster["pullSecret"] = cmap(("file", "pull-secret"), flow=True)
    note(cluster, "pullSecret", "not in the vars file: copy ~/.openshift/pull-secret into "
         "the secrets directory")
    gen_key = r.boolean(("ssh_gen_key",))
    if gen_key is False:
        r.mapped(("ssh_gen_key",), "no cluster.sshAuthorizedKeys (add your own key)")
    else:
        if gen_key is True:
            r.mapped(("ssh_gen_key",), "cluster.sshAuthorizedKeys (helper_rsa.pub)")
        cluster["sshAuthorizedKeys"] = cseq([cmap(("file", "helper_rsa.pub"),
                                                  flow=True)])
        note(cluster, "sshAuthorizedKeys", "the key the playbook generates (ssh_gen_key)")
    return cluster


def _version(r: _Reader) -> str | None:
    for key in ("ocp_installer", "ocp_client"):
        value = r.get((key,))
        if value is None:
            continue
        found = VERSION.search(str(value))
        if key == "ocp_client":
            r.unsupported((key,), "gen does not install the oc client; fetch it yourself")
        elif found and found.group(1) == (pinned := _pinned_version()):
            r.mapped((key,), f"cluster.version {found.group(1)} (gen runs the installer "
                     "of that version itself)")
            return found.group(1)
        elif found:
            r.unsupported((key,), f"the playbook installs OpenShift {found.group(1)}; the "
                          f"openshift-upi blueprint pins a {pinned} release (its "
                          "artifacts.release and artifacts.tools, by digest and sha256), "
                          "which gen installs; to stay on "
                          f"{found.group(1)}, set cluster.version and override those "
                          "pins in a reviewed change")
            return None
        else:
            r.unsupported((key,), "no version in the URL; gen runs the installer of "
                          "cluster.version itself (set it with gen set)")
    return None


def _pinned_version() -> str | None:
    """cluster.version of the built-in openshift-upi blueprint: the release its tools pin."""
    from generator.loader import load_yaml
    from generator.resources import builtin_blueprint

    folder = builtin_blueprint("openshift-upi")
    if folder is None:
        return None
    path = folder / "blueprint.yaml"
    data = load_yaml(path.read_text(), str(path)).data
    version = data.get("defaults", {}).get("cluster", {}).get("version")
    return str(version) if version is not None else None


def _check_name(r: _Reader, path: FieldPath, name: str, target: str) -> bool:
    if not NAME.match(name):
        r.refuse(path, f"'{name}' is not a valid name (lowercase letters, digits and '-', "
                 "starting and ending with a letter or digit)")
        return False
    r.mapped(path, target)
    return True


def _network(r: _Reader) -> tuple[CommentedMap, IPv4Network | None]:
    """The one network every host is on: from dhcp.ipid/netmaskid, else the helper's address
    and dhcp.netmask, else (static IPs, no dhcp section) a /24 around the helper."""
    helper_ip = r.address(("helper", "ipaddr"))
    ipid = r.address(("dhcp", "ipid"), required=False)
    mask = r.address(("dhcp", "netmaskid"), required=False) or \
        r.address(("dhcp", "netmask"), required=False)
    net: IPv4Network | None = None
    assumed = False
    try:
        if ipid and mask:
            net = IPv4Network(f"{ipid}/{mask}")
        elif helper_ip and mask:
            net = IPv4Network(f"{helper_ip}/{mask}", strict=False)
        elif helper_ip:
            net, assumed = IPv4Network(f"{helper_ip}/24", strict=False), True
    except ValueError:
        r.refuse(("dhcp", "ipid"), f"{ipid}/{mask} is not a network (host bits set, or a "
                 "netmask that is not contiguous)")
    network = cmap(("name", NETWORK), ("cidr", str(net) if net else "192.0.2.0/24"))
    if assumed:
        note(network, "cidr", "not in the vars file (no dhcp section): a /24 around the "
             "helper is assumed; check it")
    if ipid:
        r.mapped(("dhcp", "ipid"), f"networks[{NETWORK}].cidr")
    if r.get(("dhcp", "netmaskid")) is not None:
        r.mapped(("dhcp", "netmaskid"), f"networks[{NETWORK}].cidr")
    _check_same_mask(r, net)
    _check_broadcast(r, net)
    router = r.address(("dhcp", "router"), required=False)
    if router:
        _inside(r, ("dhcp", "router"), router, net, f"networks[{NETWORK}].gateway")
        network["gateway"] = router
    else:
        network["gateway"] = str(next(net.hosts())) if net else "192.0.2.1"
        note(network, "gateway", "not in the vars file: the network's first address is "
             "assumed; check it")
    dns = r.address(("dhcp", "dns"), required=False)
    if dns:
        r.mapped(("dhcp", "dns"), f"networks[{NETWORK}].dns")
    network["dns"] = cseq([dns or helper_ip or "192.0.2.1"], flow=True)
    network["bridge"] = "br0"
    note(network, "bridge", "not in the vars file: the host bridge VMs would join; only "
         "nodes on a hypervisor use it")
    return network, net


def _check_same_mask(r: _Reader, net: IPv4Network | None) -> None:
    mask = r.address(("dhcp", "netmask"), required=False)
    if mask is None or net is None:
        return
    if str(net.netmask) != mask:
        r.refuse(("dhcp", "netmask"), f"{mask} differs from the network {net} "
                 "(dhcp.ipid/netmaskid); gen has one network: make them agree")
    else:
        r.mapped(("dhcp", "netmask"), f"networks[{NETWORK}].cidr (the same prefix)")


def _check_broadcast(r: _Reader, net: IPv4Network | None) -> None:
    bcast = r.address(("dhcp", "bcast"), required=False)
    if bcast is None or net is None:
        return
    if str(net.broadcast_address) != bcast:
        r.refuse(("dhcp", "bcast"), f"{bcast} is not the broadcast address of {net} "
                 f"({net.broadcast_address}); gen derives it from the network")
    else:
        r.mapped(("dhcp", "bcast"), f"derived from networks[{NETWORK}].cidr")


def _inside(r: _Reader, path: FieldPath, ip: str, net: IPv4Network | None,
            target: str) -> bool:
    if net is not None and IPv4Address(ip) not in net:
        r.refuse(path, f"{ip} is outside the network {net}")
        return False
    r.mapped(path, target)
    return True


def _hypervisor() -> CommentedMap:
    hv = cmap(("name", "hv1"), ("uri", "qemu:///system"),
              ("pool", cmap(("name", "default"), ("path", "/var/lib/libvirt/images"),
                            flow=True)))
    note(hv, "name", "not in the vars file: the nodes below are bare metal (no "
         "hypervisor); gen import libvirt or gen set puts them on one")
    return hv


def _helper(r: _Reader, net: IPv4Network | None) -> CommentedMap:
    name = r.text(("helper", "name")) or "helper"
    if not _check_name(r, ("helper", "name"), name.lower(), "nodes[0].name (role helper)"):
        name = "helper"
    ip = r.address(("helper", "ipaddr"))
    if ip:
        _inside(r, ("helper", "ipaddr"), ip, net, "nodes[0].nics[0].ip")
    nic = cmap(("network", NETWORK), ("ip", ip or "192.0.2.2"), flow=True)
    iface = r.text(("helper", "networkifacename"), required=False)
    if iface is not None:
        if IFACE.match(iface):
            nic["interface"] = iface
            r.mapped(("helper", "networkifacename"), "nodes[0].nics[0].interface")
        else:
            r.refuse(("helper", "networkifacename"), f"'{iface}' is not an interface name")
    node = cmap(("name", name.lower()), ("role", "helper"), ("nics", cseq([nic])))
    _known(r, ("helper",), {"name", "ipaddr", "networkifacename"})
    return node


def _hosts(r: _Reader, net: IPv4Network | None, static: bool) -> list[CommentedMap]:
    out: list[CommentedMap] = []
    paths: list[FieldPath] = []
    bootstrap = r.get(("bootstrap",))
    if isinstance(bootstrap, dict):
        out.append(_host(r, ("bootstrap",), "bootstrap", net, static, len(out) + 1))
        paths.append(("bootstrap",))
    elif bootstrap is None:
        r.refuse(("bootstrap",), "missing: an OpenShift UPI install needs a bootstrap node")
    for key, role in (("masters", "master"), ("workers", "worker"), ("other", "storage")):
        items = r.get((key,))
        if items is None:
            if key == "masters":
                r.refuse((key,), "missing: OpenShift needs masters (three)")
            continue
        if not isinstance(items, list):
            r.refuse((key,), "must be a list of hosts (name, ipaddr, macaddr)")
            continue
        for index in range(len(items)):
            out.append(_host(r, (key, index), role, net, static, len(out) + 1))
            paths.append((key, index))
    _unique(r, out, paths)
    return out


def _host(r: _Reader, path: FieldPath, role: str, net: IPv4Network | None, static: bool,
          position: int) -> CommentedMap:
    where = f"nodes[{position}]"
    if not isinstance(r.get(path), dict):
        r.refuse(path, "must be a mapping with name, ipaddr and macaddr")
        return cmap(("name", f"invalid-{position}"), ("role", role),
                    ("nics", cseq([cmap(("network", NETWORK), ("ip", "192.0.2.3"))])))
    raw = r.text(path + ("name",)) or f"host{position}"
    name = raw.lower()
    _check_name(r, path + ("name",), name, f"{where}.name (role {role})")
    ip = r.address(path + ("ipaddr",))
    if ip:
        _inside(r, path + ("ipaddr",), ip, net, f"{where}.nics[0].ip (A and PTR record)")
    nic = cmap(("network", NETWORK), ("ip", ip or "192.0.2.3"), flow=True)
    mac = r.text(path + ("macaddr",), required=not static)
    if mac is not None:
        if MAC.match(mac):
            nic["mac"] = mac.lower()
            r.mapped(path + ("macaddr",), f"{where}.nics[0].mac (DHCP reservation)")
        else:
            r.refuse(path + ("macaddr",), f"'{mac}' is not a MAC address")
    node = cmap(("name", name), ("role", role))
    if role == "storage" or static:
        node["boot"] = "image"
    if role == "storage":
        # Bare metal: gen never sizes it; the schema still wants a size on every node.
        node["vcpu"] = 1
        node["memory"] = "1GiB"
        note(node, "role", "helper-node `other` host: not part of the cluster; only its "
             "DNS records and DHCP reservation are rendered")
    elif static:
        note(node, "boot", "staticips: installed from ISO, not PXE")
    node["nics"] = cseq([nic])
    _known(r, path, {"name", "ipaddr", "macaddr"})
    return node


def _unique(r: _Reader, nodes: list[CommentedMap], paths: list[FieldPath]) -> None:
    """Two hosts with one name, address or MAC would fight over records and leases."""
    for key, field_path in (("name", ("name",)), ("ip", ("ipaddr",)), ("mac", ("macaddr",))):
        first: dict[str, FieldPath] = {}
        for node, path in zip(nodes, paths, strict=True):
            if not isinstance(r.get(path), dict):
                continue  # reported as not a mapping
            value = node.get(key) if key == "name" else node["nics"][0].get(key) \
                if "nics" in node else None
            if value is None:
                continue
            if value in first:
                r.refuse(path + field_path, f"'{value}' is also {format_path(first[value])}'s "
                         f"{field_path[0]}; each host needs its own")
            else:
                first[str(value)] = path


def _services(r: _Reader, hosts: list[CommentedMap], helper: CommentedMap,
              net: IPv4Network | None, static: bool) -> CommentedMap:
    services = cmap()
    if helper["name"] != "helper":  # the blueprint's services run on a node named helper
        services["host"] = helper["name"]
    dns = cmap(("provider", "bind"))
    forwarders = [ip for key in ("forwarder1", "forwarder2")
                  if (ip := _mapped_address(r, ("dns", key), "services.dns.forwarders"))]
    if forwarders:
        dns["forwarders"] = cseq(forwarders, flow=True)
    helper_ip = helper["nics"][0]["ip"]
    records = [cmap(("name", "ns1"), ("type", "A"), ("value", helper_ip), flow=True),
               cmap(("name", "smtp"), ("type", "A"), ("value", helper_ip), flow=True)]
    if _registry(r):
        records.append(cmap(("name", "registry"), ("type", "A"), ("value", helper_ip),
                            flow=True))
    dns["records"] = cseq(records)
    note(dns, "records", "the playbook's zone always has ns1 and smtp (and registry with "
         "setup_registry) at the helper")
    _known(r, ("dns",), {"domain", "clusterid", "forwarder1", "forwarder2", "lb_ipaddr"})
    services["dns"] = dns
    dhcp = cmap(("provider", "isc"), ("leaseTime", 14400))
    note(dhcp, "leaseTime", "the playbook's dhcpd.conf lease time")
    start = r.address(("dhcp", "poolstart"), required=False)
    end = r.address(("dhcp", "poolend"), required=False)
    if start and end:
        if _inside(r, ("dhcp", "poolstart"), start, net, "services.dhcp.pool.start") and \
                _inside(r, ("dhcp", "poolend"), end, net, "services.dhcp.pool.end"):
            dhcp["pool"] = cmap(("start", start), ("end", end), flow=True)
    elif start or end:
        r.refuse(("dhcp", "poolstart") if start else ("dhcp", "poolend"),
                 "poolstart and poolend go together")
    _known(r, ("dhcp",), {"router", "bcast", "netmask", "dns", "poolstart", "poolend",
                          "ipid", "netmaskid"})
    if static:
        note(dhcp, "provider", "staticips: the playbook runs no DHCP; gen's blueprint "
             "does, with no reservations (every node has boot: image)")
    services["dhcp"] = dhcp
    haproxy = cmap(("balance", "source"))
    note(haproxy, "balance", "as the playbook's haproxy.cfg")
    lb = _mapped_address(r, ("dns", "lb_ipaddr"), "services.haproxy.address (api, "
                         "api-int, *.apps)")
    if lb and lb != helper_ip:
        haproxy["address"] = lb
    services["haproxy"] = haproxy
    disk = r.text(("disk",), required=False)
    if disk is not None:
        dev = disk if disk.startswith("/dev/") else f"/dev/{disk}"
        if re.match(r"^/dev/[a-z][a-z0-9]*$", dev):
            services["pxe"] = cmap(("installDev", dev))
            r.mapped(("disk",), "services.pxe.installDev")
        else:
            r.refuse(("disk",), f"'{disk}' is not a disk name such as vda or sda")
    nfs = _nfs(r, hosts)
    if nfs is not None:
        services["nfs"] = nfs
    _other_top_level(r)
    return services


def _mapped_address(r: _Reader, path: FieldPath, target: str) -> str | None:
    ip = r.address(path, required=False)
    if ip:
        r.mapped(path, target)
    return ip


def _registry(r: _Reader) -> bool:
    section = r.get(("setup_registry",))
    if section is None:
        return False
    if not isinstance(section, dict):
        r.refuse(("setup_registry",), "must be a mapping (deploy, registry_image, ...)")
        return False
    deploy = r.boolean(("setup_registry", "deploy")) is True
    for key in section:
        path = ("setup_registry", key)
        if key == "deploy" and isinstance(section[key], bool):
            r.mapped(path, "services.dns.records registry -> the helper" if deploy
                     else "nothing (no registry)")
        elif key in ("registry_user", "registry_password"):
            r.unsupported(path, "the registry's credentials stay with the registry; gen "
                          "writes no secret values (its value is not copied)")
        else:
            r.unsupported(path, "gen does not run the mirror registry or mirror releases; "
                          "keep running the registry as you do")
    return deploy


def _nfs(r: _Reader, hosts: list[CommentedMap]) -> CommentedMap | None:
    section = r.get(("nfs",))
    image = r.get(("nfs_provisioner_image",))
    if image is not None:
        r.unsupported(("nfs_provisioner_image",), "gen does not deploy the NFS provisioner "
                      "on OpenShift")
    if section is not None:
        for key in (section if isinstance(section, dict) else {"": None}):
            r.unsupported(("nfs", key) if key else ("nfs",),
                          "an external NFS server for the provisioner is not gen's to "
                          "manage; the helper exports nothing")
        return None
    clients = [cmap(("host", n["nics"][0]["ip"]), ("options", cseq(NFS_OPTIONS, flow=True)),
                    flow=True)
               for n in hosts if n["role"] in ("bootstrap", "master", "worker")]
    if not clients:
        return None
    nfs = cmap(("exports", cseq([cmap(("path", "/export"), ("clients", cseq(clients)))])))
    note(nfs, "exports", "the playbook's exports: /export to every cluster node")
    return nfs


def _artifacts(r: _Reader, services: CommentedMap) -> CommentedMap:
    out = cmap()
    for key, name, kind in (("ocp_install_kernel", "rhcos-live-kernel", "kernel"),
                            ("ocp_initramfs", "rhcos-live-initramfs", "initramfs"),
                            ("ocp_bios", None, None)):
        url = r.text((key,), required=False)
        if url is None:
            continue
        if url.lower().startswith("file:"):
            # In the playbook a file:// URL is a path on the helper; gen lock would read
            # it on the machine running gen (and converge would publish it).
            r.refuse((key,), "a file:// URL names a file on the helper, which gen cannot "
                     "read: give the http:// or https:// URL it was downloaded from")
            continue
        if not re.match(r"^https?://\S+$", url):
            r.refuse((key,), f"'{url}' is not an http:// or https:// URL")
            continue
        if name is None:  # rootfs (4.6+) or the metal image older installers write
            live = "rootfs" in url.rsplit("/", 1)[-1]
            name, kind = ("rhcos-live-rootfs", "rootfs") if live else ("rhcos-metal", "image")
            if not live:
                services.setdefault("pxe", cmap())["rootfs"] = "image"
        out[name] = cmap(("url", url), ("kind", kind), flow=True)
        r.mapped((key,), f"artifacts.os.{name} (gen lock pins its sha256)")
    return out


# Top-level fields with a meaning but nothing for gen to do, and why.
_INFORMATIONAL = {
    "chronyconfig": "gen writes no chrony MachineConfig; add one as a manifest",
    "pxe": "gen writes one PXE file per node MAC, never a catch-all default",
    "uefi": "gen's DHCP hands BIOS and UEFI clients their boot file by client arch",
    "install_filetranspiler": "filetranspiler is not needed: gen writes Ignition itself",
    "force_ocp_download": "gen downloads nothing at converge (artifacts are locked)",
    "ocp_ver": "see ocp_installer / cluster.version",
    "maj_ver": "see ocp_installer / cluster.version",
    "rhcos_ver": "see the ocp_* artifact URLs",
    "base_url": "see the ocp_* artifact URLs",
    "release_image": "gen runs openshift-install of cluster.version",
    "secure_named": "gen's named.conf allows recursion for the declared networks only",
    "secure_http": "gen's httpd serves only /install/ and /ignition/",
    "secure_nfs": "gen's exports list each node",
}
# The mirror registry (Quay) the playbook can install instead of registry:2; its values,
# passwords among them, are never copied.
_MIRROR = ("mirror_registry_dir", "quay_index_image", "local_copy_dir", "force_reinstall",
           "registry_url", "registry_username", "registry_password", "init_password",
           "registry_hostname", "quay_storage_path", "sqlite_storage_path", "ssl_cert_path",
           "ssl_key_path")
_INFORMATIONAL.update({key: "gen does not install the mirror registry; its settings stay "
                       "with it (no value is copied)" for key in _MIRROR})

_HANDLED = {"staticips", "ipi", "ppc64le", "high_availability", "helper", "dns", "dhcp",
            "bootstrap", "masters", "workers", "other", "disk", "setup_registry", "nfs",
            "nfs_provisioner_image", "ocp_install_kernel", "ocp_initramfs", "ocp_bios",
            "ocp_installer", "ocp_client", "ssh_gen_key"}


def _other_top_level(r: _Reader) -> None:
    """One line per field of a section gen has no use for (the section itself if a value)."""
    for key, why in _INFORMATIONAL.items():
        value = r.get((key,))
        if value is None:
            continue
        if key == "uefi":
            if r.boolean((key,)) is not None:
                r.mapped((key,), f"nothing to set ({why})")
            continue
        for sub in list(value) if isinstance(value, dict) else [None]:
            r.unsupported((key, sub) if sub is not None else (key,), why)


def _known(r: _Reader, path: FieldPath, fields: set[str]) -> None:
    value = r.get(path)
    if isinstance(value, dict):
        for key in value:
            if key not in fields:
                r.refuse(path + (key,), f"not a field of the helper-node format's "
                         f"{format_path(path)} section (known: {', '.join(sorted(fields))})")


def _unknown(r: _Reader) -> None:
    for key in r.doc.data:
        if key not in _HANDLED and not _INFORMATIONAL.get(key):
            r.refuse((key,), "not a field of the helper-node vars format "
                     "(see vars-doc.md in redhat-cop/ocp4-helpernode)")
        elif key in _HANDLED and (key,) not in r.seen and \
                not any(p[:1] == (key,) for p in r.seen):
            r.mapped((key,), "see its fields")
