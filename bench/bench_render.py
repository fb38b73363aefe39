"""Benchmark `gen render`: whole-process time for env/lab, and large generated environments.

Prints, for this machine:
  - `gen render env/lab`, process start to exit: median of N runs (target < 0.5 s);
  - a generated 1,000-node / 20-hypervisor environment: first render (writes every file),
    re-render (nothing changed) and `--check`, each with peak RSS (targets < 3 s, < 300 MB);
  - the same for 2,000 nodes, and the 2,000/1,000 time ratio (target about 2).

    python bench/bench_render.py [--runs 10] [--nodes 1000] [--hypervisors 20]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genenv import write_environment  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIME = shutil.which("time") or "/usr/bin/time"


def run(args: list[str], cwd: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one `gen ...` process, start to exit."""
    environ = {k: v for k, v in os.environ.items() if k != "GEN_DEBUG"}
    command = [sys.executable, "-m", "generator", *args]
    if Path(TIME).exists():
        report = Path(tempfile.mktemp(prefix="gen-bench-time-"))
        start = time.perf_counter()
        result = subprocess.run([TIME, "-f", "%M", "-o", str(report), *command], cwd=cwd,
                                env=environ, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        rss_kb = int(report.read_text().split()[-1])
        report.unlink()
    else:  # getrusage of children is a running maximum: fine for increasing sizes
        import resource

        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True,
                                check=False)
        elapsed = time.perf_counter() - start
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode not in (0, 1) or (result.returncode == 1 and "--check" not in args):
        raise SystemExit(f"gen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed, rss_kb // 1024


def bench_lab(runs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="gen-bench-lab-") as tmp:
        out = Path(tmp) / "out"
        first, _ = run(["render", "env/lab", "--out", str(out)], ROOT)
        times = [run(["render", "env/lab", "--out", str(out)], ROOT)[0] for _ in range(runs)]
    median = statistics.median(times)
    print(f"gen render env/lab: median {median:.3f} s over {runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}; first write {first:.3f} s) "
          f"target < 0.5 s: {'ok' if median < 0.5 else 'MISSED'}")
    return median


def bench_big(nodes: int, hypervisors: int, target: bool = True) -> tuple[float, float]:
    """(first render on disk, first render into tmpfs) seconds; prints every figure."""
    with tempfile.TemporaryDirectory(prefix=f"gen-bench-{nodes}-") as tmp:
        root = Path(tmp)
        write_environment(root, nodes, hypervisors, name="big")
        first, first_rss = run(["render", "env/big"], root)
        files = sum(1 for p in (root / "rendered" / "big").rglob("*") if p.is_file())
        again, again_rss = run(["render", "env/big"], root)
        check, check_rss = run(["render", "env/big", "--check"], root)
        shm = Path("/dev/shm")
        if shm.is_dir():  # the same first render into tmpfs: gen's cost without the disk's
            with tempfile.TemporaryDirectory(prefix="gen-bench-", dir=shm) as mem:
                seconds = run(["render", "env/big", "--out", mem + "/o"], root)[0]
            tmpfs = f"; first render into tmpfs {seconds:.2f} s"
        else:
            seconds, tmpfs = first, ""
    verdict = "ok" if first < 3 and first_rss < 300 else "MISSED"
    print(f"{nodes} nodes / {hypervisors} hypervisors ({files} files): "
          f"render {first:.2f} s, {first_rss} MB peak; re-render {again:.2f} s, "
          f"{again_rss} MB; --check {check:.2f} s, {check_rss} MB{tmpfs}"
          + (f"  target < 3 s, < 300 MB: {verdict}" if target else ""))
    return first, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description="gen render benchmark")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--hypervisors", type=int, default=20)
    args = parser.parse_args()
    bench_lab(args.runs)
    one, one_mem = bench_big(args.nodes, args.hypervisors)
    two, two_mem = bench_big(args.nodes * 2, args.hypervisors, target=False)
    print(f"{args.nodes * 2}/{args.nodes} nodes time ratio: {two / one:.2f} on disk, "
          f"{two_mem / one_mem:.2f} into tmpfs (target about 2; on disk, creating the files "
          "dominates)")


if __name__ == "__main__":
    main()
