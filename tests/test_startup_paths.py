"""What a render-cache hit needs at process start, kept light: the repo's paths
(generator/repo_paths.py) with the errors they always raised, a hit that imports no model,
YAML or lock code, and the generator's source hashes kept beside each file's identity
(generator/render_cache.py) yet never stale."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import gen

from generator import repo_paths
from generator.errors import EXIT_USER, UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(repo: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "GEN_RENDER_CACHE"}
    return repo, {**env, "GEN_STORE": str(tmp_path / "store"),
                  "GEN_CACHE_DIR": str(tmp_path / "cache")}


def test_the_old_homes_hand_out_the_same_helpers() -> None:
    from generator import confine, environment, loader, safefile
    from generator.lock import lockfile, store

    assert loader.ENV_FILE == repo_paths.ENV_FILE
    assert environment.resolve_env_dir is repo_paths.resolve_env_dir
    assert environment.find_root is repo_paths.find_root
    assert environment.REPO_MARKER == repo_paths.REPO_MARKER
    assert lockfile.lock_path is repo_paths.lock_path
    assert store.default_root is repo_paths.default_store_root
    assert confine.name_problem is repo_paths.name_problem
    assert safefile.inside is repo_paths.inside


def test_resolve_env_dir_refuses_as_before(repo: Path,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    assert repo_paths.resolve_env_dir("env/lab", repo) == (repo / "environments/lab").resolve()
    with pytest.raises(UserError) as bad:
        repo_paths.resolve_env_dir("env/Bad_Name", repo)
    assert bad.value.lines() == [f"environment 'Bad_Name' is not a valid name "
                                 f"({repo_paths.NAME_FIX})"]
    with pytest.raises(UserError) as missing:
        repo_paths.resolve_env_dir("env/nosuch", repo)
    (line,) = missing.value.lines()
    assert "environment 'env/nosuch' not found" in line and "known environments: " in line
    outside = tmp_path_factory.mktemp("outside") / "lab"  # the repo fixture is its tmp_path
    shutil.copytree(repo / "environments/lab", outside)
    (repo / "environments/evil").symlink_to(outside)
    with pytest.raises(UserError) as escape:
        repo_paths.resolve_env_dir("env/evil", repo)
    assert "environments/evil leads outside the repository through a symlink" in \
        escape.value.lines()[0]


@pytest.mark.parametrize(("ref", "says"), [
    ("env/Bad_Name", "is not a valid name"),
    ("env/nosuch", "not found"),
    ("env/evil", "leads outside the repository through a symlink"),
])
def test_gen_render_reports_a_bad_environment_in_one_line(
        site: tuple[Path, dict[str, str]], tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory, ref: str, says: str) -> None:
    repo, env = site
    outside = tmp_path_factory.mktemp("outside") / "lab"
    shutil.copytree(repo / "environments/lab", outside)
    (repo / "environments/evil").symlink_to(outside)
    for _ in range(2):  # the render cache never stands in for a refusal
        result = gen("render", ref, "--out", str(tmp_path / "out"), cwd=repo, env=env)
        assert result.code == EXIT_USER
        assert len(result.err.splitlines()) == 1 and says in result.err
    assert not (tmp_path / "out").exists()


def test_a_hit_imports_neither_the_model_nor_yaml_nor_the_lock(
        site: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = site
    out = tmp_path / "out"
    first = gen("render", "env/lab", "--out", str(out), cwd=repo, env=env)
    assert first.code == 0
    hit = gen("render", "env/lab", "--out", str(out), cwd=repo,
              env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert hit.code == 0 and "0 added, 0 changed, 0 removed" in hit.out
    imported = {line.rsplit("|", 1)[-1].strip() for line in hit.err.splitlines()
                if line.startswith("import time:")}
    assert "generator.render_cache" in imported  # it was a hit, read from the cache
    for heavy in ("generator.environment", "generator.model", "yaml", "generator.loader",
                  "generator.lock.lockfile", "generator.lock.store", "generator.families",
                  "jsonschema"):
        assert heavy not in imported, heavy
    warnings = [line for line in hit.err.splitlines() if not line.startswith("import time:")]
    assert warnings == first.err.splitlines()  # the same warnings and notes on a hit


def _sources(copy: Path, cache: Path) -> dict[str, str]:
    probe = ("import json; from generator import render_cache; "
             "print(json.dumps(render_cache.running_sources()[1]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=copy, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(copy),
                               "GEN_CACHE_DIR": str(cache)})
    return dict(json.loads(done.stdout))


def test_kept_source_hashes_follow_every_edit(tmp_path: Path) -> None:
    copy, cache = tmp_path / "src", tmp_path / "cache"
    shutil.copytree(ROOT / "generator", copy / "generator", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "generator/families/dns.py"
    first = _sources(copy, cache)
    assert first["families/dns.py"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert _sources(copy, cache) == first  # from the kept hashes
    # the same size and mtime, other bytes: only the ctime tells
    info = target.stat()
    data = target.read_bytes()
    target.write_bytes(data.replace(b"def ", b"def_", 1))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    edited = _sources(copy, cache)
    assert edited["families/dns.py"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert edited["families/dns.py"] != first["families/dns.py"]
    assert {k: v for k, v in edited.items() if k != "families/dns.py"} == \
        {k: v for k, v in first.items() if k != "families/dns.py"}


def test_kept_source_hashes_that_others_could_write_are_ignored(tmp_path: Path) -> None:
    import marshal

    copy, cache = tmp_path / "src", tmp_path / "cache"
    shutil.copytree(ROOT / "generator", copy / "generator", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    truth = _sources(copy, cache)
    (kept,) = (cache / "sources").iterdir()
    kind, where, known = marshal.loads(kept.read_bytes())
    ident, _ = known["pipeline.py"]
    known["pipeline.py"] = (ident, "0" * 64)
    kept.write_bytes(marshal.dumps((kind, where, known)))
    assert _sources(copy, cache)["pipeline.py"] == "0" * 64  # the kept file is what is used
    kept.chmod(0o620)
    assert _sources(copy, cache) == truth


def test_source_hashes_are_kept_for_a_few_package_folders_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gen diff renders a side from a temporary worktree's generator: each would leave a
    file of hashes for its folder."""
    from generator import render_cache

    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    for index in range(render_cache._HASHES_KEEP + 3):
        folder = tmp_path / f"worktree-{index}"
        render_cache._keep_hashes(folder, {"cli.py": ((0, 0, 0, 0, 0), "0" * 64)})
        os.utime(render_cache._hashes_file(folder), (index, index))  # written in this order
    kept = list((tmp_path / "cache/sources").iterdir())
    assert len(kept) == render_cache._HASHES_KEEP
    newest = tmp_path / f"worktree-{render_cache._HASHES_KEEP + 2}"
    assert render_cache._known_hashes(newest) == {"cli.py": ((0, 0, 0, 0, 0), "0" * 64)}
