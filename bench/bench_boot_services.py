#!/usr/bin/env python3
"""How long the boot-service families take on a 1,000-node OpenShift environment.

Target (issue 3): all boot-service families together (DNS, DHCP, PXE, HTTP, HAProxy, NFS)
add < 1 s to the render of the 1,000-node environment.

    python bench/bench_boot_services.py [--nodes 1000] [--hypervisors 20] [--repeat 5]
    python bench/bench_boot_services.py --paired OLD_CHECKOUT --nodes 10000 [--repeat 5]

The environment (lab A's shape grown with workers on one /16 network, spread over 20
hypervisors) is generated into a temp dir and loaded once, outside the timing. Prints one
line per family (best of --repeat runs, files rendered), one line per alternative provider
(DNS bind/dnsmasq, DHCP isc/kea/dnsmasq, swapped into the model), and the total against
the target.

--paired OLD_CHECKOUT measures a FIRST render, as `gen render` does it (a fresh process,
GC off, the model checks first, every family in the registry's order), in child processes
alternating between OLD_CHECKOUT's generator (e.g. `git archive main generator blueprints
schemas ci | tar -x -C /tmp/old`) and this one: per boot-service family the median CPU
seconds of each, and the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.environment import load_environment  # noqa: E402
from generator.families import Pins, registry  # noqa: E402
from generator.model import Environment  # noqa: E402
from generator.tree import Tree  # noqa: E402

# Boot-service families, by registry name; every one counts against the target.
# DNS and DHCP (item 1, 2):
BOOT_FAMILIES = ["dns", "dhcp"]
# PXE/TFTP, HTTP, HAProxy and NFS (items 3-6): add your family names here, one line each.
BOOT_FAMILIES += ["pxe", "http", "haproxy", "nfs"]
TARGET_SECONDS = 1.0
NET = IPv4Network("10.20.0.0/16")


def environment_yaml(nodes: int, hypervisors: int) -> str:
    """Lab A's shape (helper, bootstrap, 3 masters) grown with workers, on one /16."""
    names = [("helper", "helper"), ("bootstrap", "bootstrap")]
    names += [(f"master{i}", "master") for i in range(3)]
    names += [(f"worker{i}", "worker") for i in range(nodes - len(names))]
    hosts = NET.hosts()
    gateway = next(hosts)
    addresses = [next(hosts) for _ in names]
    lab = (ROOT / "environments/lab/env.yaml").read_text()
    head = lab[: lab.index("\nnetworks:")]
    tail = lab[lab.index("\nservices:"):]
    return "\n".join([
        head,
        "networks:",
        f"  - {{name: lan, cidr: {NET}, gateway: {gateway}, dns: [{addresses[0]}], "
        "bridge: br0}",
        "hypervisors:",
        *(f"  - {{name: hv{i}, uri: 'qemu+ssh://root@hv{i}/system', domainType: kvm, "
          "bridge: br0, pool: {name: default, path: /var/lib/libvirt/images}}"
          for i in range(hypervisors)),
        "nodes:",
        *(f"  - {{name: {name}, role: {role}, hypervisor: hv{i % hypervisors}, "
          f"nics: [{{network: lan, ip: {addresses[i]}}}]}}"
          for i, (name, role) in enumerate(names)),
    ]) + tail


def load(nodes: int, hypervisors: int) -> Environment:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "blueprints", root / "blueprints")
        env_dir = root / "environments/big"
        env_dir.mkdir(parents=True)
        for extra in (ROOT / "environments/lab").iterdir():
            if extra.name != "env.yaml" and extra.is_file():
                shutil.copy(extra, env_dir / extra.name)
        (env_dir / "env.yaml").write_text(environment_yaml(nodes, hypervisors))
        return load_environment("env/big", root).model


def best(render: Callable[[Environment, Pins], Tree], env: Environment,
         repeat: int) -> tuple[float, int]:
    """Best wall time of `repeat` renders, and the number of files rendered."""
    times, files = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        files = len(render(env, Pins()))
        times.append(time.perf_counter() - start)
    return min(times), files


def variants(env: Environment) -> list[tuple[str, str, Environment]]:
    """(family, provider, env) for every alternative provider of DNS and DHCP."""
    services = env.services
    result = []
    if services.dns is not None:
        for provider in ("bind", "dnsmasq"):
            dns = dataclasses.replace(services.dns, provider=provider)
            result.append(("dns", provider, dataclasses.replace(
                env, services=dataclasses.replace(services, dns=dns))))
    if services.dhcp is not None:
        for provider in ("isc", "kea", "dnsmasq"):
            dhcp = dataclasses.replace(services.dhcp, provider=provider)
            result.append(("dhcp", provider, dataclasses.replace(
                env, services=dataclasses.replace(services, dhcp=dhcp))))
    return result


# Run in a child process by --paired, with the checkout under test first on sys.path:
# prints {family: CPU seconds} of one first render of the environment in argv[2].
CHILD = """
import gc, json, sys, time
gc.disable()
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from generator import environment, families
from generator.expand import expand
source, doc = environment.load_documents(Path(sys.argv[2]))
env = expand(doc, source.name)
for check in families.checks().values():
    check(env)
seconds = {}
for family in families.descriptors():
    start = time.process_time()
    family.render(env, families.Pins())
    seconds[family.name] = time.process_time() - start
print(json.dumps(seconds))
"""
PAIRED_FAMILIES = [*BOOT_FAMILIES, "openshift"]


def paired(old: Path, nodes: int, hypervisors: int, repeat: int) -> None:
    """Median CPU of each boot-service family in a first render, old checkout vs this one."""
    import json
    import statistics
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        env_dir = Path(tmp) / "environments/big"
        env_dir.mkdir(parents=True)
        shutil.copytree(ROOT / "blueprints", Path(tmp) / "blueprints")
        for extra in (ROOT / "environments/lab").iterdir():
            if extra.name != "env.yaml" and extra.is_file():
                shutil.copy(extra, env_dir / extra.name)
        (env_dir / "env.yaml").write_text(environment_yaml(nodes, hypervisors))
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for _ in range(repeat):
            for label, root in (("old", old), ("new", ROOT)):
                out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(env_dir)],
                                     check=True, capture_output=True, text=True).stdout
                runs[label].append(json.loads(out))
    print(f"first render, {nodes} nodes, CPU seconds, medians of {repeat} paired runs")
    total = {"old": 0.0, "new": 0.0}
    for name in PAIRED_FAMILIES:
        old_s, new_s = (statistics.median(r.get(name, 0.0) for r in runs[label])
                        for label in ("old", "new"))
        total["old"] += old_s
        total["new"] += new_s
        print(f"  {name:<10} old {old_s:6.3f}  new {new_s:6.3f}  "
              f"x{old_s / new_s if new_s else 0:5.2f}")
    print(f"  together   old {total['old']:6.3f}  new {total['new']:6.3f}  "
          f"x{total['old'] / total['new']:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--hypervisors", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--paired", type=Path, metavar="OLD_CHECKOUT",
                        help="first renders, paired against OLD_CHECKOUT's generator")
    args = parser.parse_args()
    if args.paired is not None:
        paired(args.paired.resolve(), args.nodes, args.hypervisors, args.repeat)
        return
    start = time.perf_counter()
    env = load(args.nodes, args.hypervisors)
    print(f"environment: {len(env.nodes)} nodes, {len(env.hypervisors)} hypervisors, "
          f"network {env.networks[0].cidr} (loaded in {time.perf_counter() - start:.2f} s)")
    families = registry()
    total = 0.0
    for name in BOOT_FAMILIES:
        if name not in families:
            print(f"  {name:<10} not registered")
            continue
        seconds, files = best(families[name], env, args.repeat)
        total += seconds
        print(f"  {name:<10} {seconds * 1000:8.1f} ms  {files:5d} files")
    for name, provider, variant in variants(env):
        seconds, files = best(families[name], variant, args.repeat)
        print(f"  {name:<4} {provider:<8} {seconds * 1000:6.1f} ms  {files:5d} files")
    verdict = "OK" if total < TARGET_SECONDS else "OVER"
    print(f"boot-service families together: {total * 1000:.1f} ms "
          f"(target < {TARGET_SECONDS * 1000:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
