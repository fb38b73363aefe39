"""DNS family: the cluster domain and its reverse zones, served by BIND or dnsmasq.

Both providers render the same record set (`forward_records`, `reverse_records`), so they
answer every name alike. Output lives on the DNS host:

- BIND: `hosts/<h>/dns/named.conf` and `hosts/<h>/dns/zones/<zone>.zone`. The DNS host's
  OS profile says where converge installs the zones (`/var/named/zones` on el9,
  `/etc/bind/zones` on Debian) and named's working `directory` (services.dns.directory,
  default the profile's: /var/named, /var/cache/bind). A zone's `file` is relative to
  `directory` when the zones lie below it (el9: a test can move them by rewriting that one
  statement), else absolute.
- dnsmasq: `hosts/<h>/dnsmasq/dns.conf`, a conf-dir fragment that coexists with the DHCP
  family's `dhcp.conf` in one dnsmasq process.

Reverse zones are octet-aligned, no RFC 2317 delegation: a network whose prefix is not a
multiple of 8 is served as every covered zone of the next longer octet boundary (a /20 is
sixteen /24 zones, a /12 sixteen /16 zones); a network longer than /24 is served as its
enclosing /24 zone. The helper is authoritative for its own networks, nobody delegates to
it, so classless delegation would only add CNAMEs.
"""

from __future__ import annotations

import hashlib
import posixpath
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple

from generator.errors import UserError
from generator.families import Pins, escape
from generator.families.common import COREOS_FLAVOURS, load_balancer_ip, retired
from generator.model import DnsService, Environment
from generator.tree import Tree, lines

ETCD_SRV = "_etcd-server-ssl._tcp"
ETCD_PORT = 2380
# SOA timers (refresh, retry, expire, negative-cache TTL); the serial comes from content.
SOA_TIMERS = (3600, 900, 1209600, 300)
# Each network not aligned on an octet needs one reverse zone per aligned block (a /9 or
# a /17 makes 128); 100 such networks made ~12,800 zone files. semantic.check_network_count
# refuses more first, with these limits in the message.
MAX_REVERSE_ZONES = 256


# A NamedTuple, not a frozen dataclass: built ~2x faster (20,000 at 10,000 nodes).
class Record(NamedTuple):
    """One resource record in zone-file terms: `name` is relative to the zone origin ("@" is
    the apex), and names inside `value` are relative too unless they end with a dot."""

    name: str
    type: str
    value: str
    # Where the record comes from: a declared record (services.dns.records[i]), or the
    # field its name derives from (a node's name); () for the cluster's own names.
    field: escape.FieldPath = ()


def render(env: Environment, pins: Pins) -> Tree:
    """The DNS host's config for the provider the environment chose; empty without DNS."""
    dns = env.services.dns
    if dns is None:
        return {}
    if dns.provider == "dnsmasq":
        return {f"hosts/{dns.host}/dnsmasq/dns.conf": render_dnsmasq(env, dns)}
    return render_bind(env, dns)


# --- the record set, shared by both providers -------------------------------------------


def forward_records(env: Environment) -> tuple[Record, ...]:
    """Every record of the cluster domain, in a stable order (nodes first)."""
    records = [Record(node.name, "A", str(node.ip), ("nodes", i, "name"))
               for i, node in enumerate(env.nodes) if not retired(env, node)]
    lb = load_balancer_ip(env)
    if lb is not None:
        records += [Record(name, "A", str(lb)) for name in ("api", "api-int", "*.apps")]
    masters = env.nodes_with_role("master")
    records += [Record(f"etcd-{i}", "A", str(n.ip)) for i, n in enumerate(masters)]
    records += [Record(ETCD_SRV, "SRV", f"0 10 {ETCD_PORT} etcd-{i}")
                for i in range(len(masters))]
    registry = _registry_name(env)
    if registry is not None and lb is not None:
        records.append(Record(registry, "A", str(lb), ("kubernetes", "registry", "host")))
    dns = env.services.dns
    records += [Record(r.name, r.type, r.value, ("services", "dns", "records", i))
                for i, r in enumerate(dns.records if dns else ())]
    return tuple(records)


def _registry_name(env: Environment) -> str | None:
    """The private registry's ingress name, relative, when it lies inside the cluster domain."""
    registry = env.kubernetes.registry
    suffix = "." + env.cluster.domain
    if registry is None or not registry.host.endswith(suffix):
        return None
    return registry.host[: -len(suffix)]


def reverse_zone_blocks(network: IPv4Network) -> tuple[IPv4Network, ...]:
    """The octet-aligned blocks whose reverse zones cover `network` (see module docstring)."""
    if network.prefixlen >= 24:
        return (network.supernet(new_prefix=24),)
    aligned = max(8, -(-network.prefixlen // 8) * 8)
    return tuple(network.subnets(new_prefix=aligned))


def reverse_zone_name(block: IPv4Network) -> str:
    """`20.168.192.in-addr.arpa` for 192.168.20.0/24."""
    octets = str(block.network_address).split(".")[: block.prefixlen // 8]
    return ".".join(reversed(octets)) + ".in-addr.arpa"


def reverse_records(env: Environment) -> dict[str, tuple[Record, ...]]:
    """Reverse zone name -> PTR records of the nodes' primary addresses, for every network."""
    blocks = sorted({b for net in env.networks for b in reverse_zone_blocks(net.cidr)},
                    key=lambda b: (int(b.network_address), b.prefixlen))
    if len(blocks) > MAX_REVERSE_ZONES:
        raise UserError(f"the networks need more than {MAX_REVERSE_ZONES} reverse DNS "
                        "zones", "use networks aligned on /8, /16 or /24 (or smaller than "
                        "/24), or fewer of them")
    zones: dict[str, list[Record]] = {reverse_zone_name(b): [] for b in blocks}
    by_prefix = {b.prefixlen for b in blocks}
    named: list[tuple[IPv4Address, str, escape.FieldPath]] = [
        (node.ip, node.fqdn, ("nodes", index, "name")) for index, node in enumerate(env.nodes)
        if not retired(env, node)]
    named += [(vip, f"{name}.{env.cluster.domain}", ("services", "haproxy", "address"))
              for vip, name in _vip_names(env)]
    prefixes = sorted(by_prefix, reverse=True)
    for ip, fqdn, field in named:
        # Blocks are octet-aligned, so the zone of `ip` in a block of `prefix` is its own
        # leading octets reversed: reverse_zone_name of that block, without building it.
        octets = str(ip).split(".")
        for prefix in prefixes:
            zone = ".".join(reversed(octets[: prefix // 8])) + ".in-addr.arpa"
            if zone in zones:  # the owner name, relative to the zone: the other octets
                owner = ".".join(reversed(octets[prefix // 8:]))
                zones[zone].append(Record(owner, "PTR", fqdn + ".", field))
                break
    return {zone: tuple(records) for zone, records in zones.items()}


def _vip_names(env: Environment) -> list[tuple[IPv4Address, str]]:
    """PTRs for api and api-int (the OpenShift docs require them) when the load balancer
    has an address of its own; on a node's address, that node's PTR stays the only one."""
    haproxy = env.services.haproxy
    if haproxy is None or haproxy.address is None or env.cluster.flavour not in COREOS_FLAVOURS:
        return []
    if any(nic.ip == haproxy.address for node in env.nodes for nic in node.nics):
        return []
    return [(haproxy.address, "api"), (haproxy.address, "api-int")]


def serial(records: tuple[Record, ...]) -> int:
    """A zone serial from the records alone (never the clock): 32 bits of their sha256.

    Any change gives a new serial; it may go down, which only matters to secondaries, and
    gen configures none (no notify, no transfers).
    """
    digest = hashlib.sha256("\n".join(f"{r.name} {r.type} {r.value}" for r in records).encode())
    return int.from_bytes(digest.digest()[:4], "big") or 1


def absolute(name: str, origin: str) -> str:
    """A zone-relative name made fully qualified (without the trailing dot)."""
    if name.endswith("."):
        return name[:-1]
    return origin if name == "@" else f"{name}.{origin}"


# --- BIND -------------------------------------------------------------------------------


def render_bind(env: Environment, dns: DnsService) -> Tree:
    """named.conf plus one zone file per zone, under hosts/<dns host>/dns/."""
    base = f"hosts/{dns.host}/dns"
    nameserver = env.node(dns.host).fqdn
    zones = {env.cluster.domain: forward_records(env), **reverse_records(env)}
    tree: Tree = {f"{base}/named.conf": named_conf(env, dns, tuple(zones))}
    for zone, records in zones.items():
        tree[f"{base}/{zone_file(zone)}"] = zone_text(zone, records, nameserver, env.cluster.domain,
                                                      dns.ttl)
    return tree


def zone_file(zone: str) -> str:
    """A zone's file under the rendered dns/ directory (and under the install dir)."""
    return f"zones/{zone}.zone"


def zone_path(dns: DnsService, zone: str) -> str:
    """A zone's file as named.conf names it: where the host's profile installs the zones,
    relative to `directory` when below it."""
    installed = posixpath.join(dns.os.bind_zones, f"{zone}.zone")
    directory = dns.directory.rstrip("/") + "/"
    return installed[len(directory):] if installed.startswith(directory) else installed


def named_conf(env: Environment, dns: DnsService, zones: tuple[str, ...]) -> bytes:
    """The whole named.conf: recursion for the cluster networks through the forwarders."""
    clients = " ".join(f"{net.cidr};" for net in env.networks)
    forwarders = " ".join(f"{ip};" for ip in dns.forwarders)
    directory = escape.bind_string(dns.directory, ("services", "dns", "directory"))
    return lines(
        f"// Rendered by gen for environment {_env_name(env, 'a named.conf comment')}: "
        f"DNS for {_domain(env, 'a named.conf comment')}.",
        "// Relative paths are relative to `directory`.",
        "options {",
        f"\tdirectory {directory};",
        '\tpid-file "/run/named/named.pid";',
        '\tsession-keyfile "/run/named/session.key";',
        "\tlisten-on port 53 { any; };",
        "\tlisten-on-v6 { none; };",
        "\tallow-query { any; };",
        "\tallow-transfer { none; };",
        "\trecursion yes;",
        f"\tallow-recursion {{ localhost; {clients} }};",
        f"\tforwarders {{ {forwarders} }};" if forwarders else None,
        "\tforward only;" if forwarders else None,
        # Lab sites often forward to resolvers that strip signatures; validation would
        # then fail every answer. Upstream validation is the forwarders' job.
        "\tdnssec-validation no;",
        "};",
        "",
        *(f"zone {escape.bind_string(zone, _CLUSTER_DOMAIN)} IN {{ type master; "
          f"file {escape.bind_string(zone_path(dns, zone), _CLUSTER_DOMAIN)}; "
          "allow-update { none; }; notify no; };" for zone in zones),
    )


def zone_text(zone: str, records: tuple[Record, ...], nameserver: str, domain: str,
              ttl: int) -> bytes:
    """A zone file: SOA (content-derived serial), NS on the DNS host, then the records."""
    refresh, retry, expire, negative = SOA_TIMERS
    escape.domain(zone, _CLUSTER_DOMAIN, ZONE_FILE)
    escape.domain(nameserver, _CLUSTER_DOMAIN, ZONE_FILE)
    escape.domain(domain, _CLUSTER_DOMAIN, ZONE_FILE)
    return lines(
        f"; Rendered by gen: zone {zone}. The serial is derived from the records.",
        f"$ORIGIN {zone}.",
        f"$TTL {escape.number(ttl, ('services', 'dns', 'ttl'), ZONE_FILE)}",
        f"@\tIN\tSOA\t{nameserver}. hostmaster.{domain}. "
        f"({serial(records)} {refresh} {retry} {expire} {negative})",
        f"@\tIN\tNS\t{nameserver}.",
        *(_zone_line(r) for r in records),
    )


def _zone_line(record: Record) -> str:
    """One record's line, its owner, type and value checked (and escaped) for a zone file."""
    if escape.plain_record(record.type, record.name, record.value):
        return f"{record.name}\tIN\t{record.type}\t{record.value}"
    return f"{_owner(record, ZONE_FILE)}\tIN\t{_type(record, ZONE_FILE)}\t{_zone_value(record)}"


ZONE_FILE = "a zone file"
# The cluster domain is `<cluster.name>.<cluster.baseDomain>`; a bad one is reported at the
# base domain (the name is one label, the schema's to check).
_CLUSTER_DOMAIN = ("cluster", "baseDomain")


def _env_name(env: Environment, language: str) -> str:
    return escape.comment(env.name, None, language)


def _domain(env: Environment, language: str) -> str:
    return escape.domain(env.cluster.domain, _CLUSTER_DOMAIN, language)


def _field(record: Record, key: str) -> escape.FieldPath:
    if record.field[:3] == ("services", "dns", "records"):
        return (*record.field, key)
    return record.field or _CLUSTER_DOMAIN


# The record's fields are given as functions: looked up only when a value is refused (three
# checks per record, ~20,000 records in a 10,000-node zone set).


def _owner(record: Record, language: str) -> str:
    return escape.domain(record.name, lambda: _field(record, "name"), language)


def _type(record: Record, language: str) -> str:
    return escape.record_type(record.type, lambda: _field(record, "type"), language)


def _zone_value(record: Record) -> str:
    if record.type == "TXT":
        return escape.txt(record.value, lambda: _field(record, "value"))
    return escape.record_value(record.type, record.value, lambda: _field(record, "value"),
                               ZONE_FILE)


# --- dnsmasq ----------------------------------------------------------------------------


def render_dnsmasq(env: Environment, dns: DnsService) -> bytes:
    """A conf-dir fragment answering the same records as the BIND zones."""
    domain = _domain(env, escape.DNSMASQ)
    reverse = reverse_records(env)
    return lines(
        f"# Rendered by gen for environment {_env_name(env, 'a dnsmasq comment')}: "
        f"DNS for {domain}.",
        "# A conf-dir fragment (/etc/dnsmasq.d); DHCP, when dnsmasq serves it, is dhcp.conf.",
        "domain-needed",
        "no-resolv",
        "no-hosts",
        *(f"server={ip}" for ip in dns.forwarders),
        # Local zones: answer from here only, NXDOMAIN for unknown names, never forward.
        *(f"local=/{zone}/" for zone in (domain, *reverse)),
        f"local-ttl={escape.number(dns.ttl, ('services', 'dns', 'ttl'), escape.DNSMASQ)}",
        # Explicit PTRs first: they win over the implicit PTR of every host-record below.
        *(f"ptr-record={absolute(r.name, zone)},{_ptr_target(r)}"
          for zone, records in reverse.items() for r in records),
        *(_dnsmasq_line(r, domain) for r in forward_records(env)),
    )


def _ptr_target(record: Record) -> str:
    value = escape.record_value("PTR", record.value, _field(record, "value"), escape.DNSMASQ)
    return value.rstrip(".")


def _dnsmasq_line(record: Record, domain: str) -> str:
    name = absolute(_owner(record, escape.DNSMASQ), domain)
    _type(record, escape.DNSMASQ)
    if record.type != "TXT":
        escape.record_value(record.type, record.value, _field(record, "value"), escape.DNSMASQ)
    if record.type == "A" and name.startswith("*."):
        # /*.apps.<domain>/ matches subdomains only, like the zone file's wildcard.
        return f"address=/{name}/{record.value}"
    if record.type == "A":
        return f"host-record={name},{record.value}"
    if record.type == "CNAME":
        return f"cname={name},{absolute(record.value, domain)}"
    if record.type == "TXT":
        return f"txt-record={name},{escape.dnsmasq_text(record.value, _field(record, 'value'))}"
    if record.type == "SRV":
        priority, weight, port, target = record.value.split()
        return f"srv-host={name},{absolute(target, domain)},{port},{priority},{weight}"
    raise escape.refuse(_field(record, "type"), f"a {record.type} record",
                        "this dnsmasq DNS config", "use A, CNAME, TXT or SRV records with dnsmasq")
