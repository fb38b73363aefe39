"""Shared fixtures: the repo root and a scratch copy of it for tests that edit inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/<env>/ from the current renderers.")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when run with `pytest --update-golden`: golden tests rewrite instead of compare."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch copy of the monorepo inputs (environments, blueprints) to edit freely."""
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "lock").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def debian_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lab A with a Debian helper: this machine's checkers at Debian's paths."""
    from clirun import helper_on_debian

    repo = tmp_path_factory.mktemp("repo")
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name)
    helper_on_debian(repo)
    return repo


@pytest.fixture(scope="module")
def debian_lab(debian_repo: Path):  # type: ignore[no-untyped-def]
    """(model, rendered tree) of lab A with a Debian helper, unlocked."""
    from generator.families import Pins
    from generator.pipeline import render_environment

    rendered = render_environment("env/lab", cwd=debian_repo, pins=Pins())
    return rendered.loaded.model, rendered.tree
