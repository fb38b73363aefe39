"""`gen new`: scaffold an environment from a blueprint's cookiecutter template.

gen asks the template's questions itself (or reads --answers / takes the defaults), checks
every answer against schemas/answers.schema.json and lays out the nodes (names, roles,
addresses) before anything is written. Answers are plain values: cookiecutter only inserts
them into the template, never evaluates them as templates, and runs no hooks. The result is
validated as a whole and only then moved into environments/<name>.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from generator.confine import NAME_FIX, name_problem
from generator.errors import UserError
from generator.resources import schema_file

TEMPLATE_CONTEXT = "cookiecutter.json"
TEMPLATE_ANSWERS = "answers.schema.json"  # optional rules for a template's own questions

# Per shape: the fixed nodes that come before masters and workers, as (name, role).
LEADING_NODES = {
    "openshift-upi": [("helper", "helper"), ("bootstrap", "bootstrap")],
    "kubeadm": [("storage", "storage")],
    "kolla-aio": [],
}


def template_dir(root: Path, blueprint: str) -> Path:
    """The template of the repo's blueprints/BLUEPRINT, else of the built-in one."""
    from generator.environment import known_blueprints, resolve_blueprint

    found = resolve_blueprint(root, blueprint)
    if found is None:
        raise UserError(f"unknown blueprint '{blueprint}'",
                        f"known blueprints: {', '.join(known_blueprints(root)) or 'none'}")
    path = found[0] / "template"
    if not (path / TEMPLATE_CONTEXT).is_file():
        with_one = [name for name in known_blueprints(root)
                    if (found_other := resolve_blueprint(root, name)) is not None
                    and (found_other[0] / "template" / TEMPLATE_CONTEXT).is_file()]
        raise UserError(f"blueprint '{blueprint}' ({found[1]}) has no scaffolding template",
                        f"blueprints with one: {', '.join(with_one) or 'none'}")
    return path


def questions(template: Path) -> dict[str, Any]:
    """The template's questions and their defaults, in its order (keys with '_' are
    cookiecutter's own settings, not questions)."""
    try:
        data = json.loads((template / TEMPLATE_CONTEXT).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{template / TEMPLATE_CONTEXT}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{template / TEMPLATE_CONTEXT}: must be a JSON object")
    return {k: v for k, v in data.items() if not k.startswith("_")}


# The one cookiecutter setting a template may use: files copied without rendering (such
# as shipped JSON). Others (`_extensions` loads Python modules) are not passed on.
PASSED_SETTINGS = ("_copy_without_render",)


def _template_settings(template: Path) -> dict[str, Any]:
    data = json.loads((template / TEMPLATE_CONTEXT).read_text(encoding="utf-8"))
    return {k: data[k] for k in PASSED_SETTINGS if k in data}


def prompts(template: Path) -> dict[str, str]:
    data = json.loads((template / TEMPLATE_CONTEXT).read_text(encoding="utf-8"))
    found = data.get("__prompts__", {})
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


@functools.cache
def _answers_validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_file("answers.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def answer_rules(template: Path) -> dict[str, Any]:
    """Question -> JSON Schema rule: gen's own (schemas/answers.schema.json), plus the
    `properties` of an `answers.schema.json` beside a template that asks more."""
    rules = dict(_answers_validator().schema["properties"])
    extra = template / TEMPLATE_ANSWERS
    if extra.is_file():
        try:
            rules.update(json.loads(extra.read_text(encoding="utf-8"))["properties"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{extra}: cannot read its properties: {exc}") from None
    return rules


def answer_problems(values: dict[str, Any], asked: dict[str, Any],
                    rules: dict[str, Any] | None = None) -> list[str]:
    """One line per bad answer: unknown question, control character, or what the schema
    refuses (with its hint)."""
    problems = []
    for key in values:
        if key not in asked:
            problems.append(f"answer {key}: not a question of this template "
                            f"(known: {', '.join(sorted(k for k in asked if k != 'env_name'))})")
    validator = _answers_validator()
    properties = rules if rules is not None else validator.schema["properties"]
    for key, value in values.items():
        if key not in asked:
            continue
        if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
            problems.append(f"answer {key}: {value!r} contains a control character "
                            "(write it on one line)")
            continue
        rule = properties.get(key)
        if rule is None:
            problems.append(f"answer {key}: no rule checks this question (give it one in "
                            f"the template's {TEMPLATE_ANSWERS}, under properties)")
        elif not validator.evolve(schema={**rule, "$schema": validator.schema["$schema"]}
                                  ).is_valid(value):
            message = rule.get("x-message", "is not allowed here")
            hint = f" ({rule['x-hint']})" if rule.get("x-hint") else ""
            problems.append(f"answer {key}: {value!r} {message}{hint}")
    return problems


def collect_answers(template: Path, env_name: str, answers: dict[str, Any] | None,
                    no_input: bool) -> dict[str, Any]:
    """Defaults, overlaid by --answers, or asked one by one; every value checked."""
    asked = questions(template)
    rules = answer_rules(template)
    values: dict[str, Any] = {k: (v[0] if isinstance(v, list) and v else v)
                              for k, v in asked.items()}
    if answers is not None:
        problems = answer_problems(answers, asked, rules)
        if problems:
            raise UserError("\n".join(problems))
        values.update(answers)
    elif not no_input:
        values.update(_ask(template, asked, values))
    values["env_name"] = env_name
    problems = answer_problems(values, asked, rules)
    if problems:
        raise UserError("\n".join(problems))
    return values


def _ask(template: Path, asked: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Prompt at the terminal; typed answers keep the default's type (whole numbers)."""
    import click

    labels = prompts(template)
    given: dict[str, Any] = {}
    for key, default in asked.items():
        if key == "env_name":
            continue
        label = labels.get(key, key)
        if isinstance(default, list):
            given[key] = click.prompt(label, type=click.Choice([str(c) for c in default]),
                                      default=str(default[0]))
        else:
            kind = int if isinstance(defaults[key], int) else str
            given[key] = click.prompt(label, type=kind, default=defaults[key],
                                      show_default=True)
    return given


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
    problem = name_problem(env_name)
    if problem:
        raise UserError(f"environment {problem}", NAME_FIX)
    target = root / "environments" / env_name
    if target.exists() or target.is_symlink():
        raise UserError(f"environments/{env_name} already exists", "pick another name")
    template = template_dir(root, blueprint)
    values = collect_answers(template, env_name, answers, no_input)
    nodes, gateway = plan_nodes(blueprint, values)
    context = {"cookiecutter": {**values, **_template_settings(template), "_nodes": nodes,
                                "_gateway": gateway, "_vip": _vip(values, nodes)}}
    return _generate_and_move(root, template, context, env_name)


def _generate_sandboxed(template: Path, context: dict[str, Any], scratch: Path) -> None:
    """Render the template with Jinja's immutable sandbox: template files come from the repo
    (a pull request can edit them), and plain Jinja reaches Python's internals through
    attributes such as `__globals__`, which the sandbox refuses."""
    import cookiecutter.generate as cc_generate
    from cookiecutter.environment import ExtensionLoaderMixin
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class SandboxedStrictEnvironment(ExtensionLoaderMixin,  # type: ignore[misc]
                                     ImmutableSandboxedEnvironment):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(undefined=StrictUndefined, **kwargs)

    def sandboxed_env(ctx: dict[str, Any]) -> SandboxedStrictEnvironment:
        return SandboxedStrictEnvironment(context=ctx, keep_trailing_newline=True)

    # cookiecutter builds its Jinja environment inside generate_files and offers no
    # parameter for it: swap its factory for the duration of this one call.
    original = cc_generate.create_env_with_context
    cc_generate.create_env_with_context = sandboxed_env
    try:
        cc_generate.generate_files(repo_dir=str(template), context=context,
                                   output_dir=str(scratch), accept_hooks=False)
    except (SecurityError, OverflowError) as exc:  # OverflowError: the sandbox's range()
        raise UserError(f"{template}: the template does something gen's sandbox refuses: "
                        f"{exc}", "templates may only insert cookiecutter.NAME values") from None
    except TemplateError as exc:  # an include of a file outside the template, bad syntax
        first = str(exc.message or type(exc).__name__).splitlines()[0][:200]
        raise UserError(f"{template}: the template cannot be rendered: {first!r}",
                        "templates may only insert cookiecutter.NAME values") from None
    finally:
        cc_generate.create_env_with_context = original


# The sandbox stops Python's internals, not work: `'x' * 10**10`, `|center(10**9)` or a
# long loop in a template from a pull request would exhaust memory or never end. The
# template is rendered in a forked child with an address-space and a CPU-time limit.
TEMPLATE_MEMORY = 2 << 30
TEMPLATE_SECONDS = 10


def _generate_bounded(template: Path, context: dict[str, Any], scratch: Path) -> None:
    import os
    import resource
    import signal

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: render, report one JSON line, never return into gen
        os.close(read_end)
        code, report = 0, {}
        try:
            resource.setrlimit(resource.RLIMIT_AS, (TEMPLATE_MEMORY, TEMPLATE_MEMORY))
            resource.setrlimit(resource.RLIMIT_CPU, (TEMPLATE_SECONDS, TEMPLATE_SECONDS + 5))
            _generate_sandboxed(template, context, scratch)
        except UserError as exc:
            code, report = 1, {"message": "\n".join(exc.lines())}
        except MemoryError:
            code, report = 1, {"message": f"{template}: the template needs more than "
                               f"{TEMPLATE_MEMORY >> 30} GiB of memory to render",
                               "hint": "templates may only insert cookiecutter.NAME values"}
        except BaseException as exc:  # noqa: BLE001 - reported by the parent as exit 70
            code, report = 70, {"message": f"{type(exc).__name__}: {exc}"[:500]}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    report = json.loads(raw or b"{}")
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        raise UserError(f"{template}: the template takes more than {TEMPLATE_SECONDS} s of "
                        "CPU to render", "templates may only insert cookiecutter.NAME values")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
        raise UserError(report["message"], report.get("hint", ""))
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise RuntimeError(report.get("message", f"template rendering ended with {status}"))


def _generate_and_move(root: Path, template: Path, context: dict[str, Any],
                       env_name: str) -> Path:
    from generator.environment import load_environment_dir
    from generator.loader import ENV_FILE

    (root / "environments").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".gen-new-", dir=root))
    try:
        # No hooks: a template's pre/post-generate scripts would be code from the repo.
        _generate_bounded(template, context, scratch)
        made = scratch / env_name
        target = root / "environments" / env_name
        load_environment_dir(target, (made / ENV_FILE).read_text(encoding="utf-8"))
        made.rename(target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

