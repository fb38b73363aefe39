"""kolla-ansible all-in-one inputs (reference lab C): globals.yml, the inventory, the
passwords file (secret markers only), and the host's cloud-init NoCloud seed content.

The host VM gets a second disk for the `cinder-volumes` LVM group and two NICs: the first
carries the management network and the internal VIP, the second is handed to Neutron as
the external interface with no address.
"""

from __future__ import annotations

from typing import Any

from generator.families import Pins, escape
from generator.families.yamlout import dump_one as _yaml
from generator.model import Environment, Node, OpenStack
from generator.tree import Tree, lines

CINDER_VG = "cinder-volumes"


def render(env: Environment, pins: Pins) -> Tree:
    stack = env.openstack
    if env.cluster.flavour != "kolla" or stack is None:
        return {}
    host = env.nodes_with_role("master")[0]
    # The host's name is written bare into the INI inventory: one word or nothing.
    escape.name(host.name, lambda: ("nodes", env.nodes.index(host), "name"),
                "an Ansible inventory")
    base = f"clusters/{env.cluster.name}"
    return {
        f"{base}/kolla/globals.yml": _yaml(globals_yml(env, stack, host)),
        f"{base}/kolla/inventory/all-in-one": inventory(host),
        f"{base}/kolla/passwords.yml": _yaml({p.name: p.marker() for p in stack.passwords}),
        f"{base}/cloud-init/{host.name}/user-data": _yaml(
            user_data(env, stack, host), header="#cloud-config"),
        f"{base}/cloud-init/{host.name}/meta-data": _yaml(
            {"instance-id": f"{env.name}-{host.name}", "local-hostname": host.name}),
        f"{base}/cloud-init/{host.name}/network-config": _yaml(network_config(env, host)),
    }


def globals_yml(env: Environment, stack: OpenStack, host: Node) -> dict[str, Any]:
    return {
        "kolla_base_distro": "debian",
        "openstack_release": stack.release,
        "kolla_internal_vip_address": str(stack.internal_vip),
        "network_interface": stack.network_interface,
        "neutron_external_interface": stack.external_interface,
        "enable_haproxy": "yes" if stack.enable_haproxy else "no",
        "enable_cinder": "yes",
        "enable_cinder_backend_lvm": "yes",
        "cinder_volume_group": CINDER_VG,
        "nova_compute_virt_type": "qemu",
    }


def inventory(host: Node) -> bytes:
    """The all-in-one inventory's top-level groups, all on the one host."""
    groups = ("control", "network", "compute", "monitoring", "storage")
    sections = [f"[{g}]\n{host.name} ansible_host={host.ip}\n" for g in groups]
    return lines(*sections, "[deployment]\nlocalhost ansible_connection=local")


def _cinder_device(stack: OpenStack, host: Node) -> str:
    index = next((i for i, d in enumerate(host.disks) if d.name == stack.cinder_disk), 1)
    return f"/dev/vd{chr(ord('a') + index)}"


def user_data(env: Environment, stack: OpenStack, host: Node) -> dict[str, Any]:
    device = _cinder_device(stack, host)
    return {
        "hostname": host.name,
        "fqdn": host.fqdn,
        "manage_etc_hosts": True,
        "package_update": True,
        "packages": ["git", "python3-dev", "python3-venv", "libffi-dev", "gcc",
                     "libssl-dev", "lvm2"],
        "ssh_authorized_keys": [k.marker() for k in env.cluster.ssh_keys],
        "runcmd": [
            ["sh", "-c", f"vgs {CINDER_VG} || (pvcreate {device} && vgcreate {CINDER_VG} "
             f"{device})"],
        ],
    }


def network_config(env: Environment, host: Node) -> dict[str, Any]:
    ethernets: dict[str, Any] = {}
    for index, nic in enumerate(host.nics):
        net = env.network(nic.network)
        entry: dict[str, Any] = {"match": {"macaddress": nic.mac}, "set-name": nic.interface}
        if index == 0:
            entry["addresses"] = [f"{nic.ip}/{net.cidr.prefixlen}"]
            if net.gateway:
                entry["routes"] = [{"to": "default", "via": str(net.gateway)}]
            entry["nameservers"] = {"addresses": [str(d) for d in net.dns]}
        else:
            entry["dhcp4"] = False  # handed to Neutron as the external interface
        ethernets[f"nic{index}"] = entry
    return {"version": 2, "ethernets": ethernets}
