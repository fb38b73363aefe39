"""Mirror configs rendered for a disconnected site (`mirror:` in env.yaml).

kubeadm nodes: the hosts.toml files cloud-init writes are handed to a real containerd
(1.6, Debian's) in a lo-only network namespace, which pulls a pinned image through them: the
request must reach the mirror (a TLS server made by the test, its certificate signed by the
CA the environment names) at `/v2/<upstream>/<repository>/manifests/<digest>`. OpenShift:
imageDigestSources in install-config, and the install-config rule for older releases.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from clirun import gen
from netns import netns

from generator.errors import EXIT_OK, EXIT_USER

DIGEST = "sha256:" + hashlib.sha256(b"registry").hexdigest()
PORT = 5443
# A mirror that records every request and has nothing (404): containerd then falls back
# to the upstream, which is unreachable in the namespace.
MIRROR = """
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def _any(self):
        with open(sys.argv[3], "a") as log:
            log.write(f"{self.command} {self.path}\\n")
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    do_GET = do_HEAD = _any
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[4])), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl, EC keys)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=gen-test-ca")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (tmp / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")
    return tmp / "ca.pem", tmp / "srv.pem", tmp / "srv.key"


def add_mirror(repo: Path, env: str, ca: str | None) -> None:
    env_yaml = repo / "environments" / env / "env.yaml"
    block = f"mirror:\n  registry: 127.0.0.1:{PORT}\n"
    if ca:
        block += "  ca: |\n" + "".join(f"    {line}\n" for line in ca.splitlines())
    env_yaml.write_text(env_yaml.read_text() + block)


def containerd_files(rendered: Path) -> dict[str, str]:
    """The certs.d files one kubeadm node's cloud-init writes."""
    user_data = next(rendered.glob("clusters/*/cloud-init/*/user-data"))
    config = yaml.safe_load(user_data.read_text())
    return {f["path"]: f["content"] for f in config["write_files"]
            if f["path"].startswith("/etc/containerd/certs.d/")}


@pytest.mark.daemons
def test_containerd_pulls_through_the_rendered_mirror(repo: Path, tmp_path: Path) -> None:
    if not (shutil.which("containerd") and shutil.which("ctr") and shutil.which("openssl")):
        pytest.skip("needs containerd, ctr and openssl (tests/run.sh installs them)")
    ca, cert, key = make_ca(tmp_path)
    add_mirror(repo, "k8s-lab", ca.read_text())
    image_line = "    registry: docker.io/library/registry:2\n"
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    assert image_line in env_yaml.read_text()
    env_yaml.write_text(env_yaml.read_text().replace(
        image_line, f"    registry: docker.io/library/registry:2@{DIGEST}\n"))
    out = tmp_path / "rendered"
    result = gen("render", "env/k8s-lab", "--out", str(out), cwd=repo)
    assert result.code == EXIT_OK, result.err
    files = containerd_files(out)
    assert sorted(files) == [
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/certs.d/mirror-ca.crt",
        "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
        "/etc/containerd/certs.d/registry.localtest.com/hosts.toml"]
    hosts_dir = tmp_path / "certs.d"  # where the node has /etc/containerd/certs.d
    for path, content in files.items():
        target = hosts_dir / path.removeprefix("/etc/containerd/certs.d/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content.replace("/etc/containerd/certs.d", str(hosts_dir)))
    log = tmp_path / "requests.log"
    (tmp_path / "mirror.py").write_text(MIRROR)
    state = tmp_path / "containerd"
    (tmp_path / "config.toml").write_text(
        'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    socket = state / "containerd.sock"
    with netns("mirror") as ns:
        ns.popen(["python3", tmp_path / "mirror.py", cert, key, log, str(PORT)])
        ns.wait_port(PORT)
        ns.popen(["containerd", "--config", tmp_path / "config.toml", "--root", state / "root",
                  "--state", state / "state", "--address", socket])
        deadline = time.monotonic() + 30
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pulled = ns.run(["ctr", "--address", socket, "images", "pull", "--hosts-dir",
                         hosts_dir, f"docker.io/library/registry@{DIGEST}"], timeout=90)
    assert pulled.returncode != 0  # the mirror has nothing and the upstream is unreachable
    requests = log.read_text().splitlines() if log.exists() else []
    # containerd names the upstream in `ns=` (what a mirror serving several would key on)
    wanted = f"HEAD /v2/docker.io/library/registry/manifests/{DIGEST}?ns=docker.io"
    assert wanted in requests, (requests, pulled.stderr)


def test_install_config_sends_pinned_repositories_to_the_mirror(repo: Path,
                                                                 tmp_path: Path) -> None:
    add_mirror(repo, "lab", None)
    out = tmp_path / "rendered"
    result = gen("render", "env/lab", "--out", str(out), cwd=repo)
    assert result.code == EXIT_OK, result.err
    config = yaml.safe_load(next(out.glob("clusters/*/openshift/install-config.yaml"))
                            .read_text())
    release = "quay.io/openshift-release-dev/ocp-release"
    assert {"source": release, "mirrors": [f"127.0.0.1:{PORT}/{release}"]} \
        in config["imageDigestSources"]
    assert "additionalTrustBundle" not in config


def test_an_installer_older_than_4_14_is_refused_a_mirror(repo: Path) -> None:
    add_mirror(repo, "lab", None)
    env_yaml = repo / "environments" / "lab" / "env.yaml"
    text = env_yaml.read_text()
    version = next(line for line in text.splitlines() if line.strip().startswith("version:"))
    env_yaml.write_text(text.replace(version, version.split(":")[0] + ": '4.13'", 1))
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == EXIT_USER
    assert "at mirror: openshift-install 4.13 does not read imageDigestSources" in result.err


def test_a_mirror_that_is_not_host_port_is_bad_input(repo: Path) -> None:
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text() + "mirror:\n  registry: https://m/x\n")
    result = gen("validate", "env/k8s-lab", cwd=repo)
    assert result.code == EXIT_USER
    assert "at mirror.registry:" in result.err and "host[:port]" in result.err, result.err
