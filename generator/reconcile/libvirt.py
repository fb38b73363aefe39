"""The libvirt provider: networks, storage pools, volumes and domains per hypervisor URI.

Reads live state with libvirt-python (imported lazily, only when a plan runs), normalizes
rendered and live XML with the same rules (essence.py), and returns Actions. Ownership is
gen's `<metadata><gen:owner env=...>` marker: objects without it, or with another
environment's, are foreign and never touched. Pools cannot carry metadata, so gen never
deletes a pool; volumes are gen's when an owned domain of this environment uses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import UserError
from generator.families.common import service_hosts
from generator.families.libvirt import GEN_NS, volume_name
from generator.model import BOOT_ORDER, Environment
from generator.reconcile import essence, secrets, seed
from generator.reconcile.base import (
    DEFAULT_PARALLEL,
    WAVE_DOMAINS,
    WAVE_HOSTS,
    WAVE_IMAGES,
    WAVE_INFRA,
    WAVE_VOLUMES,
    Action,
    DiffItem,
)
from generator.reconcile.fleet import in_order
from generator.records import record
from generator.tree import Tree

PATH = re.compile(r"^hypervisors/([^/]+)/(networks|pools|volumes|domains)/([^/]+)\.xml$")
IMAGE = re.compile(r"^hypervisors/([^/]+)/images/([^/]+)\.json$")
NEXT_BOOT = "takes effect at next boot"
NET_RESTART = "takes effect when the network restarts (gen restarts it if no guest uses it)"

_CONNECTIONS: dict[str, Any] = {}
_CONNECTING: dict[str, threading.Lock] = {}  # one per URI: hypervisors connect concurrently
_GUARD = threading.Lock()


def libvirt_module() -> Any:
    """libvirt-python, imported on first use so `gen render` never pays for it."""
    try:
        import libvirt
    except ImportError as exc:
        raise UserError("libvirt-python is not installed",
                        "pip install libvirt-python (needs libvirt-dev, pkg-config, gcc)") from exc
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions
    return libvirt


def check_uri(uri: str, operator: bool) -> None:
    """Refuse a URI that could make libvirt run a program (`qemu+ext://...?command=`): the
    environment's URIs pass the same allow-list at validate; `operator` (--uri-override,
    typed by whoever runs gen) may also name a local libvirtd socket."""
    from generator.semantic import OPERATOR_URI_PARAMETERS, URI_PARAMETERS, libvirt_uri_problem

    problem = libvirt_uri_problem(uri, operator)
    if problem:
        allowed = OPERATOR_URI_PARAMETERS if operator else URI_PARAMETERS
        raise UserError(f"libvirt URI {uri!r} {problem}",
                        f"use a qemu:// URI with parameters among: {', '.join(sorted(allowed))}")


def open_connection(uri: str) -> Any:
    """One connection per URI per process (a `test:///file` state lives in its connection)."""
    check_uri(uri, operator=True)  # the last guard; plan() applied the stricter rule first
    with _GUARD:
        lock = _CONNECTING.setdefault(uri, threading.Lock())
    with lock:
        conn = _CONNECTIONS.get(uri)
        if conn is None or not conn.isAlive():
            libvirt = libvirt_module()
            try:
                conn = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                raise UserError(f"cannot connect to libvirt at {uri}: "
                                f"{exc.get_error_message()}",
                                "check the hypervisor's uri (or --uri-override) and that "
                                "libvirtd runs there") from exc
            _CONNECTIONS[uri] = conn
        return conn


def forget_connections() -> None:
    """Close cached connections (tests use it to start from a fresh test:// state)."""
    for conn in _CONNECTIONS.values():
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a dead connection needs no closing
            pass
    _CONNECTIONS.clear()


@record
class BaseImage:
    """A pinned disk image the pool must hold before overlays back onto it (rendered by
    families/libvirt.py as `hypervisors/<hv>/images/<name>.json`)."""

    volume: str
    pool: str
    artifact: str
    sha256: str | None  # None: not pinned, so it cannot be uploaded or verified


@dataclass(slots=True)
class Desired:
    """The rendered libvirt objects of one hypervisor, parsed."""

    networks: dict[str, ET.Element] = field(default_factory=dict)
    pools: dict[str, ET.Element] = field(default_factory=dict)
    volumes: dict[str, tuple[str, ET.Element]] = field(default_factory=dict)  # -> (pool, xml)
    domains: dict[str, ET.Element] = field(default_factory=dict)
    xml: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> text
    seeds: dict[str, seed.Seed] = field(default_factory=dict)  # cloud-init seed volumes
    images: dict[str, BaseImage] = field(default_factory=dict)  # base images to upload

    def empty(self) -> bool:
        return not (self.networks or self.pools or self.volumes or self.domains)


@dataclass(slots=True)
class LiveDomain:
    handle: Any
    config: ET.Element  # the persistent (inactive) definition
    running: bool
    current_kib: int | None  # live balloon size of a running domain
    max_kib: int | None = None  # live maximum of a running domain (the balloon's ceiling)
    asked_kib: int | None = None  # the balloon size gen last asked of this running domain


# Kept in the running domain's live definition only (gone at the next boot): the balloon size
# gen asked for. A guest without a balloon driver never follows; knowing it was asked keeps
# a converge after a converge from asking again forever.
LIVE_NS = "https://gen.invalid/xmlns/libvirt/live/1"


@dataclass(slots=True)
class Live:
    """What one hypervisor has now."""

    networks: dict[str, tuple[Any, ET.Element, bool, bool]] = field(default_factory=dict)
    pools: dict[str, tuple[Any, ET.Element, bool, bool]] = field(default_factory=dict)
    volumes: dict[str, dict[str, ET.Element]] = field(default_factory=dict)  # pool -> name -> xml
    domains: dict[str, LiveDomain] = field(default_factory=dict)


def desired_objects(tree: Tree, hv: str) -> Desired:
    """Parse `hypervisors/<hv>/...` of the rendered tree (seed ISOs come from seed.py)."""
    out = Desired()
    found: list[tuple[re.Match[str], str]] = []
    for path in sorted(tree):
        image = IMAGE.match(path)
        if image and image.group(1) == hv:
            info = json.loads(tree[path])
            out.images[info["volume"]] = BaseImage(info["volume"], info["pool"],
                                                   info["artifact"], info.get("sha256"))
        match = PATH.match(path)
        if match and match.group(1) == hv:
            found.append((match, tree[path].decode()))
    for (match, text), root in zip(found, parse_many([t for _, t in found]), strict=True):
        name = root.findtext("name") or match.group(3)
        kind = match.group(2)[:-1]
        out.xml[(kind, name)] = text
        if kind == "volume":
            out.volumes[name] = ("", root)
        else:
            getattr(out, kind + "s")[name] = root
    out.seeds = {s.volume: s for s in seed.seeds(tree, hv)}
    default_pool = next(iter(out.pools), "default")
    for name, (_, root) in list(out.volumes.items()):
        out.volumes[name] = (_pool_of(name, out.domains.values()) or default_pool, root)
    return out


def parse_many(texts: list[str]) -> list[ET.Element]:
    """`[ET.fromstring(t) for t in texts]` through one parser: creating an expat parser was
    half the cost of parsing a small definition, and a plan parses one per rendered and per
    live domain. Anything the joined document would not read exactly as the parts (a part
    with text around its element, a declaration, more or fewer elements) is parsed part by
    part, so a broken part raises the error it raises alone."""
    if len(texts) < 2:
        return [ET.fromstring(text) for text in texts]
    try:
        whole = ET.fromstring("<gen-many>" + "".join(texts) + "</gen-many>")
    except ET.ParseError:
        return [ET.fromstring(text) for text in texts]
    parts = list(whole)
    if len(parts) != len(texts) or (whole.text or "").strip() or any(
            (part.tail or "").strip() for part in parts):
        return [ET.fromstring(text) for text in texts]
    for part in parts:
        part.tail = None  # what the part alone has (ET.tostring writes a tail)
    return parts


def _pool_of(volume: str, domains: Iterable[ET.Element]) -> str | None:
    for dom in domains:
        for source in dom.iter("source"):
            if source.get("volume") == volume:
                return source.get("pool")
    return None


def role_order(role: str) -> int:
    """Boot order inside the domain wave: other roles (helper) first, then bootstrap, ..."""
    return BOOT_ORDER.index(role) + 1 if role in BOOT_ORDER else 0


class LibvirtProvider:
    """Converges every hypervisor of an environment; one instance per plan/converge."""

    name = "libvirt"

    def __init__(self, uri_overrides: dict[str, str] | None = None,
                 start_roles: frozenset[str] | None = None,
                 connect: Callable[[str], Any] = open_connection, adopt: bool = False,
                 store_root: Path | None = None, parallel: int = DEFAULT_PARALLEL) -> None:
        self.uri_overrides = dict(uri_overrides or {})
        self.parallel = parallel  # hypervisors read at once
        self.store_root = store_root  # where pinned base images are uploaded from
        self.adopt = adopt  # take over unmarked objects the environment describes
        self.start_roles = start_roles  # None: start every domain
        self.connect = connect
        self.notices: list[str] = []
        self.conflicts: list[str] = []
        self._uris: dict[str, str] = {}
        self.read_seconds = 0.0  # time spent reading live state (the bench reports it)

    # -- Provider protocol -------------------------------------------------------------

    def scope(self, tree: Tree) -> Tree:
        """The part of the tree this provider converges: libvirt XML and cloud-init seeds."""
        return {p: c for p, c in tree.items()
                if PATH.match(p) or IMAGE.match(p) or p.split("/")[2:3] == ["cloud-init"]}

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        """Every hypervisor read and planned concurrently (`parallel` at a time: reading
        is waiting on the network), the results taken in the environment's order, so the
        plan, its notices and the error reported are those of a one-at-a-time run."""
        wanted: list[tuple[str, str]] = []
        for hv in env.hypervisors:
            uri = self.uri_overrides.get(hv.name, hv.uri)
            check_uri(uri, operator=hv.name in self.uri_overrides)
            self._uris[hv.name] = uri
            wanted.append((hv.name, uri))
        reads: list[float] = []

        def one(hv: tuple[str, str]) -> HypervisorPlan:
            desired = desired_objects(tree, hv[0])
            began = time.monotonic()
            live = read_live(self.connect(hv[1]), desired)
            reads.append(time.monotonic() - began)
            return plan_hypervisor(self, env, hv[0], desired, live)

        began = time.monotonic()
        found = in_order(one, wanted, self.parallel)
        # wall time of the reads (they overlap), never more than the whole
        self.read_seconds += min(time.monotonic() - began, sum(reads))
        actions: list[Action] = []
        for each in found:
            actions += each.actions
            self.notices += each.notices
            self.conflicts += each.conflicts
        return actions

    def apply(self, action: Action) -> None:
        conn = self.connect(self._uris[action.payload["hv"]])
        handler: Callable[[Any, Action], None] = getattr(self, f"_{action.kind}_{action.op}")
        handler(conn, action)

    def store(self) -> Any:
        from generator.lock.store import Store, default_root

        return Store(self.store_root or default_root())

    def should_run(self, role: str) -> bool:
        return self.start_roles is None or role in self.start_roles

    # -- appliers: each one safe to repeat ---------------------------------------------

    def _network_create(self, conn: Any, action: Action) -> None:
        net = conn.networkDefineXML(action.payload["xml"])
        if not net.isActive():
            net.create()
        net.setAutostart(1)

    def _network_update(self, conn: Any, action: Action) -> None:
        net = conn.networkLookupByName(action.payload["object"])
        if action.payload.get("redefine"):
            net = conn.networkDefineXML(with_uuid(action.payload["xml"], net.UUIDString()))
            if net.isActive() and _connections(net) == 0:
                net.destroy()
        if not net.isActive():
            net.create()
        net.setAutostart(1)

    def _network_delete(self, conn: Any, action: Action) -> None:
        libvirt = libvirt_module()
        try:
            net = conn.networkLookupByName(action.payload["object"])
        except libvirt.libvirtError:
            return  # already gone
        if net.isActive():
            net.destroy()
        net.undefine()

    def _network_adopt(self, conn: Any, action: Action) -> None:
        """Add gen's marker; with drift, the rendered definition (as an update would)."""
        if action.payload.get("redefine"):
            self._network_update(conn, action)
            return
        conn.networkDefineXML(action.payload["marked"])  # the live definition + the marker
        net = conn.networkLookupByName(action.payload["object"])
        if not net.isActive():
            net.create()
        net.setAutostart(1)

    def _pool_create(self, conn: Any, action: Action) -> None:
        pool = conn.storagePoolDefineXML(action.payload["xml"])
        if not pool.isActive():
            pool.build(0)  # a dir pool: make the target directory if it is missing
            pool.create()
        pool.setAutostart(1)

    def _pool_update(self, conn: Any, action: Action) -> None:
        pool = conn.storagePoolLookupByName(action.payload["object"])
        if not pool.isActive():
            pool.create()
        pool.setAutostart(1)

    def _volume_create(self, conn: Any, action: Action) -> None:
        libvirt = libvirt_module()
        pool = conn.storagePoolLookupByName(action.payload["pool"])
        try:
            pool.storageVolLookupByName(action.payload["object"])
            return  # created before an interruption
        except libvirt.libvirtError:
            pass
        if "image" in action.payload:
            upload_image(conn, pool, action.payload["image"], self.store())
            return
        wanted: seed.Seed | None = action.payload.get("seed")
        if wanted is None:
            pool.createXML(action.payload["xml"], 0)
            return
        refs = action.payload["secrets"]
        iso = seed.build_iso(((name, seed.fill_secrets(content, refs))
                              for name, content in wanted.files), wanted.label)
        _upload(conn, pool.createXML(seed.volume_xml(wanted.volume, len(iso)), 0), iso)

    def _volume_update(self, conn: Any, action: Action) -> None:
        pool = conn.storagePoolLookupByName(action.payload["pool"])
        volume = pool.storageVolLookupByName(action.payload["object"])
        if volume.info()[1] < action.payload["capacity"]:
            volume.resize(action.payload["capacity"], 0)  # grow only: never shrink

    def _volume_replace(self, conn: Any, action: Action) -> None:
        self._volume_delete(conn, action)
        self._volume_create(conn, action)

    def _volume_delete(self, conn: Any, action: Action) -> None:
        libvirt = libvirt_module()
        try:
            pool = conn.storagePoolLookupByName(action.payload["pool"])
            pool.storageVolLookupByName(action.payload["object"]).delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL,
                                            libvirt.VIR_ERR_NO_STORAGE_POOL):
                raise

    def _domain_create(self, conn: Any, action: Action) -> None:
        dom = conn.defineXML(action.payload["xml"])
        if action.payload.get("start") and not dom.isActive():
            dom.create()

    def _domain_update(self, conn: Any, action: Action) -> None:
        libvirt = libvirt_module()
        dom = conn.lookupByName(action.payload["object"])
        if action.payload.get("redefine"):
            dom = conn.defineXML(with_uuid(action.payload["xml"], dom.UUIDString()))
        live_kib = action.payload.get("live_memory_kib")
        if live_kib and dom.isActive():
            dom.setMemoryFlags(live_kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            with contextlib.suppress(libvirt.libvirtError):
                dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, f'<balloon kib="{live_kib}"/>',
                                "genlive", LIVE_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if action.payload.get("start") and not dom.isActive():
            dom.create()

    def _domain_adopt(self, conn: Any, action: Action) -> None:
        """Add gen's marker to the persistent definition, nothing else; drift the user
        approved is redefined like an update. A running VM keeps running either way."""
        libvirt = libvirt_module()
        if not action.payload.get("redefine"):
            dom = conn.lookupByName(action.payload["object"])
            marker = action.payload["marker"]
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, marker, "gen",
                            GEN_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        self._domain_update(conn, action)

    def _domain_replace(self, conn: Any, action: Action) -> None:
        self._domain_delete(conn, action)
        self._domain_create(conn, action)

    def _domain_delete(self, conn: Any, action: Action) -> None:
        libvirt = libvirt_module()
        try:
            dom = conn.lookupByName(action.payload["object"])
        except libvirt.libvirtError:
            return
        if dom.isActive():
            dom.destroy()
        try:  # drop managed save and UEFI vars with the definition
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            dom.undefine()  # drivers without those flags (test://)


def with_uuid(xml: str, uuid: str) -> str:
    """Rendered XML carries no uuid; a redefinition must keep the live object's (libvirt
    refuses a second uuid for the same name, and the uuid is the VM's identity)."""
    root = ET.fromstring(xml)
    if root.find("uuid") is None:
        element = ET.Element("uuid")
        element.text = uuid
        root.insert(1, element)
    return ET.tostring(root, encoding="unicode")


def _connections(net: Any) -> int:
    return int(ET.fromstring(net.XMLDesc(0)).get("connections", "0"))


def _upload(conn: Any, volume: Any, content: bytes) -> None:
    """Stream `content` into a freshly created volume (a cloud-init seed ISO)."""
    stream = conn.newStream(0)
    volume.upload(stream, 0, len(content), 0)
    offset = 0

    def chunk(_stream: Any, size: int, _opaque: Any) -> bytes:
        nonlocal offset
        piece = content[offset:offset + size]
        offset += len(piece)
        return piece

    stream.sendAll(chunk, None)
    stream.finish()


def store_object(store: Any, image: BaseImage) -> Path:
    """The verified store object of a pinned base image: a missing or corrupt object is
    refused (one line, exit 4) before anything reaches the hypervisor."""
    from generator.lock.store import StoreMissing

    assert image.sha256 is not None
    if not store.has(image.sha256):
        raise StoreMissing(image.sha256, f"base image {image.artifact}", store.root)
    return Path(store.verify(image.sha256))


def upload_image(conn: Any, pool: Any, image: BaseImage, store: Any) -> None:
    """Stream a base image from the store into a new volume, then hash the volume as the
    hypervisor holds it (streamed back): a volume that does not hash to the pin is deleted
    and the upload refused, so an overlay never backs onto a wrong base."""
    source = store_object(store, image)
    size = source.stat().st_size
    # raw: libvirt makes a sparse file of exactly this size and the upload fills it (a new
    # qcow2 volume would carry libvirt's own header, possibly longer than the image).
    volume = pool.createXML(raw_volume_xml(image.volume, size), 0)
    sent = hashlib.sha256()
    stream = conn.newStream(0)
    volume.upload(stream, 0, size, 0)
    with source.open("rb") as handle:
        def chunk(_stream: Any, nbytes: int, _opaque: Any) -> bytes:
            piece = handle.read(nbytes)
            sent.update(piece)
            return piece

        stream.sendAll(chunk, None)
    stream.finish()
    held = volume_sha256(volume)
    if sent.hexdigest() != image.sha256 or held != image.sha256:
        volume.delete(0)
        raise UserError(f"base image {image.artifact}: the uploaded volume {image.volume} hashes "
                        f"to sha256:{held}, not the pinned sha256:{image.sha256}; deleted it",
                        "check the store object (gen fetch) and the pool's disk, then converge "
                        "again")
    with contextlib.suppress(Exception):  # let libvirt probe the format it now holds
        pool.refresh(0)


def raw_volume_xml(name: str, size: int) -> str:
    root = ET.Element("volume", type="file")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(size)
    ET.SubElement(ET.SubElement(root, "target"), "format", type="raw")
    return ET.tostring(root, encoding="unicode")


def volume_sha256(volume: Any) -> str:
    """sha256 of a volume's bytes as the hypervisor holds them, streamed back."""
    digest = hashlib.sha256()
    stream = volume.connect().newStream(0)
    volume.download(stream, 0, 0, 0)

    def take(_stream: Any, data: bytes, _opaque: Any) -> int:
        digest.update(data)
        return 0

    stream.recvAll(take, None)
    stream.finish()
    return digest.hexdigest()


# -- reading live state ------------------------------------------------------------------


def read_live(conn: Any, desired: Desired) -> Live:
    """Networks, pools, the volumes of relevant pools, and domains with their definitions."""
    libvirt = libvirt_module()
    live = Live()
    for net in conn.listAllNetworks(0):
        live.networks[net.name()] = (net, ET.fromstring(_net_xml(libvirt, net)),
                                     bool(net.isActive()), bool(net.autostart()))
    for pool in conn.listAllStoragePools(0):
        live.pools[pool.name()] = (pool, ET.fromstring(pool.XMLDesc(0)),
                                   bool(pool.isActive()), bool(pool.autostart()))
    domains = conn.listAllDomains(0)
    configs = parse_many([dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) for dom in domains])
    for dom, config in zip(domains, configs, strict=True):
        live.domains[dom.name()] = _live_domain(libvirt, dom, config)
    wanted = {p for p, _ in desired.volumes.values()} | {
        s.pool for s in desired.seeds.values()} | {i.pool for i in desired.images.values()} | {
        s.get("pool") for d in live.domains.values() for s in d.config.iter("source")
        if s.get("pool")}
    for name in sorted(p for p in wanted if p in live.pools and live.pools[p][2]):
        live.volumes[name] = _volumes(libvirt, live.pools[name][0])
    return live


def _volumes(libvirt: Any, pool: Any) -> dict[str, ET.Element]:
    with contextlib.suppress(libvirt.libvirtError):  # files may change behind libvirt's back
        pool.refresh(0)
    out = {}
    for volume in pool.listAllVolumes(0):
        with contextlib.suppress(libvirt.libvirtError):  # vanished since the listing
            out[volume.name()] = ET.fromstring(volume.XMLDesc(0))
    return out


def _net_xml(libvirt: Any, net: Any) -> str:
    try:
        return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    except libvirt.libvirtError:
        return str(net.XMLDesc(0))  # test:// has no inactive flag


def _live_domain(libvirt: Any, dom: Any, config: ET.Element) -> LiveDomain:
    running = bool(dom.isActive())
    info = dom.info() if running else None
    return LiveDomain(dom, config, running, int(info[2]) if info else None,
                      int(info[1]) if info else None,
                      _asked_kib(libvirt, dom) if running else None)


def _asked_kib(libvirt: Any, dom: Any) -> int | None:
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LIVE_NS,
                            libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return int(ET.fromstring(text).get("kib", ""))
    except (libvirt.libvirtError, ET.ParseError, ValueError):
        return None  # never asked (or a driver without live metadata)


# -- planning ----------------------------------------------------------------------------


@record
class HypervisorPlan:
    """What planning one hypervisor found (merged into the provider's in hypervisor order)."""

    actions: list[Action]
    notices: list[str]
    conflicts: list[str]


def plan_hypervisor(provider: LibvirtProvider, env: Environment, hv: str, desired: Desired,
                    live: Live) -> HypervisorPlan:
    """Actions for one hypervisor; touches nothing shared, so hypervisors plan concurrently."""
    ctx = _Ctx(provider, env, hv, desired, live)
    actions = ctx.networks() + ctx.pools() + ctx.images() + ctx.volumes() + ctx.domains()
    if desired.empty():
        ctx.notices.append(f"{hv}: nothing rendered for this hypervisor; "
                           "an empty desired set never prunes")
    else:
        actions += ctx.prune()
    return HypervisorPlan(actions, ctx.notices, ctx.conflicts)


@dataclass(slots=True)
class _Ctx:
    provider: LibvirtProvider
    env: Environment
    hv: str
    desired: Desired
    live: Live
    notices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def action(self, op: str, kind: str, obj: str, wave: int, changes: Iterable[DiffItem] = (),
               **kw: Any) -> Action:
        payload = {"hv": self.hv, "object": obj, **kw.pop("payload", {})}
        if (kind, obj) in self.desired.xml and op != "delete":
            payload.setdefault("xml", self.desired.xml[(kind, obj)])
        return Action(op, "libvirt", kind, f"{self.hv}/{obj}", wave,  # type: ignore[arg-type]
                      tuple(changes), payload=payload, **kw)

    def owned(self, root: ET.Element) -> bool:
        return essence.owner(root).get("env") == self.env.name

    def host_volumes(self) -> set[str]:
        """Disks and seeds of the VMs that run boot services (they come up first)."""
        hosts = service_hosts(self.env)
        return {v for name, root in self.desired.domains.items() if name in hosts
                for v in _volumes_of(root)}

    def volume_wave(self, name: str, hosts: set[str]) -> dict[str, int]:
        """A service host's volume goes in the service hosts' wave, ahead of its domain."""
        return {"wave": WAVE_HOSTS, "order": -1} if name in hosts else {"wave": WAVE_VOLUMES}

    def conflict(self, kind: str, name: str, root: ET.Element) -> None:
        other = essence.owner(root).get("env")
        who = f"environment {other!r}" if other else "nobody (no gen marker)"
        adopt = "" if other or self.provider.adopt else \
            " (or, if the environment describes it, e.g. after `gen import`, plan --adopt)"
        self.conflicts.append(
            f"{self.hv}: {kind} {name!r} exists but is owned by {who}; gen never touches "
            f"foreign objects: rename it in the environment or remove it by hand{adopt}")

    # adoption (`--adopt`, after `gen import`) -------------------------------------------

    def adoptable(self, root: ET.Element) -> bool:
        """Only objects without any gen marker: another environment's are never taken."""
        return self.provider.adopt and not essence.owner(root)

    def adopt_network(self, name: str, root: ET.Element, live_root: ET.Element, active: bool,
                      autostart: bool) -> Action:
        marked = with_marker(live_root, root)
        drift = _changes(essence.network(marked), essence.network(root))
        changes = [_owner_item(root)] + drift
        changes += _state(active, "inactive", "active") + _flag(autostart, "autostart")
        return self.action("adopt", "network", name, WAVE_INFRA, changes,
                           note=NET_RESTART if drift else (
                               "marker added, nothing else changed" if len(changes) == 1
                               else "marker added"),
                           payload={"redefine": bool(drift),
                                    "marked": ET.tostring(marked, encoding="unicode")})

    def adopt_domain(self, name: str, root: ET.Element, have: LiveDomain, start: bool,
                     kw: dict[str, Any]) -> list[Action]:
        """An update's diff against the live definition with the marker added: drift is
        listed by field; drift that would replace the VM makes it a conflict instead."""
        dropped = essence.unmanaged(have.config)
        if dropped:
            self.conflicts.append(
                f"{self.hv}: cannot adopt domain {name!r}: it has {'; '.join(dropped)}, "
                "which gen does not render, and adopting would drop it; remove it by hand "
                "(virsh edit) or leave the domain out of the environment")
            return []
        marked = LiveDomain(have.handle, with_marker(have.config, root), have.running,
                            have.current_kib, have.max_kib, have.asked_kib)
        found = self._domain_diff(name, root, marked, start, kw)
        if found and found[0].op == "replace":
            self.conflicts.append(
                f"{self.hv}: cannot adopt domain {name!r}: its {found[0].forcing_field} "
                "differs from the environment and changing it replaces the VM; fix the "
                "environment (gen import libvirt reads it) and plan again")
            return []
        update = found[0] if found else None
        drift = list(update.changes) if update else []
        payload: dict[str, Any] = dict(update.payload) if update else {
            "redefine": False, "start": False}
        payload["marker"] = _marker_xml(root)
        note = update.note if update and update.note else (
            "marker added, nothing else changed" if not drift else "")
        return [self.action("adopt", "domain", name, changes=[_owner_item(root)] + drift,
                            note=note, payload=payload, **kw)]

    # networks --------------------------------------------------------------------------

    def networks(self) -> list[Action]:
        out = []
        for name, root in self.desired.networks.items():
            if name not in self.live.networks:
                out.append(self.action("create", "network", name, WAVE_INFRA,
                                       _summary(essence.network(root))))
                continue
            _, live_root, active, autostart = self.live.networks[name]
            if not self.owned(live_root) and self.adoptable(live_root):
                out.append(self.adopt_network(name, root, live_root, active, autostart))
                continue
            if not self.owned(live_root):
                self.conflict("network", name, live_root)
                continue
            changes = _changes(essence.network(live_root), essence.network(root))
            redefine = bool(changes)
            changes += _state(active, "inactive", "active") + _flag(autostart, "autostart")
            if changes:
                out.append(self.action("update", "network", name, WAVE_INFRA, changes,
                                       note=NET_RESTART if redefine else "",
                                       payload={"redefine": redefine}))
        return out

    # pools -----------------------------------------------------------------------------

    def pools(self) -> list[Action]:
        out = []
        for name, root in self.desired.pools.items():
            if name not in self.live.pools:
                out.append(self.action("create", "pool", name, WAVE_INFRA,
                                       _summary(essence.pool(root))))
                continue
            _, live_root, active, autostart = self.live.pools[name]
            differ = _changes(essence.pool(live_root), essence.pool(root))
            if differ:  # pools carry no owner marker: never rewrite someone's pool
                self.conflicts.append(
                    f"{self.hv}: pool {name!r} exists with a different definition ("
                    + ", ".join(f"{d.path}: {d.old} -> {d.new}" for d in differ)
                    + "); gen does not modify existing pools: fix the environment or the pool")
                continue
            changes = _state(active, "inactive", "active") + _flag(autostart, "autostart")
            if changes:
                out.append(self.action("update", "pool", name, WAVE_INFRA, changes))
        return out

    # base images -----------------------------------------------------------------------

    def images(self) -> list[Action]:
        """Upload each pinned base image its pool lacks; check the ones it holds by hash."""
        out = []
        for name, image in self.desired.images.items():
            held = self.live.volumes.get(image.pool, {}).get(name)
            where = f"{self.hv}: base image {image.artifact} (volume {name} in pool {image.pool})"
            if held is None and image.sha256 is None:
                self.conflicts.append(
                    f"{where} is not in the pool and not pinned, so converge cannot upload it: "
                    f"run `gen lock env/{self.env.name}` and `gen fetch env/{self.env.name}`")
            elif held is None:
                out.append(self.upload(image, "create", [
                    DiffItem("add", "image", None, f"{image.artifact} sha256:{image.sha256}")]))
            elif image.sha256 is None:
                self.notices.append(f"{where} is not pinned, so gen cannot verify it")
            else:
                actual = volume_sha256(self.live.pools[image.pool][0].storageVolLookupByName(name))
                if actual == image.sha256:
                    continue
                if not self.backed_onto(image):  # an interrupted upload, or a stale copy
                    out.append(self.upload(image, "replace", [DiffItem(
                        "change", "image", f"sha256:{actual}", f"sha256:{image.sha256}")]))
                    continue
                self.conflicts.append(
                    f"{where} holds sha256:{actual}, the lock pins sha256:{image.sha256}; "
                    "overlays back onto it, so gen never overwrites it: once no VM uses it, "
                    "delete it (virsh vol-delete) and converge again")
        return out

    def upload(self, image: BaseImage, op: str, changes: list[DiffItem]) -> Action:
        size = store_object(self.provider.store(), image).stat().st_size
        again = "" if op == "create" else "nothing backs onto the pool's copy: "
        return self.action(op, "volume", image.volume, WAVE_IMAGES, changes,
                           note=f"{again}upload volume {image.volume} sha256:{image.sha256} "
                                f"({size} bytes from the store, verified on the hypervisor)",
                           payload={"pool": image.pool, "image": image})

    def backed_onto(self, image: BaseImage) -> bool:
        """Whether a volume of the pool is an overlay of this base image."""
        path_end = f"/{image.volume}"
        return any((xml.findtext("backingStore/path") or "").endswith(path_end)
                   for xml in self.live.volumes.get(image.pool, {}).values())

    # volumes ---------------------------------------------------------------------------

    def volumes(self) -> list[Action]:
        out = []
        protected = self._protected_volumes()
        hosts = self.host_volumes()
        for name, (pool, root) in self.desired.volumes.items():
            want = essence.volume(root)
            payload = {"pool": pool, "capacity": int(want["capacity"])}
            current = self.live.volumes.get(pool, {}).get(name)
            place = self.volume_wave(name, hosts)
            if current is None:
                out.append(self.action("create", "volume", name, changes=_summary(want),
                                       payload=payload, **place))
                continue
            out += self._volume_diff(name, essence.volume(current), want, payload,
                                     name in protected, place)
        return out + self.seed_volumes(hosts)

    def seed_volumes(self, hosts: set[str]) -> list[Action]:
        """Missing seed ISOs are built and uploaded; existing ones are left as they are
        (cloud-init reads a seed once, at first boot; volumes carry no marker to compare)."""
        refs = tuple(secrets.declared(self.env).values())
        return [self.action("create", "volume", name,
                            changes=[DiffItem("add", "cloud-init seed", None,
                                              ", ".join(f for f, _ in wanted.files))],
                            note="NoCloud seed ISO, built now with secrets filled in",
                            payload={"pool": wanted.pool, "seed": wanted, "secrets": refs},
                            **self.volume_wave(name, hosts))
                for name, wanted in self.desired.seeds.items()
                if name not in self.live.volumes.get(wanted.pool, {})]

    def _volume_diff(self, name: str, have: essence.Essence, want: essence.Essence,
                     payload: dict[str, Any], protected: bool,
                     place: dict[str, int]) -> list[Action]:
        changes = _changes(have, want)
        if not changes:
            return []
        forcing = next((c.path for c in changes if c.path in essence.VOLUME_FORCING), None)
        if forcing is None and int(want["capacity"]) < int(have["capacity"]):
            forcing = "capacity"
        if forcing is not None:
            note = ("volumes never shrink: recreating wipes the disk" if forcing == "capacity"
                    else "recreating wipes the disk")
            return [self.action("replace", "volume", name, changes=changes,
                                forcing_field=forcing, destructive=True, note=note,
                                protected=protected, payload=payload, **place)]
        return [self.action("update", "volume", name, changes=changes,
                            note="grown in place; the guest sees the new size at next boot",
                            payload=payload, **place)]

    def _protected_volumes(self) -> set[str]:
        """Disks marked protect in the model or on a live owned domain's marker."""
        names = {volume_name(n, i) for n in self.env.nodes for i, d in enumerate(n.disks)
                 if d.protect}
        for dom in self.live.domains.values():
            mark = essence.owner(dom.config)
            if mark.get("env") == self.env.name:
                names.update(mark.get("protect-volumes", "").split())
                if mark.get("protect") == "true":
                    names.update(_volumes_of(dom.config))
        return names

    # domains ---------------------------------------------------------------------------

    def domains(self) -> list[Action]:
        out = []
        hosts = service_hosts(self.env)
        for name, root in self.desired.domains.items():
            mark = essence.owner(root)
            role = mark.get("role", "")
            start = self.provider.should_run(role)
            kw = {"order": role_order(role), "protected": mark.get("protect") == "true",
                  "wave": WAVE_HOSTS if name in hosts else WAVE_DOMAINS}
            have = self.live.domains.get(name)
            if have is None:
                note = "define and start" if start else "define (not started: --start)"
                out.append(self.action("create", "domain", name,
                                       changes=_summary(essence.domain(root)), note=note,
                                       payload={"start": start}, **kw))
            elif not self.owned(have.config) and self.adoptable(have.config):
                out += self.adopt_domain(name, root, have, start, kw)
            elif not self.owned(have.config):
                self.conflict("domain", name, have.config)
            else:
                out += self._domain_diff(name, root, have, start, kw)
        return out

    def _domain_diff(self, name: str, root: ET.Element, have: LiveDomain, start: bool,
                     kw: dict[str, Any]) -> list[Action]:
        want = essence.domain(root)
        changes = _changes(essence.domain(have.config), want)
        forcing = next((c.path for c in changes if c.path in essence.DOMAIN_FORCING), None)
        if forcing is not None:
            return [self.action("replace", "domain", name, changes=changes,
                                forcing_field=forcing, destructive=True,
                                note="the VM is stopped, undefined and defined anew",
                                payload={"start": start}, **kw)]
        payload: dict[str, Any] = {"redefine": bool(changes), "start": start}
        note = NEXT_BOOT if changes and have.running else ""
        want_kib = int(want["currentMemory"].split()[0])
        # The balloon moves only up to the running VM's maximum; more takes a reboot.
        ceiling = min(int(want["memory"].split()[0]), have.max_kib or want_kib)
        ignored = have.asked_kib == want_kib  # asked before; the guest did not follow
        if ignored and have.current_kib != want_kib:
            self.notices.append(
                f"domain {self.hv}/{name}: the guest did not follow the balloon request to "
                f"{want_kib} KiB (it runs with {have.current_kib} KiB; no balloon driver?); "
                "the new size takes effect at next boot")
        if have.running and have.current_kib is not None and have.current_kib != want_kib \
                and want_kib <= ceiling and not ignored:
            changes.append(DiffItem("change", "currentMemory (live)",
                                    f"{have.current_kib} KiB", f"{want_kib} KiB"))
            payload["live_memory_kib"] = want_kib
        if start and not have.running:
            changes.append(DiffItem("change", "state", "shut off", "running"))
        if not changes:
            return []
        return [self.action("update", "domain", name, changes=changes, note=note,
                            payload=payload, **kw)]

    # prune -----------------------------------------------------------------------------

    def prune(self) -> list[Action]:
        """Deletes for owned objects no longer rendered (plan.py drops them without --prune)."""
        out = []
        protected = self._protected_volumes()
        wanted_volumes = set(self.desired.volumes) | set(self.desired.seeds) | set(
            self.desired.images)
        for name, dom in sorted(self.live.domains.items()):
            mark = essence.owner(dom.config)
            if mark.get("env") != self.env.name:
                continue
            if name not in self.desired.domains:
                out.append(self.action("delete", "domain", name, WAVE_DOMAINS,
                                       destructive=True, protected=mark.get("protect") == "true",
                                       order=role_order(mark.get("role", "")),
                                       note="stops and undefines the VM"))
            for pool, volume in _volume_sources(dom.config):
                if volume not in wanted_volumes and volume in self.live.volumes.get(pool, {}):
                    wanted_volumes.add(volume)  # once, even if two domains share it
                    out.append(self.action("delete", "volume", volume, WAVE_VOLUMES,
                                           destructive=True, protected=volume in protected,
                                           note="wipes the disk", payload={"pool": pool}))
        for name, (_, root, _, _) in sorted(self.live.networks.items()):
            if self.owned(root) and name not in self.desired.networks:
                out.append(self.action("delete", "network", name, WAVE_INFRA))
        return out


def with_marker(live: ET.Element, rendered: ET.Element) -> ET.Element:
    """A copy of a live definition carrying the rendered object's owner marker."""
    copy = ET.fromstring(ET.tostring(live))
    metadata = copy.find("metadata")
    if metadata is None:
        metadata = ET.Element("metadata")
        name = copy.find("name")
        copy.insert(list(copy).index(name) + 1 if name is not None else 0, metadata)
    marker = rendered.find(f"metadata/{essence.OWNER}")
    if marker is not None:
        metadata.append(ET.fromstring(ET.tostring(marker)))
    return copy


def _marker_xml(rendered: ET.Element) -> str:
    """The owner element alone (setMetadata takes it without a namespace prefix)."""
    marker = rendered.find(f"metadata/{essence.OWNER}")
    return ET.tostring(ET.Element("owner", dict(marker.attrib) if marker is not None else {}),
                       encoding="unicode")


def _owner_item(rendered: ET.Element) -> DiffItem:
    return DiffItem("add", "owner", None, _summary_owner(essence.owner(rendered)))


def _summary_owner(mark: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(mark.items()))


def _volumes_of(root: ET.Element) -> set[str]:
    return {v for _, v in _volume_sources(root)}


def _volume_sources(root: ET.Element) -> list[tuple[str, str]]:
    return [(s.get("pool", ""), s.get("volume", "")) for s in root.findall("devices/disk/source")
            if s.get("volume")]


def _changes(have: essence.Essence, want: essence.Essence) -> list[DiffItem]:
    return essence.diff(have, want)


def _summary(want: essence.Essence) -> list[DiffItem]:
    return [DiffItem("add", k, None, v) for k, v in want.items() if v and k != "owner"]


def _state(ok: bool, bad: str, good: str) -> list[DiffItem]:
    return [] if ok else [DiffItem("change", "state", bad, good)]


def _flag(ok: bool, name: str) -> list[DiffItem]:
    return [] if ok else [DiffItem("change", name, "off", "on")]
