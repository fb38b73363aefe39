"""kubeadm configuration for a kubeadm cluster (reference lab B).

`clusters/<c>/kubeadm/init.yaml` holds InitConfiguration + ClusterConfiguration +
KubeletConfiguration for the first control plane; `join-<node>.yaml` one JoinConfiguration
per joining node (further control planes join with a `controlPlane` section). The bootstrap
token, the CA certificate hash and the certificate key only exist once the first control
plane is up, so the files carry secret markers for them; the reconciler fills them in on the
target at converge, never in the rendered repo.

The kubeadm API version follows the pinned Kubernetes version: v1beta3 up to 1.30, v1beta4
from 1.31 (where extra arguments became name/value lists).
"""

from __future__ import annotations

import re
from typing import Any

from generator.families import Pins, escape
from generator.families.common import load_balancer_ip
from generator.families.yamlout import dump_all
from generator.model import Environment, Node, SecretRef
from generator.tree import Tree

API_PORT = 6443
CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
DEFAULT_VERSION = "v1.30.14"

# Converge-time secrets: produced by `kubeadm init` on the first control plane, read back by
# the reconciler and substituted on the joining node. "converge" marks them as generated.
TOKEN = SecretRef("kubeadm-token", "converge", "kubeadm token create")
CA_CERT_HASH = SecretRef("kubeadm-ca-cert-hash", "converge", "sha256 of the cluster CA key")
CERTIFICATE_KEY = SecretRef("kubeadm-certificate-key", "converge", "kubeadm certs certificate-key")


def render(env: Environment, pins: Pins) -> Tree:
    """init.yaml for the first control plane and join-<node>.yaml for every other node."""
    if env.cluster.flavour != "kubeadm":
        return {}
    masters = env.nodes_with_role("master")
    if not masters:
        return {}
    base = f"clusters/{env.cluster.name}/kubeadm"
    tree: Tree = {f"{base}/init.yaml": dump_all(
        [init_configuration(env, masters[0]), cluster_configuration(env),
         kubelet_configuration()], header=f"kubeadm init --config on {_comment(env, masters[0])}")}
    for node in joining_nodes(env):
        tree[f"{base}/join-{node.name}.yaml"] = dump_all(
            [join_configuration(env, node)],
            header=f"kubeadm join --config on {_comment(env, node)}")
    return tree


def _comment(env: Environment, node: Node) -> str:
    return escape.comment(node.name, lambda: ("nodes", env.nodes.index(node), "name"),
                          "a YAML comment")


def kubernetes_version(env: Environment) -> str:
    """The pinned version as `vMAJOR.MINOR.PATCH`."""
    version = env.cluster.kubernetes_version or DEFAULT_VERSION
    if VERSION.fullmatch(version) is None:
        # It reaches shell commands and package names (cloud-init), so only a version will do.
        escape.line(version, ("cluster", "kubernetesVersion"), "a shell command")
        raise escape.UnsafeValue(("cluster", "kubernetesVersion"), f"'{version}' is not a "
                                 "Kubernetes version", "write MAJOR.MINOR.PATCH, e.g. 1.30.14")
    return version if version.startswith("v") else f"v{version}"


VERSION = re.compile(r"v?1\.[0-9]{1,3}\.[0-9]{1,3}")


def minor(env: Environment) -> int:
    return int(kubernetes_version(env).split(".")[1])


def api_version(env: Environment) -> str:
    """kubeadm.k8s.io/v1beta4 exists from Kubernetes 1.31; 1.30 and older read v1beta3."""
    return "kubeadm.k8s.io/v1beta4" if minor(env) >= 31 else "kubeadm.k8s.io/v1beta3"


def control_plane_endpoint(env: Environment) -> str:
    """Where `kubeadm init` and every join reach the API.

    One control plane: that node itself, as lab B's field notes did. `kubeadm init` then
    depends on no other host (the HAProxy host may come up later or not at all), and the
    load balancer still serves clients (its address is in the certificate, see
    `api_cert_sans`). Several control planes: the load balancer, the only endpoint that
    survives one of them going down; it must be converged and passing its /readyz checks
    before the first `kubeadm init` (docs/requirements-kubeadm.md).
    """
    masters = env.nodes_with_role("master")
    lb = load_balancer_ip(env) if env.services.haproxy is not None else None
    if lb is None or len(masters) == 1:
        return f"{masters[0].ip}:{API_PORT}"
    return f"{lb}:{API_PORT}"


def api_cert_sans(env: Environment) -> list[str]:
    """The load balancer's address, when clients reach the API through it."""
    lb = load_balancer_ip(env) if env.services.haproxy is not None else None
    return [str(lb)] if lb is not None else []


def joining_nodes(env: Environment) -> tuple[Node, ...]:
    """Every control plane after the first, then the workers, in declaration order."""
    return env.nodes_with_role("master")[1:] + env.nodes_with_role("worker")


def _args(env: Environment, args: dict[str, str]) -> Any:
    """Extra arguments: a map in v1beta3, a list of name/value pairs in v1beta4."""
    if minor(env) >= 31:
        return [{"name": k, "value": v} for k, v in args.items()]
    return args


def _node_registration(env: Environment, node: Node) -> dict[str, Any]:
    # node-ip pins the kubelet to the cluster NIC, so multi-NIC nodes register the right one.
    return {"name": node.name, "criSocket": CRI_SOCKET,
            "kubeletExtraArgs": _args(env, {"node-ip": str(node.ip)})}


def bootstrap_tokens() -> list[dict[str, Any]]:
    """The one bootstrap token the nodes join with (its secret a marker)."""
    return [{"token": TOKEN.marker(), "description": "gen: joins the nodes of this cluster",
             "ttl": "24h0m0s", "usages": ["signing", "authentication"],
             "groups": ["system:bootstrappers:kubeadm:default-node-token"]}]


def token_configuration(env: Environment) -> bytes:
    """What `kubeadm token create --config` reads to create the bootstrap token again: the
    token travels in a file, never on a command line where `ps` shows it."""
    return dump_all([{"apiVersion": api_version(env), "kind": "InitConfiguration",
                      "bootstrapTokens": bootstrap_tokens()}],
                    header="kubeadm token create --config on the first control plane")


def init_configuration(env: Environment, first: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": api_version(env), "kind": "InitConfiguration",
        "bootstrapTokens": bootstrap_tokens(),
        "nodeRegistration": _node_registration(env, first),
        "localAPIEndpoint": {"advertiseAddress": str(first.ip), "bindPort": API_PORT},
    }
    if len(env.nodes_with_role("master")) > 1:
        # Further control planes fetch the certificates uploaded under this key.
        doc["certificateKey"] = CERTIFICATE_KEY.marker()
    return doc


def cluster_configuration(env: Environment) -> dict[str, Any]:
    cluster = env.cluster
    return {
        "apiVersion": api_version(env), "kind": "ClusterConfiguration",
        "clusterName": cluster.name,
        "kubernetesVersion": kubernetes_version(env),
        "controlPlaneEndpoint": control_plane_endpoint(env),
        **({"apiServer": {"certSANs": api_cert_sans(env)}} if api_cert_sans(env) else {}),
        "networking": {
            "dnsDomain": "cluster.local",
            "podSubnet": ",".join(str(c.cidr) for c in cluster.cluster_network),
            "serviceSubnet": ",".join(str(s) for s in cluster.service_network),
        },
    }


def kubelet_configuration() -> dict[str, Any]:
    # systemd cgroups on both sides (containerd's SystemdCgroup, see cloudinit.py); the
    # seed's docker `log-opts max-size=100m` becomes the kubelet's container log rotation.
    return {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "systemd", "containerLogMaxSize": "100Mi"}


def join_configuration(env: Environment, node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": api_version(env), "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": control_plane_endpoint(env), "token": TOKEN.marker(),
            "caCertHashes": [CA_CERT_HASH.marker()]}},
        "nodeRegistration": _node_registration(env, node),
    }
    if node.role == "master":
        doc["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": API_PORT},
            "certificateKey": CERTIFICATE_KEY.marker()}
    return doc
