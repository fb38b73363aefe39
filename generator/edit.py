"""In-place edits of environment YAML that keep comments, key order, quoting and indentation.

Edits go through ruamel.yaml's round-trip mode with the file's own indentation, so a
change touches only the lines it must. The caller validates the edited text before anything
is written (see commands/edit.py), so an invalid edit leaves the file untouched.
"""

from __future__ import annotations

import io
import re
from ipaddress import IPv4Address, ip_network
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import CommentToken

from generator.addresses import Allocator
from generator.errors import UserError
from generator.loader import load_yaml

_PATH_PART = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as the file writes them; ruamel's defaults otherwise.

    Looks at each `key:` line that opens a block and the next significant line under it:
    a nested key gives the mapping indent, a `- ` item gives the dash offset and the column
    its content starts at (the sequence indent).
    """
    found: dict[str, int] = {}
    significant = [line for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    for before, after in zip(significant, significant[1:], strict=False):
        if not re.match(r"^\s*(- +)?[\w.-]+:\s*(#.*)?$", before):
            continue
        parent = len(before) - len(before.lstrip(" -"))
        indent = len(after) - len(after.lstrip(" "))
        item = re.match(r"^(\s*)-(\s+)", after)
        if item and "offset" not in found:
            found["offset"] = indent - parent
            found["sequence"] = len(item.group(0)) - parent
        elif not item and indent > parent and "mapping" not in found:
            found["mapping"] = indent - parent
    offset = max(found.get("offset", 2), 0)
    return found.get("mapping", 2), max(found.get("sequence", offset + 2), offset + 2), offset


def _yaml(text: str) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    mapping, sequence, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def load(text: str, display: str) -> tuple[YAML, Any]:
    yaml = _yaml(text)
    try:
        return yaml, yaml.load(text)
    except YAMLError as exc:
        load_yaml(text, display)  # the loader's one-line error at file:line:col, if it has one
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise UserError(f"{display}: cannot edit: the file is not valid YAML ({first})") from None


def dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def parse_path(path: str) -> list[str | int]:
    """`nodes[2].memory` -> ['nodes', 2, 'memory']; `nodes[worker0]` selects by name."""
    parts: list[str | int] = []
    for key, index in _PATH_PART.findall(path):
        parts.append(key if key else (int(index) if index.lstrip("-").isdigit() else index))
    if not parts or "".join(str(p) for p in parts).strip() == "":
        raise UserError(f"{path!r} is not a field path", "write it like nodes[2].memory or "
                        "nodes[worker0].memory or cluster.name")
    return parts


def _step(container: Any, part: str | int, so_far: str) -> Any:
    if isinstance(container, CommentedSeq) and isinstance(part, str):
        for index, item in enumerate(container):
            if isinstance(item, dict) and item.get("name") == part:
                return index
        raise UserError(f"no item named {part!r} in {so_far}", "check the name")
    if isinstance(container, CommentedSeq):
        if not -len(container) <= part < len(container):  # type: ignore[operator]
            raise UserError(f"{so_far} has no item [{part}]", f"it has {len(container)} item(s)")
        return part
    if isinstance(container, CommentedMap):
        return part
    raise UserError(f"{so_far} is not a mapping or list", "check the field path")


def set_value(data: Any, path: str, raw_value: str) -> None:
    """Set the field at `path` to `raw_value` parsed as a YAML scalar, list or mapping."""
    parts = parse_path(path)
    container, so_far = data, ""
    # The first missing mapping is added once it holds the value: the section's closing
    # comment then moves below its innermost key, not between a new key and its children.
    first_new: tuple[CommentedMap, Any, CommentedMap] | None = None
    for part in parts[:-1]:
        key = _step(container, part, so_far or "the document")
        so_far += f"[{part}]" if isinstance(part, int) else (f".{part}" if so_far else part)
        if isinstance(container, CommentedMap) and key not in container:
            fresh = CommentedMap()
            if first_new is None:
                first_new = (container, key, fresh)
            else:
                container[key] = fresh
            container = fresh
            continue
        container = container[key]
    last = _step(container, parts[-1], so_far or "the document")
    if first_new is not None:
        container[last] = parse_value(raw_value)
        _add_key(*first_new)
    elif isinstance(container, CommentedMap) and last not in container:
        _add_key(container, last, parse_value(raw_value))
    else:
        container[last] = parse_value(raw_value)


def _add_key(mapping: CommentedMap, key: Any, value: Any) -> None:
    """Append `key` to `mapping` inside its section. ruamel keeps the blank lines and comment
    that end a section as a trailing comment of its last key, so a plain append would land
    after them (in the next section's space): the trailing comment moves to the new key."""
    previous = next(reversed(mapping), None) if len(mapping) else None
    mapping[key] = value
    trailing: list[Any] = mapping.ca.items.get(previous) or [] if previous is not None else []
    token = trailing[2] if len(trailing) > 2 else None
    if token is None or isinstance(mapping[previous], (CommentedMap, CommentedSeq)):
        return
    inline, newline, rest = token.value.partition("\n")
    if not inline.strip():  # no comment on the previous key's own line: move it all
        trailing[2], moved = None, token.value
    elif rest:  # keep `key: value  # comment` on its line, move what follows
        token.value, moved = inline + newline, newline + rest
    else:
        return
    # a new block mapping: below its innermost last key, else it would sit between the new
    # key and its children (the section's blank line and comment inside the section)
    while isinstance(value, CommentedMap) and value and not value.fa.flow_style():
        mapping, key = value, next(reversed(value))
        value = mapping[key]
    mapping.ca.items[key] = [None, None, CommentToken(moved, token.start_mark, None), None]


def parse_value(raw: str) -> Any:
    """A command-line value as YAML: `8` -> 8, `true` -> True, `[a, b]` -> list, else text."""
    try:
        value = YAML().load(raw)
    except YAMLError:
        return raw
    return raw if value is None and raw.strip() not in ("null", "~") else value


def find_node(data: Any, name: str) -> int:
    for index, node in enumerate(data.get("nodes") or []):
        if node.get("name") == name:
            return index
    # repr: a name with a newline must not split the one-line message
    known = ", ".join(str(n.get("name")).encode("unicode_escape").decode()
                      for n in data.get("nodes") or [])
    raise UserError(f"no node named {name!r}", f"nodes: {known}")


def remove_node(data: Any, name: str) -> None:
    """Delete a node; comment lines written above it stay, above the node that follows.

    Removing the bootstrap node also records that bootstrap is complete: an OpenShift/OKD
    cluster without a bootstrap is only valid once it has bootstrapped, and the reviewer sees
    both lines in one change."""
    nodes, index = data["nodes"], find_node(data, name)
    if nodes[index].get("role") == "bootstrap":
        retire_bootstrap(data)
    above = nodes.ca.items.get(index, [None, None])[1]
    del nodes[index]
    if above and index < len(nodes):
        entry = nodes.ca.items.setdefault(index, [None, None, None, None])
        entry[1] = list(above) + list(entry[1] or [])


def retire_bootstrap(data: Any) -> None:
    """cluster.bootstrapComplete: true (boot services drop the bootstrap node)."""
    cluster = data.get("cluster")
    if not isinstance(cluster, CommentedMap):
        cluster = data["cluster"] = CommentedMap()
    if "bootstrapComplete" in cluster:
        cluster["bootstrapComplete"] = True
        return
    # Beside the release it belongs to; appended last it would land after the blank line
    # that ends the section (ruamel keeps that line with the last key).
    keys = list(cluster)
    anchor = next((k for k in ("version", "baseDomain", "name") if k in cluster), None)
    cluster.insert(keys.index(anchor) + 1 if anchor else 0, "bootstrapComplete", True)


def add_node(data: Any, fields: dict[str, Any]) -> None:
    """Append a node shaped like its neighbours (flow style if they are)."""
    nodes = data.setdefault("nodes", CommentedSeq())
    if any(n.get("name") == fields["name"] for n in nodes):
        raise UserError(f"a node named {fields['name']!r} already exists", "pick another name")
    node = CommentedMap(fields)
    nics = CommentedSeq([CommentedMap(nic) for nic in fields.get("nics", [])])
    if nics:
        node["nics"] = nics
    if nodes and getattr(nodes[-1], "fa", None) is not None and nodes[-1].fa.flow_style():
        node.fa.set_flow_style()
    nodes.append(node)


def next_free_ip(data: Any, network: str, role: str) -> str:
    """After the highest address of the same role, else the first free one: the addresses
    expand would refuse (pool, gateway, taken, handed out to NICs without ip:) are skipped."""
    net = next((n for n in data.get("networks") or [] if n.get("name") == network), None)
    if net is None:
        raise UserError(f"unknown network {network!r}", "pass --network with a declared one")
    try:
        ip_network(str(net.get("cidr")), strict=False)
    except ValueError:
        raise UserError(f"network {network!r} has cidr {net.get('cidr')!r}, not an IPv4 CIDR",
                        "fix the network's cidr, or pass --ip explicitly") from None
    allocator = Allocator(data)
    allocator.assign_unaddressed(data)
    same_role = [address for node in data.get("nodes") or [] if node.get("role") == role
                 for nic in node.get("nics") or [] if nic.get("network") == network
                 if (address := _address(nic.get("ip"))) is not None]
    # Anywhere in the network: a static address need not come from the range (that is for
    # NICs without ip:), but without a same-role hint it is the one expand would hand out.
    free = allocator.next(network, max(same_role) + 1 if same_role else None, anywhere=True)
    if free is None:
        raise UserError(f"network {network!r} has no free address", "pass --ip explicitly")
    return str(free)


def _address(value: Any) -> IPv4Address | None:
    try:
        return IPv4Address(str(value)) if value else None
    except ValueError:
        return None
