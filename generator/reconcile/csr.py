"""Node certificate signing requests: approve only the ones this environment's nodes make.

A node joining an OpenShift UPI or kubeadm cluster asks for two certificates (the
Kubernetes docs' "kubelet TLS bootstrapping"): a client certificate (signer
`kubernetes.io/kube-apiserver-client-kubelet`, subject `CN=system:node:<node>`,
`O=system:nodes`, no SANs) and, once registered, a serving certificate (signer
`kubernetes.io/kubelet-serving`, the same subject, requested by the node itself, SANs for
its names and addresses). Neither OpenShift UPI nor a kubeadm cluster without the
kubelet-serving approver signs them by itself; the field notes approve them with
`oc adm certificate approve` in a loop, which approves anything pending, including a
stranger's request for `system:node:master0` (that is a master's identity).

gen approves a pending CSR only when everything it asks for is a node of this environment
that joins the cluster (role master or worker): the subject names that node, every DNS SAN
is that node's short name or FQDN, every IP SAN one of its NIC addresses, the usages are
those of the signer, and a serving request comes from that node itself. The request is read
from the PEM in `spec.request`, never from fields a client could set beside it. Everything
else pending is listed in the plan with the reason and left alone.
"""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, ip_address
from typing import Any

from generator.model import Environment, Node
from generator.reconcile.base import WAVE_KUBERNETES, Action, DiffItem
from generator.records import record

KIND = "CertificateSigningRequest"
API_VERSION = "certificates.k8s.io/v1"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
USAGES = {
    CLIENT_SIGNER: {"digital signature", "key encipherment", "client auth"},
    SERVING_SIGNER: {"digital signature", "key encipherment", "server auth"},
}
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
JOINING_ROLES = ("master", "worker")
ORDER_LAST = 9  # after every object of the Kubernetes wave
REASON = "GenNodeApproved"


@record
class Request:
    """What a CSR really asks for, read from its PEM."""

    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    other_sans: bool  # URI or e-mail SANs: never part of a node certificate


def parse_request(pem_b64: str) -> Request | None:
    """The subject and SANs of a base64-encoded PEM CSR; None when it does not parse or its
    signature does not verify (a forged request)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        csr = x509.load_pem_x509_csr(base64.b64decode(pem_b64, validate=True))
        if not csr.is_signature_valid:
            return None
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = x509.SubjectAlternativeName([])
    except (ValueError, TypeError):
        return None
    dns = tuple(san.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    other = len(list(san)) != len(dns) + len(ips)
    return Request(str(cns[0].value) if len(cns) == 1 else "",
                   tuple(str(o.value) for o in orgs), dns, ips, other)


def pending(csr: dict[str, Any]) -> bool:
    conditions = (csr.get("status") or {}).get("conditions") or []
    return not any(c.get("type") in ("Approved", "Denied") for c in conditions)


def _node_named(env: Environment, name: str) -> Node | None:
    return next((n for n in env.nodes if name in (n.name, n.fqdn)), None)


def refusal(env: Environment, csr: dict[str, Any]) -> tuple[Node | None, str]:
    """(the node, "") when gen may approve the CSR, else (None, why not)."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName")
    if signer not in USAGES:
        return None, f"signer {signer} is not a kubelet signer"
    request = parse_request(str(spec.get("request", "")))
    if request is None:
        return None, "its request is not a valid, self-signed PEM CSR"
    if not request.common_name.startswith(NODE_PREFIX) or request.organizations != (
            NODES_GROUP,):
        return None, f"subject CN={request.common_name} is not a node's"
    name = request.common_name.removeprefix(NODE_PREFIX)
    node = _node_named(env, name)
    if node is None:
        return None, f"node {name} is not a node of environment {env.name}"
    if node.role not in JOINING_ROLES:
        return None, f"node {name} has role {node.role}, which does not join the cluster"
    usages = set(spec.get("usages") or ())
    if not usages or not usages <= USAGES[signer]:
        return None, f"usages {', '.join(sorted(usages)) or 'none'} are not a kubelet's"
    if request.other_sans:
        return None, "it asks for URI or e-mail names"
    if signer == CLIENT_SIGNER:
        if request.dns_names or request.ip_addresses:
            return None, "a kubelet client certificate has no subject alternative names"
        return node, ""
    if spec.get("username") != request.common_name:
        return None, f"a serving certificate for {name} requested by {spec.get('username')}"
    names, addresses = {node.name, node.fqdn}, {str(nic.ip) for nic in node.nics if nic.ip}
    stray = [d for d in request.dns_names if d not in names]
    stray += [ip for ip in request.ip_addresses if _canonical(ip) not in addresses]
    if stray:
        return None, f"names {', '.join(stray)} are not node {name}'s"
    return node, ""


def _canonical(ip: str) -> str:
    address = ip_address(ip)
    return str(address) if isinstance(address, IPv4Address) else ip


def plan(api: Any, env: Environment, provider: str) -> tuple[list[Action], list[str]]:
    """Approve actions for the pending CSRs of this environment's nodes, and a notice for
    each other pending CSR."""
    resource = api.resource(API_VERSION, KIND)
    if resource is None:
        return [], []
    actions, notices = [], []
    for csr in api.list(resource, ""):
        if not pending(csr):
            continue
        name = str((csr.get("metadata") or {}).get("name", ""))
        node, why = refusal(env, csr)
        if node is None:
            notices.append(f"kubernetes: {KIND} {name} left pending: {why}")
            continue
        signer = csr["spec"]["signerName"]
        what = "client" if signer == CLIENT_SIGNER else "serving"
        actions.append(Action(
            "update", provider, KIND, name, WAVE_KUBERNETES,
            (DiffItem("change", "status.conditions[Approved]", "pending", "True"),),
            note=f"kubelet {what} certificate of {node.role} {node.name}", order=ORDER_LAST,
            payload={"resource": resource, "csr": name, "node": node.name,
                     "request": csr["spec"]["request"]}))
    return actions, notices


def provider_plan(provider: Any, env: Environment) -> list[Action]:
    """The kubernetes provider's CSR actions; its notices get the CSRs left alone. Without a
    kubeconfig (a cluster not up yet) there is nothing to approve and nothing to say."""
    from generator.errors import UserError
    from generator.reconcile.kubernetes import KubeError

    try:
        api = provider._api()
    except UserError:
        return []
    try:
        actions, notices = plan(api, env, provider.name)
    except (KubeError, OSError) as exc:
        provider.notices.append(f"kubernetes: node CSRs not read ({exc})")
        return []
    provider.notices.extend(notices)
    return actions


def approve(api: Any, action: Action) -> None:
    """Approve through the approval subresource (a merge patch of its conditions, the same
    condition `oc adm certificate approve` adds); re-checked first, so a resumed converge
    neither approves twice nor approves a CSR whose request changed since the plan."""
    resource = action.payload["resource"]
    live = api.get(resource, "", action.payload["csr"])
    if live is None or not pending(live) or \
            (live.get("spec") or {}).get("request") != action.payload["request"]:
        return
    conditions = list((live.get("status") or {}).get("conditions") or [])
    conditions.append({"type": "Approved", "status": "True", "reason": REASON,
                       "message": f"gen: CSR of node {action.payload['node']} of this "
                                  "environment"})
    api.request("PATCH", resource.path("", action.payload["csr"]) + "/approval",
                body={"status": {"conditions": conditions}},
                content_type="application/merge-patch+json")
