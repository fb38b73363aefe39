"""`gen plan` and `gen converge`: diff the locked render against live hosts and converge them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from generator.cli import FORMAT, emit
from generator.errors import EXIT_CHANGES, UsageError, UserError
from generator.reconcile.base import DEFAULT_PARALLEL
from generator.reconcile.providers import PROVIDERS, OptionSpec, specs


def click_option(param: str, spec: OptionSpec) -> Any:
    """The click option a provider's OptionSpec describes, its value under `param`."""
    decls = [spec.flag]
    extra: dict[str, Any] = {}
    if spec.kind == "flag":
        extra["is_flag"] = True
    elif spec.kind == "switch":
        decls = [f"{spec.flag}/--no-{spec.flag[2:]}"]
    elif spec.kind in ("dir", "file"):
        extra["type"] = click.Path(file_okay=spec.kind == "file", dir_okay=spec.kind == "dir")
    elif spec.kind == "float":
        extra["type"] = float
    if spec.multiple:
        extra["multiple"] = True
    if spec.default is not None:
        extra["default"] = spec.default
    return click.option(*decls, param, metavar=spec.metavar, help=spec.help,
                        show_default=spec.show_default, **extra)


def provider_options() -> list[Any]:
    """Every provider's flags, generated from its options dataclass (providers.py)."""
    return [click_option(descriptor.prefix + name, spec) for descriptor in PROVIDERS
            for name, spec in specs(descriptor.options)]


def _use_secrets_dir(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--secrets-dir is $GEN_SECRETS_DIR for this run (reconcile/secrets.secrets_dir)."""
    if value:
        import os

        from generator.reconcile.secrets import SECRETS_DIR_VARIABLE

        os.environ[SECRETS_DIR_VARIABLE] = value
    return value


_SECRETS_DIR_OPTION = click.option(
    "--secrets-dir", "secrets_dir", metavar="DIR", expose_value=False, callback=_use_secrets_dir,
    help="The only directory {file: NAME} secret references are read from, on the machine "
         "that fills them (default: $GEN_SECRETS_DIR or ~/.config/gen/secrets; ~/ is that "
         "machine's home).")


def _common(func: Any) -> Any:
    options = [
        click.argument("env"),
        click.option("--prune", is_flag=True,
                     help="Delete owned objects that are no longer rendered."),
        click.option("--allow-destroy", is_flag=True,
                     help="Approve deleting/replacing VMs and wiping disks (also needs --prune "
                          "for deletes). `protect: true` resources are never destroyed."),
        click.option("--uri-override", "uri_overrides", multiple=True, metavar="HV=URI",
                     help="Use URI for hypervisor HV instead of the environment's, e.g. "
                          "hv1=test:///tmp/state.xml or hv1=qemu:///system. Repeatable."),
        click.option("--start", "start", default="all", show_default=True,
                     metavar="all|none|ROLE[,ROLE]",
                     help="Which domains converge keeps running (started in order helper, "
                          "bootstrap, masters, workers). Domains are never stopped."),
        click.option("--provider", "providers", multiple=True, metavar="NAME",
                     help=f"Only these providers ({', '.join(d.name for d in PROVIDERS)}; "
                          "default: all). Repeatable."),
        click.option("--verbose", "-v", is_flag=True,
                     help="List every field of objects to create, too."),
        click.option("--parallel", "parallel", type=click.IntRange(1, 64),
                     default=DEFAULT_PARALLEL, show_default=True, metavar="N",
                     help="Talk to up to N hypervisors at once: read their live state, and "
                          "(converge) apply one wave and boot order on several together. "
                          "The plan is the same; 1: one after the other. The default "
                          "covers most fleets (never more threads than hypervisors): talking "
                          "to a hypervisor is waiting on its connection."),
        *provider_options(),
        _SECRETS_DIR_OPTION,
        FORMAT,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(prune: bool, allow_destroy: bool, uri_overrides: tuple[str, ...], start: str,
              providers: tuple[str, ...], options: dict[str, Any]) -> Any:
    """The Settings the flags say; `--parallel` is taken out of `options` here."""
    from generator.reconcile.plan import Settings

    pairs = []
    for item in uri_overrides:
        hv, sep, uri = item.partition("=")
        if not sep or not hv or not uri:
            raise UsageError(f"--uri-override {item!r}: write it as HV=URI, e.g. "
                             "hv1=qemu:///system")
        pairs.append((hv, uri))
    roles = None if start == "all" else frozenset(
        () if start == "none" else (r.strip() for r in start.split(",") if r.strip()))
    return Settings(prune=prune, allow_destroy=allow_destroy, uri_overrides=tuple(pairs),
                    start_roles=roles, providers=providers,
                    parallel=options.pop("parallel", DEFAULT_PARALLEL),
                    options=tuple(descriptor.read(options) for descriptor in PROVIDERS))


@click.command()
@_common
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when the plan has changes (0: none).")
def plan(env: str, prune: bool, allow_destroy: bool, uri_overrides: tuple[str, ...],
         start: str, providers: tuple[str, ...], verbose: bool, fmt: str,
         detailed_exitcode: bool, **options: Any) -> None:
    """Show what `gen converge ENV` would do to the live hosts, without changing anything.

    \b
    Symbols: + create, ~ update in place, -/+ replace (naming the field that forces it),
    - delete (only with --prune). Ends with `Plan: X to add, Y to change, Z to replace,
    W to destroy.` The locked render (lock/<env>.lock) is the source of truth: a render
    that differs from the lock exits 4.

    Exit codes: 0 no changes (or changes without --detailed-exitcode), 2 changes present
    with --detailed-exitcode, or some host not looked at (no --files-target/--files-exec
    for it, no --kubeadm-exec for a cluster node: the plan says which), 1 conflicts with
    foreign objects, 3 a destructive change not approved or a protected resource in the way,
    4 lock mismatch.
    """
    from generator import cyclic_gc
    from generator.reconcile.output import format_text, to_json
    from generator.reconcile.plan import build_plan, check_approval, check_names, load_desired

    settings = _settings(prune, allow_destroy, uri_overrides, start, providers, options)
    # a plan holds every rendered and live definition parsed (no cycles among them): the
    # collector only rescanned them, ~10% of a 500-domain plan
    with cyclic_gc.paused():
        desired = load_desired(env)
        check_names(desired, settings)
        result = build_plan(desired, settings)
    emit(fmt, to_json(result, settings), format_text(result, settings, verbose))
    check_approval(result, settings)
    if detailed_exitcode and not (result.empty and result.complete):
        sys.exit(EXIT_CHANGES)


@click.command()
@_common
@click.option("--auto-approve", is_flag=True, help="Apply without asking (for CI).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the converge lock and journal live (default ~/.cache/gen/state).")
@click.option("--lock-timeout", type=float, default=7200, show_default=True,
              help="Seconds after which another converge's lock counts as abandoned.")
@click.option("--lock-wait", type=float, default=0, show_default=True,
              help="Seconds to wait for another converge of ENV to finish.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when changes were applied (0: nothing to do).")
def converge(env: str, prune: bool, allow_destroy: bool, uri_overrides: tuple[str, ...],
             start: str, providers: tuple[str, ...], verbose: bool, fmt: str, auto_approve: bool,
             state_dir: Path | None, lock_timeout: float, lock_wait: float,
             detailed_exitcode: bool, **options: Any) -> None:
    """Make the live hosts match the locked render of ENV, in waves.

    Shows the plan, asks for confirmation (type `yes`) unless --auto-approve, then applies
    networks/pools, boot services, volumes, domains (define, then start in order helper,
    bootstrap, masters, workers), Kubernetes objects, and prunes last in reverse order.
    Progress with each action's timing goes to stderr. One converge per environment runs at
    a time; an interrupted converge is resumed by running it again (see the journal under
    --state-dir). Same exit codes as `gen plan` (3: destructive change not approved).
    """
    from generator.reconcile import converge as run
    from generator.reconcile.output import format_text, summary_line, to_json
    from generator.reconcile.plan import check_names, load_desired

    began = time.monotonic()
    settings = _settings(prune, allow_destroy, uri_overrides, start, providers, options)
    desired = load_desired(env)
    check_names(desired, settings)

    def show(result: Any) -> None:
        if fmt == "text":
            click.echo(format_text(result, settings, verbose))

    done = run.converge(desired, settings, state_dir or run.default_state_dir(),
                        lock_timeout=lock_timeout, lock_wait=lock_wait, show=show,
                        confirm=(lambda _: None) if auto_approve else _confirm, say=_stderr,
                        began=began)
    result = done.plan
    if result.empty:
        if fmt == "json":
            emit(fmt, {"plan": to_json(result, settings), "applied": []}, "")
        if detailed_exitcode and not result.complete:
            sys.exit(EXIT_CHANGES)
        return
    seconds = done.summary
    emit(fmt, {"plan": to_json(result, settings),
               "applied": [{"key": a.action.key, "seconds": round(a.seconds, 4)}
                           for a in done.applied],
               "seconds": seconds},
         f"Apply complete. {summary_line(result)[6:]} "
         f"({seconds['total']:.2f}s: plan {seconds['plan']:.2f}s, apply "
         f"{seconds['apply']:.2f}s)")
    if detailed_exitcode:
        sys.exit(EXIT_CHANGES)


def _stderr(line: str) -> None:
    click.echo(line, err=True)


def _confirm(count: int) -> None:
    answer = click.prompt(f"Apply these {count} action(s)? Only 'yes' is accepted",
                          default="", show_default=False, err=True)
    if answer.strip() != "yes":
        raise UserError("converge cancelled", "nothing was changed; answer 'yes' or pass "
                        "--auto-approve")
