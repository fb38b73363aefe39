"""Renderer families: one module and one descriptor per output family, in one registry.

A family takes the typed model and the lock's pins and returns a Tree. It never writes,
never reads the clock, the network or the environment, and never sees a secret value.
Its FamilyDescriptor also says which paths it renders, who converges them, what it alone
refuses, and how `gen diff` summarises its changes: adding a family is one module plus
one line in `descriptors()` (docs/architecture.md, "Adding a family or a provider").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import ModuleType
from typing import Any

from generator.errors import InvalidInput, Location, Problem
from generator.loader import FieldPath
from generator.model import Environment
from generator.profiles import ServiceSpec
from generator.tree import Tree, check_path, paths_are_safe


@dataclass(frozen=True, slots=True)
class Pins:
    """What the lock pins, as renderers need it. Empty when rendering unlocked."""

    images: dict[str, str] = field(default_factory=dict)  # name -> repo@sha256:...
    os: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (url, sha256)
    manifests: dict[str, bytes] = field(default_factory=dict)  # name -> verified content


Family = Callable[[Environment, Pins], Tree]
# What a family may refuse that only it can see (None: nothing beyond the semantic rules).
Check = Callable[[Environment], list[Problem]]
# gen diff's reading aid for the changed files a family claims (diff/semantic.py's Finding).
Summariser = Callable[[Sequence[Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Outputs:
    """Some of a family's output paths and who converges them.

    `patterns` are fnmatch patterns (`*` crosses `/`) of paths the family renders; a test
    renders every built-in environment and holds each pattern to a real path. `provider`
    names the reconcile provider that converges these paths (None: nobody; the openshift
    inputs go to the `installer` provider); `service` is the `hosts/<host>/<service>/`
    directory they fill. `install` says where the files provider installs a service the
    host OS profiles (generator/profiles.py) do not know, such as one a family registered
    from outside brings: (profile name or "*", ServiceSpec) pairs; a profile's own row wins.
    """

    patterns: tuple[str, ...]
    provider: str | None = None
    service: str | None = None
    install: tuple[tuple[str, ServiceSpec], ...] = ()

    def claims(self, path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class FamilyDescriptor:
    """Everything gen knows about one output family, in one place.

    `render` writes its files, `outputs` says which paths those are and who converges them
    (reconcile scopes come from here), `check` is what only this family can refuse,
    `summarise`/`title` are its `gen diff` section (None: its files are listed under
    "Other files").
    """

    name: str
    render: Family
    outputs: tuple[Outputs, ...]
    check: Check | None = None
    summarise: Summariser | None = None
    title: str = ""

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(p for out in self.outputs for p in out.patterns)

    def claims(self, path: str) -> bool:
        return any(out.claims(path) for out in self.outputs)

    def services(self) -> tuple[str, ...]:
        return tuple(out.service for out in self.outputs if out.service)


_REGISTERED: list[FamilyDescriptor] = []


def descriptors() -> tuple[FamilyDescriptor, ...]:
    """Every family: the built-in ones, then any `register`ed (an out-of-tree family)."""
    return (*builtin(), *_REGISTERED)


def register(descriptor: FamilyDescriptor) -> Callable[[], None]:
    """Add a family from outside this package; returns the function that removes it."""
    if any(d.name == descriptor.name for d in descriptors()):
        raise ValueError(f"a family named {descriptor.name!r} is already registered")
    _REGISTERED.append(descriptor)
    return lambda: _REGISTERED.remove(descriptor)


@functools.cache
def builtin() -> tuple[FamilyDescriptor, ...]:
    """The built-in families, in `gen diff` section order (rendering is order-free: the
    tree is sorted). Imported lazily so `gen --help` stays fast."""
    from generator.families import (
        cloudinit,
        dhcp,
        dns,
        haproxy,
        http,
        ignition,
        kolla,
        kubeadm,
        kubernetes,
        libvirt,
        mirror_registry,  # not `registry`: this package already has a function so named
        nfs,
        openshift,
        pxe,
    )

    s = _DiffSummaries()
    return (
        family(libvirt, LIBVIRT_OUTPUTS, s.summarize_libvirt, "VMs and libvirt objects"),
        family(dns, files("dns", "hosts/*/dns/*") + files("dnsmasq", "hosts/*/dnsmasq/dns.conf"),
               s.summarize_dns, "DNS records"),
        family(dhcp, files("dhcp", "hosts/*/dhcp/*") + files("kea", "hosts/*/kea/*")
               + files("dnsmasq", "hosts/*/dnsmasq/dhcp.conf"),
               s.summarize_dhcp, "DHCP reservations"),
        family(pxe, files("tftp", "hosts/*/tftp/*"), s.summarize_pxe, "PXE boot entries"),
        family(haproxy, files("haproxy", "hosts/*/haproxy/*"), s.summarize_haproxy, "HAProxy"),
        family(nfs, files("nfs", "hosts/*/nfs/*"), s.summarize_nfs, "NFS exports"),
        family(ignition, unconverged("clusters/*/ignition/*.ign"), s.summarize_ignition,
               "Ignition"),
        family(kubernetes, (Outputs(("clusters/*/kubernetes/*",), "kubernetes"),),
               s.summarize_kubernetes, "Kubernetes objects"),
        family(openshift, (Outputs(("clusters/*/openshift/*",), "installer"),)),
        family(kolla, KOLLA_OUTPUTS),
        family(http, files("http", "hosts/*/http/*")),
        family(kubeadm, (Outputs(("clusters/*/kubeadm/*",), "kubeadm"),)),
        family(cloudinit, SEED_OUTPUTS, name="cloud-init"),
        family(mirror_registry, files("registry", "hosts/*/registry/*"),
               name="registry"),
    )


class _DiffSummaries:
    """`gen diff`'s summarisers by name, each importing generator.diff only when called:
    a render needs the descriptors, never the diff (and its imports cost a render ~10%)."""

    def __getattr__(self, name: str) -> Summariser:
        def summarise(changes: Sequence[Any]) -> list[Any]:
            from generator.diff import semantic

            summary: list[Any] = getattr(semantic, name)(changes)
            return summary

        summarise.__name__ = summarise.__qualname__ = name
        return summarise


# libvirt objects per hypervisor, the base images it uploads into the pools, and the
# cloud-init seed ISOs it attaches to domains.
LIBVIRT_OUTPUTS = (Outputs(tuple(f"hypervisors/*/{kind}/*.xml" for kind in
                                 ("domains", "networks", "pools", "volumes"))
                           + ("hypervisors/*/images/*.json",), "libvirt"),)
SEED_OUTPUTS = (Outputs(("clusters/*/cloud-init/*",), "libvirt"),)
# kolla-ansible's inputs (run by the operator), its files on the deploy host, and its seeds.
KOLLA_OUTPUTS = (Outputs(("clusters/*/kolla/*",)),
                 Outputs(("hosts/*/kolla/*",), "files", "kolla"), *SEED_OUTPUTS)


def family(module: ModuleType, outputs: tuple[Outputs, ...], summarise: Summariser | None = None,
           title: str = "", name: str | None = None) -> FamilyDescriptor:
    """A family module's descriptor: its `render`, and its `check` when it defines one."""
    return FamilyDescriptor(name or module.__name__.rsplit(".", 1)[-1], module.render, outputs,
                            getattr(module, "check", None), summarise, title)


def files(service: str, *patterns: str,
          install: Mapping[str, ServiceSpec] | None = None) -> tuple[Outputs, ...]:
    """Outputs the files provider installs on a host: `hosts/<host>/<service>/...`;
    `install` (profile name or "*" -> ServiceSpec) for a service the profiles lack."""
    return (Outputs(patterns, "files", service, tuple(sorted((install or {}).items()))),)


def service_install(service: str, os_profile: str) -> ServiceSpec | None:
    """Where a family's descriptor installs `service` on `os_profile` (or on every
    profile), when the profile's own table has no row for it."""
    for descriptor in descriptors():
        for out in descriptor.outputs:
            found = dict(out.install) if out.service == service else {}
            spec = found.get(os_profile) or found.get("*")
            if spec is not None:
                return spec
    return None


def unconverged(*patterns: str) -> tuple[Outputs, ...]:
    """Outputs no provider converges (an installer or the operator consumes them)."""
    return (Outputs(patterns),)


def registry() -> dict[str, Family]:
    """Family name -> render function."""
    return {d.name: d.render for d in descriptors()}


def family_of(name: str) -> FamilyDescriptor:
    return next(d for d in descriptors() if d.name == name)


def checks() -> dict[str, Check]:
    """Family name -> its `check(env)`: what only that family can refuse, found on the
    typed model before anything renders, so `gen validate` refuses it as `gen render` would.
    A family without a hook has nothing of its own to refuse."""
    return {d.name: d.check for d in descriptors() if d.check is not None}


def render_all(env: Environment, pins: Pins, only: tuple[str, ...] = (),
               locate: Callable[[FieldPath], Location] | None = None) -> Tree:
    """Every family's tree merged into one; two families writing one path is a bug.

    `locate` (the loaded document's) gives a value an emitter refused its file, line and
    column; the environment's directory name is located at the directory itself.
    """
    from generator.families.escape import UnsafeValue

    try:
        return _render_all(env, pins, only)
    except UnsafeValue as refused:
        if locate is None:
            raise
        where = (locate(refused.field) if refused.field is not None
                 else Location(f"environments/{env.name}"))
        raise InvalidInput([Problem(refused.reason, where, refused.hint)]) from None


def _render_all(env: Environment, pins: Pins, only: tuple[str, ...]) -> Tree:
    return merge_trees((family.name, family.render(env, pins)) for family in descriptors()
                       if not only or family.name in only)


def merge_trees(trees: Iterable[tuple[str, Tree]]) -> Tree:
    """The families' trees, by name, merged and sorted by path; an unsafe path (check_path)
    or two families writing one path is refused at the first such path in their order."""
    tree: Tree = {}
    for name, rendered in trees:
        # One scan of the family's paths and one set test, not 60,000 of each at 10,000
        # nodes; when either finds something, the path-by-path loop refuses the same path
        # the same way.
        if not paths_are_safe(rendered) or not tree.keys().isdisjoint(rendered):
            _merge_one_by_one(tree, name, rendered)
        tree.update(rendered)
    # Sorting the keys alone takes half the time of sorting (key, content) pairs.
    return {path: tree[path] for path in sorted(tree)}


def _merge_one_by_one(tree: Tree, name: str, rendered: Tree) -> None:
    for path, content in rendered.items():
        check_path(path)
        if path in tree:
            raise AssertionError(f"families collide on {path} ({name})")
        tree[path] = content
