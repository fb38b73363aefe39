"""`gen validate` and `gen render`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from generator import cyclic_gc
from generator.cli import FORMAT, STORE, emit, warn
from generator.errors import EXIT_USER


@click.command()
@click.argument("env")
@FORMAT
def validate(env: str, fmt: str) -> None:
    """Validate ENV against the schema and the semantic rules.

    Every problem is reported at once, one line each, in file order, as
    `FILE:LINE:COL: at FIELD.PATH: message (fix)`. Exit 1 when any is an error.

    ENV is `env/NAME` (resolves to environments/NAME) or a path to an environment dir.
    """
    from generator.environment import load_environment

    loaded = load_environment(env)
    warn(loaded.warnings)
    model = loaded.model
    blueprint = f"{loaded.source.blueprint_dir.name} ({loaded.source.blueprint_origin})"
    emit(fmt, {"environment": model.name, "valid": True, "nodes": len(model.nodes),
                "warnings": [w.render() for w in loaded.warnings],
                "blueprint": {"name": loaded.source.blueprint_dir.name,
                              "origin": loaded.source.blueprint_origin}},
          f"{loaded.source.display(loaded.source.env_dir)}: valid "
          f"({len(model.nodes)} nodes, {len(loaded.warnings)} warning(s)); "
          f"blueprint {blueprint}")


@click.command()
@click.argument("env")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: rendered/<env> in the repo root).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 and list the differences if the output is stale.")
@click.option("--locked", is_flag=True,
              help="Require lock/<env>.lock and exit 4 if it would change (missing or stale "
                   "entries, changed inputs, a different output tree).")
@click.option("--frozen", is_flag=True, help="--locked, and never touch the network.")
@click.option("--commit", is_flag=True,
              help="Keep --out as a git repo of the rendered tree; commit when it changed "
                   "(message: environment, lock hash, source commit).")
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Render in full: neither read nor write the render cache in the store "
                   "(GEN_RENDER_CACHE=off does the same for every command).")
@STORE
@FORMAT
def render(env: str, out: Path | None, check: bool, locked: bool, frozen: bool,
           store: Path | None, fmt: str, commit: bool = False, no_cache: bool = False) -> None:
    """Render ENV into a directory of pinned, reproducible files.

    Files no longer rendered are deleted; unchanged files are left untouched (their mtime
    is kept), so `git status` in the output shows exactly what changed. An environment
    rendered before with the same generator, inputs, lock and store is read back from the
    render cache in the store (verified) instead of rendered again.

    ENV is `env/NAME` (resolves to environments/NAME) or a path to an environment dir.
    """
    from generator.pipeline import render_cached
    from generator.writer import compare, read_tree, write_tree

    with cyclic_gc.paused():
        # Rendering never uses the network, so --frozen adds nothing beyond --locked here.
        rendered = render_cached(env, store_root=store, locked=locked or frozen,
                                 cache=not no_cache)
        for line in rendered.warnings:
            click.echo(line, err=True)
        for note in rendered.notes:
            click.echo(f"warning: {note}", err=True)
        target = out or rendered.default_out()
        if check:
            changes = compare(read_tree(target), rendered.tree)
        else:
            changes = write_tree(target, rendered.tree, rendered.env_name,
                                 within=None if out else rendered.root)
    if commit and not check:
        _commit(target, rendered)
    payload = {"environment": rendered.env_name, "out": str(target), "files": len(rendered.tree),
               "added": list(changes.added), "changed": list(changes.changed),
               "removed": list(changes.removed), "stale": check and not changes.empty}
    emit(fmt, payload, _render_summary(rendered.env_name, target, len(rendered.tree), changes,
                                        check))
    if check and not changes.empty:
        sys.exit(EXIT_USER)


def _commit(target: Path, rendered: Any) -> None:
    """`--commit`: one commit in the output repo per changed tree (see generator.gitrepo)."""
    from generator import gitrepo
    from generator.lock.lockfile import lock_path

    done = gitrepo.commit_rendered(
        target, rendered.env_name, gitrepo.lock_hash(lock_path(rendered.root, rendered.env_name)),
        gitrepo.source_commit(rendered.root))
    click.echo(f"committed {done.sha[:12]} in {target}" if done.sha else
               f"{target}: rendered tree unchanged, nothing to commit", err=True)


def _render_summary(env: str, target: Path, count: int, changes: Any, check: bool) -> str:
    rows = [f"+ {p}" for p in changes.added] + [f"~ {p}" for p in changes.changed] + [
        f"- {p}" for p in changes.removed]
    if check:
        head = (f"{target}: up to date ({count} files)" if changes.empty else
                f"{target}: stale, {len(rows)} difference(s); run `gen render env/{env}`")
    else:
        head = (f"rendered {env} -> {target}: {count} files, {len(changes.added)} added, "
                f"{len(changes.changed)} changed, {len(changes.removed)} removed")
    return "\n".join([head, *(rows if check else [])])
