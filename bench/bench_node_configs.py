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
from generator.families import Pins, registry  # noqa: E402
from generator.model import Environment  # noqa: E402

# Families measured here, by registry name. The OpenShift environment exercises the
# Ignition side; KUBEADM_FAMILIES run on a kubeadm variant of the same size.
# Other item-4 helper: add your family names to these tuples (one line each).
OPENSHIFT_FAMILIES = ("ignition", "openshift")
KUBEADM_FAMILIES: tuple[str, ...] = (
    # "kubeadm", "cloud-init", "kubernetes",
)
# Families whose time counts against the < 1 s target (Ignition + Kubernetes).
TARGET_FAMILIES = ("ignition", "kubernetes")
TARGET_SECONDS = 1.0


def write_environment(root: Path, nodes: int, flavour: str) -> str:
    """Write a repo with `environments/big-<flavour>/env.yaml` of `nodes` nodes; return its ref."""
    for name in ("blueprints",):
        if not (root / name).exists():
            shutil.copytree(ROOT / name, root / name)
    net = IPv4Network("10.20.0.0/20")
    hosts = list(net.hosts())
    helper, gateway = hosts[1], hosts[0]
    openshift = flavour == "openshift"
    roles = (["helper", "bootstrap"] if openshift else ["storage"]) + ["master"] * 3
    roles += ["worker"] * (nodes - len(roles))
    hv_count = max(1, nodes // 50)
    lines = [
        "apiVersion: gen/v1", "kind: Environment",
        f"metadata: {{name: big-{flavour}}}",
        f"blueprint: {'openshift-upi' if openshift else 'kubeadm'}",
        "cluster:", "  name: big", "  baseDomain: example.com",
        "  sshAuthorizedKeys: [{file: ~/.ssh/id_rsa.pub}]",
    ]
    if openshift:
        lines.append("  pullSecret: {env: GEN_PULL_SECRET}")
    lines += ["networks:", f"  - {{name: lan, cidr: {net}, gateway: {gateway}, dns: [{helper}], "
              "bridge: br0}", "hypervisors:"]
    lines += [f"  - {{name: hv{i}, uri: 'qemu+ssh://root@hv{i}/system', domainType: kvm, "
              "bridge: br0, pool: {name: default, path: /var/lib/libvirt/images}}"
              for i in range(hv_count)]
    lines.append("nodes:")
    counters: dict[str, int] = {}
    for index, role in enumerate(roles):
        number = counters[role] = counters.get(role, -1) + 1
        name = role if role in ("helper", "bootstrap") else f"{role}{number}"
        lines.append(f"  - {{name: {name}, role: {role}, hypervisor: hv{index % hv_count}, "
                     f"nics: [{{network: lan, ip: {hosts[index + 1]}}}]}}")
    env_dir = root / "environments" / f"big-{flavour}"
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "env.yaml").write_text("\n".join(lines) + "\n")
    return f"env/big-{flavour}"


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
    counted = {n: t for n, t in results.items() if n in TARGET_FAMILIES}
    total = sum(counted.values())
    verdict = "ok" if total < TARGET_SECONDS else "OVER TARGET"
    print(f"Ignition + Kubernetes families ({', '.join(counted) or 'none'}): "
          f"{total * 1000:.1f} ms (target < {TARGET_SECONDS * 1000:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
