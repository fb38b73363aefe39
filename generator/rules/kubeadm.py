"""ClusterConfiguration rules of the pinned Kubernetes version, as kubeadm enforces them.

`kubeadm init --config` validates the networking section gen renders (families/kubeadm.py:
podSubnet from cluster.clusterNetwork, serviceSubnet from cluster.serviceNetwork) in
cmd/kubeadm/app/apis/kubeadm/validation: ValidateIPNetFromString (one CIDR, or two of
different families), ValidateServiceSubnetSize (at most 2^20 service addresses: the
apiserver stores them all in etcd), ValidatePodSubnetNodeMask (the controller manager cuts
the pod subnet into /24s per node; at most 2^16 of them). gen sets no node-cidr-mask-size,
so the controller manager's default /24 applies and cluster.clusterNetwork[].hostPrefix has
no effect on a kubeadm cluster.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network

from generator.rules import Report

NODE_MASK = 24  # kube-controller-manager --node-cidr-mask-size-ipv4 default
POD_SUBNET_NODE_MASK_MAX_DIFF = 16
MAX_BITS_FOR_SERVICE_SUBNET = 20
MIN_ADDRESSES_IN_SERVICE_SUBNET = 10
# pkgs.k8s.io, where cloud-init installs kubelet/kubeadm/kubectl from, starts at v1.24; the
# newest minor gen renders a kubeadm API version for is below.
OLDEST_MINOR = 24
NEWEST_MINOR = 33
_VERSION = re.compile(r"v?1\.([0-9]+)\.[0-9]+")


def _kubeadm(report: Report) -> bool:
    return report.cluster.get("flavour") == "kubeadm"


def check_version(report: Report) -> None:
    version = report.cluster.get("kubernetesVersion")
    match = _VERSION.fullmatch(version) if _kubeadm(report) and version else None
    if match is None:
        return  # the schema reports a malformed version
    minor = int(match[1])
    if minor < OLDEST_MINOR:
        report.error(("cluster", "kubernetesVersion"), f"Kubernetes {version} is older than "
                     f"v1.{OLDEST_MINOR}, the first release pkgs.k8s.io publishes packages for",
                     f"use v1.{OLDEST_MINOR} or later")
    elif minor > NEWEST_MINOR:
        report.error(("cluster", "kubernetesVersion"), f"Kubernetes {version} is newer than "
                     f"v1.{NEWEST_MINOR}, the last release gen knows kubeadm's rules of",
                     f"use v1.{NEWEST_MINOR} or older")


def _one_cidr(report: Report, key: str, count: int, what: str) -> None:
    if count > 1:
        report.error(("cluster", key), f"{count} IPv4 {what} subnets; "
                     "kubeadm takes one CIDR per address family", "keep one")


def check_pod_subnet(report: Report) -> None:
    if not _kubeadm(report):
        return
    networks = report.cluster.get("clusterNetwork", [])
    _one_cidr(report, "clusterNetwork", len(networks), "pod")
    for i, entry in enumerate(networks):
        path = ("cluster", "clusterNetwork", i)
        cidr = IPv4Network(entry["cidr"], strict=False)
        if cidr.prefixlen > NODE_MASK:
            report.error(path + ("cidr",), f"pod subnet {cidr} is smaller than the /{NODE_MASK} "
                         "kubeadm's controller manager gives each node",
                         f"use a /{NODE_MASK} or larger, e.g. 10.244.0.0/16")
        elif NODE_MASK - cidr.prefixlen > POD_SUBNET_NODE_MASK_MAX_DIFF:
            report.error(path + ("cidr",), f"pod subnet {cidr} holds more than "
                         f"2^{POD_SUBNET_NODE_MASK_MAX_DIFF} node subnets of /{NODE_MASK}, "
                         "which kubeadm refuses",
                         f"use a /{NODE_MASK - POD_SUBNET_NODE_MASK_MAX_DIFF} or smaller")
        if "hostPrefix" in entry:
            report.error(path + ("hostPrefix",), "hostPrefix has no effect on a kubeadm "
                         f"cluster: every node gets a /{NODE_MASK} of the pod subnet",
                         "remove hostPrefix")


def check_service_subnet(report: Report) -> None:
    if not _kubeadm(report):
        return
    subnets = report.cluster.get("serviceNetwork", [])
    _one_cidr(report, "serviceNetwork", len(subnets), "service")
    for i, value in enumerate(subnets):
        cidr = IPv4Network(value, strict=False)
        if 32 - cidr.prefixlen > MAX_BITS_FOR_SERVICE_SUBNET:
            report.error(("cluster", "serviceNetwork", i), f"service subnet {cidr} is too "
                         f"large: kubeadm wants a mask of /{32 - MAX_BITS_FOR_SERVICE_SUBNET} "
                         "or longer", "use 10.96.0.0/12 or smaller")
        elif cidr.num_addresses < MIN_ADDRESSES_IN_SERVICE_SUBNET:
            report.error(("cluster", "serviceNetwork", i), f"service subnet {cidr} has "
                         f"{cidr.num_addresses} addresses, fewer than kubeadm's minimum of "
                         f"{MIN_ADDRESSES_IN_SERVICE_SUBNET}", "use a /24 or larger")


CHECKS = (check_version, check_pod_subnet, check_service_subnet)
