"""A small Debian bookworm VM image with real cloud-init, built from Debian's packages and
cached between runs.

`mmdebstrap` installs PACKAGES (cloud-init, systemd, Debian's cloud kernel with its
initramfs, ifupdown + resolvconf for cloud-init's ENI renderer, and the Debian packages
lab B's user-data lists, so cloud-init's `packages` step finds them installed: the VM has
no route to a Debian mirror). The rootfs then gets what a Debian cloud image has and the
test needs: an empty sources.list kept as is (`apt_preserve_sources_list`, as Debian's
cloud images set it), a 16 MiB swap file in fstab (so `swapoff -a` in the user-data has
something to turn off), the test's CA among the trusted ones (the stand-in pkgs.k8s.io
serves HTTPS), and `gen-proof.service`, which runs after cloud-init is done, executes the
proof script from the disk labelled GENPROOF and powers the VM off. `mkfs.ext4 -d` turns
the rootfs into a raw disk image; the VM boots its kernel and initrd directly (qemu
-kernel/-initrd, no bootloader).

The cache directory is keyed by the sha256 of everything that shapes the image (package
list, suite, the customisation below), so a change rebuilds it and an unchanged run reuses
it. GEN_TEST_CACHE moves it (default ~/.cache/gen-tests).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "cloud-init", "systemd-sysv", "udev", "kmod", "procps", "iproute2",
    "linux-image-cloud-amd64", "initramfs-tools",
    # cloud-init's ENI renderer, the DNS it writes (resolvconf) and the routes it writes
    # (`post-up route add ...`: net-tools)
    "ifupdown", "resolvconf", "net-tools",
    "openssh-server", "sudo",  # the default user and its SSH key, as on a cloud image
    "e2fsprogs", "locales",  # cloud-init's resizefs and locale modules, as on a cloud image
    # what lab B's user-data installs from Debian (cloudinit._packages)
    "curl", "ca-certificates", "containerd", "conntrack", "socat", "gpg", "nfs-common",
)
ROOT_SIZE = "2G"

CLOUD_CFG = """\
# As Debian's cloud images: keep the image's own sources.list (here: none; no network).
apt:
  preserve_sources_list: true
datasource_list: [NoCloud, None]
"""

PROOF_UNIT = """\
[Unit]
Description=gen test harness: report what cloud-init applied, then power off
# No default dependencies: multi-user.target would be ordered after this unit, and
# cloud-init.target is ordered after multi-user.target.
DefaultDependencies=no
After=cloud-init.target cloud-final.service
Wants=cloud-init.target

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/mkdir -p /run/gen-proof
ExecStart=/bin/mount -o ro /dev/disk/by-label/GENPROOF /run/gen-proof
ExecStart=/bin/sh /run/gen-proof/proof.sh
# Powered off whatever happened: the test waits for qemu to exit.
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
"""

FSTAB = "LABEL=root / ext4 rw,errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n"


@dataclass(frozen=True)
class Image:
    """A built image: boot it with qemu -kernel/-initrd (root on the first virtio disk)."""

    root: Path  # raw ext4; attach with snapshot=on so the cache stays pristine
    kernel: Path
    initrd: Path
    ca_cert: Path  # trusted inside the image
    ca_key: Path


def cache_root() -> Path:
    return Path(os.environ.get("GEN_TEST_CACHE", Path.home() / ".cache" / "gen-tests"))


def key() -> str:
    shaping = "\n".join([SUITE, MIRROR, *PACKAGES, ROOT_SIZE, CLOUD_CFG, PROOF_UNIT, FSTAB,
                         Path(__file__).read_text()])
    return hashlib.sha256(shaping.encode()).hexdigest()[:16]


def image() -> Image:
    """The cached image, built first if missing (about a minute with a warm apt cache)."""
    final = cache_root() / f"cloudinit-{SUITE}-{key()}"
    if not (final / "done").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
        try:
            _build(work)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            for stale in final.parent.glob(f"cloudinit-{SUITE}-*"):  # older recipes
                if stale != final:
                    shutil.rmtree(stale, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return Image(final / "root.img", final / "vmlinuz", final / "initrd.img",
                 final / "ca.pem", final / "ca.key")


def _run(argv: list[str], **kw: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _build(work: Path) -> None:
    rootfs = work / "rootfs"
    _run(["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES), SUITE,
          str(rootfs), MIRROR], timeout=1200)
    _make_ca(work)
    _customise(rootfs, work / "ca.pem")
    boot = rootfs / "boot"
    kernel = next(boot.glob("vmlinuz-*-cloud-amd64"))
    shutil.copy(kernel, work / "vmlinuz")
    shutil.copy(boot / kernel.name.replace("vmlinuz", "initrd.img"), work / "initrd.img")
    _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(rootfs), str(work / "root.img"),
          ROOT_SIZE])
    shutil.rmtree(rootfs)
    (work / "done").write_text(" ".join(PACKAGES) + "\n")


def _make_ca(work: Path) -> None:
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
          "-subj", "/CN=gen test CA (stand-in pkgs.k8s.io)",
          "-keyout", str(work / "ca.key"), "-out", str(work / "ca.pem")])


def _customise(rootfs: Path, ca: Path) -> None:
    (rootfs / "etc/apt/sources.list").write_text("# no network: no Debian mirror\n")
    for extra in (rootfs / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    (rootfs / "etc/cloud/cloud.cfg.d/01_gen_test.cfg").write_text(CLOUD_CFG)
    (rootfs / "etc/fstab").write_text(FSTAB)
    # Random bytes, not zeros: mkfs.ext4 -d turns zero blocks into holes, and a swap file
    # with holes is refused by swapon.
    (rootfs / "swapfile").write_bytes(os.urandom(16 << 20))
    (rootfs / "swapfile").chmod(0o600)
    _run(["mkswap", str(rootfs / "swapfile")])
    (rootfs / "etc/systemd/system/gen-proof.service").write_text(PROOF_UNIT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "gen-proof.service").symlink_to("/etc/systemd/system/gen-proof.service")
    shutil.copy(ca, rootfs / "usr/local/share/ca-certificates/gen-test-ca.crt")
    _run(["chroot", str(rootfs), "update-ca-certificates"])
    # cloud-init sets LANG=en_US.UTF-8 and Debian's locale-gen builds only what
    # /etc/locale.gen enables: enable it, as the installer does for an en_US system.
    gen = rootfs / "etc/locale.gen"
    gen.write_text(gen.read_text().replace("# en_US.UTF-8 UTF-8", "en_US.UTF-8 UTF-8"))
    _run(["chroot", str(rootfs), "locale-gen"])
    # A cloud image's first boot: no machine id, no host name, no host keys of its own yet.
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    for hostkey in (rootfs / "etc/ssh").glob("ssh_host_*"):
        hostkey.unlink()
    shutil.rmtree(rootfs / "var/lib/cloud", ignore_errors=True)
