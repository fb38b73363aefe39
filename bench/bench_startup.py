"""Process start: `gen --help` and `gen render env/lab` against `python3 -c pass`.

Targets (issue 20): render within 2.5x of the interpreter's own start, --help within 1.5x.
The three commands run interleaved (pass, help, render, pass, ...) so load on a shared
machine hits them alike; each figure is the median of --runs, as wall time and as CPU time
(user + system of the child, steadier when other work competes for the cores). Bytecode
caching is on for all three (PYTHONDONTWRITEBYTECODE removed, one warm-up run first), as
for an installed gen; gen's own caches (its GEN_CACHE_DIR, a fresh one per run of this
script) are warmed by that run too: the compiled schemas and regular expressions, the
help text (`gen --help` is then printed without importing click), the generator's
source hashes; the measured `gen render env/lab` is a render-cache hit.

    python bench/bench_startup.py [--runs 15] [--instructions]

--instructions also counts each command's instructions under valgrind (callgrind, one run
each after the warm-up): unlike time, the count does not move with the load of a shared
machine, so it shows a change of a few percent that medians of CPU time cannot.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(command: list[str], env: dict[str, str]) -> int:
    """Instructions one run of `command` executes (valgrind's callgrind, user space)."""
    result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                             *command], cwd=ROOT, env=env, check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit("valgrind printed no instruction count")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions under valgrind (needs valgrind)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "GEN_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="gen-bench-startup-") as tmp:
        # gen's caches (regex, help, source hashes, compiled schemas) of this run alone:
        # filled by the warm-up, not by whatever other work left in ~/.cache/gen
        env["GEN_CACHE_DIR"] = f"{tmp}/cache"
        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "gen --help": [sys.executable, "-m", "generator", "--help"],
            "gen render env/lab": [sys.executable, "-m", "generator", "render", "env/lab",
                                   "--out", f"{tmp}/lab"],
        }
        for command in commands.values():  # warm: bytecode, schema cache, first write
            timed(command, env)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                figures[name].append(timed(command, env))
        counts = ({name: instructions(command, env) for name, command in commands.items()}
                  if args.instructions else {})
    wall = {n: statistics.median(w for w, _ in f) for n, f in figures.items()}
    cpu = {n: statistics.median(c for _, c in f) for n, f in figures.items()}
    floor = "python3 -c pass"
    print(f"process start, medians of {args.runs} interleaved runs (load average "
          f"{os.getloadavg()[0]:.1f}):")
    print(f"  {floor:20} wall {wall[floor] * 1000:6.0f} ms  cpu {cpu[floor] * 1000:6.0f} ms")
    for name, target in (("gen --help", 1.5), ("gen render env/lab", 2.5)):
        ratio_wall, ratio_cpu = wall[name] / wall[floor], cpu[name] / cpu[floor]
        verdict = "met" if ratio_wall <= target else "NOT met"
        print(f"  {name:20} wall {wall[name] * 1000:6.0f} ms  cpu {cpu[name] * 1000:6.0f} ms  "
              f"ratio wall {ratio_wall:.2f}x cpu {ratio_cpu:.2f}x  "
              f"(target <= {target}x: {verdict})")
    if counts:
        print("instructions (callgrind, one run each):")
        for name, count in counts.items():
            print(f"  {name:20} {count / 1e6:7.1f} M  ratio {count / counts[floor]:.2f}x")


if __name__ == "__main__":
    main()
