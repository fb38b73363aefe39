"""kolla-ansible all-in-one inputs (reference lab C): globals.yml, the inventory, the
passwords file, the host's cloud-init NoCloud seed, and what converges them onto the
deploy host.

The host VM gets a second disk for the `cinder-volumes` LVM group and two NICs: the first
carries the management network and the internal VIP, the second is handed to Neutron as
the external interface, up but with no address.

Everything release-specific comes from kolla-ansible's own data for the pinned release,
shipped by the blueprint (`openstack.kollaAnsible`, see docs/requirements-kolla.md), never
from importing kolla at render time:
- `inventory/all-in-one` has every group of that release's all-in-one inventory: the
  groups that hold hosts there hold the all-in-one host here (`deployment` stays the local
  machine, as in kolla's file), every other group keeps its children;
- `passwords.yml` has every key of that release's passwords.yml: a secret marker for the
  keys the environment supplies (`openstack.passwords`), empty for the others, which
  `kolla-genpwd` fills on the deploy host at converge.

Converge: `hosts/<host>/kolla/manifest.json` publishes globals.yml, the inventory and the
passwords (as `passwords.gen.yml`) into /etc/kolla on the all-in-one host, mode 0600; the
files provider's `kolla` rule then merges them into passwords.yml with kolla's own tools
(values already there win, new keys are generated).
"""

from __future__ import annotations

from typing import Any

from generator.families import Pins, cloudinit, escape
from generator.families.yamlout import dump_one as _yaml
from generator.model import Environment, KollaAnsible, Node, OpenStack
from generator.tree import Tree, canonical_json, lines

CINDER_VG = "cinder-volumes"
# The account gen creates on the host through cloud-init, whatever the image's default
# user is called (debian, ubuntu, cloud-user, ...): kolla-ansible connects as it.
ANSIBLE_USER = "kolla"
KOLLA_DIR = "/etc/kolla"
GENERATED_PASSWORDS = "passwords.gen.yml"


def render(env: Environment, pins: Pins) -> Tree:
    stack = env.openstack
    if env.cluster.flavour != "kolla" or stack is None:
        return {}
    host = env.nodes_with_role("master")[0]
    # The host's name is written bare into the INI inventory: one word or nothing.
    escape.name(host.name, lambda: ("nodes", env.nodes.index(host), "name"),
                "an Ansible inventory")
    base = f"clusters/{env.cluster.name}"
    kolla = f"{base}/kolla"
    tree: Tree = {
        f"{kolla}/globals.yml": _yaml(globals_yml(env, stack, host)),
        f"{kolla}/inventory/all-in-one": inventory(stack, host),
        f"{kolla}/passwords.yml": _yaml(passwords(stack)),
        f"hosts/{host.name}/kolla/manifest.json": canonical_json(deploy_manifest(kolla)),
    }
    seed = {"meta-data": _yaml({"instance-id": f"{env.name}-{host.name}",
                                "local-hostname": host.name}),
            "network-config": _yaml(network_config(env, host)),
            "user-data": _yaml(user_data(env, stack, host), header="#cloud-config")}
    for name, content in seed.items():
        tree[f"{base}/cloud-init/{host.name}/{name}"] = content
    tree[f"{base}/cloud-init/{host.name}/seed.json"] = cloudinit.seed_description(
        env, host, seed)
    return tree


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


def release(stack: OpenStack) -> KollaAnsible:
    """The blueprint's kolla-ansible data; semantic checks guarantee it matches `release`."""
    if stack.kolla_ansible is None:
        raise ValueError("openstack.kollaAnsible is missing from the blueprint")
    return stack.kolla_ansible


def inventory(stack: OpenStack, host: Node) -> bytes:
    """The release's all-in-one inventory with the all-in-one host in place of localhost."""
    data = release(stack)
    entry = (f"{host.name} ansible_host={host.ip} ansible_user={ANSIBLE_USER} "
             "ansible_become=true")
    # The blueprint's release data is input too: group names become INI section headers.
    sections = [f"[{_group(group, ('hostGroups', i))}]\n"
                + ("localhost ansible_connection=local" if group == "deployment" else entry)
                + "\n" for i, group in enumerate(data.host_groups)]
    sections += [f"[{_group(group, ('children', group))}:children]\n"
                 + "".join(f"{_group(c, ('children', group, j))}\n"
                           for j, c in enumerate(children))
                 for group, children in data.children]
    version = escape.comment(data.version, (*KOLLA_ANSIBLE, "version"), INVENTORY)
    return lines(f"# kolla-ansible {version} all-in-one layout; rendered by gen.",
                 "", *sections)


INVENTORY = "an Ansible inventory"
KOLLA_ANSIBLE = ("openstack", "kollaAnsible")


def _group(name: str, where: tuple[str | int, ...]) -> str:
    return escape.name(name, (*KOLLA_ANSIBLE, *where), INVENTORY)


def passwords(stack: OpenStack) -> dict[str, Any]:
    """Every key of the release's passwords.yml: markers for what the environment supplies,
    empty (None) for what kolla-genpwd generates."""
    data = release(stack)
    supplied = {ref.name: ref.marker() for ref in stack.passwords}
    out: dict[str, Any] = {}
    for key in data.passwords:
        if key in supplied:
            out[key] = supplied[key]
        elif key in data.ssh_keys:
            out[key] = {"private_key": None, "public_key": None}
        else:
            out[key] = None
    return out


def deploy_manifest(kolla: str) -> dict[str, Any]:
    """What converge publishes into /etc/kolla on the all-in-one host."""
    files = {"globals.yml": "globals.yml", "inventory/all-in-one": "inventory/all-in-one",
             GENERATED_PASSWORDS: "passwords.yml"}
    return {"files": {target: {"source": "rendered", "path": f"{kolla}/{source}"}
                      for target, source in files.items()}}


def _cinder_device(stack: OpenStack, host: Node) -> str:
    index = next((i for i, d in enumerate(host.disks) if d.name == stack.cinder_disk), 1)
    return f"/dev/vd{chr(ord('a') + index)}"


def etc_hosts(host: Node) -> str:
    # kolla's RabbitMQ precheck needs the host name to resolve to the management address;
    # cloud-init's manage_etc_hosts would map it to 127.0.1.1 at every boot.
    return f"127.0.0.1 localhost\n{host.ip} {host.fqdn} {host.name}\n"


def user_data(env: Environment, stack: OpenStack, host: Node) -> dict[str, Any]:
    device = _cinder_device(stack, host)
    keys = [k.marker() for k in env.cluster.ssh_keys]
    return {
        "hostname": host.name,
        "fqdn": host.fqdn,
        "manage_etc_hosts": False,
        "users": ["default", {"name": ANSIBLE_USER, "shell": "/bin/bash",
                              "sudo": "ALL=(ALL) NOPASSWD:ALL",
                              "ssh_authorized_keys": keys}],
        "ssh_authorized_keys": keys,
        "write_files": [{"path": "/etc/hosts", "owner": "root:root", "permissions": "0644",
                         "content": etc_hosts(host)}],
        "package_update": True,
        "packages": ["git", "python3-dev", "python3-venv", "libffi-dev", "gcc",
                     "libssl-dev", "lvm2"],
        "runcmd": [
            ["sh", "-c", f"vgs {CINDER_VG} || (pvcreate {device} && vgcreate {CINDER_VG} "
             f"{device})"],
        ],
    }


def network_config(env: Environment, host: Node) -> dict[str, Any]:
    """Network config version 1, which every cloud-init renderer (ENI, networkd, netplan)
    turns into a working host: the management NIC static with its gateway (v2's
    `to: default` route breaks the ENI and networkd renderers), and the external NIC up
    with no address, for Neutron's bridge (`manual` + `control: auto`: v2 has no way to
    make the ENI renderer write `auto` for an interface without addresses)."""
    config: list[dict[str, Any]] = []
    for index, nic in enumerate(host.nics):
        net = env.network(nic.network)
        subnet: dict[str, Any] = {"type": "manual", "control": "auto"}
        if index == 0:
            subnet = {"type": "static", "control": "auto",
                      "address": f"{nic.ip}/{net.cidr.prefixlen}"}
            if net.gateway:
                subnet["gateway"] = str(net.gateway)
            if net.dns:
                subnet["dns_nameservers"] = [str(d) for d in net.dns]
        config.append({"type": "physical", "name": nic.interface, "mac_address": nic.mac,
                       "subnets": [subnet]})
    return {"version": 1, "config": config}
