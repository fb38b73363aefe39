"""Image tags resolve to their true digests against a real `docker-registry` (Debian).

The registry runs on 127.0.0.1:5000 inside a lo-only network namespace; images are built as
OCI layouts in Python (fixed mtimes, so the bytes are the same every run) and pushed with
skopeo. gen's resolver runs inside the namespace too, and its answer is checked against
`skopeo inspect`. A single-arch image and a multi-arch index are both covered.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Netns, netns

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "127.0.0.1:5000"
pytestmark = pytest.mark.daemons

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Layout:
    """A tiny OCI image layout written byte-for-byte deterministically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.refs: list[dict] = []

    def blob(self, data: bytes, media_type: str, **extra: object) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}

    def image(self, arch: str, text: str) -> dict:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = text.encode()
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        zipped = io.BytesIO()
        with gzip.GzipFile(fileobj=zipped, mode="wb", mtime=0) as gz:
            gz.write(raw.getvalue())
        layer = self.blob(zipped.getvalue(), "application/vnd.oci.image.layer.v1.tar+gzip")
        config = self.blob(_json({"architecture": arch, "os": "linux", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [
                                      "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}),
                           "application/vnd.oci.image.config.v1+json")
        return self.blob(_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": config, "layers": [layer]}), OCI_MANIFEST,
                         platform={"architecture": arch, "os": "linux"})

    def tag(self, descriptor: dict, tag: str) -> None:
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.refs.append(entry)
        (self.root / "index.json").write_bytes(_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                      "manifests": self.refs}))


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Netns, Path]]:
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} missing: apt-get install docker-registry skopeo"
    tmp = tmp_path_factory.mktemp("registry")
    config = tmp / "config.yml"
    # no access log: one line per request into a pipe nobody reads would block the daemon
    config.write_text(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                      f"storage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp / 'data'}\n  delete:\n    enabled: true\n"
                      f"http:\n  addr: {REGISTRY}\n")
    with netns("reg") as ns:
        ns.popen(["docker-registry", "serve", config])
        ns.wait_port(5000)
        layout = Layout(tmp / "layout")
        single = layout.image("amd64", "single\n")
        layout.tag(single, "single")
        amd, arm = layout.image("amd64", "multi amd64\n"), layout.image("arm64", "multi arm64\n")
        index = layout.blob(_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                   "manifests": [amd, arm]}), OCI_INDEX)
        layout.tag(index, "multi")
        for tag, repo, extra in (("single", "demo/single:v1", []),
                                 ("multi", "demo/multi:v2", ["--all"])):
            proc = ns.run(["skopeo", "copy", "--dest-tls-verify=false", *extra,
                           f"oci:{layout.root}:{tag}", f"docker://{REGISTRY}/{repo}"])
            assert proc.returncode == 0, proc.stderr
        yield ns, tmp


def skopeo_digest(ns: Netns, ref: str) -> str:
    raw = ns.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                 text=False)
    assert raw.returncode == 0, raw.stderr
    fmt = ns.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                  f"docker://{ref}"])
    assert fmt.returncode == 0, fmt.stderr
    digest = "sha256:" + hashlib.sha256(raw.stdout).hexdigest()
    assert fmt.stdout.strip() == digest
    return digest


def resolve_in(ns: Netns, ref: str) -> str:
    code = ("import sys; from generator.lock.resolve import resolve_image; "
            "print(resolve_image(sys.argv[1]))")
    proc = ns.run([sys.executable, "-c", code, ref], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_single_arch_tag_resolves_to_its_manifest_digest(registry: tuple[Netns, Path]) -> None:
    ns, _ = registry
    truth = skopeo_digest(ns, f"{REGISTRY}/demo/single:v1")
    assert resolve_in(ns, f"{REGISTRY}/demo/single:v1") == f"{REGISTRY}/demo/single@{truth}"


def test_multi_arch_tag_resolves_to_the_index_digest(registry: tuple[Netns, Path]) -> None:
    ns, tmp = registry
    truth = skopeo_digest(ns, f"{REGISTRY}/demo/multi:v2")
    raw = ns.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                  f"docker://{REGISTRY}/demo/multi:v2"])
    assert json.loads(raw.stdout)["mediaType"] == OCI_INDEX  # the index, not one platform
    assert resolve_in(ns, f"{REGISTRY}/demo/multi:v2") == f"{REGISTRY}/demo/multi@{truth}"


def test_unknown_tag_is_a_clear_error(registry: tuple[Netns, Path]) -> None:
    ns, _ = registry
    code = ("from generator.lock.resolve import resolve_image\n"
            "from generator.errors import UserError\n"
            "try:\n    resolve_image('127.0.0.1:5000/demo/single:nope')\n"
            "except UserError as e:\n    print(e.lines()[0])\n")
    proc = ns.run([sys.executable, "-c", code], cwd=ROOT)
    assert "answered HTTP 404" in proc.stdout, proc.stdout + proc.stderr


def test_gen_lock_pins_images_and_renders_them(registry: tuple[Netns, Path],
                                               repo: Path) -> None:
    ns, tmp = registry
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    text = env_yaml.read_text()
    text = text.replace("docker.io/library/registry:2", f"{REGISTRY}/demo/single:v1")
    text = text.replace("docker.io/library/tomcat:9", f"{REGISTRY}/demo/multi:v2")
    env_yaml.write_text(text)
    run = [sys.executable, "-m", "generator"]
    env = {"GEN_STORE": str(tmp / "store"), "PYTHONPATH": str(ROOT)}
    envs = [f"{k}={v}" for k, v in env.items()]
    proc = ns.run(["env", *envs, *run, "lock", "env/k8s-lab", "--offline"], cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "image/registry left unpinned" in proc.stderr  # offline never asks the registry
    proc = ns.run(["env", *envs, *run, "update", "env/k8s-lab", "image/registry", "tomcat"],
                  cwd=repo)
    assert proc.returncode == 0, proc.stderr
    single = skopeo_digest(ns, f"{REGISTRY}/demo/single:v1")
    multi = skopeo_digest(ns, f"{REGISTRY}/demo/multi:v2")
    assert f"image/registry: (none) -> {REGISTRY}/demo/single@{single}" in proc.stdout
    data = json.loads((repo / "lock" / "k8s-lab.lock").read_text())
    assert data["inputs"]["image/tomcat"] == {"original": f"{REGISTRY}/demo/multi:v2",
                                              "locked": f"{REGISTRY}/demo/multi@{multi}"}
    proc = ns.run(["env", *envs, *run, "render", "env/k8s-lab"], cwd=repo)
    assert proc.returncode == 0, proc.stderr
    rendered = b"".join(p.read_bytes() for p in (repo / "rendered" / "k8s-lab").rglob("*")
                        if p.is_file())
    assert f"{REGISTRY}/demo/multi@{multi}".encode() in rendered  # apps run the pinned digest
    assert b"demo/multi:v2" not in rendered
