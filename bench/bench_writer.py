"""Benchmark the render writer on a synthetic tree (descriptor-relative, no-follow I/O).

Prints, for this machine, the best of N rounds for a tree of F files of S bytes spread over
directories two levels deep: the first write (every file staged, one syncfs, renamed), a
rewrite with nothing changed (scan and compare only) and `read_tree` (what --check reads).

    python bench/bench_writer.py [--files 6000] [--size 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.writer import read_tree, write_tree  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6000)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tree = {f"d{i // 60}/s{i % 7}/f{i}.txt": b"x" * args.size for i in range(args.files)}
    best: dict[str, float] = {}
    base = Path(tempfile.mkdtemp(prefix="gen-bench-writer-"))
    try:
        out = base / "out"
        steps = (("first write", lambda: write_tree(out, tree, "bench")),
                 ("unchanged rewrite", lambda: write_tree(out, tree, "bench")),
                 ("read_tree", lambda: read_tree(out)))
        for _ in range(args.rounds):
            shutil.rmtree(out, ignore_errors=True)
            for label, run in steps:
                start = time.perf_counter()
                run()
                best[label] = min(best.get(label, float("inf")), time.perf_counter() - start)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"writer, {args.files} files of {args.size} B, best of {args.rounds}:")
    for label, seconds in best.items():
        print(f"  {label:18} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
