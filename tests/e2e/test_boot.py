"""Proof that it boots: `gen converge` brings up lab A's helper services and its VMs PXE-boot
from them and fetch their own Ignition.

gen does all the work: `gen lock` pins the stand-in OS (tests/e2e/standin_os.py) served by a
loopback artifact server, `gen fetch` puts it in a tmp store, and `gen converge` installs the
helper's rendered DNS, DHCP, TFTP/PXE, HTTP and HAProxy files into the helper (netns + private
mount namespace attached to an isolated bridge, see lab.py), checks them with each daemon's
checker, starts the daemons (--reload), publishes the artifacts and per-node Ignition, then
defines the diskless TCG node VMs on a private real libvirtd and starts them in order.
A node passes when its serial console shows that the stand-in applied its `ip=`, resolved
api-int to the load balancer and fetched its own Ignition with the locked bytes, and the
helper's access log shows that GET from the node's reserved address.

Boot once, then from disk: master0 and worker0 have a disk (empty: their domains boot disk
first, so the firmware falls through to PXE). After fetching its Ignition the stand-in
"installs" a bootable disk to `coreos.inst.install_dev` (an MBR program for SeaBIOS, an
EFI system partition with BOOTX64.EFI for OVMF) and reboots; such a node passes when its
console then shows the disk's `GEN-DISK: booted from disk` line, and for every node the
helper's TFTP log (tftpd -v) and HTTP access log show one fetch of its kernel and
Ignition, not two.

Then: a second converge changes nothing and restarts no VM; a memory change of the worker,
relocked, touches only the worker.

At most two VMs boot at once on a 2-core machine: converge starts bootstrap and master
first (`--start bootstrap,master`), then everything (`--start all`) once they are done.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ignition_proof import SSH_KEY, expected, problems, role_config
from lab import (
    HELPER_IMAGE,
    HELPER_IMAGE_BYTES,
    HELPER_IP,
    Helper,
    artifact_server,
    helper_host,
    lab_boot_env,
    wait_for,
)
from reconcile_fixtures import private_libvirtd, wipe_libvirt
from standin_os import DISK_MARKER, build_initramfs, cloud_kernel

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODES = {"bootstrap": "192.168.20.150", "master0": "192.168.20.151",
         "worker0": "192.168.20.161"}
ROLES = {"bootstrap": "bootstrap", "master0": "master", "worker0": "worker"}
MARKER = b"@@gen-secret:sshAuthorizedKeys[0]@@"  # filled with SSH_KEY on the helper
DISKFUL = ("master0", "worker0")  # install to their disk, reboot, come up from the disk
KERNEL = "images/rhcos-live-kernel"
BOOT_TIMEOUT = 420.0  # per wave; a node takes 10-25 s under TCG here, ten times that when the
# 2 cores are shared with other test runs (a load of 15 made a UEFI wave exceed 180 s)
ISC_SERVICES = ["dns", "dhcp", "tftp", "http", "haproxy"]
DNSMASQ_SERVICES = ["dnsmasq", "tftp", "http", "haproxy"]


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in OS artifacts, as the artifact server serves them."""
    for tool in ("named", "dhcpd", "dnsmasq", "in.tftpd", "apache2", "haproxy", "nsenter",
                 "unshare"):
        assert shutil.which(tool), f"{tool} missing (tests/run.sh APT_PACKAGES)"
    directory = tmp_path_factory.mktemp("artifacts")
    vmlinuz, release = cloud_kernel()
    shutil.copyfile(vmlinuz, directory / "rhcos-live-kernel")
    (directory / "rhcos-live-initramfs").write_bytes(build_initramfs(release))
    (directory / "rhcos-live-rootfs").write_bytes(b"gen e2e stand-in rootfs\n" * 64)
    (directory / HELPER_IMAGE).write_bytes(HELPER_IMAGE_BYTES)
    return directory


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    with private_libvirtd() as uri:
        yield uri


@dataclass
class Run:
    """One variant's repo, tools and measurements."""

    repo: Path
    uri: str
    helper: Helper
    services: list[str]
    tmp: Path
    uefi: bool = False
    gen_seconds: float = 0.0
    per_verb: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> str:
        return str(self.repo / "environments" / "lab-boot")

    @property
    def store(self) -> str:
        return str(self.tmp / "store")

    def gen(self, *args: str, check: bool = True,
            codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GEN_STORE": self.store, "GEN_SECRET_PULL": "unused",
               "GEN_SECRET_SSH": SSH_KEY}
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=self.repo,
                              env=env, capture_output=True, text=True, timeout=240)
        seconds = time.monotonic() - start
        self.gen_seconds += seconds
        self.per_verb[args[0]] = self.per_verb.get(args[0], 0.0) + seconds
        assert "Traceback" not in proc.stderr, proc.stderr
        if check:
            assert proc.returncode in codes, \
                f"gen {' '.join(args[:2])} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def converge_args(self, start: str) -> list[str]:
        return ["converge", self.env, "--auto-approve", "--uri-override", f"hv1={self.uri}",
                "--start", start, "--files-exec", f"helper={self.helper.exec_prefix}",
                "--files-target", "helper=/", *self.helper.reload_flags(self.services),
                # the helper's /var is a tmp dir: no package database to ask
                "--no-install-packages",
                "--store", self.store, "--state-dir", str(self.tmp / "state"),
                "--ignition-dir", str(self.tmp / "roles"), "--format", "json"]

    def plan_args(self) -> list[str]:
        args = self.converge_args("all")
        args[0] = "plan"
        args.remove("--auto-approve")
        i = args.index("--state-dir")
        del args[i:i + 2]
        return args

    def console(self, node: str) -> str:
        path = Path(self.uri.base) / "log" / "qemu" / f"{node}-serial.log"  # type: ignore[attr-defined]
        return path.read_text(errors="replace") if path.exists() else ""


def make_repo(tmp: Path, artifacts_url: str, dnsmasq: bool, uefi: bool) -> Path:
    repo = tmp / "repo"
    shutil.copytree(ROOT / "blueprints", repo / "blueprints",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "lock").mkdir()
    env_dir = repo / "environments" / "lab-boot"
    env_dir.mkdir(parents=True)
    text = lab_boot_env(artifacts_url)
    if dnsmasq:
        # Lab A's forwarders stay as written: the helper namespace has no uplink (only a veth
        # to br0 inside libvirtd's namespace), so a forwarded query cannot leave the machine.
        old = "  dns:\n    provider: bind\n    forwarders: [8.8.8.8, 8.8.4.4]\n"
        assert old in text
        text = text.replace(old, "  dns:\n    provider: dnsmasq\n    forwarders: [8.8.8.8, "
                                 "8.8.4.4]\n  dhcp:\n    provider: dnsmasq\n")
    if uefi:  # OVMF, then iPXE's EFI ROM, then GRUB (grubnetx64.efi) from the helper
        old = "{name: worker0, role: worker, hypervisor: hv1, "
        assert old in text
        text = text.replace(old, old + "firmware: uefi, ")
    (env_dir / "env.yaml").write_text(text)
    # openshift-install's role configs, as --ignition-dir: each writes one recognisable file
    (tmp / "roles").mkdir()
    for role in set(ROLES.values()):
        (tmp / "roles" / f"{role}.ign").write_text(json.dumps(role_config(role)))
    return repo


# -- evidence -------------------------------------------------------------------------------

STEPS = ("lease", "loader", "kernel", "ip", "dns", "ignition")


def evidence(run: Run, node: str, ip: str) -> dict[str, str | None]:
    """What each boot step left behind for `node` (None: no trace of it)."""
    console = run.console(node)
    leases = run.helper.log("dhcpd") + run.helper.log("dnsmasq")
    lease = re.search(rf"(DHCPACK on {re.escape(ip)} .*|DHCPACK\(\w+\) {re.escape(ip)} .*)",
                      leases)
    found: dict[str, str | None] = {"lease": lease.group(0) if lease else None}
    # The loader read this node's own config from TFTP and loads its kernel: pxelinux (BIOS,
    # SERIAL in its config) or GRUB (UEFI, through OVMF's console mirrored to the serial port)
    loader = re.search(r"Loading images/\S+.*|Booting `[^']*'", console)
    found["loader"] = loader.group(0).strip() if loader else None
    kernel = re.search(r"GEN-STANDIN: boot .*|Linux version .*", console)
    found["kernel"] = kernel.group(0) if kernel else None
    for step in ("ip", "dns", "ignition"):
        line = re.search(rf"^GEN-STANDIN: {step}(-failed)? .*$", console, re.M)
        found[step] = line.group(0).strip() if line else None
    return found


def explain(run: Run, waiting: list[str]) -> str:
    """Which step did not happen for which node, with the console tail."""
    out = []
    for node in waiting:
        found = evidence(run, node, NODES[node])
        missing = next((s for s in STEPS if not found[s]), None)
        applied = problems(run.console(node), expected(run.tmp / "rendered", node, ROLES[node],
                                                       NODES[node]))
        out.append(f"{node}: first missing step: {missing}" if missing else
                   applied[0] if applied else f"{node}: every step done")
        out += [f"  {step}: {found[step] or '-'}" for step in STEPS]
        tail = run.console(node).splitlines()[-15:]
        out += ["  console tail:", *[f"    | {line}" for line in tail]]
    for name in ("dhcpd", "dnsmasq", "named", "tftpd", "httpd", "haproxy"):
        log = run.helper.log(name).strip().splitlines()[-6:]
        if log:
            out += [f"helper {name} log tail:", *[f"    | {line}" for line in log]]
    return "\n".join(out)


def wait_done(run: Run, nodes: list[str], started: float) -> None:
    done: dict[str, float] = {}

    def finished(node: str) -> bool:
        console = run.console(node)
        return "GEN-STANDIN: done" in console and (node not in DISKFUL or DISK_MARKER in console)

    def check() -> bool:
        for node in nodes:
            # a reinstall loop: the installer's kernel fetched, or booted, a second time
            if len(kernel_reads(run, NODES[node])) > 1 \
                    or run.console(node).count("GEN-STANDIN: boot ") > 1:
                pytest.fail(f"{node} fetched the installer again after installing: "
                            f"{kernel_reads(run, NODES[node])}\n" + explain(run, [node]))
            if node not in done and finished(node):
                done[node] = time.monotonic() - started
            if node in DISKFUL and f"{node} install" not in run.timings \
                    and "GEN-STANDIN: installed " in run.console(node):
                run.timings[f"{node} install"] = time.monotonic() - started
        return len(done) == len(nodes)

    if not wait_for(check, BOOT_TIMEOUT, step=0.25):
        pytest.fail(f"nodes did not finish booting within {BOOT_TIMEOUT:.0f} s:\n"
                    + explain(run, [n for n in nodes if n not in done]))
    run.timings.update(done)


def kernel_reads(run: Run, ip: str) -> list[str]:
    """The helper's TFTP log lines of `ip` reading the installer's kernel."""
    return [r for r in run.helper.tftp_reads()
            if re.fullmatch(rf"RRQ from {re.escape(ip)} filename /?{re.escape(KERNEL)}", r)]


def assert_booted_once(run: Run, node: str, ip: str) -> None:
    """Exactly one PXE boot per node; a diskful node then came up from its disk."""
    console = run.console(node)
    assert console.count("GEN-STANDIN: boot ") == 1, console
    kernels = kernel_reads(run, ip)
    assert len(kernels) == 1, \
        f"{node}: TFTP kernel reads {kernels} of all reads {run.helper.tftp_reads()}"
    ignition = [line for line in run.helper.access_log().splitlines()
                if f'"GET /ignition/{node}.ign ' in line]
    # two: the installer's fetch (the stand-in's wget), then Ignition's own
    assert len(ignition) == 2, f"{node}: Ignition GETs {ignition}"
    if node in DISKFUL:
        installed = console.find("GEN-STANDIN: installed /dev/vda")
        from_disk = console.find(f"{DISK_MARKER} {node}.ocp4.example.com")
        assert 0 <= installed < from_disk, f"{node} did not come up from its disk:\n{console}"
        assert console.count(DISK_MARKER) == 1, console
    else:
        assert "GEN-STANDIN: installed" not in console and DISK_MARKER not in console, console


def assert_booted(run: Run, node: str, ip: str, rendered: Path) -> None:
    found = evidence(run, node, ip)
    assert all(found.values()), explain(run, [node])
    assert found["ip"] and f" {ip}/24 gw 192.168.20.1 host {node}.ocp4.example.com" \
        in found["ip"], found["ip"]
    assert found["dns"] == f"GEN-STANDIN: dns api-int.ocp4.example.com {HELPER_IP}", \
        found["dns"]
    locked = (rendered / "clusters/ocp4/ignition" / f"{node}.ign").read_bytes()
    assert MARKER in locked and SSH_KEY.encode() not in locked
    locked = locked.replace(MARKER, SSH_KEY.encode())  # as converge published it
    url = f"http://{HELPER_IP}:8080/ignition/{node}.ign"
    assert found["ignition"] == (f"GEN-STANDIN: ignition {url} "
                                 f"sha256={hashlib.sha256(locked).hexdigest()} "
                                 f"bytes={len(locked)}"), found["ignition"]
    gets = [line for line in run.helper.access_log().splitlines()
            if f'"GET /ignition/{node}.ign ' in line]
    assert gets and all(line.startswith(f"{ip} ") and '" 200 ' in line for line in gets), \
        f"access log for {node}.ign: {gets}"
    # real Ignition applied it: hostname, keyfile, the merged role config, core's SSH key
    applied = problems(run.console(node), expected(rendered, node, ROLES[node], ip))
    assert applied == [], "\n".join(applied) + "\n" + explain(run, [node])
    role = [line for line in run.helper.access_log().splitlines()
            if f'"GET /ignition/roles/{ROLES[node]}.ign ' in line and line.startswith(f"{ip} ")]
    assert role and all('" 200 ' in line for line in role), f"role config GETs: {role}"


def domain_ids(uri: str) -> dict[str, int]:
    import libvirt

    conn = libvirt.open(uri)
    try:
        return {d.name(): d.ID() for d in conn.listAllDomains(0)}
    finally:
        conn.close()


def acted_on(output: str) -> set[str]:
    """provider:kind:name of each action of a `gen plan` or `gen converge` JSON output."""
    data = json.loads(output)
    actions = data["plan"]["actions"] if "plan" in data else data["actions"]
    return {f"{a['provider']}:{a['kind']}:{a['name']}" for a in actions}


# -- the test -------------------------------------------------------------------------------

def boot_lab(standin: Path, libvirtd: str, tmp_path: Path, dnsmasq: bool,
             uefi: bool = False) -> None:
    wipe_libvirt(libvirtd)
    for log in (Path(libvirtd.base) / "log" / "qemu").glob("*-serial.log"):  # type: ignore[attr-defined]
        log.unlink()
    total = time.monotonic()
    services = DNSMASQ_SERVICES if dnsmasq else ISC_SERVICES
    with artifact_server(standin) as url, helper_host(libvirtd.netns, tmp_path) as helper:  # type: ignore[attr-defined]
        run = Run(make_repo(tmp_path, url, dnsmasq, uefi), libvirtd, helper, services, tmp_path,
                  uefi=uefi)
        try:
            _boot_and_reconverge(run)
        finally:  # kept for a person reading a failure: tmp_path/consoles/<node>.log
            (tmp_path / "consoles").mkdir()
            for node in NODES:
                (tmp_path / "consoles" / f"{node}.log").write_text(run.console(node))
    elapsed = time.monotonic() - total
    boots = ", ".join(f"{n} {s:.1f} s" for n, s in run.timings.items())
    print(f"\ne2e {'dnsmasq' if dnsmasq else 'isc+bind'}: total {elapsed:.1f} s, gen "
          f"{run.gen_seconds:.1f} s ({100 * run.gen_seconds / elapsed:.0f}%); boot to "
          f"Ignition (from converge start of its wave): {boots}; gen by verb: "
          + ", ".join(f"{v} {t:.1f} s" for v, t in run.per_verb.items()))


def _boot_and_reconverge(run: Run) -> None:
    run.gen("lock", run.env)
    run.gen("fetch", run.env)
    rendered = run.tmp / "rendered"
    run.gen("render", run.env, "--locked", "--out", str(rendered))

    # wave 1: helper services, network, all domains defined; bootstrap + master run
    started = time.monotonic()
    first = run.gen(*run.converge_args("bootstrap,master"))
    assert {f"files:service:helper/{s}" for s in run.services} <= acted_on(first.stdout)
    wait_done(run, ["bootstrap", "master0"], started)
    # wave 2: the worker
    started = time.monotonic()
    run.gen(*run.converge_args("all"))
    wait_done(run, ["worker0"], started)
    for node, ip in NODES.items():
        assert_booted(run, node, ip, rendered)
        # The stand-in named the NIC as udev would (PCI slot 2 on i440fx, the first root
        # port's bus on q35), then took the name gen pinned by MAC with ifname=.
        udev = "enp1s0" if run.uefi and node == "worker0" else "ens2"
        assert f"GEN-STANDIN: udev eth0 {udev}" in run.console(node), run.console(node)
        assert "GEN-STANDIN: cpu x86-64-v2" in run.console(node)
        assert_booted_once(run, node, ip)

    # converge again: nothing to do, no VM restarted
    ids = domain_ids(run.uri)
    again = run.gen(*run.converge_args("all"))
    assert acted_on(again.stdout) == set(), again.stdout
    assert domain_ids(run.uri) == ids
    for node, ip in NODES.items():  # nothing rebooted into PXE meanwhile
        assert_booted_once(run, node, ip)

    # the worker's memory changes: relock, and only the worker is touched
    run.gen("set", run.env, "nodes[worker0].memory", "384MiB")
    run.gen("lock", run.env)
    plan = run.gen(*run.plan_args())
    assert acted_on(plan.stdout) == {"libvirt:domain:hv1/worker0"}, plan.stdout
    changed = run.gen(*run.converge_args("all"))
    assert acted_on(changed.stdout) == {"libvirt:domain:hv1/worker0"}, changed.stdout
    assert domain_ids(run.uri) == ids  # redefined for its next boot, not restarted
    final = run.gen(*run.plan_args())
    assert acted_on(final.stdout) == set(), final.stdout


def test_boot_isc_dhcpd_bind(standin: Path, libvirtd: str, tmp_path: Path) -> None:
    boot_lab(standin, libvirtd, tmp_path, dnsmasq=False)


def test_boot_dnsmasq_uefi_worker(standin: Path, libvirtd: str, tmp_path: Path) -> None:
    boot_lab(standin, libvirtd, tmp_path, dnsmasq=True, uefi=True)
