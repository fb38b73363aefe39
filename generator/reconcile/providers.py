"""One descriptor per provider: its typed options, how it starts, plans and applies.

`gen plan`/`gen converge` generate their provider flags from each descriptor's options
dataclass (one `OptionSpec` per field), parse them back into that dataclass, and hand it to
the provider's `start`. A provider's plan comes back as a `ProviderPlan` value (actions,
notices, conflicts, scopes not looked at); its scope is the part of the rendered tree the
family descriptors say it converges. Adding a provider is one module plus one line in
`PROVIDERS` (docs/architecture.md, "Adding a family or a provider").

This module imports no provider implementation at import time: the command line is built
from it, and `gen --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from generator.errors import UsageError
from generator.model import Environment
from generator.reconcile.base import Action, Provider
from generator.records import record
from generator.tree import Tree

if TYPE_CHECKING:
    from generator.reconcile.files import FilesProvider, Target
    from generator.reconcile.plan import Settings


# -- option specs --------------------------------------------------------------------------


@record
class OptionSpec:
    """One command-line flag of a provider, and how its value is read back.

    `pairs` ("HOST=ROOT") makes the flag repeatable KEY=VALUE pairs, parsed into a tuple of
    (key, value) and refused as a usage error when malformed; `names` says what a pair's
    key names ("host" or "service") so plan can refuse a name the environment lacks;
    `check` refuses a pair's value (a usage error) before anything runs.
    """

    flag: str
    help: str
    metavar: str | None = None
    kind: str = "text"  # text | dir | file | float | flag | switch (--x/--no-x)
    default: Any = None
    show_default: bool = False
    pairs: str | None = None
    names: str | None = None
    check: Callable[[str, str], None] | None = None

    @property
    def multiple(self) -> bool:
        return self.pairs is not None


def option(flag: str, help: str, **spec: Any) -> Any:
    """A field of a provider's options dataclass, carrying its OptionSpec."""
    if spec.get("pairs") and not spec.get("metavar"):
        spec["metavar"] = spec["pairs"]  # the flag's usage line shows the pair it wants
    made = OptionSpec(flag, help, **spec)
    default: Any = () if made.multiple else made.default
    return field(default=default, metadata={"option": made})


def specs(options: type) -> list[tuple[str, OptionSpec]]:
    """(field name, spec) of an options dataclass, in declaration order."""
    return [(f.name, f.metadata["option"]) for f in dataclasses.fields(options)]


def pairs(items: tuple[str, ...], spec: OptionSpec) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` flags as (key, value) pairs, the last one given for a key winning."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{spec.flag} {item!r}: write it as {spec.pairs}")
        if spec.check is not None:
            spec.check(key, value)
        out[key] = value
    return tuple(out.items())


def read_options(options: type, values: Mapping[str, Any], prefix: str) -> Any:
    """The options dataclass from the parsed flags (`prefix` + field name -> value)."""
    read: dict[str, Any] = {}
    for name, spec in specs(options):
        value = values.get(prefix + name, spec.default)
        read[name] = pairs(tuple(value or ()), spec) if spec.multiple else value
    return options(**read)


# -- provider descriptors ------------------------------------------------------------------


@record
class ProviderPlan:
    """What one provider found: actions, and the lines the plan shows about them."""

    actions: tuple[Action, ...] = ()
    notices: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()  # a desired name held by a foreign object: refused
    skipped: tuple[str, ...] = ()  # "provider: scope" that could not be looked at
    read_seconds: float = 0.0  # time spent reading live state (the benches report it)


def collected(provider: Provider, env: Environment, scope: Tree, tree: Tree) -> ProviderPlan:
    """Plan with a provider that notes what it saw on itself, and return it as a value."""
    actions = provider.plan(env, scope)
    return ProviderPlan(tuple(actions), tuple(getattr(provider, "notices", ())),
                        tuple(getattr(provider, "conflicts", ())),
                        tuple(getattr(provider, "skipped", ())),
                        float(getattr(provider, "read_seconds", 0.0)))


def applied(provider: Provider, action: Action) -> None:
    provider.apply(action)


@record
class ProviderDescriptor:
    """A live system gen converges.

    `options` is a dataclass of `option(...)` fields: plan/converge get one flag per field.
    `start(settings, options)` opens the provider for one plan (connections, targets);
    `plan(provider, env, scope, tree)` returns its ProviderPlan for its scope (the rendered
    files the family descriptors route to it; `tree` is the whole render, for files it
    publishes from elsewhere); `apply(provider, action)` carries out one of its actions and
    must be idempotent (an interrupted converge re-plans and resumes).
    """

    name: str
    options: type
    start: Callable[[Settings, Any], Provider]
    plan: Callable[[Provider, Environment, Tree, Tree], ProviderPlan] = collected
    apply: Callable[[Provider, Action], None] = applied

    @property
    def prefix(self) -> str:
        """Click parameter names of this provider's flags: `<name>__<field>`."""
        return self.name.replace("-", "_") + "__"

    def read(self, values: Mapping[str, Any]) -> Any:
        return read_options(self.options, values, self.prefix)

    def scope(self, tree: Tree) -> Tree:
        """The rendered files the family descriptors say this provider converges."""
        from generator.families import descriptors

        patterns = tuple(pattern for family in descriptors() for out in family.outputs
                         if out.provider == self.name for pattern in out.patterns)
        claims = claimed_by(patterns)
        return {p: c for p, c in tree.items() if claims(p)}


@functools.lru_cache(maxsize=64)
def claimed_by(patterns: tuple[str, ...]) -> Callable[[str], object]:
    """`Outputs.claims` over many patterns as one compiled regex: a plan routes every
    rendered path (thousands of nodes' files) to each provider, and fnmatch per pattern per
    path was a tenth of a 500-domain plan. `fnmatch.translate` is what fnmatchcase uses."""
    if not patterns:
        return lambda _path: False
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


# -- libvirt -------------------------------------------------------------------------------


# Each @record class has a docstring: without one, dataclasses writes one from the class's
# signature, which for a class without a generated __init__ goes through tokenize (a
# pattern compiled anew in every process, in an order that changes with the hash seed).
@record
class LibvirtOptions:
    """The libvirt provider's flags."""

    adopt: bool = option(
        "--adopt", kind="flag", default=False,
        help="Take over existing libvirt networks and domains without gen's marker that the "
             "environment describes (after `gen import`): shown as adopt, never replaced.")


def start_libvirt(settings: Settings, options: LibvirtOptions) -> Provider:
    from generator.reconcile.libvirt import LibvirtProvider

    store = settings.options_of(FilesOptions).store  # --store: base images come from it
    return LibvirtProvider(dict(settings.uri_overrides), settings.start_roles,
                           adopt=options.adopt, store_root=Path(store) if store else None,
                           parallel=settings.parallel)


# -- files ---------------------------------------------------------------------------------

LOCAL = "local"  # --files-exec HOST=local: run HOST's commands on this machine, on purpose


def check_root(host: str, root: str) -> None:
    if not root.strip():
        # An empty root would make converge write relative to the current directory.
        raise UsageError(f"--files-target {host}=: an empty root is ambiguous (write "
                         f"--files-target {host}=/ for {host}'s own root, or a folder)")


def check_prefix(host: str, prefix: str, flag: str = "--files-exec") -> None:
    """A --files-exec prefix must be `local` or start with a command this machine has:
    found out only when converge runs it, a typo would fail half-way."""
    if not prefix.strip():
        raise UsageError(f"{flag} {host}=: an empty prefix is ambiguous (write "
                         f"{flag} {host}=local to run {host}'s commands on this "
                         "machine)")
    if prefix == LOCAL:
        return
    try:
        command = shlex.split(prefix)[0]
    except (ValueError, IndexError):
        raise UsageError(f"{flag} {host}={prefix!r}: not a command line (quote it "
                         "like a shell would, e.g. 'ssh root@HOST')") from None
    if shutil.which(command) is None:
        raise UsageError(f"{flag} {host}={prefix!r}: command {command!r} not found on "
                         f"this machine (write {host}=local to run {host}'s commands here, "
                         f"or a command such as 'ssh root@HOST')")


@record
class FilesOptions:
    """The files provider's flags: where each host's files go and how its services reload."""

    targets: tuple[tuple[str, str], ...] = option(
        "--files-target", pairs="HOST=ROOT", names="host", check=check_root,
        help="Install HOST's boot-service files under ROOT (default: /). Hosts with neither "
             "this nor --files-exec are skipped (and reported). Without --files-exec, ROOT "
             "is on this machine and no service is reloaded. Repeatable.")
    execs: tuple[tuple[str, str], ...] = option(
        "--files-exec", pairs="HOST=PREFIX", names="host", check=check_prefix,
        help="Run HOST's file operations, checkers and reloads through PREFIX, e.g. "
             "'ssh root@192.168.20.111' or 'ip netns exec helper'; the word 'local' runs "
             "them (reloads included) on this machine. Repeatable.")
    reloads: tuple[tuple[str, str], ...] = option(
        "--reload", pairs="SERVICE=COMMAND", names="service",
        help="Command that makes SERVICE (dns, dhcp, kea, dnsmasq, tftp, http, haproxy, nfs) "
             "pick up new files, instead of the systemctl default. Runs where HOST's "
             "--files-exec says. Repeatable.")
    ignition_dir: str | None = option(
        "--ignition-dir", kind="dir",
        help="openshift-install's output dir; its role .ign files are published.")
    store: str | None = option(
        "--store", kind="dir",
        help="gen's store (default: $GEN_STORE or ~/.cache/gen/store); pinned OS artifacts "
             "are published from it, and base images uploaded into the pools.")
    ssh_wait: float = option(
        "--ssh-wait", kind="float", default=300, show_default=True,
        help="Seconds converge waits for a host reached over ssh (--files-exec HOST='ssh "
             "...') to answer before it installs files there: a helper VM created by this "
             "converge is still booting.")

    install_packages: bool = option(
        "--install-packages", kind="switch", default=True,
        help="Install the services' packages on their hosts and run the OS profile's "
             "post-install steps (SELinux labels, firewall); --no-install-packages skips "
             "both.")

    def hosts(self) -> dict[str, Target]:
        """Each target host's root and command prefix, from --files-target / --files-exec."""
        roots, execs = dict(self.targets), dict(self.execs)
        return {host: target_of(roots.get(host, "/"), execs.get(host, ""))
                for host in sorted(set(roots) | set(execs))}


def target_of(root: str, prefix: str) -> Target:
    """No --files-exec: files under ROOT here, checks here, reloads not run at all."""
    from generator.reconcile.files import Target

    if prefix == LOCAL:
        return Target(root)
    if not prefix:
        return Target(root, reloads=False)
    return Target(root, tuple(shlex.split(prefix)))


def start_files(settings: Settings, options: FilesOptions) -> Provider:
    from generator.reconcile.files import FilesProvider

    return FilesProvider(
        targets=options.hosts(), prune=settings.prune,
        reloads={svc: tuple(shlex.split(cmd)) for svc, cmd in options.reloads},
        store_root=Path(options.store) if options.store else None,
        ignition_dir=Path(options.ignition_dir) if options.ignition_dir else None,
        installer_root=settings.options_of(InstallerOptions).root(),
        ssh_wait=float(options.ssh_wait), install_packages=options.install_packages)


def plan_files(provider: Provider, env: Environment, scope: Tree, tree: Tree) -> ProviderPlan:
    """The files provider publishes files rendered outside hosts/ (per-node Ignition)."""
    files: FilesProvider = provider  # type: ignore[assignment]
    files.rendered = tree
    return collected(files, env, scope, tree)


# -- kubernetes ----------------------------------------------------------------------------


@record
class KubernetesOptions:
    """The kubernetes provider's flags: which cluster, and whether to wait."""

    kubeconfig: str | None = option(
        "--kubeconfig", kind="file",
        help="kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config). Without "
             "one, Kubernetes objects are skipped with a note.")
    context: str | None = option(
        "--context", help="kubeconfig context to use (default: its current-context).")
    wait: bool = option(
        "--wait", kind="switch", default=False, show_default=True,
        help="After applying a Deployment, wait until it is available.")
    wait_timeout: float = option(
        "--wait-timeout", kind="float", default=300, show_default=True,
        help="Seconds --wait allows each Deployment.")


def start_kubernetes(settings: Settings, options: KubernetesOptions) -> Provider:
    from generator.reconcile.kubernetes import KubernetesProvider

    return KubernetesProvider(
        kubeconfig=options.kubeconfig, context=options.context, wait=options.wait,
        wait_timeout=options.wait_timeout,
        # asked for by name or given a kubeconfig: a cluster it cannot reach is an error
        required=bool(options.kubeconfig) or "kubernetes" in settings.providers,
        installer_root=settings.options_of(InstallerOptions).root(),
        kubeadm_root=settings.options_of(KubeadmOptions).root())


# -- installer -----------------------------------------------------------------------------


@record
class InstallerOptions:
    """The installer provider's flags: the openshift-install binary and its state."""

    openshift_install: str | None = option(
        "--openshift-install", metavar="PATH=SHA256",
        help="An openshift-install binary and its sha256, overriding the one the lock pins "
             "(tool/openshift-install); with it, the installer phases (assets, wait-for "
             "gates) are planned and run.")
    state_dir: str | None = option(
        "--installer-state-dir", kind="dir",
        help="Where the installer's assets live, one 0700 folder per environment (default: "
             "$XDG_STATE_HOME/gen/installer); with it, the installer phases run the "
             "openshift-install the lock pins, from gen's store.")

    def root(self) -> Path | None:
        """The installer state root when the installer phases are in use, else None."""
        if self.state_dir:
            return Path(self.state_dir)
        if not self.openshift_install:
            return None
        from generator.reconcile.installer import default_root

        return default_root()


def start_installer(settings: Settings, options: InstallerOptions) -> Provider:
    import click

    from generator.reconcile.installer import InstallerProvider, Tool, default_root

    tool = options.openshift_install
    store = settings.options_of(FilesOptions).store  # --store: the pinned archive is there
    return InstallerProvider(tool=Tool.parse(tool) if tool else None,
                             root=options.root() or default_root(),
                             say=lambda line: click.echo(line, err=True),
                             enabled=options.root() is not None,
                             store_root=Path(store) if store else None)


# -- kubeadm ---------------------------------------------------------------------------------


def check_node_prefix(node: str, prefix: str) -> None:
    check_prefix(node, prefix, "--kubeadm-exec")


@record
class KubeadmOptions:
    """The kubeadm provider's flags: its state, how to reach each node, its waits."""

    state_dir: str | None = option(
        "--kubeadm-state-dir", kind="dir",
        help="Where a kubeadm cluster's join data and admin.conf live, one 0700 folder per "
             "environment; with it, the kubeadm phases (init, joins, nodes Ready) are "
             "planned and run.")
    execs: tuple[tuple[str, str], ...] = option(
        "--kubeadm-exec", pairs="NODE=PREFIX", names="node", check=check_node_prefix,
        help="Run kubeadm on cluster node NODE through PREFIX, e.g. 'ssh root@192.168.111.169'"
             "; 'local' runs it on this machine. Every node needs one. Repeatable.")
    sha256: str | None = option(
        "--kubeadm-sha256", metavar="SHA256",
        help="The sha256 the kubeadm binary on every node must have, instead of the lock's "
             "tool/kubeadm; checked before each run (its version is always checked against "
             "cluster.kubernetesVersion).")
    node_wait: float = option(
        "--kubeadm-node-wait", kind="float", default=600, show_default=True,
        help="Seconds converge waits for a node to answer before kubeadm runs there.")
    ready_timeout: float = option(
        "--kubeadm-ready-timeout", kind="float", default=900, show_default=True,
        help="Seconds the nodes-ready phase waits for every node to be Ready.")

    def root(self) -> Path | None:
        return Path(self.state_dir) if self.state_dir else None


def start_kubeadm(settings: Settings, options: KubeadmOptions) -> Provider:
    import re

    import click

    from generator.reconcile.kubeadm_phases import KubeadmProvider, default_root

    if options.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", options.sha256) is None:
        raise UsageError(f"--kubeadm-sha256 {options.sha256!r}: not a sha256 (64 hex digits)")
    return KubeadmProvider(
        root=options.root() or default_root(), enabled=options.root() is not None,
        targets={node: target_of("/", prefix) for node, prefix in options.execs},
        kubeadm_sha256=options.sha256, say=lambda line: click.echo(line, err=True),
        node_wait=float(options.node_wait), ready_timeout=float(options.ready_timeout))


# -- mirror --------------------------------------------------------------------------------


@record
class MirrorOptions:
    """The mirror provider's flags."""

    plain_http: bool = option(
        "--mirror-plain-http", kind="flag", default=False,
        help="Push to the environment's mirror registry over plain HTTP (a loopback mirror "
             "always is). Images come from --store.")


def start_mirror(settings: Settings, options: MirrorOptions) -> Provider:
    from generator.reconcile.mirror import start

    # asked for by name (--provider mirror): an unreachable mirror is an error, else a note;
    # not when the files provider converges too: it may install the registry (converge plans
    # again once it has)
    return start(settings.options_of(FilesOptions).store, options.plain_http,
                 required="mirror" in settings.providers and "files" not in settings.providers)


# -- the registry --------------------------------------------------------------------------

PROVIDERS: tuple[ProviderDescriptor, ...] = (
    ProviderDescriptor("libvirt", LibvirtOptions, start_libvirt),
    ProviderDescriptor("files", FilesOptions, start_files, plan_files),
    ProviderDescriptor("kubernetes", KubernetesOptions, start_kubernetes),
    ProviderDescriptor("installer", InstallerOptions, start_installer),
    ProviderDescriptor("kubeadm", KubeadmOptions, start_kubeadm),
    ProviderDescriptor("mirror", MirrorOptions, start_mirror),
)

T = TypeVar("T")


def by_name() -> dict[str, ProviderDescriptor]:
    return {d.name: d for d in PROVIDERS}


def options_of(options: tuple[Any, ...], kind: type[T]) -> T:
    """The `kind` options among a Settings' provider options; its defaults if none given."""
    return next((o for o in options if isinstance(o, kind)), kind())
