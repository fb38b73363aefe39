"""Shared helpers of the reconciler tests (tests/test_reconcile_*.py) and bench_reconcile.

`scale_lab` turns a scratch copy of lab A into something a test machine can run: an isolated
libvirt network (no host bridge), TCG domains (`type='qemu'`), 256 MiB per node, a pool in a
temp directory, tiny disks for helper and bootstrap and diskless PXE masters and workers.
The helper keeps a blank disk unless `helper_image` is given: tests about the PXE side need
no booted helper, and an image-booted one needs its base image in gen's store.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LAB_NODES = ("helper", "bootstrap", "master0", "master1", "master2", "worker0", "worker1")
HELPER_IMAGE = "centos-stream-9-genericcloud"


def scale_lab(repo: Path, pool_dir: Path, memory: str = "256MiB",
              helper_image: tuple[str, str] | None = None) -> Path:
    """Rewrite `repo/environments/lab/env.yaml` in place; returns the env.yaml path.

    `helper_image` (file name beside env.yaml, sha256) stands in for the helper's cloud
    image; without it the helper boots nothing from a blank disk."""
    path = repo / "environments" / "lab" / "env.yaml"
    text = path.read_text()
    assert text.count(f"image: {HELPER_IMAGE}, ") == 1, "lab A's helper line changed"
    if helper_image is None:
        text = text.replace(f"image: {HELPER_IMAGE}, ", "", 1)
    else:
        name, sha256 = helper_image
        text = text.replace("  os:\n", f"  os:\n    {HELPER_IMAGE}: "
                            f"{{url: \"file://{name}\", sha256: {sha256}}}\n", 1)
    text = text.replace("    bridge: br0\n\nhypervisors:",
                        "    libvirt: {mode: isolated}\n\nhypervisors:", 1)
    text = text.replace("domainType: kvm", "domainType: qemu", 1)
    text = text.replace("path: /var/lib/libvirt/images", f"path: {pool_dir}", 1)

    def node(match: re.Match[str]) -> str:
        line = match.group(0)
        role = re.search(r"role: (\w+)", line).group(1)  # type: ignore[union-attr]
        disks = "[{name: root, size: 16MiB}]" if role in ("helper", "bootstrap") else "[]"
        return line.replace("hypervisor: hv1,",
                            f"hypervisor: hv1, vcpu: 1, memory: {memory}, disks: {disks},", 1)

    text = re.sub(r"^  - \{name: \w+, role: .*\}$", node, text, flags=re.M)
    assert "mode: isolated" in text and "domainType: qemu" in text, "lab A's env.yaml changed"
    assert text.count("memory: ") == len(LAB_NODES), "lab A's node lines changed"
    path.write_text(text)
    return path


def edit_node(env_yaml: Path, node: str, old: str, new: str) -> None:
    """Replace `old` by `new` in the one line defining `node`."""
    lines = env_yaml.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if f"{{name: {node}," in line]
    assert len(hits) == 1 and old in lines[hits[0]], (node, old)
    lines[hits[0]] = lines[hits[0]].replace(old, new, 1)
    env_yaml.write_text("".join(lines))


def state_file(directory: Path) -> str:
    """A fresh, empty libvirt test-driver state; returns its test:/// URI."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "state.xml"
    path.write_text("<node/>\n")
    return f"test://{path}"


# -- a private libvirtd with the qemu driver ------------------------------------------------

_START = """set -e
mount --bind {base}/etc /etc/libvirt
mount --bind {base}/lib /var/lib/libvirt
mkdir -p /run/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind {base}/run /run/libvirt
mount --bind {base}/cache /var/cache/libvirt
mount --bind {base}/log /var/log/libvirt
virtlogd -d -p {base}/virtlogd.pid
libvirtd -d -p {base}/libvirtd.pid
"""


class LibvirtdUri(str):
    """The URI, which also names the daemon's network namespace and its private base dir
    (`base/log` is its /var/log/libvirt, `base/lib` its /var/lib/libvirt)."""

    netns: str
    base: Path


@contextlib.contextmanager
def private_libvirtd() -> Iterator[str]:
    """A libvirtd (qemu driver) of its own; yields a `qemu:///system?socket=...` URI
    (a LibvirtdUri: also `.netns` and `.base`, for tests that wire guests to a bridge).

    The usual recipe (virtlogd and libvirtd inside a lo-only netns, `user = "root"` in
    qemu.conf), made private so nothing is written outside a temp dir: the daemons run in a
    mount namespace where /etc/libvirt (a copy, with our qemu.conf lines and no autostart
    networks), /var/lib/libvirt, /run/libvirt, /var/cache/libvirt and /var/log/libvirt are
    bind mounts of temp dirs. The socket is reached from the root namespace through the
    temp dir. On exit every domain and network is destroyed, then the daemons are killed by
    pid and the namespace reaped.
    """
    from netns import netns

    for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64", "unshare", "dnsmasq"):
        assert shutil.which(tool), f"{tool} missing (tests/run.sh APT_PACKAGES)"
    base = Path(tempfile.mkdtemp(prefix="gen-lvd-"))  # short: unix socket paths <= 107
    try:
        for name in ("lib", "run", "cache", "log", "log/qemu"):  # log/qemu: serial consoles
            (base / name).mkdir()
        shutil.copytree("/etc/libvirt", base / "etc", symlinks=True)
        for link in (base / "etc/qemu/networks/autostart").glob("*"):
            link.unlink()
        with (base / "etc/qemu.conf").open("a") as conf:
            conf.write('\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n')
        (base / "start.sh").write_text(_START.format(base=base))
        with netns("lvd") as ns:
            subprocess.run(["unshare", "-m", "--propagation", "private", *ns.argv(
                ["sh", str(base / "start.sh")])], check=True, timeout=60)
            for daemon in ("virtlogd", "libvirtd"):
                ns.track(_wait_pid(base / f"{daemon}.pid"))
            uri = LibvirtdUri(f"qemu:///system?socket={base}/run/libvirt-sock")
            uri.netns, uri.base = ns.name, base
            _wait_socket(base / "run" / "libvirt-sock")
            try:
                yield uri
            finally:
                wipe_libvirt(uri)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_pid(path: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no pid file {path}")


def _wait_socket(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"libvirtd did not create {path}"


def wipe_libvirt(uri: str) -> None:
    """Destroy and undefine every domain, network and pool (between tests, and at the end)."""
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for net in conn.listAllNetworks(0):
            if net.isActive():
                net.destroy()
            net.undefine()
        for pool in conn.listAllStoragePools(0):
            if pool.isActive():
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            pool.undefine()
    finally:
        conn.close()
