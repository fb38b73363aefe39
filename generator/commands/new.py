"""`gen new`: scaffold an environment from a blueprint's cookiecutter template."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli import FORMAT, emit


@click.command()
@click.argument("env")
@click.option("--blueprint", required=True,
              help="Blueprint: blueprints/NAME of the repo, else a built-in one "
                   "(openshift-upi, kubeadm, kolla-aio).")
@click.option("--no-input", is_flag=True, help="Take every default; ask nothing.")
@click.option("--answers", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="YAML/JSON file of answers (cluster_name, subnet, masters, ...).")
@click.option("--no-lock", is_flag=True, help="Do not write lock/<env>.lock.")
@FORMAT
def new(env: str, blueprint: str, no_input: bool, answers: Path | None, no_lock: bool,
        fmt: str) -> None:
    """Scaffold environments/ENV from the template of blueprint BLUEPRINT.

    Run it inside a gen repo (`gen init` makes one). Asks for the cluster name, domain,
    subnet, node counts and sizes (see the template's cookiecutter.json for every question
    and its default). The answers are checked (schemas/answers.schema.json) and the new
    environment is validated before anything is written; then its lock is written.

    \b
    Examples:
      gen new lab2 --blueprint openshift-upi
      gen new edge --blueprint kubeadm --answers edge.yaml
    """
    from generator.environment import env_dir_to_write
    from generator.scaffold import read_answers, scaffold

    name = env[4:] if env.startswith("env/") else env
    root, _ = env_dir_to_write(name)
    given = read_answers(answers) if answers else None
    target = scaffold(root, name, blueprint, given, no_input)
    lock_note = _write_lock(target) if not no_lock else "not written (--no-lock)"
    emit(fmt, {"environment": name, "path": str(target), "blueprint": blueprint,
               "lock": lock_note},
         f"created {target.relative_to(root)} from blueprint {blueprint}; lock: {lock_note}")


def _write_lock(env_dir: Path) -> str:
    """Lock the new environment offline: inputs and outputs now; external artifacts are left
    for `gen lock`, which may reach the network (gen new never does)."""
    from generator.environment import load_environment
    from generator.lock.compute import Resolver, lock_environment
    from generator.lock.lockfile import lock_path, write_lock
    from generator.lock.store import Store, default_root

    loaded = load_environment(str(env_dir))
    result = lock_environment(loaded, None, Resolver(Store(default_root()), env_dir, True),
                              allow_missing=True)
    path = lock_path(loaded.source.root, loaded.source.name)
    write_lock(path, result.lock)
    pending = len(result.unresolved)
    note = f", {pending} artifact(s) to pin with `gen lock`" if pending else ""
    return f"{loaded.source.display(path)}{note}"
