"""`gen store export` / `gen store import`: carrying a lock's store objects to a disconnected site.

The source site locks and fetches from a loopback HTTP server (the fixture of test_store); the
archive is imported into a second, empty store after the server is gone, and `gen verify` and
`gen render --locked` must work from that store alone. Tampered archives are refused whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from clirun import gen, without_blueprint_tools
from test_store import ARTIFACTS, HELPER, MANIFEST, point_lab_at, server, sha  # noqa: F401

from generator.errors import EXIT_LOCK, EXIT_OK, EXIT_USER

ROOT = Path(__file__).resolve().parent.parent


def store_env(store: Path) -> dict[str, str]:
    return {**os.environ, "GEN_STORE": str(store), "PYTHONPATH": str(ROOT)}


def objects(store: Path) -> dict[str, bytes]:
    directory = store / "sha256"
    return {p.name: p.read_bytes() for p in directory.iterdir()} if directory.is_dir() else {}


# Pinned by digest in env.yaml, so locking needs no registry (images are not in the store).
IMAGES = {"registry": "docker.io/library/registry:2", "tomcat": "docker.io/library/tomcat:9",
          "ingress-nginx": "registry.k8s.io/ingress-nginx/controller:v1.11.5",
          "nfs-subdir-external-provisioner":
              "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"}
BASE_IMAGE = b"Q" * 5000


@pytest.fixture
def exported(server: tuple[str, Path], repo: Path, tmp_path: Path) -> Path:  # noqa: F811
    """k8s-lab's flannel manifest locked into the source store, then exported."""
    base, docroot = server
    without_blueprint_tools(repo)  # its binaries are on dl.k8s.io: the export carries them
    source = store_env(tmp_path / "source-store")
    (docroot / "debian.qcow2").write_bytes(BASE_IMAGE)
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    text = env_yaml.read_text().replace(
        "https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
        "kube-flannel.yml", f"{base}/flannel.yml").replace(
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
        f"{base}/debian.qcow2")
    images = text.index("  images:\n")
    env_yaml.write_text(text[:images] + "  images:\n" + "".join(
        f"    {name}: {ref}@sha256:{sha(name.encode())}\n" for name, ref in IMAGES.items()))
    locked = gen("lock", "env/k8s-lab", cwd=repo, env=source)
    assert locked.code == EXIT_OK and "left unpinned" not in locked.err, locked.err
    archive = tmp_path / "k8s-lab.tar"
    # the images' digests are made up here (never fetched): their objects are not carried
    result = gen("store", "export", "env/k8s-lab", str(archive), "--no-images", cwd=repo,
                 env=source)
    assert result.code == EXIT_OK, result.err
    assert f"manifest/cni/flannel: sha256:{sha(MANIFEST)}" in result.out
    for served in docroot.iterdir():  # the source is gone: the site is disconnected
        served.unlink()
    return archive


def test_export_then_import_into_an_empty_store_renders_offline(exported: Path, repo: Path,
                                                                tmp_path: Path) -> None:
    site = store_env(tmp_path / "site-store")
    before = gen("verify", "env/k8s-lab", cwd=repo, env=site)
    assert before.code == EXIT_LOCK and "is not in the store" in before.err
    imported = gen("store", "import", str(exported), cwd=repo, env=site)
    assert imported.code == EXIT_OK, imported.err
    assert "2 added" in imported.out and "k8s-lab" in imported.out
    assert objects(tmp_path / "site-store") == {sha(MANIFEST): MANIFEST,
                                                 sha(BASE_IMAGE): BASE_IMAGE}
    verified = gen("verify", "env/k8s-lab", cwd=repo, env=site)
    assert verified.code == EXIT_OK, verified.err
    out = tmp_path / "rendered"
    rendered = gen("render", "env/k8s-lab", "--locked", "--out", str(out), cwd=repo, env=site)
    assert rendered.code == EXIT_OK, rendered.err
    assert any(MANIFEST in p.read_bytes() for p in out.rglob("*") if p.is_file())
    again = gen("store", "import", str(exported), "--format", "json", cwd=repo, env=site)
    assert json.loads(again.out)["added"] == [] and again.code == EXIT_OK


def point_lab_fully_at(repo: Path, base: str, docroot: Path) -> None:
    """Boot artifacts and the helper's base image all from the loopback server."""
    point_lab_at(repo, base)
    (docroot / "centos.qcow2").write_bytes(BASE_IMAGE)
    blueprint = repo / "blueprints" / "openshift-upi" / "blueprint.yaml"
    text = blueprint.read_text()
    old = f"url: {base}/helper.qcow2\n        sha256: {sha(HELPER)}"
    assert old in text
    blueprint.write_text(text.replace(old, f"url: {base}/centos.qcow2\n"
                                           f"        sha256: {sha(BASE_IMAGE)}"))


def test_export_is_deterministic_and_carries_boot_artifacts(server: tuple[str, Path],  # noqa: F811
                                                            repo: Path, tmp_path: Path) -> None:
    base, docroot = server
    source = store_env(tmp_path / "source-store")
    point_lab_fully_at(repo, base, docroot)
    wanted = {sha(d): d for d in [*ARTIFACTS.values(), BASE_IMAGE]}
    assert gen("lock", "env/lab", cwd=repo, env=source).code == EXIT_OK
    missing = gen("store", "export", "env/lab", str(tmp_path / "a.tar"), cwd=repo, env=source)
    assert missing.code == EXIT_LOCK and "run `gen fetch ENV`" in missing.err
    assert not (tmp_path / "a.tar").exists()
    assert gen("fetch", "env/lab", cwd=repo, env=source).code == EXIT_OK
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    for target in (first, second):
        result = gen("store", "export", "env/lab", str(target), cwd=repo, env=source)
        assert result.code == EXIT_OK, result.err
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names[0] == "manifest.json"
    assert sorted(names[1:]) == sorted(f"sha256/{h}" for h in wanted)
    assert {o["sha256"]: o["size"] for o in manifest["objects"]} == {
        h: len(d) for h, d in wanted.items()}
    site = tmp_path / "site-store"
    assert gen("store", "import", str(first), cwd=repo, env=store_env(site)).code == EXIT_OK
    assert objects(site) == wanted


def rewrite(archive: Path, change: dict[str, bytes | None], extra: list[tarfile.TarInfo]
            = (), manifest: bytes | None = None) -> Path:  # type: ignore[assignment]
    """A copy of `archive` with members replaced (None drops one) and members added."""
    target = archive.with_name("tampered.tar")
    with tarfile.open(archive) as src, tarfile.open(target, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json" and manifest is not None:
                data = manifest
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
        for info in extra:
            out.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return target


def link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def plain(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def truncated(archive: Path) -> Path:
    """The archive cut in the middle of its last object's content."""
    with tarfile.open(archive) as tar:
        cut = tar.getmembers()[-1].offset_data + 100
    target = archive.with_name("cut.tar")
    target.write_bytes(archive.read_bytes()[:cut])
    return target


FLIPPED = MANIFEST.replace(b"flannel", b"flannex")


@pytest.mark.parametrize("tamper, message", [
    (lambda a: rewrite(a, {f"sha256/{sha(MANIFEST)}": FLIPPED}),
     f"member sha256/{sha(MANIFEST)}: content hashes to sha256:{sha(FLIPPED)}"),
    (lambda a: rewrite(a, {f"sha256/{sha(MANIFEST)}": MANIFEST + b"#"}),
     f"member sha256/{sha(MANIFEST)} is {len(MANIFEST) + 1} bytes, manifest.json says "
     f"{len(MANIFEST)}"),
    (lambda a: rewrite(a, {f"sha256/{sha(MANIFEST)}": None}),
     f"object sha256:{sha(MANIFEST)} is listed in manifest.json but not in the archive"),
    (lambda a: rewrite(a, {}, [plain("../../escape", 3)]),
     "member '../../escape' is not an object listed in manifest.json"),
    (lambda a: rewrite(a, {}, [plain(f"sha256/{sha(b'xxx')}", 3)]),
     f"member 'sha256/{sha(b'xxx')}' is not an object listed in manifest.json"),
    (lambda a: rewrite(a, {}, [link(f"sha256/{'0' * 64}", "/etc/passwd")]),
     f"member 'sha256/{'0' * 64}' is not a regular file"),
    (lambda a: rewrite(a, {}, manifest=b'{"format": "gen-store-archive/1", "objects": '
                                       b'[{"sha256": "../x", "size": 1}]}'),
     "manifest.json: at objects[0].sha256: not a new sha256 hex digest"),
    (lambda a: rewrite(a, {}, manifest=json.dumps({"format": "gen-store-archive/1", "objects": [
        {"sha256": sha(MANIFEST), "size": 1 << 50}]}).encode()),
     "manifest.json: at objects[0].size: not a size up to"),
    (lambda a: truncated(a), "not a readable tar archive"),
], ids=["content", "size", "dropped", "path-escape", "unlisted", "symlink", "bad-name",
        "huge-size", "truncated"])
def test_a_tampered_archive_is_refused_and_adds_nothing(exported: Path, repo: Path,
                                                        tmp_path: Path, tamper: object,
                                                        message: str) -> None:
    bad = tamper(exported)  # type: ignore[operator]
    site = tmp_path / "site-store"
    result = gen("store", "import", str(bad), cwd=repo, env=store_env(site))
    assert result.code == EXIT_USER, result.err
    assert result.err.count("\n") == 1 and message in result.err, result.err
    assert "nothing was imported" in result.err
    assert objects(site) == {} and [p.name for p in site.iterdir()] == ["sha256"]
    assert not (tmp_path.parent / "escape").exists()


def test_a_corrupt_object_in_the_site_store_is_replaced(exported: Path, repo: Path,
                                                        tmp_path: Path) -> None:
    site = tmp_path / "site-store"
    (site / "sha256").mkdir(parents=True)
    (site / "sha256" / sha(MANIFEST)).write_bytes(b"bit rot")
    result = gen("store", "import", str(exported), cwd=repo, env=store_env(site))
    assert result.code == EXIT_OK, result.err
    assert objects(site)[sha(MANIFEST)] == MANIFEST
    assert hashlib.sha256(objects(site)[sha(MANIFEST)]).hexdigest() == sha(MANIFEST)
