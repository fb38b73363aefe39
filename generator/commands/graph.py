"""`gen graph`: the topology of one revision of an environment, as a picture."""

from __future__ import annotations

import json
import shutil
import subprocess

import click

from generator.errors import UserError


@click.command()
@click.argument("env")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg", "json"]),
              default="mermaid", show_default=True,
              help="mermaid for READMEs and PR comments, dot for Graphviz, svg rendered by "
                   "Graphviz's `dot` program, json for machines.")
@click.option("--collapse-at", type=click.IntRange(min=1), default=None,
              help="Group the VMs of one role on one hypervisor when the environment has "
                   "more VMs than this (default: 40).")
def graph(env: str, fmt: str, collapse_at: int | None) -> None:
    """Print ENV's topology: hypervisors and their VMs (role, vCPU, memory, IP), networks,
    and the helper's services with what each serves (DNS zone, DHCP reservations, HAProxy
    frontends -> backends, NFS exports).

    ENV is `env/NAME` or a path to an environment dir; the working tree is read, nothing
    is rendered or written.
    """
    from generator import graph as topology
    from generator.environment import load_environment

    model = load_environment(env).model
    built = topology.build(model, collapse_at=collapse_at or topology.COLLAPSE_AT)
    if fmt == "json":
        click.echo(json.dumps(topology.to_json(built), indent=2, sort_keys=True))
    elif fmt == "dot":
        click.echo(topology.to_dot(built), nl=False)
    elif fmt == "svg":
        click.echo(to_svg(topology.to_dot(built)), nl=False)
    else:
        click.echo(topology.to_mermaid(built), nl=False)


def to_svg(dot_text: str) -> str:
    """Lay the graph out with Graphviz's own `dot` program (Debian package graphviz)."""
    program = shutil.which("dot")
    if program is None:
        raise UserError("Graphviz's `dot` program is not installed",
                        "install the graphviz package, or use --format dot or mermaid")
    result = subprocess.run([program, "-Tsvg"], input=dot_text, capture_output=True,
                            text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise UserError(f"dot -Tsvg failed: {result.stderr.strip().splitlines()[-1:]}",
                        "report this: gen's dot output should always lay out")
    return result.stdout
