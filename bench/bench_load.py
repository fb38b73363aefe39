"""Loading a 10,000-node environment in-process, phase by phase (issue 20).

A first render starts by loading its environment: read and compose the YAML, merge the
blueprint's defaults and fill role defaults, check the schema, the semantic rules, expand
the model, the model-level rules and the families' checks. This times each phase of
`load_environment_dir` on a generated environment (bench/genenv.py), in one process, with
the cyclic GC off as in `gen render`; medians of --runs. The last row is what finding every
source position costs once loaded (a large env.yaml records its top levels only and
replays the eager loader for the rest on the first error or warning that needs one).
`--tree DIR` times another checkout's generator on the same environment, alternating with
this one, so a change is measured paired against the code before it (`git archive BASE |
tar -x -C DIR`).

    python bench/bench_load.py [--nodes 10000] [--hypervisors 20] [--runs 5] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a child, so each tree's modules load fresh and in-process caches start cold.
CHILD = r"""
import gc, json, sys, time
from pathlib import Path
gc.disable()
from generator import environment as e
from generator.schema import schema_problems
from generator.semantic import model_problems, semantic_problems
from generator.expand import expand
env_dir = Path(sys.argv[1])
phases = {}
def clock(name, fn, *args):
    start = time.process_time()
    result = fn(*args)
    phases[name] = phases.get(name, 0.0) + time.process_time() - start
    return result
total = time.process_time()
source, doc = clock("read + merge", e.load_documents, env_dir)
problems = clock("schema", schema_problems, doc)
problems += clock("semantic", semantic_problems, doc)
env = clock("expand", expand, doc, source.name)
problems += clock("model rules", model_problems, doc, env)
problems += clock("family checks", e.family_problems, env)
phases["load total (no families)"] = time.process_time() - total - phases["family checks"]
# What the first error or warning below the top levels costs: every position, found by
# replaying the eager loader (trees before it recorded them while loading: ~0).
clock("every position (lazily)", lambda: doc.positions)
assert not [p for p in problems if not p.warning], problems[:3]
print(json.dumps(phases))
"""


def run(tree: Path, env_dir: Path) -> dict[str, float]:
    environ = dict(os.environ, PYTHONPATH=str(tree))
    # cwd too: `python -c` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD, str(env_dir)], env=environ, check=True,
                         capture_output=True, text=True, cwd=tree).stdout
    return dict(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--hypervisors", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, help="another checkout to compare against")
    parser.add_argument("--env", type=Path, help="an existing generated repo to reuse")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from genenv import write_environment

    with tempfile.TemporaryDirectory(prefix="gen-bench-load-") as tmp:
        repo = args.env
        if repo is None:
            repo = Path(tmp)
            write_environment(repo, nodes=args.nodes, hypervisors=args.hypervisors)
        env_dir = repo / "environments" / "big"
        trees = {"this": ROOT} | ({"other": args.tree.resolve()} if args.tree else {})
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                results[name].append(run(tree, env_dir))
        phases = list(results["this"][0])
        print(f"{args.nodes} nodes, CPU seconds, median of {args.runs}")
        print(f"{'phase':28}" + "".join(f"{name:>10}" for name in trees)
              + ("     ratio" if args.tree else ""))
        for phase in phases:
            medians = [statistics.median(r[phase] for r in results[name]) for name in trees]
            ratio = f"{medians[0] / medians[1]:10.2f}" if len(medians) == 2 \
                and medians[1] > 0.001 else ""
            print(f"{phase:28}" + "".join(f"{v:10.3f}" for v in medians) + ratio)


if __name__ == "__main__":
    main()
