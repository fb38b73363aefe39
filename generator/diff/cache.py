"""`gen diff`'s side of the render cache (generator/render_cache.py holds the store part).

A side's entry keeps, beside the tree, what a diff needs that is costly to recompute: the
secret references (never a value), the topology and the inputs read. Its key is the one
render_cache.render_key builds with no extra part (`gen render`'s entries name their repo
and --locked, so the two never read each other's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from generator import render_cache
from generator.diff.inputs import GeneratorId, Inputs
from generator.render_cache import FORMAT, cache_dir
from generator.tree import Tree

__all__ = ["FORMAT", "Rendered", "cache_dir", "load", "render_key", "save"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a side's render produced that is costly to recompute."""

    env: str
    tree: Tree
    secrets: dict[str, tuple[str, str]]
    topology: Any  # graph.Topology
    inputs: Inputs | None = None  # diff/inputs.py's reading of the environment's inputs


def render_key(generator: GeneratorId, root: Path, rel: PurePosixPath, lock: bytes | None,
               store_root: Path | None = None) -> str:
    """The sha256 naming the render of `root/rel` by `generator` (render_cache.render_key)."""
    return render_cache.render_key(generator.version, generator.sources, root, rel, lock,
                                   store_root)


def load(key: str, store_root: Path | None = None) -> Rendered | None:
    """The entry under `key` when it is there, ours and verifies; None otherwise."""
    found = render_cache.load_entry(key, store_root)
    if found is None:
        return None
    try:
        return _rendered(*found)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # sound bytes of another shape: rendered again


def save(key: str, rendered: Rendered, store_root: Path | None = None) -> None:
    """Store an entry (best effort: a read-only or full store only costs the next render)."""
    render_cache.save_entry(key, _header(rendered), rendered.tree, store_root)


def _header(rendered: Rendered) -> dict[str, Any]:
    return {"env": rendered.env,
            "secrets": {name: list(ref) for name, ref in sorted(rendered.secrets.items())},
            "topology": _topology_data(rendered.topology),
            "inputs": _inputs_data(rendered.inputs)}


def _rendered(header: dict[str, Any], tree: Tree) -> Rendered:
    secrets = {str(name): (str(ref[0]), str(ref[1]))
               for name, ref in header["secrets"].items()}
    return Rendered(str(header["env"]), tree, secrets, _topology(header["topology"]),
                    _inputs(header.get("inputs")))


def _encode(rendered: Rendered) -> bytes:
    return b"".join(render_cache.encode(_header(rendered), rendered.tree))


def _decode(data: bytes) -> Rendered:
    return _rendered(*render_cache.decode(data))


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
