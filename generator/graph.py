"""The topology of an environment as a graph, for people: hypervisors host VMs, VMs sit on
networks, the helper's services point at what they serve (DNS zone, DHCP reservations,
HAProxy frontends -> backends, NFS exports).

Pure: built from the typed model, emitted as Mermaid `flowchart` text, Graphviz dot or
plain data. Above `COLLAPSE_AT` VMs, the VMs of one role on one hypervisor collapse into a
single group box so a 1,000-node environment stays readable; names given in `expand` stay
individual (the neighbourhood of a change in `gen diff`). Node ids are sequential (`n1`,
`n2`, ...) so no user-chosen name ever needs escaping in an id; labels are escaped per
output language.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from generator.model import Environment, Node

COLLAPSE_AT = 40  # more VMs than this: group per hypervisor and role
MARKS = ("added", "changed", "removed")
# Mermaid classDef styles of the change marks, also the legend's colours.
MARK_STYLE = {"added": "fill:#d4f8d4,stroke:#1a7f37,stroke-width:2px",
              "changed": "fill:#fff3c4,stroke:#9a6700,stroke-width:2px",
              "removed": "fill:#ffd8d8,stroke:#cf222e,stroke-width:2px,stroke-dasharray:4"}
DOT_COLOUR = {"added": "#1a7f37", "changed": "#9a6700", "removed": "#cf222e"}
DOT_FILL = {"added": "#d4f8d4", "changed": "#fff3c4", "removed": "#ffd8d8"}  # as MARK_STYLE


@dataclass(frozen=True, slots=True)
class Element:
    """One box: `key` names it across revisions (`vm:worker1`, `net:lab`, ...)."""

    key: str
    kind: str  # hypervisor | network | vm | group | service
    label: str
    parent: str | None = None  # the key of the box it is drawn inside (a hypervisor)
    members: tuple[str, ...] = ()  # a group: the VM names it stands for
    group: str = ""  # a VM: the group it joins when collapsed (`group:<hv>:<role>`)
    size: str = ""  # a VM: "vCPU, memory", for its group's label


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Topology:
    elements: tuple[Element, ...]
    edges: tuple[Edge, ...]
    marks: Mapping[str, str] = field(default_factory=dict)  # key -> added|changed|removed

    def element(self, key: str) -> Element:
        return next(e for e in self.elements if e.key == key)


def _mib(memory_mib: int) -> str:
    return f"{memory_mib // 1024} GiB" if memory_mib % 1024 == 0 else f"{memory_mib} MiB"


def vm_label(node: Node) -> str:
    ips = ", ".join(str(nic.ip) for nic in node.nics)
    return f"{node.name} ({node.role})\n{node.vcpu} vCPU, {_mib(node.memory_mib)}\n{ips}"


def build(env: Environment, expand: Iterable[str] | None = None,
          collapse_at: int = COLLAPSE_AT) -> Topology:
    """The topology of `env`, collapsed above `collapse_at` VMs (`expand`: VM names kept
    individual)."""
    full = build_full(env)
    if len(env.nodes) <= collapse_at:
        return full
    return collapse(full, {f"vm:{name}" for name in expand or ()})


def build_full(env: Environment) -> Topology:
    """Every VM as its own box."""
    elements: list[Element] = []
    edges: list[Edge] = []
    elements += [Element(f"hv:{hv.name}", "hypervisor", f"hypervisor {hv.name}")
                 for hv in env.hypervisors]
    elements += [Element(f"net:{net.name}", "network", f"network {net.name}\n{net.cidr}")
                 for net in env.networks]
    elements += [Element(f"vm:{n.name}", "vm", vm_label(n), parent=f"hv:{n.hypervisor}",
                         group=f"group:{n.hypervisor}:{n.role}",
                         size=f"{n.vcpu} vCPU, {_mib(n.memory_mib)}") for n in env.nodes]
    box = {n.name: f"vm:{n.name}" for n in env.nodes}
    edges += [Edge(box[n.name], f"net:{nic.network}") for n in env.nodes for nic in n.nics]
    _services(env, box, elements, edges)
    return Topology(tuple(elements), tuple(_unique(edges)))


def collapse(topology: Topology, keep: set[str], max_kept: int | None = None) -> Topology:
    """The VMs not in `keep` grouped per hypervisor and role (a group of one stays a VM);
    beyond `max_kept` kept VMs, the rest of `keep` is grouped too. A group takes the
    strongest mark of its members (removed members count as changed)."""
    vms = [e for e in topology.elements if e.kind == "vm"]
    kept = [e.key for e in vms if e.key in keep][:max_kept]
    members: dict[str, list[Element]] = {}
    for vm in vms:
        if vm.key not in kept and vm.group:
            members.setdefault(vm.group, []).append(vm)
    where: dict[str, str] = {}
    groups: list[Element] = []
    marks = dict(topology.marks)
    for key, nodes in members.items():
        if len(nodes) == 1:  # a group of one says less than the VM itself
            continue
        where.update((vm.key, key) for vm in nodes)
        role = key.rsplit(":", 1)[1]
        sizes = sorted({vm.size for vm in nodes})
        size = f"{sizes[0]} each" if len(sizes) == 1 else "mixed sizes"
        groups.append(Element(key, "group", f"{len(nodes)} x {role}\n{size}",
                              parent=nodes[0].parent, members=tuple(
                                  vm.key.removeprefix("vm:") for vm in nodes)))
        member_marks = {marks.pop(vm.key) for vm in nodes if vm.key in marks}
        if member_marks:
            marks[key] = "added" if member_marks == {"added"} else "changed"
    elements = [e for e in topology.elements if e.key not in where]
    first_vm = next((i for i, e in enumerate(elements) if e.kind == "vm"), len(elements))
    elements[first_vm:first_vm] = groups
    edges = [Edge(where.get(e.source, e.source), where.get(e.target, e.target), e.label)
             for e in topology.edges]
    return Topology(tuple(elements), tuple(_unique(edges)), marks)


def _services(env: Environment, box: dict[str, str], elements: list[Element],
              edges: list[Edge]) -> None:
    """The helper's services, each linked from the VM that runs it and to what it serves."""
    services = env.services
    cluster = env.cluster
    if services.dns is not None:
        zone = f"{cluster.name}.{cluster.base_domain}"
        _service(elements, edges, box, "svc:dns", f"DNS ({services.dns.provider})\nzone {zone}",
                 services.dns.host)
    if services.dhcp is not None:
        dhcp = services.dhcp
        reserved = sum(1 for n in env.nodes for nic in n.nics
                       if nic.network == dhcp.network and n.name != dhcp.host)
        _service(elements, edges, box, "svc:dhcp",
                 f"DHCP ({dhcp.provider})\n{reserved} reservations", dhcp.host)
        edges.append(Edge("svc:dhcp", f"net:{dhcp.network}", "serves"))
    if services.haproxy is not None:
        _haproxy(env, box, elements, edges)
    if services.nfs is not None:
        for export in services.nfs.exports:
            key = f"svc:nfs:{export.path}"
            clients = ", ".join(c.host for c in export.clients)
            _service(elements, edges, box, key, f"NFS export {export.path}\nto {clients}",
                     services.nfs.host)


def _haproxy(env: Environment, box: dict[str, str], elements: list[Element],
             edges: list[Edge]) -> None:
    from generator.families import haproxy

    service = env.services.haproxy
    assert service is not None
    for proxy in haproxy.proxies(env, service):
        key = f"svc:haproxy:{proxy.name}"
        _service(elements, edges, box, key, f"HAProxy {proxy.name} :{proxy.port}",
                 service.host)
        for node in proxy.nodes:
            edges.append(Edge(key, box[node.name], f":{proxy.server_port}"))
        for node in proxy.backups:
            edges.append(Edge(key, box[node.name], "backup"))


def _service(elements: list[Element], edges: list[Edge], box: dict[str, str], key: str,
             label: str, host: str) -> None:
    elements.append(Element(key, "service", label))
    if host in box:
        edges.append(Edge(box[host], key, "runs"))


def _unique(edges: list[Edge]) -> list[Edge]:
    """Collapsed VMs give the same edge many times; keep the first of each."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for edge in edges:
        if (edge.source, edge.target, edge.label) not in seen:
            seen.add((edge.source, edge.target, edge.label))
            out.append(edge)
    return out


# --- change marks -----------------------------------------------------------------------

def compare(base: Topology | None, head: Topology) -> Topology:
    """`head` with each element marked against `base`: added, changed (label differs or an
    edge from it changed), and the removed elements of `base` drawn back in, marked."""
    if base is None:
        return head
    before = {e.key: e for e in base.elements}
    after = {e.key: e for e in head.elements}
    out_edges = {(e.source, e.target, e.label) for e in head.edges}
    in_edges = {(e.source, e.target, e.label) for e in base.edges}
    touched = {end for edge in out_edges ^ in_edges for end in edge[:2] if end in after}
    marks: dict[str, str] = {}
    for key, element in after.items():
        if key not in before:
            marks[key] = "added"
        elif before[key].label != element.label or before[key].members != element.members:
            marks[key] = "changed"
    for key in sorted(touched):
        marks.setdefault(key, "changed")
    gone_keys = set(before) - set(after)
    removed = [e if e.parent is None or e.parent in after or e.parent in gone_keys
               else Element(e.key, e.kind, e.label, None, e.members)
               for k, e in before.items() if k in gone_keys]
    marks.update((e.key, "removed") for e in removed)
    kept = set(after) | {e.key for e in removed}
    gone = [e for e in base.edges if e.source in kept and e.target in kept
            and (e.source in marks and marks[e.source] == "removed"
                 or e.target in marks and marks[e.target] == "removed")]
    return Topology(head.elements + tuple(removed), tuple(_unique(list(head.edges) + gone)),
                    marks)


MAX_EXPANDED = 120  # changed VMs drawn one by one in a review; more join their groups


def review(base: Topology | None, head: Topology, collapse_at: int = COLLAPSE_AT,
           max_expanded: int = MAX_EXPANDED) -> Topology:
    """The head revision's full topology marked against the base's; in a large environment
    only the changed VMs (up to `max_expanded`) stay expanded, the rest is grouped."""
    marked = compare(base, head)
    if sum(1 for e in marked.elements if e.kind == "vm") <= collapse_at:
        return marked
    return collapse(marked, set(marked.marks), max_expanded)


# --- Mermaid ----------------------------------------------------------------------------

def _ids(topology: Topology) -> dict[str, str]:
    return {e.key: f"n{i}" for i, e in enumerate(topology.elements, 1)}


def mermaid_label(text: str) -> str:
    """A label inside `["..."]`: quotes and angle brackets as entity codes, lines as <br>."""
    escaped = (text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")
               .replace(">", "#gt;"))
    return escaped.replace("\n", "<br>")


SHAPES = {"hypervisor": ('["', '"]'), "network": ('[/"', '"/]'), "vm": ('["', '"]'),
          "group": ('[["', '"]]'), "service": ('("', '")')}


def to_mermaid(topology: Topology, legend: bool = False) -> str:
    """A Mermaid `flowchart LR`: hypervisors are subgraphs around their VMs."""
    ids = _ids(topology)
    lines = ["flowchart LR"]
    children: dict[str, list[Element]] = {}
    for element in topology.elements:
        if element.parent is not None:
            children.setdefault(element.parent, []).append(element)

    def node_line(element: Element, indent: str) -> str:
        left, right = SHAPES[element.kind]
        return f"{indent}{ids[element.key]}{left}{mermaid_label(element.label)}{right}"

    for element in topology.elements:
        if element.kind == "hypervisor":
            lines.append(f'  subgraph {ids[element.key]}["{mermaid_label(element.label)}"]')
            lines += [node_line(child, "    ") for child in children.get(element.key, [])]
            lines.append("  end")
        elif element.parent is None:
            lines.append(node_line(element, "  "))
    for edge in topology.edges:
        arrow = f"-->|{mermaid_label(edge.label)}|" if edge.label else "-->"
        lines.append(f"  {ids[edge.source]} {arrow} {ids[edge.target]}")
    used = sorted(set(topology.marks.values()), key=MARKS.index)
    if legend and used:
        lines.append('  subgraph legend["legend"]')
        lines += [f'    legend_{mark}["{mark}"]' for mark in used]
        lines.append("  end")
    for mark in used:
        lines.append(f"  classDef {mark} {MARK_STYLE[mark]}")
        members = [ids[e.key] for e in topology.elements if topology.marks.get(e.key) == mark]
        if legend:
            members.append(f"legend_{mark}")
        lines.append(f"  class {','.join(members)} {mark}")
    return "\n".join(lines) + "\n"


# --- Graphviz dot -----------------------------------------------------------------------

def dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


DOT_SHAPES = {"hypervisor": "box", "network": "parallelogram", "vm": "box",
              "group": "box3d", "service": "ellipse"}


def to_dot(topology: Topology) -> str:
    """A Graphviz digraph: hypervisors are clusters around their VMs."""
    ids = _ids(topology)
    lines = ["digraph topology {", "  rankdir=LR;", '  node [fontname="sans-serif"];']

    def node_line(element: Element, indent: str) -> str:
        attrs = [f"label={dot_string(element.label)}", f"shape={DOT_SHAPES[element.kind]}"]
        mark = topology.marks.get(element.key)
        if mark is not None:
            attrs += [f'color="{DOT_COLOUR[mark]}"', f'fillcolor="{DOT_FILL[mark]}"',
                      "penwidth=2", 'style="filled,dashed"' if mark == "removed"
                      else "style=filled"]
        return f"{indent}{ids[element.key]} [{', '.join(attrs)}];"

    for element in topology.elements:
        if element.kind == "hypervisor":
            lines.append(f"  subgraph cluster_{ids[element.key]} {{")
            lines.append(f"    label={dot_string(element.label)};")
            lines += [node_line(c, "    ") for c in topology.elements if c.parent == element.key]
            lines.append("  }")
        elif element.parent is None:
            lines.append(node_line(element, "  "))
    for edge in topology.edges:
        label = f" [label={dot_string(edge.label)}]" if edge.label else ""
        lines.append(f"  {ids[edge.source]} -> {ids[edge.target]}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(topology: Topology) -> dict[str, Any]:
    return {"elements": [{"key": e.key, "kind": e.kind, "label": e.label, "parent": e.parent,
                          "members": list(e.members),
                          "mark": topology.marks.get(e.key)} for e in topology.elements],
            "edges": [{"source": e.source, "target": e.target, "label": e.label}
                      for e in topology.edges]}
