"""The ci/ templates: valid YAML, and the gen commands they run work on a real repo.

A temporary site repo gets a bare `origin` with main (environment + lock) and a PR branch
(a bigger worker, re-locked). Every `run:`/`script:` line that calls gen is executed with
bash the way the CI runner does, in order, except `gen plan`/`gen converge`, which need
live hosts: their command lines are parsed by the real click commands instead, so a flag
the CLI does not have fails here. The comment-posting script runs under node against an
in-memory comment list, twice, to show it updates its own comments in place.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.test_diff_git import GIT_ENV, commit_all, git, memory_changed, write_lock

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "ci"
TEMPLATES = ("github/gen-pr.yml", "github/gen-converge.yml", "gitlab/gen.gitlab-ci.yml",
             "pre-commit/.pre-commit-config.yaml")
LIVE = ("gen plan", "gen converge")


def load(name: str) -> Any:
    return YAML(typ="safe").load((CI / name).read_text())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """main (pushed to a bare origin) with a locked lab; HEAD on a PR branch changing it."""
    origin, repo = tmp_path / "origin.git", tmp_path / "site"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("/rendered/\n/gen-diff/\n")
    write_lock(repo, "lab", "a")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "site")
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", "bigger-worker")
    memory_changed(repo)
    write_lock(repo, "lab", "a")
    commit_all(repo, "bigger worker1")
    return repo


def gen_lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("gen ")]


def run_lines(repo: Path, lines: list[str], env: dict[str, str]) -> None:
    for line in lines:
        if line.startswith(LIVE):
            check_flags(line, env)
            continue
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", line], cwd=repo,
                              capture_output=True, text=True, env={**os.environ, **GIT_ENV, **env})
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"


def check_flags(line: str, env: dict[str, str]) -> None:
    """Parse a live command line with the real click command (no hosts are contacted)."""
    from generator.cli import cli

    words = shlex.split(line.split("||")[0].replace("$ENV", env["ENV"]))
    command = cli.get_command(None, words[1])  # type: ignore[arg-type]
    assert command is not None, line
    command.make_context(words[1], words[2:])


def test_templates_are_valid_yaml_with_the_promised_shape() -> None:
    for name in TEMPLATES:
        assert isinstance(load(name), dict), name
    pr, converge = load("github/gen-pr.yml"), load("github/gen-converge.yml")
    assert "pull_request" in pr["on"] and pr["permissions"]["pull-requests"] == "write"
    assert converge["on"]["push"]["branches"] == ["main"]
    group = converge["jobs"]["converge"]["concurrency"]
    assert group == {"group": "gen-converge-${{ matrix.env }}", "cancel-in-progress": False}
    runs = [s.get("run", "") for s in converge["jobs"]["converge"]["steps"]]
    assert any("gen converge" in r and "--auto-approve" in r for r in runs)
    assert any("--detailed-exitcode" in r for r in runs)
    gitlab = load("gitlab/gen.gitlab-ci.yml")
    assert gitlab["gen:converge"]["resource_group"] == "gen-converge-$ENV"
    script = (CI / "github/gen-pr.yml").read_text()
    assert "<!-- gen-diff:${env} -->" in script


def test_github_pull_request_workflow_runs_on_a_real_repo(site: Path, tmp_path: Path) -> None:
    steps = load("github/gen-pr.yml")["jobs"]["render"]["steps"]
    lines = [line for s in steps for line in gen_lines(s.get("run", ""))]
    assert [line.split()[1] for line in lines] == ["validate", "render", "verify", "diff",
                                                   "diff"]
    run_lines(site, lines, {"ENV": "lab", "BASE_REF": "origin/main"})
    parts = sorted((site / "gen-diff").glob("gen-diff-lab-*.md"))
    assert parts and "~ domain hv1/worker1: vcpu 2 -> 8" in parts[0].read_text()
    # the HTML report is what the upload step uploads, and the comment links to it
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    report = site / upload["with"]["path"].replace("${{ matrix.env }}", "lab")
    assert "<code>domain hv1/worker1</code></td><td>vcpu 2 -&gt; 8" in report.read_text()
    comment = next(s for s in steps if "github-script" in s.get("uses", ""))
    step_id = upload["id"]
    assert comment["env"]["REPORT_URL"] == f"${{{{ steps.{step_id}.outputs.artifact-url }}}}"
    url = "https://github.com/o/r/actions/runs/1/artifacts/2"
    linked = run_comment_script(site, comment["with"]["script"], [], {"REPORT_URL": url})
    assert linked[0]["body"].startswith(parts[0].read_text())
    assert f"[Browsable report]({url})" in linked[0]["body"]
    assert all(len(c["body"]) <= 65536 for c in linked)

    script = next(s["with"]["script"] for s in steps if "github-script" in s.get("uses", ""))
    comments = run_comment_script(site, script, [{"id": 1, "body": "LGTM"}])
    assert [c["body"] for c in comments[1:]] == [p.read_text() for p in parts]
    again = run_comment_script(site, script, comments)
    assert again == comments  # updated in place: no new comments, none lost
    stale = {"id": 50, "body": "<!-- gen-diff:lab -->\n<!-- gen-diff-part:2/2 -->\nold part"}
    edited = [comments[0], {**comments[1], "body": "<!-- gen-diff:lab -->\nold"}, stale]
    assert run_comment_script(site, script, edited) == comments  # rewritten, extra deleted


def run_comment_script(repo: Path, script: str, comments: list[dict[str, Any]],
                       env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run actions/github-script's script under node with an in-memory issue comments API."""
    harness = """
const store = JSON.parse(process.env.COMMENTS);
let next = 100;
const github = {
  paginate: async (fn, args) => fn(args),
  rest: { issues: {
    listComments: () => store.map((c) => ({ ...c })),
    updateComment: async ({ comment_id, body }) => {
      store.find((c) => c.id === comment_id).body = body; },
    createComment: async ({ body }) => { store.push({ id: next++, body }); },
    deleteComment: async ({ comment_id }) => {
      store.splice(store.findIndex((c) => c.id === comment_id), 1); },
  } },
};
const context = { repo: { owner: 'o', repo: 'r' }, issue: { number: 7 } };
(async () => { SCRIPT })().then(() => console.log(JSON.stringify(store)));
""".replace("SCRIPT", script)
    node = shutil.which("node")
    assert node, "node is needed to run the github-script step"
    proc = subprocess.run([node, "-e", harness], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "ENV": "lab", "COMMENTS": json.dumps(comments),
                               **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_github_converge_workflow_commands(site: Path) -> None:
    git(site, "checkout", "-q", "main")
    git(site, "merge", "-q", "--ff-only", "bigger-worker")
    steps = load("github/gen-converge.yml")["jobs"]["converge"]["steps"]
    lines = [line for s in steps for line in gen_lines(s.get("run", ""))]
    assert [line.split()[1] for line in lines] == ["validate", "render", "verify", "plan",
                                                   "converge"]
    run_lines(site, lines, {"ENV": "lab"})


def test_gitlab_jobs_commands(site: Path) -> None:
    ci = load("gitlab/gen.gitlab-ci.yml")
    review = [line for line in ci["gen:review"]["script"] if "gen-mr-note" not in line]
    env = {"ENV": "lab", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    run_lines(site, [line.replace("git fetch", "gen-git-fetch", 1) for line in review
                     if line.startswith("gen ")], env)
    fetch = next(line for line in review if line.startswith("git fetch"))
    proc = subprocess.run(["bash", "-c", fetch], cwd=site, env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted((site / "gen-diff").glob("gen-diff-lab-*.md"))
    assert (site / "gen-diff" / "gen-diff-lab.html").is_file()
    assert ci["gen:review"]["artifacts"]["paths"] == ["gen-diff/"]
    note = next(line for line in ci["gen:review"]["script"] if "gen-mr-note" in line)
    assert note.endswith('"$CI_JOB_URL/artifacts/file/gen-diff/gen-diff-$ENV.html"')
    run_lines(site, [line for line in ci["gen:converge"]["script"] if line.startswith("gen ")],
              {"ENV": "lab"})


def test_pre_commit_hooks_fail_when_lock_or_output_is_stale(site: Path) -> None:
    hooks = {h["id"]: h["entry"] for h in load("pre-commit/.pre-commit-config.yaml")["repos"][0]
             ["hooks"]}
    run_lines(site, ["gen render env/lab --locked"], {"ENV": "lab"})

    def hook(name: str) -> int:
        return subprocess.run(["bash", "-c", hooks[name]], cwd=site, capture_output=True,
                              text=True).returncode

    assert hook("gen-lock-current") == 0 and hook("gen-rendered-current") == 0
    text = (site / "environments/lab/env.yaml").read_text()
    (site / "environments/lab/env.yaml").write_text(text.replace("vcpu: 8", "vcpu: 6"))
    assert hook("gen-lock-current") == 4
    assert hook("gen-rendered-current") == 1
