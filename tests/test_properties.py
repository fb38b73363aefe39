"""Property: any mutation of a built-in environment either renders or fails cleanly at validate.

The built-in environments are the repo's labs (environments/lab, environments/k8s-lab) and
the one `gen new` scaffolds from the kolla-aio blueprint. Hypothesis picks one, replaces,
deletes and retypes values at random paths (1-3 mutations per example, seeded and bounded),
writes the result into a scratch repo, and runs the real CLI entry point
(`generator.cli.main`) in-process for speed. A clean failure is `gen validate` exiting 1
with one-line messages; exit 70 (an internal error) or a traceback fails the test. When
`gen validate` exits 0, `gen render` must exit 0 too: any later refusal (exit 1, by a
renderer or the writer) or internal error (exit 70) fails the test, since validate runs
exactly what render can refuse.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from generator.cli import main

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / "environments" / "lab" / "env.yaml"
BASE: dict[str, Any] = YAML(typ="safe", pure=True).load(ENV_FILE.read_text())
# The repo's labs, and `kolla` that the scratch fixture scaffolds with `gen new`.
ENVS = ("lab", "k8s-lab", "kolla")

# Values that are valid somewhere in the document, so mutations reach the semantic checks
# and the renderers, not only the schema.
INTERESTING = ["../x", "a/b", "", ".", "lan", "hv1", "master0", "helper", "worker",
               "bootstrap", "192.168.20.5", "192.168.20.0", "192.168.20.255", "10.0.0.0/8",
               "192.168.20.0/24", "52:54:00:00:00:01", "01:00:5e:00:00:01", "1GiB", "0MiB",
               "uefi", "bios", "pxe", "image", "kubeadm", "okd", "openshift", "nat",
               "isolated", "bind", "dnsmasq", "kea", "isc", "x" * 70, "ünïcode", "a b",
               {"env": "X"}, {"file": "/x"}, {"network": "lan"}, 0, -1, 1, 3, 4096, 2**63]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(INTERESTING))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def all_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            paths += all_paths(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            paths += all_paths(value, path + (index,))
    return paths


def mutate(data: Any, path: tuple[Any, ...], op: str, value: Any) -> None:
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "wrap":
        parent[last] = [parent[last]]
    elif op == "stringify":
        parent[last] = str(parent[last])
    else:
        parent[last] = value


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    import copy

    for part in path:
        data = data[part]
    return copy.deepcopy(data)


@st.composite
def mutated_documents(draw: st.DrawFn, base: Any = None) -> Any:
    import copy

    data = copy.deepcopy(BASE if base is None else base)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = all_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        # "borrow" puts another field's value here (a node name where a host goes, one
        # address where another goes): often schema-valid, so it reaches the semantic
        # rules, the family checks and the renderers more often than random values do.
        op = draw(st.sampled_from(["replace", "delete", "delete", "borrow", "borrow", "wrap",
                                   "stringify"]))
        value = (draw(VALUES) if op == "replace" else
                 _value_at(data, draw(st.sampled_from(paths))) if op == "borrow" else None)
        mutate(data, path, "replace" if op == "borrow" else op, value)
    return data


def dump(data: Any) -> str:
    stream = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, stream)
    return stream.getvalue()


def run_cli(repo: Path, argv: list[str]) -> tuple[int, str]:
    """`gen ARGV` in-process from `repo`; returns (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    os.chdir(repo)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            else:
                code = 0
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("props")
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, root / name)
    code, err = run_cli(root, ["new", "kolla", "--blueprint", "kolla-aio", "--no-input",
                               "--no-lock"])
    assert code == 0, err
    return root


def base_of(repo: Path, env: str) -> Any:
    """The built-in environment's env.yaml as written (saved before any mutation)."""
    saved = repo / f"{env}.base.yaml"
    if not saved.exists():
        shutil.copyfile(repo / "environments" / env / "env.yaml", saved)
    return YAML(typ="safe", pure=True).load(saved.read_text())


def traceback_of(repo: Path, argv: list[str]) -> str:
    """Re-run with GEN_DEBUG=1 so a failure shows where the internal error came from."""
    import traceback

    os.environ["GEN_DEBUG"] = "1"
    try:
        run_cli(repo, argv)
    except Exception:  # noqa: BLE001 - we want exactly the traceback gen hid
        return traceback.format_exc()
    finally:
        os.environ.pop("GEN_DEBUG", None)
    return ""


def check_clean(repo: Path, text: str, env: str = "lab") -> int:
    """`gen validate` through the real entry point; when it exits 0, `gen render` must too."""
    (repo / "environments" / env / "env.yaml").write_text(text)
    os.environ.pop("GEN_DEBUG", None)
    validate = ["validate", f"env/{env}"]
    code, err = run_cli(repo, validate)
    assert code in (0, 1), (f"validate exit {code} for {env}/env.yaml:\n{text}\n{err}\n"
                            f"{traceback_of(repo, validate)}")
    assert "Traceback" not in err, err
    if code == 1:
        lines = err.splitlines()
        assert lines, "exit 1 without a message"
        for line in lines:
            assert line.strip() == line and line, f"malformed message line {line!r}"
            assert line.startswith(("environments/", "blueprints/", "warning: ")), line
        return code
    # Valid: the real `gen render`, writer included, must succeed. Any refusal now (exit 1)
    # is one validate missed, and exit 70 a crash; both are bugs.
    render = ["render", f"env/{env}", "--out", str(repo / "out" / env)]
    code, err = run_cli(repo, render)
    assert code == 0, (f"validate exited 0 but render exited {code} for {env}/env.yaml:\n"
                       f"{text}\n{err}\n{traceback_of(repo, render) if code == 70 else ''}")
    return 0


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_mutated_environment_renders_or_fails_cleanly(scratch: Path, data: st.DataObject,
                                                      ) -> None:
    env = data.draw(st.sampled_from(ENVS), label="environment")
    base = base_of(scratch, env)
    try:
        code = check_clean(scratch, dump(data.draw(mutated_documents(base))), env)
    finally:  # the other tests of this module find the environment as shipped
        shutil.copyfile(scratch / f"{env}.base.yaml", scratch / "environments" / env / "env.yaml")
    event(f"{env}: validate exit {code}")  # --hypothesis-show-statistics: how many rendered


@pytest.mark.parametrize("env", ENVS)
def test_unmutated_base_renders(scratch: Path, env: str) -> None:
    """Each dumped base document is valid and renders, so the property above really
    exercises rendering for every built-in environment."""
    base = base_of(scratch, env)
    (scratch / "environments" / env / "env.yaml").write_text(dump(base))
    code, err = run_cli(scratch, ["validate", f"env/{env}"])
    assert code == 0, err
    out = scratch / "base-out" / env
    code, err = run_cli(scratch, ["render", f"env/{env}", "--out", str(out)])
    assert code == 0, err
    assert any(out.rglob("*.xml"))


def test_late_refusal_fails_the_property(scratch: Path) -> None:
    """The property can fail: an environment validate accepts but render refuses (here, an
    output directory holding files gen did not write) is reported, not passed."""
    (scratch / "environments" / "lab" / "env.yaml").write_text(ENV_FILE.read_text())
    out = scratch / "out" / "lab"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("not gen's")
    try:
        with pytest.raises(AssertionError, match="validate exited 0 but render exited 1"):
            check_clean(scratch, ENV_FILE.read_text())
    finally:
        shutil.rmtree(out)


def test_unreadable_blueprint_is_a_clean_error(scratch: Path) -> None:
    """A blueprint that is not UTF-8 is a one-line user error, not an internal one."""
    broken = scratch / "blueprints" / "openshift-upi" / "blueprint.yaml"
    saved = broken.read_bytes()
    broken.write_bytes(b"\xff\xfe not utf-8")
    try:
        code, err = run_cli(scratch, ["validate", "env/lab"])
    finally:
        broken.write_bytes(saved)
    assert code == 1 and "cannot read" in err and "Traceback" not in err


def _merged_lab(data: Any) -> Any:
    from generator.loader import Document, apply_role_defaults, deep_merge, read_yaml_file

    blueprint = read_yaml_file(ROOT / "blueprints" / "openshift-upi" / "blueprint.yaml", "bp")
    defaults = Document(blueprint.data["defaults"], {}, blueprint.files)
    doc = deep_merge(defaults, Document(data, {}, ("env.yaml",)))
    apply_role_defaults(doc)
    return doc


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_documents())
def test_compiled_fast_path_never_accepts_what_jsonschema_rejects(data: Any) -> None:
    """Large documents are first checked by a compiled validator (schema._quickly_valid);
    it may be stricter than jsonschema, never more lenient."""
    from generator import schema

    doc = _merged_lab(data)
    explained = schema._validator().is_valid(doc.data)
    fast = schema._quickly_valid(doc)
    assert explained or not fast, f"fast path accepts an invalid document: {doc.data}"


def test_whole_number_floats_are_not_integers() -> None:
    """`vcpu: 4.0` would render `<vcpu>4.0</vcpu>`: the schema rejects it."""
    from generator import schema
    from generator.loader import load_yaml

    text = ENV_FILE.read_text().replace("{name: master0, role: master,",
                                        "{name: master0, role: master, vcpu: 4.0,")
    doc = _merged_lab(load_yaml(text, "env.yaml").data)
    messages = [p.message for p in schema.schema_problems(doc)]
    assert messages == ["expected an integer, got 4.0"]
