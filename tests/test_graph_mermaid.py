"""gen's Mermaid text through the real Mermaid parser (npm `mermaid` 11.17.2 under Node, with
jsdom for the DOM its sanitiser needs; tests/run.sh installs both into tests/.mermaid). Parsed,
not drawn: no browser runs here, so layout and SVG output are not checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import gen
from test_graph import big_document, write_big

from generator import graph
from generator.environment import load_environment

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MODULES = TESTS / ".mermaid" / "node_modules"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (MODULES / "mermaid").is_dir(),
    reason="needs node and tests/.mermaid (tests/run.sh installs mermaid and jsdom there)")


def mermaid_parse(files: list[Path]) -> subprocess.CompletedProcess[str]:
    script = TESTS / ".mermaid" / "mermaid_parse.mjs"  # beside node_modules, so imports resolve
    shutil.copy(TESTS / "mermaid_parse.mjs", script)
    return subprocess.run(["node", str(script), *map(str, files)], capture_output=True,
                          text=True, check=False, timeout=300)


def test_builtin_environments_big_one_and_diff_goldens_parse(tmp_path: Path) -> None:
    files = []
    for env_file in sorted((ROOT / "environments").glob("*/env.yaml")):
        result = gen("graph", f"env/{env_file.parent.name}", cwd=ROOT)
        assert result.code == 0, result.err
        files.append(tmp_path / f"{env_file.parent.name}.mmd")
        files[-1].write_text(result.out)
    write_big(tmp_path / "big", nodes=1000, hypervisors=20)
    result = gen("graph", "env/big", cwd=tmp_path / "big")
    assert result.code == 0, result.err
    files.append(tmp_path / "big.mmd")
    files[-1].write_text(result.out)
    for golden in sorted((TESTS / "golden_diff").glob("*.md")):  # marked, with a legend
        block = re.search(r"```mermaid\n(.*?)```\n", golden.read_text(), re.S)
        assert block is not None, golden
        files.append(tmp_path / f"diff-{golden.stem}.mmd")
        files[-1].write_text(block.group(1))
    checked = mermaid_parse(files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" ok flowchart") == len(files)


def test_the_parser_rejects_broken_text(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmd"
    broken.write_text('flowchart LR\n  n1["a"] -->\n  subgraph\n')
    checked = mermaid_parse([broken])
    assert checked.returncode == 1 and "ERROR" in checked.stdout


def test_thousand_node_review_with_marks_parses(tmp_path: Path) -> None:
    data = big_document(1000, 20)
    write_big(tmp_path / "base", data=data)
    workers = [n for n in data["nodes"] if n["role"] == "worker"]
    for node in workers[::9][:100]:
        node["vcpu"] = 8
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "worker5"]
    write_big(tmp_path / "head", data=data)
    base, head = (graph.build_full(load_environment("env/big", tmp_path / side).model)
                  for side in ("base", "head"))
    picture = graph.review(base, head)
    assert set(picture.marks.values()) == {"changed", "removed"}
    text = tmp_path / "review.mmd"
    text.write_text(graph.to_mermaid(picture, legend=True))
    checked = mermaid_parse([text])
    assert checked.returncode == 0, checked.stdout + checked.stderr
