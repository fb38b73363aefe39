#!/usr/bin/env python3
"""How long `gen import` takes on a large lab (no target in issue 21; figures for the record).

    python bench/bench_import.py [--nodes 1000] [--repeat 3]

helpernode: a vars file with a helper, a bootstrap, three masters and NODES workers on a
/16 (DHCP, MACs) is imported (pure), then written through the round-trip editor with full
validation into a scratch repo. libvirt: a snapshot of NODES domains (one qcow2 volume and
one NIC each, an isolated network with a DHCP reservation per domain) is imported (pure).
Best of --repeat runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.importers import write_environment  # noqa: E402
from generator.importers.helpernode import import_helpernode  # noqa: E402
from generator.importers.libvirt import Options, Snapshot, import_libvirt  # noqa: E402


def vars_text(workers: int) -> str:
    hosts = list(IPv4Network("10.20.0.0/16").hosts())
    lines = ["helper:", "  name: helper", f"  ipaddr: {hosts[9]}",
             "dns:", "  domain: example.com", "  clusterid: big", "  forwarder1: 10.0.0.53",
             "dhcp:", "  router: 10.20.0.1", "  bcast: 10.20.255.255",
             "  netmask: 255.255.0.0", "  poolstart: 10.20.250.1", "  poolend: 10.20.250.200",
             "  ipid: 10.20.0.0", "  netmaskid: 255.255.0.0",
             "bootstrap:", "  name: bootstrap", f"  ipaddr: {hosts[19]}",
             f"  macaddr: '{_mac(1)}'", "masters:"]
    for i in range(3):
        lines += [f"  - name: master{i}", f"    ipaddr: {hosts[20 + i]}",
                  f"    macaddr: '{_mac(10 + i)}'"]
    lines.append("workers:")
    for i in range(workers):
        lines += [f"  - name: worker{i}", f"    ipaddr: {hosts[100 + i]}",
                  f"    macaddr: '{_mac(100 + i)}'"]
    return "\n".join(lines) + "\n"


def _mac(n: int) -> str:
    return f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"


def snapshot(domains: int) -> Snapshot:
    hosts = list(IPv4Network("10.30.0.0/16").hosts())
    names = ["helper", "bootstrap", "master0", "master1", "master2"] + [
        f"worker{i}" for i in range(domains - 5)]
    reservations = "".join(f"<host mac='{_mac(i)}' name='{n}' ip='{hosts[100 + i]}'/>"
                           for i, n in enumerate(names))
    network = (f"<network><name>lan</name><ip address='10.30.0.1' netmask='255.255.0.0'>"
               f"<dhcp>{reservations}</dhcp></ip></network>")
    doms, vols = {}, {}
    for i, name in enumerate(names):
        vols[f"{name}-root.qcow2"] = (f"<volume><name>{name}-root.qcow2</name><capacity "
                                      "unit='bytes'>128849018880</capacity></volume>")
        doms[name] = (
            f"<domain type='kvm'><name>{name}</name><memory unit='KiB'>16777216</memory>"
            "<vcpu>4</vcpu><os><type arch='x86_64' machine='pc'>hvm</type>"
            "<boot dev='network'/><boot dev='hd'/></os><features><acpi/><apic/></features>"
            "<devices><disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source pool='default' volume='{name}-root.qcow2'/><target dev='vda' "
            f"bus='virtio'/></disk><interface type='network'><mac address='{_mac(i)}'/>"
            "<source network='lan'/><model type='virtio'/></interface></devices></domain>")
    pool = "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images" \
           "</path></target></pool>"
    return Snapshot("qemu:///system", doms, {"lan": network}, {"default": pool},
                    {"default": vols})


def best(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = vars_text(args.nodes)
    imported = import_helpernode(text, "vars.yaml", "big")
    assert not imported.refused, imported.refused[:3]
    pure = best(args.repeat, lambda: import_helpernode(text, "vars.yaml", "big"))
    print(f"helpernode: {args.nodes + 5} hosts, {len(imported.lines)} report lines: "
          f"import {pure * 1000:.0f} ms")

    def write() -> None:
        scratch = Path(tempfile.mkdtemp(prefix="gen-bench-import-"))
        try:
            shutil.copytree(ROOT / "blueprints", scratch / "blueprints")
            (scratch / "environments").mkdir()
            write_environment(scratch, "big", import_helpernode(text, "vars.yaml", "big").data,
                              "bench")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"helpernode: import + write with full validation "
          f"{best(args.repeat, write) * 1000:.0f} ms")
    snap = snapshot(args.nodes)
    result = import_libvirt(snap, Options("big"))
    assert not result.refused, result.refused[:3]
    took = best(args.repeat, lambda: import_libvirt(snap, Options("big")))
    print(f"libvirt: {args.nodes} domains: import {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
