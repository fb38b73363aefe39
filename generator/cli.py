"""The `gen` command line: thin commands that parse flags, call the core once, and print.

Errors are adapted to exit codes in one place (`main`), so no command prints a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from generator import regexcache

# Before click and everything after it compile their regular expressions: most then come
# from the previous run's cache (generator/regexcache.py).
regexcache.load()

import click  # noqa: E402

from generator import __version__, cyclic_gc  # noqa: E402

# generator.errors is imported where a failure is handled, so `gen --help` does without it
# and its dataclasses (~5% of that process).
if TYPE_CHECKING:
    from generator.errors import Problem


def emit(fmt: str, payload: dict[str, Any], text: str) -> None:
    import json  # only for --format json: `gen --help` does without it

    click.echo(json.dumps(payload, indent=2, sort_keys=True) if fmt == "json" else text)


def warn(warnings: tuple[Problem, ...]) -> None:
    for warning in warnings:
        click.echo(warning.render(), err=True)


FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="Output for people (text) or machines (json).")
# Here, not in commands/lock.py, so `gen render` does not import the lock commands for it.
STORE = click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path),
                     envvar="GEN_STORE",
                     help="Content store (default ~/.cache/gen/store; $GEN_STORE).")


# Command name -> "module:function". Modules load only when their command runs, so heavy
# imports (jsonschema, libvirt, kubernetes, git) never slow down other commands.
COMMANDS = {
    "validate": "generator.commands.render:validate",
    "render": "generator.commands.render:render",
    "lock": "generator.commands.lock:lock_cmd",
    "update": "generator.commands.lock:update_cmd",
    "verify": "generator.commands.lock:verify_cmd",
    "fetch": "generator.commands.lock:fetch_cmd",
    "store": "generator.commands.store:store_group",
    "diff": "generator.commands.diff:diff",
    "graph": "generator.commands.graph:graph",
    "set": "generator.commands.edit:set_field",
    "node": "generator.commands.edit:node",
    "init": "generator.commands.init:init",
    "new": "generator.commands.new:new",
    "plan": "generator.commands.reconcile:plan",
    "converge": "generator.commands.reconcile:converge",
    "import": "generator.commands.importer:import_group",
}


# Each command's one-line summary, so `gen --help` lists the commands without importing a
# single command module (click would import every one to read its docstring). A test keeps
# these equal to the commands' own short help.
SUMMARIES = {
    "converge": "Make the live hosts match the locked render of ENV, in waves.",
    "diff": "Show what the change between two revisions does to ENV's rendered repo.",
    "fetch": "Download every artifact ENV's lock pins into the content store, verifying "
             "sha256.",
    "graph": "Print ENV's topology: hypervisors and their VMs (role, vCPU, memory, IP), "
             "networks, and the helper's services with what each serves (DNS zone, DHCP "
             "reservations, HAProxy frontends -> backends, NFS exports).",
    "import": "Adopt an existing lab: write an environment describing it.",
    "init": "Make DIRECTORY (default: here) a GitOps repo managed with gen.",
    "lock": "Pin ENV's inputs into lock/<env>.lock, adding only what is missing.",
    "new": "Scaffold environments/ENV from the template of blueprint BLUEPRINT.",
    "node": "Add or remove nodes of an environment (validated, comments kept).",
    "plan": "Show what `gen converge ENV` would do to the live hosts, without changing "
            "anything.",
    "render": "Render ENV into a directory of pinned, reproducible files.",
    "set": "Set the field PATH of ENV's env.yaml to VALUE, keeping comments and layout.",
    "store": "Move the content store's objects between sites (disconnected installs).",
    "update": "Re-resolve INPUTS of ENV (all by default) and print old -> new for each.",
    "validate": "Validate ENV against the schema and the semantic rules.",
    "verify": "Re-render ENV with its lock and check every hash; exit 4 naming what differs.",
}


# Shell completion (click's own: `eval "$(_GEN_COMPLETE=bash_source gen)"`, zsh_source,
# fish_source). Verbs and choice values (--format, --ci, ...) complete by themselves; these
# add environment names for every ENV argument and node names where a node is named.

def complete_env(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[click.shell_completion.CompletionItem]:
    """`env/NAME` for every environments/NAME/env.yaml of the repo around the cwd."""
    from generator.environment import find_root

    base = find_root(Path.cwd()) / "environments"
    names = sorted(p.parent.name for p in base.glob("*/env.yaml")) if base.is_dir() else []
    return [click.shell_completion.CompletionItem(f"env/{n}") for n in names
            if f"env/{n}".startswith(incomplete) or n.startswith(incomplete)]


def complete_node(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[click.shell_completion.CompletionItem]:
    """Node names of the environment given before, read straight from its env.yaml (fast,
    and still useful when the file does not validate yet)."""
    import yaml

    from generator.environment import resolve_env_dir

    try:
        env_dir = resolve_env_dir(str(ctx.params.get("env") or ""))
        data = yaml.safe_load((env_dir / "env.yaml").read_text(encoding="utf-8"))
        nodes = [str(n["name"]) for n in data.get("nodes", []) if isinstance(n, dict)]
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []
    return [click.shell_completion.CompletionItem(n) for n in sorted(nodes)
            if n.startswith(incomplete)]


# Which arguments complete how: (command path, parameter name) -> completer.
_COMPLETERS = {"env": complete_env, "store export:env": complete_env,
               "node remove:name": complete_node}


def _add_completion(command: click.Command, path: str = "") -> None:
    for param in command.params:
        completer = _COMPLETERS.get(f"{path}:{param.name}" if path else str(param.name))
        if isinstance(param, click.Argument) and completer is not None:
            param._custom_shell_complete = completer  # click's hook for shell_complete=
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            _add_completion(sub, f"{path} {name}".strip() if path else f"{command.name} {name}")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        command: click.Command = getattr(module, attr)
        _add_completion(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from SUMMARIES instead of importing every command."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(SUMMARIES[name], limit))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="gen", message="%(prog)s %(version)s")
def cli() -> None:
    """gen compiles environment blueprints into a pinned, reproducible GitOps repo.

    \b
    Typical loop (ENV is env/NAME, i.e. environments/NAME):
      gen validate env/lab        check the environment, report every problem at once
      gen render env/lab          write rendered/lab (libvirt XML, boot services, ...)
      gen lock env/lab            pin images, OS artifacts and the rendered tree's hash
      gen diff env/lab            what a change does, per resource (PR review)
      gen plan env/lab            what converge would do to the live hosts
      gen converge env/lab        make them so (--prune and --allow-destroy to delete)

    \b
    New repo: gen init DIR --ci github|gitlab|none, then gen new NAME --blueprint BLUEPRINT.
    Shell completion: eval "$(_GEN_COMPLETE=bash_source gen)" (zsh_source, fish_source).

    \b
    Exit codes: 0 ok, 1 bad input or failed check, 2 changes present (--detailed-exitcode),
    3 destructive change not approved, 4 lock stale, 64 usage error, 70 internal error.
    """


def _errors() -> ModuleType:
    import generator.errors

    return generator.errors


def _fail(lines: list[str], code: int) -> NoReturn:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every failure to gen's exit codes (docs/design.md)."""
    if argv is None:  # the `gen` process itself, not a caller in-process
        regexcache.save_at_exit()
        cyclic_gc.freeze_on_resume()
    try:
        code = cli.main(args=argv, prog_name="gen", standalone_mode=False)
        sys.exit(code or 0)
    except click.exceptions.UsageError as exc:
        exc.show()
        sys.exit(_errors().EXIT_USAGE)
    except click.exceptions.Abort:
        _fail(["aborted"], _errors().EXIT_USER)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(_errors().EXIT_USAGE)
    except KeyboardInterrupt:
        _fail(["interrupted"], 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become exit 70
        if isinstance(exc, _errors().GenError):  # gen's own: its lines and exit code
            _fail(exc.lines(), exc.exit_code)
        if os.environ.get("GEN_DEBUG"):
            raise
        _fail([f"internal error: {type(exc).__name__}: {exc}",
               "this is a bug in gen: please report it with the command you ran "
               "(set GEN_DEBUG=1 to see the traceback)"], _errors().EXIT_INTERNAL)
