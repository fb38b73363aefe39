"""Text, JSON and markdown output; markdown parts fit the limit and hold everything."""

from __future__ import annotations

import re

import pytest

from generator.diff import Report, Side, build_report
from generator.diff.formats import to_json, to_markdown, to_text
from generator.pipeline import render_environment
from generator.tree import Tree

LIMIT = 65536
FENCE = re.compile(r"^(`{3,})diff\n(.*?)^\1\n", re.M | re.S)


def huge_change() -> Report:
    """lab plus 300 more VMs (each a domain and a volume): well over one comment."""
    base = render_environment("env/lab").tree
    head: Tree = dict(base)
    domain = base["hypervisors/hv1/domains/worker1.xml"].decode()
    volume = base["hypervisors/hv1/volumes/worker1-root.qcow2.xml"].decode()
    for i in range(300):
        name = f"extra{i:03d}"
        head[f"hypervisors/hv1/domains/{name}.xml"] = domain.replace("worker1", name).encode()
        head[f"hypervisors/hv1/volumes/{name}-root.qcow2.xml"] = volume.replace(
            "worker1", name).encode()
    head["hosts/helper/huge.txt"] = "".join(f"line {i}\n" for i in range(20000)).encode()
    return build_report(Side("main", None, "lab", base), Side("pr", None, "lab", head))


def code_bodies(parts: list[str]) -> str:
    return "".join(m.group(2) for part in parts for m in FENCE.finditer(part))


def test_huge_change_splits_into_parts_that_fit_and_hold_everything() -> None:
    report = huge_change()
    parts = to_markdown(report, LIMIT)
    assert len(parts) > 5
    bodies = code_bodies(parts)
    for index, part in enumerate(parts, 1):
        assert len(part) <= LIMIT
        assert part.startswith(f"<!-- gen-diff:lab -->\n<!-- gen-diff-part:{index}/{len(parts)}")
        assert part.count("<details>") == part.count("</details>")
        # every fence opened is closed: stripping whole code blocks leaves no fence behind
        assert "```" not in FENCE.sub("", part)
    for change in report.files:
        assert change.unified() in bodies, change.path
    for section in report.sections:
        for finding in section.findings:
            assert finding.line() + "\n" in bodies


def test_small_limit_still_holds_every_line() -> None:
    report = huge_change()
    parts = to_markdown(report, 5000)
    assert all(len(p) <= 5000 for p in parts)
    assert report.files[0].unified() in code_bodies(parts)


def test_single_part_when_it_fits_and_no_changes() -> None:
    tree = render_environment("env/lab").tree
    (part,) = to_markdown(build_report(Side("a", None, "lab", tree), Side("b", None, "lab", tree)))
    assert part.startswith("<!-- gen-diff:lab -->\n<!-- gen-diff-part:1/1 -->\n")
    assert "no changes" in part and "<details>" not in part
    with pytest.raises(ValueError):
        to_markdown(huge_change(), 300)


def test_code_fences_outgrow_backticks_in_content() -> None:
    tree = {"misc/readme.md": b"```\ncode\n```\n"}
    (part,) = to_markdown(build_report(Side("a", None, "e", {}), Side("b", None, "e", tree)))
    assert "````diff\n" in part and "+```\n" in part


def test_text_colors_only_when_asked_and_json_is_data() -> None:
    base = render_environment("env/lab").tree
    head = dict(base)
    head["hypervisors/hv1/domains/worker1.xml"] = base[
        "hypervisors/hv1/domains/worker1.xml"].replace(b">2</vcpu>", b">4</vcpu>")
    report = build_report(Side("a", None, "lab", base), Side("b", None, "lab", head))
    plain = to_text(report)
    assert "\x1b[" not in plain
    assert "  ~ domain hv1/worker1: vcpu 2 -> 4" in plain
    assert "+  <vcpu placement=\"static\">4</vcpu>" in plain
    colored = to_text(report, color=True)
    assert "\x1b[33m  ~ domain hv1/worker1: vcpu 2 -> 4\x1b[0m" in colored
    data = to_json(report)
    assert data["summary"] == {"added": 0, "modified": 1, "removed": 0}
    (family,) = data["families"]
    assert family["findings"] == [{"op": "~", "subject": "domain hv1/worker1",
                                   "detail": "vcpu 2 -> 4"}]
