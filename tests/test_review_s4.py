"""Adversarial review of this session's merged work: the HTML diff report, the Argo CD / Flux
hand-off and the kubeadm converge phases, each attacked as a hostile pull-request author or
a careless operator would. Each test is an escape that was tried; a still-open one is
xfail(strict=True) with its reason."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from clirun import gen
from gitops_env import ENV_FILE, RENDERED_URL, hand_off

from generator import graph
from generator.commands.graph import to_svg
from generator.diff.htmlpage import svg_for_page
from generator.environment import load_environment
from generator.reconcile.files import Target
from generator.reconcile.kubeadm_phases import ClusterState, KubeadmProvider

ROOT = Path(__file__).resolve().parent.parent
SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


# -- HTML report: the picture from dot ---------------------------------------------------------

@pytest.mark.parametrize("svg", [
    # XML ends a processing instruction at `?>`, HTML a bogus comment at the first `>`: the
    # parser that checks and the browser that shows would disagree about what is markup
    f"<svg {SVG_NS}><g><?x a><img src=x onerror=alert(1)>?></g></svg>",
    f"<svg {SVG_NS}><g/></svg><?x a><a href=https://evil.example/>claim</a>?>",
    f"<svg {SVG_NS}><foreignObject><div>x</div></foreignObject></svg>",
    f'<svg {SVG_NS}><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    f'<svg {SVG_NS}><text xlink:href="javascript:alert(1)">x</text></svg>',
    f'<svg {SVG_NS}><rect style="fill:url(https://evil.example/x)"/></svg>',
    f'<svg {SVG_NS}><rect onclick="alert(1)"/></svg>',
    f"<svg {SVG_NS}><style>rect{{fill:url(https://evil.example/x)}}</style></svg>",
], ids=["pi-inside", "pi-after-root", "foreignObject", "a-javascript", "xlink-href", "css-url",
        "handler", "style-element"])
def test_a_picture_with_more_than_drawing_is_not_inlined(svg: str) -> None:
    assert svg_for_page(svg) is None


HOSTILE_LABELS = [
    '</text><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject>',
    '"><a xlink:href="javascript:alert(1)">x</a>',
    "<?x a><img src=x onerror=alert(1)>?>",
    "&lt;script&gt;&#60;img src=x&#62;",
    "\\N\\G\\L url(https://evil.example/x)",
    "<<b>x</b>>",
]


def test_real_dot_draws_hostile_labels_as_text_only() -> None:
    """Every label reaches dot through `dot_string`; dot's SVG then carries the label as
    text (or is refused as a whole), never as an element of its own."""
    nodes = "\n".join(f"  n{i} [label={graph.dot_string(label)}];"
                      for i, label in enumerate(HOSTILE_LABELS))
    svg = to_svg(f"digraph G {{\n{nodes}\n}}\n")
    page = svg_for_page(svg)
    assert page is not None, svg
    for marker in ("<foreignObject", "<a ", "<img", "<script", "<b>", "<?x"):
        assert marker not in page, (marker, page)
    drawn = "".join(ElementTree.fromstring(page).itertext())
    assert "foreignObject" in drawn and "javascript:alert(1)" in drawn  # as text


# -- gitops: values from the environment -------------------------------------------------------

@pytest.mark.parametrize("gitops", [
    {"url": "ssh://-oProxyCommand@git.example.com/infra/r.git"},
    {"url": RENDERED_URL, "branch": "main\nspec: {}"},
    {"url": RENDERED_URL, "branch": "--upload-pack=touch"},
    {"url": RENDERED_URL, "path": "a/../../etc"},
    {"url": RENDERED_URL, "namespace": "argocd\n  labels: {}"},
    {"url": "https://git.example.com/r.git#main"},
    {"url": "file:///etc"},
    {"url": "ext::sh -c id"},
], ids=["ssh-user-option", "branch-yaml", "branch-option", "path-escape", "ns-yaml",
        "url-fragment", "file-url", "ext-url"])
def test_hostile_gitops_values_are_one_located_line(gitops: dict[str, str], repo: Path) -> None:
    """A value that could become a command-line option of the engine's git/ssh, or new YAML
    in the bootstrap object, is refused where it was written."""
    where = hand_off(repo, "argocd", gitops)
    done = gen("validate", "env/k8s-lab", cwd=repo)
    assert done.code == 1, done.out + done.err
    lines = done.err.strip().splitlines()
    gitops_line = f"{ENV_FILE}:{int(where.rpartition(':')[2]) + 1}:"  # the line after engine
    assert len(lines) == 1 and lines[0].startswith(gitops_line), done.err
    assert "Traceback" not in done.err and "at kubernetes.gitops." in lines[0]
    assert ENV_FILE in lines[0]


# -- kubeadm: the bootstrap token --------------------------------------------------------------

def _recorder(tmp: Path) -> tuple[Path, Path]:
    """A command prefix standing in for ssh: logs the command line it was given, then runs
    nothing (exit 0) -- what `ps` on either machine would show."""
    log = tmp / "argv.log"
    script = tmp / "prefix"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def test_a_renewed_token_never_reaches_a_command_line(tmp_path: Path) -> None:
    """Any local user reads a command line (ps, /proc/PID/cmdline) of ssh here and of kubeadm
    on the node: the token's secret travels in a 0600 config file, deleted after the run
    (test_a_late_join_creates_the_expired_token_again_first sees it created on a node)."""
    env = load_environment("env/k8s-lab", ROOT).model
    first = env.nodes_with_role("master")[0]
    prefix, log = _recorder(tmp_path)
    provider = KubeadmProvider(root=tmp_path / "state", enabled=True,
                               targets={first.name: Target(prefix=(str(prefix),))},
                               node_wait=5, poll=0.1)
    state = ClusterState(tmp_path / "state" / env.name)
    state.ensure()
    data = state.join_data()
    state.remember("issued", str(int(time.time()) - 25 * 3600))
    provider._fresh_token(env, state, first, state.join_data())
    argv = log.read_text()
    assert "kubeadm token create --config /var/lib/gen/kubeadm/token.yaml" in argv  # it ran
    assert argv.rstrip().endswith("rm -f /var/lib/gen/kubeadm/token.yaml")  # and cleaned up
    secret = data["token"].split(".")[1]
    assert secret not in argv, argv


def test_join_data_file_is_private_and_never_in_the_tree(tmp_path: Path) -> None:
    state = ClusterState(tmp_path / "state" / "k8s-lab")
    state.ensure()
    data = state.join_data()
    secrets = tmp_path / "state" / "k8s-lab" / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.parent.stat().st_mode) == 0o700
    assert json.loads(secrets.read_text())["token"] == data["token"]


def test_a_leftover_tmp_file_never_widens_the_join_data(tmp_path: Path) -> None:
    """A `secrets.json.tmp` left world-readable (a state dir copied with `cp -r`, an
    interrupted write under another umask) must not carry the token out at 0644."""
    root = tmp_path / "state" / "k8s-lab"
    state = ClusterState(root)
    state.ensure()
    (root / "secrets.json.tmp").write_text("{}")
    (root / "secrets.json.tmp").chmod(0o644)
    state.join_data()
    assert stat.S_IMODE((root / "secrets.json").stat().st_mode) == 0o600


# -- a new user from the docs ------------------------------------------------------------------

def test_a_repo_made_by_gen_init_can_publish_for_an_engine(tmp_path: Path) -> None:
    done = gen("init", str(tmp_path / "site"), cwd=tmp_path)
    assert done.code == 0, done.err
    workflows = tmp_path / "site" / ".github" / "workflows"
    assert (workflows / "gen-pr.yml").is_file()
    publish = workflows / "gen-publish.yml"
    text = publish.read_text()
    assert publish.is_file() and "pip install -r gen-requirements.txt" in text
    assert "pip install -e" not in text and "k8s-lab" not in text  # gen's own names gone
