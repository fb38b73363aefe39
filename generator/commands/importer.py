"""`gen import`: describe an existing lab as an environment (helper-node vars, live libvirt)."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli import FORMAT, emit


@click.group(name="import")
def import_group() -> None:
    """Adopt an existing lab: write an environment describing it.

    \b
    gen import helpernode VARS.yaml --env NAME   from a helper-node playbook vars file
    gen import libvirt URI --env NAME            from the live domains of a hypervisor
    Then: gen render, gen plan --adopt, gen converge --adopt (see docs/migrating.md).
    """


def _env_name(env: str) -> str:
    """The environment's name, once it is known the import may write environments/NAME."""
    from generator.environment import env_dir_to_write

    name = env[4:] if env.startswith("env/") else env
    env_dir_to_write(name)
    return name


def _check_name(name: str, flag: str) -> None:
    """A flag naming a blueprint folder or a hypervisor: a usage error (64) when invalid,
    never reported as a problem of a file that was not written."""
    from generator.confine import NAME_FIX, name_problem

    problem = name_problem(name)
    if problem:
        shown = problem if len(name) <= 80 else f"a {len(name)}-character name is not valid"
        raise click.BadParameter(f"{shown}: {NAME_FIX}", param_hint=flag)


def _check_blueprint(blueprint: str) -> None:
    from generator.environment import find_root, known_blueprints, resolve_blueprint

    _check_name(blueprint, "--blueprint")
    root = find_root(Path.cwd())
    if resolve_blueprint(root, blueprint) is None:
        raise click.BadParameter(f"no blueprint {blueprint!r} (known: "
                                 f"{', '.join(known_blueprints(root))})",
                                 param_hint="--blueprint")


def _finish(imported: object, name: str, header: str, fmt: str, source: str,
            sections: tuple[str, ...] = ()) -> None:
    from generator.environment import find_root
    from generator.errors import InvalidInput
    from generator.importers import Imported, blame_source, write_environment

    assert isinstance(imported, Imported)
    if imported.refused:
        for line in imported.lines:
            if line.status == "not supported":
                click.echo(line.render(), err=True)
        raise InvalidInput(imported.problems())
    root = find_root(Path.cwd())
    try:
        path = write_environment(root, name, imported.data, header, sections)
    except InvalidInput as exc:
        raise InvalidInput(blame_source(exc.problems, imported, source,
                                        f"{name}/env.yaml")) from None
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    counts = {s: sum(1 for line in imported.lines if line.status == s)
              for s in ("mapped", "not supported")}
    text = [line.render() for line in imported.lines]
    text.append(f"wrote {shown} from {source}: {counts['mapped']} field(s) mapped, "
                f"{counts['not supported']} not supported; next: gen render env/{name}")
    emit(fmt, {"environment": name, "path": str(path), "source": source,
               "fields": [line.as_json() for line in imported.lines]}, "\n".join(text))


@import_group.command(name="helpernode")
@click.argument("vars_file", metavar="VARS.yaml",
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--env", "env", required=True, help="Environment to write (environments/NAME).")
@FORMAT
def helpernode(vars_file: Path, env: str, fmt: str) -> None:
    """Turn a helper-node playbook vars file into an openshift-upi environment.

    Every field gets one line: mapped (and where to), not supported (gen does not manage
    it; the import goes on) or refused (nothing is written, exit 1).

    Example: gen import helpernode vars.yaml --env lab
    """
    from generator.importers.helpernode import import_helpernode
    from generator.loader import decode_utf8, read_regular_file

    name = _env_name(env)
    # Bounded and regular files only: /dev/zero, a FIFO or a huge file is refused unread.
    text = decode_utf8(read_regular_file(vars_file, str(vars_file)), str(vars_file))
    imported = import_helpernode(text, str(vars_file), name)
    _finish(imported, name, f"Imported by `gen import helpernode {vars_file.name}`.\n"
            "Comments mark every value that was assumed, not read from the vars file.",
            fmt, str(vars_file))


def _known_bridges(name: str) -> tuple[tuple[str, str], ...]:
    """(bridge, network) of the environment merged into, so its LAN keeps its name."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from generator.environment import find_root

    path = find_root(Path.cwd()) / "environments" / name / "env.yaml"
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError):
        return ()  # a new environment, or one the merge step reports on
    networks = data.get("networks") if isinstance(data, dict) else None
    return tuple((str(n["bridge"]), str(n["name"])) for n in networks or []
                 if isinstance(n, dict) and n.get("bridge") and n.get("name")
                 and "libvirt" not in n)


def _role_pairs(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from generator.importers.libvirt import ROLES

    pairs = []
    for value in values:
        pattern, _, role = value.partition("=")
        if not pattern or role not in ROLES:
            raise click.BadParameter(f"'{value}': write PATTERN=ROLE with ROLE one of "
                                     f"{', '.join(ROLES)}", param_hint="--role")
        pairs.append((pattern, role))
    return tuple(pairs)


@import_group.command(name="libvirt")
@click.argument("uri")
@click.option("--env", "env", required=True, help="Environment to write (environments/NAME).")
@click.option("--match", "match", multiple=True, metavar="PATTERN",
              help="Only domains whose name matches this glob (repeatable).")
@click.option("--role", "roles", multiple=True, metavar="PATTERN=ROLE",
              help="Role of the domains matching a glob, e.g. 'ocp-cp*=master' (repeatable; "
                   "else inferred from names: bootstrap, master, worker, helper).")
@click.option("--hypervisor", default="hv1", show_default=True,
              help="Name of the hypervisor in the environment.")
@click.option("--blueprint", default="openshift-upi", show_default=True,
              help="Blueprint of a new environment.")
@FORMAT
def libvirt(uri: str, env: str, match: tuple[str, ...], roles: tuple[str, ...],
            hypervisor: str, blueprint: str, fmt: str) -> None:
    """Describe the live domains of the libvirt host at URI as an environment.

    Writes the hypervisor (URI, pool), the networks the domains use and one node per
    domain: vCPUs, memory, firmware, boot order, disks (from their volumes) and NICs with
    their MACs and the addresses libvirt reserves. Into an existing environment only
    hypervisors, networks and nodes are merged (nodes by name; a node's static ip stays).
    Values libvirt does not know carry a comment. Then `gen plan --adopt` shows adoptions.

    \b
    Examples:
      gen import libvirt qemu:///system --env lab
      gen import libvirt qemu+ssh://root@hv1/system --env lab --match 'ocp-*' \\
          --role 'ocp-cp*=master'
    """
    from generator.importers.libvirt import Options, import_libvirt, read_snapshot

    name = _env_name(env)
    _check_name(hypervisor, "--hypervisor")
    _check_blueprint(blueprint)
    opts = Options(name, hypervisor, match, _role_pairs(roles), blueprint,
                   _known_bridges(name))
    imported = import_libvirt(read_snapshot(uri), opts)
    _finish(imported, name, f"Imported by `gen import libvirt {uri}`.\n"
            "Comments mark every value libvirt does not know.", fmt, uri,
            sections=("hypervisors", "networks", "nodes"))
