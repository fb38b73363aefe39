"""PXE boot files per CoreOS node, in the TFTP root of the DHCP host.

Under `hosts/<dhcp host>/tftp/` (the DHCP server's next-server is itself):
- `pxelinux.cfg/01-<mac with dashes>`: BIOS clients (pxelinux.0).
- `grub/grub.cfg-01-<mac with dashes>`: UEFI clients. GRUB looks for it in its prefix:
  `/grub` on the TFTP server for Debian's signed-compatible network image
  (grub-efi-amd64-bin's `monolithic/grubnetx64.efi`), which converge installs under the
  DHCP service's UEFI boot file name. That image's embedded config sources only
  `$prefix/grub.cfg`, so `grub/grub.cfg` chains each MAC to its own file.
- `ipxe/<mac with dashes>.ipxe`: iPXE clients, reached through `boot.ipxe`, which chains
  `ipxe/${mac:hexhyp}.ipxe`.
- `manifest.json`: the files converge puts next to them (boot loaders from Debian packages,
  kernel and initramfs from the artifact store, with their pinned sha256).

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

from typing import Any

from generator.expand import DEFAULT_INTERFACE
from generator.families import Pins, common, ignition
from generator.model import Environment, Node, OsArtifact, PxeService
from generator.tree import Tree, canonical_json, lines

IMAGES = "images"
CONSOLES = ("console=tty0", "console=ttyS0,115200n8")
BOOTLOADERS = {  # TFTP path -> file shipped by a Debian package on the helper
    "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32",
}
PXELINUX = "/usr/lib/PXELINUX/pxelinux.0"
GRUB_EFI = "/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi"
GRUB_PREFIX = "grub"  # the prefix compiled into GRUB_EFI


def render(env: Environment, pins: Pins) -> Tree:
    """Per-MAC boot files for every PXE-booted CoreOS node, plus the TFTP manifest."""
    nodes = ignition.coreos_nodes(env)
    service, dhcp = env.services.pxe, env.services.dhcp
    if not nodes or service is None or dhcp is None or env.services.http is None:
        return {}  # semantic.check_pxe_services reports what is missing
    base = f"hosts/{dhcp.host}/tftp"
    tree: Tree = {f"{base}/boot.ipxe": boot_ipxe()}
    for node in nodes:
        args = kernel_args(env, service, node)
        mac = dashed(node.nic.mac)
        tree[f"{base}/pxelinux.cfg/01-{mac}"] = pxelinux_cfg(env, node, args)
        tree[f"{base}/{GRUB_PREFIX}/grub.cfg-01-{mac}"] = grub_cfg(env, node, args)
        tree[f"{base}/ipxe/{mac}.ipxe"] = ipxe_script(env, node, args)
    tree[f"{base}/{GRUB_PREFIX}/grub.cfg"] = grub_chain(nodes)
    tree[f"{base}/manifest.json"] = canonical_json(manifest(env, pins))
    return tree


def dashed(mac: str) -> str:
    """`52:54:00:aa:bb:cc` -> `52-54-00-aa-bb-cc`, as pxelinux, GRUB and iPXE spell it."""
    return mac.lower().replace(":", "-")


def artifact(env: Environment, kind: str) -> OsArtifact:
    """The OS artifact of a kind; semantic.check_pxe_services guarantees one exists."""
    found = common.os_artifact(env, kind)
    if found is None:
        raise ValueError(f"no OS artifact of kind {kind}")
    return found


def interface(service: PxeService, node: Node) -> str:
    """The NIC's own interface name when the blueprint set one, else services.pxe.interface."""
    own = node.nic.interface
    return own if own != DEFAULT_INTERFACE else service.interface


def ifname_args(service: PxeService, node: Node) -> tuple[str, ...]:
    """dracut `ifname=<name>:<mac>` for every NIC: pins each name by MAC in the initramfs,
    so no NIC keeps a udev name (`ens3` at PCI slot 3) that another is pinned to."""
    names = [interface(service, node)] + [nic.interface for nic in node.nics[1:]]
    return tuple(f"ifname={name}:{nic.mac.lower()}" for name, nic in zip(names, node.nics,
                                                                          strict=True))


def ip_arg(env: Environment, service: PxeService, node: Node) -> str:
    """dracut `ip=`: static `ip=<ip>::<gw>:<netmask>:<fqdn>:<iface>:none`, or DHCP."""
    iface = interface(service, node)
    if service.ip_mode == "dhcp":
        return f"ip={iface}:dhcp"
    net = env.network(node.nic.network)
    gateway = "" if net.gateway is None else str(net.gateway)
    return f"ip={node.ip}::{gateway}:{net.cidr.netmask}:{node.fqdn}:{iface}:none"


def nameservers(env: Environment, node: Node) -> tuple[str, ...]:
    """The cluster's own DNS (it knows api-int and etcd-N), else the network's DNS servers."""
    server = common.dns_server(env)
    if server is not None:
        return (str(server),)
    return tuple(str(d) for d in env.network(node.nic.network).dns)


def kernel_args(env: Environment, service: PxeService, node: Node) -> tuple[str, ...]:
    """The CoreOS installer's kernel command line for one node, initrd= excluded."""
    rootfs: tuple[str, ...]
    if service.rootfs == "live":
        rootfs = (f"coreos.live.rootfs_url={common.install_url(env, artifact(env, 'rootfs'))}",)
    else:
        rootfs = ("coreos.inst=yes",
                  f"coreos.inst.image_url={common.install_url(env, metal_image(env))}")
    return (
        *ifname_args(service, node),
        ip_arg(env, service, node),
        *(f"nameserver={ns}" for ns in nameservers(env, node)),
        f"coreos.inst.install_dev={node.install_dev or service.install_dev}",
        *rootfs,
        f"coreos.inst.ignition_url={common.ignition_url(env, node)}",
        *CONSOLES,
        *service.kernel_args,
    )


def metal_image(env: Environment) -> OsArtifact:
    """The raw metal image old installers write (`disk`, else an `image` artifact)."""
    return common.os_artifact(env, "disk") or artifact(env, "image")


def _title(node: Node) -> str:
    return f"Install {node.fqdn} ({node.role})"


def pxelinux_cfg(env: Environment, node: Node, args: tuple[str, ...]) -> bytes:
    """pxelinux config: boots the installer at once, no menu module needed."""
    kernel, initrd = (artifact(env, k).name for k in ("kernel", "initramfs"))
    return lines(
        f"# {_title(node)}; rendered by gen, do not edit by hand.",
        "SERIAL 0 115200",  # first directive: the loader's output on ttyS0, like the kernel's
        "DEFAULT install",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL install",
        f"  MENU LABEL {_title(node)}",
        f"  KERNEL {IMAGES}/{kernel}",
        f"  APPEND initrd={IMAGES}/{initrd} {' '.join(args)}",
    )


def grub_cfg(env: Environment, node: Node, args: tuple[str, ...]) -> bytes:
    """GRUB 2 config for UEFI clients: one entry, booted at once."""
    kernel, initrd = (artifact(env, k).name for k in ("kernel", "initramfs"))
    return lines(
        f"# {_title(node)}; rendered by gen, do not edit by hand.",
        "set default=0",
        "set timeout=0",
        f"menuentry '{_title(node)}' {{",
        f"  linux /{IMAGES}/{kernel} {' '.join(args)}",
        f"  initrd /{IMAGES}/{initrd}",
        "}",
    )


def grub_chain(nodes: tuple[Node, ...]) -> bytes:
    """`grub/grub.cfg`: Debian's grubnetx64.efi sources only `$prefix/grub.cfg` (its embedded
    config), never the per-MAC files, so this one hands each client its own."""
    return lines(
        "# Rendered by gen, do not edit by hand: each client boots its own grub.cfg-01-<mac>.",
        *(f'if [ "$net_default_mac" = "{node.nic.mac.lower()}" ]; then '
          f"configfile $prefix/grub.cfg-01-{dashed(node.nic.mac)}; fi" for node in nodes),
    )


def ipxe_script(env: Environment, node: Node, args: tuple[str, ...]) -> bytes:
    """iPXE script: kernel and initramfs over HTTP from the helper."""
    kernel, initrd = (artifact(env, k) for k in ("kernel", "initramfs"))
    return lines(
        "#!ipxe",
        f"# {_title(node)}; rendered by gen, do not edit by hand.",
        f"kernel {common.install_url(env, kernel)} initrd={initrd.name} {' '.join(args)}",
        f"initrd {common.install_url(env, initrd)}",
        "boot",
    )


def boot_ipxe() -> bytes:
    """The script DHCP hands to iPXE clients: chains the per-MAC script."""
    return lines("#!ipxe", "# Rendered by gen: chain this client's own script.",
                 "chain ipxe/${mac:hexhyp}.ipxe")


def manifest(env: Environment, pins: Pins) -> dict[str, Any]:
    """Files converge copies into the TFTP root beside the rendered ones."""
    dhcp = env.services.dhcp
    files: dict[str, dict[str, Any]] = {
        path: {"source": "package", "path": source} for path, source in BOOTLOADERS.items()}
    if dhcp is not None:
        files[dhcp.bios_file] = {"source": "package", "path": PXELINUX}
        files[dhcp.uefi_file] = {"source": "package", "path": GRUB_EFI}
    for kind in ("kernel", "initramfs"):
        item = artifact(env, kind)
        files[f"{IMAGES}/{item.name}"] = common.artifact_source(item, pins)
    return {"files": files}
