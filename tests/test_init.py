"""gen init, gen new outside a repo, and shell completion, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import Result, gen
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
COMMON = {".gen-repo", ".gitignore", ".pre-commit-config.yaml", "README.md",
          "gen-requirements.txt", "blueprints/README.md", "environments/.gitkeep",
          "lock/.gitkeep"}
CI_FILES = {"github": {".github/workflows/gen-pr.yml", ".github/workflows/gen-converge.yml",
                     ".github/workflows/gen-publish.yml"},
            "gitlab": {".gitlab-ci.yml", "ci/gen-mr-note.py"}, "none": set()}


def files_under(where: Path) -> set[str]:
    return {p.relative_to(where).as_posix() for p in where.rglob("*") if p.is_file()}


@pytest.mark.parametrize("ci", sorted(CI_FILES))
def test_init_lays_out_a_repo_for_the_chosen_forge(tmp_path: Path, ci: str) -> None:
    result = gen("init", "site", "--ci", ci, cwd=tmp_path)
    assert result.code == 0, result.err
    assert files_under(tmp_path / "site") == COMMON | CI_FILES[ci]
    for rel in CI_FILES[ci] - {"ci/gen-mr-note.py"}:
        text = (tmp_path / "site" / rel).read_text()
        doc = YAML(typ="safe").load(text)
        assert doc, rel
        assert "pip install -e" not in text  # a team repo has no gen source to install
        assert "gen-requirements.txt" in text
    if ci == "gitlab":
        assert "python3 ci/gen-mr-note.py" in (tmp_path / "site/.gitlab-ci.yml").read_text()
    readme = (tmp_path / "site/README.md").read_text()
    for step in ("gen new", "gen render", "gen lock", "gen diff", "converge"):
        assert step in readme


def test_init_refuses_to_overwrite_and_lists_what_it_would_write(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "README.md").write_text("ours\n")
    (site / ".github").write_text("a file where a folder would go\n")
    result = gen("init", str(site), cwd=tmp_path)
    assert result.code == 1
    line = result.err.strip()
    assert len(result.err.splitlines()) == 1
    assert "not overwriting README.md, .github/workflows/gen-pr.yml" in line
    assert "gen init would have written: .gen-repo, .github/workflows/gen-converge.yml" in line
    assert files_under(site) == {"README.md", ".github"}
    assert (site / "README.md").read_text() == "ours\n"


def test_new_after_init_uses_the_built_in_blueprint(tmp_path: Path) -> None:
    assert gen("init", "--ci", "none", cwd=tmp_path).code == 0
    made = gen("new", "edge", "--blueprint", "kolla-aio", "--no-input", cwd=tmp_path)
    assert made.code == 0, made.err
    valid = gen("validate", "env/edge", cwd=tmp_path / "environments")  # root found above
    assert valid.code == 0, valid.err
    assert valid.out.strip().endswith("blueprint kolla-aio (built-in)")


def test_new_outside_a_repo_says_so_and_names_init(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = gen("new", "prod", "--blueprint", "openshift-upi", "--no-input", cwd=tmp_path)
    assert result.code == 1
    assert result.err.strip() == (
        f"{tmp_path} is not inside a gen repo (no environments/ folder or .gen-repo file "
        "here or above) (run `gen init` to make one, or cd into your gen repo)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git"]


def test_unknown_blueprint_lists_repo_and_built_in_ones(repo: Path) -> None:
    result = gen("new", "x", "--blueprint", "openshift", "--no-input", cwd=repo)
    assert (result.code, result.err.strip()) == (
        1, "unknown blueprint 'openshift' (known blueprints: kolla-aio, kubeadm, "
           "openshift-upi)")


def complete(words: str, cwd: Path) -> list[str]:
    """What bash completion offers after `words` (click's bash_complete protocol)."""
    parts = words.split(" ")
    env = {**os.environ, "_GEN_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}
    proc = subprocess.run([sys.executable, "-m", "generator"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_completion_of_verbs_envs_nodes_and_formats() -> None:
    assert complete("gen v", ROOT) == ["validate", "verify"]
    assert "init" in complete("gen ", ROOT)
    assert complete("gen render ", ROOT) == ["env/k8s-lab", "env/lab"]
    assert complete("gen plan env/l", ROOT) == ["env/lab"]
    assert complete("gen node remove env/lab w", ROOT) == ["worker0", "worker1"]
    assert complete("gen diff env/lab --format ", ROOT) == ["text", "json", "markdown", "html"]
    assert complete("gen init --ci ", ROOT) == ["github", "gitlab", "none"]


def test_completion_script_is_click_s_own() -> None:
    env = {**os.environ, "_GEN_COMPLETE": "bash_source"}
    proc = subprocess.run([sys.executable, "-m", "generator"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "_gen_completion()" in proc.stdout
    assert "complete -o nosort -F _gen_completion gen" in proc.stdout


def test_a_template_question_needs_a_rule_and_its_rule_is_applied(repo: Path) -> None:
    template = repo / "blueprints" / "kubeadm" / "template"
    context = json.loads((template / "cookiecutter.json").read_text())
    (template / "cookiecutter.json").write_text(json.dumps({**context, "rack": "r1"}))
    answers = repo / "answers.json"

    def new(rack: str) -> Result:
        answers.write_text(json.dumps({"rack": rack}))
        return gen("new", "edge", "--blueprint", "kubeadm", "--answers", str(answers), cwd=repo)

    assert new("r7").err.strip() == (
        "answer rack: no rule checks this question (give it one in the template's "
        "answers.schema.json, under properties)")
    (template / "answers.schema.json").write_text(json.dumps(
        {"properties": {"rack": {"type": "string", "pattern": "^r[0-9]{1,3}$"}}}))
    assert new("{{ 7 * 7 }}").err.strip() == "answer rack: '{{ 7 * 7 }}' is not allowed here"
    made = new("r7")
    assert made.code == 0, made.err


# ---- nothing is written outside the repo, and bad targets are one line -----------------------


def _linked_out(tmp_path: Path) -> tuple[Path, Path]:
    """A repo folder whose environments/ and .github/workflows are symlinks to elsewhere."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    (site / ".github").mkdir(parents=True)
    elsewhere.mkdir()
    (site / "environments").symlink_to(elsewhere)
    (site / ".github/workflows").symlink_to(elsewhere)
    return site, elsewhere


def test_init_refuses_folders_that_link_out_of_the_repo(tmp_path: Path) -> None:
    site, elsewhere = _linked_out(tmp_path)
    result = gen("init", "site", cwd=tmp_path)
    assert result.code == 1, result.out
    assert result.err.splitlines() == [
        "site: not writing through a symlink that leads outside the repository: "
        ".github/workflows, environments (make those real folders, or run it in another "
        "folder)"]
    assert list(elsewhere.iterdir()) == []
    assert files_under(site) == set()


@pytest.mark.parametrize("verb", ["new", "import"])
def test_new_and_import_refuse_environments_linked_out_of_the_repo(tmp_path: Path,
                                                                   verb: str) -> None:
    site, elsewhere = _linked_out(tmp_path)
    (site / ".gen-repo").write_text("")
    (tmp_path / "vars.yaml").write_text("disk: vda\n")
    args = (("new", "x", "--blueprint", "kubeadm", "--no-input") if verb == "new" else
            ("import", "helpernode", str(tmp_path / "vars.yaml"), "--env", "x"))
    result = gen(*args, cwd=site)
    assert result.code == 1, result.out
    assert result.err.splitlines() == [
        f"environments leads outside the repository through a symlink (to {elsewhere}) "
        "(gen reads environments and blueprints only from inside the repo: copy the folder "
        "in instead of linking it)"]
    assert list(elsewhere.iterdir()) == []


def test_import_outside_a_repo_says_so_and_names_init(tmp_path: Path) -> None:
    (tmp_path / "vars.yaml").write_text("disk: vda\n")
    result = gen("import", "helpernode", "vars.yaml", "--env", "x", cwd=tmp_path)
    assert result.code == 1, result.out
    assert result.err.strip() == (
        f"{tmp_path} is not inside a gen repo (no environments/ folder or .gen-repo file "
        "here or above) (run `gen init` to make one, or cd into your gen repo)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vars.yaml"]


@pytest.mark.parametrize(("target", "message"), [
    ("x" * 300, "cannot write the repo: File name too long (pick a folder you can write, "
                "with a shorter name)"),
    ("/proc/self", "cannot write the repo: No such file or directory (pick a folder you can "
                   "write, with a shorter name)"),
    ("/dev/null", "not a directory (name a new or existing folder)"),
])
def test_init_into_an_impossible_folder_is_one_line(tmp_path: Path, target: str,
                                                    message: str) -> None:
    result = gen("init", target, cwd=tmp_path)
    assert result.code == 1, result.out
    assert result.err.splitlines() == [f"{target}: {message}"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["new", "helpernode", "libvirt"])
def test_an_overlong_environment_name_is_one_line(tmp_path: Path, verb: str) -> None:
    assert gen("init", "--ci", "none", cwd=tmp_path).code == 0
    (tmp_path / "vars.yaml").write_text("disk: vda\n")
    name = "x" * 300
    args = {"new": ("new", name, "--blueprint", "kubeadm", "--no-input"),
            "helpernode": ("import", "helpernode", "vars.yaml", "--env", name),
            "libvirt": ("import", "libvirt", "test:///default", "--env", name)}[verb]
    result = gen(*args, cwd=tmp_path)
    assert result.code == 1, result.out
    assert result.err.splitlines() == [
        f"environment '{name}' is not a valid name (use lowercase letters, digits and inner "
        "'-', at most 63 characters (like lab-2))"]
    assert list((tmp_path / "environments").iterdir()) == [tmp_path / "environments/.gitkeep"]


def _listed_environments(site: Path, workflow: str, tmp_path: Path) -> str:
    """What the workflow's first job hands its matrix, run with bash the way the runner does."""
    doc = YAML(typ="safe").load((site / ".github/workflows" / workflow).read_text())
    job = doc["jobs"]["environments"]
    script = next(step["run"] for step in job["steps"] if step.get("id") == "list")
    output = tmp_path / f"{workflow}.out"
    output.write_text("")
    subprocess.run(["bash", "-e", "-c", script], cwd=site, check=True, timeout=60,
                   env={**os.environ, "GITHUB_OUTPUT": str(output)})
    return output.read_text()


@pytest.mark.parametrize(("workflow", "job"), [("gen-pr.yml", "render"),
                                               ("gen-converge.yml", "converge")])
def test_github_workflows_run_for_the_repos_environments(tmp_path: Path, workflow: str,
                                                         job: str) -> None:
    assert gen("init", "site", cwd=tmp_path).code == 0
    site = tmp_path / "site"
    text = (site / ".github/workflows" / workflow).read_text()
    assert "Copy to" not in text  # it is already where GitHub reads it
    doc = YAML(typ="safe").load(text)
    assert doc["jobs"][job]["needs"] == "environments"
    assert doc["jobs"][job]["if"] == "needs.environments.outputs.names != '[]'"
    assert doc["jobs"][job]["strategy"]["matrix"]["env"] == (
        "${{ fromJSON(needs.environments.outputs.names) }}")
    assert _listed_environments(site, workflow, tmp_path) == "names=[]\n"  # job skipped
    for name in ("site2", "edge"):
        assert gen("new", name, "--blueprint", "kolla-aio", "--no-input", "--no-lock",
                   cwd=site).code == 0
    assert _listed_environments(site, workflow, tmp_path) == 'names=["edge", "site2"]\n'


def test_the_publish_workflow_runs_for_the_environments_handed_to_an_engine(
        tmp_path: Path) -> None:
    assert gen("init", "site", cwd=tmp_path).code == 0
    site = tmp_path / "site"
    text = (site / ".github/workflows/gen-publish.yml").read_text()
    assert "Copy to" not in text and "pip install -r gen-requirements.txt" in text
    doc = YAML(typ="safe").load(text)
    assert doc["jobs"]["publish"]["needs"] == "environments"
    assert doc["jobs"]["publish"]["if"] == "needs.environments.outputs.names != '[]'"
    for name in ("site2", "edge", "lab9"):
        assert gen("new", name, "--blueprint", "kolla-aio", "--no-input", "--no-lock",
                   cwd=site).code == 0
    assert _listed_environments(site, "gen-publish.yml", tmp_path) == "names=[]\n"
    # only the listing reads these lines (validation would want a gitops block beside them)
    with (site / "environments/edge/env.yaml").open("a") as f:
        f.write("kubernetes:\n  engine: 'flux'\n")
    with (site / "environments/lab9/env.yaml").open("a") as f:
        f.write("kubernetes:\n  engine: gen  # argocd later\n")
    assert _listed_environments(site, "gen-publish.yml", tmp_path) == 'names=["edge"]\n'
