"""`gen render`'s use of the render cache (generator/render_cache.py) with a real store.

A second render of unchanged inputs reads the tree back from `<store>/renders/`; a change to
the environment, the lock or the generator's sources names another entry; an entry that
does not verify, or that another user could have written, is never used; everything a
render reports (loader warnings, lock notes, --locked's exit 4, JSON) is the same on a hit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

import pytest
from clirun import gen

from generator import render_cache
from generator.errors import EXIT_LOCK, EXIT_OK

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(repo: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The monorepo's environments, blueprints and locks; a store of its own."""
    shutil.copytree(ROOT / "lock", repo / "lock", dirs_exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != render_cache.SWITCH}
    return repo, {**env, "GEN_STORE": str(tmp_path / "store")}


def entries(env: dict[str, str]) -> dict[Path, int]:
    """Entry -> mtime (ns): a hit leaves its entry as it was."""
    where = Path(env["GEN_STORE"]) / "renders"
    if not where.is_dir():
        return {}
    return {p: p.stat().st_mtime_ns for p in where.iterdir() if not p.name.startswith(".")}


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def render(site: tuple[Path, dict[str, str]], env_ref: str, out: Path, *extra: str,
           env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = gen("render", env_ref, "--out", str(out), *extra, cwd=site[0], env=env or site[1])
    return result.code, result.out, result.err


def plant(entry: Path, name: str) -> None:
    """Rewrite a sound entry with one more file: only a render that reads it shows the file."""
    header, tree = render_cache.decode(entry.read_bytes())
    entry.write_bytes(b"".join(render_cache.encode(header, tree | {name: b"planted\n"})))


def test_a_hit_gives_the_tree_a_full_render_gives(site: tuple[Path, dict[str, str]],
                                                  tmp_path: Path) -> None:
    code, _, _ = render(site, "env/lab", tmp_path / "full", "--no-cache")
    assert code == EXIT_OK and entries(site[1]) == {}  # --no-cache writes nothing
    assert render(site, "env/lab", tmp_path / "miss")[0] == EXIT_OK
    stored = entries(site[1])
    assert len(stored) == 1
    code, out, _ = render(site, "env/lab", tmp_path / "hit", "--format", "json")
    assert code == EXIT_OK and entries(site[1]) == stored  # read, not rewritten
    assert files(tmp_path / "hit") == files(tmp_path / "full") == files(tmp_path / "miss")
    payload = json.loads(out)
    assert payload["files"] == len(files(tmp_path / "full")) - 1  # minus the writer's marker
    assert len(payload["added"]) == payload["files"]
    check = render(site, "env/lab", tmp_path / "hit", "--check")
    assert check[0] == EXIT_OK and "up to date" in check[1]


def test_the_cache_is_really_read(site: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    render(site, "env/lab", tmp_path / "a")
    (entry,) = entries(site[1])
    plant(entry, "planted/by-the-test.txt")
    assert render(site, "env/lab", tmp_path / "b")[0] == EXIT_OK
    assert (tmp_path / "b/planted/by-the-test.txt").read_bytes() == b"planted\n"
    stale = render(site, "env/lab", tmp_path / "a", "--check")  # the hit's tree vs the disk
    assert stale[0] == 1 and "+ planted/by-the-test.txt" in stale[1]
    off = {**site[1], render_cache.SWITCH: "off"}
    assert render(site, "env/lab", tmp_path / "c", env=off)[0] == EXIT_OK
    assert not (tmp_path / "c/planted").exists()


@pytest.mark.parametrize("damage", ["altered", "truncated", "group-writable"])
def test_an_entry_that_is_not_sound_or_not_ours_is_rendered_again(
        site: tuple[Path, dict[str, str]], tmp_path: Path, damage: str) -> None:
    render(site, "env/lab", tmp_path / "a")
    (entry,) = entries(site[1])
    plant(entry, "planted/by-the-test.txt")
    data = entry.read_bytes()
    if damage == "altered":
        entry.write_bytes(data.replace(b"planted\n", b"Planted\n"))
    elif damage == "truncated":
        entry.write_bytes(data[:-3])
    else:
        entry.chmod(0o664)  # another user could have written it: never trusted
    assert render(site, "env/lab", tmp_path / "b")[0] == EXIT_OK
    assert files(tmp_path / "b") == files(tmp_path / "a")
    rewritten = entries(site[1])
    assert list(rewritten) == [entry]
    header, tree = render_cache.decode(entry.read_bytes())  # sound again, the real tree
    assert "planted/by-the-test.txt" not in tree and header["env"] == "lab"
    assert entry.stat().st_mode & 0o077 == 0


def test_changed_inputs_name_another_entry(site: tuple[Path, dict[str, str]],
                                           tmp_path: Path) -> None:
    repo, env = site
    render(site, "env/lab", tmp_path / "a")
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text() + "\n# a comment is an input too\n")
    render(site, "env/lab", tmp_path / "a")
    assert len(entries(env)) == 2
    lock = repo / "lock/lab.lock"
    lock.write_bytes(lock.read_bytes() + b"\n")  # not canonical: refused, so never stored
    for _ in range(2):
        code, _, err = render(site, "env/lab", tmp_path / "a")
        assert code == EXIT_LOCK and "not in canonical form" in err
    assert len(entries(env)) == 2
    lock.unlink()
    render(site, "env/lab", tmp_path / "a")
    assert len(entries(env)) == 3
    blueprint = next((repo / "blueprints").glob("*/blueprint.yaml"))
    blueprint.write_text(blueprint.read_text() + "\n# and a blueprint\n")
    render(site, "env/lab", tmp_path / "a")
    assert len(entries(env)) == 4


def test_the_generator_sources_are_in_the_key(site: tuple[Path, dict[str, str]]) -> None:
    repo, _ = site
    version, sources = render_cache.running_sources()
    assert "pipeline.py" in sources and "families/__init__.py" in sources
    # data linked into the package in a checkout (copied into a wheel) is an input too
    assert any(k.startswith("_data/schemas/") for k in sources)
    assert any(k.startswith("_data/blueprints/") for k in sources)
    rel = PurePosixPath("environments/lab")
    key = render_cache.render_key(version, sources, repo, rel, None)
    assert render_cache.render_key(version, sources, repo, rel, None) == key
    edited = {**sources, "families/dns.py": "0" * 64}
    assert render_cache.render_key(version, edited, repo, rel, None) != key
    assert render_cache.render_key("9.9.9", sources, repo, rel, None) != key


def test_a_copy_of_the_generator_hits_and_an_edited_one_misses(
        site: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """The key holds the generator's sources by content: the same package elsewhere reads
    the entry, one edited source file names another."""
    render(site, "env/lab", tmp_path / "a")
    stored = entries(site[1])
    install = tmp_path / "install"
    shutil.copytree(ROOT / "generator", install / "generator",
                    ignore=shutil.ignore_patterns("__pycache__"))
    other = {**site[1], "PYTHONPATH": str(install)}
    assert render(site, "env/lab", tmp_path / "b", env=other)[0] == EXIT_OK
    assert entries(site[1]) == stored  # a hit
    dns = install / "generator/families/dns.py"
    dns.write_text(dns.read_text() + "\n# an edited renderer\n")
    assert render(site, "env/lab", tmp_path / "c", env=other)[0] == EXIT_OK
    assert len(entries(site[1])) == 2
    assert files(tmp_path / "c") == files(tmp_path / "a")


def test_warnings_and_lock_notes_survive_a_hit(site: tuple[Path, dict[str, str]],
                                               tmp_path: Path) -> None:
    first = render(site, "env/k8s-lab", tmp_path / "a")
    stored = entries(site[1])
    second = render(site, "env/k8s-lab", tmp_path / "b")
    assert entries(site[1]) == stored  # a hit
    assert first[0] == second[0] == EXIT_OK
    assert first[2] == second[2]
    assert "single control-plane node has no etcd redundancy" in second[2]  # loader warning
    assert "cni/flannel" in second[2] and "is not pinned" in second[2]  # lock note


def test_locked_is_checked_on_a_hit(site: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = site
    assert render(site, "env/lab", tmp_path / "a", "--locked")[0] == EXIT_OK
    stored = entries(env)
    assert render(site, "env/lab", tmp_path / "b", "--locked")[0] == EXIT_OK
    assert entries(env) == stored  # a locked render that passed is a hit
    env_file = repo / "environments/lab/env.yaml"
    old = "{name: worker1, role: worker, hypervisor: hv1,"
    env_file.write_text(env_file.read_text().replace(old, old[:-1] + ", vcpu: 6,"))
    assert render(site, "env/lab", tmp_path / "c")[0] == EXIT_OK  # unlocked: stored
    expected = render(site, "env/lab", tmp_path / "d", "--locked", "--no-cache")
    assert expected[0] == EXIT_LOCK
    for _ in range(2):  # the unlocked entry is never a locked render's
        assert render(site, "env/lab", tmp_path / "d", "--locked") == expected
