"""The content-addressed store and the URL/stream resolvers, against a loopback HTTP server.

The server (python http.server on 127.0.0.1, a thread of this test) serves CoreOS-style
stream metadata, boot artifacts and a manifest. Checksums are verified on download and on
every read; a wrong checksum is refused, a corrupt store object is reported and refetched.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import gen, without_blueprint_tools

from generator.errors import EXIT_LOCK, EXIT_OK, EXIT_USER
from generator.lock.store import ChecksumMismatch, Store, StoreCorrupt, StoreMissing

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = {"kernel": b"K" * 3_000_001, "initramfs": b"I" * 1024, "rootfs": b"R" * 70_000}
BOGUS = "ab" * 32
HELPER = b"H" * 512  # the helper node's cloud image
MANIFEST = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    docroot = tmp_path / "www"
    docroot.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(docroot)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    for name, data in ARTIFACTS.items():
        (docroot / name).write_bytes(data)
    (docroot / "flannel.yml").write_bytes(MANIFEST)
    (docroot / "helper.qcow2").write_bytes(HELPER)
    pxe = {name: {"location": f"{base}/{name}", "sha256": sha(data)}
           for name, data in ARTIFACTS.items()}
    stream = {"stream": "test", "architectures": {"x86_64": {"artifacts": {"metal": {
        "release": "1", "formats": {"pxe": pxe}}}}}}
    (docroot / "stream.json").write_text(json.dumps(stream))
    try:
        yield base, docroot
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GEN_STORE": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}


def point_lab_at(repo: Path, base: str) -> None:
    """Lab A's boot artifacts from the test server's stream, the helper's image from the
    server too, and the blueprint's client tools (on the internet) left out."""
    env_yaml = repo / "environments" / "lab" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("{file: rhcos-4.16.json,",
                                                     f"{{url: {base}/stream.json,"))
    blueprint = repo / "blueprints" / "openshift-upi" / "blueprint.yaml"
    text = blueprint.read_text()
    text = text[:text.index("    # The client tools")] + text[text.index("  services:\n"):]
    centos = text.index("        url: https://cloud.centos.org/")
    blueprint.write_text(text[:centos] + f"        url: {base}/helper.qcow2\n"
                         f"        sha256: {sha(HELPER)}\n"
                         + text[text.index("  services:\n"):])


def test_store_verifies_on_write_and_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    digest = store.put_bytes(b"abc")
    assert digest == sha(b"abc") and store.read(digest) == b"abc"
    with pytest.raises(ChecksumMismatch):
        store.put_bytes(b"abd", expected=digest, what="thing")
    assert sorted(p.name for p in (tmp_path / "s" / "sha256").iterdir()) == [digest]
    store.path(digest).write_bytes(b"abX")
    with pytest.raises(StoreCorrupt) as info:
        store.read(digest)
    assert f"hashes to sha256:{sha(b'abX')}" in str(info.value)
    with pytest.raises(StoreMissing):
        store.read(sha(b"nothing"))


def test_a_missing_file_url_is_a_user_error(tmp_path: Path) -> None:
    from generator.errors import UserError
    from generator.lock.resolve import download

    store = Store(tmp_path / "s")
    with pytest.raises(UserError, match=r"os/x: file:// URL 'absent' not found in "):
        download("file://absent", store, None, "os/x", bases=(tmp_path,))
    (tmp_path / "present").write_bytes(b"abc")
    assert download("file://present", store, None, "os/x", bases=(tmp_path,)) == sha(b"abc")


def test_lock_from_stream_url_then_fetch_with_progress(server: tuple[str, Path], repo: Path,
                                                       env: dict[str, str],
                                                       tmp_path: Path) -> None:
    base, _ = server
    point_lab_at(repo, base)
    locked = gen("lock", "env/lab", cwd=repo, env=env)
    assert locked.code == EXIT_OK, locked.err
    data = json.loads((repo / "lock" / "lab.lock").read_text())
    assert data["inputs"]["os/rhcos-live-kernel"]["locked"] == {
        "location": f"{base}/kernel", "sha256": sha(ARTIFACTS["kernel"])}
    fetched = gen("fetch", "env/lab", cwd=repo, env=env)
    assert fetched.code == EXIT_OK, fetched.err
    assert "os/rhcos-live-kernel: fetched" in fetched.out
    assert "[2/4] os/rhcos-live-initramfs: 1.0 KiB / 1.0 KiB at" in fetched.err
    assert "MiB / 2.9 MiB" in fetched.err  # the kernel: bytes, rate, what is left
    for data_ in ARTIFACTS.values():
        assert (tmp_path / "store" / "sha256" / sha(data_)).read_bytes() == data_
    again = gen("fetch", "env/lab", "--format", "json", cwd=repo, env=env)
    assert json.loads(again.out)["artifacts"]["os/rhcos-live-kernel"] == "present"


def test_wrong_checksum_is_refused(server: tuple[str, Path], repo: Path,
                                   env: dict[str, str], tmp_path: Path) -> None:
    base, docroot = server
    point_lab_at(repo, base)
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    (docroot / "rootfs").write_bytes(b"tampered on the server")
    result = gen("fetch", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER
    assert (f"os/rhcos-live-rootfs: checksum mismatch: expected sha256 "
            f"{sha(ARTIFACTS['rootfs'])}, got {sha(b'tampered on the server')}") in result.err
    assert not (tmp_path / "store" / "sha256" / sha(b"tampered on the server")).exists()


def test_a_corrupt_store_object_is_reported_and_refetched(server: tuple[str, Path], repo: Path,
                                                          env: dict[str, str],
                                                          tmp_path: Path) -> None:
    base, _ = server
    point_lab_at(repo, base)
    assert gen("lock", "env/lab", cwd=repo, env=env).code == EXIT_OK
    assert gen("fetch", "env/lab", cwd=repo, env=env).code == EXIT_OK
    obj = tmp_path / "store" / "sha256" / sha(ARTIFACTS["initramfs"])
    obj.write_bytes(b"bit rot")
    result = gen("fetch", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    assert f"store object {obj} is corrupt" in result.err and "fetching it again" in result.err
    assert obj.read_bytes() == ARTIFACTS["initramfs"]


def test_manifest_content_comes_from_the_store_verified(server: tuple[str, Path], repo: Path,
                                                        env: dict[str, str],
                                                        tmp_path: Path) -> None:
    base, docroot = server
    without_blueprint_tools(repo)  # only the manifest is fetched here
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace(
        "https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
        "kube-flannel.yml", f"{base}/flannel.yml"))
    assert gen("lock", "env/k8s-lab", "--offline", cwd=repo, env=env).code == EXIT_OK
    updated = gen("update", "env/k8s-lab", "manifest/cni/flannel", cwd=repo, env=env)
    assert updated.code == EXIT_OK, updated.err
    assert f"manifest/cni/flannel: (none) -> {base}/flannel.yml sha256:{sha(MANIFEST)}" \
        in updated.out
    obj = tmp_path / "store" / "sha256" / sha(MANIFEST)
    assert obj.read_bytes() == MANIFEST
    obj.write_bytes(MANIFEST + b"# injected\n")
    frozen = gen("render", "env/k8s-lab", "--frozen", cwd=repo, env=env)
    assert frozen.code == EXIT_LOCK
    assert f"store object {obj} is corrupt" in frozen.err
    plain = gen("render", "env/k8s-lab", cwd=repo, env=env)
    assert plain.code == EXIT_OK and "is corrupt" in plain.err
    obj.unlink()
    gone = gen("render", "env/k8s-lab", "--frozen", cwd=repo, env=env)
    assert gone.code == EXIT_LOCK and "run `gen fetch ENV`" in gone.err
    assert gen("fetch", "env/k8s-lab", cwd=repo, env=env).code == EXIT_OK
    assert obj.read_bytes() == MANIFEST
    (docroot / "flannel.yml").write_bytes(b"changed upstream\n")
    env_yaml.write_text(env_yaml.read_text().replace(
        f"url: {base}/flannel.yml", f"url: {base}/flannel.yml\n      sha256: '{BOGUS}'"))
    refused = gen("update", "env/k8s-lab", "manifest/cni/flannel", cwd=repo, env=env)
    assert refused.code == EXIT_USER and "checksum mismatch" in refused.err
