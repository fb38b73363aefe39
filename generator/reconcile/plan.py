"""Build a plan: desired state from the (locked) render, actions from every provider, ordered
in waves, with the safety rules applied in one place.

Order: creates/updates/replaces by wave (networks/pools -> boot services -> volumes ->
domains -> Kubernetes), inside a wave by `Action.order` (boot order) then name; deletes
after everything else, in reverse wave order (domains before their volumes before networks).

Providers are described in providers.py (`PROVIDERS`): each one's options, how it starts,
its plan (a ProviderPlan value) and its apply; its scope comes from the family descriptors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from generator.errors import DestructiveNotApproved, UsageError, UserError
from generator.model import Environment
from generator.reconcile.base import (
    DEFAULT_PARALLEL,
    Action,
    BuiltObjects,
    Provider,
    UsesBuiltObjects,
    UsesPinnedImages,
    UsesPinnedTools,
)
from generator.reconcile.providers import (
    ProviderDescriptor,
    ProviderPlan,
    by_name,
    options_of,
    specs,
)
from generator.records import record
from generator.tree import Tree

if TYPE_CHECKING:
    from generator.environment import Loaded
    from generator.pipeline import Outcome
    from generator.reconcile.plan_cache import Known

T = TypeVar("T")


@record
class Settings:
    """What the user allowed and where to look (from the command line)."""

    prune: bool = False
    allow_destroy: bool = False
    uri_overrides: tuple[tuple[str, str], ...] = ()  # (hypervisor, uri)
    start_roles: frozenset[str] | None = None  # None: start every domain
    providers: tuple[str, ...] = ()  # empty: all registered
    # each provider's typed options (providers.FilesOptions, ...); defaults when absent
    options: tuple[Any, ...] = ()
    parallel: int = DEFAULT_PARALLEL  # hypervisors read at once (--parallel; fleet.py)

    def options_of(self, kind: type[T]) -> T:
        return options_of(self.options, kind)


@dataclass(frozen=True, slots=True)
class Desired:
    """The source of truth for a plan: the rendered tree and what it was checked against."""

    env: Environment
    tree: Tree
    tree_hash: str
    locked: bool  # True when the render was checked against lock/<env>.lock
    objects: BuiltObjects = field(default_factory=dict)  # built with the tree, per cluster
    tools: tuple[tuple[str, str], ...] = ()  # (tool name, archive sha256) the lock pins
    images: tuple[tuple[str, str], ...] = ()  # (lock key, registry/repository@sha256:...)
    # provider name -> its scope's paths, when known (plan_cache); else routed from the tree
    scopes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def scope(self, descriptor: ProviderDescriptor) -> Tree:
        """The part of the tree `descriptor`'s provider converges."""
        paths = dict(self.scopes).get(descriptor.name)
        if paths is not None and not _families_registered() and all(
                p in self.tree for p in paths):
            return {p: self.tree[p] for p in paths}
        return descriptor.scope(self.tree)


@dataclass(frozen=True, slots=True)
class Plan:
    env: str
    tree_hash: str
    locked: bool
    actions: tuple[Action, ...]
    notices: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    providers: dict[str, Provider] = field(default_factory=dict, compare=False)
    skipped: tuple[str, ...] = ()  # "provider: scope" that could not be looked at
    read_seconds: float = 0.0  # time the providers spent reading live state

    @property
    def complete(self) -> bool:
        """False when some scope was not looked at: "no changes" would then be a guess."""
        return not self.skipped

    def count(self, op: str) -> int:
        return sum(1 for a in self.actions if a.op == op)

    @property
    def empty(self) -> bool:
        return not self.actions

    def refused(self, settings: Settings) -> list[Action]:
        """Actions converge would refuse: deleting or replacing a protected resource, or any
        destructive action without --allow-destroy (a kubeadm phase that resets a node is a
        create that destroys)."""
        return [a for a in self.actions
                if (a.protected and a.op in ("delete", "replace"))
                or (a.destructive and not settings.allow_destroy)]


def chosen(settings: Settings) -> list[ProviderDescriptor]:
    """The providers --provider names (all when none), refusing an unknown name."""
    known = by_name()
    names = settings.providers or tuple(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UserError(f"unknown provider(s): {', '.join(unknown)}",
                        f"choose from {', '.join(sorted(known))}")
    return [known[name] for name in names]


def make_providers(settings: Settings) -> list[tuple[ProviderDescriptor, Provider]]:
    return [(d, d.start(settings, settings.options_of(d.options))) for d in chosen(settings)]


def build_plan(desired: Desired, settings: Settings,
               providers: Sequence[tuple[ProviderDescriptor, Provider]] | None = None) -> Plan:
    """Ask every provider for actions on its scope, apply the safety rules, order them."""
    started = list(providers) if providers is not None else make_providers(settings)
    actions: list[Action] = []
    notices: list[str] = []
    conflicts: list[str] = []
    skipped: list[str] = []
    read = 0.0
    for descriptor, provider in started:
        scope = desired.scope(descriptor)
        if isinstance(provider, UsesBuiltObjects):
            provider.use_built(desired.objects)
        if isinstance(provider, UsesPinnedTools):
            provider.use_tools(dict(desired.tools))
        if isinstance(provider, UsesPinnedImages):
            provider.use_images(dict(desired.images))
        found: ProviderPlan = descriptor.plan(provider, desired.env, scope, desired.tree)
        notices += found.notices
        conflicts += found.conflicts
        skipped += found.skipped
        read += found.read_seconds
        kept, why = safety(list(found.actions), settings, desired_empty=not scope)
        actions += kept
        notices += [f"{descriptor.name}: {line}" for line in why]
    return Plan(desired.env.name, desired.tree_hash, desired.locked, tuple(ordered(actions)),
                tuple(notices), tuple(conflicts), {d.name: p for d, p in started},
                tuple(skipped), read)


def safety(actions: list[Action], settings: Settings,
           desired_empty: bool) -> tuple[list[Action], list[str]]:
    """Drop deletes unless --prune (and always for an empty desired set); say what was kept."""
    deletes = [a for a in actions if a.op == "delete"]
    if not deletes:
        return actions, []
    rest = [a for a in actions if a.op != "delete"]
    if desired_empty:
        return rest, [f"nothing is rendered for this provider; an empty desired set never "
                      f"prunes ({len(deletes)} owned object(s) kept)"]
    if not settings.prune:
        names = ", ".join(f"{a.kind} {a.name}" for a in deletes)
        return rest, [f"{len(deletes)} owned object(s) no longer rendered are kept: {names} "
                      "(run with --prune to delete them)"]
    return actions, []


def ordered(actions: list[Action]) -> list[Action]:
    """Waves ascending for everything but deletes; deletes last, waves descending."""
    def key(a: Action) -> tuple[int, int, int, str, str]:
        if a.op == "delete":
            return (1, -a.wave, -a.order, a.kind, a.name)
        return (0, a.wave, a.order, a.kind, a.name)
    return sorted(actions, key=key)


def check_approval(plan: Plan, settings: Settings) -> None:
    """Raise DestructiveNotApproved (exit 3) for protected or unapproved destructive actions."""
    if plan.conflicts:
        raise UserError(f"{len(plan.conflicts)} conflict(s) with foreign objects: "
                        + "; ".join(plan.conflicts))
    refused = plan.refused(settings)
    protected = [a for a in refused if a.protected]
    if protected:
        names = ", ".join(f"{a.kind} {a.name}" for a in protected)
        raise DestructiveNotApproved(
            f"refusing to destroy protected resource(s): {names} (protect: true forbids it; "
            "remove `protect` in the environment first if you really mean it)")
    if refused:
        names = ", ".join(f"{a.kind} {a.name}" for a in refused)
        raise DestructiveNotApproved(
            f"the plan destroys VMs, wipes disks or resets nodes: {names} (re-run with "
            "--allow-destroy to approve)")


def check_names(desired: Desired, settings: Settings) -> None:
    """Every HOST=, HV= and SERVICE= flag must name something the environment has: a typo
    would otherwise be ignored and the environment's own value used in its place."""
    tree_parts = [p.split("/") for p in desired.tree if p.startswith("hosts/")]
    known = {"hypervisor": sorted(hv.name for hv in desired.env.hypervisors),
             "host": sorted({parts[1] for parts in tree_parts}),
             "service": sorted({parts[2] for parts in tree_parts if len(parts) > 3}),
             "node role": sorted({node.role for node in desired.env.nodes}),
             "node": sorted(node.name for node in desired.env.nodes)}
    given = [("--uri-override", "hypervisor", [hv for hv, _ in settings.uri_overrides])]
    for descriptor in by_name().values():
        options: Any = settings.options_of(descriptor.options)
        given += [(spec.flag, spec.names, [key for key, _ in getattr(options, name)])
                  for name, spec in specs(descriptor.options) if spec.names]
    given.append(("--start", "node role", sorted(settings.start_roles or ())))
    for flag, what, names in given:
        unknown = sorted(set(names) - set(known[what]))
        if unknown:
            raise UsageError(f"{flag}: {env_has_no(desired.env.name, what, unknown)} "
                             f"(known {what}s: {', '.join(known[what]) or 'none'})")


def env_has_no(env: str, what: str, names: list[str]) -> str:
    return f"environment {env} has no {what} named {', '.join(repr(n) for n in names)}"


def load_desired(ref: str, cwd: Path | None = None) -> Desired:
    """Render ENV the way `gen render --locked` does when lock/<env>.lock exists (a render
    that would change the lock raises LockMismatch, exit 4); unlocked when it does not.

    The tree comes from the render cache when `gen render` (or an earlier plan) rendered
    these inputs with this generator: the cache key hashes every input and the generator's
    sources, so they passed every check when the entry was stored. The model, the tree's
    hash and the pins' products then come from the entry plan_cache keeps beside it; when
    there is none yet (the tree was stored by `gen render`), the environment is loaded
    without its checks, the pins read again, and that entry written for the next plan.
    """
    from generator.environment import find_root, resolve_env_dir
    from generator.lock.lockfile import lock_path
    from generator.pipeline import render_cached, render_key
    from generator.reconcile import plan_cache

    env_dir = resolve_env_dir(ref, cwd)
    path = lock_path(find_root(env_dir.parent), env_dir.name)
    locked = path.is_file()
    outcome = render_cached(ref, cwd, locked=locked)
    if outcome.rendered is None and outcome.key is not None:
        known = plan_cache.load(outcome.key)
        if known is not None:
            return Desired(known.env, outcome.tree, known.tree_hash, locked, known.objects,
                           known.tools, known.images, known.scopes)
    loaded = None
    if outcome.rendered is None:
        from generator.environment import load_environment

        loaded = load_environment(ref, cwd, known_valid=True)
        if render_key(ref, cwd, None, locked) != outcome.key:  # an input changed meanwhile:
            outcome = render_cached(ref, cwd, locked=locked, cache=False)  # render it all
    known = _known(outcome, loaded, path, locked)
    # Stored only when the inputs are still those the key names (as the tree is): the
    # model was loaded after the key was taken.
    if outcome.key is not None and render_key(ref, cwd, None, locked) == outcome.key:
        plan_cache.save(outcome.key, known)
    return Desired(known.env, outcome.tree, known.tree_hash, locked, known.objects,
                   known.tools, known.images)


def _known(outcome: Outcome, loaded: Loaded | None, path: Path, locked: bool) -> Known:
    """plan_cache.Known of a render (`outcome.rendered`) or of the environment `loaded`
    beside a stored tree (then its pins are read again from the lock and the store)."""
    from generator.families.kubernetes import built_objects
    from generator.lock.compute import pinned_tools, render_pins
    from generator.lock.lockfile import read_lock
    from generator.lock.nar import tree_hash
    from generator.lock.store import Store, default_root
    from generator.reconcile.plan_cache import Known

    if outcome.rendered is not None:
        loaded, pins = outcome.rendered.loaded, outcome.rendered.pins
        lock = read_lock(path, loaded.source.display(path)) if locked else None
    else:
        assert loaded is not None  # a stored tree: the caller loaded its environment
        lock = read_lock(path, loaded.source.display(path)) if locked else None
        pins, _ = render_pins(loaded, lock, Store(default_root()), strict=locked)
    model = loaded.model
    tools = pinned_tools(loaded, lock) if lock is not None else {}
    images = sorted((key, str(entry.locked)) for key, entry in lock.pinned().items()
                    if key.startswith("image/")) if lock is not None else []
    scopes = () if _families_registered() else tuple(
        (d.name, tuple(d.scope(outcome.tree))) for d in by_name().values())
    return Known(model, tree_hash(outcome.tree), built_objects(model, pins),
                 tuple(sorted(tools.items())), tuple(images), scopes)


def _families_registered() -> bool:
    """A family registered in this process (a library user, tests) routes paths that
    stored scopes do not know: scopes are then routed from the tree."""
    from generator import families

    return bool(families._REGISTERED)  # noqa: SLF001 - read only, no accessor without imports
