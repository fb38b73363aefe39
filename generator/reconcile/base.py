"""The reconciler's data: diff items, plan actions, and the Provider protocol.

A provider reads live state for its part of the rendered tree, normalizes it to an essence
comparable with the rendered essence, and returns Actions. Applying an action must be
idempotent: an interrupted converge re-plans and resumes from the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from generator.model import Environment
from generator.tree import Tree

Op = Literal["create", "update", "replace", "delete", "adopt"]
# adopt: gen starts managing an existing object (`gen plan --adopt` after `gen import`).
SYMBOL: dict[str, str] = {"create": "+", "update": "~", "replace": "-/+", "delete": "-",
                          "adopt": "<="}

# Waves (docs/design.md): networks/pools -> base images -> the service hosts' VMs -> boot
# services -> volumes/domains -> Kubernetes. Deletes run last, in reverse wave order.
WAVE_INFRA = 10
WAVE_IMAGES = 14  # pinned base images uploaded into their pools, before any overlay
WAVE_HOSTS = 16  # disks, seeds and domains of the VMs that run the boot services
WAVE_SERVICES = 20
WAVE_VOLUMES = 30
WAVE_DOMAINS = 40
WAVE_KUBERNETES = 50


@dataclass(frozen=True, slots=True)
class DiffItem:
    """One field-level difference: `op` is add | remove | change."""

    op: str
    path: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True, slots=True)
class Action:
    """One planned change to one live object."""

    op: Op
    provider: str  # libvirt | files | kubernetes
    kind: str  # domain, network, pool, volume, service, ConfigMap, ...
    name: str  # unique within provider+kind, e.g. "hv1/master0"
    wave: int
    changes: tuple[DiffItem, ...] = ()
    forcing_field: str | None = None  # for replace: the field that forces it
    destructive: bool = False  # deletes a VM or wipes a disk: needs --allow-destroy
    note: str = ""  # e.g. "takes effect at next boot"
    order: int = 0  # tie-breaker inside a wave (boot order: bootstrap, masters, workers)
    protected: bool = False  # `protect: true`: a delete or replace is refused outright
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Stable identity of the action, used by the journal."""
        return f"{self.provider}:{self.kind}:{self.name}:{self.op}"


class Provider(Protocol):
    """A live system gen converges. Reads are side-effect free; apply does one action.

    Contract (plan.py relies on it; see docs/decisions/0044-safety-rules.md):
    - `scope(tree)` returns the part of the rendered tree the provider converges; plan.py
      passes only that to `plan`, and drops every delete when it is empty (an empty desired
      set never prunes).
    - `plan` returns creates/updates/replaces for desired objects and deletes for objects the
      provider can prove this environment owns (plan.py removes deletes without --prune and
      refuses destructive or protected ones). It appends human-readable lines to `notices`
      and to `conflicts` (a desired name held by a foreign object: converge refuses).
    - `apply` gets back one of its own actions (payload intact) and must be idempotent.
    """

    name: str
    notices: list[str]
    conflicts: list[str]

    def scope(self, tree: Tree) -> Tree:
        """The rendered files this provider is responsible for."""
        ...

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        """Actions that would make live state match `tree` (deletes only for owned objects)."""
        ...

    def apply(self, action: Action) -> None:
        """Carry out one action; must be safe to repeat after an interruption."""
        ...
