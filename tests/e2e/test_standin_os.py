"""The stand-in OS can fail where RHCOS would: proof that the end-to-end test is honest.

Each case boots Debian's cloud kernel with the stand-in initramfs directly (no PXE, no
helper: a user-mode NIC that reaches nothing) on the private libvirtd, under TCG, and reads
its serial console:
- on libvirt's default CPU (qemu64, no `<cpu>`) it refuses to boot: not x86-64-v2;
- it names the NIC as udev's default policy does: `ens2` at PCI slot 2 on i440fx,
  `enp1s0` behind q35's first root port; `ip=` naming `ens3` without gen's `ifname=` pin
  fails, with it succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from reconcile_fixtures import private_libvirtd
from standin_os import build_initramfs, cloud_kernel

pytestmark = pytest.mark.libvirtd
MAC = "52:54:00:12:34:56"
IP_ARG = "ip=10.0.2.15::10.0.2.2:255.255.255.0:standin.example.com:ens3:none"
NEHALEM = ("<cpu mode='custom' match='exact' check='partial'>"
           "<model fallback='forbid'>Nehalem</model></cpu>")
VERDICTS = ("GEN-STANDIN: cpu-failed", "GEN-STANDIN: ip-failed", "GEN-STANDIN: ip ")


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """boot(machine, cpu, args) -> the stand-in's GEN-STANDIN lines once it decided."""
    import libvirt

    work = tmp_path_factory.mktemp("standin")
    vmlinuz, release = cloud_kernel()
    (work / "initrd").write_bytes(build_initramfs(release))
    with private_libvirtd() as uri:
        conn = libvirt.open(uri)
        count = iter(range(100))

        def run(machine: str, cpu: str, args: str) -> list[str]:
            n = next(count)
            log = work / f"console-{n}.log"
            xml = (f"<domain type='qemu'><name>standin-{n}</name>"
                   "<memory unit='MiB'>320</memory><vcpu>1</vcpu>"
                   f"<os><type arch='x86_64' machine='{machine}'>hvm</type>"
                   f"<kernel>{vmlinuz}</kernel><initrd>{work / 'initrd'}</initrd>"
                   f"<cmdline>{args} console=ttyS0</cmdline></os>"
                   f"<features><acpi/><apic/></features>{cpu}<devices>"
                   f"<interface type='user'><mac address='{MAC}'/><model type='virtio'/>"
                   f"</interface><serial type='file'><source path='{log}'/></serial>"
                   "</devices></domain>")
            dom = conn.createXML(xml)
            try:
                deadline = time.monotonic() + 90
                text = ""
                while time.monotonic() < deadline:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    if any(v in text for v in VERDICTS):
                        break
                    time.sleep(0.5)
                return [line.strip() for line in text.splitlines()
                        if line.startswith("GEN-STANDIN:") and " boot " not in line]
            finally:
                dom.destroy()

        yield run
        conn.close()


def test_refuses_a_cpu_without_x86_64_v2(boot) -> None:
    lines = boot("pc", "", f"ifname=ens3:{MAC} {IP_ARG}")
    assert lines and lines[0].startswith("GEN-STANDIN: cpu-failed not x86-64-v2, missing:"), lines
    assert not any(line.startswith("GEN-STANDIN: ip") for line in lines)


def test_names_like_udev_and_needs_the_ifname_pin(boot) -> None:
    unpinned = boot("pc", NEHALEM, IP_ARG)
    assert "GEN-STANDIN: udev eth0 ens2" in unpinned, unpinned
    assert any(line.startswith("GEN-STANDIN: ip-failed no interface ens3") for line in unpinned)
    pinned = boot("q35", NEHALEM, f"ifname=ens3:{MAC} {IP_ARG}")
    assert "GEN-STANDIN: udev eth0 enp1s0" in pinned, pinned
    assert "GEN-STANDIN: ip ens3 10.0.2.15/24 gw 10.0.2.2 host standin.example.com" in pinned
