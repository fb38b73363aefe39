"""Render a diff Report as text (terminal), JSON, or markdown parts for a PR comment.

Markdown is split into numbered parts, each under `max_chars` and self-contained: every
part starts with the hidden marker `<!-- gen-diff:ENV -->` (so CI finds and updates its own
comments) and closes every `<details>` and code fence it opens. A family or a file diff
that does not fit continues in the next part under a `(continued)` heading; together the
parts hold every line.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from generator.diff import Report, Section
from generator.diff.semantic import Finding
from generator.diff.trees import ADDED, MODIFIED, REMOVED

GITHUB_LIMIT = 65536
COLORS = {"+": "green", "-": "red", "~": "yellow", "@": "cyan"}


# --- shared --------------------------------------------------------------------------------

def counts(report: Report) -> dict[str, int]:
    tally = Counter(f.status for f in report.files)
    return {ADDED: tally[ADDED], MODIFIED: tally[MODIFIED], REMOVED: tally[REMOVED]}


def summary_line(report: Report) -> str:
    if report.empty:
        return "no changes"
    moved = "; the generator changed between the sides" if report.generator else ""
    if not report.files:
        return "no rendered file changed" + moved
    c = counts(report)
    return (f"{len(report.files)} file(s) changed: {c[ADDED]} added, {c[MODIFIED]} modified, "
            f"{c[REMOVED]} removed{moved}")


def section_counts(section: Section) -> str:
    tally = Counter(f.op for f in section.findings)
    words = {"+": "added", "-": "removed", "~": "changed"}
    parts = [f"{tally[op]} {word}" for op, word in words.items() if tally[op]]
    return f"{', '.join(parts)}; {len(section.files)} file(s)"


def top_findings(report: Report) -> list[tuple[str, tuple[Finding, ...]]]:
    return [(title, rows) for title, rows in (("Generator", report.generator),
                                              ("Environment", report.notes),
                                              ("Input fields", report.fields),
                                              ("Lock inputs", report.inputs),
                                              ("Secrets", report.secrets)) if rows]


# --- text ----------------------------------------------------------------------------------

def to_text(report: Report, color: bool = False, diffs: bool = True) -> str:
    """Header, lock inputs, secrets, per-family findings, then unified diffs of the files."""
    style = _styler(color)
    out = [style(f"gen diff {report.env}: {report.base.short} -> {report.head.short}", "",
                 bold=True), summary_line(report)]
    for title, rows in top_findings(report):
        out += ["", style(f"{title}:", "", bold=True)]
        out += [style(f"  {f.line()}", f.op) for f in rows]
    for section in report.sections:
        out += ["", style(f"{section.family.title} ({section_counts(section)}):", "", bold=True)]
        out += [style(f"  {f.line()}", f.op) for f in section.findings]
        for finding in section.findings:
            out += _indent_diff(finding.block, style)
    if diffs and report.files:
        out += ["", style("Files:", "", bold=True)]
        for change in report.files:
            out += [_colored_diff_line(row, style) for row in change.unified().splitlines()]
    return "\n".join(out)


def _indent_diff(block: str, style: Callable[..., str]) -> list[str]:
    return [_colored_diff_line("    " + row, style, strip=4) for row in block.splitlines()]


def _colored_diff_line(row: str, style: Callable[..., str], strip: int = 0) -> str:
    head = row[strip:strip + 1]
    if row[strip:].startswith(("+++", "---")):
        return style(row, "", bold=True)
    return style(row, head if head in COLORS else "")


def _styler(color: bool) -> Callable[..., str]:
    import click

    def style(text: str, op: str, bold: bool = False) -> str:
        if not color or not (bold or op in COLORS):
            return text
        return click.style(text, fg=COLORS.get(op), bold=bold or None)

    return style


# --- JSON ----------------------------------------------------------------------------------

def to_json(report: Report) -> dict[str, Any]:
    def finding(f: Finding) -> dict[str, Any]:
        row: dict[str, Any] = {"op": f.op, "subject": f.subject, "detail": f.detail}
        if f.data:
            row.update(f.data)
        return {**row, "block": f.block} if f.block else row

    def side(s: Any) -> dict[str, Any]:
        return {"label": s.label, "commit": s.sha, "environment": s.env, "files": len(s.tree)}

    return {
        "environment": report.env, "base": side(report.base), "head": side(report.head),
        "changed": not report.empty, "summary": counts(report),
        "notes": [finding(f) for f in report.notes],
        "generator": [finding(f) for f in report.generator],
        "fields": [finding(f) for f in report.fields],
        "inputs": [finding(f) for f in report.inputs],
        "secrets": [finding(f) for f in report.secrets],
        "families": [{"family": s.family.key, "title": s.family.title,
                      "findings": [finding(f) for f in s.findings],
                      "files": [{"path": c.path, "status": c.status, "diff": c.unified()}
                                for c in s.files]} for s in report.sections],
    }


# --- markdown ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Unit:
    """One indivisible piece of a part: markdown text inside a group (a `<details>`)."""

    group: str | None  # the <details> summary it belongs in; None at top level
    text: str


def marker(env: str) -> str:
    return f"<!-- gen-diff:{env} -->"


def to_markdown(report: Report, max_chars: int = GITHUB_LIMIT) -> list[str]:
    """The report as numbered markdown parts, each at most `max_chars` characters."""
    budget = max_chars - len(_preamble(report.env, 99999, 99999))
    units = list(_units(report))
    reserve = max((len(_open(u.group, True)) + len(CLOSE) for u in units if u.group), default=0)
    limit = budget - reserve - 1
    if limit < 200:
        raise ValueError(f"max_chars {max_chars} is too small for a diff comment")
    pieces = [piece for unit in units for piece in _split_unit(unit, limit)]
    bodies = _pack(pieces, budget)
    return [_preamble(report.env, i + 1, len(bodies)) + body for i, body in enumerate(bodies)]


CLOSE = "</details>\n\n"


def _preamble(env: str, index: int, total: int) -> str:
    part = f" (part {index} of {total})" if total > 1 else ""
    return f"{marker(env)}\n<!-- gen-diff-part:{index}/{total} -->\n### gen diff `{env}`{part}\n\n"


def _open(group: str | None, continued: bool) -> str:
    if group is None:
        return ""
    return f"<details><summary>{group}{' (continued)' if continued else ''}</summary>\n\n"


def _pack(pieces: Iterable[Unit], budget: int) -> list[str]:
    parts: list[str] = []
    body: list[str] = []
    size = 0
    group: str | None = None
    opened: set[str | None] = set()
    for piece in pieces:
        reopen = piece.group != group
        cost = len(piece.text) + (len(_open(piece.group, True)) if reopen else 0)
        cost += len(CLOSE) if piece.group else 0
        closing = len(CLOSE) if group and reopen else 0
        if body and size + closing + cost > budget:
            parts.append("".join(body) + (CLOSE if group else ""))
            body, size, group = [], 0, None
            reopen = piece.group is not None
        elif group and reopen:
            body.append(CLOSE)
            size += len(CLOSE)
        if reopen and piece.group:
            body.append(_open(piece.group, piece.group in opened))
            size += len(body[-1])
            opened.add(piece.group)
        group = piece.group
        body.append(piece.text)
        size += len(piece.text)
    if body or not parts:
        parts.append("".join(body) + (CLOSE if group else ""))
    return parts


def _units(report: Report) -> Iterable[Unit]:
    if not report.empty:
        yield from _picture(report)
    yield Unit(None, f"**base** {_md(report.base.short)} &rarr; **head** "
                     f"{_md(report.head.short)}: {summary_line(report)}\n\n")
    if report.empty:
        return
    for title, rows in top_findings(report):
        yield Unit(None, f"**{title}**\n\n")
        yield from _fenced(None, "diff", [f.line() for f in rows])
    if report.sections:
        yield Unit(None, "".join(f"- {s.family.title}: {section_counts(s)}\n"
                                 for s in report.sections) + "\n")
    for section in report.sections:
        group = f"<b>{html.escape(section.family.title)}</b>: {section_counts(section)}"
        yield from _fenced(group, "diff", [f.line() for f in section.findings])
        for finding in section.findings:
            if finding.block:
                yield Unit(group, f"{_md(finding.subject)}\n\n")
                yield from _fenced(group, "diff", finding.block.splitlines())
        for change in section.files:
            yield Unit(group, f"`{change.path}` ({change.status})\n\n")
            yield from _fenced(group, "diff", change.unified().splitlines())


def review_picture(report: Report) -> Any:
    """The head revision's topology (the base's when the environment was removed) marked
    against the base's (a graph.Topology), or None when neither side has one."""
    from generator import graph

    head, base = report.head.topology, report.base.topology
    if head is None and base is None:
        return None
    return graph.review(base, head) if head is not None else graph.review(
        None, graph.Topology(base.elements, base.edges,
                             {e.key: "removed" for e in base.elements}))


def _picture(report: Report) -> Iterable[Unit]:
    """The picture as a Mermaid diagram, changed elements marked; GitHub and GitLab draw
    it in the comment."""
    from generator import graph

    picture = review_picture(report)
    if picture is None:
        return
    grouped = any(e.kind == "group" for e in picture.elements)
    note = ("; unchanged VMs grouped per hypervisor and role" if grouped else "")
    marks = ("added, changed and removed elements marked as in the legend" if picture.marks
             else "no element of it changed")
    yield Unit(None, f"```mermaid\n{graph.to_mermaid(picture, legend=True)}```\n\n"
                     f"<sub>Topology of the head revision: {marks}{note}.</sub>\n\n")


def _md(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _fenced(group: str | None, lang: str, rows: list[str]) -> Iterable[Unit]:
    """A code block as one unit (split later if it does not fit); the fence outgrows content."""
    longest = max((len(m) for row in rows for m in re.findall(r"`+", row)), default=0)
    fence = "`" * max(3, longest + 1)
    yield Unit(group, f"{fence}{lang}\n" + "".join(r + "\n" for r in rows) + f"{fence}\n\n")


def _split_unit(unit: Unit, limit: int) -> list[Unit]:
    """Split an oversized code block at line boundaries into separately fenced blocks."""
    if len(unit.text) <= limit:
        return [unit]
    first, _, rest = unit.text.partition("\n")
    if not first.startswith("```"):
        return [Unit(unit.group, row) for row in _cut_long_rows(
            unit.text.splitlines(keepends=True), limit)]
    fence = first.rstrip("abcdefghijklmnopqrstuvwxyz")
    closing = f"{fence}\n\n"
    body = rest[: -len(closing)] if rest.endswith(closing) else rest
    room = limit - len(first) - 1 - len(closing)
    chunks: list[str] = []
    current = ""
    for row in _cut_long_rows(body.splitlines(keepends=True), room):
        if current and len(current) + len(row) > room:
            chunks.append(current)
            current = ""
        current += row
    chunks.append(current)
    return [Unit(unit.group, f"{first}\n{chunk}{closing}") for chunk in chunks]


def _cut_long_rows(rows: list[str], room: int) -> Iterable[str]:
    for row in rows:
        while len(row) > room:
            yield row[: room - 1] + "\n"
            row = row[room - 1:]
        yield row
