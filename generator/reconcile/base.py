"""The reconciler's data: plan actions and the Provider protocol (DiffItem, the one diff
type `gen diff` and `gen plan` share, is essence.py's).

A provider reads live state for its part of the rendered tree, normalizes it to an essence
comparable with the rendered essence, and returns Actions. Applying an action must be
idempotent: an interrupted converge re-plans and resumes from the journal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from generator.model import Environment
from generator.reconcile.essence import DiffItem as DiffItem  # the one diff type, re-exported
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
WAVE_MIRROR = 18  # pinned container images pushed to the site's mirror, before nodes pull
WAVE_SERVICES = 20
WAVE_VOLUMES = 30
WAVE_DOMAINS = 40
WAVE_KUBERNETES = 50
# The installer provider's phases (reconcile/installer.py): its assets exist before the boot
# services publish them; its gates wait once the machines run.
WAVE_INSTALLER_ASSETS = 15
WAVE_INSTALLER_GATES = 45
# The kubeadm provider's phases (reconcile/kubeadm_phases.py): init and joins once the
# machines run; the Ready gate after the Kubernetes objects (the CNI among them).
WAVE_KUBEADM_MEMBERS = 45
WAVE_KUBEADM_READY = 55

# Hypervisors a plan reads (and converge applies to) at once unless --parallel says
# otherwise (reconcile/fleet.py). Talking to a hypervisor is waiting on its connection, not
# computing, so the default covers a whole fleet: never more threads than hypervisors, and
# up to 32 (at 4, 20 hypervisors 20 ms away planned in 4.9x the slowest one's time; at 20,
# 1.4x: bench/bench_fleet.py). Threads beyond that buy little against one interpreter's GIL.
DEFAULT_PARALLEL = 32


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

    Contract (plan.py relies on it; see docs/decisions/0044-safety-rules.md): its
    descriptor (providers.py) hands `plan` the part of the rendered tree the family
    descriptors route to it, and plan.py drops every delete when that part is empty (an
    empty desired set never prunes).
    - `plan` returns creates/updates/replaces for desired objects and deletes for objects the
      provider can prove this environment owns (plan.py removes deletes without --prune and
      refuses destructive or protected ones). What it has to say (notices, conflicts: a
      desired name held by a foreign object, refused by converge) reaches the plan as the
      descriptor's ProviderPlan value.
    - `apply` gets back one of its own actions (payload intact) and must be idempotent.
    """

    name: str

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        """Actions that would make live state match `tree` (deletes only for owned objects)."""
        ...

    def apply(self, action: Action) -> None:
        """Carry out one action; must be safe to repeat after an interruption."""
        ...


# Cluster name -> the Kubernetes objects the kubernetes family built in the same render.
BuiltObjects = Mapping[str, Sequence[dict[str, Any]]]


@runtime_checkable
class UsesPinnedTools(Protocol):
    """A provider that runs client tools the lock pins (`tool/NAME` inputs): plan.py hands
    it tool name -> the sha256 of its archive in the store before `plan`."""

    def use_tools(self, tools: dict[str, str]) -> None:
        ...


@runtime_checkable
class UsesPinnedImages(Protocol):
    """A provider that needs the images the lock pins (`image/NAME` inputs): plan.py hands
    it lock key -> `registry/repository@sha256:...` before `plan`."""

    def use_images(self, images: dict[str, str]) -> None:
        ...


@runtime_checkable
class UsesBuiltObjects(Protocol):
    """A provider whose desired state is the objects a family built, handed over as data
    (plan.py calls `use_built` before `plan`), not files it would have to parse back."""

    def use_built(self, objects: BuiltObjects) -> None:
        """Take the render's built objects; `plan` then reads the ones its scope names."""
        ...
