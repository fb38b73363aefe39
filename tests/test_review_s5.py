"""Adversarial review of session 5's work: each test is a confirmed finding (fixed, or
xfail strict with the reason) or a probe of an attack that held.

Render cache (generator/render_cache.py, pipeline.render_cached), the staged first render
(generator/writer.py), gen's own libvirt XML writer (families/escape.py) and release.txt
parsing (lock/resolve.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from clirun import gen

from generator import pipeline, render_cache
from generator.errors import EXIT_OK

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         ) -> tuple[Path, dict[str, str]]:
    shutil.copytree(ROOT / "lock", repo / "lock", dirs_exist_ok=True)
    monkeypatch.delenv(render_cache.SWITCH, raising=False)
    env = {k: v for k, v in os.environ.items() if k != render_cache.SWITCH}
    return repo, {**env, "GEN_STORE": str(tmp_path / "store")}


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def render(site: tuple[Path, dict[str, str]], out: Path, *extra: str) -> int:
    return gen("render", "env/lab", "--out", str(out), *extra, cwd=site[0], env=site[1]).code


def more_helper_cpus(blueprint: Path) -> None:
    text = blueprint.read_text()
    assert "helper: {vcpu: 4," in text
    blueprint.write_text(text.replace("helper: {vcpu: 4,", "helper: {vcpu: 6,"))


# --- render cache --------------------------------------------------------------------------

def test_a_blueprint_linked_in_from_elsewhere_in_the_repo_is_in_the_key(
        site: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """blueprints/NAME may be a symlink to a folder elsewhere in the repo (the loader allows
    it); the key hashed blueprints/ without following it, so an edit of the blueprint
    served the tree of the old one (and skipped --locked's refusal of the stale lock)."""
    repo = site[0]
    (repo / "vendored").mkdir()
    (repo / "blueprints/openshift-upi").rename(repo / "vendored/openshift-upi")
    (repo / "blueprints/openshift-upi").symlink_to("../vendored/openshift-upi")
    assert render(site, tmp_path / "first") == EXIT_OK
    more_helper_cpus(repo / "vendored/openshift-upi/blueprint.yaml")
    assert render(site, tmp_path / "full", "--no-cache") == EXIT_OK
    assert files(tmp_path / "full") != files(tmp_path / "first")  # the edit shows
    assert render(site, tmp_path / "cached") == EXIT_OK
    assert files(tmp_path / "cached") == files(tmp_path / "full")


def test_an_input_edited_during_the_render_is_not_stored_under_the_old_key(
        site: tuple[Path, dict[str, str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is taken before the render reads its inputs: an edit in between rendered the
    new inputs under the old inputs' key, and the old inputs then read that tree back."""
    repo, store = site[0], tmp_path / "store"
    blueprint = repo / "blueprints/openshift-upi/blueprint.yaml"
    original = blueprint.read_bytes()
    real = pipeline.render_with_lock

    def edited_meanwhile(*args: object, **kwargs: object) -> pipeline.Rendered:
        more_helper_cpus(blueprint)  # a `git checkout` in another terminal, say
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "render_with_lock", edited_meanwhile)
    pipeline.render_cached("env/lab", repo, store)
    monkeypatch.setattr(pipeline, "render_with_lock", real)
    blueprint.write_bytes(original)
    truth = pipeline.render_cached("env/lab", repo, store, cache=False).tree
    assert pipeline.render_cached("env/lab", repo, store).tree == truth


def _small_address_space() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails, not OOMs


@pytest.mark.parametrize("where", ["blueprints/evil", "environments/lab/evil"])
def test_a_link_to_a_device_does_not_stop_the_render(site: tuple[Path, dict[str, str]],
                                                     tmp_path: Path, where: str) -> None:
    """The key read every file under environments/<env>/ and blueprints/ through symlinks:
    a committed link to /dev/zero (or a FIFO) made every render with the cache on run out
    of memory (exit 70) or block, where the render itself never reads that file."""
    import subprocess
    import sys

    (site[0] / where).symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-m", "generator", "render", "env/lab", "--out",
                           str(tmp_path / "out")], cwd=site[0], env=site[1],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_small_address_space)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert (Path(site[1]["GEN_STORE"]) / "renders").is_dir()  # the cache was on


# --- gen set -------------------------------------------------------------------------------

def test_set_of_a_new_nested_key_keeps_the_next_section_comment_outside(repo: Path) -> None:
    """`gen set` adds a key inside its section, but a new mapping took the section's
    closing blank line and comment between itself and its child: `libvirt:` / blank /
    `# next` / `mode: ...` (still YAML, but the comment now reads as part of the network)."""
    from test_edit import COMMENTED

    path = repo / "environments/lab/env.yaml"
    path.write_text(COMMENTED.replace("\nhypervisors:", "\n# the hosts\nhypervisors:"))
    result = gen("set", "env/lab", "networks[lan].libvirt.mode", "isolated", cwd=repo)
    assert result.code == 0, result.err
    assert ("    bridge: br0\n    libvirt:\n        mode: isolated\n\n# the hosts\nhypervisors:"
            in path.read_text()), path.read_text()


def test_a_deeply_nested_folder_is_no_internal_error(site: tuple[Path, dict[str, str]],
                                                     tmp_path: Path) -> None:
    """The key's walk recursed once per folder level: a PR adding a folder 1,200 deep under
    blueprints/ made every render with the cache on exit 70 (RecursionError)."""
    fds = [os.open(site[0] / "blueprints", os.O_RDONLY)]
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=fds[-1])
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        result = gen("render", "env/lab", "--out", str(tmp_path / "out"), cwd=site[0],
                     env=site[1])
    finally:  # pytest's own clean-up recurses per level too: unlinked here, bottom up
        for fd in reversed(fds[:-1]):
            os.rmdir("d", dir_fd=fd)
        for fd in fds:
            os.close(fd)
    assert result.code == EXIT_OK, result.err
    assert (Path(site[1]["GEN_STORE"]) / "renders").is_dir()


def test_links_that_loop_are_described_once(site: tuple[Path, dict[str, str]],
                                            tmp_path: Path) -> None:
    """Folders linking each other (all inside the repo) end the key's walk, quickly."""
    shared = site[0] / "vendored"
    for name in "abcdefgh":
        (shared / name).mkdir(parents=True)
    for name in "abcdefgh":
        for other in "abcdefgh":
            (shared / name / other).symlink_to(f"../{other}")
    (site[0] / "blueprints/vendored").symlink_to("../vendored")
    result = gen("render", "env/lab", "--out", str(tmp_path / "out"), cwd=site[0],
                 env=site[1], timeout=60)
    assert result.code == EXIT_OK, result.err


def test_gen_diff_stores_no_working_tree_edited_while_it_renders(
        site: tuple[Path, dict[str, str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """gen diff's head is the working tree by default: an edit while it rendered was stored
    under the key of the inputs before it, and served to the next diff of those inputs."""
    from pathlib import PurePosixPath

    from generator.diff import sides

    monkeypatch.setenv("GEN_STORE", str(tmp_path / "store"))
    repo = site[0]
    blueprint = repo / "blueprints/openshift-upi/blueprint.yaml"
    original = blueprint.read_bytes()
    args = (sides.WORKING_TREE, None, repo, PurePosixPath("environments/lab"))
    running = sides.running_generator()
    real = sides.render_side

    def edited_meanwhile(*a: object, **k: object) -> object:
        more_helper_cpus(blueprint)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(sides, "render_side", edited_meanwhile)
    found = sides._look_up(args, running)
    assert found.side is None
    sides._render_and_keep(args, found)
    monkeypatch.setattr(sides, "render_side", real)
    blueprint.write_bytes(original)
    truth = real(*args).tree
    again = sides._look_up(args, running)
    assert again.side is None or again.side.tree == truth


def test_an_upgraded_library_names_another_entry(site: tuple[Path, dict[str, str]],
                                                 tmp_path: Path) -> None:
    """The key named gen's files and Python's version but not the libraries a render parses
    and checks with: after an upgrade (PyYAML, jsonschema...) the old tree or the old
    verdict was served. Here a copy of fastjsonschema first on the path is "upgraded"."""
    import subprocess
    import sys

    import fastjsonschema

    shim = tmp_path / "site"
    shutil.copytree(Path(fastjsonschema.__file__).parent, shim / "fastjsonschema")
    probe = ("from pathlib import Path; from generator.pipeline import render_key; "
             "import fastjsonschema, sys; assert fastjsonschema.__file__.startswith(sys.argv[1]);"
             " print(render_key('env/lab', Path.cwd(), None, False))")
    env = {**site[1], "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}

    def key() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(shim)], cwd=site[0], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    before = key()
    assert before != "None" and key() == before  # stable while nothing changes
    (shim / "fastjsonschema/__init__.py").write_text(
        (shim / "fastjsonschema/__init__.py").read_text() + "\n# the next release\n")
    assert key() != before
