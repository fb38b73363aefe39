"""`gen set`, `gen node add`, `gen node remove`: validated in-place edits of env.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from generator.cli import FORMAT, emit, warn
from generator.loader import ENV_FILE


def apply_edit(env: str, change: Callable[[Any], None]) -> tuple[Path, str, str]:
    """Edit env.yaml through `change`, validate the result, and only then write it atomically.

    Returns (file, old text, new text). An invalid edit raises and leaves the file untouched.
    """
    from generator import edit
    from generator.environment import load_environment, resolve_env_dir
    from generator.safefile import check_replaceable, replace_file

    env_dir = resolve_env_dir(env)
    path = env_dir / ENV_FILE
    check_replaceable(path)  # a symlinked env.yaml is neither read nor written through
    old = path.read_text(encoding="utf-8")
    yaml, data = edit.load(old, str(path))
    change(data)
    new = edit.dump(yaml, data)
    loaded = load_environment(str(env_dir), env_text=new)
    warn(loaded.warnings)
    if new != old:
        replace_file(path, new)
    return path, old, new


def _report(fmt: str, path: Path, old: str, new: str, what: str) -> None:
    emit(fmt, {"file": str(path), "changed": old != new, "edit": what},
         f"{path}: {what}" if old != new else f"{path}: already so, nothing written")


@click.command(name="set")
@click.argument("env")
@click.argument("path")
@click.argument("value")
@FORMAT
def set_field(env: str, path: str, value: str, fmt: str) -> None:
    """Set the field PATH of ENV's env.yaml to VALUE, keeping comments and layout.

    \b
    PATH is a field path: cluster.name, nodes[2].memory, or select list items by name:
    nodes[worker0].memory. VALUE is read as YAML: 8 is a number, true a boolean,
    '[a, b]' a list, 16GiB text. The edited environment is validated before it is
    written; an invalid edit exits 1 and leaves the file untouched.

    Example: gen set env/lab nodes[worker0].memory 16GiB
    """
    from generator import edit

    file, old, new = apply_edit(env, lambda data: edit.set_value(data, path, value))
    _report(fmt, file, old, new, f"set {path} = {value}")


@click.group()
def node() -> None:
    """Add or remove nodes of an environment (validated, comments kept)."""


@node.command(name="add")
@click.argument("env")
@click.argument("name")
@click.option("--role", required=True,
              type=click.Choice(["helper", "bootstrap", "master", "worker", "storage", "lb"]))
@click.option("--hypervisor", help="Hypervisor name (default: that of the last node).")
@click.option("--network", help="Network of the NIC (default: the first network).")
@click.option("--ip", help="Address (default: the next free one after the same role's).")
@click.option("--mac", help="MAC address (default: derived from the environment and name).")
@click.option("--vcpu", type=int, help="vCPUs (default: the blueprint's role default).")
@click.option("--memory", help="Memory such as 8GiB (default: the role default).")
@FORMAT
def node_add(env: str, name: str, role: str, hypervisor: str | None, network: str | None,
             ip: str | None, mac: str | None, vcpu: int | None, memory: str | None,
             fmt: str) -> None:
    """Add node NAME with --role to ENV, sized by the blueprint's role defaults.

    Example: gen node add env/lab worker2 --role worker
    """
    from generator import edit

    def change(data: Any) -> None:
        nodes = data.get("nodes") or []
        net = network or (data.get("networks") or [{}])[0].get("name", "")
        fields: dict[str, Any] = {"name": name, "role": role}
        hv = hypervisor or (nodes[-1].get("hypervisor") if nodes else None)
        if hv:
            fields["hypervisor"] = hv
        fields.update({k: v for k, v in (("vcpu", vcpu), ("memory", memory)) if v is not None})
        nic: dict[str, Any] = {"network": net, "ip": ip or edit.next_free_ip(data, net, role)}
        if mac:
            nic["mac"] = mac
        fields["nics"] = [nic]
        edit.add_node(data, fields)

    file, old, new = apply_edit(env, change)
    _report(fmt, file, old, new, f"added node {name} ({role})")


@node.command(name="remove")
@click.argument("env")
@click.argument("name")
@FORMAT
def node_remove(env: str, name: str, fmt: str) -> None:
    """Remove node NAME from ENV (validated first: removing a needed master fails).

    The live VM is untouched until `gen converge --prune --allow-destroy`.
    """
    from generator import edit

    file, old, new = apply_edit(env, lambda data: edit.remove_node(data, name))
    _report(fmt, file, old, new, f"removed node {name}")
