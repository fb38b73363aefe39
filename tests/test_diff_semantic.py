"""Per-family semantic summaries on small synthetic trees (pure; no git)."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse

from generator.diff import Side, build_report, lock_input_changes, secret_changes
from generator.diff.semantic import SENSITIVE, decode_data_url
from generator.tree import Tree


def lines_of(old: Tree, new: Tree) -> dict[str, list[str]]:
    report = build_report(Side("a", None, "e", old), Side("b", None, "e", new))
    return {s.family.key: [f.line() for f in s.findings] for s in report.sections}


def domain(name: str, vcpu: int, mem_kib: int, macs: tuple[str, ...]) -> bytes:
    nics = "".join(f"<interface type='network'><mac address='{m}'/><source network='lan'/>"
                   f"<model type='virtio'/></interface>" for m in macs)
    return (f"<domain type='kvm'><name>{name}</name><memory unit='KiB'>{mem_kib}</memory>"
            f"<vcpu>{vcpu}</vcpu><os><boot dev='network'/></os><devices>{nics}</devices>"
            f"</domain>").encode()


def test_domain_vcpu_memory_and_nic() -> None:
    old = {"hypervisors/hv1/domains/m0.xml": domain("m0", 4, 8 * 2**20, ("52:54:00:00:00:01",))}
    new = {"hypervisors/hv1/domains/m0.xml": domain("m0", 8, 16 * 2**20,
                                                    ("52:54:00:00:00:01", "52:54:00:00:00:02"))}
    (row,) = lines_of(old, new)["libvirt"]
    assert row.startswith("~ domain hv1/m0: vcpu 4 -> 8; memory 8192 MiB -> 16384 MiB; ")
    assert "NIC added 52:54:00:00:00:02 (on lan, model virtio)" in row


def test_domain_added_and_removed_and_other_xml() -> None:
    old = {"hypervisors/hv1/domains/gone.xml": domain("gone", 2, 2**20, ()),
           "hypervisors/hv1/networks/lan.xml": b"<network><name>lan</name><bridge name='a'/>"
                                               b"</network>"}
    new = {"hypervisors/hv1/domains/w1.xml": domain("w1", 2, 2**21, ("52:54:00:00:00:03",)),
           "hypervisors/hv1/networks/lan.xml": b"<network><name>lan</name><bridge name='b'/>"
                                               b"</network>"}
    assert lines_of(old, new)["libvirt"] == [
        "- domain hv1/gone",
        "+ domain hv1/w1: 2 vCPU, 2048 MiB, 1 NIC(s), 0 disk(s)",
        "~ network hv1/lan: network/bridge@name: a -> b",
    ]


def test_zone_records_added_removed_changed() -> None:
    zone = ("$TTL 300\n$ORIGIN example.com.\n@ IN SOA ns1 root ( {serial} 1 2 3 4 )\n"
            "api IN A 10.0.0.{api}\n{extra}\n")
    old = {"hosts/helper/dns/db.example.com": zone.format(serial=1, api=5, extra="").encode()}
    new = {"hosts/helper/dns/db.example.com": zone.format(
        serial=2, api=6, extra="w2 300 IN A 10.0.0.9").encode()}
    assert lines_of(old, new)["dns"] == [
        "~ A api.example.com.: 10.0.0.5 -> 10.0.0.6",
        "+ A w2.example.com.: 10.0.0.9",
    ]


def test_dhcp_isc_kea_and_dnsmasq_reservations() -> None:
    isc = "host {n} {{ hardware ethernet {m}; fixed-address {ip}; }}\n"
    kea = {"Dhcp4": {"subnet4": [{"reservations": [
        {"hostname": "w1", "hw-address": "52:54:00:00:00:01", "ip-address": "10.0.0.21"}]}]}}
    old = {"hosts/h/dhcp/dhcpd.conf": isc.format(n="w1", m="aa:aa:aa:aa:aa:01",
                                                 ip="10.0.0.1").encode(),
           "hosts/h/dhcp/kea-dhcp4.conf": json.dumps(kea).encode(),
           "hosts/h/dhcp/dnsmasq.conf": b"dhcp-host=52:54:00:00:00:09,10.0.0.9,w9,infinite\n"}
    kea["Dhcp4"]["subnet4"][0]["reservations"][0]["ip-address"] = "10.0.0.22"
    new = {"hosts/h/dhcp/dhcpd.conf": (isc.format(n="w1", m="aa:aa:aa:aa:aa:01", ip="10.0.0.2")
                                       + isc.format(n="w2", m="aa:aa:aa:aa:aa:02",
                                                    ip="10.0.0.3")).encode(),
           "hosts/h/dhcp/kea-dhcp4.conf": json.dumps(kea).encode(),
           "hosts/h/dhcp/dnsmasq.conf": b""}
    rows = lines_of(old, new)["dhcp"]
    assert "+ reservation w2: mac aa:aa:aa:aa:aa:02, ip 10.0.0.3" in rows
    assert "- reservation w9" in rows
    # isc and kea both name w1: reservations merge by name, the last file read (kea) wins.
    assert "~ reservation w1: ip: 10.0.0.21 -> 10.0.0.22" in rows


def test_haproxy_backend_servers() -> None:
    cfg = "global\n  daemon\nbackend api\n  balance source\n{servers}"
    old = {"hosts/lb/haproxy/haproxy.cfg": cfg.format(
        servers="  server m0 10.0.0.1:6443 check\n  server b 10.0.0.9:6443 check\n").encode()}
    new = {"hosts/lb/haproxy/haproxy.cfg": cfg.format(
        servers="  server m0 10.0.0.1:6443 check\n  server m1 10.0.0.2:6443 check\n").encode()}
    assert lines_of(old, new)["haproxy"] == [
        "+ backend api server m1: 10.0.0.2:6443 check",
        "- backend api server b",
    ]


def test_pxe_kernel_arguments() -> None:
    entry = "LABEL install\n  KERNEL k\n  APPEND initrd=i ip=dhcp coreos.inst.install_dev={d}\n"
    old = {"hosts/h/tftp/pxelinux.cfg/01-aa": entry.format(d="/dev/sda").encode()}
    new = {"hosts/h/tftp/pxelinux.cfg/01-aa": entry.format(d="/dev/vda").encode()}
    assert lines_of(old, new)["pxe"] == [
        "~ boot entry hosts/h/tftp/pxelinux.cfg/01-aa [install]: "
        "coreos.inst.install_dev=/dev/sda -> coreos.inst.install_dev=/dev/vda"]


def test_data_urls_decode() -> None:
    text = "hello\nworld\n"
    assert decode_data_url("data:," + urllib.parse.quote(text)) == text
    assert decode_data_url("data:text/plain;base64," + base64.b64encode(text.encode()).decode()
                           ) == text
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    assert decode_data_url("data:;base64," + packed, "gzip") == text
    assert decode_data_url("https://example.invalid/x") is None


def ignition(files: dict[str, str]) -> bytes:
    return json.dumps({"ignition": {"version": "3.2.0"}, "storage": {"files": [
        {"path": p, "mode": 420, "contents": {"source": "data:," + urllib.parse.quote(t)}}
        for p, t in files.items()]}}).encode()


def test_ignition_files_decoded() -> None:
    old = {"clusters/c/ignition/w0.ign": ignition({"/etc/hostname": "old\n", "/etc/a": "a\n"})}
    new = {"clusters/c/ignition/w0.ign": ignition({"/etc/hostname": "new\n", "/etc/b": "b\n"})}
    report = build_report(Side("a", None, "e", old), Side("b", None, "e", new))
    (section,) = report.sections
    assert [f.line() for f in section.findings] == [
        "- w0.ign file /etc/a", "+ w0.ign file /etc/b", "~ w0.ign file /etc/hostname: content "
        "changed"]
    assert "-old\n+new\n" in section.findings[2].block


def test_kubernetes_objects_fields_and_secrets() -> None:
    old = {"clusters/c/kubernetes/apps.yaml": b"""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec: {replicas: 3, template: {spec: {containers: [{name: web, image: tomcat:9}]}}}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: apps}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Namespace
metadata: {name: old}
"""}
    new = {"clusters/c/kubernetes/apps.yaml": b"""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec: {replicas: 4, template: {spec: {containers: [{name: web, image: tomcat:10}]}}}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: apps}
stringData: {password: swordfish}
"""}
    rows = lines_of(old, new)["kubernetes"]
    assert rows == [
        "- Namespace old",
        "~ Deployment apps/web: spec.replicas: 3 -> 4; "
        "spec.template.spec.containers[0].image: tomcat:9 -> tomcat:10",
        f"~ Secret apps/creds: stringData: {SENSITIVE}",
    ]
    assert not any("hunter2" in r or "swordfish" in r for r in rows)


def test_unknown_and_unparsable_files_fall_back() -> None:
    old = {"hosts/h/haproxy/haproxy.cfg": b"x", "misc/readme.txt": b"a\n",
           "clusters/c/kubernetes/bad.yaml": b"a: b\n"}
    new = {"hosts/h/haproxy/haproxy.cfg": b"y", "misc/readme.txt": b"b\n",
           "clusters/c/kubernetes/bad.yaml": b"a: [unclosed\n"}
    found = lines_of(old, new)
    assert found["other"] == ["~ file: misc/readme.txt"]
    assert found["haproxy"] == ["~ file: hosts/h/haproxy/haproxy.cfg"]
    assert found["kubernetes"] == ["~ file: clusters/c/kubernetes/bad.yaml"]


def test_lock_inputs_and_secret_refs() -> None:
    old = {"inputs": {"environment": {"narHash": "a"},
                      "image/tomcat": {"original": "tomcat:9", "locked": "tomcat@sha256:aa"},
                      "os/kernel": {"original": {}, "locked": {"location": "u", "sha256": "11"}}}}
    new = {"inputs": {"environment": {"narHash": "b"},
                      "image/tomcat": {"original": "tomcat:10", "locked": "tomcat@sha256:bb"},
                      "os/kernel": {"original": {}, "locked": {"location": "u", "sha256": "22"}},
                      "image/registry": {"original": "registry:2", "locked": "r@sha256:cc"}}}
    assert [f.line() for f in lock_input_changes(old, new)] == [
        "+ image/registry: registry:2 sha256:cc",
        "~ image/tomcat: tomcat:9 sha256:aa -> tomcat:10 sha256:bb",
        "~ os/kernel: sha256: 11 -> 22",
    ]
    rows = secret_changes({"pull": ("env", "A"), "gone": ("file", "/x")},
                          {"pull": ("env", "B"), "new": ("env", "C")})
    assert [f.line() for f in rows] == ["+ secret new", "- secret gone",
                                        f"~ secret pull: {SENSITIVE}"]
