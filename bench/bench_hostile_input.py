"""Benchmark the input side's bounds (docs/threat-model.md): what hostile input costs.

Prints, for this machine (CPU seconds, best of 3):
  - loading a generated 1,000- and 5,000-node env.yaml (files of 64 KB or more take the
    lean composer, which records top-level positions only and finds the rest on demand;
    anything unusual goes to the bounded event composer): as fast as a plain load
    (target < 1.5 s at 5,000);
  - refusing an alias bomb (9 levels of 9 aliases, 387 million values) (target < 0.5 s),
    100,000 nested `[` (target < 0.1 s) and a FIFO (target: immediate, no hang);
  - the mutation run's throughput: validate (+ render when valid) per case, CPU seconds
    (target: a few thousand cases in well under a minute of CPU).

    python bench/bench_hostile_input.py [--cases 500]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from genenv import write_environment  # noqa: E402

from generator.errors import GenError  # noqa: E402
from generator.loader import load_yaml, read_yaml_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def best_of(runs: int, action: object) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()  # CPU time: the machine is shared, wall time is noise
        action()  # type: ignore[operator]
        times.append(time.process_time() - start)
    return min(times)


def refused(text: str) -> None:
    try:
        load_yaml(text, "bench.yaml")
    except GenError:
        return
    raise AssertionError("not refused")


def alias_bomb() -> str:
    lines = ["l0: &l0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="mutation cases to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gen-bench-hostile-") as tmp:
        for nodes in (1000, 5000):
            root = Path(tmp) / f"n{nodes}"
            write_environment(root, nodes=nodes, hypervisors=20)
            text = (root / "environments" / "big" / "env.yaml").read_text()
            seconds = best_of(3, lambda text=text: load_yaml(text, "env.yaml"))
            plain = best_of(3, lambda text=text: yaml.load(text, Loader=yaml.CSafeLoader))
            print(f"load {nodes:5d}-node env.yaml ({len(text) / 1e6:.2f} MB): {seconds:.3f} s "
                  f"(PyYAML's C loader, no positions, no bounds: {plain:.3f} s)")
        print(f"refuse alias bomb:      {best_of(3, lambda: refused(alias_bomb())):.3f} s")
        print(f"refuse 100,000 '[':     {best_of(3, lambda: refused('[' * 100_000)):.4f} s")
        fifo = Path(tmp) / "fifo.yaml"
        os.mkfifo(fifo)

        def read_fifo() -> None:
            try:
                read_yaml_file(fifo, "fifo.yaml")
            except GenError:
                return

        print(f"refuse a FIFO:          {best_of(3, read_fifo):.4f} s")
        print(f"mutation run:           {mutation_rate(Path(tmp), args.cases)}")


def mutation_rate(tmp: Path, cases: int) -> str:
    from test_mutation import ENVS, mutated_text, run_case

    repo = tmp / "repo"
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name)
    (repo / "lock").mkdir()
    rng = random.Random(14)
    bases = {env: yaml.load((ROOT / "environments" / env / "env.yaml").read_text(),
                            Loader=yaml.CSafeLoader) for env in ENVS}
    texts = [(ENVS[i % 2], mutated_text(bases[ENVS[i % 2]], rng)) for i in range(cases)]
    start = time.process_time()
    valid = sum(run_case(repo, env, text, i + 1) == "valid" for i, (env, text) in
                enumerate(texts))
    cpu = time.process_time() - start
    return (f"{cases} cases ({valid} valid, rendered) in {cpu:.1f} CPU s = "
            f"{cpu / cases * 1000:.1f} ms/case, {cpu / cases * 3000:.0f} CPU s per 3,000")


if __name__ == "__main__":
    main()
