"""Lab A (scaled like tests/reconcile_fixtures.scale_lab) as a person builds it by hand with
virsh: an isolated network with DHCP reservations, a directory pool, qcow2 volumes for the
helper and the bootstrap node, and domains written the way virt-install writes them (acpi,
apic, a serial console, virtio disk and NIC). No gen marker anywhere."""

from __future__ import annotations

LAB = {  # name: (ip, mac, has a root disk, PXE after the disk)
    "helper": ("192.168.20.111", "52:54:00:a0:00:11", True, False),
    "bootstrap": ("192.168.20.150", "52:54:00:a0:00:50", True, True),
    "master0": ("192.168.20.151", "52:54:00:a0:00:51", False, True),
    "master1": ("192.168.20.152", "52:54:00:a0:00:52", False, True),
    "master2": ("192.168.20.153", "52:54:00:a0:00:53", False, True),
    "worker0": ("192.168.20.161", "52:54:00:a0:00:61", False, True),
    "worker1": ("192.168.20.162", "52:54:00:a0:00:62", False, True),
}
DISK_BYTES = 16 * 1024 * 1024


def network_xml() -> str:
    hosts = "".join(f"<host mac='{mac}' name='{name}' ip='{ip}'/>"
                    for name, (ip, mac, _, _) in LAB.items())
    return (f"<network><name>lan</name><ip address='192.168.20.1' netmask='255.255.255.0'>"
            f"<dhcp>{hosts}</dhcp></ip></network>")


def volume_name(node: str, virt_install: bool = False) -> str:
    """gen's naming, or virt-install's (the VM's name)."""
    return f"{node}.qcow2" if virt_install else f"{node}-root.qcow2"


def pool_xml(path: str, volumes: bool = False) -> str:
    inner = "".join(volume_xml(name) for name, (_, _, disk, _) in LAB.items()
                    if disk) if volumes else ""
    return f"<pool type='dir'><name>default</name><target><path>{path}</path></target>" \
           f"{inner}</pool>"


def volume_xml(node: str, virt_install: bool = False) -> str:
    return (f"<volume><name>{volume_name(node, virt_install)}</name>"
            f"<capacity unit='bytes'>{DISK_BYTES}"
            "</capacity><target><format type='qcow2'/></target></volume>")


# The CPU a working lab A already has: RHCOS needs x86-64-v2, which libvirt's default qemu64
# lacks (virt-install's --cpu host-model under KVM; a named model under TCG).
CPU = {"kvm": "<cpu mode='host-model' check='partial'/>",
       "qemu": "<cpu mode='custom' match='exact' check='partial'>"
               "<model fallback='forbid'>Nehalem</model></cpu>"}


def domain_xml(name: str, domain_type: str = "qemu", virt_install: bool = False) -> str:
    """virt_install: as virt-install writes it today (q35, the volume named after the VM)."""
    ip, mac, disk, pxe = LAB[name]
    machine = "q35" if virt_install else "pc"
    del ip
    # as UPI guides set it up: the disk first, an empty one falls through to PXE
    boot = "<boot dev='hd'/>" + ("<boot dev='network'/>" if pxe else "")
    disk_xml = (f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
                f"<source pool='default' volume='{volume_name(name, virt_install)}'/>"
                f"<target dev='vda' bus='virtio'/></disk>") if disk else ""
    return (f"<domain type='{domain_type}'><name>{name}</name>"
            "<memory unit='MiB'>256</memory><currentMemory unit='MiB'>256</currentMemory>"
            f"<vcpu>1</vcpu>{CPU[domain_type]}"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type>{boot}</os>"
            "<features><acpi/><apic/></features>"
            "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
            "<on_crash>destroy</on_crash>"
            f"<devices>{disk_xml}<interface type='network'><mac address='{mac}'/>"
            "<source network='lan'/><model type='virtio'/></interface>"
            "<serial type='pty'><target port='0'/></serial>"
            "<console type='pty'><target type='serial' port='0'/></console>"
            "</devices></domain>")


def driver_state(pool_path: str, extra_domains: str = "") -> str:
    """A libvirt test-driver state file holding the hand-built lab."""
    domains = "".join(domain_xml(name) for name in LAB)
    return f"<node>{network_xml()}{pool_xml(pool_path, volumes=True)}{domains}" \
           f"{extra_domains}</node>\n"
