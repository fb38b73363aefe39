"""Expand a validated document into the typed model: MACs, IPs, FQDNs and defaults.

Pure and deterministic: derived MACs hash the environment and node name, so they are stable
across machines and renders; free IPs are taken from the network's range in order, by the
one allocator `gen node add` uses too (generator.addresses).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from socket import inet_aton, inet_ntoa
from typing import Any

from generator import model as m
from generator.addresses import Allocator
from generator.errors import InvalidInput, Location, Problem
from generator.loader import Document
from generator.profiles import HostPaths, profile
from generator.units import parse_size

DEFAULT_INTERFACE = "ens3"


def derived_mac(environment: str, node: str, index: int) -> str:
    """A stable, locally administered-looking libvirt MAC (prefix 52:54:00)."""
    digest = hashlib.sha256(f"{environment}/{node}/{index}".encode()).digest()
    return "52:54:00:" + digest[:3].hex(":")


def ipv4(text: str) -> IPv4Address:
    """IPv4Address(text): an m.Address (which keeps `text` for the families to print),
    built from its integer when `text` is a canonical dotted quad (what the schema lets
    through): ipaddress's own parser checks each octet in Python, a tenth of expanding a
    10,000-node environment. inet_aton (C) also reads forms ipaddress refuses
    (`010.0.0.1`, `0x1.2.3.4`, `1.2`), so its address is taken only when it prints back
    as the text itself; anything else goes to ipaddress's parser, which accepts or
    refuses it exactly as before."""
    if type(text) is str:
        try:
            packed = inet_aton(text)
        except (OSError, ValueError):
            pass
        else:
            if inet_ntoa(packed) == text:
                return m.Address(int.from_bytes(packed), text)
    return IPv4Address(text)


def expand(doc: Document, env_name: str) -> m.Environment:
    data = doc.data
    cluster = _cluster(data["cluster"], data.get("secrets", {}))
    hypervisors = {h["name"]: h for h in data["hypervisors"]}
    allocator = _Addresses(data)
    nodes, problems = [], _mac_clashes(doc, env_name) + _env_name_problems(doc, env_name)
    macs = _Macs(data, env_name)
    for index, raw in enumerate(data["nodes"]):
        node, missing = _node(raw, macs, cluster, hypervisors, allocator)
        nodes.append(node)
        if missing:
            problems += [Problem(f"network '{net}' has no free address left in its range",
                                 doc.locate(("nodes", index, "nics", j)),
                                 "widen the range or set ip: explicitly")
                         for j, net in missing]
    if problems:
        raise InvalidInput(problems)
    node_tuple = tuple(nodes)
    return m.Environment(
        name=env_name,
        blueprint=data["blueprint"],
        cluster=cluster,
        networks=tuple(_network(n) for n in data["networks"]),
        hypervisors=tuple(_hypervisor(h) for h in data["hypervisors"]),
        nodes=node_tuple,
        services=_services(data.get("services", {}), node_tuple),
        kubernetes=_kubernetes(data.get("kubernetes", {}), data.get("artifacts", {})),
        os_artifacts=tuple(_os_artifact(k, v) for k, v in
                           sorted(data.get("artifacts", {}).get("os", {}).items())),
        images=tuple(sorted(data.get("artifacts", {}).get("images", {}).items())),
        secrets=tuple(_secret(k, v) for k, v in sorted(data.get("secrets", {}).items())),
        openstack=_openstack(data["openstack"]) if "openstack" in data else None,
        tools=tuple(m.ToolArtifact(name, raw["version"], raw["url"], raw.get("sha256"),
                                   (raw.get("checksums") or {}).get("file"))
                    for name, raw in sorted(data.get("artifacts", {}).get("tools", {}).items())),
        release=_release(data.get("artifacts", {}).get("release")),
        mirror=_mirror(data["mirror"], data.get("secrets", {})) if "mirror" in data else None,
        locate=doc.locate,
    )


def _release(raw: dict[str, Any] | None) -> m.Release | None:
    if raw is None:
        return None
    return m.Release(raw["version"], raw["url"], raw.get("file"), raw.get("image"))


def _mirror(raw: dict[str, Any], secrets: dict[str, Any]) -> m.Mirror:
    name = raw.get("credentials")
    # an undeclared name is reported by semantic.check_mirror; the model just leaves it out
    credentials = _secret(name, secrets[name]) if name in secrets else None
    return m.Mirror(raw["registry"], raw.get("ca"), raw.get("artifacts"), credentials,
                    raw.get("host"))


def _mac_clashes(doc: Document, env_name: str) -> list[Problem]:
    """An explicit MAC equal to another NIC's derived one would give both nodes one DHCP
    reservation and one PXE file (the semantic checks compare explicit MACs only: derived
    ones depend on the environment's name, known here)."""
    nodes = doc.data["nodes"]
    explicit = {nic["mac"].lower(): (i, j) for i, node in enumerate(nodes)
                for j, nic in enumerate(node["nics"]) if "mac" in nic}
    problems: list[Problem] = []
    if not explicit:  # nothing a derived MAC could clash with
        return problems
    for i, node in enumerate(nodes):
        for j, nic in enumerate(node["nics"]):
            if "mac" in nic:
                continue
            mac = derived_mac(env_name, node["name"], j)
            if mac in explicit:
                k, n = explicit[mac]
                problems.append(Problem(
                    f"MAC address '{mac}' is the derived MAC of nodes[{i}].nics[{j}] "
                    f"({node['name']})", doc.locate(("nodes", k, "nics", n, "mac")),
                    "two NICs sharing a MAC cannot both get their DHCP lease; choose another"))
    return problems


# The environment's directory name lands in comments and file headers of every config; it is
# not in any file, so the schema never sees it (families/escape.py refuses it at render).
_ENV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


def _env_name_problems(doc: Document, env_name: str) -> list[Problem]:
    if _ENV_NAME.fullmatch(env_name):
        return []
    env_file = doc.files[-1] if doc.files else ""  # merged: the blueprint first, env.yaml last
    return [Problem(f"the environment's directory name {env_name!r} is not a plain name",
                    Location(env_file), "rename the directory: at most 63 letters, digits and "
                    "._- , starting with a letter, digit or _")]


class _Addresses:
    """The Allocator, built when the first NIC without `ip:` asks for an address: building
    it parses every address of the document, which an environment that writes them all
    out (a large one, generated) never needs."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.allocator: Allocator | None = None

    def next(self, network: str) -> IPv4Address | None:
        if self.allocator is None:
            self.allocator = Allocator(self.data)
        return self.allocator.next(network)


class _Macs:
    """Derived MACs, each distinct from every other MAC of the environment: 24 hashed bits
    collide among a few thousand NICs, so a taken one is derived again with a counter."""

    def __init__(self, data: dict[str, Any], env_name: str) -> None:
        self.env_name = env_name
        self.used = {nic["mac"].lower() for node in data["nodes"] for nic in node["nics"]
                     if "mac" in nic}

    def derive(self, node: str, index: int) -> str:
        mac, attempt = derived_mac(self.env_name, node, index), 0
        while mac in self.used:
            attempt += 1
            mac = derived_mac(self.env_name, f"{node}#{attempt}", index)
        self.used.add(mac)
        return mac


def _openstack(raw: dict[str, Any]) -> m.OpenStack:
    return m.OpenStack(
        release=raw.get("release", "2024.1"), internal_vip=ipv4(raw["internalVip"]),
        enable_haproxy=raw.get("enableHaproxy", True),
        network_interface=raw.get("networkInterface", "ens3"),
        external_interface=raw.get("externalInterface", "ens4"),
        cinder_disk=raw.get("cinderDisk", "cinder"),
        passwords=tuple(_secret(k, v) for k, v in sorted(raw.get("passwords", {}).items())),
        kolla_ansible=_kolla_ansible(raw["kollaAnsible"]) if "kollaAnsible" in raw else None)


def _kolla_ansible(raw: dict[str, Any]) -> m.KollaAnsible:
    return m.KollaAnsible(
        version=raw["version"], openstack_release=raw["openstackRelease"],
        url=raw.get("url"), sha256=raw.get("sha256"),
        host_groups=tuple(raw["hostGroups"]),
        children=tuple((g, tuple(c)) for g, c in raw["children"].items()),
        passwords=tuple(raw["passwords"]), ssh_keys=tuple(raw.get("sshKeys", ())))


def _secret(name: str, raw: dict[str, str]) -> m.SecretRef:
    source = "env" if "env" in raw else "file"
    return m.SecretRef(name=name, source=source, ref=raw[source])


def _cluster(raw: dict[str, Any], secrets: dict[str, Any]) -> m.Cluster:
    flavour = raw["flavour"]
    return m.Cluster(
        flavour=flavour,
        name=raw["name"],
        base_domain=raw["baseDomain"],
        version=raw.get("version"),
        kubernetes_version=raw.get("kubernetesVersion"),
        network_type=raw.get("networkType", "flannel" if flavour == "kubeadm" else "OVNKubernetes"),
        cluster_network=tuple(m.ClusterNetwork(IPv4Network(c["cidr"]), c.get("hostPrefix"))
                              for c in raw["clusterNetwork"]),
        service_network=tuple(IPv4Network(c) for c in raw["serviceNetwork"]),
        masters_schedulable=raw.get("mastersSchedulable", False),
        pull_secret=_secret("pullSecret", raw["pullSecret"]) if "pullSecret" in raw else None,
        ssh_keys=tuple(_secret(f"sshAuthorizedKeys[{i}]", k)
                       for i, k in enumerate(raw.get("sshAuthorizedKeys", []))),
        bootstrap_complete=raw.get("bootstrapComplete", False),
    )


def _node(raw: dict[str, Any], macs: _Macs, cluster: m.Cluster,
          hypervisors: dict[str, Any], allocator: _Addresses,
          ) -> tuple[m.Node, list[tuple[int, str]]]:
    hv = hypervisors.get(raw.get("hypervisor", ""), {})
    pool = hv.get("pool", {}).get("name", "default")
    nics, missing = [], []
    for j, nic in enumerate(raw["nics"]):
        ip = ipv4(nic["ip"]) if "ip" in nic else allocator.next(nic["network"])
        if ip is None:
            missing.append((j, nic["network"]))
            ip = IPv4Address(0)
        nics.append(m.Nic(network=nic["network"],
                          mac=nic["mac"].lower() if "mac" in nic else macs.derive(raw["name"], j),
                          ip=ip, interface=nic.get("interface", DEFAULT_INTERFACE)))
    disks = tuple(m.Disk(name=d["name"], size_bytes=parse_size(d["size"]),
                         pool=d.get("pool", pool), format=d.get("format", "qcow2"),
                         backing_image=d.get("backingImage"), protect=d.get("protect", False),
                         volume=d.get("volume"))
                  for d in raw.get("disks", []))
    node = m.Node(
        name=raw["name"], role=raw["role"], hypervisor=raw.get("hypervisor", ""),
        vcpu=raw["vcpu"], memory_mib=parse_size(raw["memory"]) // 1024**2,
        disks=disks, nics=tuple(nics), fqdn=f"{raw['name']}.{cluster.domain}",
        firmware=raw.get("firmware", "bios"), boot=raw.get("boot", "pxe"),
        image=raw.get("image"), install_dev=raw.get("installDev"),
        protect=raw.get("protect", False), machine=raw.get("machine"), os=raw.get("os"))
    return node, missing


def _network(raw: dict[str, Any]) -> m.Network:
    libvirt = raw.get("libvirt")
    return m.Network(
        name=raw["name"], cidr=IPv4Network(raw["cidr"]),
        gateway=ipv4(raw["gateway"]) if "gateway" in raw else None,
        dns=tuple(ipv4(d) for d in raw.get("dns", [])),
        bridge=raw.get("bridge"),
        libvirt_mode=libvirt["mode"] if libvirt else None,
        libvirt_dhcp=bool(libvirt and libvirt.get("dhcp", False)),
        vlan=raw.get("vlan"), ntp=tuple(ipv4(t) for t in raw.get("ntp", [])))


def _hypervisor(raw: dict[str, Any]) -> m.Hypervisor:
    return m.Hypervisor(name=raw["name"], uri=raw["uri"],
                        domain_type=raw.get("domainType", "kvm"),
                        pool_name=raw["pool"]["name"], pool_path=raw["pool"]["path"],
                        bridge=raw.get("bridge"))


def service_host(services: dict[str, Any], section: dict[str, Any],
                 helpers: Iterable[str]) -> str | None:
    """Who runs a service: its own host, else services.host, else the first helper node."""
    host = section.get("host") or services.get("host") or next(iter(helpers), None)
    return str(host) if host is not None else None


def _services(raw: dict[str, Any], nodes: tuple[m.Node, ...]) -> m.Services:
    helpers = [n.name for n in nodes if n.role == "helper"]

    def host(section: dict[str, Any]) -> str:
        return service_host(raw, section, helpers) or ""

    def paths(section: dict[str, Any]) -> HostPaths:
        """The paths the service host's OS profile gives its configs."""
        node = by_name.get(host(section))
        return profile(node.os if node else None).paths

    by_name = {n.name: n for n in nodes}
    dns, dhcp, pxe, http, haproxy, nfs = (raw.get(k) for k in
                                          ("dns", "dhcp", "pxe", "http", "haproxy", "nfs"))
    return m.Services(
        dns=m.DnsService(
            provider=dns["provider"], host=host(dns),
            forwarders=tuple(ipv4(f) for f in dns.get("forwarders", [])),
            ttl=dns.get("ttl", 300), os=paths(dns),
            directory=dns.get("directory", paths(dns).bind_directory),
            records=tuple(m.DnsRecord(r["name"], r["type"], r["value"])
                          for r in dns.get("records", []))) if dns else None,
        dhcp=m.DhcpService(
            provider=dhcp["provider"], host=host(dhcp),
            network=dhcp.get("network") or (by_name[host(dhcp)].nic.network
                                            if host(dhcp) in by_name else ""),
            pool=(ipv4(dhcp["pool"]["start"]), ipv4(dhcp["pool"]["end"]))
            if "pool" in dhcp else None,
            deny_unknown_clients=dhcp.get("denyUnknownClients", True),
            lease_time=dhcp.get("leaseTime", 3600),
            bios_file=dhcp.get("bootFiles", {}).get("bios", "pxelinux.0"),
            uefi_file=dhcp.get("bootFiles", {}).get("uefi", "grubx64.efi"),
            os=paths(dhcp)) if dhcp else None,
        pxe=m.PxeService(
            ip_mode=pxe.get("ipMode", "static"), install_dev=pxe.get("installDev", "/dev/vda"),
            rootfs=pxe.get("rootfs", "live"), interface=pxe.get("interface", DEFAULT_INTERFACE),
            kernel_args=tuple(pxe.get("kernelArgs", []))) if pxe else None,
        http=m.HttpService(host=host(http), port=http.get("port", 8080), os=paths(http))
        if http else None,
        haproxy=m.HaproxyService(
            host=host(haproxy), stats_port=haproxy.get("statsPort", 9000),
            balance=haproxy.get("balance", "roundrobin"),
            ingress_http_port=haproxy.get("ingressNodePorts", {}).get("http", 80),
            ingress_https_port=haproxy.get("ingressNodePorts", {}).get("https", 443),
            address=ipv4(haproxy["address"]) if "address" in haproxy else None,
        ) if haproxy else None,
        nfs=m.NfsService(host=host(nfs), exports=tuple(
            m.NfsExport(e["path"], tuple(m.NfsClient(c["host"], tuple(c.get("options", [])))
                                         for c in e["clients"]),
                        owner=e.get("owner", "root"), group=e.get("group", "root"),
                        mode=e.get("mode", "0755").rjust(4, "0"))
            for e in nfs.get("exports", []))) if nfs else None,
    )


def _kubernetes(raw: dict[str, Any], artifacts: dict[str, Any]) -> m.Kubernetes:
    cni, ingress, storage = raw.get("cni", {}), raw.get("ingress", {}), raw.get("storage", {})
    nfs, registry = storage.get("nfs"), raw.get("registry", {})
    ports = ingress.get("nodePorts", {})
    manifest = cni.get("manifest")
    return m.Kubernetes(
        cni=cni.get("name"),
        cni_manifest=m.ManifestRef(f"cni/{cni['name']}", manifest["url"], manifest.get("sha256"))
        if manifest else None,
        ingress=ingress.get("enabled", False),
        ingress_http_nodeport=ports.get("http", 30080),
        ingress_https_nodeport=ports.get("https", 30443),
        ingress_image=ingress.get("image"),
        nfs=m.NfsStorage(server=nfs["server"], path=nfs["path"],
                         provisioner=nfs.get("provisioner", "static"),
                         storage_class=nfs.get("storageClass", "nfs"),
                         image=nfs.get("image", "nfs-subdir-external-provisioner"))
        if nfs else None,
        registry=m.Registry(host=registry["host"], size_bytes=parse_size(registry["size"]),
                            nfs_path=registry["nfsPath"], image=registry.get("image", "registry"))
        if registry.get("enabled") else None,
        apps=tuple(m.App(name=a["name"], image=a["image"], replicas=a.get("replicas", 1),
                         port=a["port"], host=a.get("host"),
                         size_bytes=parse_size(a["size"]) if "size" in a else None,
                         nfs_path=a.get("nfsPath"), mount_path=a.get("mountPath"))
                   for a in raw.get("apps", [])),
        engine=raw.get("engine", "gen"),
        gitops=_gitops(raw["gitops"], raw.get("engine", "gen")) if "gitops" in raw else None,
    )


# The namespace each engine installs itself into by default (its own install manifests').
ENGINE_NAMESPACES = {"argocd": "argocd", "flux": "flux-system"}


def _gitops(raw: dict[str, Any], engine: str) -> m.GitOps:
    return m.GitOps(url=raw["url"], branch=raw.get("branch", "main"), path=raw.get("path", ""),
                    namespace=raw.get("namespace", ENGINE_NAMESPACES.get(engine, "")),
                    prune=raw.get("prune", True), self_heal=raw.get("selfHeal", True),
                    secret_ref=raw.get("secretRef"))


def artifact_kind(raw: dict[str, Any]) -> str:
    """What an OS artifact is: `kind`, else its stream artifact (even when a direct url
    replaces the stream as the source), else a disk image."""
    return str(raw.get("kind") or raw.get("stream", {}).get("artifact") or "image")


def _os_artifact(name: str, raw: dict[str, Any]) -> m.OsArtifact:
    # A direct `url` (a mirror, a local artifact server) replaces the stream, also one the
    # entry inherits from the blueprint: merging keeps both keys, and the url is meant.
    stream = {} if raw.get("url") else raw.get("stream", {})
    kind = artifact_kind(raw)
    return m.OsArtifact(name=name, kind=kind, url=raw.get("url"), sha256=raw.get("sha256"),
                        stream_url=stream.get("url"), stream_artifact=stream.get("artifact"),
                        arch=stream.get("arch", "x86_64"), platform=stream.get("platform", "metal"),
                        format=stream.get("format"), stream_file=stream.get("file"),
                        checksums_file=(raw.get("checksums") or {}).get("file"))
