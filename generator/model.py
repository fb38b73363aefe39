"""The typed model: frozen, slotted dataclasses built from a schema-valid, expanded document.

Everything here is expanded: every NIC has a MAC and an IP, every node an FQDN, every size
is in bytes or MiB, every default filled in. The model rules and the families' check hooks
run on it (reporting at `Environment.where(path)`); renderers read it only once they passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from generator.errors import Location

if TYPE_CHECKING:
    from generator.loader import FieldPath

from generator.profiles import HostPaths, profile
from generator.records import record

BOOT_ORDER = ("bootstrap", "master", "worker")


# The one definition of the secret-marker syntax `@@gen-secret:NAME@@`: renderers write it,
# validation refuses it in input, diff flags it, converge fills it. Names are the
# references' names (`sshAuthorizedKeys[0]` included): anything but `@`.
SECRET_MARKER_PREFIX = "@@gen-secret:"
SECRET_MARKER_SUFFIX = "@@"
SECRET_MARKER = re.compile(re.escape(SECRET_MARKER_PREFIX) + "([^@]+)"
                           + re.escape(SECRET_MARKER_SUFFIX))
SECRET_MARKER_BYTES = re.compile(SECRET_MARKER.pattern.encode())


def secret_marker(name: str) -> str:
    return f"{SECRET_MARKER_PREFIX}{name}{SECRET_MARKER_SUFFIX}"


class Address(IPv4Address):
    """An IPv4Address that keeps its text. The families print every node's address about
    ten times (100,000 `str()` calls at 10,000 nodes), and IPv4Address derives the text
    from the integer on each; this derives it once. It is equal, hashed, ordered, printed
    and formatted as the IPv4Address of the same value, and pickles as exactly that
    IPv4Address (the plan cache's stored models and its unpickler's allow-list are
    unchanged); arithmetic (`address + 1`) gives an Address again."""

    __slots__ = ("_text",)

    def __init__(self, address: int | str | bytes, text: str | None = None) -> None:
        """`text`: the address's canonical dotted quad, when the caller already proved it
        (expand.ipv4); otherwise derived here."""
        super().__init__(address)
        self._text = super().__str__() if text is None else text

    def __str__(self) -> str:
        return self._text

    def __format__(self, fmt: str) -> str:
        # a spec (`>15`, `b`, `#x`, a wrong one) as IPv4Address formats or refuses it
        return self._text if not fmt else format(IPv4Address(int(self)), fmt)

    def __repr__(self) -> str:
        return f"IPv4Address({self._text!r})"

    def __reduce__(self) -> tuple[type[IPv4Address], tuple[int]]:
        return IPv4Address, (int(self),)


@record
class SecretRef:
    """A secret by reference only. Its value is never read while rendering."""

    name: str
    source: str  # "env" or "file"
    ref: str  # variable name or path

    def marker(self) -> str:
        """The placeholder a rendered file carries; filled in on the target at converge."""
        return secret_marker(self.name)


@record
class Disk:
    """One virtual disk of a node, in a libvirt storage pool."""

    name: str
    size_bytes: int
    pool: str
    format: str = "qcow2"
    backing_image: str | None = None
    protect: bool = False
    volume: str | None = None  # an existing volume's own name (adopted labs)


@record
class Nic:
    """One network interface of a node: its network, MAC and IP."""

    network: str
    mac: str
    ip: IPv4Address
    interface: str = "ens3"


@record
class Node:
    """One machine of the cluster: a VM on one of the hypervisors."""

    name: str
    role: str
    hypervisor: str
    vcpu: int
    memory_mib: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    fqdn: str
    firmware: str = "bios"
    boot: str = "pxe"
    image: str | None = None
    install_dev: str | None = None
    protect: bool = False
    machine: str | None = None  # libvirt machine type; None: by firmware (pc / q35)
    os: str | None = None  # host OS profile (generator/profiles.py); None: profiles.DEFAULT

    @property
    def nic(self) -> Nic:
        """The primary NIC: the one nodes boot and are addressed on."""
        return self.nics[0]

    @property
    def ip(self) -> IPv4Address:
        return self.nics[0].ip

    def volume_name(self, disk_index: int) -> str:
        """`<node>-<disk>.<format>`, or the name of a volume made by hand (`volume:`)."""
        disk = self.disks[disk_index]
        return disk.volume or f"{self.name}-{disk.name}.{disk.format}"


@record
class Network:
    """One L2 network the nodes attach to, with its addressing."""

    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    bridge: str | None
    libvirt_mode: str | None  # nat | isolated | route, None for a host bridge
    libvirt_dhcp: bool
    vlan: int | None
    ntp: tuple[IPv4Address, ...] = ()  # empty: the OS's default (public) time pools


@record
class Hypervisor:
    """A libvirt host the VM nodes run on."""

    name: str
    uri: str
    domain_type: str
    pool_name: str
    pool_path: str
    bridge: str | None


@record
class ClusterNetwork:
    """The pod network's CIDR and per-node prefix."""

    cidr: IPv4Network
    host_prefix: int | None


@record
class Cluster:
    """The cluster itself: flavour, names, versions and networks."""

    flavour: str
    name: str
    base_domain: str
    version: str | None
    kubernetes_version: str | None
    network_type: str
    cluster_network: tuple[ClusterNetwork, ...]
    service_network: tuple[IPv4Network, ...]
    masters_schedulable: bool
    pull_secret: SecretRef | None
    ssh_keys: tuple[SecretRef, ...]
    # The bootstrap node's job is done: boot services stop naming it (families/common.py).
    bootstrap_complete: bool = False

    @property
    def domain(self) -> str:
        """The cluster's DNS domain: `<name>.<baseDomain>`."""
        return f"{self.name}.{self.base_domain}"


@record
class DnsRecord:
    """One extra DNS record of the environment."""

    name: str
    type: str
    value: str


@record
class DnsService:
    """The DNS server gen configures for the cluster's zone."""

    provider: str
    host: str
    forwarders: tuple[IPv4Address, ...]
    ttl: int
    records: tuple[DnsRecord, ...]
    directory: str = "/var/named"  # BIND's working directory
    os: HostPaths = profile(None).paths  # of the DNS host: where its zone files go


@record
class DhcpService:
    """The DHCP server gen configures for the machine network."""

    provider: str
    host: str
    network: str
    pool: tuple[IPv4Address, IPv4Address] | None
    deny_unknown_clients: bool
    lease_time: int
    bios_file: str
    uefi_file: str
    os: HostPaths = profile(None).paths  # of the DHCP (and TFTP) host: its PXE loaders


@record
class PxeService:
    """Network boot: how PXE-booted nodes find their installer."""

    ip_mode: str
    install_dev: str
    rootfs: str  # live -> coreos.live.rootfs_url, image -> coreos.inst.image_url
    interface: str
    kernel_args: tuple[str, ...]


@record
class HttpService:
    """The HTTP server that serves Ignition, images and boot artifacts."""

    host: str
    port: int
    os: HostPaths = profile(None).paths  # of the HTTP host: Apache's modules and user


@record
class HaproxyService:
    """The load balancer in front of the API and ingress."""

    host: str
    stats_port: int
    balance: str
    ingress_http_port: int
    ingress_https_port: int
    address: IPv4Address | None = None  # a VIP for api/api-int/*.apps; default: the host's IP


@record
class NfsClient:
    """One client of an NFS export, with its export options."""

    host: str
    options: tuple[str, ...]


@record
class NfsExport:
    """One directory the NFS server exports."""

    path: str
    clients: tuple[NfsClient, ...]
    # the export directory as converge creates it: owner and group by name or numeric id,
    # mode in octal as written (the directory must exist before `exportfs -ra` exports it)
    owner: str = "root"
    group: str = "root"
    mode: str = "0755"


@record
class NfsService:
    """The NFS server and its exports."""

    host: str
    exports: tuple[NfsExport, ...]


@record
class Services:
    """The infrastructure services gen configures (each None when not used)."""

    dns: DnsService | None
    dhcp: DhcpService | None
    pxe: PxeService | None
    http: HttpService | None
    haproxy: HaproxyService | None
    nfs: NfsService | None


@record
class NfsStorage:
    """Dynamic NFS storage for the cluster's persistent volumes."""

    server: str  # node name
    path: str
    provisioner: str
    storage_class: str
    image: str


@record
class App:
    """An application deployed onto the cluster."""

    name: str
    image: str
    replicas: int
    port: int
    host: str | None
    size_bytes: int | None
    nfs_path: str | None
    mount_path: str | None


@record
class Registry:
    """An image registry run in the cluster, its storage on NFS."""

    host: str
    size_bytes: int
    nfs_path: str
    image: str


@record
class ManifestRef:
    """An upstream manifest, pinned by URL and sha256."""

    name: str
    url: str
    sha256: str | None


@record
class GitOps:
    """Where Argo CD or Flux pulls the rendered repo from: the repo, the branch, and the
    directory of that repo holding the rendered tree ("" when it is the repo's root, as
    `gen render --commit` makes it)."""

    url: str
    branch: str
    path: str
    namespace: str  # the engine's own namespace, where its bootstrap objects live
    prune: bool
    self_heal: bool
    secret_ref: str | None  # a Secret the operator made for Flux (never its value)


@record
class Kubernetes:
    """Kubernetes-level choices: CNI, ingress, NFS storage, registry, apps, who syncs."""

    cni: str | None
    cni_manifest: ManifestRef | None
    ingress: bool
    ingress_http_nodeport: int
    ingress_https_nodeport: int
    nfs: NfsStorage | None
    registry: Registry | None
    apps: tuple[App, ...]
    engine: str = "gen"  # gen | argocd | flux: who syncs the objects into the cluster
    gitops: GitOps | None = None
    ingress_image: str | None = None  # kubernetes.ingress.image as written (None: gen's default)


@record
class OsArtifact:
    """An OS artifact: a direct URL, or an entry of CoreOS stream metadata."""

    name: str
    kind: str  # kernel | initramfs | rootfs | disk | image
    url: str | None
    sha256: str | None
    stream_url: str | None
    stream_artifact: str | None
    arch: str
    platform: str
    format: str | None
    stream_file: str | None = None  # stream metadata shipped beside env.yaml
    checksums_file: str | None = None  # an upstream checksum-file excerpt naming the url's sha256


@record
class ToolArtifact:
    """A client tool archive converge runs (openshift-install, oc), pinned like an OS
    artifact: by sha256, written or listed in the release's checksum-file excerpt."""

    name: str
    version: str
    url: str
    sha256: str | None = None
    checksums_file: str | None = None


@record
class Release:
    """The OpenShift release the cluster installs, pinned by its release image digest: read
    from the release's release.txt (`url`, or a copy shipped as `file`) or written (`image`)."""

    version: str
    url: str
    file: str | None = None
    image: str | None = None


@record
class KollaAnsible:
    """kolla-ansible's own data for one release, shipped by the blueprint: the pinned
    package, its all-in-one inventory layout and its passwords.yml keys."""

    version: str
    openstack_release: str
    url: str | None
    sha256: str | None
    host_groups: tuple[str, ...]
    children: tuple[tuple[str, tuple[str, ...]], ...]  # group -> children, in file order
    passwords: tuple[str, ...]
    ssh_keys: tuple[str, ...]


@record
class OpenStack:
    """kolla-ansible all-in-one inputs (flavour kolla)."""

    release: str
    internal_vip: IPv4Address
    enable_haproxy: bool
    network_interface: str
    external_interface: str
    cinder_disk: str
    passwords: tuple[SecretRef, ...]
    kolla_ansible: KollaAnsible | None = None


@record
class Mirror:
    """The site's registry that serves every pinned image; nodes pull through it.

    An upstream `host/repository` is mirrored at `registry/host/repository` (so images from
    two upstreams never collide), the layout `skopeo copy` or a push from the store writes."""

    registry: str  # host[:port]
    ca: str | None = None  # PEM of the CA that signed the mirror's certificate
    # base URL of the site's server for downloaded inputs: `https://host/path` is asked at
    # `<artifacts>/host/path` (gen lock only; rendering never downloads)
    artifacts: str | None = None
    credentials: SecretRef | None = None  # user:password converge pushes with
    host: str | None = None  # the node that runs it

    def repository(self, upstream: str) -> str:
        """Where the mirror keeps `upstream` (`host/repository`, no tag or digest)."""
        return f"{self.registry}/{upstream}"


@record
class Environment:
    """One whole expanded environment: what every renderer reads."""

    name: str
    blueprint: str
    cluster: Cluster
    networks: tuple[Network, ...]
    hypervisors: tuple[Hypervisor, ...]
    nodes: tuple[Node, ...]
    services: Services
    kubernetes: Kubernetes
    os_artifacts: tuple[OsArtifact, ...]
    images: tuple[tuple[str, str], ...]
    secrets: tuple[SecretRef, ...]
    openstack: OpenStack | None = None
    tools: tuple[ToolArtifact, ...] = ()
    release: Release | None = None  # artifacts.release (OpenShift)
    mirror: Mirror | None = None
    # Where each value was written (the merged document's locate): a check reports a
    # problem at the value's own file, line and column. Not part of the model's value.
    locate: Callable[[FieldPath], Location] | None = field(default=None, compare=False,
                                                            repr=False)

    def where(self, path: FieldPath) -> Location:
        """The source position of the value at document path `path`."""
        if self.locate is None:
            return Location(f"environments/{self.name}")
        return self.locate(path)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def nodes_with_role(self, *roles: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role in roles)

    def image(self, name: str) -> str:
        """A container image reference by its artifact name (or the name itself)."""
        return dict(self.images).get(name, name)
