"""`gen graph`: the topology of lab A and of a generated 1,000-node environment, through the
real CLI, checked with a strict Mermaid subset parser (tests/mermaidcheck.py), Graphviz's own
`dot` program and the JSON form."""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from clirun import gen
from mermaidcheck import parse

from generator import graph
from generator.environment import load_environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from genenv import build, dump  # noqa: E402


def big_document(nodes: int, hypervisors: int) -> dict[str, Any]:
    """bench/genenv's environment with a cluster network wide enough for its nodes."""
    data = build(nodes, hypervisors)
    data["cluster"]["clusterNetwork"] = [{"cidr": "10.252.0.0/14", "hostPrefix": 24}]
    return data


def write_big(root: Path, nodes: int = 0, hypervisors: int = 0,
              data: dict[str, Any] | None = None) -> None:
    """environments/big/env.yaml under `root`, and the blueprints beside it."""
    env_dir = root / "environments" / "big"
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "env.yaml").write_text(dump(data or big_document(nodes, hypervisors)))
    if not (root / "blueprints").exists():
        shutil.copytree(ROOT / "blueprints", root / "blueprints",
                        ignore=shutil.ignore_patterns("__pycache__"))


def label_of(chart_labels: dict[str, str], start: str) -> tuple[str, str]:
    return next((i, text) for i, text in chart_labels.items() if text.startswith(start))


def test_lab_mermaid_shows_vms_services_and_backends() -> None:
    result = gen("graph", "env/lab", cwd=ROOT)
    assert result.code == 0, result.err
    chart = parse(result.out)
    worker1, text = label_of(chart.labels, "worker1 ")
    assert text == "worker1 (worker)<br>2 vCPU, 8 GiB<br>192.168.20.162"
    hv, _ = label_of(chart.labels, "hypervisor hv1")
    https, _ = label_of(chart.labels, "HAProxy ingress-https :443")
    api, _ = label_of(chart.labels, "HAProxy api :6443")
    master0, _ = label_of(chart.labels, "master0 ")
    bootstrap, _ = label_of(chart.labels, "bootstrap ")
    assert (https, worker1, ":443") in chart.edges
    assert (api, master0, ":6443") in chart.edges
    assert (api, bootstrap, "backup") in chart.edges
    assert not any(worker1 == target for source, target, _ in chart.edges if source == api)
    assert "zone ocp4.example.com" in label_of(chart.labels, "DNS ")[1]
    assert label_of(chart.labels, "DHCP ")[1].endswith("6 reservations")
    assert label_of(chart.labels, "NFS export /exports/registry")
    # worker1 is drawn inside its hypervisor's subgraph
    block = result.out.split(f'subgraph {hv}[')[1].split("\n  end")[0]
    assert f"{worker1}[" in block


def test_every_builtin_environment_parses() -> None:
    for env_dir in sorted((ROOT / "environments").glob("*/env.yaml")):
        result = gen("graph", f"env/{env_dir.parent.name}", cwd=ROOT)
        assert result.code == 0, result.err
        chart = parse(result.out)
        model = load_environment(f"env/{env_dir.parent.name}", ROOT).model
        for node in model.nodes:
            assert label_of(chart.labels, f"{node.name} ({node.role})")


def test_svg_is_laid_out_by_graphviz_dot() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz dot is not installed (Debian package graphviz)")
    result = gen("graph", "env/lab", "--format", "svg", cwd=ROOT)
    assert result.code == 0, result.err
    svg = ET.fromstring(result.out.split("?>", 1)[1].split("-->", 1)[-1]
                        if result.out.startswith("<?xml") else result.out)
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "worker1 (worker)" in texts and "192.168.20.162" in texts
    assert "HAProxy api :6443" in texts


def test_dot_text_is_graphviz_syntax() -> None:
    result = gen("graph", "env/k8s-lab", "--format", "dot", cwd=ROOT)
    assert result.code == 0, result.err
    assert result.out.startswith("digraph topology {")
    import subprocess
    if shutil.which("dot") is not None:  # dot itself refuses any syntax error
        check = subprocess.run(["dot", "-Tcanon"], input=result.out, text=True,
                               capture_output=True, check=False)
        assert check.returncode == 0, check.stderr


def test_thousand_nodes_collapse_into_groups(tmp_path: Path) -> None:
    write_big(tmp_path, nodes=1000, hypervisors=20)
    result = gen("graph", "env/big", "--format", "json", cwd=tmp_path)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    groups = [e for e in data["elements"] if e["kind"] == "group"]
    vms = [e for e in data["elements"] if e["kind"] == "vm"]
    assert groups and sum(len(g["members"]) for g in groups) + len(vms) == 1000
    assert len(vms) < 20  # only singletons (helper, bootstrap, masters) stay individual
    assert all(g["parent"].startswith("hv:") for g in groups)
    mermaid = gen("graph", "env/big", cwd=tmp_path)
    chart = parse(mermaid.out)
    assert len(chart.labels) < 100 and len(mermaid.out) < 10_000
    assert any(text.startswith("49 x worker") for text in chart.labels.values())
    # the ingress frontends point at the worker groups, once each
    https, _ = label_of(chart.labels, "HAProxy ingress-https")
    targets = [t for s, t, _ in chart.edges if s == https]
    assert len(targets) == len(set(targets)) == 20


def test_expand_keeps_named_vms_individual(tmp_path: Path) -> None:
    write_big(tmp_path, nodes=200, hypervisors=4)
    model = load_environment("env/big", tmp_path).model
    topo = graph.build(model, expand={"worker7"})
    keys = {e.key for e in topo.elements}
    assert "vm:worker7" in keys and "vm:worker8" not in keys
    group = next(e for e in topo.elements if e.kind == "group" and "worker8" in e.members)
    assert "worker7" not in group.members


def test_labels_cannot_break_out() -> None:
    assert graph.mermaid_label('a"b<c>#\nd') == "a#quot;b#lt;c#gt;#35;<br>d"
    assert graph.dot_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_bad_environment_is_one_line_exit_1(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    shutil.copytree(ROOT / "blueprints", tmp_path / "blueprints")
    env_file = tmp_path / "environments/lab/env.yaml"
    text = env_file.read_text().replace("hypervisor: hv1, nics", "hypervisor: hv9, nics", 1)
    env_file.write_text(text)
    result = gen("graph", "env/lab", cwd=tmp_path)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("environments/lab/env.yaml:"), result.err
