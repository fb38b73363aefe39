"""A content-addressed cache of rendered sides for `gen diff`, kept in gen's store.

The key is built the way a Nix derivation's is, from everything a render reads: the
generator that renders (its version and the sha256 of every source file), the
environment's path in the repo, the NAR hashes of its inputs (the environment's folder and
the repo's whole `blueprints/` folder, which holds the blueprint the lock names), the lock
file's bytes, and which manifests that lock pins are present and sound in the store (a
render reads them). Same key, same render: the base side of a pull request, rendered once
already, is read back instead of rendered again.

An entry is `<store>/renders/<key>`: one line naming the format and the sha256 of the
payload, then the payload (a JSON header, then the files' bytes). Every read re-hashes the
payload: a truncated, altered or unreadable entry is ignored, the side is rendered again
and the entry rewritten. Only successful renders are stored, so every error a render can
raise is still raised; the tree holds secret markers and the header secret references,
never a secret's value (as in any rendered tree).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from generator.diff.inputs import GeneratorId, Inputs
from generator.tree import Executable, Tree

FORMAT = b"gen-render-cache 1"
KEEP = 64  # entries kept; the oldest beyond it are removed when one is added


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a side's render produced that is costly to recompute."""

    env: str
    tree: Tree
    secrets: dict[str, tuple[str, str]]
    topology: Any  # graph.Topology
    inputs: Inputs | None = None  # diff/inputs.py's reading of the environment's inputs


def cache_dir(store_root: Path | None = None) -> Path:
    from generator.lock.store import default_root

    return (store_root or default_root()) / "renders"


def render_key(generator: GeneratorId, root: Path, rel: PurePosixPath, lock: bytes | None,
               store_root: Path | None = None) -> str:
    """The sha256 naming the render of `root/rel` by `generator` (see the module doc).

    The whole `blueprints/` folder is hashed (it is small), so the key needs no parse of
    env.yaml to learn which blueprint it names; a built-in blueprint is part of the
    generator's sources. Symlinks are named in the key: the loader refuses some that a
    content hash alone would not see.
    """
    from generator.lock.nar import source_hash

    blueprints = root / "blueprints"
    material = {
        "format": FORMAT.decode(),
        "generator": [generator.version, sorted(generator.sources.items())],
        "environment": [str(rel), (root / rel).is_symlink(), source_hash(root / rel)],
        "blueprints": [_entries(blueprints), source_hash(blueprints)]
        if blueprints.is_dir() else None,
        "lock": hashlib.sha256(lock).hexdigest() if lock is not None else None,
        "manifests": _manifests_in_store(lock, store_root),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _entries(folder: Path) -> list[tuple[str, bool, bool]]:
    with os.scandir(folder) as found:
        return sorted((e.name, e.is_symlink(), e.is_dir()) for e in found)


def _manifests_in_store(lock: bytes | None, store_root: Path | None) -> dict[str, bool]:
    """sha256 -> present and sound, for every manifest the lock pins."""
    from generator.errors import GenError
    from generator.lock.store import Store, default_root

    try:
        inputs = json.loads(lock or b"{}").get("inputs") or {}
        wanted = sorted({str(entry["locked"]["sha256"]) for key, entry in inputs.items()
                         if key.startswith("manifest/")})
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}  # a damaged lock fails the render itself: nothing is stored for it
    store = Store(store_root or default_root())
    found = {}
    for sha256 in wanted:
        try:
            store.read(sha256)
            found[sha256] = True
        except (GenError, OSError):
            found[sha256] = False
    return found


def load(key: str, store_root: Path | None = None) -> Rendered | None:
    """The entry under `key` when it is there and verifies; None otherwise."""
    try:
        data = (cache_dir(store_root) / key).read_bytes()
    except OSError:
        return None
    try:
        return _decode(data)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # corrupt: never trusted, the side is rendered again


def save(key: str, rendered: Rendered, store_root: Path | None = None) -> None:
    """Store an entry (best effort: a read-only or full store only costs the next render)."""
    where = cache_dir(store_root)
    with contextlib.suppress(OSError):
        where.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=where, prefix=".tmp-")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode(rendered))
            temp.replace(where / key)
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        _trim(where)


def _trim(where: Path) -> None:
    entries = sorted((p for p in where.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[KEEP:]:
        stale.unlink(missing_ok=True)


def _encode(rendered: Rendered) -> bytes:
    paths = sorted(rendered.tree)
    header = {
        "env": rendered.env,
        "secrets": {name: list(ref) for name, ref in sorted(rendered.secrets.items())},
        "topology": _topology_data(rendered.topology),
        "inputs": _inputs_data(rendered.inputs),
        "files": [[p, len(rendered.tree[p]), isinstance(rendered.tree[p], Executable)]
                  for p in paths],
    }
    payload = b"".join([json.dumps(header, sort_keys=True).encode(), b"\n",
                        *(bytes(rendered.tree[p]) for p in paths)])
    return FORMAT + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _decode(data: bytes) -> Rendered:
    first, _, payload = data.partition(b"\n")
    magic, _, digest = first.rpartition(b" ")
    if magic != FORMAT or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("not a sound cache entry")
    head, _, body = payload.partition(b"\n")
    header = json.loads(head)
    tree: Tree = {}
    at = 0
    for path, size, executable in header["files"]:
        content = body[at:at + size]
        at += size
        tree[str(path)] = Executable(content) if executable else content
    if at != len(body):
        raise ValueError("sizes do not add up")
    secrets = {str(name): (str(ref[0]), str(ref[1]))
               for name, ref in header["secrets"].items()}
    return Rendered(str(header["env"]), tree, secrets, _topology(header["topology"]),
                    _inputs(header.get("inputs")))


def _inputs_data(inputs: Inputs | None) -> Any:
    """JSON for the inputs, or None when JSON would not give them back exactly (a YAML
    key that is not a string): the side then reads its inputs again."""
    if inputs is None:
        return None
    data = {"documents": {role: list(doc) for role, doc in inputs.documents.items()},
            "files": [[*key, *value] for key, value in sorted(inputs.files.items())]}
    back = _inputs(json.loads(json.dumps(data)))
    return data if back == inputs else None


def _inputs(data: Any) -> Inputs | None:
    if data is None:
        return None
    return Inputs({str(role): (str(doc[0]), doc[1]) for role, doc in data["documents"].items()},
                  {(str(r[0]), str(r[1])): (str(r[2]), str(r[3])) for r in data["files"]})


def _topology_data(topology: Any) -> Any:
    """Rows of field values (dataclasses.asdict deep-copies: slow for thousands of VMs)."""
    from generator.graph import Edge, Element

    if topology is None:
        return None
    element, edge = _names(Element), _names(Edge)
    return {"elements": [[getattr(e, f) for f in element] for e in topology.elements],
            "edges": [[getattr(e, f) for f in edge] for e in topology.edges],
            "marks": dict(topology.marks)}


def _topology(data: Any) -> Any:
    from generator.graph import Edge, Element, Topology

    if data is None:
        return None
    element, edge = _names(Element), _names(Edge)
    elements = []
    for row in data["elements"]:
        values = dict(zip(element, row, strict=True))
        values["members"] = tuple(values["members"])
        elements.append(Element(**values))
    return Topology(tuple(elements),
                    tuple(Edge(**dict(zip(edge, row, strict=True))) for row in data["edges"]),
                    dict(data["marks"]))


def _names(kind: type) -> list[str]:
    return [f.name for f in fields(kind)]
