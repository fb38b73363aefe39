"""PXE family: per-MAC pxelinux, GRUB and iPXE files with the CoreOS installer's arguments.

Proven with real tools: in.tftpd (tftpd-hpa) serves the rendered TFTP tree inside a lo-only
network namespace and curl fetches each node's files by MAC; GRUB's own parser
(`grub-script-check`) accepts every grub.cfg.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from clirun import helper_on_debian
from netns import netns

from generator.environment import load_environment
from generator.families import Pins, common, escape, pxe
from generator.model import Environment, Node
from generator.profiles import DEBIAN12, EL9
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
TFTP = "hosts/helper/tftp"
GRUB = TFTP  # lab A's helper runs el9: its grubx64.efi reads grub.cfg beside itself, in the root
# Lab A's bootstrap, as the seed typed it at the installer prompt, modernised: virtio disk
# (/dev/vda), live rootfs instead of the metal image, consoles for a VM's serial port, and
# the interface name pinned to the NIC's MAC (udev would name it ens2 on i440fx).
BOOTSTRAP_ARGS = (
    "ifname=ens3:MAC "
    "ip=192.168.20.150::192.168.20.1:255.255.255.0:bootstrap.ocp4.example.com:ens3:none "
    "nameserver=192.168.20.111 "
    "coreos.inst.install_dev=/dev/vda "
    "coreos.live.rootfs_url=http://192.168.20.111:8080/install/rhcos-live-rootfs "
    "coreos.inst.ignition_url=http://192.168.20.111:8080/ignition/bootstrap.ign "
    "console=tty0 console=ttyS0,115200n8")


def model(ref: str, cwd: Path = ROOT) -> Environment:
    return load_environment(ref, cwd).model


def render(ref: str, cwd: Path = ROOT, pins: Pins | None = None) -> Tree:
    return pxe.render(model(ref, cwd), pins or Pins())


def edit_env(repo: Path, old: str, new: str, env: str = "lab") -> None:
    path = repo / f"environments/{env}/env.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def text(tree: Tree, path: str) -> str:
    return tree[path].decode()


# --- structure -------------------------------------------------------------------------

def test_one_file_set_per_pxe_node() -> None:
    env = model("env/lab")
    tree = pxe.render(env, Pins())
    booted = [n for n in env.nodes if n.boot == "pxe"]
    assert [n.name for n in booted] == ["bootstrap", "master0", "master1", "master2",
                                        "worker0", "worker1"]
    expected = {f"{TFTP}/boot.ipxe", f"{TFTP}/manifest.json", f"{GRUB}/grub.cfg"}
    for node in booted:
        mac = node.nic.mac.replace(":", "-")
        expected |= {f"{TFTP}/pxelinux.cfg/01-{mac}", f"{GRUB}/grub.cfg-01-{mac}",
                     f"{TFTP}/ipxe/{mac}.ipxe"}
    assert set(tree) == expected
    helper_mac = env.node("helper").nic.mac.replace(":", "-")
    assert not any(helper_mac in path for path in tree)  # the helper boots its image


def test_bootstrap_kernel_arguments_match_lab_a() -> None:
    env = model("env/lab")
    tree = pxe.render(env, Pins())
    mac = env.node("bootstrap").nic.mac.replace(":", "-")
    pxelinux = text(tree, f"{TFTP}/pxelinux.cfg/01-{mac}")
    assert "  KERNEL images/rhcos-live-kernel\n" in pxelinux
    args = BOOTSTRAP_ARGS.replace("MAC", env.node("bootstrap").nic.mac)
    assert f"  APPEND initrd=images/rhcos-live-initramfs {args}\n" in pxelinux
    grub = text(tree, f"{GRUB}/grub.cfg-01-{mac}")
    assert f"  linux /images/rhcos-live-kernel {args}\n" in grub
    assert "  initrd /images/rhcos-live-initramfs\n" in grub
    ipxe = text(tree, f"{TFTP}/ipxe/{mac}.ipxe")
    assert ipxe.startswith("#!ipxe\n")
    assert ("kernel http://192.168.20.111:8080/install/rhcos-live-kernel "
            f"initrd=rhcos-live-initramfs {args}\n") in ipxe
    assert "initrd http://192.168.20.111:8080/install/rhcos-live-initramfs\n" in ipxe


def test_each_node_gets_its_own_address_and_ignition() -> None:
    env = model("env/lab")
    tree = pxe.render(env, Pins())
    for node in env.nodes_with_role("master", "worker"):
        mac = node.nic.mac.replace(":", "-")
        cfg = text(tree, f"{TFTP}/pxelinux.cfg/01-{mac}")
        assert f"ip={node.ip}::192.168.20.1:255.255.255.0:{node.fqdn}:ens3:none" in cfg
        assert f"coreos.inst.ignition_url=http://192.168.20.111:8080/ignition/{node.name}.ign" \
            in cfg


def test_nameserver_is_the_helper_never_the_forwarders() -> None:
    tree = render("env/lab")
    for path, content in tree.items():
        if "/ipxe/" in path or ("cfg" in path and not path.endswith("/grub.cfg")):
            assert b"nameserver=192.168.20.111 " in content, path
            assert b"8.8.8.8" not in content and b"8.8.4.4" not in content


def test_dhcp_mode_image_rootfs_and_extra_args(repo: Path) -> None:
    edit_env(repo, "  nfs:\n", "  pxe:\n    ipMode: dhcp\n    rootfs: image\n"
             "    kernelArgs: [rd.neednet=1]\n  nfs:\n")
    edit_env(repo, "  os:\n    rhcos-live-kernel:\n", "  os:\n    rhcos-metal:\n"
             "      url: http://mirror.invalid/rhcos-metal.raw.gz\n      kind: disk\n"
             "    rhcos-live-kernel:\n")
    env = model("env/lab", repo)
    mac = env.node("master1").nic.mac.replace(":", "-")
    cfg = text(pxe.render(env, Pins()), f"{TFTP}/pxelinux.cfg/01-{mac}")
    assert " ip=ens3:dhcp " in cfg
    assert "coreos.inst=yes coreos.inst.image_url=http://192.168.20.111:8080/install/rhcos-metal" \
        in cfg
    assert "rootfs_url" not in cfg
    assert cfg.rstrip().endswith("console=ttyS0,115200n8 rd.neednet=1")


def test_interface_and_install_dev_per_node(repo: Path) -> None:
    edit_env(repo, "{name: worker1, role: worker, hypervisor: hv1, nics: [{network: lan, ",
             "{name: worker1, role: worker, hypervisor: hv1, installDev: /dev/sdb, "
             "nics: [{interface: enp1s0, network: lan, ")
    env = model("env/lab", repo)
    tree = pxe.render(env, Pins())
    mac = env.node("worker1").nic.mac.replace(":", "-")
    cfg = text(tree, f"{TFTP}/pxelinux.cfg/01-{mac}")
    assert ":worker1.ocp4.example.com:enp1s0:none " in cfg
    assert " coreos.inst.install_dev=/dev/sdb " in cfg


def test_manifest_pins_kernel_and_initramfs() -> None:
    digest = "ab" * 32
    pins = Pins(os={"rhcos-live-kernel": ("https://mirror.invalid/kernel", digest)})
    manifest = json.loads(render("env/lab", pins=pins)[f"{TFTP}/manifest.json"])
    assert manifest["files"]["images/rhcos-live-kernel"] == {
        "artifact": "rhcos-live-kernel", "sha256": digest, "source": "os-artifact",
        "url": "https://mirror.invalid/kernel"}
    assert manifest["files"]["pxelinux.0"]["path"] == EL9.paths.pxelinux


def test_debian_boot_loaders_are_where_debian_puts_them(repo: Path) -> None:
    helper_on_debian(repo)
    manifest = json.loads(render("env/lab", repo)[f"{TFTP}/manifest.json"])
    loaders = [e["path"] for e in manifest["files"].values() if e["source"] == "package"]
    assert sorted(loaders) == sorted((DEBIAN12.paths.pxelinux, DEBIAN12.paths.ldlinux,
                                      DEBIAN12.paths.grub_efi))
    for path in loaders:  # this machine runs Debian: its packages installed them there
        assert Path(path).is_file(), path


def test_no_pxe_files_for_image_booted_lab_b() -> None:
    assert render("env/k8s-lab") == {}


# --- real tools ------------------------------------------------------------------------

@pytest.fixture
def served_dir() -> Iterator[Path]:
    """A temporary directory daemons that drop privileges (tftp, www-data) can read."""
    with tempfile.TemporaryDirectory(prefix="gen-tftp-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def write_tree(tree: Tree, prefix: str, target: Path) -> None:
    for path, content in tree.items():
        if path.startswith(prefix + "/"):
            file = target / path[len(prefix) + 1:]
            file.parent.mkdir(parents=True, exist_ok=True)
            file.parent.chmod(0o755)
            file.write_bytes(content)
            file.chmod(0o644)


@pytest.mark.daemons
def test_grub_configs_parse() -> None:
    tree = render("env/lab")
    grubs = [p for p in tree if "/grub.cfg-01-" in p]
    assert len(grubs) == 6
    for path in grubs:
        result = subprocess.run(["grub-script-check"], input=tree[path], capture_output=True)
        assert result.returncode == 0, (path, result.stderr)
    broken = subprocess.run(["grub-script-check"], input=b"menuentry 'x' {\n linux /k\n",
                            capture_output=True)
    assert broken.returncode != 0  # the checker can fail


@pytest.mark.daemons
def test_tftpd_serves_per_mac_files(served_dir: Path) -> None:
    env = model("env/lab")
    tree = pxe.render(env, Pins())
    write_tree(tree, TFTP, served_dir)
    assert shutil.which("in.tftpd"), "tftpd-hpa is not installed"
    server = str(env.node("helper").ip)  # DHCP's next-server
    with netns("tftp") as ns:
        # The helper's address on lo: a namespace with only 127.0.0.1 has no IPv4 address
        # as far as getaddrinfo(AI_ADDRCONFIG) is concerned, and in.tftpd gives up.
        ns.run(["ip", "addr", "add", f"{server}/32", "dev", "lo"], check=True)
        ns.popen(["in.tftpd", "-L", "-4", "-u", "tftp", "-s", served_dir,
                  "-a", f"{server}:69"])
        ns.wait_port(69, "udp")

        def fetch(path: str) -> subprocess.CompletedProcess[bytes]:
            return ns.run(["curl", "-sS", "--max-time", "10", f"tftp://{server}/{path}"],
                          text=False)

        for node in (n for n in env.nodes if n.boot == "pxe"):
            mac = node.nic.mac.replace(":", "-")
            for path in (f"pxelinux.cfg/01-{mac}", f"grub.cfg-01-{mac}",
                         f"ipxe/{mac}.ipxe"):
                got = fetch(path)
                assert got.returncode == 0, (path, got.stderr)
                assert got.stdout == tree[f"{TFTP}/{path}"], path
        assert b"chain ipxe/${mac:hexhyp}.ipxe" in fetch("boot.ipxe").stdout
        # An unknown MAC gets nothing: the test can fail.
        assert fetch("pxelinux.cfg/01-52-54-00-00-00-00").returncode != 0


# --- bad input -------------------------------------------------------------------------

def render_errors(repo: Path, env: str = "lab") -> tuple[int, list[str]]:
    """Exit code and stderr lines of `gen render` on the scratch repo (warnings dropped)."""
    result = subprocess.run([sys.executable, "-m", "generator", "render", f"env/{env}",
                             "--out", str(repo / "out")], cwd=repo, capture_output=True,
                            text=True, check=False)
    return result.returncode, [line for line in result.stderr.splitlines()
                               if line and not line.startswith("warning:")]


def test_pxe_node_on_kubeadm_without_boot_services(repo: Path) -> None:
    edit_env(repo, "{name: test-node1, role: worker, hypervisor: hv1, ",
             "{name: test-node1, role: worker, hypervisor: hv1, boot: pxe, ", env="k8s-lab")
    code, errors = render_errors(repo, "k8s-lab")
    assert code == 1
    assert all(line.startswith("environments/k8s-lab/env.yaml:") for line in errors), errors
    text = "\n".join(errors)
    assert "at nodes[1].boot: node 'test-node1' (worker, kubeadm) cannot PXE-boot" in text
    for service in ("dhcp", "pxe", "http"):
        assert f"no services.{service} is declared (declare services.{service} or set " \
               "boot: image)" in text
    assert "PXE nodes need an OS artifact of kind kernel" in text


def test_image_mode_needs_a_metal_image_artifact(repo: Path) -> None:
    edit_env(repo, "  nfs:\n", "  pxe:\n    rootfs: image\n  nfs:\n")
    code, errors = render_errors(repo)
    assert code == 1
    assert len(errors) == 1 and "PXE nodes need an OS artifact of kind disk" in errors[0], errors


def test_bare_metal_pxe_node_needs_a_mac(repo: Path) -> None:
    edit_env(repo, "{name: worker1, role: worker, hypervisor: hv1, ",
             "{name: worker1, role: worker, ")
    code, errors = render_errors(repo)
    assert code == 1
    assert len(errors) == 1, errors
    assert "at nodes[6].nics[0]: PXE node 'worker1' has no MAC" in errors[0]


@pytest.mark.parametrize("debian", [False, True])
def test_grub_cfg_chains_each_mac_to_its_own_config(repo: Path, debian: bool) -> None:
    # Debian's grubnetx64.efi sources only $prefix/grub.cfg (its prefix: /grub), never
    # grub.cfg-01-<mac>; el9's grubx64.efi looks in the TFTP root, beside itself
    if debian:
        helper_on_debian(repo)
    env = model("env/lab", repo)
    chain = pxe.render(env, Pins())[f"{TFTP}/grub/grub.cfg" if debian else
                                    f"{GRUB}/grub.cfg"].decode()
    for node in (n for n in env.nodes if n.boot == "pxe"):
        mac = node.nic.mac
        assert (f'if [ "$net_default_mac" = "{mac}" ]; then configfile '
                f'$prefix/grub.cfg-01-{mac.replace(":", "-")}; fi') in chain


def test_mirror_urls_keep_the_kind_of_the_inherited_stream(repo: Path) -> None:
    """A direct url (a mirror) replaces the blueprint's stream as the source, not what the
    artifact is: the render uses the mirror (this was an internal error, exit 70)."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    start = text.index("artifacts:")
    mirror = "artifacts:\n  os:\n" + "".join(
        f"    rhcos-live-{kind}: {{url: 'http://mirror.invalid/rhcos-{kind}'}}\n"
        for kind in ("kernel", "initramfs", "rootfs"))
    env_file.write_text(text[:start] + mirror)
    result = subprocess.run([sys.executable, "-m", "generator", "render", "env/lab"], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    cfg = next((repo / "rendered/lab/hosts/helper/tftp/pxelinux.cfg").iterdir()).read_text()
    assert "KERNEL images/rhcos-live-kernel" in cfg
    assert "coreos.live.rootfs_url=http://192.168.20.111:8080/install/rhcos-live-rootfs" in cfg


def test_every_nic_of_a_two_nic_node_is_pinned(repo: Path) -> None:
    """A second NIC sits at PCI slot 3 on i440fx, where udev would call it `ens3`: the name
    the first NIC is pinned to. Pinning every NIC by MAC leaves no udev name in the way."""
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    old = ("{name: worker1, role: worker, hypervisor: hv1, "
           "nics: [{network: lan, ip: 192.168.20.162}]}")
    assert old in text
    env_file.write_text(text.replace(old, (
        "{name: worker1, role: worker, hypervisor: hv1, nics: [{network: lan, ip: "
        "192.168.20.162}, {network: lan, ip: 192.168.20.163, interface: ens4}]}")))
    env = model("env/lab", repo)
    worker = env.node("worker1")
    args = pxe.kernel_args(env, env.services.pxe, worker)  # type: ignore[arg-type]
    assert [a for a in args if a.startswith("ifname=")] == [
        f"ifname=ens3:{worker.nics[0].mac}", f"ifname=ens4:{worker.nics[1].mac}"]


# --- the fast path (pxe.BootFiles) is the general path ---------------------------------

HOSTILE = ["", " ", "a b", "a\nb", "a:b", "a;b", "a$b", "a#b", "ä", "a\u2028b", "a'b", "a\"b",
           "a\\b", "x" * 70, "ok-name", "ok.name", "-lead", "a{b}"]


def _node_variants(env: Environment, rng: random.Random) -> list[Node]:
    """Each PXE node of the environment, then random nodes with one value or more replaced
    by a hostile or unusual one (name, MAC, interface, install dev, fqdn, role, NICs)."""
    base = [n for n in env.nodes if n.boot == "pxe"]
    out = list(base)
    for k in range(400):
        node = rng.choice(base)
        nic = node.nic
        for _ in range(rng.randint(1, 3)):
            what = rng.randrange(8)
            value = rng.choice(HOSTILE)
            if what == 0:
                node = replace(node, name=value or f"n{k}",
                               fqdn=f"{value or f'n{k}'}.{env.cluster.domain}")
            elif what == 1:
                nic = replace(nic, mac=rng.choice([value, "52:54:00:AA:bb:0c",
                                                   f"52:54:00:aa:bb:{k % 256:02x}"]))
            elif what == 2:
                nic = replace(nic, interface=rng.choice([value, "ens3", "eth1", "enp1s0"]))
            elif what == 3:
                node = replace(node, install_dev=rng.choice([value, None, "/dev/sdb"]))
            elif what == 4:
                cut = len(node.name)
                node = replace(node, fqdn=node.fqdn[:cut] + rng.choice(["\n", "'", "."])
                               + rng.choice([env.cluster.domain, value]))
            elif what == 5:
                node = replace(node, role=rng.choice([value, "worker", "master"]))
            elif what == 6:
                second = replace(nic, interface=rng.choice([value, "ens4"]),
                                 mac=rng.choice([value, "52:54:00:00:00:01"]))
                node = replace(node, nics=(nic, second))
            else:
                nic = replace(nic, ip=IPv4Address(rng.randrange(1 << 32)))
        out.append(replace(node, nics=(nic, *node.nics[1:])))
    return out


def _general(env: Environment, nodes: list[Node]) -> list[object]:
    """What render wrote before pxe.BootFiles: per node its files, up to the first refusal."""
    service = env.services.pxe
    assert service is not None
    shared = pxe._shared(env, service)
    out: list[object] = []
    try:
        for node in nodes:
            args = pxe.kernel_args(env, service, node, shared)
            mac = pxe.dashed(pxe._mac(env, node))
            out.append((mac, pxe.pxelinux_cfg(env, node, args, shared),
                        pxe.grub_cfg(env, node, args, shared),
                        pxe.ipxe_script(env, node, args, shared)))
    except escape.UnsafeValue as error:
        out.append((error.field, error.message, error.hint))
    return out


def _fast(env: Environment, nodes: list[Node]) -> list[object]:
    service = env.services.pxe
    assert service is not None
    files = pxe.BootFiles(env, service, pxe._shared(env, service))
    files.proven = True  # the fast path alone, not its check against the general one
    out: list[object] = []
    try:
        out.extend(files.of(node) for node in nodes)
    except escape.UnsafeValue as error:
        out.append((error.field, error.message, error.hint))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_fast_boot_files_are_the_general_paths(seed: int) -> None:
    """Random sequences of hostile and plain nodes, in environments whose constants (the
    service's interface and install device, the IP mode, the rootfs mode, the nodes' domain)
    vary too: the same files, and the same first refusal at the same node."""
    rng = random.Random(seed)
    env = model("env/lab")
    variants = _node_variants(env, rng)
    service = env.services.pxe
    assert service is not None
    rootfs = ["live", "image"] if common.metal_image(env) else ["live"]
    refused = equal = 0
    for trial in range(150):
        svc = replace(service, ip_mode=rng.choice(["static", "dhcp"]),
                      rootfs=rng.choice(rootfs),
                      interface=rng.choice(["ens3", "ens3", "eth0", rng.choice(HOSTILE)]),
                      install_dev=rng.choice(["/dev/vda", "/dev/vda", rng.choice(HOSTILE)]))
        nodes = rng.sample(variants, rng.randint(1, 8))
        if trial % 3 == 0:  # plain nodes only: whole sequences of files compared
            nodes = variants[:6]
        domain = rng.choice([None] * 3 + ["bad domain", "a..b", "other.example."])
        if domain is not None:  # every node's domain, as expand writes the cluster's
            nodes = [replace(n, fqdn=f"{n.name}.{domain}") for n in nodes]
        others = tuple(n for n in env.nodes if n.boot != "pxe")  # the helper serves HTTP
        trial_env = replace(env, nodes=others + tuple(nodes),
                            services=replace(env.services, pxe=svc))
        general = _general(trial_env, nodes)
        assert _fast(trial_env, nodes) == general
        refused += isinstance(general[-1], tuple) and len(general[-1]) == 3
        equal += sum(isinstance(g, tuple) and len(g) == 4 for g in general)
    assert refused > 20 and equal > 100  # both outcomes were exercised


def test_render_checks_its_fast_path_against_the_general_one(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A change to the general path that the fast one misses stops the render."""
    env = model("env/lab")
    general = pxe.grub_cfg
    monkeypatch.setattr(pxe, "grub_cfg", lambda *args: general(*args).replace(b"=0", b"=1"))
    with pytest.raises(AssertionError, match="differ from the general path"):
        pxe.render(env, Pins())


def test_grub_chain_of_the_render_is_the_general_one() -> None:
    """render writes grub.cfg from the MACs it checked (dashed, lower case): the same bytes
    as grub_chain of the nodes, upper-case MACs included."""
    from generator.families import ignition

    env = model("env/lab")
    nodes = tuple(replace(n, nics=(replace(n.nic, mac=n.nic.mac.upper()), *n.nics[1:]))
                  if i % 2 else n for i, n in enumerate(env.nodes))
    env = replace(env, nodes=nodes)
    tree = pxe.render(env, Pins())
    assert any(c.isupper() for n in nodes for c in n.nic.mac)
    assert tree[f"{GRUB}/grub.cfg"] == pxe.grub_chain(env, ignition.coreos_nodes(env))
