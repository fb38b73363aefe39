"""cloud-init NoCloud seeds for the image-booted nodes of a kubeadm cluster (lab B), and for
any node booted from a cloud image (`image:`), such as lab A's helper.

Per node, `clusters/<c>/cloud-init/<node>/` holds `user-data` (#cloud-config), `meta-data`
and `network-config` (version 2), plus `seed.json`: a deterministic description of the
seed ISO (volume name, label `cidata`, files and their sha256) that the reconciler builds
at converge, after filling in secret markers, and uploads as the volume the libvirt domain
attaches as a cdrom.

user-data does lab B's node preparation (labs.md): /etc/hosts for every node, SELinux
permissive and firewalld off where present, swap off (also in fstab), the bridge sysctls,
containerd with systemd cgroups, pinned kubelet/kubeadm/kubectl from pkgs.k8s.io and
kubelet enabled. Nodes with other roles (storage, lb) get the same base (hosts, keys,
network) and the packages of the services they run. `kubeadm init`/`join` is not run here:
its token exists only at converge (see kubeadm.py). A node that runs boot services also gets
those services' packages (SERVICE_PACKAGES, by the image's package family) and root's SSH
keys, since converge's files provider logs in as root to install the services' files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from generator.families import Pins, escape
from generator.families.common import load_balancer_ip, mirrored_repositories, service_hosts
from generator.families.kubeadm import kubernetes_version, minor
from generator.families.yamlout import dump, dump_one
from generator.model import Environment, Mirror, Node
from generator.tree import Tree, canonical_json, lines

KUBERNETES_ROLES = ("master", "worker")
SEED_LABEL = "cidata"
SEED_FILES = ("meta-data", "network-config", "user-data")
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
RPM_IMAGES = ("centos", "rocky", "alma", "rhel", "fedora")


SEEDED_FLAVOURS = ("kubeadm", "kolla")  # kolla.py renders its own host's seed content


# Packages a service host needs per service (and provider), by the package family of its
# image: what the cloud image lacks to run what the files provider installs.
SERVICE_PACKAGES: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("dns", "bind"): {"rpm": ("bind", "bind-utils"), "deb": ("bind9", "bind9-utils")},
    ("dns", "dnsmasq"): {"rpm": ("dnsmasq",), "deb": ("dnsmasq",)},
    ("dhcp", "isc"): {"rpm": ("dhcp-server",), "deb": ("isc-dhcp-server",)},
    ("dhcp", "kea"): {"rpm": ("kea",), "deb": ("kea-dhcp4-server",)},
    ("dhcp", "dnsmasq"): {"rpm": ("dnsmasq",), "deb": ("dnsmasq",)},
    # The DHCP host also serves TFTP: the server, and the PXE loaders it hands out.
    ("tftp", ""): {"rpm": ("tftp-server", "syslinux-tftpboot", "grub2-efi-x64", "shim-x64"),
                   "deb": ("tftpd-hpa", "pxelinux", "syslinux-common",
                           "grub-efi-amd64-signed", "shim-signed")},
    ("http", ""): {"rpm": ("httpd",), "deb": ("apache2",)},
    ("nfs", ""): {"rpm": ("nfs-utils",), "deb": ("nfs-kernel-server",)},
    ("haproxy", ""): {"rpm": ("haproxy",), "deb": ("haproxy",)},
}


def needs_seed(env: Environment, node: Node) -> bool:
    """Image-booted nodes of a kubeadm or kolla cluster, and every node booted from a cloud
    image, configure themselves from a NoCloud seed."""
    return node.boot == "image" and (env.cluster.flavour in SEEDED_FLAVOURS
                                     or node.image is not None)


def seed_volume(node: Node) -> str:
    """The seed ISO's volume name in the node's storage pool."""
    return f"{node.name}-seed.iso"


def render(env: Environment, pins: Pins) -> Tree:
    """user-data, meta-data, network-config and seed.json for every seeded node."""
    nodes = [n for n in env.nodes if needs_seed(env, n)]
    if not nodes or env.cluster.flavour == "kolla":
        return {}
    shared = _Shared(env)
    tree: Tree = {}
    for node in nodes:
        base = f"clusters/{env.cluster.name}/cloud-init/{node.name}"
        files = {"meta-data": meta_data(env, node), "network-config": network_config(env, node),
                 "user-data": shared.user_data(node)}
        for name, content in files.items():
            tree[f"{base}/{name}"] = content
        tree[f"{base}/seed.json"] = seed_description(env, node, files)
    return tree


def meta_data(env: Environment, node: Node) -> bytes:
    # A stable instance-id: changed user-data takes effect when the node is re-provisioned
    # (new root volume), not on a reboot, so a converge never half-reconfigures a node.
    return dump_one({"instance-id": f"iid-{env.name}-{node.name}",
                     "local-hostname": node.name})


def network_config(env: Environment, node: Node) -> bytes:
    """Netplan-style v2: static address per NIC, matched by MAC; one default route."""
    ethernets: dict[str, Any] = {}
    for index, nic in enumerate(node.nics):
        net = env.network(nic.network)
        entry: dict[str, Any] = {"match": {"macaddress": nic.mac}, "set-name": nic.interface,
                                 "addresses": [f"{nic.ip}/{net.cidr.prefixlen}"]}
        if index == 0 and net.gateway is not None:
            entry["routes"] = [{"to": "0.0.0.0/0", "via": str(net.gateway)}]
        resolvers = _resolvers(env, node, net.dns)
        if resolvers:
            entry["nameservers"] = {"addresses": [str(d) for d in resolvers],
                                    "search": [env.cluster.domain]}
        ethernets[nic.interface] = entry
    return dump_one({"version": 2, "ethernets": ethernets})


def _resolvers(env: Environment, node: Node, dns: tuple[Any, ...]) -> tuple[Any, ...]:
    """The network's DNS servers; on the node that IS the DNS server, its forwarders: at
    first boot its own named is not configured yet, and cloud-init must reach the package
    mirrors."""
    service = env.services.dns
    if service is not None and service.host == node.name and service.forwarders:
        mine = {nic.ip for nic in node.nics}
        if set(dns) <= mine:
            return service.forwarders
    return dns


def seed_description(env: Environment, node: Node, files: dict[str, bytes]) -> bytes:
    """What the reconciler builds: an ISO 9660 volume labelled `cidata` with these files."""
    pool = next((h.pool_name for h in env.hypervisors if h.name == node.hypervisor), "default")
    return canonical_json({
        "volume": seed_volume(node), "pool": pool, "hypervisor": node.hypervisor,
        "label": SEED_LABEL, "format": "iso9660",
        "build": ["genisoimage", "-output", seed_volume(node), "-volid", SEED_LABEL,
                  "-joliet", "-rock", *SEED_FILES],
        "files": {name: {"sha256": hashlib.sha256(files[name]).hexdigest(),
                         "size": len(files[name])} for name in SEED_FILES},
        "secrets": [ref.name for ref in env.cluster.ssh_keys],
    })


class _Shared:
    """What nodes' user-data shares, emitted once per render: 1,000 nodes share one
    /etc/hosts, so the shared top-level keys are dumped once per kind of node and joined
    after each node's own keys (top-level mappings concatenate into one mapping)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.hosts = etc_hosts(env)
        self.hosts_services = service_hosts(env)
        self.parts: dict[tuple[bool, bool], str] = {}

    def user_data(self, node: Node) -> bytes:
        env = self.env
        rpm = any(word in (node.image or "").lower() for word in RPM_IMAGES)
        kube = node.role in KUBERNETES_ROLES
        config: dict[str, Any] = {
            "hostname": node.name, "fqdn": node.fqdn, "prefer_fqdn_over_hostname": False,
            # gen writes /etc/hosts itself; cloud-init must not regenerate it on boot.
            "manage_etc_hosts": False,
            "ssh_authorized_keys": [ref.marker() for ref in env.cluster.ssh_keys],
            "package_update": True,
            "packages": _packages(env, node, kube, rpm),
        }
        if node.name in self.hosts_services:
            config["disable_root"] = False  # the files provider logs in as root
        own = dump_one(config, header="#cloud-config")
        if (kube, rpm) not in self.parts:
            shared: dict[str, Any] = {"write_files": [_file("/etc/hosts", self.hosts)]}
            if kube:
                shared["write_files"] += kube_files(env, rpm)
                shared["runcmd"] = kube_commands(env, rpm)
            self.parts[kube, rpm] = dump(shared)
        return own + self.parts[kube, rpm].encode()


def etc_hosts(env: Environment) -> str:
    """localhost, the nodes by FQDN and short name, and the ingress hosts at the LB.

    Every node when the environment runs no DNS service (lab B); with one, names resolve
    through it and only the node's own cluster's infrastructure is listed, which keeps the
    seeds of a large environment linear in size instead of quadratic."""
    rows = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    services = env.services
    if services.dns is None:
        listed = env.nodes
    else:
        infra = {s.host for s in (services.haproxy, services.nfs, services.http) if s}
        listed = tuple(n for n in env.nodes if n.role == "master" or n.name in infra)
    # hosts(5) is whitespace-separated, one address per line: every name must be one word.
    index = {n.name: i for i, n in enumerate(env.nodes)}
    rows += [f"{n.ip} {escape.fqdn(n.fqdn, n.name, ('nodes', index[n.name], 'name'), HOSTS)} "
             f"{n.name}" for n in listed]
    lb = load_balancer_ip(env) if services.haproxy is not None else None
    k8s = env.kubernetes
    ingress_hosts = ([_host(k8s.registry.host, ("kubernetes", "registry", "host"))]
                     if k8s.registry else []) + [
        _host(a.host, ("kubernetes", "apps", i, "host")) for i, a in enumerate(k8s.apps) if a.host]
    if lb is not None and ingress_hosts:
        rows.append(f"{lb} {' '.join(ingress_hosts)}")
    return "\n".join(rows) + "\n"


HOSTS = "/etc/hosts"


def _host(name: str, field: escape.FieldPath) -> str:
    return escape.domain(name, field, HOSTS)


def _file(path: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"path": path, "owner": "root:root", "permissions": "0644", "content": content,
            **extra}


def _packages(env: Environment, node: Node, kube: bool, rpm: bool) -> list[str]:
    packages = ["curl", "ca-certificates"]
    if kube:
        packages += ["containerd", "conntrack", "socat"] + ([] if rpm else ["gpg"])
        if env.kubernetes.nfs is not None:
            packages.append("nfs-utils" if rpm else "nfs-common")  # kubelet mounts NFS PVs
    family = "rpm" if rpm else "deb"
    for key in _services_on(env, node):
        packages += [p for p in SERVICE_PACKAGES[key][family] if p not in packages]
    return packages


def _services_on(env: Environment, node: Node) -> list[tuple[str, str]]:
    """(service, provider) of every boot service this node runs, in SERVICE_PACKAGES."""
    services = env.services
    on = [("dns", services.dns.provider) if services.dns and services.dns.host == node.name
          else None,
          ("dhcp", services.dhcp.provider) if services.dhcp and services.dhcp.host == node.name
          else None,
          ("tftp", "") if services.dhcp and services.pxe and services.dhcp.host == node.name
          else None,
          ("http", "") if services.http and services.http.host == node.name else None,
          ("nfs", "") if services.nfs and services.nfs.host == node.name else None,
          ("haproxy", "") if services.haproxy and services.haproxy.host == node.name
          else None]
    return [key for key in on if key is not None and key in SERVICE_PACKAGES]


def package_repo(env: Environment, rpm: bool) -> str:
    """pkgs.k8s.io serves one repository per minor version."""
    kind = "rpm" if rpm else "deb"
    return f"https://pkgs.k8s.io/core:/stable:/v1.{minor(env)}/{kind}/"


def kube_files(env: Environment, rpm: bool) -> list[dict[str, Any]]:
    files = [
        _file("/etc/modules-load.d/kubernetes.conf", "overlay\nbr_netfilter\n"),
        _file("/etc/sysctl.d/99-kubernetes.conf", sysctl_conf()),
        # Deferred: written after the packages are installed, so the package's own default
        # never replaces it; containerd is restarted by runcmd.
        _file("/etc/containerd/config.toml", containerd_config(env), defer=True),
    ]
    if env.kubernetes.registry is not None:
        host = _host(env.kubernetes.registry.host, ("kubernetes", "registry", "host"))
        files.append(_file(f"/etc/containerd/certs.d/{host}/hosts.toml",
                           registry_hosts_toml(host), defer=True))
    if env.mirror is not None:
        files += mirror_files(env, env.mirror)
    if rpm:
        files.append(_file("/etc/yum.repos.d/kubernetes.repo", yum_repo(env)))
    else:
        # Deferred too: its keyring is fetched by runcmd, and an unsigned source written
        # earlier would fail cloud-init's own `apt-get update` before the packages step.
        files.append(_file("/etc/apt/sources.list.d/kubernetes.list", lines(
            f"deb [signed-by={KEYRING}] {package_repo(env, rpm)} /").decode(), defer=True))
    return files


def sysctl_conf() -> str:
    return lines("net.bridge.bridge-nf-call-iptables = 1",
                 "net.bridge.bridge-nf-call-ip6tables = 1",
                 "net.ipv4.ip_forward = 1").decode()


def pause_image(env: Environment) -> str:
    """The sandbox image kubeadm of this minor expects (it warns on a mismatch)."""
    return "registry.k8s.io/pause:3.9" if minor(env) <= 30 else "registry.k8s.io/pause:3.10"


def containerd_config(env: Environment) -> str:
    """containerd 1.6/1.7 (config version 2): runc with systemd cgroups, registry hosts dir."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return lines(
        "version = 2", "",
        f"[{cri}]", f"  sandbox_image = {json.dumps(pause_image(env))}", "",
        f"[{cri}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"', "",
        f"[{cri}.containerd.runtimes.runc.options]", "  SystemdCgroup = true", "",
        f"[{cri}.registry]", '  config_path = "/etc/containerd/certs.d"').decode()


def registry_hosts_toml(host: str) -> str:
    # Lab B's registry is plain HTTP behind the ingress (the seed's insecure-registries;
    # test setups only: real ones terminate TLS).
    url = json.dumps(f"http://{host}")
    return lines(f"server = {url}", "", f"[host.{url}]",
                 '  capabilities = ["pull", "resolve", "push"]', "  skip_verify = true").decode()


# kubeadm pulls the control-plane images and the pause image from here.
KUBE_UPSTREAM = "registry.k8s.io"
MIRROR_CA = "/etc/containerd/certs.d/mirror-ca.crt"


def mirror_files(env: Environment, mirror: Mirror) -> list[dict[str, Any]]:
    """One containerd hosts.toml per upstream registry, pointing at the site's mirror."""
    hosts = {KUBE_UPSTREAM} | {_registry_dir(r.split("/", 1)[0])
                               for r in mirrored_repositories(env)}
    files = [_file(MIRROR_CA, mirror.ca, defer=True)] if mirror.ca else []
    files += [_file(f"/etc/containerd/certs.d/{host}/hosts.toml",
                    mirror_hosts_toml(host, mirror), defer=True) for host in sorted(hosts)]
    return files


def _registry_dir(registry: str) -> str:
    """`host[:port]` as a directory name under certs.d (never `..` or a path)."""
    host, _, port = registry.partition(":")
    _host(host, ("artifacts", "images"))
    if port and not port.isdigit():
        _host(registry, ("artifacts", "images"))  # names the bad character
    return registry


def mirror_hosts_toml(upstream: str, mirror: Mirror) -> str:
    """The mirror first, by its full API path (`override_path`: the mirror keeps each
    upstream under its own prefix); the upstream itself stays the fallback `server`."""
    server = json.dumps("https://registry-1.docker.io" if upstream == "docker.io"
                        else f"https://{upstream}")
    url = json.dumps(f"https://{mirror.registry}/v2/{upstream}")
    ca = [f"  ca = {json.dumps(MIRROR_CA)}"] if mirror.ca else []
    return lines(f"server = {server}", "", f"[host.{url}]", '  capabilities = ["pull", "resolve"]',
                 "  override_path = true", *ca).decode()


def yum_repo(env: Environment) -> str:
    repo = package_repo(env, rpm=True)
    return lines("[kubernetes]", "name=Kubernetes", f"baseurl={repo}", "enabled=1",
                 "gpgcheck=1", f"gpgkey={repo}repodata/repomd.xml.key",
                 "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni").decode()


def kube_commands(env: Environment, rpm: bool) -> list[str]:
    """Lab B's preparation, in order; every step is idempotent so a rerun is harmless."""
    version = kubernetes_version(env).lstrip("v")
    tools = ("kubelet", "kubeadm", "kubectl")
    commands = [
        "if command -v setenforce >/dev/null 2>&1; then setenforce 0 || true; fi",
        "if [ -f /etc/selinux/config ]; then"
        " sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config; fi",
        "if systemctl list-unit-files firewalld.service | grep -q firewalld; then"
        " systemctl disable --now firewalld; fi",
        "swapoff -a",
        r"sed -i -E '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/#/' /etc/fstab",
        "modprobe overlay", "modprobe br_netfilter", "sysctl --system",
        "systemctl restart containerd", "systemctl enable containerd",
    ]
    if rpm:
        commands.append("dnf install -y --disableexcludes=kubernetes "
                        + " ".join(f"{t}-{version}" for t in tools))
    else:
        commands += [
            "mkdir -p -m 755 /etc/apt/keyrings",
            f"curl -fsSL {package_repo(env, rpm)}Release.key | gpg --dearmor --yes -o {KEYRING}",
            "apt-get update",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y "
            + " ".join(f"{t}={version}-1.1" for t in tools),
            "apt-mark hold " + " ".join(tools),
        ]
    commands.append("systemctl enable --now kubelet")
    return commands
