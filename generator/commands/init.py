"""`gen init`: lay out a new GitOps repo for a team (environments, lock, CI, hooks)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from generator.cli import FORMAT, emit
from generator.safefile import inside

FORGES = ("github", "gitlab", "none")
REQUIREMENTS = "gen-requirements.txt"

# The shipped CI templates install gen from its own source tree (`pip install -e .`); a
# team's repo installs the gen named in gen-requirements.txt instead.
INSTALL_SWAPS = (
    ("pip install -e '.[live]'",
     f"pip install -r {REQUIREMENTS} 'kubernetes>=28' 'libvirt-python>=9'"),
    ("pip install -e .", f"pip install -r {REQUIREMENTS}"),
    ('"generator/**", "schemas/**"', f'"{REQUIREMENTS}"'),
    ("ci/gitlab/gen-mr-note.py", "ci/gen-mr-note.py"),
    ("# Include from your .gitlab-ci.yml (`include: {local: ci/gitlab/gen.gitlab-ci.yml}`) "
     "or copy\n# it there; list", "# List"),
    ("[lab, k8s-lab]", "[]  # your environments, e.g. [site1, site2]"),
)

# In a team repo the GitHub workflows run for every environments/NAME/env.yaml, found by a
# first job: a fixed list would be empty at init, and an empty matrix fails every run.
LIST_ENVIRONMENTS = """\
jobs:
  environments:
    runs-on: ubuntu-latest
    outputs:
      names: ${{ steps.list.outputs.names }}
    steps:
      - uses: actions/checkout@v4
      - id: list
        run: >-
          python3 -c 'import json, pathlib; print("names=" + json.dumps(sorted(
          p.parent.name for p in pathlib.Path("environments").glob("*/env.yaml"))))'
          >> "$GITHUB_OUTPUT"
"""
GITHUB_SWAPS = (
    ("# Copy to .github/workflows/gen-pr.yml and list your environments under matrix.env.",
     "# Runs for every environments/NAME/env.yaml (none yet: then it does nothing)."),
    ("# Copy to .github/workflows/gen-converge.yml. Runs on", "# Runs on"),
    ("the cluster API; list your environments\n# under matrix.env.",
     "the cluster API, for every\n# environments/NAME/env.yaml."),
    ("jobs:\n", LIST_ENVIRONMENTS),
    ("    strategy:\n", "    needs: environments\n"
                      "    if: needs.environments.outputs.names != '[]'\n    strategy:\n"),
    ("        env: [lab, k8s-lab]\n",
     "        env: ${{ fromJSON(needs.environments.outputs.names) }}\n"),
)

# The publish workflow runs for the environments handed to Argo CD or Flux only: the same
# first job, keeping those whose env.yaml sets `engine: argocd` or `engine: flux`.
LIST_HANDED_OFF = LIST_ENVIRONMENTS.replace(
    'p.parent.name for p in pathlib.Path("environments").glob("*/env.yaml"))))\'',
    'p.parent.name for p in pathlib.Path("environments").glob("*/env.yaml")\n'
    '          if re.search(r"^\\s*engine:\\s*[\\x27\\"]?(argocd|flux)\\b", p.read_text(),\n'
    '          re.M))))\'').replace("import json, pathlib", "import json, pathlib, re")
PUBLISH_SWAPS = (
    ("# Copy to .github/workflows/gen-publish.yml and list the handed-off environments under\n"
     "# matrix.env. On", "# Runs for every environments/NAME/env.yaml whose kubernetes.engine is "
     "argocd or flux\n# (none yet: then it does nothing). On"),
    ("jobs:\n", LIST_HANDED_OFF),
    ("    strategy:\n", "    needs: environments\n"
                      "    if: needs.environments.outputs.names != '[]'\n    strategy:\n"),
    ("        env: [k8s-lab]\n",
     "        env: ${{ fromJSON(needs.environments.outputs.names) }}\n"),
)

GITIGNORE = """\
# gen's rendered trees are rebuilt from environments/ + lock/ (commit them only if you
# review or deploy from them; see README.md)
/rendered/
/gen-diff/
/.venv/
__pycache__/
"""


def _requirements() -> str:
    from generator import __version__

    # A placeholder that fails loudly: a bare `gen==X` would let pip take whatever public
    # package has that name.
    return (
        "# The gen this repo's CI installs (and you, in a virtual environment):\n"
        "#   python3 -m venv .venv && .venv/bin/pip install -r gen-requirements.txt\n"
        "# Replace the line below with where your team gets gen, pinned: a wheel URL,\n"
        "# git+https://<where your team keeps gen>@<tag>, or gen==VERSION from your own\n"
        "# package index only (the name gen on public indexes may be another project).\n"
        f"gen @ https://replace-me.invalid/gen-{__version__}-py3-none-any.whl\n")


README = """\
# GitOps repo for our clusters (managed with gen)

Each cluster is one environment: `environments/NAME/env.yaml`, a small YAML file on top of
a blueprint. gen compiles it into libvirt XML, boot-service configs, Ignition, cloud-init,
kubeadm and Kubernetes manifests; `lock/NAME.lock` pins every input so a render is
reproducible anywhere; pull requests are reviewed on what they change in the rendered tree;
merging converges the live hosts to it.

## The loop

```sh
python3 -m venv .venv && .venv/bin/pip install -r gen-requirements.txt   # edit it first
. .venv/bin/activate
gen new site1 --blueprint openshift-upi     # scaffold environments/site1 (asks questions)
gen validate env/site1                      # every problem at once, with file:line:col
gen render env/site1                        # -> rendered/site1/ (look, don't commit)
gen lock env/site1                          # pin images, OS artifacts, hashes
git checkout -b site1 && git add . && git commit -m "site1" && git push   # open a PR
```

CI on the pull request validates, renders with the committed lock (`--locked`), verifies
the hashes and posts `gen diff` as a comment: that comment is what reviewers approve. On
merge to main, CI runs `gen plan` and `gen converge --auto-approve`, one environment at a
time. Nothing is deleted without `--prune`; destroying a VM or disk also needs
`--allow-destroy`. Tell converge how to reach each helper, e.g. add
`--files-exec helper='ssh root@HELPER_IP' --files-target helper=/` to its step: without
that the helper's boot services are not looked at, and the plan says so.

## Layout

```
environments/   one folder per environment (env.yaml, plus files it ships, e.g. stream JSON)
blueprints/     your own blueprints; one named like a built-in replaces it (see its README)
lock/           one lockfile per environment; commit it with every change
gen-requirements.txt   which gen CI installs
```

Secrets never go into the repo: `pullSecret: {env: GEN_SECRET_PULL}` or `{file: PATH}`
references are filled in on the target at converge.
"""

BLUEPRINTS_README = """\
# Blueprints

gen ships the blueprints `openshift-upi`, `kubeadm` and `kolla-aio`. An environment names
one with `blueprint: NAME`; gen looks for `blueprints/NAME/blueprint.yaml` here first and
uses the built-in one only when there is none. So to change a built-in blueprint for this
repo, copy it here under the same name and edit it; to add a new one, use a new name.
`gen validate env/NAME` says which one it used ("blueprints/NAME" or "built-in").

A blueprint folder holds `blueprint.yaml` (kind: Blueprint, `defaults` under every
environment's own values), any files its defaults name (such as a CoreOS stream excerpt),
and optionally `template/` (a cookiecutter template for `gen new`). gen checks every answer
before the template sees it; a question gen does not know needs a rule (JSON Schema) under
`properties` in `template/answers.schema.json`. Answers are inserted as plain values, never
evaluated, and template hooks are not run. Blueprints must be real folders in this repo:
gen refuses one that is a symlink to somewhere else.
"""


def planned_files(ci: str) -> dict[str, str]:
    """Repo-relative path -> content of everything `gen init --ci CI` writes."""
    from generator.environment import REPO_MARKER
    from generator.resources import ci_template

    files = {
        REPO_MARKER: "# This folder is a gen repo: gen finds environments/, blueprints/ and "
                     "lock/ from here.\n",
        "README.md": README,
        ".gitignore": GITIGNORE,
        REQUIREMENTS: _requirements(),
        "environments/.gitkeep": "",
        "lock/.gitkeep": "",
        "blueprints/README.md": BLUEPRINTS_README,
        ".pre-commit-config.yaml": ci_template("pre-commit/.pre-commit-config.yaml").read_text(
            encoding="utf-8"),
    }
    if ci == "github":
        for name in ("gen-pr.yml", "gen-converge.yml"):
            files[f".github/workflows/{name}"] = _swapped(ci_template(
                f"github/{name}").read_text(encoding="utf-8"), GITHUB_SWAPS)
        files[".github/workflows/gen-publish.yml"] = _swapped(ci_template(
            "github/gen-publish.yml").read_text(encoding="utf-8"), PUBLISH_SWAPS)
    elif ci == "gitlab":
        files[".gitlab-ci.yml"] = ci_template("gitlab/gen.gitlab-ci.yml").read_text(
            encoding="utf-8")
        files["ci/gen-mr-note.py"] = ci_template("gitlab/gen-mr-note.py").read_text(
            encoding="utf-8")
    return {path: _for_a_team_repo(text) for path, text in files.items()}


def _for_a_team_repo(text: str) -> str:
    return _swapped(text, INSTALL_SWAPS)


def _swapped(text: str, swaps: tuple[tuple[str, str], ...]) -> str:
    for old, new in swaps:
        text = text.replace(old, new)
    return text


def write_repo(target: Path, files: dict[str, str]) -> None:
    """Write every file, or nothing when any of them (or a folder on its way) exists, leads
    out of `target` through a symlink, or cannot be written."""
    from generator.errors import UserError

    try:
        _check_target(target, files)
        _write_all(target, files)
    except OSError as exc:
        raise UserError(f"{target}: cannot write the repo: {exc.strerror or exc}",
                        "pick a folder you can write, with a shorter name") from None


def _check_target(target: Path, files: dict[str, str]) -> None:
    from generator.errors import UserError

    if os.path.lexists(target) and not target.is_dir():
        raise UserError(f"{target}: not a directory", "name a new or existing folder")
    escapes = sorted({str(p.relative_to(target)) for rel in files
                      for p in _folders_on_the_way(target, rel)
                      if os.path.lexists(p) and not inside(p, target)})
    if escapes:
        raise UserError(f"{target}: not writing through a symlink that leads outside the "
                        f"repository: {', '.join(escapes)}",
                        "make those real folders, or run it in another folder")
    clashes = [rel for rel in files if _taken(target, rel)]
    if clashes:
        raise UserError(
            f"{target}: not overwriting {', '.join(clashes)}; gen init would have written: "
            f"{', '.join(sorted(files))}",
            "run it in an empty folder, or move those files away first")


def _folders_on_the_way(target: Path, rel: str) -> list[Path]:
    """The folders below `target` that writing `rel` goes through (or makes)."""
    path = target / rel
    return [p for p in reversed(path.parents) if target in p.parents]


def _taken(target: Path, rel: str) -> bool:
    """True when `rel` exists, or one of its parent folders exists as something else."""
    path = target / rel
    if os.path.lexists(path):
        return True
    return any(os.path.lexists(p) and not p.is_dir() for p in path.parents
               if target in p.parents or p == target)


def _write_all(target: Path, files: dict[str, str]) -> None:
    """Write `files`; on a failure remove what this call made, so nothing is half-written."""
    made: list[Path] = []
    try:
        for rel, text in files.items():
            path = target / rel
            absolute = Path(os.path.abspath(target))  # noqa: PTH100 - lexical, like mkdir -p
            for folder in [*reversed(absolute.parents), absolute,
                           *_folders_on_the_way(target, rel)]:
                if not os.path.lexists(folder):
                    folder.mkdir()
                    made.append(folder)
            with path.open("x", encoding="utf-8") as handle:  # "x": never replace a file
                made.append(path)
                handle.write(text)
    except OSError:
        for path in reversed(made):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        raise


@click.command()
@click.argument("directory", required=False, default=".",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--ci", type=click.Choice(FORGES), default="github", show_default=True,
              help="The forge whose CI runs gen: its workflow is placed where it reads it.")
@FORMAT
def init(directory: Path, ci: str, fmt: str) -> None:
    """Make DIRECTORY (default: here) a GitOps repo managed with gen.

    \b
    Writes environments/, blueprints/ (with a README on overriding built-ins), lock/,
    the CI workflow (.github/workflows/ or .gitlab-ci.yml), .pre-commit-config.yaml,
    .gitignore, gen-requirements.txt and a README that explains the loop. Refuses to
    overwrite anything, and then lists what it would have written.

    \b
    Examples:
      gen init sites --ci gitlab
      cd sites && gen new site1 --blueprint openshift-upi
    """
    files = planned_files(ci)
    write_repo(directory, files)
    emit(fmt, {"directory": str(directory), "ci": ci, "written": sorted(files)},
         "\n".join([f"initialised {directory} for {ci} CI:",
                    *(f"  {rel}" for rel in sorted(files)),
                    "next: gen new NAME --blueprint openshift-upi (or kubeadm, kolla-aio)"]))
