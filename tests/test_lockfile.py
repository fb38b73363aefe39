"""The lockfile end to end through the real CLI: lock, update, render --locked, verify.

Everything here runs offline: lab's boot artifacts come from the stream metadata shipped
beside its env.yaml, so the lock pins real RHCOS URLs and sha256 without a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import gen

from generator.errors import EXIT_LOCK, EXIT_OK
from generator.lock import lockfile, nar
from generator.lock.lockfile import TamperedLock

ROOT = Path(__file__).resolve().parent.parent
KERNEL_SHA = "eaa9815207af328d91984e63b3cd55536a3d1e200694daab5aab313c084829ed"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GEN_STORE": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}


def lock_data(repo: Path, name: str = "lab") -> dict:
    return json.loads((repo / "lock" / f"{name}.lock").read_text())


def test_lock_pins_stream_artifacts_canonically(repo: Path, env: dict[str, str]) -> None:
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    text = (repo / "lock" / "lab.lock").read_bytes()
    data = json.loads(text)
    assert text == (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    assert b"\r" not in text and text.endswith(b"}\n")
    kernel = data["inputs"]["os/rhcos-live-kernel"]
    assert kernel["locked"]["sha256"] == KERNEL_SHA
    assert kernel["locked"]["location"].endswith("-live-kernel-x86_64")
    assert kernel["original"]["stream"] == {"file": "rhcos-4.16.json", "artifact": "kernel",
                                            "arch": "x86_64", "platform": "metal",
                                            "format": "pxe"}
    assert data["inputs"]["environment"] == {
        "path": "environments/lab", "narHash": nar.source_hash(repo / "environments" / "lab")}
    assert set(data["outputs"]["subtrees"]) >= {"hypervisors/hv1", "hosts/helper"}
    assert lockfile.schema_problems(data) == []
    again = gen("lock", "env/lab", cwd=repo, env=env)
    assert again.code == EXIT_OK and "unchanged" in again.out
    assert (repo / "lock" / "lab.lock").read_bytes() == text


def _move_kernel(repo: Path, new_sha: str) -> None:
    stream = repo / "environments" / "lab" / "rhcos-4.16.json"
    stream.write_text(stream.read_text().replace(KERNEL_SHA, new_sha))


def test_lock_never_re_resolves_update_does_with_minimal_churn(repo: Path,
                                                               env: dict[str, str]) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    before = lock_data(repo)
    _move_kernel(repo, "ab" * 32)
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    kept = lock_data(repo)
    assert kept["inputs"]["os/rhcos-live-kernel"] == before["inputs"]["os/rhcos-live-kernel"]
    result = gen("update", "env/lab", "rhcos-live-kernel", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    assert f"sha256:{KERNEL_SHA} ->" in result.out and f"sha256:{'ab' * 32}" in result.out
    after = lock_data(repo)
    changed = {k for k in before["inputs"] if before["inputs"][k] != after["inputs"][k]}
    assert changed == {"os/rhcos-live-kernel", "environment"}
    assert after["generator"] == before["generator"]
    assert after["inputs"]["os/rhcos-live-kernel"]["locked"]["sha256"] == "ab" * 32


def test_update_rejects_unknown_input(repo: Path, env: dict[str, str]) -> None:
    result = gen("update", "env/lab", "image/nope", cwd=repo, env=env)
    assert result.code == 1 and "not an input of this environment" in result.err
    assert "os/rhcos-live-kernel" in result.err


def test_render_locked_fails_when_the_lock_would_change(repo: Path, env: dict[str, str]) -> None:
    missing = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert missing.code == EXIT_LOCK and "lock/lab.lock does not exist" in missing.err
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    ok = gen("render", "env/lab", "--frozen", cwd=repo, env=env)
    assert ok.code == EXIT_OK, ok.err
    env_yaml = repo / "environments" / "lab" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("ip: 192.168.20.162", "ip: 192.168.20.163"))
    stale = gen("render", "env/lab", "--locked", "--out", str(repo / "other"), cwd=repo, env=env)
    assert stale.code == EXIT_LOCK
    assert "input environment (environments/lab):" in stale.err
    assert "output hypervisors/hv1:" in stale.err or "output hosts/helper:" in stale.err
    assert not (repo / "other").exists()
    env_yaml.write_text(env_yaml.read_text().replace("artifact: rootfs}", "artifact: rootfs, "
                                                     "format: pxe, arch: aarch64}"))
    moved = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert moved.code == EXIT_LOCK
    assert "input os/rhcos-live-rootfs: the environment now says" in moved.err


def test_verify_passes_then_detects_a_tampered_rendered_file(repo: Path,
                                                             env: dict[str, str]) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    assert gen("render", "env/lab", "--locked", cwd=repo, env=env).code == EXIT_OK
    ok = gen("verify", "env/lab", cwd=repo, env=env)
    assert ok.code == EXIT_OK and "rendered/lab matches" in ok.out, ok.err
    victim = next((repo / "rendered" / "lab" / "hypervisors" / "hv1").rglob("*.xml"))
    victim.write_bytes(victim.read_bytes().replace(b"<", b"< ", 1))
    bad = gen("verify", "env/lab", "--format", "json", cwd=repo, env=env)
    assert bad.code == EXIT_LOCK
    assert "was modified after rendering" in bad.err and "hypervisors/hv1:" in bad.err
    assert f"~ {victim.relative_to(repo / 'rendered' / 'lab').as_posix()}" in bad.err
    victim.chmod(0o755)  # the executable bit alone is a change too
    assert gen("render", "env/lab", cwd=repo, env=env).code == EXIT_OK
    assert gen("verify", "env/lab", cwd=repo, env=env).code == EXIT_OK


def test_verify_detects_an_entry_that_holds_no_file(repo: Path, env: dict[str, str]) -> None:
    """An empty directory changes the directory's NAR though no file changed: verify still
    refuses it (it compares the directory with the render rather than hashing it)."""
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    assert gen("render", "env/lab", cwd=repo, env=env).code == EXIT_OK
    (repo / "rendered" / "lab" / "hosts" / "empty").mkdir()
    bad = gen("verify", "env/lab", cwd=repo, env=env)
    assert bad.code == EXIT_LOCK, bad.err
    assert "was modified after rendering" in bad.err and "an empty directory" in bad.err
    (repo / "rendered" / "lab" / "hosts" / "empty").rmdir()
    assert gen("verify", "env/lab", cwd=repo, env=env).code == EXIT_OK


@pytest.mark.parametrize("tamper, message", [
    (lambda t: t.replace('"version": 2', '"version": 3'), "at version"),
    (lambda t: t.replace(KERNEL_SHA, KERNEL_SHA[:-1] + "g"), "os/rhcos-live-kernel.locked.sha256"),
    (lambda t: t.replace(KERNEL_SHA, "0" * 64), "input os/rhcos-live-kernel: the lock pins"),
    (lambda t: t.replace("\n  ", "\n   ", 1), "not in canonical form"),
    (lambda t: t[:-3], "not JSON"),
    (None, "would change"),
])
def test_verify_detects_a_tampered_lock(repo: Path, env: dict[str, str], tamper, message) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    path = repo / "lock" / "lab.lock"
    text = path.read_text()
    if message == "would change":  # a well-formed but wrong subtree hash
        data = json.loads(text)
        data["outputs"]["subtrees"]["hosts/helper"] = nar.tree_hash({"x": b"y"})
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        message = "output hosts/helper:"
    else:
        path.write_text(tamper(text))
    result = gen("verify", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_LOCK, result.err
    assert message in result.err, result.err
    assert "Traceback" not in result.err


def test_an_image_pinned_to_another_repository_is_inconsistent() -> None:
    data = {"version": 2, "generator": {"version": "0", "schema": "gen/v1"},
            "inputs": {"environment": {"path": "e", "narHash": nar.tree_hash({})},
                       "blueprint": {"path": "b", "narHash": nar.tree_hash({})},
                       "image/web": {"original": "docker.io/library/nginx:1",
                                     "locked": "docker.io/evil/nginx@sha256:" + "1" * 64}},
            "outputs": {"narHash": nar.tree_hash({}), "subtrees": {}}}
    with pytest.raises(TamperedLock) as info:
        lockfile.from_data(data)
    assert "is not in the repository of docker.io/library/nginx:1" in "\n".join(info.value.lines())
    data["inputs"]["image/web"]["locked"] = "docker.io/library/nginx@sha256:" + "1" * 64
    assert lockfile.from_data(data).inputs["image/web"].locked.endswith("1" * 64)


def test_k8s_lab_offline_lock_leaves_network_inputs_unpinned(repo: Path,
                                                             env: dict[str, str]) -> None:
    result = gen("lock", "env/k8s-lab", "--offline", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    for key in ("image/registry", "image/tomcat", "manifest/cni/flannel"):
        assert f"warning: {key} left unpinned" in result.err
    data = lock_data(repo, "k8s-lab")
    assert not any(k.startswith(("image/", "manifest/")) for k in data["inputs"])
    online = gen("lock", "env/k8s-lab", cwd=repo, env=env)
    assert online.code == 1 and "cannot reach" in online.err
    locked = gen("render", "env/k8s-lab", "--locked", cwd=repo, env=env)
    assert locked.code == EXIT_LOCK and "input image/registry: not in the lock" in locked.err
    assert gen("render", "env/k8s-lab", cwd=repo, env=env).code == EXIT_OK


def _copy_repo(dest: Path) -> Path:
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_reproducible_across_locale_tz_umask_hashseed_and_path(tmp_path: Path) -> None:
    outputs = []
    variants = [
        {"TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"},
        {"TZ": "Pacific/Kiritimati", "LANG": "tr_TR.UTF-8", "LC_ALL": "", "PYTHONHASHSEED": "4242"},
    ]
    for index, extra in enumerate(variants):
        repo = _copy_repo(tmp_path / f"clone{index}" / ("deeper" * index))
        env = {**os.environ, **extra, "GEN_STORE": str(tmp_path / f"store{index}"),
               "PYTHONPATH": str(ROOT)}
        umask = "umask 077; " if index else "umask 022; "
        for args in (["lock", "env/lab"], ["render", "env/lab", "--locked"]):
            proc = subprocess.run(["sh", "-c", umask + " ".join([sys.executable, "-m",
                                                                "generator", *args])],
                                  cwd=repo, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        outputs.append(((repo / "lock" / "lab.lock").read_bytes(),
                        nar.path_hash(repo / "rendered" / "lab", exclude=(".gen-rendered",))))
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][0])["outputs"]["narHash"] == outputs[0][1]


# --- lock policy: the generator is pinned by version (and wheel), not by source text -------

def _generator_copy(dest: Path) -> Path:
    """A runnable copy of this gen (package + schemas) whose renderers a test may edit."""
    shutil.copytree(ROOT / "generator", dest / "generator",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", dest / "schemas")
    return dest


def test_a_comment_in_a_renderer_keeps_the_lock_a_real_output_change_names_the_generator(
        repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    copy = _generator_copy(tmp_path / "gen-copy")
    nfs = copy / "generator" / "families" / "nfs.py"
    nfs.write_text("# a reviewer's comment: no output change\n" + nfs.read_text())
    edited = {**env, "PYTHONPATH": str(copy)}
    result = gen("render", "env/lab", "--locked", cwd=repo, env=edited)
    assert result.code == EXIT_OK, result.err
    text = nfs.read_text()
    join = '" ".join([escape.export_path(export.path, (*field, "path")), *clients])'
    assert text.count(join) == 1
    nfs.write_text(text.replace(join, join.replace('" "', '"  "')))
    changed = gen("render", "env/lab", "--locked", cwd=repo, env=edited)
    assert changed.code == EXIT_LOCK, changed.err
    assert "\n  output " in changed.err and "input " not in changed.err
    assert "moved: the generator: its renderers changed output without a version change" \
        in changed.err


def test_locked_render_names_the_environment_or_the_generator_version(
        repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    env_file = repo / "environments" / "lab" / "env.yaml"
    env_file.write_text(env_file.read_text() + "\n# only a comment\n")
    moved = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert moved.code == EXIT_LOCK
    assert "input environment (environments/lab):" in moved.err
    assert "moved: the environment" in moved.err and "the generator" not in moved.err
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    copy = _generator_copy(tmp_path / "gen-next")
    init = copy / "generator" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.'))
    newer = gen("render", "env/lab", "--locked", cwd=repo, env={**env, "PYTHONPATH": str(copy)})
    assert newer.code == EXIT_LOCK
    assert "generator.version: 0.1.0 -> 9.0.1.0" in newer.err
    assert "moved: the generator" in newer.err and "the environment" not in newer.err


def test_a_format_1_lock_reads_and_is_rewritten_by_gen_lock(repo: Path,
                                                             env: dict[str, str]) -> None:
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    current = (repo / "lock" / "lab.lock").read_bytes()
    data = json.loads(current)
    data["version"] = 1
    data["generator"]["templates"] = nar.tree_hash({"any.py": b"# old renderers"})
    (repo / "lock" / "lab.lock").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    locked = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert locked.code == EXIT_LOCK and "lock format: 1 -> 2" in locked.err, locked.err
    assert "tampered" not in locked.err and "edited or damaged" not in locked.err
    relock = gen("lock", "env/lab", cwd=repo, env=env)
    assert relock.code == EXIT_OK and "lock format: 1 -> 2" in relock.out
    assert (repo / "lock" / "lab.lock").read_bytes() == current


def test_the_lock_pins_the_wheel_gen_was_installed_from(repo: Path, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """A real wheel built from this tree, installed by pip: its sha256 lands in the lock."""
    from test_install import clean_env, run, source_copy

    wheels, target = tmp_path / "wheels", tmp_path / "site"
    source = source_copy(tmp_path / "src")  # build outside the tree, as test_install does
    build = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                 str(source)], tmp_path, clean_env())
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("gen-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    installed = {**env, "PYTHONPATH": str(target)}
    result = gen("lock", "env/lab", cwd=repo, env=installed)
    assert result.code == EXIT_OK, result.err
    import hashlib
    assert lock_data(repo)["generator"]["wheel"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    source = gen("render", "env/lab", "--locked", cwd=repo, env=env)
    assert source.code == EXIT_LOCK and "generator.wheel: " in source.err
