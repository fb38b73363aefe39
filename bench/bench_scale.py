"""10,000 nodes: `gen render` against the file system's floor, growth 5k -> 10k, peak RSS.

Targets (issue 20), on tmpfs (/dev/shm) so the disk's journal does not blur gen's cost:
  - first render within 3x of the floor of creating the same files (open, write, close
    of every file of the rendered tree, in one Python process, into a fresh directory);
  - re-render of an unchanged tree within 3x of the floor of reading every file (the
    render cache in the store, a folder of the scratch repo here, serves it; each first
    render starts from an empty cache, so it pays for storing its entry);
  - first-render time at 10k nodes at most 2.05x the time at 5k (linear: 2.00x);
  - peak RSS under 250 MB.
Each figure is the median of --runs; a gen run and its floor alternate, so load on a
shared machine hits both alike. CPU time (user + system of the child) is printed beside
wall time; on a loaded machine it is the steadier of the two.

    python bench/bench_scale.py [--runs 5] [--nodes 10000] [--hypervisors 20] [--first-only]

--first-only measures the first render, its floor, growth and RSS alone (no re-render), in
half the time.
"""

from __future__ import annotations

import argparse
import os
import resource
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
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
TIME = "/usr/bin/time"

FLOOR_WRITE = """
import os, sys
src, dst = sys.argv[1], sys.argv[2]
files = []
for top, dirs, names in os.walk(src):
    for name in names:
        path = os.path.join(top, name)
        with open(path, 'rb') as handle:
            files.append((os.path.relpath(path, src), handle.read()))
import time
start, cpu = time.perf_counter(), time.process_time()
made = set()
for rel, data in files:
    parent = os.path.dirname(os.path.join(dst, rel))
    if parent not in made:
        os.makedirs(parent, exist_ok=True)
        made.add(parent)
    fd = os.open(os.path.join(dst, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
print(time.perf_counter() - start, time.process_time() - cpu)
"""

FLOOR_READ = """
import os, sys, time
start, cpu = time.perf_counter(), time.process_time()
for top, dirs, names in os.walk(sys.argv[1]):
    for name in names:
        fd = os.open(os.path.join(top, name), os.O_RDONLY)
        os.read(fd, os.fstat(fd).st_size + 1)
        os.close(fd)
print(time.perf_counter() - start, time.process_time() - cpu)
"""


def env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONDONTWRITEBYTECODE", "GEN_DEBUG")}
    environ["PYTHONPATH"] = str(ROOT)
    return environ


def gen(repo: Path, *args: str) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS MB) of one `gen ...` process."""
    report = repo / "time.out"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([TIME, "-f", "%M", "-o", str(report), sys.executable, "-m",
                           "generator", *args], cwd=repo, env=env(), capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"gen {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(report.read_text().split()[-1]) // 1024


def floor(script: str, *args: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the floor's loop alone (its process start is not counted)."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                         text=True, check=True, env=env())
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def measure(nodes: int, hypervisors: int, runs: int, again_too: bool = True,
            ) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"gen-bench-scale-{nodes}-", dir=SHM) as tmp:
        repo = Path(tmp)
        os.environ["GEN_STORE"] = str(repo / "store")  # the render cache: in the scratch repo
        write_environment(repo, nodes, hypervisors, name="big")
        out = repo / "out"
        gen(repo, "render", "env/big", "--out", str(out))  # warm: bytecode, schema cache
        files = sum(len(names) for _, _, names in os.walk(out)) - 1  # minus the marker
        first, first_cpu, rss, again, again_cpu = [], [], [], [], []
        made: list[tuple[float, float]] = []
        read: list[tuple[float, float]] = []
        for _ in range(runs):
            shutil.rmtree(out)
            shutil.rmtree(repo / "store" / "renders", ignore_errors=True)  # a miss
            wall, cpu, peak = gen(repo, "render", "env/big", "--out", str(out))
            first.append(wall)
            first_cpu.append(cpu)
            rss.append(peak)
            scratch = repo / "floor"
            made.append(floor(FLOOR_WRITE, str(out), str(scratch)))
            shutil.rmtree(scratch)
            if not again_too:
                continue
            wall, cpu, peak = gen(repo, "render", "env/big", "--out", str(out))
            again.append(wall)
            again_cpu.append(cpu)
            rss.append(peak)
            read.append(floor(FLOOR_READ, str(out)))
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return {"files": files, "first": med(first), "first_cpu": med(first_cpu),
            "again": med(again), "again_cpu": med(again_cpu),
            "write_floor": med([w for w, _ in made]),
            "write_floor_cpu": med([c for _, c in made]),
            "read_floor": med([w for w, _ in read]), "read_floor_cpu": med([c for _, c in read]),
            "rss": max(rss)}


def store_cost(nodes: int, hypervisors: int, runs: int) -> None:
    """What storing the render-cache entry costs a first render: a miss that stores, paired
    with `--no-cache` (renders, stores nothing), alternating, medians."""
    with tempfile.TemporaryDirectory(prefix=f"gen-bench-store-{nodes}-", dir=SHM) as tmp:
        repo = Path(tmp)
        os.environ["GEN_STORE"] = str(repo / "store")
        write_environment(repo, nodes, hypervisors, name="big")
        out = repo / "out"
        gen(repo, "render", "env/big", "--out", str(out))  # warm: bytecode, schema cache
        stored: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        for _ in range(runs):
            for extra, into in (((), stored), (("--no-cache",), bare)):
                shutil.rmtree(out)
                shutil.rmtree(repo / "store" / "renders", ignore_errors=True)
                wall, cpu, _ = gen(repo, "render", "env/big", "--out", str(out), *extra)
                into.append((wall, cpu))
    med = statistics.median
    print(f"{nodes} nodes, medians of {runs}: first render storing its entry "
          f"{med(w for w, _ in stored):.2f} s (cpu {med(c for _, c in stored):.2f} s), "
          f"--no-cache {med(w for w, _ in bare):.2f} s (cpu {med(c for _, c in bare):.2f} s): "
          f"{med(c for _, c in stored) / med(c for _, c in bare):.3f}x cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--hypervisors", type=int, default=20)
    parser.add_argument("--store-cost", action="store_true",
                        help="only measure what storing the render-cache entry costs a first "
                             "render (against --no-cache)")
    parser.add_argument("--first-only", action="store_true",
                        help="first render only: no re-render and no read floor")
    args = parser.parse_args()
    if args.store_cost:
        store_cost(args.nodes, args.hypervisors, args.runs)
        return
    again_too = not args.first_only
    half = measure(args.nodes // 2, args.hypervisors, args.runs, again_too)
    full = measure(args.nodes, args.hypervisors, args.runs, again_too)
    print(f"medians of {args.runs} runs into {SHM} (load average {os.getloadavg()[0]:.1f}):")
    for nodes, fig in ((args.nodes // 2, half), (args.nodes, full)):
        print(f"  {nodes} nodes ({fig['files']:.0f} files): first render {fig['first']:.2f} s "
              f"(cpu {fig['first_cpu']:.2f} s), create floor {fig['write_floor']:.2f} s "
              f"(cpu {fig['write_floor_cpu']:.2f} s); re-render {fig['again']:.2f} s (cpu "
              f"{fig['again_cpu']:.2f} s), read floor {fig['read_floor']:.2f} s (cpu "
              f"{fig['read_floor_cpu']:.2f} s); peak RSS {fig['rss']:.0f} MB")
    checks = (
        ("first render / create floor", full["first"] / full["write_floor"], 3.0),
        ("first render / create floor, cpu", full["first_cpu"] / full["write_floor_cpu"],
         3.0),
        ("re-render / read floor", full["again"] / full["read_floor"], 3.0),
        ("re-render / read floor, cpu", full["again_cpu"] / full["read_floor_cpu"], 3.0),
        (f"growth {args.nodes // 2} -> {args.nodes} (first render)",
         full["first"] / half["first"], 2.05),
        (f"growth {args.nodes // 2} -> {args.nodes} (first render, cpu)",
         full["first_cpu"] / half["first_cpu"], 2.05),
        ("peak RSS, MB", full["rss"], 250.0),
    )
    for label, value, target in checks:
        if value != value:  # NaN: not measured (--first-only)
            continue
        print(f"  {label:45} {value:7.2f}  target <= {target}: "
              f"{'met' if value <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
