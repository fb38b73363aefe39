"""A lock, store objects and stream files that are not what they seem, through the real CLI:
special files (FIFO, /dev/zero, a directory) and symlinks are refused without hanging or
exhausting memory, and a lock whose locked location was swapped together with its sha256
for another file's is detected by `gen verify` (exit 4, naming the input).

Every gen process runs with a bounded address space, so a regression that reads /dev/zero
fails here instead of taking the machine down."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import Result, without_blueprint_tools

from generator.errors import EXIT_LOCK, EXIT_OK, EXIT_USER
from generator.tree import canonical_json

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-registry-token-never-print"
MANIFEST = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n"
EVIL_MANIFEST = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: attacker\n"
FLANNEL = ("https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
           "kube-flannel.yml")
MEMORY = 2 << 30


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def gen(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> Result:
    """`gen` in a real process, with a bounded address space and a timeout (no hang)."""
    proc = subprocess.run([sys.executable, "-m", "generator", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_bounded)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server (a thread of this test) serving manifests and kernels."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    for name, data in {"flannel.yml": MANIFEST, "evil.yml": EVIL_MANIFEST,
                       "kernel": b"K" * 4096, "evil-kernel": b"E" * 4096}.items():
        (docroot / name).write_bytes(data)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(docroot)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GEN_STORE": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}


@pytest.fixture
def locked_lab(repo: Path, env: dict[str, str]) -> Path:
    """lab locked offline (its boot artifacts come from the stream file beside env.yaml)."""
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    return repo / "lock" / "lab.lock"


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def errors(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if not line.startswith("warning: ")]


def assert_lock_refused(result: Result, where: str, reason: str) -> None:
    assert result.code == EXIT_LOCK, (result.code, result.err)
    assert errors(result)[0] == f"{where}: {reason}", result.err


# ---- the lock file -----------------------------------------------------------------------------


def test_a_lock_that_is_a_fifo_is_refused_without_hanging(locked_lab: Path, repo: Path,
                                                          env: dict[str, str]) -> None:
    locked_lab.unlink()
    os.mkfifo(locked_lab)
    for args in (("verify", "env/lab"), ("render", "env/lab", "--locked"), ("lock", "env/lab")):
        assert_lock_refused(gen(*args, cwd=repo, env=env), "lock/lab.lock",
                            "is not a regular file (it is a FIFO)")


def test_a_lock_linked_to_dev_zero_is_refused_without_reading_it(locked_lab: Path, repo: Path,
                                                                 env: dict[str, str]) -> None:
    locked_lab.unlink()
    locked_lab.symlink_to("/dev/zero")
    assert_lock_refused(gen("verify", "env/lab", cwd=repo, env=env), "lock/lab.lock",
                        "is a symlink, not a plain file")


def test_a_lock_linked_to_a_secret_never_prints_it(locked_lab: Path, repo: Path,
                                                   env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "auth.json"
    secret.write_text(json.dumps({"generator": SECRET, "version": SECRET}))
    locked_lab.unlink()
    locked_lab.symlink_to(secret)
    for args in (("verify", "env/lab"), ("render", "env/lab", "--locked")):
        result = gen(*args, cwd=repo, env=env)
        assert_lock_refused(result, "lock/lab.lock", "is a symlink, not a plain file")
        assert SECRET not in result.out + result.err


def test_a_directory_in_place_of_the_lock_is_a_tampered_lock(locked_lab: Path, repo: Path,
                                                             env: dict[str, str]) -> None:
    locked_lab.unlink()
    locked_lab.mkdir()
    assert_lock_refused(gen("verify", "env/lab", cwd=repo, env=env), "lock/lab.lock",
                        "is not a regular file (it is a directory)")


def test_an_oversized_lock_is_refused_before_it_is_read(locked_lab: Path, repo: Path,
                                                        env: dict[str, str]) -> None:
    with locked_lab.open("r+b") as handle:
        handle.truncate(64 << 20)  # sparse: costs no disk, but gen must not read it
    assert_lock_refused(gen("verify", "env/lab", cwd=repo, env=env), "lock/lab.lock",
                        "is larger than 16 MiB")


def test_a_deeply_nested_lock_is_tampered_not_an_internal_error(locked_lab: Path, repo: Path,
                                                                 env: dict[str, str]) -> None:
    locked_lab.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert_lock_refused(gen("verify", "env/lab", cwd=repo, env=env), "lock/lab.lock",
                        "not a lock: its JSON is nested too deeply")


def test_concurrent_locks_of_one_environment_never_collide(repo: Path,
                                                           env: dict[str, str]) -> None:
    for _ in range(2):
        (repo / "lock" / "lab.lock").unlink(missing_ok=True)
        procs = [subprocess.Popen([sys.executable, "-m", "generator", "lock", "env/lab"],
                                  cwd=repo, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, preexec_fn=_bounded)
                 for _ in range(3)]
        outcomes = [(p.returncode, err) for p in procs
                    for _, err in [p.communicate(timeout=120)]]
        assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
        assert gen("verify", "env/lab", cwd=repo, env=env).code == EXIT_OK
        assert not list((repo / "lock").glob(".*gen-tmp"))


LOCK_LOOP = """
import sys
from pathlib import Path
from generator.lock.lockfile import read_lock, write_lock
path = Path(sys.argv[1])
lock = read_lock(Path(sys.argv[2]))
for _ in range(300):
    path.unlink(missing_ok=True)  # every round writes, so temporaries are in play
    write_lock(path, lock)
"""


def test_processes_writing_one_lock_in_a_loop_never_collide(locked_lab: Path) -> None:
    good = locked_lab.read_bytes()
    copy = locked_lab.with_name("copy.lock")
    copy.write_bytes(good)
    procs = [subprocess.Popen([sys.executable, "-c", LOCK_LOOP, str(locked_lab), str(copy)],
                              stderr=subprocess.PIPE, text=True, preexec_fn=_bounded)
             for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert locked_lab.read_bytes() == good
    assert not list(locked_lab.parent.glob(".*gen-tmp"))


# ---- store objects -------------------------------------------------------------------------------


@pytest.fixture
def k8s_manifest(server: str, repo: Path, env: dict[str, str], tmp_path: Path) -> Path:
    """k8s-lab with its CNI manifest from the loopback server, pinned and in the store."""
    without_blueprint_tools(repo)  # `gen fetch` here must need only the loopback server
    replace(repo / "environments/k8s-lab/env.yaml", FLANNEL, f"{server}/flannel.yml")
    assert gen("lock", "env/k8s-lab", "--offline", cwd=repo, env=env).code == EXIT_OK
    updated = gen("update", "env/k8s-lab", "manifest/cni/flannel", cwd=repo, env=env)
    assert updated.code == EXIT_OK, updated.err
    obj = tmp_path / "store" / "sha256" / sha(MANIFEST)
    assert obj.read_bytes() == MANIFEST
    return obj


def test_a_store_object_that_is_a_fifo_is_refused_without_hanging(
        k8s_manifest: Path, repo: Path, env: dict[str, str]) -> None:
    k8s_manifest.unlink()
    os.mkfifo(k8s_manifest)
    result = gen("render", "env/k8s-lab", "--frozen", cwd=repo, env=env)
    assert result.code == EXIT_LOCK
    assert f"store object {k8s_manifest} is not a regular file (it is a FIFO)" in result.err


def test_a_store_object_linked_to_dev_zero_is_refused(k8s_manifest: Path, repo: Path,
                                                      env: dict[str, str]) -> None:
    k8s_manifest.unlink()
    k8s_manifest.symlink_to("/dev/zero")
    result = gen("verify", "env/k8s-lab", cwd=repo, env=env)
    assert result.code == EXIT_LOCK
    assert f"store object {k8s_manifest} is a symlink that leaves the store" in result.err


def test_a_store_object_linked_out_of_the_store_is_refused_even_with_the_right_content(
        k8s_manifest: Path, repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yml"
    outside.write_bytes(MANIFEST)
    k8s_manifest.unlink()
    k8s_manifest.symlink_to(outside)
    result = gen("render", "env/k8s-lab", "--frozen", cwd=repo, env=env)
    assert result.code == EXIT_LOCK
    assert f"store object {k8s_manifest} is a symlink that leaves the store" in result.err


def test_a_symlink_between_store_objects_is_fine(k8s_manifest: Path, repo: Path,
                                                 env: dict[str, str]) -> None:
    twin = k8s_manifest.with_name("copy")
    shutil.copyfile(k8s_manifest, twin)
    k8s_manifest.unlink()
    k8s_manifest.symlink_to(twin.name)
    result = gen("render", "env/k8s-lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    assert "store object" not in result.err and "rendering without it" not in result.err


def test_a_directory_in_place_of_a_store_object_is_reported(k8s_manifest: Path, repo: Path,
                                                            env: dict[str, str]) -> None:
    k8s_manifest.unlink()
    k8s_manifest.mkdir()
    result = gen("render", "env/k8s-lab", "--frozen", cwd=repo, env=env)
    assert result.code == EXIT_LOCK
    assert f"store object {k8s_manifest} is not a regular file (it is a directory)" \
        in result.err


def test_fetch_replaces_a_fifo_store_object(k8s_manifest: Path, repo: Path,
                                            env: dict[str, str]) -> None:
    k8s_manifest.unlink()
    os.mkfifo(k8s_manifest)
    result = gen("fetch", "env/k8s-lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    assert "is not a regular file (it is a FIFO); fetching it again" in result.err
    assert k8s_manifest.is_file() and k8s_manifest.read_bytes() == MANIFEST


# ---- stream files --------------------------------------------------------------------------------


@pytest.fixture
def stream_file(repo: Path) -> Path:
    return repo / "environments/lab/rhcos-4.16.json"


def test_a_stream_file_that_is_a_fifo_is_refused_without_hanging(
        stream_file: Path, repo: Path, env: dict[str, str]) -> None:
    stream_file.unlink()
    os.mkfifo(stream_file)
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER
    assert f"stream metadata {stream_file}: is not a regular file (it is a FIFO)" in result.err


def test_a_stream_file_linked_to_dev_zero_is_refused(stream_file: Path, repo: Path,
                                                     env: dict[str, str]) -> None:
    stream_file.unlink()
    stream_file.symlink_to("/dev/zero")
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER, result.err
    assert "stream metadata" in result.err and "rhcos-4.16.json" in result.err


def test_an_oversized_stream_file_is_refused_before_it_is_read(stream_file: Path, repo: Path,
                                                               env: dict[str, str]) -> None:
    with stream_file.open("r+b") as handle:
        handle.truncate(1 << 30)  # sparse
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER
    assert f"stream metadata {stream_file}: is larger than 64 MiB" in result.err


def test_a_deeply_nested_stream_file_is_a_user_error(stream_file: Path, repo: Path,
                                                     env: dict[str, str]) -> None:
    stream_file.write_text("[" * 100_000 + "]" * 100_000)
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER, result.err
    assert "is nested too deeply to be stream metadata" in result.err


# ---- a locked location swapped with its sha256 -------------------------------------------


def _forge(repo: Path, env: dict[str, str], env_file: Path, key: str, good: str, evil: str,
           lock_args: tuple[str, ...]) -> None:
    """The lock an attacker commits: what gen locks for `evil`, with the original and the
    environment's hash put back to what the unchanged environment says."""
    name = env_file.parent.name
    lock = repo / "lock" / f"{name}.lock"
    honest = json.loads(lock.read_text())
    replace(env_file, good, evil)
    assert gen(*lock_args, cwd=repo, env=env).code == EXIT_OK
    forged = json.loads(lock.read_text())
    replace(env_file, evil, good)
    forged["inputs"][key]["original"] = honest["inputs"][key]["original"]
    forged["inputs"]["environment"] = honest["inputs"]["environment"]
    assert forged["inputs"][key]["locked"] != honest["inputs"][key]["locked"]
    lock.write_bytes(canonical_json(forged))


def test_verify_detects_a_manifest_url_swapped_with_its_sha256(
        k8s_manifest: Path, server: str, repo: Path, env: dict[str, str]) -> None:
    env_file = repo / "environments/k8s-lab/env.yaml"
    _forge(repo, env, env_file, "manifest/cni/flannel", f"{server}/flannel.yml",
           f"{server}/evil.yml", ("update", "env/k8s-lab", "manifest/cni/flannel"))
    for args in (("verify", "env/k8s-lab"), ("render", "env/k8s-lab", "--frozen")):
        result = gen(*args, cwd=repo, env=env)
        assert result.code == EXIT_LOCK, (args, result.out, result.err)
        assert errors(result)[0] == (
            f"lock/k8s-lab.lock: at inputs.manifest/cni/flannel: locked url "
            f"{server}/evil.yml is not the URL the environment names ({server}/flannel.yml)")


def test_verify_detects_an_os_artifact_location_swapped_with_its_sha256(
        server: str, repo: Path, env: dict[str, str]) -> None:
    env_file = repo / "environments/lab/env.yaml"
    replace(env_file, "stream: {file: rhcos-4.16.json, artifact: kernel}",
            f"url: {server}/kernel")
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    _forge(repo, env, env_file, "os/rhcos-live-kernel", f"{server}/kernel",
           f"{server}/evil-kernel", ("lock", "env/lab"))
    result = gen("verify", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_LOCK, (result.out, result.err)
    assert errors(result)[0] == (
        f"lock/lab.lock: at inputs.os/rhcos-live-kernel: locked location "
        f"{server}/evil-kernel is not the URL the environment names ({server}/kernel)")


def test_a_kolla_environment_verifies_the_lock_gen_wrote(tmp_path: Path, server: str,
                                                         env: dict[str, str]) -> None:
    """The converge tool (`tool/kolla-ansible`) keeps its place in `url`, not `location`:
    the lock gen writes for a kolla-aio environment is accepted by every later lock,
    verify and render (its disk image served from loopback, so the lock is complete)."""
    assert gen("init", "site", "--ci", "none", cwd=tmp_path, env=env).code == EXIT_OK
    site = tmp_path / "site"
    created = gen("new", "k", "--blueprint", "kolla-aio", "--no-input", cwd=site, env=env)
    assert created.code == EXIT_OK, created.err
    with (site / "environments/k/env.yaml").open("a") as env_yaml:
        env_yaml.write(f"artifacts:\n  os:\n    debian-12-genericcloud:\n"
                       f"      url: {server}/kernel\n      kind: disk\n")
    for args in (("lock", "env/k"), ("lock", "env/k", "--offline"), ("verify", "env/k"),
                 ("render", "env/k", "--locked")):
        result = gen(*args, cwd=site, env=env)
        assert result.code == EXIT_OK, (args, result.out, result.err)


def test_verify_detects_a_kolla_tool_url_swapped_with_its_sha256(
        tmp_path: Path, env: dict[str, str]) -> None:
    assert gen("init", "site", "--ci", "none", cwd=tmp_path, env=env).code == EXIT_OK
    site = tmp_path / "site"
    assert gen("new", "k", "--blueprint", "kolla-aio", "--no-input", cwd=site,
               env=env).code == EXIT_OK
    lock = site / "lock" / "k.lock"
    forged = json.loads(lock.read_text())
    locked = forged["inputs"]["tool/kolla-ansible"]["locked"]
    good = locked["url"]
    locked["url"] = "https://example.invalid/evil-0-py3-none-any.whl"
    lock.write_bytes(canonical_json(forged))
    result = gen("verify", "env/k", cwd=site, env=env)
    assert result.code == EXIT_LOCK, (result.out, result.err)
    assert errors(result)[0] == (
        f"lock/k.lock: at inputs.tool/kolla-ansible: locked url "
        f"https://example.invalid/evil-0-py3-none-any.whl is not the URL the environment "
        f"names ({good})")
