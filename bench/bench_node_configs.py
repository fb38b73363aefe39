#!/usr/bin/env python3
"""How long the node- and cluster-config families take on a 1,000-node OpenShift environment.

Target (issue 4): the Ignition and Kubernetes families together add < 1 s to the render.

    python bench/bench_node_configs.py [--nodes 1000] [--repeat 5]

Prints one line per family (best of --repeat runs, files rendered) and the total of the
families under the target. The environment is generated into a temp dir (bench/genenv.py,
when it exists, can replace `write_environment`); it is loaded once, outside the timing.
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

from generator.environment import load_environment  # noqa: E402
from generator.families import Pins, registry, render_all  # noqa: E402
from generator.model import Environment  # noqa: E402

# Families measured here, by registry name. The OpenShift environment exercises the
# Ignition side; KUBEADM_FAMILIES run on a kubeadm variant of the same size.
# Other item-4 helper: add your family names to these tuples (one line each).
OPENSHIFT_FAMILIES = ("ignition", "openshift")
KUBEADM_FAMILIES = ("kubeadm", "cloud-init", "kubernetes")
# Families whose time counts against the < 1 s target (Ignition + Kubernetes).
TARGET_FAMILIES = ("ignition", "kubernetes")
TARGET_SECONDS = 1.0


def write_environment(root: Path, nodes: int, flavour: str) -> str:
    """Write a repo with `environments/big-<flavour>/env.yaml` of `nodes` nodes; return its ref."""
    if not (root / "blueprints").exists():
        shutil.copytree(ROOT / "blueprints", root / "blueprints")
    env_dir = root / "environments" / f"big-{flavour}"
    env_dir.mkdir(parents=True, exist_ok=True)
    text = openshift_env(nodes) if flavour == "openshift" else kubeadm_env(nodes)
    for extra in (ROOT / "environments" / ("lab" if flavour == "openshift" else "k8s-lab")
                  ).glob("*.json"):  # local stream metadata the artifacts refer to
        shutil.copy(extra, env_dir / extra.name)
    (env_dir / "env.yaml").write_text(text)
    return f"env/big-{flavour}"


NET = IPv4Network("10.20.0.0/20")


def node_lines(names_roles: list[tuple[str, str]], hv_count: int) -> list[str]:
    hosts = list(NET.hosts())
    return [f"  - {{name: {name}, role: {role}, hypervisor: hv{i % hv_count}, "
            f"nics: [{{network: lan, ip: {hosts[i + 1]}}}]}}"
            for i, (name, role) in enumerate(names_roles)]


def hypervisor_lines(hv_count: int) -> list[str]:
    return ["hypervisors:"] + [
        f"  - {{name: hv{i}, uri: 'qemu+ssh://root@hv{i}/system', domainType: kvm, "
        "bridge: br0, pool: {name: default, path: /var/lib/libvirt/images}}"
        for i in range(hv_count)]


def openshift_env(nodes: int) -> str:
    """Lab A's shape (helper, bootstrap, 3 masters) grown with workers."""
    names = [("helper", "helper"), ("bootstrap", "bootstrap")]
    names += [(f"master{i}", "master") for i in range(3)]
    names += [(f"worker{i}", "worker") for i in range(nodes - len(names))]
    hv_count = max(1, nodes // 50)
    helper = list(NET.hosts())[1]
    lab = (ROOT / "environments" / "lab" / "env.yaml").read_text()
    artifacts = lab[lab.index("\nartifacts:"):] if "\nartifacts:" in lab else "\n"
    return "\n".join([
        "apiVersion: gen/v1", "kind: Environment", "metadata: {name: big-openshift}",
        "blueprint: openshift-upi",
        "cluster:", "  name: big", "  baseDomain: example.com",
        "  pullSecret: {env: GEN_SECRET_PULL}",
        "  sshAuthorizedKeys: [{file: id_rsa.pub}]",
        "networks:", f"  - {{name: lan, cidr: {NET}, gateway: {NET[1]}, dns: [{helper}], "
        "bridge: br0}", *hypervisor_lines(hv_count), "nodes:", *node_lines(names, hv_count),
    ]) + artifacts


def kubeadm_env(nodes: int) -> str:
    """Lab B (environments/k8s-lab) with its nodes replaced by 3 masters and many workers."""
    text = (ROOT / "environments" / "k8s-lab" / "env.yaml").read_text()
    head, rest = text.split("\nnetworks:", 1)
    tail = rest[rest.index("\nservices:"):]
    tail = tail.replace("192.168.111.0/255.255.255.0", f"{NET.network_address}/{NET.netmask}")
    names = [("test-storage1", "storage")] + [(f"test-master{i}", "master") for i in range(3)]
    names += [(f"test-node{i}", "worker") for i in range(nodes - len(names))]
    hv_count = max(1, nodes // 50)
    return "\n".join([
        head.replace("name: k8s-lab", "name: big-kubeadm"),
        "networks:", f"  - {{name: lan, cidr: {NET}, gateway: {NET[1]}, dns: [{NET[1]}], "
        "bridge: br0}", *hypervisor_lines(hv_count), "nodes:", *node_lines(names, hv_count),
    ]) + tail


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(env: Environment, names: tuple[str, ...], repeat: int) -> dict[str, float]:
    families = registry()
    results = {}
    for name in names:
        if name not in families:
            print(f"  {name:<12} (not registered yet)")
            continue
        family = families[name]
        files = len(family(env, Pins()))  # warm-up: schema compile, lazy imports
        results[name] = best_of(repeat, lambda family=family: family(env, Pins()))
        print(f"  {name:<12} {results[name] * 1000:8.1f} ms  {files:5d} files")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gen-bench-") as tmp:
        for flavour, names in (("openshift", OPENSHIFT_FAMILIES), ("kubeadm", KUBEADM_FAMILIES)):
            if not names:
                continue
            ref = write_environment(Path(tmp), args.nodes, flavour)
            start = time.perf_counter()
            env = load_environment(ref, cwd=Path(tmp)).model
            print(f"{flavour}: {len(env.nodes)} nodes (loaded in "
                  f"{(time.perf_counter() - start) * 1000:.0f} ms, not counted)")
            results.update(measure(env, names, args.repeat))
            start = time.perf_counter()
            files = len(render_all(env, Pins()))
            print(f"  (every family: {(time.perf_counter() - start) * 1000:.0f} ms, "
                  f"{files} files)")
    counted = {n: t for n, t in results.items() if n in TARGET_FAMILIES}
    total = sum(counted.values())
    verdict = "ok" if total < TARGET_SECONDS else "OVER TARGET"
    print(f"Ignition + Kubernetes families ({', '.join(counted) or 'none'}): "
          f"{total * 1000:.1f} ms (target < {TARGET_SECONDS * 1000:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
