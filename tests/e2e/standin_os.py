r"""A stand-in for CoreOS in the end-to-end boot test, built deterministically.

CoreOS cannot be downloaded here, so Debian's cloud kernel boots a tiny busybox initramfs
whose /init does what the CoreOS installer's first steps do with gen's kernel arguments:
apply `ip=`, resolve `api-int.<cluster domain>` through `nameserver=`, fetch
`coreos.inst.ignition_url`, and report each step on the serial console as
`GEN-STANDIN: <step> ...` lines the test reads. It then idles (a real node keeps running),
so a second converge must find every VM running and change nothing.

Like coreos-installer it installs to `coreos.inst.install_dev` when that disk exists: it
writes a tiny bootable disk (tests/e2e/standin_disk.py: an MBR boot sector for SeaBIOS and
an EFI system partition with `\EFI\BOOT\BOOTX64.EFI` for OVMF) whose two programs print
`GEN-DISK: booted from disk, installed as <host>` on the serial console and halt, then
reboots the VM, so the test sees a node come up from its disk, not from PXE. A diskless
node (no such disk) stays in the live system, as before.

The initramfs is a gzip'd newc cpio written here in Python with fixed mtimes, owners and
order, so the same inputs always give the same bytes (and the same sha256 in the lock).

It is honest where RHCOS would fail, so a regression fails the end-to-end test:
- it refuses to boot (`GEN-STANDIN: cpu-failed`, then idles) on a CPU without the
  x86-64-v2 flags RHEL 9 userspace needs (cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3, read
  from /proc/cpuinfo): libvirt's default qemu64 lacks most of them;
- it names each NIC the way systemd-udevd's default link policy does (`ens<slot>` when
  the firmware reports the PCI hotplug slot, as on i440fx: `ens2` for slot 2; else
  `enp<bus>s<device>`, as behind q35's root ports: `enp1s0`), then applies dracut's
  `ifname=<name>:<mac>` on top; `ip=` naming an interface that does not exist fails
  (`GEN-STANDIN: ip-failed`), as it does in dracut.
"""

from __future__ import annotations

import gzip
import io
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import standin_disk

BUSYBOX = Path("/bin/busybox")
# In dependency order (modinfo -F depends): insmod resolves nothing by itself.
MODULES = ("kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
           "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
           "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
           "kernel/drivers/virtio/virtio_pci.ko", "kernel/net/core/failover.ko",
           "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
           "kernel/drivers/block/virtio_blk.ko")
DISK_MARKER = "GEN-DISK: booted from disk, installed as"
IGNITION = Path("/usr/lib/dracut/modules.d/30ignition/ignition")  # Debian's ignition 2.14
USERADD = Path("/usr/sbin/useradd")  # the files stage creates user `core` with it
# What the OS image ships that Ignition's files stage reads: the account databases useradd
# extends, and SELinux's config (the stand-in kernel enforces no SELinux policy).
SYSROOT = {
    "lib/gen-sysroot/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "lib/gen-sysroot/etc/group": "root:x:0:\nusers:x:100:\n",
    "lib/gen-sysroot/etc/selinux/config": "SELINUX=disabled\nSELINUXTYPE=targeted\n",
}
# Debian builds Ignition to relabel every file it writes with `setfiles` from the sysroot's
# policy. The stand-in kernel runs no SELinux, so there is no label to set: this `setfiles`
# only records the paths Ignition hands it (NUL-separated on stdin) and succeeds.
SETFILES = """#!/bin/busybox sh
cat > "${RUN:-/run}/setfiles.paths"
"""

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "GEN-STANDIN: $*"; }
for m in MODULE_LIST; do insmod /lib/modules/$m.ko 2>/dev/null; done
say boot $(cat /proc/cmdline)
FLAGS=" $(grep -m 1 '^flags' /proc/cpuinfo | cut -d: -f2) "
MISSING=""
for flag in cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3; do
  case "$FLAGS" in *" $flag "*) ;; *) MISSING="$MISSING $flag" ;; esac
done
if [ -n "$MISSING" ]; then
  say cpu-failed "not x86-64-v2, missing:$MISSING"
  while true; do sleep 3600; done
fi
say cpu x86-64-v2
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ip=*) IPARG="${arg#ip=}" ;;
    nameserver=*) NS="${arg#nameserver=}" ;;
    coreos.inst.ignition_url=*) IGN="${arg#coreos.inst.ignition_url=}" ;;
    coreos.inst.install_dev=*) DEV="${arg#coreos.inst.install_dev=}" ;;
  esac
done
OLDIFS="$IFS"; IFS=:
set -- $IPARG
IFS="$OLDIFS"
CIP="$1"; GW="$3"; MASK="$4"; HOST="$5"; IFACE="$6"
n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done
predictable() {  # $1: a kernel interface name -> udev's default (path-based) name
  pci=$(basename "$(dirname "$(readlink -f "/sys/class/net/$1/device")")")
  for slot in /sys/bus/pci/slots/*; do  # net_id skips slot 0 (q35's root ports report it)
    [ "$(basename "$slot")" != 0 ] && [ -f "$slot/address" ] \
      && [ "$(cat "$slot/address")" = "${pci%.*}" ] && { echo "ens$(basename "$slot")"; return; }
  done
  rest="${pci#*:}"; bus="${rest%%:*}"; dev="${rest#*:}"; dev="${dev%.*}"
  echo "enp$((0x$bus))s$((0x$dev))"
}
for dev in $(ls /sys/class/net); do
  case "$dev" in eth*) NEW=$(predictable "$dev"); say udev "$dev" "$NEW"
                      ip link set "$dev" name "$NEW" ;; esac
done
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ifname=*) WANT="${arg#ifname=}"; NAME="${WANT%%:*}"; MAC="${WANT#*:}"
      for dev in $(ls /sys/class/net); do
        [ "$(cat "/sys/class/net/$dev/address")" = "$MAC" ] && [ "$dev" != "$NAME" ] \
          && ip link set "$dev" name "$NAME"
      done ;;
  esac
done
say names $(for dev in $(ls /sys/class/net); do
  echo "$dev=$(cat /sys/class/net/$dev/address)"; done)
[ -n "$IFACE" ] || IFACE=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
if [ ! -e "/sys/class/net/$IFACE" ]; then
  say ip-failed "no interface $IFACE" have $(ls /sys/class/net)
  while true; do sleep 3600; done
fi
ip link set lo up
ip link set "$IFACE" up
if [ -n "$CIP" ]; then
  eval $(ipcalc -p "$CIP" "$MASK")
  ip addr add "$CIP/$PREFIX" dev "$IFACE"
  [ -n "$GW" ] && ip route add default via "$GW"
  hostname "${HOST%%.*}"
  say ip "$IFACE" "$CIP/$PREFIX" gw "$GW" host "$HOST"
else
  udhcpc -i "$IFACE" -q -n -t 10 && say ip "$IFACE" dhcp
fi
[ -n "$NS" ] && echo "nameserver $NS" > /etc/resolv.conf
DOMAIN="${HOST#*.}"
# the answer's addresses follow the `Name:` line (the server's own come before it)
ADDR=$(nslookup "api-int.$DOMAIN" "$NS" 2>/dev/null \
  | awk '/^Name:/ { answer = 1 } answer && /^Address/ { print $2 }' | tail -n 1)
say dns "api-int.$DOMAIN" "$ADDR"
if timeout 60 wget -q -O /tmp/ignition "$IGN"; then
  SUM=$(sha256sum /tmp/ignition | cut -d' ' -f1)
  say ignition "$IGN" sha256=$SUM bytes=$(wc -c < /tmp/ignition)
else
  say ignition-failed "$IGN"
fi
# Real Ignition applies that config (APPLY_IGNITION)
APPLY_IGNITION_FUNCTION
if [ -x /usr/bin/ignition ]; then
  export PATH=/usr/sbin:/usr/bin:/sbin:/bin
  SYSROOT=/sysroot RUN=/run SKELETON=/lib/gen-sysroot IGNITION=/usr/bin/ignition \
    apply_ignition "$IGN"
fi
n=0; while [ -n "$DEV" ] && [ ! -b "$DEV" ] && [ -e /sys/block/"${DEV#/dev/}" ] \
  && [ $n -lt 25 ]; do sleep 0.2; n=$((n+1)); done
if [ -n "$DEV" ] && [ -b "$DEV" ]; then
  # "install": the disk, then the message its BIOS and EFI programs print; reboot into it
  dd if=/lib/gen-disk of="$DEV" bs=512 conv=notrunc 2>/dev/null
  for at in BIOS_MESSAGE EFI_MESSAGE; do
    printf '\r\n%s %.100s\r\n' "DISK_MARKER" "$HOST" \
      | dd of="$DEV" bs=1 seek=$at conv=notrunc 2>/dev/null
  done
  sync
  say installed "$DEV"
  say done
  reboot -f
fi
say done
while true; do sleep 3600; done
"""


# What the node does with its config, as Ignition does on its first boot from disk: the URL
# coreos-installer would hand on becomes `ignition.config.url` on the command line Ignition
# reads (metal platform: /proc/cmdline, bind-mounted over), the sysroot is a tmpfs holding
# what the OS image ships (SKELETON), then real Ignition runs its fetch and files stages and
# the node reports what landed as `GEN-STANDIN: landed <what> ...` lines (parsed by
# tests/e2e/ignition_proof.py). A shell function so tests/e2e/test_ignition_apply.py runs the
# very same steps on the host, in a private mount namespace.
APPLY_IGNITION = r"""apply_ignition() {  # $1: the config URL; SYSROOT RUN SKELETON IGNITION
  mkdir -p "$SYSROOT" "$RUN/ignition"
  mount -t tmpfs sysroot "$SYSROOT" && cp -a "$SKELETON/." "$SYSROOT/"
  echo "$(cat /proc/cmdline) ignition.config.url=$1" > "$RUN/gen-cmdline"
  mount -o bind "$RUN/gen-cmdline" /proc/cmdline
  for stage in fetch files; do
    if "$IGNITION" -platform metal -stage $stage -root "$SYSROOT" -log-to-stdout \
        -fetch-timeout 60s -config-cache "$RUN/ignition.json" \
        -state-file "$RUN/ignition/state" > "$RUN/ignition-$stage.log" 2>&1; then
      say ignition-$stage ok
    else
      say ignition-$stage-failed $(grep -m 1 CRITICAL "$RUN/ignition-$stage.log")
      return
    fi
  done
  say landed hostname $(cat "$SYSROOT/etc/hostname")
  for keyfile in "$SYSROOT"/etc/NetworkManager/system-connections/*.nmconnection; do
    [ -f "$keyfile" ] || continue
    say landed keyfile "$(basename "$keyfile")" mode=$(stat -c %a "$keyfile") \
      mac=$(sed -n 's/^mac-address=//p' "$keyfile") \
      address=$(sed -n 's/^address1=//p' "$keyfile") \
      gateway=$(sed -n 's/^gateway=//p' "$keyfile") \
      dns=$(sed -n 's/^dns=//p' "$keyfile") search=$(sed -n 's/^dns-search=//p' "$keyfile")
  done
  say landed role-file $(cat "$SYSROOT/etc/gen-role" 2>/dev/null || echo -)
  say landed ssh-key $(grep '^core:' "$SYSROOT/etc/passwd" | cut -d: -f1,6) \
    $(cat "$SYSROOT/home/core/.ssh/authorized_keys.d/ignition" 2>/dev/null || echo -)
}"""


@dataclass(frozen=True)
class _Entry:
    name: str
    mode: int
    data: bytes = b""


def _cpio_newc(entries: list[_Entry]) -> bytes:
    """A newc archive with inode numbers by position and every mtime/uid/gid zero."""
    out = io.BytesIO()
    for ino, entry in enumerate([*entries, _Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.encode() + b"\0"
        fields = [0 if entry.name == "TRAILER!!!" else ino, entry.mode, 0, 0, 1, 0,
                  len(entry.data), 0, 0, 0, 0, len(name), 0]
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        out.write(header + name)
        out.write(b"\0" * (-(len(header) + len(name)) % 4))
        out.write(entry.data)
        out.write(b"\0" * (-len(entry.data) % 4))
    return out.getvalue()


def build_initramfs(kernel_release: str) -> bytes:
    """The stand-in initramfs for `kernel_release` (modules from /lib/modules)."""
    modules_dir = Path("/lib/modules") / kernel_release
    names = " ".join(Path(m).stem for m in MODULES)
    directory = stat.S_IFDIR | 0o755
    entries = [_Entry(d, directory) for d in ("bin", "dev", "etc", "lib", "lib/modules",
                                              "proc", "run", "sys", "tmp")]
    entries.append(_Entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes()))
    entries += [_Entry(f"lib/modules/{Path(m).name}", stat.S_IFREG | 0o644,
                       (modules_dir / m).read_bytes()) for m in MODULES]
    entries.append(_Entry("lib/gen-disk", stat.S_IFREG | 0o644, standin_disk.disk_image()))
    entries += _ignition_entries()
    init = INIT.replace("APPLY_IGNITION_FUNCTION", APPLY_IGNITION)
    init = init.replace("MODULE_LIST", names).replace("DISK_MARKER", DISK_MARKER)
    init = init.replace("BIOS_MESSAGE EFI_MESSAGE", f"{standin_disk.BIOS_MESSAGE} "
                                                    f"{standin_disk.EFI_MESSAGE}")
    entries.append(_Entry("init", stat.S_IFREG | 0o755, init.encode()))
    raw = _cpio_newc(sorted(entries, key=lambda e: e.name))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as handle:
        handle.write(raw)
    return buffer.getvalue()


def _ignition_entries() -> list[_Entry]:
    """Debian's real Ignition and the useradd it runs, with every library `ldd` lists, and
    the sysroot skeleton: the few files of the OS image Ignition's files stage reads."""
    files: dict[str, Path] = {}
    for binary, at in ((IGNITION, "usr/bin/ignition"), (USERADD, "usr/sbin/useradd")):
        files[at] = binary
        for library in _libraries(binary):
            files[str(library).lstrip("/")] = library.resolve()
    directory = stat.S_IFDIR | 0o755
    dirs = sorted({str(parent) for at in [*files, *SYSROOT]
                   for parent in Path(at).parents if str(parent) != "."} - {"lib"})
    entries = [_Entry(d, directory) for d in dirs]
    entries += [_Entry(at, stat.S_IFREG | 0o755, path.read_bytes())
                for at, path in sorted(files.items())]
    entries += [_Entry(at, stat.S_IFREG | 0o644, text.encode())
                for at, text in sorted(SYSROOT.items())]
    entries.append(_Entry("usr/sbin/setfiles", stat.S_IFREG | 0o755, SETFILES.encode()))
    return entries


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries (and the loader) `ldd` resolves for `binary`, as paths."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return sorted({Path(m) for m in re.findall(r"(/\S+) \(0x", out)})


def cloud_kernel() -> tuple[Path, str]:
    """(vmlinuz path, kernel release) of Debian's linux-image-cloud-amd64."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"))
    if not kernels:
        raise FileNotFoundError("linux-image-cloud-amd64 is not installed")
    return kernels[-1], kernels[-1].name.removeprefix("vmlinuz-")
