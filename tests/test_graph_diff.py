"""The topology picture at the top of `gen diff --format markdown`, through the real CLI over
real git histories: lab A with worker1's address changed, and a generated 1,000-node
environment with 100 workers changed, each checked with the strict Mermaid subset parser
(tests/mermaidcheck.py); tests/test_graph_mermaid.py runs the real Mermaid parser on the
same kinds of picture."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from clirun import gen
from mermaidcheck import Chart, parse
from test_graph import big_document, write_big

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def lab_site(repo: Path) -> Path:
    """A git repo holding gen's environments and blueprints, committed once."""
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "site")
    return repo


def worker1_moved(repo: Path) -> Path:
    """lab_site, then a commit moving lab A's worker1 to another address."""
    lab_site(repo)
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text().replace("ip: 192.168.20.162", "ip: 192.168.20.172"))
    commit(repo, "worker1 moves")
    return repo


def mermaid_block(markdown: str) -> str:
    match = re.search(r"```mermaid\n(.*?)```\n", markdown, re.S)
    assert match is not None, markdown[:500]
    return match.group(1)


def marked(chart: Chart, mark: str) -> list[str]:
    return sorted(chart.labels[i] for i in chart.classes.get(mark, ())
                  if not i.startswith("legend_"))


def test_lab_worker1_address_change_is_marked(tmp_path: Path) -> None:
    repo = tmp_path / "site"
    worker1_moved(repo)
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "markdown",
                 cwd=repo)
    assert result.code == 0, result.err
    assert len(result.out) < 65536 and "gen-diff-part:1/1" in result.out
    # the picture comes first, before the per-resource text
    assert result.out.index("```mermaid") < result.out.index("**base**")
    chart = parse(mermaid_block(result.out))
    changed = marked(chart, "changed")
    assert "worker1 (worker)<br>2 vCPU, 8 GiB<br>192.168.20.172" in changed
    assert not any(label.startswith(("worker0 ", "master")) for label in changed)
    assert chart.labels["legend_changed"] == "changed"
    assert "added" not in chart.classes and "removed" not in chart.classes
    # text and JSON carry no picture
    text = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", cwd=repo)
    assert "mermaid" not in text.out and "flowchart" not in text.out


def test_node_added_and_removed_are_marked(tmp_path: Path) -> None:
    repo = tmp_path / "site"
    lab_site(repo)
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    line = next(x for x in text.splitlines() if "{name: worker0," in x)
    env_file.write_text(text.replace(line + "\n", "").replace(
        "  - {name: worker1,", "  - {name: worker2, role: worker, hypervisor: hv1, "
        "nics: [{network: lan, ip: 192.168.20.163}]}\n  - {name: worker1,"))
    commit(repo, "worker0 out, worker2 in")
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "markdown",
                 cwd=repo)
    assert result.code == 0, result.err
    chart = parse(mermaid_block(result.out))
    assert [x.split("<br>")[0] for x in marked(chart, "added")] == ["worker2 (worker)"]
    assert [x.split("<br>")[0] for x in marked(chart, "removed")] == ["worker0 (worker)"]
    # the ingress frontends now point elsewhere: marked changed
    assert any(x.startswith("HAProxy ingress-http ") for x in marked(chart, "changed"))


def test_thousand_nodes_hundred_changed_fits_one_comment(tmp_path: Path) -> None:
    repo = tmp_path / "site"
    data = big_document(1000, 20)
    write_big(repo, data=data)
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "big")
    workers = [n for n in data["nodes"] if n["role"] == "worker"]
    for node in workers[::9][:100]:  # spread over every hypervisor
        node["vcpu"] = 8
    write_big(repo, data=data)
    commit(repo, "100 workers grow")
    result = gen("diff", "env/big", "--base", "HEAD~1", "--head", "HEAD", "--format",
                 "markdown", cwd=repo, timeout=600)
    assert result.code == 0, result.err
    first = result.out.split("<!-- gen-diff:big -->")[1]
    assert len(first) < 65536
    block = mermaid_block(first)
    chart = parse(block)
    changed_vms = [x for x in marked(chart, "changed") if "(worker)" in x]
    assert len(changed_vms) == 100 and all("8 vCPU" in x for x in changed_vms)
    groups = [x for x in chart.labels.values() if " x worker<br>" in x]
    assert groups and len(chart.labels) < 300
    assert len(block) < 30_000
