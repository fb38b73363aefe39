"""Escapes of the lock's live layer found by the adversarial review of issue 14.

A pull request names artifact URLs, ships the stream JSON and names the image registry; none
of these may make `gen lock` / `gen fetch` read a file outside the environment's and
blueprint's folders, put a secret marker into a rendered file, or crash on a hostile reply.
The registry here is a real HTTP server on 127.0.0.1 (a thread of this test) that answers
like a token-protected registry; gen runs as a subprocess, as in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clirun import gen, replace_in_lab

from generator.errors import EXIT_LOCK, EXIT_OK, EXIT_USER, UserError
from generator.lock.resolve import download
from generator.lock.store import Store

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"CI-SECRET-TOKEN-123"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GEN_STORE": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}


def store_objects(tmp_path: Path) -> list[str]:
    objects = tmp_path / "store" / "sha256"
    return sorted(p.name for p in objects.iterdir()) if objects.is_dir() else []


# --- B2: file:// artifact URLs ---------------------------------------------------------

def test_file_url_escaping_the_environment_is_refused_by_gen_lock(
        repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "secretfile"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    where = replace_in_lab(repo, "stream: {file: rhcos-4.16.json, artifact: kernel}",
                           "url: 'file://../../../secretfile'")
    result = gen("lock", "env/lab", "--format", "text", cwd=repo, env=env)
    assert result.code == EXIT_USER, result
    assert "must stay inside its folder" in result.err and len(result.err.splitlines()) == 1
    assert sha(SECRET) not in store_objects(tmp_path)
    assert not (repo / "lock" / "lab.lock").exists()
    assert where  # the edit landed


def test_file_url_through_a_symlink_out_of_the_environment_is_refused(
        repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "secretfile"
    secret.write_bytes(SECRET)
    (repo / "environments" / "lab" / "kernel.img").symlink_to(secret)
    replace_in_lab(repo, "stream: {file: rhcos-4.16.json, artifact: kernel}",
                   "url: 'file://kernel.img'")
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_USER, result
    assert "leads outside lab/ through a symlink" in result.err
    assert sha(SECRET) not in store_objects(tmp_path)


def test_file_url_beside_env_yaml_is_locked(repo: Path, env: dict[str, str],
                                            tmp_path: Path) -> None:
    (repo / "environments" / "lab" / "kernel.img").write_bytes(b"KERNEL")
    replace_in_lab(repo, "stream: {file: rhcos-4.16.json, artifact: kernel}",
                   "url: 'file://kernel.img'")
    result = gen("lock", "env/lab", cwd=repo, env=env)
    assert result.code == EXIT_OK, result.err
    locked = json.loads((repo / "lock" / "lab.lock").read_text())
    entry = locked["inputs"]["os/rhcos-live-kernel"]["locked"]
    assert entry == {"location": "file://kernel.img", "sha256": sha(b"KERNEL")}
    assert sha(b"KERNEL") in store_objects(tmp_path)


def test_download_refuses_absolute_file_urls_and_other_schemes(tmp_path: Path) -> None:
    (tmp_path / "secretfile").write_bytes(SECRET)
    store = Store(tmp_path / "s")
    for url in (f"file://{tmp_path}/secretfile", "ftp://127.0.0.1/x", "data:,abc",
                "file:///etc/passwd"):
        with pytest.raises(UserError, match="os/x: "):
            download(url, store, None, "os/x", bases=(tmp_path,))
    assert not (tmp_path / "s" / "sha256").exists()


# --- B6: what the stream file says ---------------------------------------------------

def _stream_with(repo: Path, location: str) -> None:
    path = repo / "environments" / "lab" / "rhcos-4.16.json"
    stream = json.loads(path.read_text())
    pxe = stream["architectures"]["x86_64"]["artifacts"]["metal"]["formats"]["pxe"]
    pxe["kernel"]["location"] = location
    path.write_text(json.dumps(stream))


@pytest.mark.parametrize("location, why", [
    ("https://example.com/k?@@gen-secret:leak@@", "holds a secret marker"),
    ("file:///tmp/art_kernel", "is not an http(s) URL"),
    ("file://../../etc/passwd", "must stay inside its folder"),
    ("https://example.com/a\nb", "is not an http(s) URL"),
    ("https://example.com/a\"b", "is not an http(s) URL"),
    ("https://example.com/\x01", "is not an http(s) URL"),
    ("gopher://example.com/x", "is not an http(s) URL"),
])
def test_stream_locations_are_checked_like_urls(repo: Path, env: dict[str, str],
                                                location: str, why: str) -> None:
    _stream_with(repo, location)
    result = gen("lock", "env/lab", "--offline", cwd=repo, env=env)
    assert result.code == EXIT_USER, result
    assert why in result.err and "kernel.location" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not (repo / "lock" / "lab.lock").exists()


def test_a_lock_edited_to_carry_a_marker_location_is_tampered(repo: Path,
                                                              env: dict[str, str]) -> None:
    """The lock carries stream locations into manifest.json: a hand-edited location gets
    the same rule as the stream, before anything renders."""
    assert gen("lock", "env/lab", "--offline", cwd=repo, env=env).code == EXIT_OK
    path = repo / "lock" / "lab.lock"
    lock = json.loads(path.read_text())
    locked = lock["inputs"]["os/rhcos-live-kernel"]["locked"]
    locked["location"] += "?@@gen-secret:leak@@"
    path.write_text(json.dumps(lock, indent=2) + "\n")
    result = gen("render", "env/lab", "--frozen", "--out", str(repo / "out"), cwd=repo, env=env)
    assert result.code == EXIT_LOCK, result
    assert "inputs.os/rhcos-live-kernel.locked.location" in result.err
    assert "holds a secret marker" in result.err
    assert not (repo / "out").exists()


# --- B7 + S6: the registry's token dance ---------------------------------------------

class Registry(BaseHTTPRequestHandler):
    """401 with a Bearer challenge naming `realm`; `/tok` answers `token_body`; a manifest
    request carrying any Authorization header is recorded in `seen`."""

    realm = ""
    token_body = b""
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/tok"):
            self._send(200, self.token_body, "application/json")
            return
        auth = self.headers.get("Authorization")
        if auth:
            type(self).seen.append(auth)
            self._send(200, b'{"schemaVersion":2}', "application/json")
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry() -> Iterator[tuple[str, type[Registry]]]:
    handler = type("R", (Registry,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _lock_image(repo: Path, env: dict[str, str], host: str) -> tuple[int, str]:
    replace_in_lab(repo, "  os:\n    rhcos-live-kernel:",
                   f"  images:\n    x: {host}/x:1\n  os:\n    rhcos-live-kernel:")
    result = gen("lock", "env/lab", cwd=repo, env=env)
    return result.code, result.err


def test_a_file_realm_is_never_opened(repo: Path, env: dict[str, str], tmp_path: Path,
                                      registry: tuple[str, type[Registry]]) -> None:
    host, handler = registry
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"token": SECRET.decode()}))
    handler.realm = f"file://{secret}#"
    code, err = _lock_image(repo, env, host)
    assert code == EXIT_USER, err
    assert "token realm" in err and "is not an http(s) URL" in err
    assert handler.seen == []  # the file's token never reached the registry


@pytest.mark.parametrize("realm", ["http://203.0.113.9/tok", "https://user@127.0.0.1/tok",
                                   "ftp://127.0.0.1/tok"])
def test_realms_other_than_https_or_loopback_http_are_refused(
        repo: Path, env: dict[str, str], registry: tuple[str, type[Registry]],
        realm: str) -> None:
    host, handler = registry
    handler.realm = realm
    code, err = _lock_image(repo, env, host)
    assert code == EXIT_USER and "token realm" in err, err
    assert handler.seen == []


@pytest.mark.parametrize("body, why", [
    (b"<html>not json", "is not JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (b'{"token": 5}', "holds no usable token"),
    (b'{"token": "a\\r\\nX-Injected: 1"}', "holds no usable token"),
    (b'{"token": "' + b"a" * (70 << 10) + b'"}', "sent more than 64 KiB"),
], ids=["html", "list", "number", "crlf", "huge"])
def test_bad_token_replies_are_one_line_user_errors(
        repo: Path, env: dict[str, str], registry: tuple[str, type[Registry]],
        body: bytes, why: str) -> None:
    host, handler = registry
    handler.realm = f"http://{host}/tok"
    handler.token_body = body
    code, err = _lock_image(repo, env, host)
    assert code == EXIT_USER, err
    assert why in err and len(err.strip().splitlines()) == 1, err
    assert handler.seen == []


def test_a_good_loopback_token_is_used(repo: Path, env: dict[str, str],
                                       registry: tuple[str, type[Registry]]) -> None:
    host, handler = registry
    handler.realm = f"http://{host}/tok"
    handler.token_body = b'{"token": "tok-123"}'
    code, err = _lock_image(repo, env, host)
    assert code == EXIT_OK, err
    assert handler.seen == ["Bearer tok-123"]
