"""The client tools as lock inputs: `tool/openshift-install` and `tool/oc` pinned offline
from the release's checksum-file excerpt the openshift-upi blueprint ships, fetched into the
store from a local HTTP server in a lo-only network namespace, and the installer provider
running the locked, stored `openshift-install` (no --openshift-install).

The archives served are stand-ins: tests/standins/openshift-install packed into a tar.gz the
way the release packs the real binary (a top-level `openshift-install` member), pinned by the
sha256 of that archive as the release's sha256sum.txt pins the real one. The stand-in is
"built" for a stand-in release (its RELEASE_IMAGE line set to that release's digest, as
`oc adm release extract --command=openshift-install` sets the real binary's), and that
release's release.txt is served beside the archives and shipped beside env.yaml.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clirun import gen
from netns import Netns, netns
from test_installer_phases import SEQUENCE, Site

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standins" / "openshift-install"
EXCERPT = ROOT / "blueprints" / "openshift-upi" / "openshift-client-sha256sum.txt"
PORT = 8719
BASE = f"http://127.0.0.1:{PORT}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive(member: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        readme = b"stand-in release archive\n"
        info = tarfile.TarInfo("README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return out.getvalue()


# A stand-in release: its digest is the sha256 of a made-up manifest, never a real release's.
RELEASE_DIGEST = "sha256:" + sha(b"stand-in release image manifest of 4.17.17\n")
RELEASE_IMAGE = f"quay.io/openshift-release-dev/ocp-release@{RELEASE_DIGEST}"
PLACEHOLDER = "quay.io/openshift-release-dev/ocp-release@sha256:" + "0" * 64


def built_for(release_image: str) -> bytes:
    """The stand-in installer as if extracted from `release_image` (its embedded pull spec)."""
    text = STANDIN.read_text()
    assert text.count(f'RELEASE_IMAGE = "{PLACEHOLDER}"') == 1, "the stand-in's line changed"
    return text.replace(f'RELEASE_IMAGE = "{PLACEHOLDER}"',
                        f'RELEASE_IMAGE = "{release_image}"').encode()


def release_txt(version: str, image: str) -> str:
    """A release.txt as mirror.openshift.com publishes it (its head; the component image
    table that follows is left out)."""
    digest = image.rpartition("@")[2]
    return ("Client tools for OpenShift\n--------------------------\n\n"
            "These archives contain the client tooling for [OpenShift](https://docs.openshift."
            "com).\n\n"
            f"Name:           {version}\nDigest:         {digest}\n"
            "Created:        2024-10-30T10:17:53Z\nOS/Arch:        linux/amd64\n"
            "Manifests:      741\nMetadata files: 1\n\n"
            f"Pull From: {image}\n\nRelease Metadata:\n  Version:  {version}\n")


def read_lock(repo: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((repo / "lock" / "lab.lock").read_text())  # type: ignore[no-any-return]


def lock_offline(repo: Path, tmp: Path) -> None:
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp / "store"), "HOME": str(tmp)})
    assert result.code == 0, result.err


def test_lock_pins_the_client_tools_offline_from_the_excerpt(repo: Path,
                                                             tmp_path: Path) -> None:
    lock_offline(repo, tmp_path)
    inputs = read_lock(repo)["inputs"]
    listed = dict(reversed(line.split()) for line in EXCERPT.read_text().splitlines()
                  if re.fullmatch(r"[0-9a-f]{64}  \S+", line))
    blueprint = yaml.safe_load((ROOT / "blueprints/openshift-upi/blueprint.yaml").read_text())
    for name in ("openshift-install", "oc"):
        declared = blueprint["defaults"]["artifacts"]["tools"][name]
        locked = inputs[f"tool/{name}"]["locked"]
        assert locked["url"] == declared["url"] and locked["version"] == declared["version"]
        assert locked["sha256"] == listed[declared["url"].rsplit("/", 1)[1]]
    # an excerpt that does not list the archive stops the lock with one line
    (repo / "blueprints/openshift-upi/openshift-client-sha256sum.txt").write_text(
        "".join(line + "\n" for line in EXCERPT.read_text().splitlines()
                if "openshift-client" in line))
    (repo / "lock" / "lab.lock").unlink()
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store"), "HOME": str(tmp_path)})
    assert result.code == 1
    assert "tool/openshift-install: openshift-client-sha256sum.txt lists no sha256 for " \
           "openshift-install-linux-" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def drop_blueprint_release_image(repo: Path) -> None:
    """Stand-in releases have their own digest: the blueprint's real `image:` (deep-merged
    under the environment's release block) would contradict it, so tests that pin a stand-in
    release remove that line first."""
    blueprint_file = repo / "blueprints/openshift-upi/blueprint.yaml"
    lines = blueprint_file.read_text().splitlines(keepends=True)
    kept = [line for line in lines
            if not line.strip().startswith("image: quay.io/openshift-release-dev/")]
    assert len(kept) == len(lines) - 1, "the blueprint's release image line changed"
    blueprint_file.write_text("".join(kept))


class Served:
    """Stand-ins for every artifact lab A pins, served from a docroot; env.yaml points at
    them by URL and sha256 (OS artifacts included, so `gen fetch` needs nothing else)."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.docroot = tmp / "www"
        self.docroot.mkdir()
        drop_blueprint_release_image(repo)
        self.binary = built_for(RELEASE_IMAGE)
        self.installer = archive("openshift-install", self.binary)
        files = {"openshift-install-linux-4.17.17.tar.gz": self.installer,
                 "openshift-client-linux-4.17.17.tar.gz": archive("oc", b"#!/bin/sh\n"),
                 "release.txt": release_txt("4.17.17", RELEASE_IMAGE).encode()}
        for name, data in files.items():
            (self.docroot / name).write_bytes(data)
        env_file = repo / "environments/lab/env.yaml"
        env = yaml.safe_load(env_file.read_text())
        tools = {"openshift-install": "openshift-install-linux-4.17.17.tar.gz",
                 "oc": "openshift-client-linux-4.17.17.tar.gz"}
        env.setdefault("artifacts", {})["tools"] = {
            name: {"version": "4.17.17", "url": f"{BASE}/{file}", "sha256": sha(files[file])}
            for name, file in tools.items()}
        # the release.txt served, and a copy beside env.yaml so that it locks offline
        (repo / "environments/lab/release.txt").write_bytes(files["release.txt"])
        env["artifacts"]["release"] = {"version": "4.17.17", "url": f"{BASE}/release.txt",
                                       "file": "release.txt"}
        blueprint = yaml.safe_load((repo / "blueprints/openshift-upi/blueprint.yaml")
                                   .read_text())
        names = set(env["artifacts"].get("os", {})) | set(
            blueprint["defaults"]["artifacts"]["os"])
        os_entries = {}
        for name in sorted(names):
            data = f"stand-in {name}\n".encode()
            (self.docroot / name).write_bytes(data)
            os_entries[name] = {"url": f"{BASE}/{name}", "sha256": sha(data)}
        env["artifacts"]["os"] = os_entries
        env_file.write_text(yaml.safe_dump(env, sort_keys=False))
        self.installer_sha = sha(self.installer)


@pytest.fixture
def served(repo: Path, tmp_path: Path) -> Served:
    return Served(repo, tmp_path)


@pytest.fixture
def www(served: Served) -> Iterator[Netns]:
    with netns("tools") as ns:
        ns.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(PORT),
                  "--directory", str(served.docroot)])
        ns.wait_port(PORT)
        yield ns


def fetch(ns: Netns, repo: Path, store: Path) -> tuple[int, str, str]:
    env = {**os.environ, "GEN_STORE": str(store), "HOME": str(repo)}
    proc = ns.run([sys.executable, "-m", "generator", "fetch", "env/lab"], cwd=repo, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_fetch_stores_and_verifies_the_tool_archives(served: Served, www: Netns, repo: Path,
                                                     tmp_path: Path) -> None:
    lock_offline(repo, tmp_path)
    store = tmp_path / "store"
    code, out, err = fetch(www, repo, store)
    assert code == 0, err
    assert "tool/openshift-install: fetched" in out and "tool/oc: fetched" in out
    stored = store / "sha256" / served.installer_sha
    assert stored.read_bytes() == served.installer
    # the server now sends another archive under the pinned name: fetch refuses it
    stored.unlink()
    (served.docroot / "openshift-install-linux-4.17.17.tar.gz").write_bytes(
        archive("openshift-install", b"#!/bin/sh\necho swapped\n"))
    code, out, err = fetch(www, repo, store)
    assert code != 0
    assert "tool/openshift-install" in err and served.installer_sha in err, err
    assert not stored.exists()


def test_converge_runs_the_locked_stored_installer(served: Served, www: Netns, repo: Path,
                                                   tmp_path: Path) -> None:
    lock_offline(repo, tmp_path)
    store = tmp_path / "store"
    assert fetch(www, repo, store)[0] == 0
    site = Site(repo, tmp_path)
    argv = ["converge", "env/lab", "--provider", "installer", "--auto-approve",
            "--state-dir", str(site.state), "--installer-state-dir", str(site.installer),
            "--store", str(store)]
    first = gen(*argv, cwd=repo, env=site.env())
    assert first.code == 0, first.out + first.err
    assert site.called() == SEQUENCE
    binary = site.installer / "lab" / "bin" / f"openshift-install-{served.installer_sha[:16]}"
    assert binary.read_bytes() == served.binary
    assert read_lock(repo)["inputs"]["release/openshift"]["locked"] == RELEASE_IMAGE
    second = gen(*argv, "--detailed-exitcode", cwd=repo, env=site.env())
    assert second.code == 0 and "No changes." in second.out, second.out + second.err


def test_a_tampered_store_archive_is_refused_before_anything_runs(
        served: Served, www: Netns, repo: Path, tmp_path: Path) -> None:
    lock_offline(repo, tmp_path)
    store = tmp_path / "store"
    assert fetch(www, repo, store)[0] == 0
    stored = store / "sha256" / served.installer_sha
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes() + b"tampered")
    site = Site(repo, tmp_path)
    result = gen("converge", "env/lab", "--provider", "installer", "--auto-approve",
                 "--state-dir", str(site.state), "--installer-state-dir", str(site.installer),
                 "--store", str(store), cwd=repo, env=site.env())
    assert result.code == 4, result.out + result.err
    assert f"store object {stored} is corrupt" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert site.called() == []
    assert not (site.installer / "lab" / "bin").exists()


def test_without_a_pinned_installer_the_plan_says_so(repo: Path, tmp_path: Path) -> None:
    """The phases need a pin: the lock's, or --openshift-install."""
    lock_offline(repo, tmp_path)
    lock = read_lock(repo)
    assert "tool/openshift-install" in lock["inputs"]
    env_file = repo / "environments/lab/env.yaml"
    blueprint = repo / "blueprints/openshift-upi/blueprint.yaml"
    text = blueprint.read_text()
    start = text.index("    tools:\n")
    end = text.index("  services:\n")
    blueprint.write_text(text[:start] + text[end:])
    lock_offline(repo, tmp_path)
    assert "tool/openshift-install" not in read_lock(repo)["inputs"]
    site = Site(repo, tmp_path)
    plan = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
               str(site.installer), cwd=repo, env=site.env())
    assert plan.code == 0, plan.err
    assert "the lock pins no openshift-install" in plan.out + plan.err
    assert "installer phase" not in plan.out
    assert env_file.exists()


def test_a_malformed_tool_entry_is_one_line_at_its_field(repo: Path) -> None:
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text() + "  tools:\n    oc: {version: '4.17 17', "
                        "url: 'https://example.test/oc.tar.gz'}\n")
    result = gen("validate", "env/lab", cwd=repo, env={**os.environ, "HOME": str(repo)})
    assert result.code == 1, result.out + result.err
    assert "environments/lab/env.yaml:" in result.err
    assert "at artifacts.tools.oc.version: " in result.err and "is not a version" in result.err


def test_a_pinned_installer_of_another_release_is_refused(repo: Path) -> None:
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text() + "  tools:\n    openshift-install:\n"
                        "      version: 4.16.3\n"
                        "      url: https://example.test/openshift-install-linux-4.16.3.tar.gz\n"
                        "      sha256: " + "ab" * 32 + "\n")
    result = gen("validate", "env/lab", cwd=repo, env={**os.environ, "HOME": str(repo)})
    assert result.code == 1, result.out + result.err
    line = next(n for n, text in enumerate(env_file.read_text().splitlines(), 1)
                if "version: 4.16.3" in text)
    assert f"environments/lab/env.yaml:{line}:" in result.err
    assert "at artifacts.tools.openshift-install.version: openshift-install 4.16.3 is not " \
           "of release 4.17 (cluster.version)" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


K8S_EXCERPT = ROOT / "blueprints" / "kubeadm" / "kubernetes-v1.30.14-linux-amd64-sha256sum.txt"


def test_lock_pins_the_kubernetes_binaries_offline_from_the_excerpt(repo: Path,
                                                                    tmp_path: Path) -> None:
    """kubeadm, kubelet and kubectl of lab B's kubernetesVersion, by the sha256 the excerpt
    lists for each file name of dl.k8s.io's release/<version>/bin/linux/amd64/."""
    result = gen("lock", "--offline", "env/k8s-lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store"), "HOME": str(tmp_path)})
    assert result.code == 0, result.err
    inputs = json.loads((repo / "lock" / "k8s-lab.lock").read_text())["inputs"]
    listed = dict(reversed(line.split()) for line in K8S_EXCERPT.read_text().splitlines())
    for name in ("kubeadm", "kubelet", "kubectl"):
        locked = inputs[f"tool/{name}"]["locked"]
        assert locked["url"] == f"https://dl.k8s.io/release/v1.30.14/bin/linux/amd64/{name}"
        assert locked["version"] == "v1.30.14" and locked["sha256"] == listed[name]


def test_a_kubernetes_binary_of_another_version_is_refused(repo: Path) -> None:
    """cloud-init installs the packages of cluster.kubernetesVersion: a pinned kubeadm of
    another version would never match what the nodes run."""
    env_file = repo / "environments/k8s-lab/env.yaml"
    env_file.write_text(env_file.read_text() + "  tools:\n    kubeadm:\n"
                        "      version: v1.31.2\n"
                        "      url: https://dl.k8s.io/release/v1.31.2/bin/linux/amd64/kubeadm\n"
                        "      sha256: " + "ab" * 32 + "\n")
    result = gen("validate", "env/k8s-lab", cwd=repo, env={**os.environ, "HOME": str(repo)})
    assert result.code == 1, result.out + result.err
    line = next(n for n, text in enumerate(env_file.read_text().splitlines(), 1)
                if "version: v1.31.2" in text)
    errors = [e for e in result.err.splitlines() if not e.startswith("warning:")]
    assert errors == [f"environments/k8s-lab/env.yaml:{line}:16: at artifacts.tools.kubeadm."
                      "version: kubeadm v1.31.2 is not the cluster's Kubernetes v1.30.14 "
                      "(cluster.kubernetesVersion) (pin the kubeadm of v1.30.14 (and its "
                      "sha256), or change cluster.kubernetesVersion)"], result.err


def test_the_built_in_lab_pins_its_release_offline_from_the_blueprint_image(
        repo: Path, tmp_path: Path) -> None:
    """openshift-upi writes the release digest as `image:` (no release.txt ships): the offline
    lock pins release/openshift to exactly that pull spec, with no warning."""
    blueprint = yaml.safe_load((repo / "blueprints/openshift-upi/blueprint.yaml").read_text())
    image = blueprint["defaults"]["artifacts"]["release"]["image"]
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store"), "HOME": str(tmp_path)})
    assert result.code == 0, result.err
    assert read_lock(repo)["inputs"]["release/openshift"]["locked"] == image
    assert "release/openshift" not in result.err, result.err


def test_a_lab_without_a_release_digest_says_its_release_needs_one_online_lock(
        repo: Path, tmp_path: Path) -> None:
    """Without `image:` (and no release.txt shipped) the offline lock leaves release/openshift
    unpinned and says how to pin it; the locked installer does not run."""
    drop_blueprint_release_image(repo)
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store"), "HOME": str(tmp_path)})
    assert result.code == 0, result.err
    assert "release/openshift" not in read_lock(repo)["inputs"]
    assert ("warning: release/openshift left unpinned: release/openshift 4.17.17: its release "
            "image "
            "digest is published only in https://mirror.openshift.com/pub/openshift-v4/clients/"
            "ocp/4.17.17/release.txt (no copy ships with the environment or blueprint); run "
            "`gen lock` once where that server answers") in result.err
    site = Site(repo, tmp_path)
    plan = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
               str(site.installer), "--store", str(tmp_path / "store"), cwd=repo,
               env=site.env())
    assert plan.code == 0, plan.out + plan.err
    assert ("installer: the lock pins no release image (release/openshift 4.17.17); run `gen "
            "lock env/lab` where https://mirror.openshift.com/pub/openshift-v4/clients/ocp/"
            "4.17.17/release.txt answers, or write artifacts.release.image; the installer "
            "phases are not planned") in plan.out + plan.err
    assert "+ installer phase" not in plan.out
    # the lock still renders --locked: no rendered byte depends on the release digest
    rendered = gen("render", "env/lab", "--locked", cwd=repo, env=site.env())
    assert rendered.code == 0, rendered.err


def test_lock_reads_the_release_image_from_release_txt_online(served: Served, www: Netns,
                                                              repo: Path) -> None:
    """Online, through the same resolver as the archives: the `Pull From:` line of the
    release.txt served beside them (no copy shipped)."""
    (repo / "environments/lab/release.txt").unlink()
    env_file = repo / "environments/lab/env.yaml"
    env = yaml.safe_load(env_file.read_text())
    del env["artifacts"]["release"]["file"]
    env_file.write_text(yaml.safe_dump(env, sort_keys=False))
    proc = www.run([sys.executable, "-m", "generator", "lock", "env/lab"], cwd=repo,
                   env={**os.environ, "GEN_STORE": str(repo / "store"), "HOME": str(repo)})
    assert proc.returncode == 0, proc.stderr
    assert read_lock(repo)["inputs"]["release/openshift"] == {
        "original": {"version": "4.17.17", "url": f"{BASE}/release.txt"},
        "locked": RELEASE_IMAGE}
    # the release.txt of another version is refused, naming both
    (served.docroot / "release.txt").write_text(release_txt("4.17.18", RELEASE_IMAGE))
    (repo / "lock" / "lab.lock").unlink()
    proc = www.run([sys.executable, "-m", "generator", "lock", "env/lab"], cwd=repo,
                   env={**os.environ, "GEN_STORE": str(repo / "store"), "HOME": str(repo)})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"release/openshift 4.17.17: {BASE}/release.txt is the release.txt of 4.17.18, not "
        "4.17.17 (use the release.txt of the pinned version)"), proc.stderr


def test_an_installer_built_for_another_release_is_never_run(served: Served, www: Netns,
                                                             repo: Path,
                                                             tmp_path: Path) -> None:
    """The lock pins one release image; the stored installer embeds another: one line, and
    no phase runs."""
    other = "quay.io/openshift-release-dev/ocp-release@sha256:" + sha(b"another release\n")
    env_file = repo / "environments/lab/env.yaml"
    env = yaml.safe_load(env_file.read_text())
    env["artifacts"]["release"] = {"version": "4.17.17", "url": f"{BASE}/release.txt",
                                   "image": other}
    env_file.write_text(yaml.safe_dump(env, sort_keys=False))
    lock_offline(repo, tmp_path)
    assert read_lock(repo)["inputs"]["release/openshift"]["locked"] == other
    store = tmp_path / "store"
    assert fetch(www, repo, store)[0] == 0
    site = Site(repo, tmp_path)
    result = gen("converge", "env/lab", "--provider", "installer", "--auto-approve",
                 "--state-dir", str(site.state), "--installer-state-dir", str(site.installer),
                 "--store", str(store), cwd=repo, env=site.env())
    assert result.code == 1, result.out + result.err
    line = (f"installer: the pinned openshift-install installs release image {RELEASE_IMAGE}, "
            f"not the locked {other} (release/openshift); no phase was run")
    assert line in result.err, result.err
    assert site.called() == []
    assert not (site.installer / "lab" / "assets").exists()


def test_the_release_override_variable_never_reaches_the_installer(
        served: Served, www: Netns, repo: Path, tmp_path: Path) -> None:
    """OPENSHIFT_INSTALL_RELEASE_IMAGE_OVERRIDE would make the installer install another
    image than the locked one: converge removes it from the installer's environment."""
    lock_offline(repo, tmp_path)
    store = tmp_path / "store"
    assert fetch(www, repo, store)[0] == 0
    site = Site(repo, tmp_path)
    result = gen("converge", "env/lab", "--provider", "installer", "--auto-approve",
                 "--state-dir", str(site.state), "--installer-state-dir", str(site.installer),
                 "--store", str(store), cwd=repo, env=site.env(
                     OPENSHIFT_INSTALL_RELEASE_IMAGE_OVERRIDE="quay.io/evil/release@sha256:"
                     + "e" * 64))
    assert result.code == 0, result.out + result.err
    state = json.loads((site.assets / ".openshift_install_state.json").read_text())
    assert state["releaseImage"] == RELEASE_IMAGE
    assert "Found override for release image" not in result.err


@pytest.mark.parametrize(("text", "problem"), [
    ("Name: 4.17.17\n", "x has no `Pull From:` line"),
    ("Pull From: quay.io/openshift-release-dev/ocp-release:4.17.17-x86_64\n",
     "does not name the release image by digest"),
    ("Pull From: ev\x01il/ocp-release@" + RELEASE_DIGEST + "\n",
     "does not name the release image by digest"),
    (f"Name: 4.17.18\nPull From: {RELEASE_IMAGE}\n", "x is the release.txt of 4.17.18"),
    (f"Digest: sha256:{'b' * 64}\nPull From: {RELEASE_IMAGE}\n",
     f"x says Digest sha256:{'b' * 64}"),
])
def test_release_txt_is_read_strictly(text: str, problem: str) -> None:
    """release.txt comes from a server: only a well-formed pull spec by digest of the pinned
    version, consistent with its own Digest line, is taken."""
    from generator.errors import UserError
    from generator.lock.resolve import parse_release_txt

    assert parse_release_txt(release_txt("4.17.17", RELEASE_IMAGE), "4.17.17", "x",
                             "release/openshift") == RELEASE_IMAGE
    with pytest.raises(UserError) as caught:
        parse_release_txt(text, "4.17.17", "x", "release/openshift")
    assert problem in caught.value.message
