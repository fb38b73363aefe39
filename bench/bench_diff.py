"""`gen diff` between two revisions of a 1,000-node environment; prints its figures.

Target: < 5 s for the whole process (two worktrees, two renders, the comparison and the
markdown parts; the HTML report is measured too). The second revision gives 100 workers
more memory and adds 10 workers. A third measurement vendors gen into the repo and
changes one renderer between the revisions: the head is then rendered by its own
generator in a second interpreter. These run with an empty render cache (both sides
rendered).

The last measurement is the CI case: one node changed in the working tree, the base already
in the render cache (generator/diff/cache.py) from an earlier diff, against one `gen render
--check` of the same environment; paired, medians of 5; target <= 1.2x.

Run: python bench/bench_diff.py [--nodes 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def environment(nodes: int, extra: int = 0, bigger: int = 0) -> str:
    """An openshift-upi environment: `nodes` (+`extra`) nodes over 20 hypervisors."""
    hvs = 20
    lines = ["apiVersion: gen/v1", "kind: Environment", "metadata: {name: big}",
             "blueprint: openshift-upi", "cluster:", "  name: big", "  baseDomain: example.com",
             "  pullSecret: {env: GEN_SECRET_PULL}",
             # one /24 per node: the blueprint's /14 holds too few for 1,000 nodes
             "  clusterNetwork: [{cidr: 10.128.0.0/13, hostPrefix: 24}]", "networks:",
             "  - {name: lan, cidr: 10.20.0.0/16, gateway: 10.20.0.1, dns: [10.20.0.12], "
             "bridge: br0}", "hypervisors:"]
    lines += [f"  - {{name: hv{i}, uri: 'qemu+ssh://root@hv{i}/system', domainType: kvm, "
              f"bridge: br0, pool: {{name: default, path: /var/lib/libvirt/images}}}}"
              for i in range(hvs)]
    lines.append("nodes:")
    roles = ["helper", "bootstrap", "master", "master", "master"]
    for i in range(nodes + extra):
        role = roles[i] if i < len(roles) else "worker"
        name = "helper" if i == 0 else f"{role}{i}"
        size = ", memory: 32GiB" if role == "worker" and i < 5 + bigger else ""
        ip = f"10.20.{(i + 10) // 250}.{(i + 10) % 250 + 2}"
        lines.append(f"  - {{name: {name}, role: {role}, hypervisor: hv{i % hvs}{size}, "
                     f"nics: [{{network: lan, ip: {ip}}}]}}")
    lines += ["artifacts:", "  os:"]
    for art in ("kernel", "initramfs", "rootfs"):
        lines.append(f"    rhcos-live-{art}: {{url: 'https://mirror.invalid/rhcos-{art}'}}")
    return "\n".join(lines) + "\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def timed(repo: Path, *args: str, cached: bool = False,
          ok: tuple[int, ...] = (0, 2)) -> tuple[float, float]:
    """(wall seconds, CPU seconds of gen and its children): CPU shows the cost on a busy box.
    Without `cached` the render cache is emptied first (both sides of a diff render)."""
    if not cached:
        shutil.rmtree(Path(os.environ["GEN_STORE"]) / "renders", ignore_errors=True)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=repo,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise SystemExit(f"gen {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--one-node-only", action="store_true",
                        help="only the last measurement (render cache, one node changed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gen-bench-diff-") as tmp:
        os.environ["GEN_STORE"] = str(Path(tmp) / "store")  # its own render cache
        repo = Path(tmp) / "site"
        shutil.copytree(ROOT / "blueprints", repo / "blueprints")
        env_file = repo / "environments" / "big" / "env.yaml"
        env_file.parent.mkdir(parents=True)
        env_file.write_text(environment(args.nodes))
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "big")
        env_file.write_text(environment(args.nodes, extra=10, bigger=100))
        git(repo, "commit", "-q", "-am", "bigger")
        if args.one_node_only:
            report_one_node(one_node_changed(repo, env_file, Path(tmp) / "checked"))
            return
        render = timed(repo, "render", "env/big", "--out", str(Path(tmp) / "out"))
        base = ["diff", "env/big", "--base", "HEAD~1", "--head", "HEAD"]
        text = [timed(repo, *base, "--no-files") for _ in range(3)]
        full_text = [timed(repo, *base) for _ in range(3)]
        markdown = [timed(repo, *base, "--format", "markdown", "--out", str(Path(tmp) / "md"))
                    for _ in range(3)]
        parts = len(list((Path(tmp) / "md").glob("*.md")))
        html = [timed(repo, *base, "--format", "html", "--out", str(Path(tmp) / "html"))
                for _ in range(3)]
        page_kib = (Path(tmp) / "html" / "gen-diff-big.html").stat().st_size / 1024
        one_node = one_node_changed(repo, env_file, Path(tmp) / "checked")
        own = own_generator_runs(repo)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"gen render (writes every file), {args.nodes} nodes: {render[0]:.2f} s wall, "
          f"{render[1]:.2f} s CPU")
    for label, runs in (("text summary", text), ("text with file diffs", full_text),
                        (f"markdown with the topology picture, {parts} parts", markdown)):
        wall, cpu = min(runs)
        print(f"gen diff ({label}), {args.nodes} nodes, two revisions: best {wall:.2f} s wall "
              f"of 3, {cpu:.2f} s CPU (target < 5 s wall)")
    print(f"markdown / text with file diffs: {min(markdown)[0] / min(full_text)[0]:.2f}x wall, "
          f"{min(markdown)[1] / min(full_text)[1]:.2f}x CPU (target <= 1.2x)")
    wall, cpu = min(html)
    print(f"gen diff (html report, picture laid out by dot, {page_kib:.0f} KiB page), "
          f"{args.nodes} nodes: best {wall:.2f} s wall of 3, {cpu:.2f} s CPU; "
          f"{wall / min(full_text)[0]:.2f}x the text with file diffs")
    wall, cpu = min(own)
    print(f"gen diff (head rendered by its own generator), {args.nodes} nodes: best "
          f"{wall:.2f} s wall of 3, {cpu:.2f} s CPU (target < 5 s wall)")
    report_one_node(one_node)


def report_one_node(one_node: tuple[list[tuple[float, float]], list[tuple[float, float]]],
                    ) -> None:
    diffs, renders = one_node
    ratio = median(d[0] / r[0] for d, r in zip(diffs, renders, strict=True))
    cpu_ratio = median(d[1] / r[1] for d, r in zip(diffs, renders, strict=True))
    print(f"gen diff, one node changed, base from the render cache: "
          f"{median(d[0] for d in diffs):.2f} s wall ({median(d[1] for d in diffs):.2f} s CPU) "
          f"against one gen render --check: {median(r[0] for r in renders):.2f} s wall "
          f"({median(r[1] for r in renders):.2f} s CPU); ratio {ratio:.2f} wall, "
          f"{cpu_ratio:.2f} CPU (target <= 1.2; medians of {len(diffs)}, paired)")


def one_node_changed(repo: Path, env_file: Path, out: Path,
                     runs: int = 5) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Each run edits one node in the working tree (a head never seen: rendered) and diffs
    it against HEAD (cached by the warm-up), paired with a `gen render --check`."""
    committed = env_file.read_text()
    timed(repo, "render", "env/big", "--out", str(out), cached=True)
    timed(repo, "diff", "env/big", "--base", "HEAD", "--no-files", cached=True)  # warm-up
    diffs, renders = [], []
    for run in range(runs):
        env_file.write_text(committed.replace("{name: worker7, role: worker,",
                                              f"{{name: worker7, role: worker, vcpu: {run + 2},",
                                              1))
        diffs.append(timed(repo, "diff", "env/big", "--base", "HEAD", cached=True))
        # exit 1: the check found worker7's files out of date, as it should
        renders.append(timed(repo, "render", "env/big", "--out", str(out), "--check",
                             cached=True, ok=(0, 1)))
    env_file.write_text(committed)
    return diffs, renders


def own_generator_runs(repo: Path) -> list[tuple[float, float]]:
    """Vendor gen into the repo, then commit a renderer edit: the head carries a generator
    that differs from the running one and is rendered by it in a subprocess."""
    for name in ("generator", "schemas"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "vendor gen")
    nfs = repo / "generator" / "families" / "nfs.py"
    nfs.write_text(nfs.read_text() + "\n# a renderer edit\n")
    git(repo, "commit", "-q", "-am", "renderer edit")
    return [timed(repo, "diff", "env/big", "--base", "HEAD~1", "--head", "HEAD", "--no-files")
            for _ in range(3)]


if __name__ == "__main__":
    main()
