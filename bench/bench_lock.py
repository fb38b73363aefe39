"""Lock benchmarks; prints its figures.

1. `gen verify` (whole process) of a rendered 1,000-node environment: target < 2 s.
2. NAR hashing of large files: target >= 200 MB/s, printed beside `nix hash path` on the
   same tree as a ratio.

Run: python bench/bench_lock.py [--nodes 1000] [--mib 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.lock import nar  # noqa: E402


def big_environment(repo: Path, nodes: int) -> None:
    """An openshift-upi environment with `nodes` nodes spread over 20 hypervisors."""
    genenv = ROOT / "bench" / "genenv.py"
    shutil.copytree(ROOT / "blueprints", repo / "blueprints")
    env_dir = repo / "environments" / "big"
    if genenv.is_file():  # the shared generator, when another helper has written it
        proc = subprocess.run([sys.executable, str(genenv), "--nodes", str(nodes),
                               "--out", str(env_dir)], capture_output=True, text=True)
        if proc.returncode == 0 and (env_dir / "env.yaml").is_file():
            return
    env_dir.mkdir(parents=True, exist_ok=True)
    hvs = 20
    lines = ["apiVersion: gen/v1", "kind: Environment", "metadata: {name: big}",
             "blueprint: openshift-upi", "cluster:", "  name: big", "  baseDomain: example.com",
             "  networkType: OVNKubernetes", "  pullSecret: {env: GEN_SECRET_PULL}",
             "networks:", "  - {name: lan, cidr: 10.20.0.0/16, gateway: 10.20.0.1, "
             "dns: [10.20.0.10], bridge: br0}", "hypervisors:"]
    lines += [f"  - {{name: hv{i}, uri: 'qemu+ssh://root@hv{i}/system', domainType: kvm, "
              f"bridge: br0, pool: {{name: default, path: /var/lib/libvirt/images}}}}"
              for i in range(hvs)]
    lines.append("nodes:")
    roles = ["helper", "bootstrap", "master", "master", "master"]
    for i in range(nodes):
        role = roles[i] if i < len(roles) else "worker"
        ip = f"10.20.{(i + 10) // 250}.{(i + 10) % 250 + 2}"
        name = "helper" if i == 0 else f"{role}{i}"
        lines.append(f"  - {{name: {name}, role: {role}, hypervisor: hv{i % hvs}, "
                     f"nics: [{{network: lan, ip: {ip}}}]}}")
    lines += ["artifacts:", "  os:"]
    for art in ("kernel", "initramfs", "rootfs"):
        lines += [f"    rhcos-live-{art}:", f"      stream: {{file: rhcos.json, artifact: {art}}}"]
    (env_dir / "env.yaml").write_text("\n".join(lines) + "\n")
    shutil.copy(ROOT / "environments" / "lab" / "rhcos-4.16.json", env_dir / "rhcos.json")


def gen(repo: Path, *args: str) -> float:
    env = {**os.environ, "GEN_STORE": str(repo / "store"), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=repo, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"gen {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def bench_verify(tmp: Path, nodes: int) -> None:
    repo = tmp / "repo"
    big_environment(repo, nodes)
    gen(repo, "lock", "env/big")
    render = gen(repo, "render", "env/big", "--locked")
    files = sum(1 for p in (repo / "rendered" / "big").rglob("*") if p.is_file())
    runs = [gen(repo, "verify", "env/big") for _ in range(3)]
    print(f"render --locked, {nodes} nodes ({files} files): {render:.2f} s")
    print(f"gen verify, {nodes} nodes: best {min(runs):.2f} s, worst {max(runs):.2f} s "
          f"(target < 2 s) {'OK' if min(runs) < 2 else 'SLOW'}")


def bench_nar(tmp: Path, mib: int) -> None:
    tree = tmp / "nar"
    (tree / "sub").mkdir(parents=True)
    block = os.urandom(1 << 20)
    for name, size in (("a.img", mib // 2), ("sub/b.img", mib - mib // 2)):
        with (tree / name).open("wb") as handle:
            for _ in range(size):
                handle.write(block)
    (tree / "sub" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tree / "sub" / "run.sh").chmod(0o755)
    nar.path_hash(tree)  # warm the page cache for both contenders
    start = time.perf_counter()
    ours = nar.path_hash(tree)
    ours_s = time.perf_counter() - start
    env = {**os.environ, "NIX_REMOTE": "", "HOME": str(tmp)}
    start = time.perf_counter()
    proc = subprocess.run(["nix", "--extra-experimental-features", "nix-command", "hash", "path",
                           "--type", "sha256", "--sri", str(tree)],
                          capture_output=True, text=True, env=env)
    nix_s = time.perf_counter() - start
    rate = mib * 1.048576 / ours_s
    print(f"NAR hash of {mib} MiB (2 large files): gen {ours_s:.2f} s = {rate:.0f} MB/s "
          f"(target >= 200) {'OK' if rate >= 200 else 'SLOW'}")
    if proc.returncode == 0:
        same = "same hash" if proc.stdout.strip() == ours else "HASH DIFFERS"
        print(f"nix hash path on the same tree: {nix_s:.2f} s = {mib * 1.048576 / nix_s:.0f} "
              f"MB/s; gen/nix speed ratio {nix_s / ours_s:.2f}x ({same})")
    else:
        print(f"nix hash path failed: {proc.stderr.strip()}")
    data = (tree / "a.img").read_bytes()
    start = time.perf_counter()
    nar.tree_hash({"a.img": data})
    mem_s = time.perf_counter() - start
    print(f"NAR hash of an in-memory Tree ({len(data) >> 20} MiB): "
          f"{len(data) / 1e6 / mem_s:.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gen-bench-lock-") as tmp:
        bench_verify(Path(tmp), args.nodes)
        bench_nar(Path(tmp), args.mib)


if __name__ == "__main__":
    main()
