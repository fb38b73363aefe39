"""Lock benchmarks; prints its figures.

1. `gen verify` (whole process) of a rendered 1,000-node environment: target < 2 s; and how
   many bytes it hashes, against the rendered tree's NAR size (target: each byte of the tree
   once per digest the lock records: its whole-tree hash and its subtree's, so 2x).
2. NAR hashing of large files: target >= 200 MB/s, printed beside `nix hash path` on the
   same tree as a ratio.

Run: python bench/bench_lock.py [--nodes 1000] [--mib 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.lock import nar  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from genenv import write_environment  # noqa: E402


def big_environment(repo: Path, nodes: int) -> None:
    """An openshift-upi environment with `nodes` nodes spread over 20 hypervisors, written
    by bench/genenv.py (the generator the other benchmarks use), with the lab's stream file
    and a secrets dir holding the SSH key its env.yaml names."""
    write_environment(repo, nodes, 20, name="big")
    shutil.copy(ROOT / "environments" / "lab" / "rhcos-4.16.json",
                repo / "environments" / "big" / "rhcos-4.16.json")
    secrets = repo / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "id_rsa.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench\n")


def gen(repo: Path, *args: str) -> float:
    return _run(repo, ["-m", "generator", *args])[0]


def _run(repo: Path, argv: list[str]) -> tuple[float, str]:
    env = {**os.environ, "GEN_STORE": str(repo / "store"), "PYTHONPATH": str(ROOT),
           "GEN_SECRET_PULL": '{"auths": {}}', "GEN_SECRETS_DIR": str(repo / "secrets")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=repo, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, proc.stderr


# `gen verify` with every sha256 digest counting the bytes it is fed (printed last on stderr).
COUNTING = """
import atexit, hashlib, sys
real, fed = hashlib.sha256, [0]
class Counting:
    def __init__(self, data=b"", **kw):
        self._digest = real(**kw)
        self.update(data)
    def update(self, data):
        fed[0] += memoryview(data).nbytes
        self._digest.update(data)
    def __getattr__(self, name):
        return getattr(self._digest, name)
hashlib.sha256 = Counting
atexit.register(lambda: print(f"hashed {fed[0]}", file=sys.stderr))
from generator.cli import main
main(sys.argv[1:])
"""


def bytes_hashed(repo: Path, env: str) -> int:
    """Bytes `gen verify env` feeds to sha256 digests, in all."""
    _, err = _run(repo, ["-c", COUNTING, "verify", env])
    return int(err.rsplit("hashed ", 1)[1])


def bench_verify(tmp: Path, nodes: int) -> None:
    repo = tmp / "repo"
    big_environment(repo, nodes)
    gen(repo, "lock", "env/big")
    render = gen(repo, "render", "env/big", "--locked")
    files = sum(1 for p in (repo / "rendered" / "big").rglob("*") if p.is_file())
    runs = [gen(repo, "verify", "env/big") for _ in range(3)]
    print(f"render --locked, {nodes} nodes ({files} files): {render:.2f} s")
    tree = nar.read_dir(repo / "rendered" / "big", exclude=(".gen-rendered",))
    size = len(nar.nar_bytes(tree))
    hashed = bytes_hashed(repo, "env/big")
    print(f"gen verify hashed {hashed:,} bytes: {hashed / size:.2f}x the rendered tree's NAR "
          f"({size:,} bytes; target 2x: once for the whole-tree hash, once for its subtree's; "
          f"the rest is the inputs)")
    bench_nar_tree(tmp, repo / "rendered" / "big")
    print(f"gen verify, {nodes} nodes: best {min(runs):.2f} s, worst {max(runs):.2f} s "
          f"(target < 2 s) {'OK' if min(runs) < 2 else 'SLOW'}")


def nix_hash(tree: Path, home: Path) -> tuple[float, str | None]:
    env = {**os.environ, "NIX_REMOTE": "", "HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.run(["nix", "--extra-experimental-features", "nix-command", "hash", "path",
                           "--type", "sha256", "--sri", str(tree)],
                          capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc.stdout.strip() if proc.returncode == 0 else None


def sha256sum_floor(tree: Path) -> float:
    """Hashing the same bytes with coreutils (every file's contents, one stream)."""
    start = time.perf_counter()
    subprocess.run(f"find '{tree}' -type f -print0 | sort -z | xargs -0 cat | sha256sum",
                   shell=True, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_nar_tree(tmp: Path, tree: Path, runs: int = 5) -> None:
    """NAR hash of a rendered tree (thousands of small files): gen against `nix hash path`
    and sha256sum over the same bytes, interleaved, medians of `runs`."""
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    ours, nix, floor = [], [], []
    same = True
    for _ in range(runs):
        start = time.perf_counter()
        digest = nar.path_hash(tree)
        ours.append(time.perf_counter() - start)
        took, theirs = nix_hash(tree, tmp)
        nix.append(took)
        same = same and theirs in (digest, None)
        floor.append(sha256sum_floor(tree))
    med = statistics.median
    mb = size / 1e6
    print(f"NAR hash of the rendered tree ({mb:.1f} MB), medians of {runs}: gen "
          f"{med(ours):.3f} s = {mb / med(ours):.0f} MB/s; nix hash path {med(nix):.3f} s; "
          f"sha256sum of the bytes {med(floor):.3f} s; gen is {med(nix) / med(ours):.2f}x "
          f"nix's speed (target >= 1: {'met' if med(ours) <= med(nix) else 'NOT met'}; "
          f"{'same hash' if same else 'HASH DIFFERS'})")


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
