"""PXE boot files per CoreOS node, in the TFTP root of the DHCP host.

Under `hosts/<dhcp host>/tftp/` (the DHCP server's next-server is itself):
- `pxelinux.cfg/01-<mac with dashes>`: BIOS clients (pxelinux.0).
- `grub/grub.cfg-01-<mac with dashes>`: UEFI clients. GRUB looks for it in its prefix,
  which the DHCP host's OS profile names: `/grub` on the TFTP server for Debian's network
  image (grub-efi-amd64-bin's `monolithic/grubnetx64.efi`), the TFTP root for el9's
  grubx64.efi (it looks beside itself); converge installs the image under the DHCP
  service's UEFI boot file name. Debian's image sources only `$prefix/grub.cfg`, so
  `grub/grub.cfg` chains each MAC to its own file (el9's tries the per-MAC file first).
- `ipxe/<mac with dashes>.ipxe`: iPXE clients, reached through `boot.ipxe`, which chains
  `ipxe/${mac:hexhyp}.ipxe`.
- `manifest.json`: the files converge puts next to them (boot loaders from the packages
  the DHCP host's OS profile names, kernel and initramfs from the artifact store, with
  their pinned sha256).

Where the kernel and initramfs come from: pxelinux.0 and GRUB fetch them over TFTP from
`images/<artifact name>` (plain pxelinux.0 cannot speak HTTP; lpxelinux.0 could, but
pxelinux.0 is what every DHCP config names), iPXE fetches them over HTTP from the helper's
`/install/<artifact name>`. The rootfs (or, for old releases, the metal image) and the
Ignition config always come over HTTP: they are far too big, or per node, for TFTP.

Kernel arguments (RHCOS/FCOS): `ifname=<iface>:<mac>` first, so the name `ip=` uses is the
name the NIC gets (udev would call it after its PCI slot: `ens2` on i440fx, `enp1s0` on q35;
gen never guesses which), `ip=` static as in lab A (or `ip=<iface>:dhcp`),
`nameserver=` the cluster DNS host (never the upstream forwarders),
`coreos.inst.install_dev`, `coreos.live.rootfs_url` (rootfs: live) or `coreos.inst=yes
coreos.inst.image_url` (rootfs: image), `coreos.inst.ignition_url`, serial and VGA consoles,
then the blueprint's extra `kernelArgs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generator.errors import Problem
from generator.expand import DEFAULT_INTERFACE
from generator.families import Pins, common, escape, ignition
from generator.loader import FieldPath
from generator.model import Environment, Network, Node, OsArtifact, PxeService
from generator.tree import Tree, canonical_json, lines

IMAGES = "images"
CONSOLES = ("console=tty0", "console=ttyS0,115200n8")
TFTP = "a TFTP file name"


def render(env: Environment, pins: Pins) -> Tree:
    """Per-MAC boot files for every PXE-booted CoreOS node, plus the TFTP manifest."""
    nodes = ignition.coreos_nodes(env)
    service, dhcp = env.services.pxe, env.services.dhcp
    if not nodes or service is None or dhcp is None or env.services.http is None:
        return {}  # check() refuses PXE nodes without these
    base = f"hosts/{dhcp.host}/tftp"
    _check_artifact_names(env, service)
    tree: Tree = {f"{base}/boot.ipxe": boot_ipxe()}
    grub = "/".join(filter(None, (base, dhcp.os.grub_prefix)))  # GRUB looks here
    files = BootFiles(env, service, _shared(env, service))
    macs = []
    for node in nodes:
        mac, pxelinux, grub_file, ipxe = files.of(node)
        tree[f"{base}/pxelinux.cfg/01-{mac}"] = pxelinux
        tree[f"{grub}/grub.cfg-01-{mac}"] = grub_file
        tree[f"{base}/ipxe/{mac}.ipxe"] = ipxe
        macs.append(mac)
    tree[f"{grub}/grub.cfg"] = _grub_chain(macs)
    tree[f"{base}/manifest.json"] = canonical_json(manifest(env, pins))
    return tree


PXE_ROLES = ("bootstrap", "master", "worker")


def check(env: Environment) -> list[Problem]:
    """PXE nodes need DHCP (whose host serves TFTP), services.pxe, HTTP and boot artifacts;
    only CoreOS nodes PXE-boot; extra kernel arguments never replace gen's own."""
    problems: list[Problem] = []

    def error(path: FieldPath, message: str, hint: str) -> None:
        problems.append(Problem(message, env.where(path), hint))

    nodes = [(i, n) for i, n in enumerate(env.nodes) if n.boot == "pxe"]
    if nodes:
        _check_pxe_nodes(env, nodes, error)
    service = env.services.pxe
    for k, arg in enumerate(service.kernel_args if service else ()):
        key = arg.split("=", 1)[0]
        if key in OWN_ARGS:
            error(("services", "pxe", "kernelArgs", k), f"kernel argument '{key}' is set by "
                  "gen", "set it through its own field (installDev, ipMode, artifacts, "
                  "services.http)")
    return problems


def _check_pxe_nodes(env: Environment, nodes: list[tuple[int, Node]],
                     error: Callable[[FieldPath, str, str], None]) -> None:
    flavour, (i, first) = env.cluster.flavour, nodes[0]
    for j, node in nodes:
        if flavour not in common.COREOS_FLAVOURS or node.role not in PXE_ROLES:
            error(("nodes", j, "boot"), f"node '{node.name}' ({node.role}, {flavour}) "
                  "cannot PXE-boot: gen PXE-installs CoreOS bootstrap, master and worker nodes",
                  "set boot: image for this node")
    services = env.services
    for key, why in (("dhcp", "DHCP and TFTP (served by the DHCP host)"),
                     ("pxe", "PXE settings"), ("http", "the HTTP server for Ignition")):
        if getattr(services, key) is None:
            error(("nodes", i, "boot"), f"PXE node '{first.name}' needs {why}, but no "
                  f"services.{key} is declared", f"declare services.{key} or set boot: image")
    live = services.pxe is None or services.pxe.rootfs == "live"
    bases = common.node_images(env)  # a VM's cloud image is no PXE artifact
    kinds = {a.kind for a in env.os_artifacts if not (a.kind == "image" and a.name in bases)}
    for kind in ("kernel", "initramfs", "rootfs" if live else "disk"):
        if kind not in kinds and not (kind == "disk" and "image" in kinds):
            error(("artifacts", "os"), f"PXE nodes need an OS artifact of kind {kind}",
                  f"add one (stream artifact: {kind}) under artifacts.os")


def dashed(mac: str) -> str:
    """`52:54:00:aa:bb:cc` -> `52-54-00-aa-bb-cc`, as pxelinux, GRUB and iPXE spell it."""
    return mac.lower().replace(":", "-")


def artifact(env: Environment, kind: str) -> OsArtifact:
    """The OS artifact of a kind; check() guarantees one exists."""
    found = common.os_artifact(env, kind)
    if found is None:
        raise AssertionError(f"no OS artifact of kind {kind}: pxe.check refuses this")
    return found


def interface(service: PxeService, node: Node) -> str:
    """The NIC's own interface name when the blueprint set one, else services.pxe.interface."""
    own = node.nic.interface
    return own if own != DEFAULT_INTERFACE else service.interface


def _interface_field(env: Environment, service: PxeService, node: Node) -> escape.Field:
    if node.nic.interface != DEFAULT_INTERFACE:
        return lambda: (*node_field(env, node), "nics", 0, "interface")
    return ("services", "pxe", "interface")


def node_field(env: Environment, node: Node) -> escape.FieldPath:
    """`("nodes", i)`: looked up only when a value of the node is refused."""
    return ("nodes", next(i for i, n in enumerate(env.nodes) if n.name == node.name))


def ifname_args(env: Environment, service: PxeService, node: Node) -> tuple[str, ...]:
    """dracut `ifname=<name>:<mac>` for every NIC: pins each name by MAC in the initramfs,
    so no NIC keeps a udev name (`ens3` at PCI slot 3) that another is pinned to."""
    primary = escape.kernel_value(interface(service, node),
                                  _interface_field(env, service, node), ":")
    args = [f"ifname={primary}:{_mac(env, node).lower()}"]
    for j, nic in enumerate(node.nics[1:], start=1):
        name = escape.kernel_value(nic.interface, _nic_field(env, node, j, "interface"), ":")
        mac = escape.mac(nic.mac, _nic_field(env, node, j, "mac"), "a kernel argument")
        args.append(f"ifname={name}:{mac.lower()}")
    return tuple(args)


def _nic_field(env: Environment, node: Node, index: int, key: str) -> escape.Field:
    """`nodes[i].nics[index].key`, looked up only when the value is refused."""
    return lambda: (*node_field(env, node), "nics", index, key)


def ip_arg(env: Environment, service: PxeService, node: Node) -> str:
    """dracut `ip=`: static `ip=<ip>::<gw>:<netmask>:<fqdn>:<iface>:none`, or DHCP.
    Its fields are colon-separated, so no value in it may hold a colon."""
    iface = escape.kernel_value(interface(service, node), _interface_field(env, service, node),
                                ":")
    if service.ip_mode == "dhcp":
        return f"ip={iface}:dhcp"
    gateway, netmask = _gateway_and_netmask(env.network(node.nic.network))
    fqdn = escape.fqdn(node.fqdn, node.name, lambda: (*node_field(env, node), "name"),
                       escape.KERNEL)
    return f"ip={node.ip}::{gateway}:{netmask}:{fqdn}:{iface}:none"


# Network (by identity, held so the id stays its own) -> its gateway and netmask as text:
# the same on every node's `ip=`, so not formatted 10,000 times.
_NET_TEXT: dict[int, tuple[Network, str, str]] = {}


def _gateway_and_netmask(net: Network) -> tuple[str, str]:
    found = _NET_TEXT.get(id(net))
    if found is None or found[0] is not net:
        if len(_NET_TEXT) >= 64:
            _NET_TEXT.clear()
        found = _NET_TEXT[id(net)] = (net, "" if net.gateway is None else str(net.gateway),
                                      str(net.cidr.netmask))
    return found[1], found[2]


def nameservers(env: Environment, node: Node) -> tuple[str, ...]:
    """The cluster's own DNS (it knows api-int and etcd-N), else the network's DNS servers."""
    return _nameservers(env, env.network(node.nic.network))


def _nameservers(env: Environment, net: Network) -> tuple[str, ...]:
    server = common.dns_server(env)
    if server is not None:
        return (str(server),)
    return tuple(str(d) for d in net.dns)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every node's boot files take from the environment alone."""

    rootfs: tuple[str, ...]  # the installer's image or live rootfs arguments
    tail: tuple[str, ...]  # the consoles and services.pxe.kernelArgs, last on every line
    kernel: OsArtifact
    initramfs: OsArtifact
    kernel_url: str
    initramfs_url: str


def _shared(env: Environment, service: PxeService) -> _Shared:
    rootfs: tuple[str, ...]
    if service.rootfs == "live":
        rootfs = (f"coreos.live.rootfs_url={common.install_url(env, artifact(env, 'rootfs'))}",)
    else:
        rootfs = ("coreos.inst=yes",
                  f"coreos.inst.image_url={common.install_url(env, metal_image(env))}")
    kernel, initramfs = artifact(env, "kernel"), artifact(env, "initramfs")
    return _Shared(rootfs,
                   (*CONSOLES, *(extra_arg(arg, i) for i, arg in enumerate(service.kernel_args))),
                   kernel, initramfs, common.install_url(env, kernel),
                   common.install_url(env, initramfs))


def kernel_args(env: Environment, service: PxeService, node: Node,
                shared: _Shared | None = None) -> tuple[str, ...]:
    """The CoreOS installer's kernel command line for one node, initrd= excluded."""
    # The node's name reaches the Ignition URL below (artifact names: see `render`).
    escape.name(node.name, lambda: (*node_field(env, node), "name"), escape.KERNEL)
    parts = shared or _shared(env, service)
    return (
        *ifname_args(env, service, node),
        ip_arg(env, service, node),
        *(f"nameserver={ns}" for ns in nameservers(env, node)),
        f"coreos.inst.install_dev={_install_dev(env, service, node)}",
        *parts.rootfs,
        f"coreos.inst.ignition_url={common.ignition_url(env, node)}",
        *parts.tail,
    )


# Arguments gen writes itself from the environment; an extra argument repeating one would
# override it (a second `coreos.inst.ignition_url` wins), so extras may not name them; nor
# `ignition.config.url`, which would give the live system another Ignition config.
OWN_ARGS = frozenset({"ifname", "ip", "nameserver", "initrd", "coreos.inst",
                      "coreos.inst.install_dev", "coreos.inst.image_url",
                      "coreos.inst.ignition_url", "coreos.live.rootfs_url",
                      "ignition.config.url"})


def extra_arg(arg: str, index: int) -> str:
    """One of services.pxe.kernelArgs: exactly one argument, never one gen sets."""
    field = ("services", "pxe", "kernelArgs", index)
    escape.kernel_arg(arg, field)
    key = arg.partition("=")[0]
    if key in OWN_ARGS:
        raise escape.UnsafeValue(field, f"'{key}' is set by gen from the environment; a second "
                                 "one would override it", "remove it from kernelArgs and set "
                                 "the environment field it comes from")
    return arg


def _install_dev(env: Environment, service: PxeService, node: Node) -> str:
    if node.install_dev:
        return escape.kernel_value(node.install_dev,
                                   lambda: (*node_field(env, node), "installDev"))
    return escape.kernel_value(service.install_dev, ("services", "pxe", "installDev"))


def metal_image(env: Environment) -> OsArtifact:
    """The raw metal image old installers write (`disk`, else an `image` artifact that is
    no VM's base image); semantic.check_pxe_services guarantees one in that mode."""
    found = common.metal_image(env)
    if found is None:
        raise ValueError("no metal image artifact")
    return found


def _title(node: Node) -> str:
    # Node names and roles are checked where they are written as words (ip=, file names);
    # here they are only refused line breaks, and GRUB quotes the title.
    return f"Install {node.fqdn} ({node.role})"


def _images(env: Environment, shared: _Shared | None = None) -> tuple[str, str]:
    """The kernel and initramfs artifact names (checked once per render, in `render`)."""
    if shared is not None:
        return shared.kernel.name, shared.initramfs.name
    return artifact(env, "kernel").name, artifact(env, "initramfs").name


def _check_artifact_names(env: Environment, service: PxeService) -> None:
    """Artifact names are TFTP paths and words in kernel and iPXE command lines."""
    boot = artifact(env, "rootfs") if service.rootfs == "live" else metal_image(env)
    for item in (artifact(env, "kernel"), artifact(env, "initramfs"), boot):
        _artifact_name(item)


def _artifact_name(item: OsArtifact) -> str:
    return escape.kernel_value(item.name, ("artifacts", "os", item.name))


def pxelinux_cfg(env: Environment, node: Node, args: tuple[str, ...],
                 shared: _Shared | None = None) -> bytes:
    """pxelinux config: boots the installer at once, no menu module needed."""
    kernel, initrd = _images(env, shared)
    title = escape.line(_title(node), lambda: (*node_field(env, node), "name"),
                        "a pxelinux config")
    return lines(
        f"# {title}; rendered by gen, do not edit by hand.",
        "SERIAL 0 115200",  # first directive: the loader's output on ttyS0, like the kernel's
        "DEFAULT install",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL install",
        f"  MENU LABEL {title}",
        f"  KERNEL {IMAGES}/{kernel}",
        f"  APPEND initrd={IMAGES}/{initrd} {' '.join(args)}",
    )


def grub_cfg(env: Environment, node: Node, args: tuple[str, ...],
             shared: _Shared | None = None) -> bytes:
    """GRUB 2 config for UEFI clients: one entry, booted at once."""
    kernel, initrd = _images(env, shared)
    title = escape.line(_title(node), lambda: (*node_field(env, node), "name"),
                        "a GRUB config")
    return lines(
        f"# {title}; rendered by gen, do not edit by hand.",
        "set default=0",
        "set timeout=0",
        f"menuentry {escape.grub_quoted(title, None)} {{",
        f"  linux /{IMAGES}/{kernel} {' '.join(args)}",
        f"  initrd /{IMAGES}/{initrd}",
        "}",
    )


def grub_chain(env: Environment, nodes: tuple[Node, ...]) -> bytes:
    """`grub.cfg` in GRUB's prefix: Debian's grubnetx64.efi sources only `$prefix/grub.cfg`
    (its embedded config), never the per-MAC files, so this one hands each client its own."""
    return _grub_chain([dashed(_mac(env, node)) for node in nodes])


def _grub_chain(dashed_macs: list[str]) -> bytes:
    """`grub_chain` of the nodes' checked MACs, dashed (GRUB compares them with colons)."""
    return lines(
        "# Rendered by gen, do not edit by hand: each client boots its own grub.cfg-01-<mac>.",
        *(f'if [ "$net_default_mac" = "{mac.replace("-", ":")}" ]; then '
          f"configfile $prefix/grub.cfg-01-{mac}; fi" for mac in dashed_macs),
    )


def _mac(env: Environment, node: Node) -> str:
    # A MAC names files and is compared in GRUB script; only six hex bytes may reach either.
    return escape.mac(node.nic.mac, lambda: (*node_field(env, node), "nics", 0, "mac"),
                      "a boot file name")


def ipxe_script(env: Environment, node: Node, args: tuple[str, ...],
                shared: _Shared | None = None) -> bytes:
    """iPXE script: kernel and initramfs over HTTP from the helper."""
    parts = shared or _shared(env, _service(env))
    title = escape.line(_title(node), lambda: (*node_field(env, node), "name"),
                        "an iPXE script")
    return lines(
        "#!ipxe",
        f"# {title}; rendered by gen, do not edit by hand.",
        f"kernel {parts.kernel_url} initrd={parts.initramfs.name} {' '.join(args)}",
        f"initrd {parts.initramfs_url}",
        "boot",
    )


def _service(env: Environment) -> PxeService:
    if env.services.pxe is None:
        raise AssertionError("a PXE node without services.pxe: pxe.check refuses it")
    return env.services.pxe


def boot_ipxe() -> bytes:
    """The script DHCP hands to iPXE clients: chains the per-MAC script."""
    return lines("#!ipxe", "# Rendered by gen: chain this client's own script.",
                 "chain ipxe/${mac:hexhyp}.ipxe")


def manifest(env: Environment, pins: Pins) -> dict[str, Any]:
    """Files converge copies into the TFTP root beside the rendered ones."""
    dhcp = env.services.dhcp
    files: dict[str, dict[str, Any]] = {}
    if dhcp is not None:
        files["ldlinux.c32"] = {"source": "package", "path": dhcp.os.ldlinux}
        # The DHCP boot file names are TFTP paths here: one line each.
        bios = escape.line(dhcp.bios_file, ("services", "dhcp", "bootFiles", "bios"), TFTP)
        uefi = escape.line(dhcp.uefi_file, ("services", "dhcp", "bootFiles", "uefi"), TFTP)
        files[bios] = {"source": "package", "path": dhcp.os.pxelinux}
        files[uefi] = {"source": "package", "path": dhcp.os.grub_efi}
    for kind in ("kernel", "initramfs"):
        item = artifact(env, kind)
        files[f"{IMAGES}/{item.name}"] = common.artifact_source(item, pins)
    return {"files": files}


class BootFiles:
    """One node's three boot files, built straight from text: the fast path of `render`.

    Why: `kernel_args`, `pxelinux_cfg`, `grub_cfg` and `ipxe_script` (the general path)
    check a node's name, MAC, interface and title up to three times each and format the same
    network's gateway, netmask and nameservers for every node: ~0.5 s of a 10,000-node
    render. Here each per-node value is checked once, in the general path's order (so the
    first refusal is the same error), and what only depends on the environment, a network or
    services.pxe is checked and formatted when it is first needed (so a constant's refusal
    comes at the same node as before). The first node's files are also built the general way
    and must be equal (tests/test_pxe.py proves it for random and hostile nodes).
    """

    def __init__(self, env: Environment, service: PxeService, shared: _Shared) -> None:
        self.env, self.service, self.shared = env, service, shared
        self.proven = False
        self.rootfs = " ".join(shared.rootfs)
        self.tail = " ".join(shared.tail)
        self.base = common.http_base(env)
        kernel, initrd = _images(env, shared)
        self.pxelinux_kernel = f"  KERNEL {IMAGES}/{kernel}\n  APPEND initrd={IMAGES}/{initrd} "
        self.grub_kernel = f"  linux /{IMAGES}/{kernel} "
        self.grub_initrd = f"\n  initrd /{IMAGES}/{initrd}\n}}\n"
        self.ipxe_kernel = f"kernel {shared.kernel_url} initrd={shared.initramfs.name} "
        self.ipxe_initrd = f"\ninitrd {shared.initramfs_url}\nboot\n"
        self.interface_: str | None = None  # services.pxe.interface, once checked
        self.install_dev_: str | None = None  # services.pxe.installDev, once checked
        self.networks: dict[str, tuple[str, str]] = {}  # ("<gw>:<netmask>", nameservers)
        self.domains: set[str] = set()  # fqdn suffixes (the base domain) already checked

    def of(self, node: Node) -> tuple[str, bytes, bytes, bytes]:
        """(dashed MAC, pxelinux config, grub.cfg, iPXE script) of one node."""
        env = self.env
        field = lambda: (*node_field(env, node), "name")  # noqa: E731
        escape.name(node.name, field, escape.KERNEL)
        args = self.kernel_args(node)
        title = escape.line(f"Install {node.fqdn} ({node.role})", field, "a pxelinux config")
        head = f"# {title}; rendered by gen, do not edit by hand.\n"
        files = (
            (f"{head}SERIAL 0 115200\nDEFAULT install\nPROMPT 0\nTIMEOUT 0\nLABEL install\n"
             f"  MENU LABEL {title}\n{self.pxelinux_kernel}{args}\n").encode(),
            (f"{head}set default=0\nset timeout=0\n"
             f"menuentry {escape.grub_quoted(title, None)} {{\n"
             f"{self.grub_kernel}{args}{self.grub_initrd}").encode(),
            f"#!ipxe\n{head}{self.ipxe_kernel}{args}{self.ipxe_initrd}".encode(),
        )
        if not self.proven:  # a change to the general path that this one misses fails here
            self.proven = True
            general = self.general(node)
            if general != files:
                raise AssertionError(f"pxe: the fast boot files of {node.name} differ from "
                                     "the general path's")
        return dashed(node.nic.mac), *files

    def general(self, node: Node) -> tuple[bytes, bytes, bytes]:
        """The node's files built by the general path."""
        env, service, shared = self.env, self.service, self.shared
        args = kernel_args(env, service, node, shared)
        return (pxelinux_cfg(env, node, args, shared), grub_cfg(env, node, args, shared),
                ipxe_script(env, node, args, shared))

    def kernel_args(self, node: Node) -> str:
        """`kernel_args` joined by spaces, the node's name already checked."""
        env, service = self.env, self.service
        iface = self.interface(node)
        mac = _mac(env, node).lower()
        ifnames = (f"ifname={iface}:{mac}" if len(node.nics) == 1
                   else " ".join(ifname_args(env, service, node)))
        network, nameservers = self.network(node.nic.network)
        if service.ip_mode == "dhcp":
            ip = f"ip={iface}:dhcp"
        else:
            ip = f"ip={str(node.ip)}::{network}:{self.fqdn(node)}:{iface}:none"
        return (f"{ifnames} {ip}{nameservers} coreos.inst.install_dev={self.install_dev(node)} "
                f"{self.rootfs} coreos.inst.ignition_url={self.base}/ignition/{node.name}.ign "
                f"{self.tail}")

    def interface(self, node: Node) -> str:
        if node.nic.interface != DEFAULT_INTERFACE or self.interface_ is None:
            iface = escape.kernel_value(interface(self.service, node),
                                        _interface_field(self.env, self.service, node), ":")
            if node.nic.interface == DEFAULT_INTERFACE:
                self.interface_ = iface
            return iface
        return self.interface_

    def install_dev(self, node: Node) -> str:
        if node.install_dev or self.install_dev_ is None:
            dev = _install_dev(self.env, self.service, node)
            if not node.install_dev:
                self.install_dev_ = dev
            return dev
        return self.install_dev_

    def network(self, name: str) -> tuple[str, str]:
        """`<gateway>:<netmask>` of `ip=`, and the ` nameserver=...` arguments."""
        found = self.networks.get(name)
        if found is None:
            net = self.env.network(name)
            found = self.networks[name] = (":".join(_gateway_and_netmask(net)), "".join(
                f" nameserver={ns}" for ns in _nameservers(self.env, net)))
        return found

    def fqdn(self, node: Node) -> str:
        """escape.fqdn: its host part is the node's name, checked in `of`."""
        suffix = node.fqdn[len(node.name) + 1:]
        if suffix not in self.domains:
            escape.fqdn(node.fqdn, node.name, lambda: (*node_field(self.env, node), "name"),
                        escape.KERNEL)
            self.domains.add(suffix)
        return node.fqdn
