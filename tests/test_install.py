"""gen as users install it: a wheel in a fresh venv far from the source tree, and the
README's first command with Debian's own /usr/bin/python3 (PEP 668).

Both are real installs (pip resolves gen's dependencies from the configured index; the pip
cache keeps reruns quick). The wheel is built once per session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
BLUEPRINTS = ("kolla-aio", "kubeadm", "openshift-upi")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would import the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "GEN_DEBUG")}
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600,
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def source_copy(dest: Path) -> Path:
    """The files git tracks (plus uncommitted edits), symlinks kept as symlinks: what a
    clone holds, without .venv, build/ or caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not os.path.lexists(src):
            continue  # deleted in the work tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = source_copy(base / "src")
    out = base / "dist"
    proc = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                str(src)], base, clean_env())
    assert proc.returncode == 0, proc.stderr
    (found,) = out.glob("gen-*.whl")
    return found


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) holding only the wheel and its own deps."""
    venv = tmp_path_factory.mktemp("venv") / "gen"
    assert run([sys.executable, "-m", "venv", str(venv)], venv.parent,
               clean_env()).returncode == 0
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                "--disable-pip-version-check", str(wheel)], venv.parent, clean_env())
    assert proc.returncode == 0, proc.stderr
    return venv


class Site:
    """A team's repo in a temp dir, driven by the installed `gen` only."""

    def __init__(self, venv: Path, where: Path) -> None:
        self.venv, self.where = venv, where
        self.env = clean_env(PATH=f"{venv / 'bin'}:/usr/bin:/bin", HOME=str(where.parent),
                             GEN_STORE=str(where.parent / "store"), **GIT_IDENTITY)

    def gen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.venv / "bin" / "gen"), *args], self.where, self.env)

    def git(self, *args: str) -> None:
        proc = run(["git", *args], self.where, self.env)
        assert proc.returncode == 0, proc.stderr


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture
def site(installed: Path, tmp_path: Path) -> Iterator[Site]:
    (tmp_path / "sites").mkdir()
    yield Site(installed, tmp_path / "sites")


def test_wheel_carries_the_data_and_imports_from_the_venv_only(installed: Path,
                                                               tmp_path: Path) -> None:
    probe = ("import generator, generator.resources as r; "
             "print(generator.__file__); print(r.data_dir()); "
             "print(','.join(r.builtin_blueprint_names()))")
    proc = run([str(installed / "bin" / "python"), "-c", probe], tmp_path, clean_env())
    module, data, names = proc.stdout.split()
    assert module.startswith(str(installed)) and data.startswith(str(installed))
    assert not Path(data).is_symlink()  # real copies, not links back to a checkout
    assert names == ",".join(BLUEPRINTS)
    for rel in ("schemas/blueprint.schema.json", "schemas/lock.schema.json",
                "schemas/answers.schema.json", "blueprints/openshift-upi/rhcos-4.16.json",
                "ci/github/gen-pr.yml", "ci/pre-commit/.pre-commit-config.yaml"):
        assert (Path(data) / rel).is_file(), rel


def test_installed_wheel_runs_the_whole_loop_in_a_new_repo(site: Site) -> None:
    """init, new (each built-in blueprint), validate, lock offline, render --locked, a
    commit, an edit and diff, with no source tree anywhere on the import path."""
    made = site.gen("init", "--ci", "github")
    assert made.returncode == 0, made.stderr
    assert (site.where / ".github/workflows/gen-pr.yml").is_file()
    for blueprint in BLUEPRINTS:
        name = f"s-{blueprint}"
        new = site.gen("new", name, "--blueprint", blueprint, "--no-input")
        assert new.returncode == 0, new.stderr
        valid = site.gen("validate", f"env/{name}")
        assert valid.returncode == 0, valid.stderr
        assert f"blueprint {blueprint} (built-in)" in valid.stdout
        lock = site.gen("lock", "--offline", f"env/{name}")
        assert lock.returncode == 0, lock.stderr
        rendered = site.gen("render", f"env/{name}", "--locked")
        if blueprint == "openshift-upi":  # ships its stream excerpt: pins everything offline
            assert rendered.returncode == 0, rendered.stderr
        else:  # images / a cloud image need the network: one line says what to run
            assert rendered.returncode == 4, rendered.stderr
            assert "run `gen lock ENV`" in rendered.stderr
            assert site.gen("render", f"env/{name}").returncode == 0
    site.git("init", "-q", "-b", "main")
    site.git("add", "-A")
    site.git("commit", "-q", "-m", "sites")
    edit = site.gen("set", "env/s-openshift-upi", "nodes[worker0].memory", "32GiB")
    assert edit.returncode == 0, edit.stderr
    diff = site.gen("diff", "env/s-openshift-upi", "--base", "HEAD")
    assert diff.returncode == 0, diff.stderr
    assert "worker0" in diff.stdout and "32" in diff.stdout


def test_user_blueprint_overrides_the_builtin_one(site: Site) -> None:
    assert site.gen("init", "--ci", "none").returncode == 0
    assert site.gen("new", "a", "--blueprint", "kubeadm", "--no-input").returncode == 0
    builtin = site.gen("validate", "env/a")
    assert "blueprint kubeadm (built-in)" in builtin.stdout, builtin.stderr
    data = Path(run([str(site.venv / "bin" / "python"), "-c",
                     "import generator.resources as r; print(r.data_dir())"],
                    site.where, site.env).stdout.strip())
    mine = site.where / "blueprints" / "kubeadm"
    shutil.copytree(data / "blueprints" / "kubeadm", mine)
    text = (mine / "blueprint.yaml").read_text()
    (mine / "blueprint.yaml").write_text(text.replace("kind: Blueprint",
                                                      "kind: Blueprint\n# ours", 1))
    valid = site.gen("validate", "env/a")
    assert valid.returncode == 0, valid.stderr
    assert "blueprint kubeadm (blueprints/kubeadm)" in valid.stdout


def readme_first_command() -> str:
    """The first line of README.md's first sh block, exactly as written."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    return block.group(1).splitlines()[0]


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs Debian's /usr/bin/python3")
def test_readme_first_command_works_with_debians_python(tmp_path: Path) -> None:
    command = readme_first_command()
    copy = source_copy(tmp_path / "checkout")
    env = clean_env(PATH="/usr/bin:/bin")  # python3 is Debian's own, externally managed
    managed = list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    assert managed, "expected a PEP 668 marker: this test proves the README works under it"
    proc = run(["bash", "-c", command], copy, env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (copy / "rendered" / "lab" / "hypervisors" / "hv1").is_dir()
    venv_python = (copy / ".venv" / "bin" / "python").resolve()
    assert venv_python.parent == SYSTEM_PYTHON.resolve().parent  # the venv is Debian's python
