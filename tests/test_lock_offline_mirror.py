"""k8s-lab's lock completed with no internet, against the site's mirror (issue 18).

A real `docker-registry` (Debian) and a plain HTTP file server run on loopback inside a
lo-only network namespace: nothing else is reachable. Every image k8s-lab names is built
in the test (an OCI layout, see test_resolve_registry.Layout) and pushed with skopeo to
where the mirror keeps it (`<mirror>/<upstream host>/<repository>:<tag>`); every URL it
downloads (the CNI manifest, the node image) is served at `<artifacts>/<host>/<path>`.
The environment names that mirror (`mirror: {registry, artifacts}`); then `gen lock`
pins everything, `gen render --locked` and `gen verify` pass, and each image runs by the
digest `skopeo inspect` reads from the mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from netns import Netns, netns
from test_resolve_registry import Layout

ROOT = Path(__file__).resolve().parent.parent
MIRROR = "127.0.0.1:5000"
FILES = "127.0.0.1:8080"
pytestmark = pytest.mark.daemons

# A CNI manifest of upstream's shape, small: the kubernetes family labels and lists it.
FLANNEL = b"""---
kind: Namespace
apiVersion: v1
metadata:
  name: kube-flannel
  labels:
    k8s-app: flannel
---
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
data:
  net-conf.json: |
    {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}
"""


def _wanted(repo: Path) -> dict[str, object]:
    """What k8s-lab asks the lock to pin, read by gen itself (so the test follows the env)."""
    code = ("import json, sys; from generator.environment import load_environment; "
            "from generator.lock.compute import wanted_inputs; "
            "print(json.dumps(wanted_inputs(load_environment(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, "env/k8s-lab"], cwd=repo,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH",
                                                                          str(ROOT))})
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _mirror_ref(upstream: str) -> str:
    """`docker.io/library/tomcat:9` -> where the mirror keeps it."""
    name, _, tag = upstream.rpartition(":")
    return f"{MIRROR}/{name}:{tag}"


@pytest.fixture()
def site(tmp_path: Path, repo: Path) -> Iterator[tuple[Netns, Path, dict[str, object]]]:
    """The mirror (registry + file server) filled with everything k8s-lab names."""
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} missing: apt-get install docker-registry skopeo"
    wanted = _wanted(repo)
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: {MIRROR}\n")
    served = tmp_path / "served"
    for key, original in wanted.items():
        if key.startswith(("manifest/", "os/")):
            assert isinstance(original, dict) and "url" in original, (key, original)
            url = urlsplit(str(original["url"]))
            path = served / url.netloc / url.path.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(FLANNEL if key.startswith("manifest/")
                             else b"QFI\xfb not a real disk, made by the test\n")
    with netns("site") as ns:
        ns.popen(["docker-registry", "serve", config])
        ns.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                  "--directory", served, "8080"])
        ns.wait_port(5000)
        ns.wait_port(8080)
        layout = Layout(tmp_path / "layout")
        for key, original in wanted.items():
            if key.startswith("image/"):
                tag = key.replace("/", "-")
                layout.tag(layout.image("amd64", f"{key}\n"), tag)
                proc = ns.run(["skopeo", "copy", "--dest-tls-verify=false",
                               f"oci:{layout.root}:{tag}",
                               f"docker://{_mirror_ref(str(original))}"])
                assert proc.returncode == 0, proc.stderr
        env_yaml = repo / "environments/k8s-lab/env.yaml"
        env_yaml.write_text(env_yaml.read_text() + f"\nmirror:\n  registry: {MIRROR}\n"
                            f"  artifacts: http://{FILES}\n")
        yield ns, repo, wanted


def gen_in(ns: Netns, repo: Path, *args: str) -> tuple[int, str, str]:
    env = {"GEN_STORE": str(repo / "store"), "HOME": str(repo), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    proc = ns.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()),
                   sys.executable, "-m", "generator", *args], cwd=repo, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def skopeo_digest(ns: Netns, ref: str) -> str:
    proc = ns.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                   f"docker://{ref}"])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_k8s_lab_locks_offline_against_the_mirror_then_renders_locked_and_verifies(
        site: tuple[Netns, Path, dict[str, object]]) -> None:
    ns, repo, wanted = site
    code, out, err = gen_in(ns, repo, "lock", "env/k8s-lab")
    assert code == 0, err
    inputs = json.loads((repo / "lock/k8s-lab.lock").read_text())["inputs"]
    assert set(wanted) <= set(inputs), sorted(set(wanted) - set(inputs))
    images = {k: v for k, v in wanted.items() if k.startswith("image/")}
    assert len(images) >= 4  # registry, tomcat and gen's two add-ons
    for key, original in images.items():
        digest = skopeo_digest(ns, _mirror_ref(str(original)))
        name = str(original).rpartition(":")[0]
        # the pin names the upstream repository; nodes reach the mirror by digest
        assert inputs[key] == {"original": original, "locked": f"{name}@{digest}"}, key
    assert inputs["manifest/cni/flannel"]["locked"]["sha256"] == hashlib.sha256(
        FLANNEL).hexdigest()

    code, _, err = gen_in(ns, repo, "render", "--locked", "env/k8s-lab")
    assert code == 0, err
    code, out, err = gen_in(ns, repo, "verify", "env/k8s-lab")
    assert code == 0, err
    assert "verified" in out

    kubernetes = repo / "rendered/k8s-lab/clusters/k8s/kubernetes"
    run = [line.split("image: ", 1)[1] for path in sorted(kubernetes.rglob("*.yaml"))
           for line in path.read_text().splitlines() if "image: " in line]
    assert run and all("@sha256:" in ref for ref in run), run
    tomcat = str(wanted["image/tomcat"]).rpartition(":")[0]
    assert f"{tomcat}@{skopeo_digest(ns, _mirror_ref(str(wanted['image/tomcat'])))}" in run
    assert (kubernetes / "cni/flannel/kube-flannel.yml").read_bytes() == FLANNEL


def test_a_tag_the_mirror_lacks_is_refused_naming_the_mirror_and_the_unreachable_upstream(
        site: tuple[Netns, Path, dict[str, object]]) -> None:
    ns, repo, _ = site
    env_yaml = repo / "environments/k8s-lab/env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("docker.io/library/tomcat:9",
                                                     "docker.io/library/tomcat:10"))
    code, _, err = gen_in(ns, repo, "lock", "env/k8s-lab")
    assert code == 1, err
    (line,) = [x for x in err.splitlines() if "tomcat:10" in x]
    assert (f"image docker.io/library/tomcat:10 at the site's mirror: http://{MIRROR}/v2/"
            "docker.io/library/tomcat/manifests/10 answered HTTP 404") in line, line
    assert "and upstream, docker.io/library/tomcat:10: cannot reach https://registry-1." \
        "docker.io/v2/library/tomcat/manifests/10" in line, line
    assert line.endswith(f"(push it to the mirror {MIRROR} (skopeo copy, or gen converge "
                         "from the store), or lock where its registry answers)"), line
    assert not (repo / "lock/k8s-lab.lock").exists()  # nothing half-written


def test_a_tls_mirror_is_trusted_by_the_environments_ca_and_only_by_it(
        tmp_path: Path) -> None:
    """The mirror on a non-loopback address (so https) with a certificate signed by a CA the
    test makes: resolving through it works with `mirror.ca`, and fails without it."""
    from test_mirror_config import make_ca

    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    ca, cert, key = make_ca(tmp_path)
    address = "10.99.0.1"  # not loopback, so gen speaks https to it
    # make_ca signs for 127.0.0.1: sign the same key again for the mirror's address
    (tmp_path / "ext").write_text(f"subjectAltName=IP:{address}\n")
    subprocess.run(["openssl", "req", "-new", "-key", key, "-out", "srv.csr", "-subj",
                    f"/CN={address}"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", ca, "-CAkey",
                    "ca.key", "-CAcreateserial", "-out", cert, "-days", "2", "-extfile",
                    "ext"], cwd=tmp_path, check=True, capture_output=True)
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: {address}:5000\n"
                      f"  tls:\n    certificate: {cert}\n    key: {key}\n")
    code = ("import sys; from generator.lock.resolve import resolve_image\n"
            "from generator.model import Mirror\nfrom generator.errors import UserError\n"
            "ca = open(sys.argv[2]).read() if len(sys.argv) > 2 else None\n"
            "try:\n    print(resolve_image('docker.io/library/tomcat:9', "
            "mirror=Mirror(sys.argv[1], ca)))\n"
            "except UserError as e:\n    print('refused:', e.lines()[0])\n")
    with netns("tls") as ns:
        assert ns.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"]).returncode == 0
        ns.popen(["docker-registry", "serve", config])
        ns.wait_port(5000)
        layout = Layout(tmp_path / "layout")
        layout.tag(layout.image("amd64", "tls\n"), "tls")
        target = f"{address}:5000/docker.io/library/tomcat:9"
        proc = ns.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout.root}:tls",
                       f"docker://{target}"])
        assert proc.returncode == 0, proc.stderr
        digest = skopeo_digest(ns, target)
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        trusted = ns.run([sys.executable, "-c", code, f"{address}:5000", ca], env=env)
        assert trusted.stdout.strip() == f"docker.io/library/tomcat@{digest}", trusted.stderr
        untrusted = ns.run([sys.executable, "-c", code, f"{address}:5000"], env=env)
        assert untrusted.stdout.startswith(
            f"refused: image docker.io/library/tomcat:9 at the site's mirror: cannot reach "
            f"https://{address}:5000/v2/docker.io/library/tomcat/manifests/9"), untrusted.stdout
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout, untrusted.stdout


def test_artifact_mirror_serves_stream_metadata_and_never_replaces_promised_content(
        tmp_path: Path) -> None:
    """Stream metadata comes from the artifact mirror too; content the mirror serves against
    a promised sha256 that it does not match is a mismatch, not a reason to ask upstream."""
    stream_url = "https://builds.coreos.fedoraproject.org/streams/stable.json"
    served = tmp_path / "served/builds.coreos.fedoraproject.org/streams"
    served.mkdir(parents=True)
    (served / "stable.json").write_text('{"stream": "stable", "architectures": {}}')
    code = ("import sys; from pathlib import Path\n"
            "from generator.errors import UserError\n"
            "from generator.lock.resolve import download, load_stream\n"
            "from generator.lock.store import Store\n"
            "print(load_stream(sys.argv[1], (), mirror=sys.argv[2])['stream'])\n"
            "try:\n    download(sys.argv[1], Store(Path(sys.argv[3])), '0' * 64, 'os/x', "
            "mirror=sys.argv[2])\n"
            "except UserError as e:\n    print(type(e).__name__, e.lines()[0])\n")
    with netns("files") as ns:
        ns.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                  "--directory", tmp_path / "served", "8080"])
        ns.wait_port(8080)
        proc = ns.run([sys.executable, "-c", code, stream_url, f"http://{FILES}",
                       tmp_path / "store"],
                      env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))})
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "stable"
    assert second.startswith("ChecksumMismatch "), second
    assert "cannot reach" not in second  # upstream was never asked
