"""Node CSR approval by the kubernetes provider, against the kmock API server stand-in.

The CSRs are real: PKCS#10 requests made with `cryptography`, posted as
certificates.k8s.io/v1 CertificateSigningRequest objects, read back by the provider, which
parses and verifies the PEM itself. kmock has no route for subresources; the harness routes
`.../certificatesigningrequests/NAME/approval` to the object itself (as it routes namespaces,
see test_reconcile_kubernetes.py), so the merge patch the provider sends there is stored. A
real API server lets that subresource change only the approval conditions; kmock merges the
body into the object (see docs/cluster-lifecycle.md).
"""

from __future__ import annotations

import base64
import re
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_reconcile_kubernetes import Kube, kube, lab_b, settings  # noqa: F401

from generator.pipeline import render_environment
from generator.reconcile import csr
from generator.reconcile.converge import Journal, apply_plan
from generator.reconcile.output import format_text
from generator.reconcile.plan import Desired, Settings, build_plan
from generator.reconcile.providers import InstallerOptions

ROOT = Path(__file__).resolve().parent.parent
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]


@pytest.fixture(autouse=True)
def route_approval(monkeypatch: pytest.MonkeyPatch) -> None:
    from kmock._internal import parsing

    original = parsing.parse_path

    def parse_path(path: str) -> Any:
        match = re.fullmatch(CSRS + r"/([^/]+)/approval", path)
        if match is None:
            return original(path)
        return parsing.ParsedPath(group="certificates.k8s.io", version="v1",
                                  plural="certificatesigningrequests", name=match.group(1))

    monkeypatch.setattr(parsing, "parse_path", parse_path)


def pem(common_name: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
        organization: str = "system:nodes") -> str:
    """A real PKCS#10 request, base64 of its PEM as spec.request carries it."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    request = builder.sign(key, hashes.SHA256())
    return base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode()


def post_csr(kube: Kube, name: str, request: str, signer: str, username: str,  # noqa: F811
             usages: list[str]) -> None:
    kube.call("POST", CSRS, {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": request, "signerName": signer, "usages": usages,
                 "username": username, "groups": ["system:authenticated"]}},
        content_type="application/json")


def client(kube: Kube, name: str, node: str, **extra: Any) -> None:  # noqa: F811
    post_csr(kube, name, pem(f"system:node:{node}", **extra), csr.CLIENT_SIGNER,
             "system:bootstrap:abcdef", CLIENT_USAGES)


def serving(kube: Kube, name: str, node: str, dns: tuple[str, ...], ips: tuple[str, ...],  # noqa: F811
            username: str | None = None) -> None:
    post_csr(kube, name, pem(f"system:node:{node}", dns, ips), csr.SERVING_SIGNER,
             username or f"system:node:{node}", SERVING_USAGES)


def conditions(kube: Kube, name: str) -> list[dict[str, Any]]:  # noqa: F811
    live = kube.call("GET", f"{CSRS}/{name}")
    return list((live.get("status") or {}).get("conditions") or [])


def csr_actions(desired: Desired, kube: Kube) -> list[str]:  # noqa: F811
    plan = build_plan(desired, settings(kube.kubeconfig))
    return [a.name for a in plan.actions if a.kind == csr.KIND]


def test_only_this_environments_node_requests_are_approved(kube: Kube,  # noqa: F811
                                                           tmp_path: Path) -> None:
    desired = lab_b()
    client(kube, "csr-node1-client", "test-node1")
    serving(kube, "csr-node2-serving", "test-node2",
            ("test-node2", "test-node2.k8s.localtest.com"), ("192.168.111.173",))
    client(kube, "csr-stranger", "intruder")
    serving(kube, "csr-extra-san", "test-node3", ("test-node3",),
            ("192.168.111.170", "10.9.9.9"))
    serving(kube, "csr-other-nodes-name", "test-node3", ("test-master",), ("192.168.111.170",))
    serving(kube, "csr-master-by-a-worker", "test-master", ("test-master",),
            ("192.168.111.169",), username="system:node:test-node1")
    client(kube, "csr-storage", "test-storage1")  # a storage node never joins the cluster
    client(kube, "csr-client-with-san", "test-node1", ips=("192.168.111.172",))
    post_csr(kube, "csr-not-a-node", pem("admin", organization="system:masters"),
             csr.CLIENT_SIGNER, "system:bootstrap:abcdef", CLIENT_USAGES)

    plan = build_plan(desired, settings(kube.kubeconfig))
    approvals = [a for a in plan.actions if a.kind == csr.KIND]
    assert [(a.name, a.note) for a in approvals] == [
        ("csr-node1-client", "kubelet client certificate of worker test-node1"),
        ("csr-node2-serving", "kubelet serving certificate of worker test-node2")]
    text = format_text(plan)
    for line in (
            "csr-stranger left pending: node intruder is not a node of environment k8s-lab",
            "csr-extra-san left pending: names 10.9.9.9 are not node test-node3's",
            "csr-other-nodes-name left pending: names test-master are not node test-node3's",
            "csr-master-by-a-worker left pending: a serving certificate for test-master "
            "requested by system:node:test-node1",
            "csr-storage left pending: node test-storage1 has role storage, which does not "
            "join the cluster",
            "csr-client-with-san left pending: a kubelet client certificate has no subject "
            "alternative names",
            "csr-not-a-node left pending: subject CN=admin is not a node's"):
        assert f"note: kubernetes: CertificateSigningRequest {line}" in text, line

    apply_plan(plan, Journal(tmp_path / "state", desired.env.name))
    for name in ("csr-node1-client", "csr-node2-serving"):
        assert [(c["type"], c["status"], c["reason"]) for c in conditions(kube, name)] == [
            ("Approved", "True", csr.REASON)]
    for name in ("csr-stranger", "csr-extra-san", "csr-other-nodes-name",
                 "csr-master-by-a-worker", "csr-storage", "csr-client-with-san",
                 "csr-not-a-node"):
        assert conditions(kube, name) == [], name
    assert csr_actions(desired, kube) == []  # approved ones are no longer pending


def test_openshift_nodes_register_by_fqdn(kube: Kube) -> None:  # noqa: F811
    """Lab A renders no Kubernetes objects, yet its nodes' CSRs are planned; OpenShift
    nodes are named by their FQDN (gen writes it to /etc/hostname)."""
    rendered = render_environment("env/lab", cwd=ROOT)
    desired = Desired(rendered.loaded.model, rendered.tree, "test", False)
    serving(kube, "csr-master0", "master0.ocp4.example.com",
            ("master0.ocp4.example.com",), ("192.168.20.151",))
    client(kube, "csr-bootstrap", "bootstrap.ocp4.example.com")
    plan = build_plan(desired, settings(kube.kubeconfig))
    assert [a.name for a in plan.actions if a.kind == csr.KIND] == ["csr-master0"]
    assert any("csr-bootstrap left pending: node bootstrap.ocp4.example.com has role "
               "bootstrap" in n for n in plan.notices)


def test_a_request_changed_since_the_plan_is_not_approved(kube: Kube,  # noqa: F811
                                                          tmp_path: Path) -> None:
    desired = lab_b()
    client(kube, "csr-swapped", "test-node1")
    plan = build_plan(desired, settings(kube.kubeconfig))
    assert [a.name for a in plan.actions if a.kind == csr.KIND] == ["csr-swapped"]
    # between plan and apply, the object is replaced by a request for another identity
    kube.call("DELETE", f"{CSRS}/csr-swapped")
    client(kube, "csr-swapped", "test-master")
    apply_plan(plan, Journal(tmp_path / "state", desired.env.name))
    assert conditions(kube, "csr-swapped") == []


def test_forged_and_garbage_requests_are_refused() -> None:
    good = pem("system:node:x")
    raw = bytearray(base64.b64decode(good))
    body = raw.index(b"\n") + 40  # flip a byte inside the DER: the signature no longer holds
    raw[body] = ord("A") if raw[body] != ord("A") else ord("B")
    assert csr.parse_request(good) is not None
    assert csr.parse_request(base64.b64encode(bytes(raw)).decode()) is None
    assert csr.parse_request("not base64 !") is None


def test_the_installers_kubeconfig_is_the_default(kube: Kube, tmp_path: Path) -> None:  # noqa: F811
    """With the installer phases in use, the kubeconfig openshift-install wrote into the
    state dir is the kubernetes provider's default (no --kubeconfig)."""
    rendered = render_environment("env/lab", cwd=ROOT)
    desired = Desired(rendered.loaded.model, rendered.tree, "test", False)
    client(kube, "csr-master1", "master1.ocp4.example.com")
    auth = tmp_path / "installer" / "lab" / "assets" / "auth"
    auth.mkdir(parents=True)
    (auth / "kubeconfig").write_bytes(kube.kubeconfig.read_bytes())
    installer = Settings(providers=("kubernetes",),
                         options=(InstallerOptions(state_dir=str(tmp_path / "installer")),))
    plan = build_plan(desired, installer)
    assert [a.name for a in plan.actions if a.kind == csr.KIND] == ["csr-master1"]
