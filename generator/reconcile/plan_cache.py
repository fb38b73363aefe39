"""What `gen plan` needs besides the rendered tree, kept beside the render cache's entry.

A plan takes its tree from the render cache (generator.render_cache). It also needs the
environment's typed model (hypervisors, nodes, names), the tree's NAR hash, and what the
lock pins (the Kubernetes objects built with the tree, the pinned tools and images). On a
tree hit these used to be rebuilt by loading the environment again (YAML, merge, expand):
most of a plan's own work. They are a function of the same inputs the render cache key
names, so they are stored once under a key derived from it (`companion_key`) and read back
on the next plan of the same inputs.

The entry goes through the render cache's own framing: the payload's sha256 is checked on
every read, and an entry or folder another user owns or could write is never read. The
payload is a pickle (the model is a tree of frozen dataclasses; rebuilding it from text
would cost what loading the environment costs), read by an unpickler that can build only
the model's own classes, addresses and plain containers: no other global can be named, so
a planted entry can at worst hold a wrong model, never run code. Like the tree, it holds
secrets by reference only (the model's SecretRef, the objects' markers), never a value.
The key already names the generator's sources and the Python version, so a pickle is never
read by another layout of these classes. Anything unexpected is a miss: the plan loads the
environment as before.

Each provider's scope (the paths the family descriptors route to it) is kept too: it is
a function of the tree and of the generator's descriptors, and routing needs every family
module imported; a family registered at run time (generator.families.register) makes the
plan route the tree itself.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from generator import model, profiles
from generator.reconcile.base import BuiltObjects
from generator.records import record

KIND = "gen-plan-desired 1"
PAYLOAD = "desired.pickle"

# module -> names the unpickler may build: the model's classes (found by name in
# generator.model, only if they are classes defined there), the addresses it holds, and
# a host's paths from its OS profile.
_ALLOWED: Mapping[str, frozenset[str]] = {
    "ipaddress": frozenset({"IPv4Address", "IPv4Network", "IPv4Interface", "IPv6Address",
                            "IPv6Network", "IPv6Interface"}),
    "generator.profiles": frozenset({"HostPaths"}),
}
_MODULES = {"ipaddress": ipaddress, "generator.profiles": profiles, "generator.model": model}


@record
class Known:
    """A plan's desired state minus the tree, as stored for one render cache key."""

    env: model.Environment
    tree_hash: str
    objects: BuiltObjects
    tools: tuple[tuple[str, str], ...]
    images: tuple[tuple[str, str], ...]
    # provider name -> the paths of the tree the family descriptors route to it (routing
    # every path needs every family's module imported: ~a tenth of a plan's own work)
    scopes: tuple[tuple[str, tuple[str, ...]], ...] = ()


class _ModelOnly(pickle.Unpickler):
    """Builds the model's own classes and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        found = getattr(_MODULES.get(module), name, None) if module in _MODULES else None
        if module == "generator.model":
            if isinstance(found, type) and found.__module__ == "generator.model":
                return found
        elif name in _ALLOWED.get(module, ()):
            return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of the model")


def companion_key(render_key: str) -> str:
    """The store name of the entry kept beside render cache entry `render_key`."""
    return hashlib.sha256(f"{KIND}\0{render_key}".encode()).hexdigest()


def encode(known: Known) -> bytes:
    # `locate` reads the merged YAML document (every value's position): errors of a
    # render carry it, but a plan of a stored render raises none of those.
    env = known.env
    if env.locate is not None:
        import dataclasses

        env = dataclasses.replace(env, locate=None)
    return pickle.dumps({"env": env, "treeHash": known.tree_hash,
                         "objects": dict(known.objects), "tools": known.tools,
                         "images": known.images, "scopes": known.scopes},
                        protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Known:
    """The stored value; pickle.UnpicklingError (or another error) if it is anything else."""
    found = _ModelOnly(io.BytesIO(data)).load()
    env, tree_hash = found["env"], found["treeHash"]
    if not isinstance(env, model.Environment) or not isinstance(tree_hash, str):
        raise TypeError("not a plan's desired state")
    return Known(env, tree_hash, found["objects"], tuple(found["tools"]),
                 tuple(found["images"]), tuple(found["scopes"]))


def load(render_key: str, store_root: Path | None = None) -> Known | None:
    """What was stored beside `render_key`, verified; None when absent or unsound."""
    from generator import render_cache

    entry = render_cache.load_entry(companion_key(render_key), store_root)
    if entry is None:
        return None
    header, tree = entry
    try:
        if header.get("kind") != KIND or header.get("for") != render_key:
            return None
        return decode(bytes(tree[PAYLOAD]))
    except Exception:  # noqa: BLE001 - anything unexpected in an entry is a miss
        return None


def save(render_key: str, known: Known, store_root: Path | None = None) -> None:
    """Store it (best effort, as the render cache does); only what reads back the same."""
    from generator import render_cache

    try:
        data = encode(known)
        if decode(data) != known:  # `locate` is no part of the model's value
            return
    except Exception:  # noqa: BLE001 - a model the unpickler cannot build is not cached
        return
    render_cache.save_entry(companion_key(render_key), {"kind": KIND, "for": render_key},
                            {PAYLOAD: data}, store_root)

