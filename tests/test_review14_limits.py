"""Review 14, still open after findings 1-9: bounded output. 100 networks made ~12,800
reverse zone files; the number of networks and of reverse zones is capped, with the limit
in the one-line error, at validate (so `gen render` never starts) and again in the DNS
renderer (defence in depth)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from clirun import gen, replace_in_lab
from fstree import snapshot

from generator.errors import UserError
from generator.families import Pins, dns
from generator.pipeline import render_environment
from generator.semantic import MAX_NETWORKS

LAN = ("  - name: lan\n    cidr: 192.168.20.0/24\n    gateway: 192.168.20.1\n"
       "    dns: [192.168.20.111]\n    bridge: br0\n")
ROOT = Path(__file__).resolve().parent.parent


def _extra_networks(cidrs: list[str]) -> str:
    return "".join(f"  - {{name: n{i}, cidr: {c}, bridge: br{i}}}\n"
                   for i, c in enumerate(cidrs))


def _refused(repo: Path, expected: str) -> None:
    before = snapshot(repo)
    for verb in ("validate", "render"):
        result = gen(verb, "env/lab", cwd=repo)
        assert result.code == 1, result
        assert result.err.strip().splitlines() == [expected]
    assert snapshot(repo) == before, "nothing is written"


def test_more_networks_than_the_limit_is_one_line(repo: Path) -> None:
    cidrs = [f"10.{i}.0.0/24" for i in range(MAX_NETWORKS)]  # the lab's lan makes one more
    where = replace_in_lab(repo, LAN, LAN + _extra_networks(cidrs))
    _refused(repo, f"{where}:3: at networks: {MAX_NETWORKS + 1} "
             f"networks are more than {MAX_NETWORKS} per environment (split the site into "
             "several environments)")


def test_networks_needing_too_many_reverse_zones_are_one_line(repo: Path) -> None:
    # a /9 needs 128 /16 reverse zones: three of them need 384
    where = replace_in_lab(repo, LAN, LAN + _extra_networks(
        ["11.0.0.0/9", "11.128.0.0/9", "12.0.0.0/9"]))
    _refused(repo, f"{where}:3: at networks: the networks need more "
             f"than {dns.MAX_REVERSE_ZONES} reverse DNS zones (use networks aligned on /8, "
             "/16 or /24 (or smaller than /24), or fewer of them)")


def test_up_to_the_limit_renders(repo: Path, tmp_path: Path) -> None:
    replace_in_lab(repo, LAN, LAN + _extra_networks(["11.0.0.0/9"]))
    result = gen("render", "env/lab", "--out", str(tmp_path / "out"), cwd=repo)
    assert result.code == 0, result.err
    zones = list((tmp_path / "out/hosts/helper/dns").rglob("*.in-addr.arpa*"))
    assert len(zones) == 128 + 1  # the /9 and the lab's /24


def test_the_dns_renderer_caps_reverse_zones_itself() -> None:
    env = render_environment("env/lab", cwd=ROOT, pins=Pins()).loaded.model
    lan = env.networks[0]
    wide = [dataclasses.replace(lan, name=f"n{i}", cidr=IPv4Network(c)) for i, c in
            enumerate(["11.0.0.0/9", "11.128.0.0/9", "12.0.0.0/9"])]
    with pytest.raises(UserError, match=f"more than {dns.MAX_REVERSE_ZONES} reverse DNS zones"):
        dns.render(dataclasses.replace(env, networks=(lan, *wide)), Pins())
