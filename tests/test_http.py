"""HTTP family: Apache httpd config for /install and /ignition, and the manifest of its files.

Proven with the real server: `apache2 -t` accepts the config, and apache2 started on it in a
lo-only network namespace (with the helper's address on lo) serves every file the manifest
lists at exactly the URLs the PXE and Ignition families hand to nodes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clirun import helper_on_debian
from netns import Netns, netns

from generator.environment import load_environment
from generator.families import Pins, http, pxe
from generator.model import Environment

ROOT = Path(__file__).resolve().parent.parent
BASE = "hosts/helper/http"


def model(ref: str, cwd: Path = ROOT) -> Environment:
    return load_environment(ref, cwd).model


def debian_lab(repo: Path) -> Environment:
    """Lab A with a Debian helper: this machine's apache2 runs its config as it is (the el9
    config is proven at el9's paths in test_profiles.py)."""
    helper_on_debian(repo)
    return model("env/lab", repo)


def test_paths_and_listen_port() -> None:
    tree = http.render(model("env/lab"), Pins())
    assert set(tree) == {f"{BASE}/httpd.conf", f"{BASE}/manifest.json"}
    conf = tree[f"{BASE}/httpd.conf"].decode()
    assert "\nListen 8080\n" in conf
    assert 'DocumentRoot "htdocs"' in conf
    assert "ServerRoot" not in conf.replace("ServerRoot (-d)", "")  # set by -d at start


def test_manifest_lists_artifacts_and_ignition() -> None:
    env = model("env/lab")
    manifest = json.loads(http.render(env, Pins())[f"{BASE}/manifest.json"])
    files = manifest["files"]
    assert manifest["baseUrl"] == "http://192.168.20.111:8080"
    assert {p for p in files if p.startswith("install/")} == {
        "install/rhcos-live-kernel", "install/rhcos-live-initramfs", "install/rhcos-live-rootfs"}
    nodes = ["bootstrap", "master0", "master1", "master2", "worker0", "worker1"]
    assert {p for p in files if p.startswith("ignition/")} == {
        *(f"ignition/{n}.ign" for n in nodes),
        "ignition/roles/bootstrap.ign", "ignition/roles/master.ign",
        "ignition/roles/worker.ign"}
    assert files["ignition/master0.ign"] == {
        "path": "clusters/ocp4/ignition/master0.ign", "source": "rendered"}
    assert files["ignition/roles/master.ign"] == {"role": "master",
                                                  "source": "openshift-install"}
    assert files["ignition/bootstrap.ign"] == {  # the node, not the role (same name in lab A)
        "path": "clusters/ocp4/ignition/bootstrap.ign", "source": "rendered"}


def test_manifest_carries_pinned_sha256() -> None:
    digest = "cd" * 32
    pins = Pins(os={"rhcos-live-rootfs": ("https://mirror.invalid/rootfs.img", digest)})
    files = json.loads(http.render(model("env/lab"), pins)[f"{BASE}/manifest.json"])["files"]
    assert files["install/rhcos-live-rootfs"]["sha256"] == digest
    assert files["install/rhcos-live-rootfs"]["url"] == "https://mirror.invalid/rootfs.img"
    assert "sha256" not in files["install/rhcos-live-kernel"]  # unlocked: nothing invented


def test_manifest_covers_every_url_pxe_hands_out() -> None:
    env = model("env/lab")
    files = json.loads(http.render(env, Pins())[f"{BASE}/manifest.json"])["files"]
    base = lab_http_base()[1] + "/"
    urls = {word.split("=", 1)[-1] for content in pxe.render(env, Pins()).values()
            for word in content.decode().split()}
    wanted = {url[len(base):] for url in urls if url.startswith(base)}
    assert len(wanted) == 9  # kernel, initramfs, rootfs and six node configs
    assert wanted <= set(files), wanted - set(files)


def test_nothing_without_http_service() -> None:
    assert http.render(model("env/k8s-lab"), Pins()) == {}


# --- the real server -------------------------------------------------------------------

@pytest.fixture
def server_root() -> Iterator[Path]:
    """A ServerRoot www-data can read (pytest's own tmp dirs are private to root)."""
    with tempfile.TemporaryDirectory(prefix="gen-http-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def install(env: Environment, root: Path) -> dict[str, bytes]:
    """Write the rendered files into `root`, then fill the document root as the manifest
    says; returns path under the document root -> content."""
    for path, content in http.render(env, Pins()).items():
        (root / path.rsplit("/", 1)[1]).write_bytes(content)
    manifest = json.loads((root / "manifest.json").read_text())
    for directory in manifest["directories"]:
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory).chmod(0o755)
    served = {}
    for path in manifest["files"]:
        content = json.dumps({"ignition": {"version": "3.3.0"}, "for": path}).encode()
        file = root / manifest["documentRoot"] / path
        file.write_bytes(content)
        file.chmod(0o644)
        served[path] = content
    return served


def check(ns: Netns, root: Path) -> subprocess.CompletedProcess[str]:
    return ns.run(["apache2", "-t", "-d", root, "-f", root / "httpd.conf"])


@pytest.mark.daemons
def test_apache_accepts_config(server_root: Path, repo: Path) -> None:
    install(debian_lab(repo), server_root)
    with netns("httpc") as ns:
        result = check(ns, server_root)
        assert result.returncode == 0, result.stderr
        assert "Syntax OK" in result.stderr
        conf = server_root / "httpd.conf"
        conf.write_text(conf.read_text().replace("Require all granted", "Require everyone"))
        assert check(ns, server_root).returncode != 0  # the checker can fail


@pytest.mark.daemons
def test_apache_serves_manifest_files(server_root: Path, repo: Path) -> None:
    env = debian_lab(repo)
    served = install(env, server_root)
    (server_root / "htdocs" / "secret.txt").write_text("not for nodes\n")
    helper, base = lab_http_base()
    with netns("http") as ns:
        ns.run(["ip", "addr", "add", f"{helper}/32", "dev", "lo"], check=True)
        proc = ns.popen(["apache2", "-d", server_root, "-f", server_root / "httpd.conf",
                         "-DFOREGROUND"])
        wait_listening(ns, proc, 8080)
        for path, content in served.items():
            got = ns.run(["curl", "-sf", "--max-time", "10", f"{base}/{path}"], text=False)
            assert got.returncode == 0, (path, got.stderr)
            assert hashlib.sha256(got.stdout).digest() == hashlib.sha256(content).digest()
        ign = ns.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{content_type}",
                      f"{base}/ignition/bootstrap.ign"])
        assert ign.stdout == "application/vnd.coreos.ignition+json"
        for denied in ("secret.txt", "httpd.conf", "install/", "ignition/nosuch.ign"):
            code = ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                           f"{base}/{denied}"]).stdout
            assert code in ("403", "404"), (denied, code)


def lab_http_base() -> tuple[str, str]:
    """The helper's address and the URL base nodes use, from env.yaml and the rendered PXE
    config, not from the code under test: its port is the documented default, 8080."""
    raw = yaml.safe_load((ROOT / "environments/lab/env.yaml").read_text())
    (helper,) = [n["nics"][0]["ip"] for n in raw["nodes"] if n["role"] == "helper"]
    base = f"http://{helper}:8080"
    handed_out = b"".join(pxe.render(model("env/lab"), Pins()).values()).decode()
    assert f"{base}/install/rhcos-live-kernel" in handed_out
    assert f"{base}/ignition/worker0.ign" in handed_out
    return helper, base


def wait_listening(ns: Netns, proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 10
    while f":{port} " not in ns.run(["ss", "-ltn"]).stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            output = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"apache2 did not listen on {port}: {output}")
        time.sleep(0.05)


def test_manifest_json_is_the_canonical_encoders() -> None:
    """http.manifest_json's fast encoding of `files` is canonical_json's, byte for byte:
    the lab's manifests, and random ones with hostile keys and values (quotes, backslashes,
    control characters, non-ASCII, `"files": {}` inside strings, empty and nested entries)."""
    import random

    from generator.tree import canonical_json

    family = http
    env = load_environment("env/lab", ROOT).model
    lab = family.manifest(env, Pins())
    assert family.manifest_json(lab) == canonical_json(lab)
    rng = random.Random(7)
    alphabet = 'ab/.-"\\\n\x00\x1f\x7fä€😀 {}:,' + '"files": {}'

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))

    for _ in range(300):
        files: dict[str, object] = {}
        for _ in range(rng.randint(0, 12)):
            files[text()] = {text(): text() for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.1:
            files[text()] = {"nested": {"a": "b"}}  # not flat: the general encoder
        if rng.random() < 0.1:
            files[text()] = rng.choice([{"port": 8080}, {1: "a"}, {}, "x"])
        data = {**lab, "baseUrl": text(), "directories": [text(), '"files": {}'],
                "files": files}
        if rng.random() < 0.1:
            data["extra"] = {"files": {}}
        assert family.manifest_json(data) == canonical_json(data)
