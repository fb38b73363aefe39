"""Build a plan: desired state from the (locked) render, actions from every provider, ordered
in waves, with the safety rules applied in one place.

Order: creates/updates/replaces by wave (networks/pools -> boot services -> volumes ->
domains -> Kubernetes), inside a wave by `Action.order` (boot order) then name; deletes
after everything else, in reverse wave order (domains before their volumes before networks).

Adding a provider: write a class meeting `base.Provider`, then add one line to `PROVIDERS`
(name -> "module:factory"); the factory takes `Settings` and returns the provider.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import DestructiveNotApproved, UserError
from generator.model import Environment
from generator.reconcile.base import Action, Provider
from generator.tree import Tree

# name -> "module:factory(settings) -> Provider"; imported only when a plan runs.
PROVIDERS: dict[str, str] = {
    "libvirt": "generator.reconcile.plan:libvirt_provider",
    "files": "generator.reconcile.files:files_provider",
    "kubernetes": "generator.reconcile.kubernetes:kubernetes_provider",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What the user allowed and where to look (from the command line)."""

    prune: bool = False
    allow_destroy: bool = False
    uri_overrides: tuple[tuple[str, str], ...] = ()  # (hypervisor, uri)
    start_roles: frozenset[str] | None = None  # None: start every domain
    providers: tuple[str, ...] = ()  # empty: all registered
    options: tuple[tuple[str, Any], ...] = ()  # provider-specific extras (key, value)

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class Desired:
    """The source of truth for a plan: the rendered tree and what it was checked against."""

    env: Environment
    tree: Tree
    tree_hash: str
    locked: bool  # True when the render was checked against lock/<env>.lock


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
        """Actions converge would refuse: protected, or destructive without --allow-destroy."""
        return [a for a in self.actions if a.op in ("delete", "replace")
                and (a.protected or (a.destructive and not settings.allow_destroy))]


def libvirt_provider(settings: Settings) -> Provider:
    from generator.reconcile.libvirt import LibvirtProvider

    store = settings.option("store")  # --store: base images are uploaded from it
    return LibvirtProvider(dict(settings.uri_overrides), settings.start_roles,
                           adopt=bool(settings.option("adopt")),
                           store_root=Path(store) if store else None)


def make_providers(settings: Settings) -> list[Provider]:
    names = settings.providers or tuple(PROVIDERS)
    unknown = sorted(set(names) - set(PROVIDERS))
    if unknown:
        raise UserError(f"unknown provider(s): {', '.join(unknown)}",
                        f"choose from {', '.join(sorted(PROVIDERS))}")
    out = []
    for name in names:
        module, attr = PROVIDERS[name].split(":")
        factory: Callable[[Settings], Provider] = getattr(importlib.import_module(module), attr)
        out.append(factory(settings))
    return out


def build_plan(desired: Desired, settings: Settings,
               providers: Sequence[Provider] | None = None) -> Plan:
    """Ask every provider for actions on its scope, apply the safety rules, order them."""
    providers = list(providers) if providers is not None else make_providers(settings)
    actions: list[Action] = []
    notices: list[str] = []
    conflicts: list[str] = []
    skipped: list[str] = []
    for provider in providers:
        scope = provider.scope(desired.tree)
        found = provider.plan(desired.env, scope)
        notices += provider.notices
        conflicts += provider.conflicts
        skipped += getattr(provider, "skipped", [])
        kept, why = safety(found, settings, desired_empty=not scope)
        actions += kept
        notices += [f"{provider.name}: {line}" for line in why]
    return Plan(desired.env.name, desired.tree_hash, desired.locked, tuple(ordered(actions)),
                tuple(notices), tuple(conflicts), {p.name: p for p in providers},
                tuple(skipped))


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
            f"the plan destroys VMs or wipes disks: {names} (re-run with --allow-destroy to "
            "approve)")


def load_desired(ref: str, cwd: Path | None = None) -> Desired:
    """Render ENV the way `gen render --locked` does when lock/<env>.lock exists (a render
    that would change the lock raises LockMismatch, exit 4); unlocked when it does not."""
    from generator.environment import find_root, resolve_env_dir
    from generator.lock.lockfile import lock_path
    from generator.lock.nar import tree_hash
    from generator.pipeline import render_with_lock

    env_dir = resolve_env_dir(ref, cwd)
    locked = lock_path(find_root(env_dir.parent), env_dir.name).is_file()
    rendered = render_with_lock(ref, cwd, locked=locked)
    return Desired(rendered.loaded.model, rendered.tree, tree_hash(rendered.tree), locked)
