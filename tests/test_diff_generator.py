"""`gen diff` reviews what the tool did and what the inputs say, not only rendered files.

Real git repos, the real CLI: a repo that carries its generator (generator/ beside
environments/) renders each revision with that revision's own generator, so a pull
request that changes only a renderer shows the output it changes, with the generator change
named. Input fields that render nothing (a hypervisor URI) are listed too, secrets masked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.clirun import gen
from tests.test_diff_git import commit_all, git

ROOT = Path(__file__).resolve().parent.parent
EXPORT_JOIN = '" ".join([escape.export_path(export.path, (*field, "path")), *clients])'


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "GEN_STORE": str(tmp_path / "store")}


def _site(tmp_path: Path, with_generator: bool) -> Path:
    repo = tmp_path / "site"
    names = ["environments", "blueprints"] + (["generator", "schemas"] if with_generator else [])
    for name in names:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "site")
    return repo


def _double_space_exports(repo: Path) -> None:
    nfs = repo / "generator" / "families" / "nfs.py"
    text = nfs.read_text()
    assert text.count(EXPORT_JOIN) == 1, "scenario out of date: nfs.py export_line"
    nfs.write_text(text.replace(EXPORT_JOIN, EXPORT_JOIN.replace('" "', '"  "')))


def test_a_renderer_only_commit_shows_its_output_and_names_the_generator(
        tmp_path: Path, run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=True)
    _double_space_exports(repo)
    commit_all(repo, "nfs: two spaces between path and clients")
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--no-color",
                 "--detailed-exitcode", cwd=repo, env=run_env)
    assert result.code == 2, result.err
    assert "1 file(s) changed" in result.out
    assert "the generator changed between the sides" in result.out
    assert "1 source file(s) changed: generator/families/nfs.py" in result.out
    assert "+/exports/registry  192.168.20.0/24(" in result.out
    assert "Input fields:" not in result.out  # no input changed


def test_the_base_is_rendered_by_its_own_generator_against_the_working_tree(
        tmp_path: Path, run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=True)
    _double_space_exports(repo)
    commit_all(repo, "nfs: two spaces")
    git(repo, "checkout", "-q", "HEAD~1", "--", "generator")  # the working tree undoes it
    result = gen("diff", "env/lab", "--base", "HEAD", "--no-color", cwd=repo, env=run_env)
    assert result.code == 0, result.err
    assert "-/exports/registry  192.168.20.0/24(" in result.out
    assert "+/exports/registry 192.168.20.0/24(" in result.out
    assert "generator/families/nfs.py" in result.out


def test_a_base_generator_that_fails_is_named(tmp_path: Path, run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=True)
    main = repo / "generator" / "__main__.py"
    main.write_text("raise SystemExit('this gen is broken')\n")
    commit_all(repo, "broken gen")
    git(repo, "checkout", "-q", "HEAD~1", "--", "generator")
    result = gen("diff", "env/lab", "--base", "HEAD", cwd=repo, env=run_env)
    assert result.code == 1, result.err
    assert "with the generator it carries (generator/ there) failed" in result.err
    assert "this gen is broken" in result.err


def test_an_input_used_only_at_plan_time_is_listed_with_its_field_path(
        tmp_path: Path, run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=False)
    env_file = repo / "environments" / "lab" / "env.yaml"
    env_file.write_text(env_file.read_text().replace(
        "uri: qemu:///system", "uri: qemu+ssh://root@hv1.example.com/system"))
    result = gen("diff", "env/lab", "--base", "HEAD", "--no-color", "--detailed-exitcode",
                 cwd=repo, env=run_env)
    assert result.code == 2, result.err
    assert "no rendered file changed" in result.out
    assert ("~ environments/lab/env.yaml: hypervisors[hv1].uri: qemu:///system -> "
            "qemu+ssh://root@hv1.example.com/system") in result.out
    assert "generator" not in result.out.lower().replace("gen diff", "")


def test_input_field_changes_mask_secret_references(tmp_path: Path,
                                                    run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=False)
    env_file = repo / "environments" / "lab" / "env.yaml"
    text = env_file.read_text()
    env_file.write_text(text.replace("pullSecret: {env: GEN_SECRET_PULL}",
                                     "pullSecret: {env: GEN_SECRET_OTHER_VARIABLE}")
                        .replace("{file: id_rsa.pub}", "{file: secret/place.pub}"))
    result = gen("diff", "env/lab", "--base", "HEAD", "--no-color", "--format", "json",
                 cwd=repo, env=run_env)
    assert result.code == 0, result.err
    assert "OTHER_VARIABLE" not in result.out and "secret/place.pub" not in result.out
    assert "GEN_SECRET_PULL" not in result.out and "id_rsa" not in result.out
    assert '"subject": "environments/lab/env.yaml: cluster.pullSecret"' in result.out
    assert '"subject": "environments/lab/env.yaml: cluster.sshAuthorizedKeys"' in result.out
    assert result.out.count("(sensitive value changed)") >= 2


def test_a_changed_stream_file_is_listed(tmp_path: Path, run_env: dict[str, str]) -> None:
    repo = _site(tmp_path, with_generator=False)
    stream = repo / "environments" / "lab" / "rhcos-4.16.json"
    stream.write_text(stream.read_text() + "\n")
    result = gen("diff", "env/lab", "--base", "HEAD", "--no-color", cwd=repo, env=run_env)
    assert result.code == 0, result.err
    assert "~ environments/lab/rhcos-4.16.json: content changed" in result.out


def test_a_secret_marker_elsewhere_hides_no_other_change() -> None:
    """Masking happens at the value that mentions a secret, never above it."""
    from generator.diff.inputs import field_diff

    old = {"hypervisors": [{"name": "hv1", "uri": "qemu:///system"}],
           "services": {"dns": {"records": []}}}
    new = {"hypervisors": [{"name": "hv1", "uri": "qemu:///session"}],
           "services": {"dns": {"records": [{"name": "t", "type": "TXT",
                                             "value": "@@gen-secret:pullSecret@@"}]}}}
    rows = field_diff(old, new)
    assert ("~", "hypervisors[hv1].uri", "qemu:///system -> qemu:///session") in rows
    assert ("~", "services.dns.records", "(sensitive value changed)") in rows
    assert "pullSecret" not in repr(rows)
