"""install-config rules of the pinned OpenShift/OKD release, as openshift-install enforces them.

The installer validates install-config.yaml in `create manifests` (its
pkg/types/validation/installconfig.go: validateNetworking, validateMachineNetwork,
validateServiceNetwork, validateClusterNetwork, validateNetworkingIPVersion). gen renders
that file from the environment (families/openshift.py: platform none, the machine networks
are the networks the bootstrap, masters and workers are addressed on), so each rule is
checked here against the environment field it comes from. Rules gen's other checks already
make (host CIDRs overlapping pod or service CIDRs, a control plane of 1, 3 or 5) are not
repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

from generator.families.common import COREOS_FLAVOURS
from generator.loader import FieldPath
from generator.rules import Report

# OpenShiftSDN: deprecated in 4.14, refused by openshift-install from 4.15 on.
SDN_DEPRECATED = (4, 14)
SDN_REMOVED = (4, 15)
# Network plugins whose cluster networks are cut into per-node hostPrefix subnets; the
# installer checks hostPrefix only for these (pluginsUsingHostPrefix).
HOST_PREFIX_PLUGINS = ("OpenShiftSDN", "OVNKubernetes")
# OVN-Kubernetes' own IPv4 subnets (the cluster network operator's defaults, not settable
# through gen): a machine, service or cluster network overlapping one breaks node routing.
# Current installers refuse the overlap; for older ones OVN-Kubernetes fails at runtime.
OVN_SUBNETS = (
    ("internal join subnet", IPv4Network("100.64.0.0/16"), (4, 0)),
    ("transit subnet", IPv4Network("100.88.0.0/16"), (4, 14)),
    ("masquerade subnet", IPv4Network("169.254.169.0/29"), (4, 0)),
)
# The longest DNS name a cluster answers for: *.apps.<name>.<baseDomain> names every route.
MAX_DNS_NAME = 253


def release(report: Report) -> tuple[int, int] | None:
    """(major, minor) of the pinned release, or None when the flavour is not OpenShift/OKD."""
    cluster = report.cluster
    if cluster.get("flavour") not in COREOS_FLAVOURS or "version" not in cluster:
        return None
    major, minor = str(cluster["version"]).split(".")[:2]
    return int(major), int(minor)


def check_network_type(report: Report) -> None:
    version = release(report)
    network_type = report.cluster.get("networkType")
    if version is None or network_type != "OpenShiftSDN":
        return
    shown = ".".join(map(str, version))
    if version >= SDN_REMOVED:
        report.error(("cluster", "networkType"), f"networkType OpenShiftSDN is not supported "
                     f"by openshift-install {shown} (refused from 4.15 on)",
                     "use networkType: OVNKubernetes")
    elif version >= SDN_DEPRECATED:
        report.warn(("cluster", "networkType"), f"networkType OpenShiftSDN is deprecated in "
                    f"{shown} and refused from 4.15 on", "use networkType: OVNKubernetes")


def check_flavour_network_type(report: Report) -> None:
    """flannel and calico are the kubeadm flavour's CNIs, which gen applies itself; the
    OpenShift installer only deploys its own plugins."""
    network_type = report.cluster.get("networkType")
    if release(report) is not None and network_type not in (None, *HOST_PREFIX_PLUGINS):
        report.error(("cluster", "networkType"), f"networkType {network_type} is not an "
                     "OpenShift network plugin", "use networkType: OVNKubernetes")


def _cluster_networks(report: Report) -> Iterator[tuple[FieldPath, IPv4Network,
                                                       dict[str, Any]]]:
    for i, entry in enumerate(report.cluster.get("clusterNetwork", [])):
        yield (("cluster", "clusterNetwork", i), IPv4Network(entry["cidr"], strict=False),
               entry)


def check_host_prefix(report: Report) -> None:
    """validateClusterNetwork: every IPv4 entry has a hostPrefix no shorter than its CIDR,
    all the same; gen adds that the networks hold a subnet for every node."""
    if release(report) is None or report.cluster.get("networkType") not in HOST_PREFIX_PLUGINS:
        return
    first: int | None = None
    subnets = 0
    for path, cidr, entry in _cluster_networks(report):
        prefix = entry.get("hostPrefix")
        if prefix is None:
            report.error(path, f"cluster network {cidr} has no hostPrefix, which "
                         f"{report.cluster['networkType']} needs to give each node a subnet",
                         "add hostPrefix: 23 (512 pod addresses per node)")
            continue
        if prefix < cidr.prefixlen:
            report.error(path + ("hostPrefix",), f"hostPrefix {prefix} is larger than the "
                         f"cluster network {cidr} itself", f"use a hostPrefix of "
                         f"{cidr.prefixlen} or more, e.g. {max(cidr.prefixlen, 23)}")
            continue
        if first is not None and prefix != first:
            report.error(path + ("hostPrefix",), f"hostPrefix {prefix} differs from the "
                         f"first cluster network's {first}; the installer wants one value "
                         "for all IPv4 cluster networks", f"use hostPrefix {first}")
        first = prefix if first is None else first
        subnets += 2 ** (prefix - cidr.prefixlen)
    nodes = sum(n.get("role") in ("bootstrap", "master", "worker")
                for n in report.data.get("nodes", []))
    if first is not None and 0 < subnets < nodes:
        report.error(("cluster", "clusterNetwork"), f"the cluster networks hold {subnets} "
                     f"node subnets for {nodes} nodes", "use a larger CIDR or hostPrefix")


def check_service_network(report: Report) -> None:
    """validateNetworkingIPVersion: a single-stack IPv4 cluster has one service network."""
    services = report.cluster.get("serviceNetwork", [])
    if release(report) is not None and len(services) > 1:
        report.error(("cluster", "serviceNetwork"), f"{len(services)} service networks; "
                     "openshift-install accepts only one for IPv4", "keep one")


def _install_config_networks(report: Report) -> Iterator[tuple[FieldPath, IPv4Network, str]]:
    """The machine, service and cluster networks of install-config, at their fields."""
    roles = ("bootstrap", "master", "worker")
    used = {n["nics"][0]["network"] for n in report.data.get("nodes", [])
            if n.get("role") in roles and n.get("nics")}
    for i, net in enumerate(report.data.get("networks", [])):
        if net["name"] in used:
            yield (("networks", i, "cidr"), IPv4Network(net["cidr"], strict=False),
                   f"machine network {net['cidr']}")
    for i, cidr in enumerate(report.cluster.get("serviceNetwork", [])):
        yield ("cluster", "serviceNetwork", i), IPv4Network(cidr, strict=False), \
            f"service network {cidr}"
    for path, cidr, _ in _cluster_networks(report):
        yield path + ("cidr",), cidr, f"cluster network {cidr}"


def check_ovn_subnets(report: Report) -> None:
    version = release(report)
    if version is None or report.cluster.get("networkType") != "OVNKubernetes":
        return
    for path, network, what in _install_config_networks(report):
        for name, subnet, since in OVN_SUBNETS:
            if version >= since and network.overlaps(subnet):
                report.error(path, f"{what} overlaps OVN-Kubernetes' {name} {subnet}",
                             "pick a range outside 100.64.0.0/16, 100.88.0.0/16 and "
                             "169.254.169.0/29")


def check_cluster_domain(report: Report) -> None:
    """The installer checks <name>.<baseDomain> is a DNS name; every route lives under
    *.apps of it, so that longer name must fit too."""
    if release(report) is None:
        return
    cluster = report.cluster
    apps = f"x.apps.{cluster['name']}.{cluster['baseDomain']}".rstrip(".")
    if len(apps) > MAX_DNS_NAME:
        report.error(("cluster", "baseDomain"), f"the application domain of "
                     f"{cluster['name']}.{cluster['baseDomain']} is longer than a DNS name "
                     f"({len(apps)} > {MAX_DNS_NAME} characters)",
                     "use a shorter cluster name or base domain")


def check_version_known(report: Report) -> None:
    """gen's OpenShift rendering (platform none, install-config v1) is that of 4.x."""
    version = release(report)
    if version is not None and version[0] != 4:
        report.error(("cluster", "version"), f"OpenShift {report.cluster['version']} is not "
                     "a release gen knows the installer rules of", "use a 4.x release")


# install-config's imageDigestSources replaced imageContentSources in 4.14; earlier
# installers refuse the field as unknown.
DIGEST_SOURCES = (4, 14)


def check_mirror_release(report: Report) -> None:
    """gen renders the mirror as imageDigestSources, which older installers do not know."""
    version = release(report)
    if version is not None and "mirror" in report.data and version < DIGEST_SOURCES:
        shown = ".".join(map(str, version))
        report.error(("mirror",), f"openshift-install {shown} does not read imageDigestSources "
                     "(the field gen renders the mirror into; it exists from 4.14 on)",
                     "pin cluster.version 4.14 or later")


CHECKS = (check_version_known, check_network_type, check_flavour_network_type,
          check_host_prefix, check_service_network, check_ovn_subnets, check_cluster_domain,
          check_mirror_release)
