"""A strict checker for the Mermaid `flowchart` subset gen emits (no browser here to run the
real Mermaid library): every line must be one of the statement forms below, ids are
declared once before an edge or class uses them, subgraphs close, labels carry no raw
quote, bracket or pipe that would end them early. Returns the declared ids and labels so
tests can look at what the picture says."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ID = r"[A-Za-z][A-Za-z0-9_]*"
LABEL = r'[^"\n]*'
SHAPES = [(r'\["', r'"\]'), (r'\[/"', r'"/\]'), (r'\[\["', r'"\]\]'), (r'\("', r'"\)')]
NODE = re.compile(rf"^\s*({ID})(?:{'|'.join(f'{a}({LABEL}){b}' for a, b in SHAPES)})$")
SUBGRAPH = re.compile(rf'^\s*subgraph ({ID})\["({LABEL})"\]$')
EDGE = re.compile(rf"^\s*({ID}) -->(?:\|([^|\"\n]*)\|)? ({ID})$")
CLASSDEF = re.compile(r"^\s*classDef ([a-z]+) ([a-z-]+:[^\s;]+(?:,[a-z-]+:[^\s,;]+)*)$")
CLASS = re.compile(rf"^\s*class ({ID}(?:,{ID})*) ([a-z]+)$")


@dataclass
class Chart:
    labels: dict[str, str] = field(default_factory=dict)  # id -> label (nodes, subgraphs)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    classes: dict[str, set[str]] = field(default_factory=dict)  # class -> ids


def parse(text: str) -> Chart:
    lines = text.splitlines()
    assert lines and lines[0] == "flowchart LR", lines[:1]
    chart = Chart()
    depth = 0
    defined: set[str] = set()
    for number, line in enumerate(lines[1:], 2):
        if (m := SUBGRAPH.match(line)) is not None:
            _declare(chart, m.group(1), m.group(2), number)
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0, f"line {number}: end without subgraph"
        elif (m := NODE.match(line)) is not None:
            label = next(g for g in m.groups()[1:] if g is not None)
            _declare(chart, m.group(1), label, number)
        elif (m := EDGE.match(line)) is not None:
            for end in (m.group(1), m.group(3)):
                assert end in chart.labels, f"line {number}: edge to undeclared {end}"
            chart.edges.append((m.group(1), m.group(3), m.group(2) or ""))
        elif (m := CLASSDEF.match(line)) is not None:
            defined.add(m.group(1))
        elif (m := CLASS.match(line)) is not None:
            assert m.group(2) in defined, f"line {number}: class {m.group(2)} not defined"
            ids = m.group(1).split(",")
            for ident in ids:
                assert ident in chart.labels, f"line {number}: class on undeclared {ident}"
            chart.classes.setdefault(m.group(2), set()).update(ids)
        else:
            raise AssertionError(f"line {number}: not a statement of the subset: {line!r}")
    assert depth == 0, "unclosed subgraph"
    return chart


def _declare(chart: Chart, ident: str, label: str, number: int) -> None:
    assert ident not in chart.labels, f"line {number}: {ident} declared twice"
    assert ident not in ("end", "graph", "subgraph", "flowchart"), ident
    chart.labels[ident] = label
