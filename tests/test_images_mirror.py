"""Images in the store and a mirror converged from it, against real `docker-registry`s.

Two registries run in a lo-only network namespace: the upstream (127.0.0.2, port 80, plain
HTTP) and the site's mirror (127.0.0.3:5000, TLS with a certificate signed by the CA the
environment names in `mirror.ca`, htpasswd auth with the credentials a secret ref names).
Images are built here as OCI layouts (fixed bytes) and pushed upstream with skopeo; then
gen locks k8s-lab against the upstream, fetches the images into a store, exports, imports
into a second empty store, and with the upstream STOPPED converges the mirror from that
store. `skopeo inspect --raw` on the mirror must return the bytes of every locked digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import without_blueprint_tools
from netns import Netns, netns
from test_resolve_registry import OCI_INDEX, OCI_MANIFEST, Layout, _json

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "127.0.0.2"  # port 80: a repository path under the mirror cannot hold a port
MIRROR = "127.0.0.3:5000"
USER, PASSWORD = "pusher", "s3cret-push-word"
pytestmark = pytest.mark.daemons


@dataclass
class Site:
    ns: Netns
    tmp: Path
    upstream: subprocess.Popen[bytes]
    layout: Path
    tags: dict[str, str]  # image name in env.yaml -> upstream reference


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and the mirror's certificate for 127.0.0.3 signed by it (openssl, EC keys)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=gen-test-ca")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.3")
    (tmp / "ext").write_text("subjectAltName=IP:127.0.0.3\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")
    return tmp / "ca.pem", tmp / "srv.pem", tmp / "srv.key"


def _registry_config(path: Path, data: Path, addr: str, htpasswd: Path | None = None,
                     tls: tuple[Path, Path] | None = None) -> Path:
    auth = (f"auth:\n  htpasswd:\n    realm: gen-test\n    path: {htpasswd}\n"
            if htpasswd else "")
    if tls:
        addr += f"\n  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}"
    # no access log: a daemon writing one line per request into a pipe nobody reads blocks
    path.write_text(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n"
                    f"    rootdirectory: {data}\nhttp:\n  addr: {addr}\n{auth}")
    return path


def _build_images(layout: Layout) -> dict[str, dict]:
    """single (amd64, a 2 MiB layer), multi (amd64 + arm64 index), and shared (another config
    over single's layer: the layer is stored once)."""
    filler = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(32768))
    single = layout.image("amd64", filler)
    manifest = json.loads((layout.root / "blobs" / single["digest"].replace(":", "/"))
                          .read_bytes())
    config = layout.blob(_json({"architecture": "amd64", "os": "linux",
                                "config": {"Labels": {"shared": "yes"}},
                                "rootfs": {"type": "layers", "diff_ids": []}}),
                         "application/vnd.oci.image.config.v1+json")
    shared = layout.blob(_json({**manifest, "config": config}), OCI_MANIFEST)
    amd, arm = layout.image("amd64", "multi amd64\n"), layout.image("arm64", "multi arm64\n")
    multi = layout.blob(_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": [amd, arm]}), OCI_INDEX)
    return {"single": single, "shared": shared, "multi": multi, "amd": amd, "arm": arm}


@pytest.fixture
def site(tmp_path: Path, repo: Path) -> Iterator[Site]:
    for tool in ("docker-registry", "skopeo", "htpasswd", "openssl"):
        assert shutil.which(tool), f"{tool} missing: apt-get install docker-registry skopeo " \
                                   "apache2-utils"
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                                       capture_output=True, text=True).stdout)
    with netns("img") as ns:
        logs = (tmp_path / "up.log").open("wb"), (tmp_path / "mirror.log").open("wb")
        upstream = ns.popen(["docker-registry", "serve", _registry_config(
            tmp_path / "up.yml", tmp_path / "up", f"{UPSTREAM}:80")], stdout=logs[0])
        ca, cert, key = make_ca(tmp_path)
        ns.popen(["docker-registry", "serve", _registry_config(
            tmp_path / "mirror.yml", tmp_path / "mirror", MIRROR, htpasswd, (cert, key))],
            stdout=logs[1])
        ns.wait_port(80)
        ns.wait_port(5000)
        layout = Layout(tmp_path / "layout")
        built = _build_images(layout)
        tags = {"registry": f"{UPSTREAM}/demo/single:v1", "tomcat": f"{UPSTREAM}/demo/multi:v2",
                "ingress-nginx": f"{UPSTREAM}/demo/shared:v1",
                "nfs-subdir-external-provisioner": f"{UPSTREAM}/demo/single:v1"}
        for name in ("single", "shared", "multi"):
            layout.tag(built[name], name)
        for name, ref in (("single", tags["registry"]), ("shared", tags["ingress-nginx"]),
                          ("multi", tags["tomcat"])):
            proc = ns.run(["skopeo", "copy", "--dest-tls-verify=false", "--all",
                           f"oci:{layout.root}:{name}", f"docker://{ref}"])
            assert proc.returncode == 0, proc.stderr
        _point_k8s_lab_at(repo, tags, ca.read_text())
        yield Site(ns, tmp_path, upstream, layout.root, tags)
        for log in logs:
            log.close()


def _point_k8s_lab_at(repo: Path, tags: dict[str, str], ca: str) -> None:
    """k8s-lab's images from the upstream, its other inputs shipped beside env.yaml, and a
    mirror with its CA and credentials."""
    env_dir = repo / "environments" / "k8s-lab"
    without_blueprint_tools(repo)  # its binaries are on dl.k8s.io, not on a loopback server
    (env_dir / "base.qcow2").write_bytes(b"Q" * 4096)
    (env_dir / "flannel.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n"
                                         "  name: kube-flannel\n")
    text = (env_dir / "env.yaml").read_text()
    text = text.replace(
        "https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
        "kube-flannel.yml", "file://flannel.yml").replace(
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
        "file://base.qcow2")
    text = text[:text.index("  images:\n")] + "  images:\n" + "".join(
        f"    {name}: {ref}\n" for name, ref in tags.items())
    pem = "".join(f"    {line}\n" for line in ca.strip().splitlines())
    text += (f"\nmirror:\n  registry: \"{MIRROR}\"\n  credentials: mirror-push\n  ca: |\n{pem}"
             "\nsecrets:\n  mirror-push: {env: GEN_SECRET_MIRROR_PUSH}\n")
    (env_dir / "env.yaml").write_text(text)


def gen_in(site: Site, *args: str, store: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(site.tmp / "home"), "PYTHONPATH": str(ROOT),
           "GEN_STORE": str(store), "GEN_SECRET_MIRROR_PUSH": f"{USER}:{PASSWORD}"}
    return site.ns.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()),
                        sys.executable, "-m", "generator", *args], cwd=cwd, timeout=300)


def raw_manifest(site: Site, ref: str, creds: bool = False) -> bytes:
    extra = ["--creds", f"{USER}:{PASSWORD}"] if creds else []
    proc = site.ns.run(["skopeo", "inspect", "--tls-verify=false", "--raw", *extra,
                        f"docker://{ref}"], text=False)
    assert proc.returncode == 0, proc.stderr
    return bytes(proc.stdout)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def store_objects(store: Path) -> set[str]:
    return {p.name for p in (store / "sha256").iterdir()} if (store / "sha256").is_dir() else set()


def locked_images(repo: Path) -> dict[str, str]:
    inputs = json.loads((repo / "lock" / "k8s-lab.lock").read_text())["inputs"]
    return {k: v["locked"] for k, v in inputs.items() if k.startswith("image/")}


def test_disconnected_workflow_converges_the_mirror_with_the_upstream_stopped(
        site: Site, repo: Path) -> None:
    source, target = site.tmp / "source-store", site.tmp / "site-store"
    locked = gen_in(site, "lock", "env/k8s-lab", store=source, cwd=repo)
    assert locked.returncode == 0, locked.stderr
    pins = locked_images(repo)
    for key, ref in site.tags.items():
        assert pins[f"image/{key}"] == ref.rsplit(":", 1)[0] + "@" + digest_of(
            raw_manifest(site, ref))
    fetched = gen_in(site, "fetch", "env/k8s-lab", "--all-architectures", store=source,
                     cwd=repo)
    assert fetched.returncode == 0, fetched.stderr
    # progress per image: bytes, rate, time left (the shared 1 MiB layer comes with the first)
    assert re.search(r"\[1/4\] image/ingress-nginx: 1\.\d MiB / 1\.\d MiB at [\d.]+ \S+/s, "
                     r"0 B left", fetched.stderr), fetched.stderr
    archive = site.tmp / "k8s-lab.tar"
    exported = gen_in(site, "store", "export", "env/k8s-lab", str(archive), store=source,
                      cwd=repo)
    assert exported.returncode == 0, exported.stderr
    imported = gen_in(site, "store", "import", str(archive), store=target, cwd=repo)
    assert imported.returncode == 0, imported.stderr
    assert store_objects(target) == store_objects(source)

    site.upstream.terminate()  # the site is disconnected: nothing can reach the upstream
    site.upstream.wait(timeout=10)
    assert site.ns.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                        f"docker://{site.tags['registry']}"]).returncode != 0

    planned = gen_in(site, "plan", "env/k8s-lab", "--provider", "mirror", "--store",
                     str(target), "--detailed-exitcode", store=target, cwd=repo)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    multi = pins["image/tomcat"].split("@")[1]
    assert f"+ mirror image image/tomcat  ({MIRROR}/{UPSTREAM}/demo/multi@{multi}: 7 " \
           "object(s)" in planned.stdout, planned.stdout
    assert PASSWORD not in planned.stdout + planned.stderr

    converged = gen_in(site, "converge", "env/k8s-lab", "--provider", "mirror", "--store",
                       str(target), "--auto-approve", "--state-dir", str(site.tmp / "state"),
                       store=target, cwd=repo)
    assert converged.returncode == 0, converged.stdout + converged.stderr
    for key, pinned in pins.items():
        upstream_repo, digest = pinned.split("@")
        served = raw_manifest(site, f"{MIRROR}/{upstream_repo}@{digest}", creds=True)
        assert digest_of(served) == digest, key
    again = gen_in(site, "plan", "env/k8s-lab", "--provider", "mirror", "--store", str(target),
                   "--detailed-exitcode", store=target, cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout


def test_fetch_keeps_the_nodes_architecture_shares_layers_and_resumes(site: Site,
                                                                      repo: Path) -> None:
    store = site.tmp / "store"
    assert gen_in(site, "lock", "env/k8s-lab", store=store, cwd=repo).returncode == 0
    first = gen_in(site, "fetch", "env/k8s-lab", "--format", "json", store=store, cwd=repo)
    assert first.returncode == 0, first.stderr
    index = json.loads(raw_manifest(site, site.tags["tomcat"]))
    amd, arm = (m["digest"].split(":")[1] for m in index["manifests"])
    held = store_objects(store)
    assert amd in held and arm not in held  # the nodes run amd64 only
    single = json.loads(raw_manifest(site, site.tags["registry"]))
    layer = single["layers"][0]["digest"].split(":")[1]
    assert (store / "sha256" / layer).stat().st_size == single["layers"][0]["size"]
    images = json.loads(first.stdout)["images"]
    # single finds the layer it shares with ingress-nginx (fetched before it) in the store
    assert images["image/nfs-subdir-external-provisioner"]["present"] == 1
    assert images["image/nfs-subdir-external-provisioner"]["bytes"] < 4096
    assert images["image/registry"] == {**images["image/registry"], "fetched": 0, "present": 3}
    # an interrupted fetch: the layer is gone; only it is fetched again
    (store / "sha256" / layer).unlink()
    (store / "sha256" / amd).write_bytes(b"corrupted")
    second = gen_in(site, "fetch", "env/k8s-lab", "--format", "json", store=store, cwd=repo)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)["images"]
    assert again["image/ingress-nginx"]["fetched"] == 1  # the shared layer, first needed here
    assert again["image/registry"]["fetched"] == 0
    assert again["image/tomcat"]["fetched"] == 1  # the corrupt child manifest, replaced
    assert hashlib.sha256((store / "sha256" / layer).read_bytes()).hexdigest() == layer


def test_a_sparse_index_refused_by_the_mirror_names_the_fix(site: Site, repo: Path) -> None:
    store = site.tmp / "store"
    assert gen_in(site, "lock", "env/k8s-lab", store=store, cwd=repo).returncode == 0
    assert gen_in(site, "fetch", "env/k8s-lab", store=store, cwd=repo).returncode == 0
    converged = gen_in(site, "converge", "env/k8s-lab", "--provider", "mirror",
                       "--auto-approve", "--state-dir", str(site.tmp / "state"), store=store,
                       cwd=repo)
    assert converged.returncode == 1, converged.stdout + converged.stderr
    assert "does not accept sparse indexes" in converged.stderr
    assert "gen fetch --all-architectures" in converged.stderr
    assert "Traceback" not in converged.stderr


def test_wrong_mirror_credentials_are_refused_without_showing_them(site: Site,
                                                                  repo: Path) -> None:
    store = site.tmp / "store"
    assert gen_in(site, "lock", "env/k8s-lab", store=store, cwd=repo).returncode == 0
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "GEN_STORE": str(store),
           "GEN_SECRET_MIRROR_PUSH": f"{USER}:wrong-word"}
    proc = site.ns.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), sys.executable,
                        "-m", "generator", "plan", "env/k8s-lab", "--provider", "mirror"],
                       cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HTTP 401" in proc.stderr and "wrong-word" not in proc.stdout + proc.stderr


def test_a_blob_the_upstream_serves_corrupted_is_refused_and_not_stored(site: Site,
                                                                        repo: Path) -> None:
    store = site.tmp / "store"
    assert gen_in(site, "lock", "env/k8s-lab", store=store, cwd=repo).returncode == 0
    single = json.loads(raw_manifest(site, site.tags["registry"]))
    layer = single["layers"][0]["digest"].split(":")[1]
    # the registry's own file for the layer, rewritten in place: it serves it unchecked
    data = site.tmp / "up" / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    content = bytearray(data.read_bytes())
    content[100] ^= 0xFF
    data.write_bytes(bytes(content))
    fetched = gen_in(site, "fetch", "env/k8s-lab", store=store, cwd=repo)
    assert fetched.returncode == 1, fetched.stdout + fetched.stderr
    assert f"blob sha256:{layer}: checksum mismatch: expected sha256 {layer}" in fetched.stderr
    assert "Traceback" not in fetched.stderr
    assert layer not in store_objects(store)
