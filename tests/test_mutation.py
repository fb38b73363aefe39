"""A bounded random-mutation run over the reference labs' env.yaml (issue 14).

Each case applies 1-3 random mutations to lab A's or lab B's document (type swaps, hostile
strings with newlines, quotes, semicolons, `..` and secret markers, huge integers, deep
nesting, deleted keys, raw hostile YAML text), then runs gen's front half in-process the way
`gen validate` does (`load_environment` with the candidate text) and, when that passes,
every renderer. It must hold that:

- nothing is an internal error: only `GenError`s with exit code 1 and one-line messages
  (`FILE:LINE:COL: at PATH: message`), never another exception (exit 70) or a traceback;
- nothing hangs (a per-case alarm);
- a valid environment renders (validate passing and render failing is a bug: the semantic
  checks must catch it first), and every rendered path stays inside the output: relative,
  no `..`, no control characters; every 20th valid case is also written by the real
  `gen render --out` and nothing outside its output directory changes.

Two runs: a fixed seed (the same cases every time) and one seeded by today's date (new cases
every day, reproducible from the seed printed with a failure: GEN_MUTATION_SEED=<seed>).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import os
import random
import shutil
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.cli import main
from generator.environment import load_environment
from generator.errors import GenError
from generator.families import Pins, render_all

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("lab", "k8s-lab")
FIXED_SEED = 14_2026
CASES = {"fixed": 1500, "daily": 1000}
SECONDS_PER_CASE = 10

HOSTILE = ["worker1\n", "a\nb", "x\r\n", '"; version "X"; //', "'; DROP", "a;b", "$(touch /x)",
           "`id`", "../../../../etc/passwd", "..", ".", "/", "a/../b", "/dev/zero",
           "@@gen-secret:pullSecret@@", "@@gen-secret:sshAuthorizedKeys[0]@@",
           "qemu+ext:///system?command=/tmp/x", "qemu:///system?socket=/tmp/s",
           "pxelinux.0\ndhcp-script=/tmp/pwn.sh", "{{ 7*7 }}", "${HOME}", "%s%n", "\t",
           "\x00", "\x1b[31m", "\u202e", "ünïcode", "x" * 300, "y" * 5000, " lead", "trail ",
           "192.168.20.162\n", "0.0.0.0", "255.255.255.255", "00:00:00:00:00:00",
           "ff:ff:ff:ff:ff:ff", "1GiB", "0MiB", "99999999TiB", "*", "*.apps", "-", "",
           "lan", "hv1", "master0", "worker0", "helper", "test-storage1", "br0", "ens3"]
NUMBERS = [0, -1, 1, 2, 3, 5, 63, 64, 4094, 4095, 65535, 65536, 2**31, 2**63, 10**12, 10**30,
           -(10**30), 1.5, 4.0, float("inf"), float("nan"), True, False, None]
# Values valid somewhere, so that mutations also reach the semantic checks and renderers.
PLAUSIBLE = ["192.168.20.5", "192.168.20.0", "192.168.111.50", "192.168.111.255", "lan", "hv1",
             "16GiB", "8GiB", "uefi", "bios", "image", "pxe", "worker", "master", "storage",
             "helper", "bootstrap", "lb", "ens4", "br1", "/srv/x", "kea", "dnsmasq", "isc", "bind",
             "nat", "okd", "kubeadm", 8, 2, 1, 30080, 443, "52:54:00:00:00:09", True, False,
             {"network": "lan"}, {"env": "X"}, [], {}]
RAW_LINES = ["x: &a [*a]", "[" * 200, "- " * 100 + "x", "a: *undefined", "---", "\t- x",
             "k: !!binary aGVsbG8=", "k: !!python/object:os.system [id]", "? [a, b]\n: c",
             "k: 'unterminated", "k: {a: 1, a: 2}", "%YAML 1.1", "k: @x", "<<: {a: 1}"]


def _paths(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, path + (index,))


def _nested(depth: int, leaf: Any, rng: random.Random) -> Any:
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {"k": leaf}
    return leaf


def _value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(PLAUSIBLE)
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(HOSTILE)
    if kind < 0.75:
        return rng.choice(NUMBERS)
    if kind < 0.85:
        return _nested(rng.choice([1, 2, 5, 40, 70]), rng.choice(HOSTILE), rng)
    if kind < 0.95:
        return {rng.choice(HOSTILE): rng.choice(HOSTILE)}
    return [rng.choice(HOSTILE) for _ in range(rng.randint(0, 4))]


def _text(rng: random.Random) -> str:
    plain = [v for v in PLAUSIBLE if isinstance(v, str)]
    return rng.choice(plain) if rng.random() < 0.5 else rng.choice(HOSTILE)


# Optional fields the reference labs leave out, so that mutations also reach the renderers
# that read them: (path, value maker). A path through a list picks its first item.
OPTIONAL: list[tuple[tuple[Any, ...], Any]] = [
    (("services", "dns", "records"), lambda rng: [
        {"name": rng.choice(["t", "*.x", "_s._tcp", "a-b", "*", _text(rng)]),
         "type": rng.choice(["A", "CNAME", "TXT", "SRV"]),
         "value": rng.choice(["192.168.20.9", "helper", "x.", "0 10 80 helper", "v=spf1 -all",
                              '"a" "b"', "a,b#c", _text(rng)])}]),
    (("services", "dns", "ttl"), lambda rng: rng.choice(NUMBERS)),
    (("services", "dns", "directory"), _text),
    (("services", "dns", "provider"), lambda rng: rng.choice(["bind", "dnsmasq", _text(rng)])),
    (("services", "dhcp", "provider"), lambda rng: rng.choice(["isc", "kea", "dnsmasq"])),
    (("services", "dhcp", "bootFiles", "bios"), _text),
    (("services", "dhcp", "bootFiles", "uefi"), _text),
    (("services", "dhcp", "pool"), lambda rng: {"start": rng.choice(PLAUSIBLE[:4]),
                                                "end": rng.choice(PLAUSIBLE[:4])}),
    (("services", "pxe", "kernelArgs"), lambda rng: [rng.choice(["quiet", "console=ttyS1",
                                                                 "ip=dhcp", _text(rng)])]),
    (("services", "pxe", "installDev"), _text),
    (("services", "pxe", "interface"), _text),
    (("services", "pxe", "ipMode"), lambda rng: rng.choice(["dhcp", "static"])),
    (("services", "haproxy", "balance"), lambda rng: rng.choice(["source", _text(rng)])),
    (("nodes", 0, "installDev"), _text),
    (("nodes", 0, "firmware"), lambda rng: rng.choice(["uefi", "bios"])),
    (("nodes", 0, "nics", 0, "interface"), _text),
    (("nodes", 0, "nics", 0, "mac"), lambda rng: rng.choice(["52:54:00:12:34:56", _text(rng)])),
    (("nodes", 0, "disks"), lambda rng: [{"name": "root", "size": "20GiB",
                                          "backingImage": _text(rng)}]),
    (("networks", 0, "range"), lambda rng: {"start": rng.choice(PLAUSIBLE[:4]),
                                            "end": rng.choice(PLAUSIBLE[:4])}),
    (("networks", 0, "vlan"), lambda rng: rng.choice(NUMBERS)),
    (("hypervisors", 0, "uri"), lambda rng: rng.choice([
        "qemu+ssh://root@hv1/system?keyfile=/k", "test:///default", _text(rng)])),
    (("metadata", "description"), _text),
    (("secrets",), lambda rng: {rng.choice(["token", _text(rng)]): {"env": "X"}}),
]


def _insert(data: dict[str, Any], rng: random.Random) -> None:
    path, make = rng.choice(OPTIONAL)
    holder: Any = data
    for part in path[:-1]:
        if isinstance(part, int):
            if not isinstance(holder, list) or not holder:
                return
            holder = holder[part]
        else:
            if not isinstance(holder, dict):
                return
            holder = holder.setdefault(part, {})
    if isinstance(holder, dict):
        holder[path[-1]] = make(rng)


def _mutate(data: Any, rng: random.Random) -> None:
    if rng.random() < 0.35:
        _insert(data, rng)
        return
    paths = list(_paths(data))
    path = rng.choice(paths)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last, op = path[-1], rng.random()
    if op < 0.15:
        del parent[last]
    elif op < 0.25 and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))  # a duplicate node, NIC, record...
    elif op < 0.35:
        other = rng.choice(paths)
        holder = data
        for part in other[:-1]:
            holder = holder[part]
        with contextlib.suppress(KeyError, IndexError, TypeError):
            parent[last] = copy.deepcopy(holder[other[-1]])  # a value from elsewhere
    elif op < 0.45 and isinstance(parent[last], str):
        parent[last] = parent[last] + rng.choice(HOSTILE)  # valid prefix, hostile tail
    else:
        parent[last] = _value(rng)


def mutated_text(base: dict[str, Any], rng: random.Random) -> str:
    data = copy.deepcopy(base)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        _mutate(data, rng)
    text = yaml.dump(data, Dumper=yaml.CSafeDumper, default_flow_style=False,
                     allow_unicode=True, width=10**6)
    if rng.random() < 0.1:  # raw YAML that no data structure dumps to
        lines = text.splitlines()
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(RAW_LINES))
        text = "\n".join(lines) + "\n"
    return text


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expire(*_: Any) -> None:
        raise TimeoutError(f"a case took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check_lines(lines: list[str], env: str) -> None:
    assert lines, "an error without a message"
    for line in lines:
        assert line and "\n" not in line and line.strip() == line, repr(line)
        assert "Traceback" not in line
        assert line.startswith((f"environments/{env}/", "blueprints/", "warning: ")), line


def _check_tree(paths: list[str]) -> None:
    for path in paths:
        parts = path.split("/")
        assert not path.startswith("/") and ".." not in parts and "" not in parts, path
        assert all(c.isprintable() for c in path), repr(path)


def _write_render(repo: Path, env: str, text: str, index: int) -> None:
    """The real `gen render --out` in-process; nothing outside the output may change."""
    (repo / "environments" / env / "env.yaml").write_text(text)
    before = {p: p.stat().st_mtime_ns for p in repo.rglob("*") if "out-" not in p.as_posix()}
    out = repo / f"out-{index}"
    err, cwd = io.StringIO(), Path.cwd()
    os.chdir(repo)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["render", f"env/{env}", "--out", str(out)])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
    assert code == 0, err.getvalue()
    after = {p: p.stat().st_mtime_ns for p in repo.rglob("*") if "out-" not in p.as_posix()}
    changed = {p for p in after if before.get(p) != after[p]} | (before.keys() - after.keys())
    assert not changed, f"gen render --out {out} changed {sorted(map(str, changed))}"
    shutil.rmtree(out)


def run_case(repo: Path, env: str, text: str, index: int, write: bool = False) -> str:
    """'invalid' or 'valid'; raises AssertionError (or anything else) on a finding."""
    with deadline(SECONDS_PER_CASE):
        try:
            loaded = load_environment(f"env/{env}", cwd=repo, env_text=text)
        except GenError as exc:
            assert exc.exit_code == 1, f"exit {exc.exit_code}: {exc.lines()}"
            _check_lines(exc.lines(), env)
            return "invalid"
        try:
            tree = render_all(loaded.model, Pins())
        except GenError as exc:
            raise AssertionError(f"validate passed, render failed: {exc.lines()}") from exc
        _check_tree(list(tree))
        if write:
            _write_render(repo, env, text, index)
    return "valid"


def seeds() -> dict[str, int]:
    daily = int(os.environ.get("GEN_MUTATION_SEED") or datetime.date.today().strftime("%Y%m%d"))
    return {"fixed": FIXED_SEED, "daily": daily}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mutation")
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, root / name)
    (root / "lock").mkdir()
    return root


@pytest.fixture()
def blueprints_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed only: the blueprints never change during a run, so each is read and checked
    once, not once per case (the environment, the part mutated, goes the whole way)."""
    import generator.environment as environment

    read, check = environment.read_yaml_file, environment.schema_problems
    documents: dict[tuple[Path, str], Any] = {}
    checked: dict[int, Any] = {}

    def read_once(path: Path, display: str, *within: Any) -> Any:
        if path.name != "blueprint.yaml":
            return read(path, display, *within)
        if (path, display) not in documents:
            documents[(path, display)] = read(path, display, *within)
        return documents[(path, display)]

    def check_once(doc: Any) -> Any:
        if doc.data.get("kind") != "Blueprint":
            return check(doc)
        if id(doc) not in checked:
            checked[id(doc)] = check(doc)
        return checked[id(doc)]

    monkeypatch.setattr(environment, "read_yaml_file", read_once)
    monkeypatch.setattr(environment, "schema_problems", check_once)


@pytest.mark.usefixtures("blueprints_read_once")
@pytest.mark.parametrize("run", list(CASES))
def test_mutations_fail_cleanly_or_render(scratch: Path, run: str) -> None:
    seed = seeds()[run]
    rng = random.Random(seed)
    bases = {env: yaml.load((ROOT / "environments" / env / "env.yaml").read_text(),
                            Loader=yaml.CSafeLoader) for env in ENVS}
    outcomes = {"valid": 0, "invalid": 0}
    for index in range(CASES[run]):
        env = ENVS[index % len(ENVS)]
        text = mutated_text(bases[env], rng)
        try:
            # every 20th valid case is also written by the real `gen render --out`
            outcomes[run_case(scratch, env, text, index,
                              write=outcomes["valid"] % 20 == 0)] += 1
        except BaseException as exc:  # noqa: BLE001 - every finding is reported with its seed
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"seed {seed} ({run}), case {index}, environments/{env}/env.yaml:\n"
                        f"{text[:3000]}\n{''.join(traceback.format_exception(exc))[-3000:]}\n"
                        f"reproduce: GEN_MUTATION_SEED={seed} pytest tests/test_mutation.py "
                        "-k daily", pytrace=False)
    # Mutations must reach the renderers, not only the schema.
    assert outcomes["valid"] >= CASES[run] // 40, outcomes
