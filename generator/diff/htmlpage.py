"""Render a diff Report as one self-contained HTML page (`gen diff --format html`).

The page needs nothing from the network when opened: CSS and the filter script are inline,
and the topology picture is an inline SVG laid out at build time by Graphviz's `dot` (the
caller passes it in; this module stays pure). Shipping the Mermaid library instead would
add about 3 MB to the package and to every report, and run a large script over values
taken from the environment; Graphviz is already what `gen graph --format svg` uses.

Every value from the environment, the rendered files or git is HTML-escaped. A Content
Security Policy allows only the page's own inline script (by its hash) and inline styles,
and no fetch, image or frame from anywhere: a value that slipped through escaping still
could neither run nor phone home.

Filters: each finding row and each file carries `data-family` and `data-hosts` (indices,
so no user-chosen name lands in an attribute the script compares); the buttons show only
the items of one family and/or one host.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from html import escape
from xml.etree import ElementTree

from generator.diff import Report, Section
from generator.diff.formats import section_counts, summary_line, top_findings
from generator.diff.semantic import Finding
from generator.diff.trees import FileChange, _text

CONTEXT = 3  # unchanged lines shown around each change, as in the unified diff

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
code,pre,.sbs td{font-family:ui-monospace,monospace;font-size:12px}
[hidden]{display:none!important}
.picture{overflow:auto;border:1px solid #d0d7de;padding:.5em;max-height:80vh}
.legend span{padding:0 .5em;margin-right:.5em;border:2px solid}
.added{background:#d4f8d4;border-color:#1a7f37}.changed{background:#fff3c4;border-color:#9a6700}
.removed{background:#ffd8d8;border-color:#cf222e}
nav button{margin:.15em;padding:.2em .6em;border:1px solid #d0d7de;border-radius:4px;
background:#f6f8fa;cursor:pointer}
nav button[aria-pressed=true]{background:#0969da;color:#fff;border-color:#0969da}
table.findings{border-collapse:collapse}table.findings td{padding:.15em .6em;vertical-align:top}
tr.op-add td.op{color:#1a7f37}tr.op-del td.op{color:#cf222e}tr.op-chg td.op{color:#9a6700}
details.file{border:1px solid #d0d7de;margin:.4em 0}details.file>summary{padding:.3em;
background:#f6f8fa;cursor:pointer}
table.sbs{border-collapse:collapse;width:100%;table-layout:fixed}
table.sbs td{white-space:pre-wrap;word-break:break-all;padding:0 .4em;vertical-align:top}
table.sbs col.n{width:3.5em}table.sbs td.n{text-align:right;color:#656d76}
td.del{background:#ffebe9}td.add{background:#dafbe1}tr.hunk td{background:#ddf4ff;color:#656d76}
"""

SCRIPT = """
(function () {
  var state = {family: "", host: ""};
  var items = document.querySelectorAll("[data-family]");
  var buttons = document.querySelectorAll("button[data-filter]");
  function apply() {
    items.forEach(function (item) {
      var family = !state.family || item.dataset.family === state.family;
      var host = !state.host || item.dataset.hosts.split(" ").indexOf(state.host) >= 0;
      item.hidden = !(family && host);
    });
    buttons.forEach(function (button) {
      var on = state[button.dataset.filter] === button.dataset.value;
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      state[button.dataset.filter] = button.dataset.value;
      apply();
    });
  });
  document.querySelectorAll("button[data-open]").forEach(function (button) {
    button.addEventListener("click", function () {
      document.querySelectorAll("details.file").forEach(function (d) {
        d.open = button.dataset.open === "all";
      });
    });
  });
  apply();
})();
"""

OP_CLASS = {"+": "op-add", "-": "op-del", "~": "op-chg"}
# What a picture from `dot` may carry: it is inlined as markup, not as an image, so only
# drawing elements, and no event handler or link out.
SVG_TAGS = frozenset({"svg", "g", "title", "polygon", "polyline", "path", "ellipse", "text",
                      "defs", "desc", "line", "rect", "circle"})


def csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rendered file is converged: `hypervisors/hv1`, `hosts/helper`, ..."""

    prefix: str

    @property
    def label(self) -> str:
        kind, _, name = self.prefix.partition("/")
        return {"hypervisors": f"hypervisor {name}", "hosts": f"host {name}",
                "clusters": f"cluster {name}"}.get(kind, self.prefix)


def target_of(path: str) -> Target:
    return Target("/".join(path.split("/")[:2]) if path.count("/") >= 2 else "(repository)")


def svg_for_page(svg: str | None) -> str | None:
    """dot's SVG without its XML prolog and doctype (it goes inside HTML), or None when it
    is not well-formed or carries anything but drawing elements and their attributes."""
    if svg is None or "<svg" not in svg:
        return None
    body = re.sub(r"<!--.*?-->", "", svg[svg.index("<svg"):], flags=re.S)
    if "<?" in body or "<!" in body:
        # A processing instruction or CDATA section: XML and HTML end them at different
        # places, so what ElementTree checks would not be what the browser builds (dot's
        # picture has neither after its prolog).
        return None
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        tag = element.tag.rpartition("}")[2]
        names = {name.rpartition("}")[2].lower() for name in element.attrib}
        if tag not in SVG_TAGS or any(n.startswith("on") or n in ("href", "src", "style")
                                      for n in names):
            return None
    return body


def to_html(report: Report, svg: str | None = None, mermaid: str | None = None) -> str:
    """The page: header, picture (`svg` from dot; else the `mermaid` text), top-level
    findings, filters, per-resource summary and side-by-side file diffs."""
    hosts = _hosts(report)
    body = [f"<h1>gen diff <code>{escape(report.env)}</code></h1>",
            f"<p><b>base</b> <code>{escape(report.base.short)}</code> &rarr; <b>head</b> "
            f"<code>{escape(report.head.short)}</code>: {escape(summary_line(report))}</p>"]
    body += _picture(svg_for_page(svg), mermaid)
    for title, rows in top_findings(report):
        body.append(f"<h2>{escape(title)}</h2>")
        body.append(_findings_table(rows, None, None))
    if report.sections:
        body += _filters(report.sections, hosts)
        body.append("<h2>Per resource</h2>")
        body.append(_summary(report.sections, hosts))
        body.append("<h2>Files</h2><p><button data-open=all>expand all</button> "
                    "<button data-open=none>collapse all</button></p>")
        for index, section in enumerate(report.sections):
            body += [_file(change, f"f{index}", hosts) for change in section.files]
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>\n"
            f'<meta http-equiv="Content-Security-Policy" content="{csp()}">\n'
            f"<title>gen diff {escape(report.env)}</title>\n<style>{STYLE}</style></head>\n"
            "<body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def _picture(svg: str | None, mermaid: str | None) -> list[str]:
    if svg is None and mermaid is None:
        return []
    out = ["<h2>Topology</h2>",
           '<p class=legend><span class=added>added</span><span class=changed>changed</span>'
           "<span class=removed>removed</span> (dashed outline)</p>"]
    if svg is not None:
        return [*out, f'<div class=picture id=picture role=img aria-label="topology">{svg}</div>']
    return [*out, "<p>The picture is not drawn here: Graphviz's <code>dot</code> was not "
                  "installed where this report was built (the graphviz package), failed, or "
                  "its output held more than drawing elements. As Mermaid text:</p>",
            f"<pre id=picture-source>{escape(mermaid or '')}</pre>"]


def _hosts(report: Report) -> dict[str, str]:
    """Every converge target of a changed file -> its filter id (h0, h1, ... in path order)."""
    prefixes = sorted({target_of(f.path).prefix for f in report.files})
    return {prefix: f"h{i}" for i, prefix in enumerate(prefixes)}


def _filters(sections: Iterable[Section], hosts: dict[str, str]) -> list[str]:
    families = "".join(
        f'<button data-filter=family data-value="f{i}">{escape(s.family.title)}</button>'
        for i, s in enumerate(sections))
    targets = "".join(
        f'<button data-filter=host data-value="{ident}">{escape(Target(prefix).label)}</button>'
        for prefix, ident in hosts.items())
    return ["<nav id=filters>",
            f'<div>Family: <button data-filter=family data-value="">all</button>{families}</div>',
            f'<div>Host: <button data-filter=host data-value="">all</button>{targets}</div>',
            "</nav>"]


def _summary(sections: Iterable[Section], hosts: dict[str, str]) -> str:
    rows = []
    for index, section in enumerate(sections):
        counts = escape(section_counts(section))
        targets = " ".join(sorted({hosts[target_of(f.path).prefix] for f in section.files}))
        rows.append(f'<div class=family data-family="f{index}" data-hosts="{targets}">'
                    f"<h3>{escape(section.family.title)} <small>({counts})</small></h3>")
        rows.append(_findings_table(section.findings, f"f{index}",
                                    partial(_finding_hosts, section=section, hosts=hosts)))
        rows.append("</div>")
    return "<div id=summary>" + "\n".join(rows) + "</div>"


def _finding_hosts(finding: Finding, section: Section, hosts: dict[str, str]) -> str:
    """The targets of the section's files that name the finding's resource (`worker1` in
    `hypervisors/hv1/domains/worker1.xml`); all of the section's targets when none does."""
    words = set(re.split(r"[^A-Za-z0-9]+", finding.subject)) - {""}
    all_targets = {target_of(f.path).prefix for f in section.files}
    named = {target_of(f.path).prefix for f in section.files
             if words & set(re.split(r"[^A-Za-z0-9]+", f.path))}
    return " ".join(sorted(hosts[p] for p in (named or all_targets)))


def _findings_table(findings: Iterable[Finding], family: str | None,
                    host_of: Callable[[Finding], str] | None) -> str:
    rows = []
    for finding in findings:
        attrs = ""
        if family is not None and host_of is not None:
            attrs = f' data-family="{family}" data-hosts="{host_of(finding)}"'
        block = (f"<details><summary>content</summary><pre>{escape(finding.block)}</pre>"
                 "</details>" if finding.block else "")
        rows.append(f'<tr class="finding {OP_CLASS.get(finding.op, "")}"{attrs}>'
                    f"<td class=op>{escape(finding.op)}</td>"
                    f"<td><code>{escape(finding.subject)}</code></td>"
                    f"<td>{escape(finding.detail)}{block}</td></tr>")
    return "<table class=findings>" + "".join(rows) + "</table>"


def _file(change: FileChange, family: str, hosts: dict[str, str]) -> str:
    host = hosts[target_of(change.path).prefix]
    return (f'<details class=file data-family="{family}" data-hosts="{host}">'
            f"<summary><code>{escape(change.path)}</code> ({escape(change.status)})</summary>"
            f"{side_by_side(change)}</details>")


def side_by_side(change: FileChange, context: int = CONTEXT) -> str:
    """The file's changed hunks as a four-column table: old line, old text, new line, new
    text; binary files and mode-only changes as one sentence."""
    old, new = _text(change.old), _text(change.new)
    if old is None or new is None:
        return f"<p>binary file {escape(change.status)}</p>"
    if change.mode_only:
        return "<p>executable bit changed</p>"
    a, b = old.splitlines(), new.splitlines()
    rows = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(
            context):
        first = group[0]
        rows.append(f"<tr class=hunk><td colspan=4>@@ -{first[1] + 1} +{first[3] + 1} @@"
                    "</td></tr>")
        for tag, i1, i2, j1, j2 in group:
            for k in range(max(i2 - i1, j2 - j1)):
                left = i1 + k if i1 + k < i2 else None
                right = j1 + k if j1 + k < j2 else None
                rows.append(_row(tag, a, left, b, right))
    return ("<table class=sbs><colgroup><col class=n><col><col class=n><col></colgroup>"
            + "".join(rows) + "</table>")


def _row(tag: str, a: list[str], left: int | None, b: list[str], right: int | None) -> str:
    changed = tag != "equal"

    def cells(lines: list[str], index: int | None, css: str) -> str:
        if index is None:
            return "<td class=n></td><td></td>"
        mark = f" class={css}" if changed else ""
        return f"<td class=n>{index + 1}</td><td{mark}>{escape(lines[index])}</td>"

    return f"<tr>{cells(a, left, 'del')}{cells(b, right, 'add')}</tr>"
