"""Renderer families: one pure function per output family, listed in a plain registry.

A family takes the typed model and the lock's pins and returns a Tree. It never writes,
never reads the clock, the network or the environment, and never sees a secret value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from generator.errors import InvalidInput, Location, Problem
from generator.loader import FieldPath
from generator.model import Environment
from generator.tree import Tree, check_path


@dataclass(frozen=True, slots=True)
class Pins:
    """What the lock pins, as renderers need it. Empty when rendering unlocked."""

    images: dict[str, str] = field(default_factory=dict)  # name -> repo@sha256:...
    os: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (url, sha256)
    manifests: dict[str, bytes] = field(default_factory=dict)  # name -> verified content

    def image(self, env: Environment, name: str) -> str:
        """The image reference to render: the locked digest form when pinned."""
        return self.images.get(name) or env.image(name)


Family = Callable[[Environment, Pins], Tree]


def registry() -> dict[str, Family]:
    """Family name -> render function. Imported lazily so `gen --help` stays fast."""
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
        nfs,
        openshift,
        pxe,
    )

    return {
        "libvirt": libvirt.render,
        "dns": dns.render,
        "dhcp": dhcp.render,
        "ignition": ignition.render,
        "openshift": openshift.render,
        "kolla": kolla.render,
        "pxe": pxe.render,
        "http": http.render,
        "haproxy": haproxy.render,
        "nfs": nfs.render,
        "kubeadm": kubeadm.render,
        "cloud-init": cloudinit.render,
        "kubernetes": kubernetes.render,
    }


def checks() -> dict[str, Callable[[Environment], list[Problem]]]:
    """Family name -> its `check(env)`: what only that family can refuse, found on the
    typed model before anything renders, so `gen validate` refuses it as `gen render` would.
    A family without a hook has nothing of its own to refuse."""
    from generator.families import ignition, nfs, openshift, pxe

    return {"ignition": ignition.check, "openshift": openshift.check, "pxe": pxe.check,
            "nfs": nfs.check}


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
    tree: Tree = {}
    for name, family in registry().items():
        if only and name not in only:
            continue
        for path, content in family(env, pins).items():
            check_path(path)
            if path in tree:
                raise AssertionError(f"families collide on {path} ({name})")
            tree[path] = content
    return dict(sorted(tree.items()))
