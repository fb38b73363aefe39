"""The command line contract: help everywhere, --version, and gen's exit codes (docs/design.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from generator import __version__
from generator.cli import COMMANDS, SUMMARIES, cli

ROOT = Path(__file__).resolve().parent.parent


def gen(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GEN_DEBUG"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, check=False)


def all_command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command, e.g. ('render',), ('node', 'add')."""
    paths: list[tuple[str, ...]] = []
    ctx = click.Context(cli)
    for name in sorted(COMMANDS):
        command = cli.get_command(ctx, name)
        assert command is not None, name
        paths.append((name,))
        if isinstance(command, click.Group):
            paths += [(name, sub) for sub in command.list_commands(ctx)]
    return paths


def test_top_level_help_lists_every_command() -> None:
    result = gen("--help")
    assert result.returncode == 0
    assert "Exit codes" in result.stdout
    for name in COMMANDS:
        assert f"  {name}" in result.stdout, name


def test_help_summaries_match_the_commands() -> None:
    """`gen --help` lists commands from SUMMARIES (no command module imported): each must
    be the command's own short help, and --help must not import any command module."""
    ctx = click.Context(cli)
    assert set(SUMMARIES) == set(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert SUMMARIES[name] == command.get_short_help_str(limit=1000), name
    probe = ("import sys; from generator.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('generator.')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.splitlines()[-1]
    assert "generator.commands" not in loaded, loaded


@pytest.mark.parametrize("path", all_command_paths(), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = gen(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: gen {' '.join(path)}"), result.stdout[:200]
    # A real description, not just the usage line.
    body = result.stdout.split("\n", 2)[2] if result.stdout.count("\n") > 2 else ""
    assert len(body.strip()) > 40, f"gen {' '.join(path)} --help says almost nothing"
    assert "-h, --help" in result.stdout


def test_version() -> None:
    result = gen("--version")
    assert result.returncode == 0
    assert result.stdout == f"gen {__version__}\n"


@pytest.mark.parametrize("args", [
    ("no-such-command",),
    ("render",),  # missing ENV
    ("render", "env/lab", "--no-such-flag"),
    ("render", "env/lab", "--format", "xml"),
    ("validate", "env/lab", "extra-argument"),
])
def test_usage_errors_exit_64(args: tuple[str, ...]) -> None:
    result = gen(*args)
    assert result.returncode == 64, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error:" in result.stderr or "Usage:" in result.stderr
    assert result.stdout == ""


def test_unknown_environment_is_a_user_error() -> None:
    result = gen("validate", "env/no-such-env")
    assert result.returncode == 1
    assert result.stderr.startswith("environment 'env/no-such-env' not found")
    assert "known environments:" in result.stderr and "lab" in result.stderr


def test_validate_json_output() -> None:
    result = gen("validate", "env/lab", "--format", "json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["environment"] == "lab" and payload["valid"] is True
    assert payload["nodes"] == 7


def test_validate_reports_warnings_on_stderr() -> None:
    result = gen("validate", "env/k8s-lab")
    assert result.returncode == 0
    assert result.stderr.startswith("warning: environments/k8s-lab/env.yaml:")
    assert "valid (5 nodes, " in result.stdout


def test_internal_error_exits_70_with_a_hint_and_no_traceback(tmp_path: Path) -> None:
    """A broken installation (its schema file truncated) is gen's fault, not the user's.

    Nothing of ours is patched: a copy of the installed package and its data files runs
    from a scratch directory with the schema cut in half.
    """
    install = tmp_path / "install"
    shutil.copytree(ROOT / "generator", install / "generator",  # data symlinks become copies
                    ignore=shutil.ignore_patterns("__pycache__"))
    schema = install / "generator" / "_data" / "schemas" / "blueprint.schema.json"
    schema.write_text(schema.read_text()[:200])
    environ = {"PYTHONPATH": str(install)}
    lab = str(ROOT / "environments" / "lab")  # run from tmp_path, so the copy is imported
    result = gen("validate", lab, cwd=tmp_path, env=environ)
    assert result.returncode == 70, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("internal error: JSONDecodeError:")
    assert "this is a bug in gen" in lines[1] and "GEN_DEBUG=1" in lines[1]
    assert "Traceback" not in result.stderr
    debug = gen("validate", lab, cwd=tmp_path, env={**environ, "GEN_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr
