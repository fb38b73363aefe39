"""OpenShift/OKD installer inputs: install-config.yaml and patches for its manifests dir.

`openshift-install create manifests` reads (and deletes) `install-config.yaml`, so converge
copies `clusters/<c>/openshift/` into a scratch work dir, fills the secret markers there,
runs `create manifests`, copies `manifests/*` over the generated ones, then runs
`create ignition-configs`; the role configs it writes are what every node's Ignition merges.

pullSecret and sshKey are secret references: the rendered file carries markers only.
"""

from __future__ import annotations

from typing import Any

from generator.errors import Problem
from generator.families import yamlout
from generator.families.common import COREOS_FLAVOURS, mirrored_repositories
from generator.model import Environment, Mirror, Node
from generator.tree import Tree

# OKD runs without Red Hat's registries; its documented stand-in pull secret is not secret.
OKD_FAKE_PULL_SECRET = '{"auths":{"fake":{"auth":"aWQ6cGFzcwo="}}}'
SCHEDULER_MANIFEST = "cluster-scheduler-02-config.yml"


def render(env: Environment, pins: Any) -> Tree:
    """`clusters/<c>/openshift/install-config.yaml` and `manifests/*` for OpenShift/OKD."""
    if env.cluster.flavour not in COREOS_FLAVOURS:
        return {}
    base = f"clusters/{env.cluster.name}/openshift"
    return {
        f"{base}/install-config.yaml": yaml_bytes(install_config(env)),
        f"{base}/manifests/{SCHEDULER_MANIFEST}": yaml_bytes(scheduler_manifest(env)),
    }


def check(env: Environment) -> list[Problem]:
    """OpenShift (unlike OKD) has no stand-in pull secret: the installer needs the real one."""
    if env.cluster.flavour == "openshift" and env.cluster.pull_secret is None:
        return [Problem("OpenShift needs a pull secret: cluster.pullSecret is not set",
                        env.where(("cluster",)), "add `pullSecret: {env: GEN_SECRET_PULL}` "
                        "(or {file: NAME} in the secrets directory) under cluster")]
    return []


def install_config(env: Environment) -> dict[str, Any]:
    """The installer's input for platform `none` (UPI): workers join later, so replicas 0."""
    cluster = env.cluster
    masters = env.nodes_with_role("master")
    return {
        "apiVersion": "v1",
        "baseDomain": cluster.base_domain,
        "metadata": {"name": cluster.name},
        "controlPlane": {"name": "master", "hyperthreading": "Enabled",
                         "replicas": len(masters)},
        "compute": [{"name": "worker", "hyperthreading": "Enabled", "replicas": 0}],
        "networking": {
            "clusterNetwork": [_cluster_network(c) for c in cluster.cluster_network],
            "serviceNetwork": [str(n) for n in cluster.service_network],
            "networkType": cluster.network_type,
            "machineNetwork": [{"cidr": cidr} for cidr in machine_networks(env)],
        },
        "platform": {"none": {}},
        "pullSecret": pull_secret(env),
        "sshKey": "\n".join(ref.marker() for ref in cluster.ssh_keys),
        **(mirror_settings(env, env.mirror) if env.mirror is not None else {}),
    }


# The release payload's repositories: the release image and the content it references.
RELEASE_REPOSITORIES = {
    "openshift": ("quay.io/openshift-release-dev/ocp-release",
                  "quay.io/openshift-release-dev/ocp-v4.0-art-dev"),
    "okd": ("quay.io/okd/scos-release", "quay.io/okd/scos-content"),
}


def mirror_settings(env: Environment, mirror: Mirror) -> dict[str, Any]:
    """`imageDigestSources` sending every pinned repository to the site's mirror (images are
    pulled by digest, so a mirror can serve them unchanged), and the mirror's CA."""
    sources = sorted({*RELEASE_REPOSITORIES[env.cluster.flavour], *mirrored_repositories(env)})
    settings: dict[str, Any] = {"imageDigestSources": [
        {"source": source, "mirrors": [mirror.repository(source)]} for source in sources]}
    if mirror.ca:
        settings["additionalTrustBundle"] = mirror.ca
    return settings


def _cluster_network(net: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"cidr": str(net.cidr)}
    if net.host_prefix is not None:
        entry["hostPrefix"] = net.host_prefix
    return entry


def machine_networks(env: Environment) -> list[str]:
    """CIDRs of the networks the cluster nodes are addressed on (their primary NIC)."""
    nodes: tuple[Node, ...] = env.nodes_with_role("bootstrap", "master", "worker")
    # Each network once, not once per node: finding and formatting it is ~5 µs.
    return sorted({str(env.network(name).cidr) for name in {n.nic.network for n in nodes}})


def pull_secret(env: Environment) -> str:
    """The pull secret's marker; OKD without one gets the documented fake secret."""
    ref = env.cluster.pull_secret
    if ref is not None:
        return ref.marker()
    if env.cluster.flavour == "okd":
        return OKD_FAKE_PULL_SECRET
    raise AssertionError("no pull secret: openshift.check refuses this before rendering")


def scheduler_manifest(env: Environment) -> dict[str, Any]:
    """Replaces the installer's Scheduler manifest; it is where mastersSchedulable lives."""
    return {
        "apiVersion": "config.openshift.io/v1",
        "kind": "Scheduler",
        "metadata": {"name": "cluster"},
        "spec": {"mastersSchedulable": env.cluster.masters_schedulable, "policy": {"name": ""}},
        "status": {},
    }


def yaml_bytes(data: dict[str, Any]) -> bytes:
    """Deterministic block YAML in the order built (gen's one YAML emitter)."""
    return yamlout.dump_one(data)
