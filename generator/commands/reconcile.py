"""`gen plan` and `gen converge`: diff the locked render against live hosts and converge them."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from generator.cli import FORMAT, emit
from generator.errors import EXIT_CHANGES, UsageError, UserError


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep the files provider's options aside (ctx.meta) instead of widening signatures."""
    ctx.meta[f"files:{param.name}"] = value
    return value


_FILES_OPTIONS = [
    click.option("--files-target", "files_target", multiple=True, metavar="HOST=ROOT",
                 expose_value=False, callback=_remember,
                 help="Install HOST's boot-service files under ROOT (default: /). Hosts "
                      "with neither this nor --files-exec are skipped (and reported). "
                      "Without --files-exec, ROOT is on this machine and no service is "
                      "reloaded. Repeatable."),
    click.option("--files-exec", "files_exec", multiple=True, metavar="HOST=PREFIX",
                 expose_value=False, callback=_remember,
                 help="Run HOST's file operations, checkers and reloads through PREFIX, e.g. "
                      "'ssh root@192.168.20.111' or 'ip netns exec helper'; the word 'local' "
                      "runs them (reloads included) on this machine. Repeatable."),
    click.option("--reload", "reload", multiple=True, metavar="SERVICE=COMMAND",
                 expose_value=False, callback=_remember,
                 help="Command that makes SERVICE (dns, dhcp, kea, dnsmasq, tftp, http, "
                      "haproxy, nfs) pick up new files, instead of the systemctl default. "
                      "Runs where HOST's --files-exec says. Repeatable."),
    click.option("--ignition-dir", "ignition_dir", type=click.Path(file_okay=False),
                 expose_value=False, callback=_remember,
                 help="openshift-install's output dir; its role .ign files are published."),
    click.option("--store", "store", type=click.Path(file_okay=False), expose_value=False,
                 callback=_remember, help="gen's store (default: $GEN_STORE or "
                 "~/.cache/gen/store); pinned OS artifacts are published from it."),
    click.option("--no-install-packages", "no_install_packages", is_flag=True,
                 expose_value=False, callback=_remember,
                 help="Do not install the services' packages on their hosts (nor run the OS "
                      "profile's post-install steps: SELinux labels, firewall)."),
]


def _remember_kube(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"kube:{param.name}"] = value
    return value


_KUBE_OPTIONS = [
    click.option("--kubeconfig", "kubeconfig", type=click.Path(dir_okay=False),
                 expose_value=False, callback=_remember_kube,
                 help="kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config). "
                      "Without one, Kubernetes objects are skipped with a note."),
    click.option("--context", "kube_context", expose_value=False, callback=_remember_kube,
                 help="kubeconfig context to use (default: its current-context)."),
    click.option("--wait/--no-wait", "kube_wait", default=False, show_default=True,
                 expose_value=False, callback=_remember_kube,
                 help="After applying a Deployment, wait until it is available."),
    click.option("--wait-timeout", "kube_wait_timeout", type=float, default=300,
                 show_default=True, expose_value=False, callback=_remember_kube,
                 help="Seconds --wait allows each Deployment."),
]


def _remember_adopt(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta["libvirt:adopt"] = value
    return value


_ADOPT_OPTION = click.option(
    "--adopt", is_flag=True, expose_value=False, callback=_remember_adopt,
    help="Take over existing libvirt networks and domains without gen's marker that the "
         "environment describes (after `gen import`): shown as adopt, never replaced.")


def _kube_options() -> tuple[tuple[str, Any], ...]:
    meta = click.get_current_context().meta
    return tuple((key, meta.get(f"kube:{key}")) for key in
                 ("kubeconfig", "kube_context", "kube_wait", "kube_wait_timeout"))


def _pairs(items: tuple[str, ...], flag: str, example: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: write it as {example}")
        out[key] = value
    return out


def _check_prefix(host: str, prefix: str) -> None:
    """A --files-exec prefix must be `local` or start with a command this machine has:
    found out only when converge runs it, a typo would fail half-way."""
    from generator.reconcile.files import LOCAL

    if not prefix.strip():
        raise UsageError(f"--files-exec {host}=: an empty prefix is ambiguous (write "
                         f"--files-exec {host}=local to run {host}'s commands on this "
                         "machine)")
    if prefix == LOCAL:
        return
    try:
        command = shlex.split(prefix)[0]
    except (ValueError, IndexError):
        raise UsageError(f"--files-exec {host}={prefix!r}: not a command line (quote it "
                         "like a shell would, e.g. 'ssh root@HOST')") from None
    if shutil.which(command) is None:
        raise UsageError(f"--files-exec {host}={prefix!r}: command {command!r} not found on "
                         f"this machine (write {host}=local to run {host}'s commands here, "
                         f"or a command such as 'ssh root@HOST')")


def _files_options() -> tuple[tuple[str, Any], ...]:
    """Settings.options for the files provider, from the flags."""
    meta = click.get_current_context().meta
    roots = _pairs(meta.get("files:files_target", ()), "--files-target", "HOST=ROOT")
    execs = _pairs(meta.get("files:files_exec", ()), "--files-exec", "HOST=PREFIX")
    for host, prefix in execs.items():
        _check_prefix(host, prefix)
    for host, root in roots.items():
        if not root.strip():
            # An empty root would make converge write relative to the current directory.
            raise UsageError(f"--files-target {host}=: an empty root is ambiguous (write "
                             f"--files-target {host}=/ for {host}'s own root, or a folder)")
    targets = tuple((host, (roots.get(host, "/"), execs.get(host, "")))
                    for host in sorted(set(roots) | set(execs)))
    reloads = _pairs(meta.get("files:reload", ()), "--reload", "SERVICE=COMMAND")
    return (("files_targets", targets), ("files_reloads", tuple(sorted(reloads.items()))),
            ("store", meta.get("files:store")), ("ignition_dir", meta.get("files:ignition_dir")),
            ("install_packages", not meta.get("files:no_install_packages")))


def check_names(desired: Any, settings: Any) -> None:
    """Every HOST=, HV= and SERVICE= flag must name something the environment has: a typo
    would otherwise be ignored and the environment's own value used in its place."""
    tree_parts = [p.split("/") for p in desired.tree if p.startswith("hosts/")]
    known = {
        "--uri-override": sorted(hv.name for hv in desired.env.hypervisors),
        "--files-target": sorted({parts[1] for parts in tree_parts}),
        "--reload": sorted({parts[2] for parts in tree_parts if len(parts) > 3}),
        "--start": sorted({node.role for node in desired.env.nodes}),
    }
    known["--files-exec"] = known["--files-target"]
    given = {
        "--uri-override": [hv for hv, _ in settings.uri_overrides],
        "--files-target": _named("files:files_target"),
        "--files-exec": _named("files:files_exec"),
        "--reload": [svc for svc, _ in settings.option("files_reloads", ())],
        "--start": sorted(settings.start_roles or ()),
    }
    for flag, names in given.items():
        unknown = sorted(set(names) - set(known[flag]))
        if unknown:
            what = {"--uri-override": "hypervisor", "--reload": "service",
                    "--start": "node role"}.get(flag, "host")
            raise UsageError(f"{flag}: {env_has_no(desired.env.name, what, unknown)} "
                             f"(known {what}s: {', '.join(known[flag]) or 'none'})")


def _named(key: str) -> list[str]:
    meta = click.get_current_context().meta
    return [item.partition("=")[0] for item in meta.get(key, ())]


def env_has_no(env: str, what: str, names: list[str]) -> str:
    return f"environment {env} has no {what} named {', '.join(repr(n) for n in names)}"


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
                     help="Only these providers (default: all). Repeatable."),
        click.option("--verbose", "-v", is_flag=True,
                     help="List every field of objects to create, too."),
        *_FILES_OPTIONS,
        *_KUBE_OPTIONS,
        _ADOPT_OPTION,
        FORMAT,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(prune: bool, allow_destroy: bool, uri_overrides: tuple[str, ...], start: str,
              providers: tuple[str, ...]) -> Any:
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
                    options=_files_options() + _kube_options()
                    + (("adopt", bool(click.get_current_context().meta.get("libvirt:adopt"))),))


@click.command()
@_common
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when the plan has changes (0: none).")
def plan(env: str, prune: bool, allow_destroy: bool, uri_overrides: tuple[str, ...],
         start: str, providers: tuple[str, ...], verbose: bool, fmt: str,
         detailed_exitcode: bool) -> None:
    """Show what `gen converge ENV` would do to the live hosts, without changing anything.

    \b
    Symbols: + create, ~ update in place, -/+ replace (naming the field that forces it),
    - delete (only with --prune). Ends with `Plan: X to add, Y to change, Z to replace,
    W to destroy.` The locked render (lock/<env>.lock) is the source of truth: a render
    that differs from the lock exits 4.

    Exit codes: 0 no changes (or changes without --detailed-exitcode), 2 changes present
    with --detailed-exitcode, or some host not looked at (no --files-target/--files-exec
    for it: the plan says which), 1 conflicts with foreign objects, 3 a destructive change not
    approved or a protected resource in the way, 4 lock mismatch.
    """
    from generator.reconcile.output import format_text, to_json
    from generator.reconcile.plan import build_plan, check_approval, load_desired

    settings = _settings(prune, allow_destroy, uri_overrides, start, providers)
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
             detailed_exitcode: bool) -> None:
    """Make the live hosts match the locked render of ENV, in waves.

    Shows the plan, asks for confirmation (type `yes`) unless --auto-approve, then applies
    networks/pools, boot services, volumes, domains (define, then start in order helper,
    bootstrap, masters, workers), Kubernetes objects, and prunes last in reverse order.
    Progress with each action's timing goes to stderr. One converge per environment runs at
    a time; an interrupted converge is resumed by running it again (see the journal under
    --state-dir). Same exit codes as `gen plan` (3: destructive change not approved).
    """
    from generator.reconcile.converge import (
        Journal,
        apply_plan,
        converge_lock,
        default_state_dir,
        target_locks,
    )
    from generator.reconcile.files import targets_from
    from generator.reconcile.output import format_text, summary_line, to_json
    from generator.reconcile.plan import build_plan, check_approval, load_desired

    began = time.monotonic()
    settings = _settings(prune, allow_destroy, uri_overrides, start, providers)
    desired = load_desired(env)
    check_names(desired, settings)
    state = state_dir or default_state_dir()
    say = _stderr
    with converge_lock(state, desired.env.name, lock_timeout, lock_wait, say), \
            target_locks(targets_from(settings), desired.env.name, lock_wait):
        journal = Journal(state, desired.env.name)
        resume = journal.unfinished()
        if resume is not None:
            say(resume.describe())
        result = build_plan(desired, settings)
        planned = time.monotonic()
        if fmt == "text":
            click.echo(format_text(result, settings, verbose))
        check_approval(result, settings)
        if result.empty:
            if resume is not None:
                journal.start(result, resume)
                journal.complete()
            if fmt == "json":
                emit(fmt, {"plan": to_json(result, settings), "applied": []}, "")
            if detailed_exitcode and not result.complete:
                sys.exit(EXIT_CHANGES)
            return
        if not auto_approve:
            _confirm(len(result.actions))
        applied = apply_plan(result, journal, resume, say)
    live = sum(a.seconds for a in applied)
    total = time.monotonic() - began
    emit(fmt, {"plan": to_json(result, settings),
               "applied": [{"key": a.action.key, "seconds": round(a.seconds, 4)}
                           for a in applied],
               "seconds": {"total": round(total, 4), "apply": round(live, 4),
                           "plan": round(planned - began, 4), "liveRead": round(sum(
                               getattr(p, "read_seconds", 0.0)
                               for p in result.providers.values()), 4)}},
         f"Apply complete. {summary_line(result)[6:]} "
         f"({total:.2f}s: plan {planned - began:.2f}s, apply {live:.2f}s)")
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
