"""One IP allocator: `gen node add` and `expand` skip the same addresses and agree.

The issue: `gen node add` on lab A handed out 192.168.20.163, the first address of the DHCP
pool, because it only knew the nodes' addresses. The CLI test runs the real command on a
copy of lab A; the property test builds random variants of lab A (gateway, range, DHCP pool,
which nodes carry an address) and checks the real `gen node add` pick against the real
`expand` through the real loader.
"""

from __future__ import annotations

import copy
import io
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from clirun import gen
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from generator import edit
from generator.environment import load_environment_dir
from generator.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "environments" / "lab"
BASE: dict[str, Any] = YAML(typ="safe", pure=True).load((LAB / "env.yaml").read_text())
NET = "192.168.20"


def _dump(data: dict[str, Any]) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, out)
    return out.getvalue()


def _with_pool(text: str, start: str, end: str, haproxy: str | None = None) -> str:
    extra = f"  haproxy:\n    address: {haproxy}\n" if haproxy else ""
    return text.replace("services:\n", f"services:\n  dhcp:\n    pool: {{start: {start}, "
                        f"end: {end}}}\n{extra}", 1)


def test_node_add_on_lab_a_skips_the_dhcp_pool_and_the_vip(repo: Path) -> None:
    path = repo / "environments" / "lab" / "env.yaml"
    path.write_text(_with_pool(path.read_text(), f"{NET}.163", f"{NET}.199", f"{NET}.200"))
    result = gen("node", "add", "env/lab", "worker2", "--role", "worker", cwd=repo)
    assert result.code == 0, result.err
    # .163-.199 are leased by DHCP, .200 is the load-balancer address: .201 is the first free.
    assert f"{{network: lan, ip: {NET}.201}}" in path.read_text()


def test_node_add_wraps_past_a_pool_that_runs_to_the_broadcast_address(repo: Path) -> None:
    path = repo / "environments" / "lab" / "env.yaml"
    path.write_text(_with_pool(path.read_text(), f"{NET}.163", f"{NET}.254"))
    result = gen("node", "add", "env/lab", "worker2", "--role", "worker", cwd=repo)
    assert result.code == 0, result.err
    # Nothing free after the workers: wrap round, past .0 (network) and .1 (gateway).
    assert f"{{network: lan, ip: {NET}.2}}" in path.read_text()


def _load(data: dict[str, Any]) -> dict[str, IPv4Address] | None:
    """Node name -> address as the real loader expands it; None if validation refuses."""
    try:
        loaded = load_environment_dir(LAB, env_text=_dump(data))
    except InvalidInput:
        return None
    return {node.name: node.nics[0].ip for node in loaded.model.nodes}


HOSTS = st.integers(2, 254)


@st.composite
def variants(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    net = data["networks"][0]
    net["gateway"] = f"{NET}.{draw(st.sampled_from([1, 254, draw(HOSTS)]))}"
    low, high = sorted((draw(HOSTS), draw(HOSTS)))
    net["range"] = {"start": f"{NET}.{low}", "end": f"{NET}.{min(high, low + 12)}"}
    if draw(st.booleans()):
        start = draw(HOSTS)
        end = min(254, start + draw(st.integers(0, 20)))
        data["services"]["dhcp"] = {"pool": {"start": f"{NET}.{start}", "end": f"{NET}.{end}"}}
    for node in data["nodes"]:
        if node["role"] in ("worker", "master") and draw(st.booleans()):
            del node["nics"][0]["ip"]  # expand hands this one an address from the range
    return data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking loads are slow
@given(variants())
def test_node_add_and_expand_agree(data: dict[str, Any]) -> None:
    role = "worker"  # a fourth master would be refused for etcd's sake, not for its address
    before = _load(data)
    assume(before is not None)
    assert before is not None
    pick = IPv4Address(edit.next_free_ip(data, "lan", role))
    net = data["networks"][0]
    pool = data["services"].get("dhcp", {}).get("pool")
    refused = {IPv4Address(f"{NET}.0"), IPv4Address(f"{NET}.255"),
               IPv4Address(net["gateway"]), *map(IPv4Address, net["dns"]), *before.values()}
    assert pick not in refused
    if pool:
        assert not IPv4Address(pool["start"]) <= pick <= IPv4Address(pool["end"])

    added = copy.deepcopy(data)
    added["nodes"].append({"name": "new0", "role": role, "hypervisor": "hv1",
                           "nics": [{"network": "lan", "ip": str(pick)}]})
    after = _load(added)
    assert after is not None
    # The new static address moves no node that expand addresses from the range.
    assert after == {**before, "new0": pick}

    same_role = [n for n in data["nodes"] if n["role"] == role and "ip" in n["nics"][0]]
    if not same_role:
        # No hint from the role's neighbours: node add picks exactly what expand would give
        # the same node written without an address.
        del added["nodes"][-1]["nics"][0]["ip"]
        expanded = _load(added)
        # a range the role's other nodes already fill gives expand nothing to hand out
        # (a refusal, tested in test_validation); node add then looks outside the range
        assume(expanded is not None)
        assert expanded is not None and expanded["new0"] == pick
