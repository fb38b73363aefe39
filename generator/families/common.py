"""Facts several families share: the helper's addresses and the URLs nodes boot from.

Kept here so that DHCP, PXE, HTTP and Ignition can never disagree on a URL.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from generator.families import Pins, escape
from generator.model import Environment, Node, OsArtifact

COREOS_FLAVOURS = ("openshift", "okd")  # clusters whose nodes install CoreOS from Ignition


def retired(env: Environment, node: Node) -> bool:
    """The bootstrap node of a cluster that has bootstrapped (cluster.bootstrapComplete): the
    load balancer, DNS and DHCP stop naming it, whether or not it is still declared."""
    return env.cluster.bootstrap_complete and node.role == "bootstrap"


def service_ip(env: Environment, host: str) -> IPv4Address:
    """The primary address of the node that runs a service."""
    return env.node(host).ip


def dns_server(env: Environment) -> IPv4Address | None:
    """The cluster's own DNS (it knows api-int and etcd-N): the DNS host's address, if any."""
    dns = env.services.dns
    return service_ip(env, dns.host) if dns is not None else None


def load_balancer_ip(env: Environment) -> IPv4Address | None:
    """Where api, api-int and *.apps point: the HAProxy host, else the services host."""
    services = env.services
    if services.haproxy is not None:
        return services.haproxy.address or service_ip(env, services.haproxy.host)
    if services.http is not None:
        return service_ip(env, services.http.host)
    return None


def http_base(env: Environment) -> str:
    """`http://<helper ip>:<port>`: the helper web server nodes fetch from."""
    global _HTTP_BASE
    if _HTTP_BASE is not None and _HTTP_BASE[0] is env:
        return _HTTP_BASE[1]
    http = env.services.http
    if http is None:
        raise ValueError("no HTTP service declared")
    port = escape.number(http.port, ("services", "http", "port"), "a URL")
    base = f"http://{service_ip(env, http.host)}:{port}"
    _HTTP_BASE = (env, base)
    return base


# The last (immutable) environment's base URL: asked for several times per node (Ignition,
# PXE), ~4% of a large render; one slot, holding the environment so its identity stays.
_HTTP_BASE: tuple[Environment, str] | None = None


def ignition_url(env: Environment, node: Node) -> str:
    """The node's own Ignition file, which merges its role's config."""
    return f"{http_base(env)}/ignition/{node.name}.ign"


def role_ignition_url(env: Environment, role: str) -> str:
    """The role config `openshift-install create ignition-configs` produced.

    Under `roles/`, apart from the per-node files: lab A's bootstrap node is named
    `bootstrap`, and its own `bootstrap.ign` must not be (nor merge) the role's.
    """
    return f"{http_base(env)}/ignition/roles/{role}.ign"


def install_url(env: Environment, artifact: OsArtifact) -> str:
    """Artifacts are published under their stable name; the lock pins their content."""
    return f"{http_base(env)}/install/{artifact.name}"


def artifact_source(artifact: OsArtifact, pins: Pins) -> dict[str, Any]:
    """A manifest entry converge fetches an OS artifact by: the lock's url and sha256 when
    it pins the artifact, else the environment's (unset fields left out)."""
    url, sha256 = pins.os.get(artifact.name, (artifact.url, artifact.sha256))
    entry = {"source": "os-artifact", "artifact": artifact.name, "url": url, "sha256": sha256}
    return {k: v for k, v in entry.items() if v is not None}


def service_hosts(env: Environment) -> set[str]:
    """The nodes that run boot services (the helper, lab B's storage node): converge brings
    their VMs up before it installs the services' files on them."""
    services = env.services
    return {s.host for s in (services.dns, services.dhcp, services.http, services.haproxy,
                             services.nfs) if s is not None}


def node_images(env: Environment) -> set[str]:
    """Artifacts that are VM base images (a node's `image:`, a disk's `backingImage`):
    converge uploads them into the pool; nothing serves them over HTTP."""
    return {n.image for n in env.nodes if n.image} | {
        d.backing_image for n in env.nodes for d in n.disks if d.backing_image}


def metal_image(env: Environment) -> OsArtifact | None:
    """The raw metal image old installers write: a `disk` artifact, else an `image` one
    that is no VM's base image."""
    bases = node_images(env)
    return os_artifact(env, "disk") or next(
        (a for a in env.os_artifacts if a.kind == "image" and a.name not in bases), None)


def os_artifact(env: Environment, kind: str) -> OsArtifact | None:
    """The first OS artifact of a kind (kernel, initramfs, rootfs, disk, image)."""
    return next((a for a in env.os_artifacts if a.kind == kind), None)


def mirrored_repositories(env: Environment) -> list[str]:
    """`host/repository` of every image the environment names or its workloads run (gen's
    add-on defaults too): what its mirror must serve."""
    from generator.families.kubernetes import workload_images
    from generator.lock.resolve import parse_image

    named = {image for _, image in env.images} | {used.ref for used in workload_images(env)}
    return sorted({f"{ref.registry}/{ref.repository}" for ref in map(parse_image, named)})
