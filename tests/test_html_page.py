"""The HTML report's pure parts, no browser: side-by-side hunks hold every changed line on its
side, dot's SVG is inlined only when it holds drawing elements alone, the page's CSP hash
matches its script, and without Graphviz the page carries the Mermaid text instead."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from html import unescape
from pathlib import Path

from clirun import gen
from test_graph_diff import worker1_moved

from generator.diff import Side, build_report
from generator.diff.htmlpage import SCRIPT, csp, side_by_side, svg_for_page, to_html
from generator.diff.trees import FileChange
from generator.pipeline import render_environment

ROOT = Path(__file__).resolve().parent.parent
CELL = re.compile(r"<td class=n>(\d+)</td><td class=(del|add)>(.*?)</td>")


def test_side_by_side_puts_each_changed_line_on_its_side_with_its_number() -> None:
    old = "".join(f"line {i}\n" for i in range(1, 101))
    new = old.replace("line 10\n", "line ten\n").replace("line 70\n", "").replace(
        "line 90\n", "line 90\nline 90b\n")
    table = side_by_side(FileChange("hosts/h/f.txt", "modified", old.encode(), new.encode()))
    cells = [(int(n), side, unescape(text)) for n, side, text in CELL.findall(table)]
    assert (10, "del", "line 10") in cells and (10, "add", "line ten") in cells
    assert (70, "del", "line 70") in cells
    assert (90, "add", "line 90b") in cells  # line 70 is gone: new numbering
    assert not any("line 50" in text for _, _, text in cells)  # far from any change
    assert table.count("class=hunk") == 3  # three separate changes, three hunks
    added = side_by_side(FileChange("hosts/h/g.txt", "added", None, b"a\nb\n"))
    assert [(n, s) for n, s, _ in CELL.findall(added)] == [("1", "add"), ("2", "add")]
    binary = side_by_side(FileChange("hosts/h/b.bin", "modified", b"\0a", b"\0b"))
    assert "binary file" in binary and "<table" not in binary


def test_svg_is_inlined_only_when_it_only_draws() -> None:
    drawing = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg">'
               '<g class="node"><title>n1</title><text>a &lt;script&gt;</text></g></svg>')
    assert svg_for_page(drawing) == drawing[drawing.index("<svg"):]
    for bad in ('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                '<svg xmlns="http://www.w3.org/2000/svg"><g onload="alert(1)"/></svg>',
                '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
                '<a x:href="javascript:alert(1)"><text>t</text></a></svg>',
                '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
                "<svg><g></svg>"):
        assert svg_for_page(bad) is None, bad


def test_the_policy_allows_exactly_the_pages_script() -> None:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp() and "default-src 'none'" in csp()
    tree = render_environment("env/lab").tree
    page = to_html(build_report(Side("a", None, "lab", tree), Side("b", None, "lab", tree)))
    assert f"<script>{SCRIPT}</script>" in page and "no changes" in page


def test_without_graphviz_the_page_holds_the_mermaid_text(tmp_path: Path) -> None:
    repo = tmp_path / "site"
    worker1_moved(repo)
    bare_path = tmp_path / "bin"  # git and nothing of Graphviz
    bare_path.mkdir()
    git_program = shutil.which("git")
    assert git_program is not None
    (bare_path / "git").symlink_to(git_program)
    env = {**os.environ, "PATH": str(bare_path)}
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "html",
                 cwd=repo, env=env)
    assert result.code == 0, result.err
    assert "<svg" not in result.out and "<pre id=picture-source>flowchart LR" in result.out
    assert "class n9,legend_changed changed" in unescape(result.out)
    broken_dot = bare_path / "dot"  # a dot that fails: the page still comes, without SVG
    broken_dot.write_text("#!/bin/sh\necho 'Error: layout failed' >&2\nexit 1\n")
    broken_dot.chmod(0o755)
    failed = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "html",
                 cwd=repo, env={**env, "PATH": f"{bare_path}:/bin:/usr/bin"})
    assert failed.code == 0, failed.err
    assert "<svg" not in failed.out and "<pre id=picture-source>flowchart LR" in failed.out
    with_dot = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "html",
                   cwd=repo)
    assert with_dot.code == 0 and "<svg" in with_dot.out and "picture-source" not in with_dot.out
