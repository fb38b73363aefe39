"""Secrets never reach a rendered file, a lock, or anything gen prints (issue 4, item 6).

Both reference labs are rendered from a scratch copy of the repo in which every secret
reference (`{env: NAME}` / `{file: PATH}`, wherever it sits in env.yaml or the blueprint)
points at a recognisable value: the env vars are set and the files exist. Then every byte
gen produces is searched for those values, raw and in the encodings a renderer might use
(base64, percent-encoding for data URLs, JSON escaping). Rendering goes through
`generator.pipeline.render_environment` and the real CLI, so every registered family of
both labs is covered, including families added later.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ruamel.yaml import YAML

from generator.pipeline import render_environment

ENVIRONMENTS = ("lab", "k8s-lab")
TOKEN = "GENLEAK{:02d}Qz9"  # no renderer would ever produce this by itself


@dataclass
class Planted:
    """The secret values behind the scratch repo's references, and where they live."""

    values: dict[str, str] = field(default_factory=dict)  # reference -> value
    env: dict[str, str] = field(default_factory=dict)  # env var -> value
    files: set[Path] = field(default_factory=set)

    def add(self, ref: str, kind: str) -> str:
        token = TOKEN.format(len(self.values))
        value = (f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{token} leak@test\n"
                 if kind == "file" else
                 json.dumps({"auths": {"quay.io": {"auth": f"{token}c2VjcmV0"}}}))
        self.values[ref] = value
        return value


# `{file: NAME}` under these keys names an input shipped in the repo, not a secret
NOT_SECRETS = ("stream", "checksums")


def secret_refs(value: Any) -> Iterator[tuple[str, str]]:
    """Every (`env`|`file`, reference) mapping in a loaded YAML document."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("env", "file"):
            kind, ref = next(iter(value.items()))
            if isinstance(ref, str):
                yield kind, ref
                return
        for key, child in value.items():
            if key not in NOT_SECRETS:
                yield from secret_refs(child)
    elif isinstance(value, list):
        for child in value:
            yield from secret_refs(child)


def plant_secrets(repo: Path, home: Path) -> Planted:
    """Give every secret reference of both labs a value (env var or file in tmp dirs)."""
    planted = Planted()
    yaml = YAML(typ="safe", pure=True)
    for name in ENVIRONMENTS:
        env_file = repo / "environments" / name / "env.yaml"
        blueprint = yaml.load(env_file.read_text())["blueprint"]
        for source in (env_file, repo / "blueprints" / blueprint / "blueprint.yaml"):
            for kind, ref in secret_refs(yaml.load(source.read_text())):
                if f"{kind}:{ref}" in planted.values:
                    continue
                value = planted.add(f"{kind}:{ref}", kind)
                if kind == "env":
                    planted.env[ref] = value
                    continue
                for target in secret_file_targets(ref, repo, env_file.parent, home, source,
                                                  len(planted.values)):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(value)
                    planted.files.add(target)
    return planted


def secret_file_targets(ref: str, repo: Path, env_dir: Path, home: Path, source: Path,
                        index: int) -> list[Path]:
    """Where a `{file: ref}` must exist; absolute refs are moved into the tmp dir."""
    if ref.startswith("~/"):
        return [home / ref[2:]]
    if Path(ref).is_absolute():
        moved = repo / "secrets" / f"secret-{index}"
        source.write_text(source.read_text().replace(ref, str(moved)))
        return [moved]
    return [repo / ref, env_dir / ref]


def encodings(value: str) -> dict[str, str]:
    """The forms a leaked value could take in a rendered file."""
    forms = {"raw": value, "json": json.dumps(value)[1:-1], "percent": quote(value, safe=""),
             "base64": base64.b64encode(value.encode()).decode()}
    token = value[value.index("GENLEAK"):][:len(TOKEN.format(0))]
    forms["token"] = token
    return {name: form for name, form in forms.items() if form}


def leaks(blob: bytes, planted: Planted) -> list[str]:
    """`reference (form)` for every planted value found in `blob`."""
    text = blob.decode("utf-8", errors="replace")
    return [f"{ref} ({form})" for ref, value in planted.values.items()
            for form, encoded in encodings(value).items() if encoded in text]


def assert_clean(what: str, blob: bytes, planted: Planted) -> None:
    found = leaks(blob, planted)
    assert not found, f"secret value leaked into {what}: {', '.join(found)}"


@pytest.fixture
def scratch(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Planted:
    home = tmp_path / "home"
    home.mkdir()
    planted = plant_secrets(repo, home)
    monkeypatch.setenv("HOME", str(home))
    for name, value in planted.env.items():
        monkeypatch.setenv(name, value)
    return planted


def test_planting_found_the_labs_secrets(scratch: Planted) -> None:
    """Guard against a vacuous pass: lab A's pull secret and SSH key must be planted."""
    assert "env:GEN_SECRET_PULL" in scratch.values
    assert any(ref.startswith("file:") for ref in scratch.values)
    assert os.environ["GEN_SECRET_PULL"] == scratch.values["env:GEN_SECRET_PULL"]
    assert all(f.read_text() for f in scratch.files)


def test_leak_detector_sees_every_encoding(scratch: Planted) -> None:
    value = scratch.values["env:GEN_SECRET_PULL"]
    for form in encodings(value).values():
        assert leaks(b"prefix " + form.encode() + b" suffix", scratch)
    assert not leaks(b"@@gen-secret:pullSecret@@", scratch)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_rendered_byte_holds_a_secret(env: str, repo: Path, scratch: Planted) -> None:
    tree = render_environment(f"env/{env}", cwd=repo).tree
    assert tree
    for path, content in tree.items():
        assert_clean(f"rendered {env}:{path}", content, scratch)
    if env == "lab":
        markers = b"".join(tree.values())
        assert b"@@gen-secret:pullSecret@@" in markers, "the pull secret's place lost its marker"
        assert b"@@gen-secret:sshAuthorizedKeys[0]@@" in markers


def cli(args: list[str], repo: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=repo,
                          env={**os.environ, "GEN_DEBUG": ""}, capture_output=True,
                          check=False, timeout=120)


def cli_runs(env: str, repo: Path) -> list[tuple[list[str], bool]]:
    """(arguments, must exit 0): every command that reads ENV, offline, in the scratch repo."""
    out, store = str(repo / "out" / env), str(repo / "store")
    return [
        (["validate", f"env/{env}"], True),
        (["validate", f"env/{env}", "--format", "json"], True),
        (["render", f"env/{env}", "--out", out], True),
        (["render", f"env/{env}", "--out", out, "--check", "--format", "json"], True),
        (["render", f"env/{env}"], True),
        (["lock", f"env/{env}", "--offline", "--store", store], True),
        (["lock", f"env/{env}", "--offline", "--store", store, "--format", "json"], True),
        # Offline, k8s-lab's images stay unpinned, so these may exit 4: only output counts.
        (["render", f"env/{env}", "--out", out, "--frozen", "--store", store], False),
        (["verify", f"env/{env}", "--store", store], False),
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cli_output_lock_and_written_files_hold_no_secret(
        env: str, repo: Path, tmp_path: Path, scratch: Planted) -> None:
    for args, must_succeed in cli_runs(env, repo):
        result = cli(args, repo)
        command = f"gen {' '.join(args)}"
        assert result.returncode == 0 or not must_succeed, f"{command}: {result.stderr.decode()}"
        assert b"Traceback" not in result.stderr, f"{command}: {result.stderr.decode()}"
        assert_clean(f"stdout of {command}", result.stdout, scratch)
        assert_clean(f"stderr of {command}", result.stderr, scratch)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in scratch.files]
    assert any(p.suffix == ".ign" for p in written) or env != "lab"
    assert (repo / "rendered" / env).is_dir()
    assert (repo / "lock" / f"{env}.lock").is_file(), "gen lock wrote no lock to check"
    for path in written:
        if path.name in ("env.yaml", "blueprint.yaml"):
            continue
        assert_clean(str(path.relative_to(tmp_path)), path.read_bytes(), scratch)


def test_errors_name_the_reference_not_the_value(repo: Path, scratch: Planted) -> None:
    """A failing render (here: a bad node IP) must not echo any secret either."""
    env_file = repo / "environments" / "lab" / "env.yaml"
    env_file.write_text(env_file.read_text().replace("ip: 192.168.20.150", "ip: 999.1.1.1"))
    result = cli(["render", "env/lab", "--out", str(repo / "out")], repo)
    assert result.returncode == 1 and b"999.1.1.1" in result.stderr
    assert_clean("error output", result.stdout + result.stderr, scratch)

