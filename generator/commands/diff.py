"""`gen diff`: what a change does to the rendered repo, per resource."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.errors import EXIT_CHANGES, UserError

if TYPE_CHECKING:
    from generator.diff import Report


@click.command()
@click.argument("env")
@click.option("--base", metavar="REF",
              help="Revision to compare from (default: merge-base of HEAD with origin/main or "
                   "main, else HEAD).")
@click.option("--head", metavar="REF",
              help="Revision to compare to (default: the working tree, uncommitted edits "
                   "included).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]),
              default="text", show_default=True,
              help="text for a terminal, json for machines, markdown for a PR comment, html "
                   "for a self-contained page to browse (a CI artifact).")
@click.option("--max-chars", type=click.IntRange(min=1000), default=65536, show_default=True,
              help="Markdown: split into numbered parts of at most this many characters.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Markdown: write gen-diff-<env>-NNN.md parts into this directory instead "
                   "of printing them. HTML: write gen-diff-<env>.html there.")
@click.option("--files/--no-files", default=True, show_default=True,
              help="Text: include the unified diffs of the files after the summary.")
@click.option("--color/--no-color", default=None,
              help="Text: color the output (default: only when stdout is a terminal).")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes, 0 when there are none.")
def diff(env: str, base: str | None, head: str | None, fmt: str, max_chars: int,
         out_dir: Path | None, files: bool, color: bool | None, detailed_exitcode: bool) -> None:
    """Show what the change between two revisions does to ENV's rendered repo.

    ENV is rendered at both revisions from temporary git worktrees (no network; each side
    pinned by its own lock/<env>.lock when there is one) with the generator code installed
    now. The output starts with the lock input changes (image digests, OS artifacts) and
    secret reference changes (only ever shown as `(sensitive value changed)`), then a
    summary per family (VMs, DNS, DHCP, PXE, HAProxy, NFS, Ignition, Kubernetes), then the
    unified diffs of the files.

    Markdown output is for a pull-request comment: each part starts with the hidden marker
    `<!-- gen-diff:ENV -->` so CI can update its own comment, and is at most --max-chars.
    HTML output is one page that needs no network when opened: the topology picture (laid
    out by Graphviz's `dot` when installed), the summary with filters by family and host,
    and side-by-side file diffs.
    """
    from generator.diff import formats
    from generator.diff.sides import run_diff

    report = run_diff(env, base, head)
    if fmt == "json":
        click.echo(json.dumps(formats.to_json(report), indent=2, sort_keys=True))
    elif fmt == "markdown":
        parts = formats.to_markdown(report, max_chars)
        if out_dir is not None:
            for path in write_parts(out_dir, report.env, parts):
                click.echo(str(path))
        else:
            click.echo("\n".join(parts), nl=False)
    elif fmt == "html":
        page = html_page(report)
        if out_dir is not None:
            click.echo(str(write_page(out_dir, report.env, page)))
        else:
            click.echo(page, nl=False)
    else:
        use_color = sys.stdout.isatty() if color is None else color
        click.echo(formats.to_text(report, color=use_color, diffs=files), color=use_color)
    if detailed_exitcode and not report.empty:
        sys.exit(EXIT_CHANGES)


def write_parts(out_dir: Path, env: str, parts: list[str]) -> list[Path]:
    """Write parts as gen-diff-<env>-001.md...; stale parts of an earlier run are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"gen-diff-{env}-*.md"):
        stale.unlink()
    paths = []
    for index, text in enumerate(parts, 1):
        path = out_dir / f"gen-diff-{env}-{index:03d}.md"
        path.write_text(text)
        paths.append(path)
    return paths


def html_page(report: Report) -> str:
    """The HTML report, its picture laid out to SVG by `dot` when Graphviz is installed
    (else the page carries the Mermaid text)."""
    from generator import graph
    from generator.commands.graph import to_svg
    from generator.diff import formats, htmlpage

    picture = formats.review_picture(report)
    if picture is None:
        return htmlpage.to_html(report)
    svg = None
    if shutil.which("dot"):
        try:
            svg = to_svg(graph.to_dot(picture))
        except (UserError, subprocess.TimeoutExpired):
            pass  # the page says the picture is not drawn and carries its Mermaid text
    return htmlpage.to_html(report, svg, graph.to_mermaid(picture, legend=True))


def write_page(out_dir: Path, env: str, page: str) -> Path:
    """Write gen-diff-<env>.html atomically (a reader never sees half a page)."""
    from generator.safefile import replace_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gen-diff-{env}.html"
    replace_file(path, page)
    return path
