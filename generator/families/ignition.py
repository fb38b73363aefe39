"""Ignition per CoreOS node: hostname, a static NetworkManager keyfile, SSH keys, a merge pointer.

OpenShift/OKD nodes that PXE-boot fetch `clusters/<c>/ignition/<node>.ign` from the helper
(`coreos.inst.ignition_url`). That small per-node config carries only what differs per node
and merges the role config that `openshift-install create ignition-configs` produced
(`/ignition/roles/<role>.ign` on the helper), pinned by sha512 when the lock knows its content.

SSH keys are secret references: the rendered config carries `SecretRef.marker()` in
`passwd.users[core].sshAuthorizedKeys`; converge fills the value in on the helper before it
publishes the file. Every config is checked against gen's own schema for the subset of the
spec it emits (schemas/ignition-<major.minor>.schema.json) before it leaves this module.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote  # json's C string encoder
from typing import Any

from generator.errors import Problem, UserError
from generator.families import Pins, common, escape
from generator.families.common import COREOS_FLAVOURS
from generator.model import Environment, Network, Nic, Node
from generator.resources import schemas_dir
from generator.tree import Tree, canonical_json, canonical_json_fragment, lines

SCHEMA_DIR = schemas_dir()
IGNITION_ROLES = ("bootstrap", "master", "worker")
CORE_USER = "core"
MODE_PUBLIC = 0o644
MODE_PRIVATE = 0o600  # NetworkManager ignores keyfiles that others can read
KEYFILE = "a NetworkManager keyfile"


@dataclass(frozen=True, slots=True)
class Spec:
    """What differs between Ignition spec versions, for the subset gen emits."""

    version: str
    schema: str  # file name under schemas/
    hashes: tuple[str, ...]  # verification hash functions the spec accepts, weakest first


# Spec version -> differences. The subset gen emits (files with data URLs, users with SSH
# keys, config.merge with verification) is unchanged from 3.0 to 3.4; moving to 3.4.0 is a
# new row plus a copy of the schema with the new version const.
SPECS = {
    "3.3.0": Spec("3.3.0", "ignition-3.3.schema.json", ("sha256", "sha512")),
}
DEFAULT_SPEC = "3.3.0"


def render(env: Environment, pins: Pins, spec: str = DEFAULT_SPEC) -> Tree:
    """`clusters/<cluster>/ignition/<node>.ign` for every PXE-booted CoreOS node."""
    base = f"clusters/{env.cluster.name}/ignition"
    tree: Tree = {}
    checked = _checked_configs(env, spec)
    headers: dict[str, tuple[bytes, bytes]] = {}  # role -> (checked header, pinned header)
    for node in coreos_nodes(env):
        encoded = checked.get(id(node))
        if encoded is None:
            encoded = canonical_json(node_config(env, node, pins, spec))
        else:
            if node.role not in headers:
                headers[node.role] = _role_headers(env, node, pins, spec)
            encoded = _with_header(encoded, *headers[node.role])
        tree[f"{base}/{node.name}.ign"] = encoded
    return tree


def check(env: Environment) -> list[Problem]:
    """Every node's config must be valid Ignition: built and checked here, refused at the
    node's place in the environment, so rendering it cannot fail later.

    The encoded configs that pass are kept for `render` of this same (immutable)
    environment, so a render builds and schema-checks each config once, not twice."""
    problems = []
    # Each node's place by identity: `env.nodes.index(node)` compared nodes field by field,
    # O(N^2), three quarters of a 10,000-node render.
    index = {id(node): i for i, node in enumerate(env.nodes)}
    passed: dict[int, bytes] = {}
    shared: dict[tuple[str, str], _Shared] = {}  # (role, primary network) -> its parts
    nodes = coreos_nodes(env)  # PXE nodes: pxe.check refuses them without services.http
    # Every node's files first: an unsafe value is refused (UnsafeValue) before any schema
    # problem is reported, whichever node holds it.
    owns = [_own_files(env, node) for node in nodes]
    for node, own in zip(nodes, owns, strict=True):
        known = shared.get((node.role, node.nic.network))
        if known is not None and known.accepts(own):
            passed[id(node)] = known.compose(own)
            continue
        config = build_config(env, node, Pins(), DEFAULT_SPEC)
        where = env.where(("nodes", index[id(node)]))
        found = config_problems(config, DEFAULT_SPEC, node.name)
        if not found:
            passed[id(node)] = canonical_json(config)
            if known is None:
                shared[(node.role, node.nic.network)] = _Shared.of(
                    config, own, passed[id(node)])
        # A path written twice can only be two NICs on one interface name, which the
        # semantic rule check_interfaces reports at the NIC; not reported twice here.
        problems += [Problem(message, where, hint) for message, hint in found
                     if not message.endswith(" twice")]
    global _CHECKED
    _CHECKED = (env, passed)  # holding env keeps the node ids valid
    return problems


# The last environment `check` passed configs for, and node id -> its config encoded with
# no pins. One slot: a process renders the environment it just checked.
_CHECKED: tuple[Environment, dict[int, bytes]] | None = None


# Where a config's lines start, as canonical_json indents it: the top level's keys, and the
# items of storage.files.
_TOP = "\n  "
_FILES = "\n      "
_FILES_OPEN = ',\n  "storage": {\n    "files": [' + _FILES
_FILES_CLOSE = "\n    ]\n  }\n}\n"


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the configs of one role on one primary network share, checked and encoded once.

    Everything in a config but `_node_files` comes from the role, the environment and the
    primary network (`_ignition_section`, `_passwd`, `_time_files`), so it is the same in
    every config of the group: the first whole config of the group passed the schema, and
    each later node's own files are held to the schema's `file` rule (`_Own`). The schema
    holds every field to its own rule (no rule spans two files), so both together are the
    whole config's check. The encoding is proven too: the first config, composed from these
    parts and its node's `_Own` fragments, must give canonical_json's exact bytes."""

    head: str  # the encoded config up to its first file
    tail: tuple[str, ...]  # the shared files (after the node's own), encoded
    paths: tuple[str, ...]  # their paths, for the "written twice" rule

    @classmethod
    def of(cls, config: dict[str, Any], own: _Own, encoded: bytes) -> _Shared:
        head = "{" + _TOP + '"ignition": ' + canonical_json_fragment(config["ignition"], _TOP)
        if "passwd" in config:
            head += "," + _TOP + '"passwd": ' + canonical_json_fragment(config["passwd"], _TOP)
        files = config["storage"]["files"][len(own.keys):]
        parts = cls(head + _FILES_OPEN,
                    tuple(canonical_json_fragment(f, _FILES) for f in files),
                    tuple(f["path"] for f in files))
        if parts.compose(own) != encoded:
            raise AssertionError("an Ignition config composed from its parts differs")
        return parts

    def accepts(self, own: _Own) -> bool:
        """`own` files complete a valid config of this group: no path written twice, and
        each file passes the schema's `file` rule."""
        paths = [path for path, _ in own.keys] + list(self.paths)
        return len(set(paths)) == len(paths) and all(map(_file_rule_passes, own.keys))

    def compose(self, own: _Own) -> bytes:
        return (self.head + ("," + _FILES).join([*own.fragments, *self.tail])
                + _FILES_CLOSE).encode()


@dataclass(frozen=True, slots=True)
class _Own:
    """A node's own files (`_node_files`) as `check` needs them: each file's (path, mode)
    and its canonical_json text among storage.files.

    Why not the dicts: building 20,000 file dicts, schema-checking each and encoding it was
    most of a 10,000-node `check`. Every file here is (path, mode, overwrite, a data URL),
    and a data URL is `data:,` and percent-encoded bytes, which never holds whitespace, so
    it passes the `source` rule whatever the content (test_every_data_url_passes_the_
    source_rule): the `file` rule is decided by (path, mode), checked once per pair
    (`_file_rule_passes`). The fragments are proven against canonical_json by `_Shared.of`
    on each group's first node, and against `_node_files` on hostile values by
    test_own_files_are_the_node_files."""

    keys: tuple[tuple[str, int], ...]  # (path, mode) of each file, in `_node_files` order
    fragments: tuple[str, ...]


def _own_files(env: Environment, node: Node) -> _Own:
    """`_node_files(env, node)` as an `_Own`: the same values escaped in the same order
    (so the same refusal), encoded straight to text."""
    keys = [("/etc/hostname", MODE_PUBLIC)]
    fragments = [_fragment(_percent(lines(_hostname(env, node))), "/etc/hostname", MODE_PUBLIC)]
    for index, nic in enumerate(node.nics):
        path = f"/etc/NetworkManager/system-connections/{nic.interface}.nmconnection"
        keys.append((path, MODE_PRIVATE))
        fragments.append(_fragment(_keyfile_url(env, nic, index == 0), path, MODE_PRIVATE))
    return _Own(tuple(keys), tuple(fragments))


def _keyfile_url(env: Environment, nic: Nic, primary: bool) -> str:
    """`data_url(nm_keyfile(env, nic, primary))` without its "data:,", by parts: the
    encoding is per byte, so encoding the parts and joining them is encoding the whole;
    the parts all NICs of an interface name, or of a network, share are encoded once."""
    net = env.network(nic.network)
    interface = _keyfile_interface(env, nic)
    # Percent-encoded by hand: a MAC escape.mac passed is hex digits and colons, an IPv4
    # address digits and dots, so ':' and '/' are their only bytes quote() changes.
    mac = _keyfile_mac(env, nic).replace(":", "%3A")
    return (_percent_shared(_KEYFILE_HEAD % interface) + mac + _KEYFILE_MIDDLE
            + str(nic.ip) + "%2F" + str(net.cidr.prefixlen)
            + _percent_shared("\n" + _keyfile_tail(env, net, primary)))


@functools.lru_cache(maxsize=256)
def _percent_shared(text: str) -> str:
    return _percent(text.encode())


@functools.lru_cache(maxsize=256)
def _file_rule_passes(key: tuple[str, int]) -> bool:
    """A file at `key`'s (path, mode) holding any data URL passes the schema's `file`
    rule (see `_Own`); "data:," stands for every data URL."""
    path, mode = key
    return _files_problem([_file(path, b"", mode)]) is None


@functools.lru_cache(maxsize=256)
def _fragment_end(path: str, mode: int) -> str:
    inner = _FILES + "  "
    return (inner + "}," + inner + f'"mode": {mode:d},' + inner + '"overwrite": true,' + inner
            + '"path": ' + _quote(path) + _FILES + "}")


_FRAGMENT_START = "{" + _FILES + '  "contents": {' + _FILES + '    "source": '


def _fragment(encoded: str, path: str, mode: int) -> str:
    """The file `_file(path, content, mode)` whose data URL is "data:," + `encoded`, as
    canonical_json encodes it among storage.files (the keys in sorted order)."""
    return _FRAGMENT_START + _quote("data:," + encoded) + _fragment_end(path, mode)


def _checked_configs(env: Environment, spec: str) -> dict[int, bytes]:
    if _CHECKED is None or _CHECKED[0] is not env or spec != DEFAULT_SPEC:
        return {}
    return _CHECKED[1]


def _role_headers(env: Environment, node: Node, pins: Pins, spec: str) -> tuple[bytes, bytes]:
    """The encoded `ignition` section of `node`'s role, as checked (no pins) and as rendered
    (with `pins`); only the merge resource differs. The pinned one is schema-checked in one
    whole config of the role: the schema holds each field to its own rule, so the other
    nodes' checked parts stay valid beside it."""
    pinned = node_config(env, node, pins, spec)  # raises if the pinned resource is invalid
    unpinned = build_config(env, node, Pins(), spec)
    return _header(unpinned), _header(pinned)


def _header(config: dict[str, Any]) -> bytes:
    # "ignition" sorts before "passwd" and "storage": it opens every encoded config.
    return canonical_json({"ignition": config["ignition"]})[:-3]  # without "\n}\n"


def _with_header(encoded: bytes, checked: bytes, pinned: bytes) -> bytes:
    if checked == pinned:
        return encoded
    if not encoded.startswith(checked):
        raise AssertionError("a checked Ignition config does not open with its role's header")
    return pinned + encoded[len(checked):]


def coreos_nodes(env: Environment) -> tuple[Node, ...]:
    """The nodes that PXE-boot CoreOS from the helper, so need an Ignition file (none unless
    the cluster is OpenShift/OKD)."""
    if env.cluster.flavour not in COREOS_FLAVOURS:
        return ()
    return tuple(n for n in env.nodes if n.role in IGNITION_ROLES and n.boot == "pxe")


def node_config(env: Environment, node: Node, pins: Pins,
                spec: str = DEFAULT_SPEC) -> dict[str, Any]:
    """One node's Ignition config as a dict, valid against gen's schema for `spec`
    (`check` refused every environment that would make it invalid)."""
    config = build_config(env, node, pins, spec)
    problems = config_problems(config, spec, node.name)
    if problems:
        raise AssertionError(f"{problems[0][0]}: ignition.check passes no such environment")
    return config


def build_config(env: Environment, node: Node, pins: Pins, spec: str) -> dict[str, Any]:
    """The config as built, before any check: the node's own files, then what its role,
    the environment and its primary network give every such node (see `_Shared`)."""
    config: dict[str, Any] = {
        "ignition": _ignition_section(env, node.role, pins, spec),
        "storage": {"files": _node_files(env, node) + _time_files(env, node.nic.network)},
    }
    passwd = _passwd(env)
    if passwd is not None:
        config["passwd"] = passwd
    return config


def _ignition_section(env: Environment, role: str, pins: Pins, spec: str) -> dict[str, Any]:
    return {"version": spec_row(spec).version,
            "config": {"merge": [merge_resource(env, role, pins, spec)]}}


def _passwd(env: Environment) -> dict[str, Any] | None:
    if not env.cluster.ssh_keys:
        return None
    return {"users": [{"name": CORE_USER,
                       "sshAuthorizedKeys": [ref.marker() for ref in env.cluster.ssh_keys]}]}


def _node_files(env: Environment, node: Node) -> list[dict[str, Any]]:
    """The files that differ per node: its hostname and a keyfile per NIC."""
    return [_file("/etc/hostname", lines(_hostname(env, node)), MODE_PUBLIC)] + [
        _file(f"/etc/NetworkManager/system-connections/{nic.interface}.nmconnection",
              nm_keyfile(env, nic, primary=index == 0), MODE_PRIVATE)
        for index, nic in enumerate(node.nics)]


def config_problems(config: dict[str, Any], spec: str, node: str) -> list[tuple[str, str]]:
    """(message, hint) for each reason `config` is not valid Ignition `spec`."""
    invalid = schema_problem(config, spec)
    if invalid is not None:
        return [(f"Ignition config for node '{node}' is not valid spec {spec}: {invalid}",
                 "check that node's name, interface and addresses in the environment")]
    # Ignition rejects a config that writes one path twice (two NICs with one interface name).
    paths = [f.get("path") for f in config.get("storage", {}).get("files", [])]
    problems = [(f"Ignition config for node '{node}' writes {path} twice",
                 "give each of the node's nics a distinct interface name")
                for path in sorted({p for p in paths if paths.count(p) > 1})]
    return problems


def _hostname(env: Environment, node: Node) -> str:
    return escape.fqdn(node.fqdn, node.name, lambda: ("nodes", env.nodes.index(node), "name"),
                       "/etc/hostname")


def _keyfile_mac(env: Environment, nic: Nic) -> str:
    return escape.mac(nic.mac, lambda: next(
        ("nodes", i, "nics", j, "mac") for i, n in enumerate(env.nodes)
        for j, x in enumerate(n.nics) if x is nic), KEYFILE).upper()


def merge_resource(env: Environment, role: str, pins: Pins,
                   spec: str = DEFAULT_SPEC) -> dict[str, Any]:
    """The role config on the helper, with its hash when the lock holds its content."""
    if env.services.http is None:
        raise AssertionError("a PXE node without services.http: pxe.check refuses it")
    resource: dict[str, Any] = {"source": common.role_ignition_url(env, role)}
    content = pins.manifests.get(f"ignition/{role}")
    if content is not None:
        algorithm = spec_row(spec).hashes[-1]  # the strongest the spec accepts
        resource["verification"] = {
            "hash": f"{algorithm}-{hashlib.new(algorithm, content).hexdigest()}"}
    return resource


def _file(path: str, content: bytes, mode: int) -> dict[str, Any]:
    # overwrite: a re-provisioned node must not fail on a file the image already ships.
    return {"path": path, "mode": mode, "overwrite": True,
            "contents": {"source": data_url(content)}}


def data_url(content: bytes) -> str:
    """An RFC 2397 data URL, percent-encoded: readable in diffs, byte-exact when decoded.

    Exactly `"data:," + urllib.parse.quote(content, safe="")`, line by line: percent-encoding
    is per byte, so the lines (most of them the same in every node's keyfile) are encoded
    once each, from a table, and joined with the newline's `%0A`."""
    return "data:," + "%0A".join(map(_percent_line, content.split(b"\n")))


# quote(safe="")'s spelling of each byte: the unreserved characters as they are, any other
# byte as %XX (upper case).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_PERCENT = tuple(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))


def _percent(content: bytes) -> str:
    """`data_url(content)` without its "data:,", uncached: for a node's own values."""
    return "".join(map(_PERCENT.__getitem__, content))


@functools.lru_cache(maxsize=1024)  # the lines shared by many files stay; per-node ones pass
def _percent_line(line: bytes) -> str:
    return "".join(map(_PERCENT.__getitem__, line))


def nm_keyfile(env: Environment, nic: Nic, primary: bool) -> bytes:
    """A NetworkManager keyfile giving `nic` its static address from the blueprint.

    Only the primary NIC carries the default route and the name servers, so a second
    network can never steal them. The profile matches the NIC by MAC, not by name: the
    installed system's udev names it after its PCI slot (`ifname=` pins the name only in
    the live initramfs), and a name that does not match leaves the node without network.
    """
    net = env.network(nic.network)
    interface = _keyfile_interface(env, nic)
    return (f"[connection]\nid={interface}\ntype=ethernet\nautoconnect=true\n\n"
            f"[ethernet]\nmac-address={_keyfile_mac(env, nic)}\n\n"
            f"[ipv4]\nmethod=manual\naddress1={nic.ip}/{net.cidr.prefixlen}\n"
            + _keyfile_tail(env, net, primary)).encode()


# nm_keyfile's text around a NIC's own values, for `_keyfile_url`.
_KEYFILE_HEAD = "[connection]\nid=%s\ntype=ethernet\nautoconnect=true\n\n[ethernet]\nmac-address="
_KEYFILE_MIDDLE = _percent(b"\n\n[ipv4]\nmethod=manual\naddress1=")


def _keyfile_interface(env: Environment, nic: Nic) -> str:
    # A keyfile is an INI file: a line break in a value would add keys or sections.
    return escape.name(nic.interface, lambda: next(
        ("nodes", i, "nics", j, "interface") for i, n in enumerate(env.nodes)
        for j, x in enumerate(n.nics) if x is nic), KEYFILE)


# The last environment's keyfile tails by (network, primary). One slot, by identity:
# records hash by value, which for an environment means hashing every node.
_TAILS: tuple[Environment | None, dict[tuple[str, bool], str]] = (None, {})


def _keyfile_tail(env: Environment, net: Network, primary: bool) -> str:
    """The keyfile's lines after the address: the same for every NIC of `net` that is (or
    is not) its node's primary, so built once per environment."""
    global _TAILS
    if _TAILS[0] is not env:
        _TAILS = (env, {})
    tails = _TAILS[1]
    tail = tails.get((net.name, primary))
    if tail is None:
        tail = tails[(net.name, primary)] = _build_keyfile_tail(env, net, primary)
    return tail


def _build_keyfile_tail(env: Environment, net: Network, primary: bool) -> str:
    domain = escape.domain(env.cluster.domain, ("cluster", "baseDomain"), KEYFILE)
    ipv4 = []
    if primary and net.gateway is not None:
        ipv4.append(f"gateway={net.gateway}")
    servers = name_servers(env, net) if primary else ()
    if servers:
        ipv4 += [f"dns={';'.join(str(s) for s in servers)};",
                 f"dns-search={domain};"]
    if not primary:
        ipv4.append("never-default=true")
    return lines(*ipv4, "may-fail=false", "", "[ipv6]", "method=disabled").decode()


def _time_files(env: Environment, network: str) -> list[dict[str, Any]]:
    """`/etc/chrony.conf` naming the primary network's time servers, when it has any (a
    disconnected lab: the OS's default public pools are out of reach)."""
    servers = env.network(network).ntp
    if not servers:
        return []
    return [_file("/etc/chrony.conf", chrony_conf(servers), MODE_PUBLIC)]


def chrony_conf(servers: tuple[Any, ...]) -> bytes:
    """chrony as RHCOS runs it, with these servers instead of its default pool."""
    return lines(*(f"server {s} iburst" for s in servers), "driftfile /var/lib/chrony/drift",
                 "makestep 1.0 3", "rtcsync", "logdir /var/log/chrony")


def name_servers(env: Environment, net: Network) -> tuple[Any, ...]:
    """The cluster's DNS server (the helper's BIND/dnsmasq), else the network's `dns`."""
    server = common.dns_server(env)
    return (server,) if server is not None else net.dns


def spec_row(spec: str) -> Spec:
    """The table row of a spec version gen can emit; anything else is a user error."""
    if spec not in SPECS:
        raise UserError(f"Ignition spec {spec} is not supported",
                        f"use one of: {', '.join(sorted(SPECS))}")
    return SPECS[spec]


@functools.cache
def _schema(spec: str) -> dict[str, Any]:
    with (SCHEMA_DIR / spec_row(spec).schema).open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _fast_validator(spec: str) -> Any:
    # fastjsonschema compiles the schema to Python (~20 ms, cached across processes by
    # compiled_schema): ~30 µs per config against ~400 µs for jsonschema, which matters at
    # 1,000 nodes. jsonschema only runs on failure, to name the failing field the way
    # schema.py does.
    from generator.compiled_schema import compile_schema

    return compile_schema(_schema(spec))


def _files_problem(files: list[dict[str, Any]], spec: str = DEFAULT_SPEC) -> str | None:
    """None when every one of `files` passes the schema's `file` rule (checked in the
    smallest whole config, by the same validator); else a reason (the caller then checks
    the whole config, which names the failing field)."""
    return schema_problem({"ignition": {"version": spec_row(spec).version},
                           "storage": {"files": files}}, spec)


def check_config(config: dict[str, Any], spec: str, node: str) -> None:
    """Raise a one-line UserError if `config` is not valid Ignition `spec` (gen's subset)."""
    problems = config_problems(config, spec, node)
    if problems:
        raise UserError(*problems[0])


def schema_problem(config: dict[str, Any], spec: str) -> str | None:
    """Why `config` fails gen's schema for `spec`, or None when it passes."""
    import fastjsonschema

    try:
        _fast_validator(spec)(config)
    except fastjsonschema.JsonSchemaValueException as exc:
        return _explain(config, spec) or exc.message
    return None


def _explain(config: dict[str, Any], spec: str) -> str | None:
    """`at <field path>: <value> fails <keyword> <expected>` from jsonschema's best match."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(_schema(spec)).iter_errors(config))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return (f"at {where}: {_short(error.instance)} fails {error.validator} "
            f"{_short(error.validator_value)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
