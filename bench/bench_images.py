"""Image fetch + push throughput against `skopeo copy`; prints its figures.

Two real `docker-registry` processes (an upstream and a mirror) in a lo-only network
namespace; `--images` images of `--layers` layers of `--mib` MiB each (random bytes, so
nothing compresses) pushed upstream with skopeo. Then, on the same registries:

1. gen: every image fetched into an empty store (`fetch_image`), then pushed from the store
   to the mirror (`missing` + `push`): the disconnected path, which goes through the store.
2. skopeo: `skopeo copy docker://upstream/...@digest docker://mirror/...` of the same
   images into other mirror repositories (registry to registry, no store).

Target (issue 18): gen's fetch + push at least as fast as skopeo's copy. Needs root (a
network namespace), docker-registry and skopeo.

Run: python bench/bench_images.py [--images 3] [--layers 2] [--mib 32]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from netns import netns  # noqa: E402

UPSTREAM, MIRROR = "127.0.0.2:5000", "127.0.0.3:5000"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

GEN_SIDE = r"""
import sys, time
from pathlib import Path
from generator.lock.images import fetch_image, missing, push
from generator.lock.oci import Client
from generator.lock.resolve import parse_image
from generator.lock.store import Store

store, refs = Store(Path(sys.argv[1])), sys.argv[2:]
archs = frozenset({"amd64"})
up, mirror = Client("127.0.0.2:5000", plain_http=True), Client("127.0.0.3:5000", plain_http=True)
quiet = lambda done, total: None
start = time.monotonic()
for ref in refs:
    fetch_image(store, ref, parse_image(ref), archs, up, quiet)
fetched = time.monotonic()
for ref in refs:
    image = parse_image(ref)
    gap = missing(store, mirror, ref, "gen/" + image.repository, image.digest, archs)
    push(store, mirror, gap, quiet)
print(fetched - start, time.monotonic() - fetched)
"""


def make_layout(root: Path, images: int, layers: int, mib: int) -> list[str]:
    """An OCI layout of `images` images; returns their tags."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    refs, tags = [], []
    for i in range(images):
        layer_list = [blob(os.urandom(mib << 20), "application/vnd.oci.image.layer.v1.tar+gzip")
                      for _ in range(layers)]
        config = blob(json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode(),
                      "application/vnd.oci.image.config.v1+json")
        manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                    "config": config, "layers": layer_list}).encode(),
                        OCI_MANIFEST)
        refs.append({**manifest, "annotations": {"org.opencontainers.image.ref.name": f"i{i}"}})
        tags.append(f"i{i}")
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": refs}))
    return tags


def config(path: Path, data: Path, addr: str) -> Path:
    path.write_text(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {addr}\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mib", type=int, default=32)
    args = parser.parse_args()
    total = args.images * args.layers * args.mib
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp_dir, netns("bench") as ns:
        tmp = Path(tmp_dir)
        for name, addr in (("up", UPSTREAM), ("mirror", MIRROR)):
            ns.popen(["docker-registry", "serve", config(tmp / f"{name}.yml", tmp / name, addr)],
                     stdout=subprocess.DEVNULL)
        ns.wait_port(5000)
        time.sleep(0.5)
        tags = make_layout(tmp / "layout", args.images, args.layers, args.mib)
        refs = []
        for tag in tags:
            ref = f"{UPSTREAM}/bench/{tag}:v1"
            proc = ns.run(["skopeo", "copy", "--dest-tls-verify=false",
                           f"oci:{tmp / 'layout'}:{tag}", f"docker://{ref}"], timeout=600)
            assert proc.returncode == 0, proc.stderr
            digest = ns.run(["skopeo", "inspect", "--tls-verify=false", "--format",
                             "{{.Digest}}", f"docker://{ref}"]).stdout.strip()
            refs.append(f"{UPSTREAM}/bench/{tag}@{digest}")
        proc = ns.run([sys.executable, "-c", GEN_SIDE, str(tmp / "store"), *refs],
                      cwd=ROOT, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr
        fetch_s, push_s = map(float, proc.stdout.split())
        start = time.monotonic()
        for ref in refs:
            name, digest = ref.split("@")
            target = f"{MIRROR}/skopeo/{name.split('/', 1)[1]}@{digest}".split("@")[0]
            proc = ns.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                           f"docker://{ref}", f"docker://{target}"], timeout=600)
            assert proc.returncode == 0, proc.stderr
        skopeo_s = time.monotonic() - start
    gen_s = fetch_s + push_s
    print(f"images: {args.images} x {args.layers} layer(s) x {args.mib} MiB = {total} MiB")
    print(f"gen fetch (upstream -> store): {fetch_s:.2f} s, {total / fetch_s:.0f} MiB/s")
    print(f"gen push (store -> mirror):    {push_s:.2f} s, {total / push_s:.0f} MiB/s")
    print(f"gen fetch + push:              {gen_s:.2f} s, {total / gen_s:.0f} MiB/s")
    print(f"skopeo copy (registry -> registry): {skopeo_s:.2f} s, {total / skopeo_s:.0f} MiB/s")
    print(f"ratio gen / skopeo throughput: {skopeo_s / gen_s:.2f}x (target >= 1.0)")


if __name__ == "__main__":
    main()
