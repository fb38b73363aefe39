"""`gen new`: scaffold an environment from a blueprint's cookiecutter template.

cookiecutter asks the questions (or reads --answers / uses defaults); gen checks the answers
and lays out the nodes (names, roles, addresses) before anything is written; cookiecutter
renders the files into a scratch directory; the result is validated as a whole and only then
moved into environments/<name>.
"""

from __future__ import annotations

import shutil
import tempfile
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from generator.errors import UserError

# Per shape: the fixed nodes that come before masters and workers, as (name, role).
LEADING_NODES = {
    "openshift-upi": [("helper", "helper"), ("bootstrap", "bootstrap")],
    "kubeadm": [("storage", "storage")],
    "kolla-aio": [],
}


def template_dir(root: Path, blueprint: str) -> Path:
    path = root / "blueprints" / blueprint / "template"
    if not (path / "cookiecutter.json").is_file():
        known = sorted(p.parent.name for p in (root / "blueprints").glob("*/template"))
        raise UserError(f"blueprint '{blueprint}' has no scaffolding template",
                        f"blueprints with one: {', '.join(known) or 'none'}")
    return path


def read_answers(path: Path) -> dict[str, Any]:
    """Answers as YAML or JSON; values override the template's defaults."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise UserError(f"{path}: cannot read answers: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: answers must be a mapping of question -> answer")
    return {str(k): v for k, v in data.items()}


def _int(answers: dict[str, Any], key: str) -> int:
    try:
        return int(answers.get(key, 0))
    except (TypeError, ValueError):
        raise UserError(f"answer {key}: '{answers[key]}' is not a whole number") from None


def plan_nodes(blueprint: str, answers: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """(nodes with name/role/ip, gateway) from the answers; refuses a subnet too small."""
    try:
        subnet = IPv4Network(str(answers.get("subnet")))
    except ValueError:
        raise UserError(f"answer subnet: '{answers.get('subnet')}' is not an IPv4 CIDR",
                        "write it like 192.168.20.0/24") from None
    hosts = list(subnet.hosts())
    gateway = str(answers.get("gateway") or (hosts[0] if hosts else ""))
    names = list(LEADING_NODES.get(blueprint, []))
    names += [(f"master{i}", "master") for i in range(_int(answers, "masters"))]
    names += [(f"worker{i}", "worker") for i in range(_int(answers, "workers"))]
    if blueprint == "kolla-aio":
        names = [("aio", "master")]
    first = _int(answers, "first_host") or 10
    free = [h for h in hosts[first - 1:] if str(h) != gateway]
    if len(free) < len(names):
        raise UserError(f"subnet {subnet} has {len(free)} free address(es) from host "
                        f"{first} on, but {len(names)} nodes need one each",
                        "use a larger subnet, a lower first_host, or fewer nodes")
    nodes = [{"name": n, "role": r, "ip": str(ip)} for (n, r), ip in zip(names, free,
                                                                           strict=False)]
    return nodes, gateway


def _vip(values: dict[str, Any], nodes: list[dict[str, str]]) -> str:
    """kolla's internal VIP: host number `internal_vip_host` of the subnet, if asked for."""
    if "internal_vip_host" not in values:
        return ""
    hosts = list(IPv4Network(str(values["subnet"])).hosts())
    number = _int(values, "internal_vip_host")
    if not 1 <= number <= len(hosts):
        raise UserError(f"answer internal_vip_host: {number} is outside the subnet's "
                        f"{len(hosts)} host addresses")
    vip = str(hosts[number - 1])
    if any(n["ip"] == vip for n in nodes):
        raise UserError(f"answer internal_vip_host: {vip} is already a node's address",
                        "pick a host number no node uses")
    return vip


def scaffold(root: Path, env_name: str, blueprint: str, answers: dict[str, Any] | None,
             no_input: bool) -> Path:
    """Create environments/<env_name>; nothing is left behind if any step fails."""
    from cookiecutter.generate import generate_context, generate_files
    from cookiecutter.prompt import prompt_for_config

    target = root / "environments" / env_name
    if target.exists():
        raise UserError(f"environments/{env_name} already exists", "pick another name")
    template = template_dir(root, blueprint)
    extra = {**(answers or {}), "env_name": env_name}
    context = generate_context(context_file=str(template / "cookiecutter.json"),
                               extra_context=extra)
    values = prompt_for_config(context, no_input=no_input or answers is not None)
    values["env_name"] = env_name
    nodes, gateway = plan_nodes(blueprint, values)
    context["cookiecutter"] = {**values, "_nodes": nodes, "_gateway": gateway,
                               "_vip": _vip(values, nodes)}
    return _generate_and_move(root, template, context, env_name, generate_files)


def _generate_and_move(root: Path, template: Path, context: dict[str, Any], env_name: str,
                       generate_files: Any) -> Path:
    from generator.environment import load_environment

    (root / "environments").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".gen-new-", dir=root))
    try:
        (scratch / "environments").mkdir()
        (scratch / "blueprints").symlink_to(root / "blueprints")
        generate_files(repo_dir=str(template), context=context,
                       output_dir=str(scratch / "environments"))
        load_environment(str(scratch / "environments" / env_name))
        target = root / "environments" / env_name
        (scratch / "environments" / env_name).rename(target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

