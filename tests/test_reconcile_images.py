"""Base images reach the pool: `gen converge env/k8s-lab` against a REAL private libvirtd
(qemu driver) with an empty pool uploads the pinned base image from gen's store, creates the
overlays backing onto it, starts the VMs, and a re-plan is empty.

Lab B is scaled to the machine: the master and the storage node only, TCG domains of 256 MiB
with 16 MiB overlays, an isolated network. The Debian cloud image is stood in for by a small
qcow2 made here with qemu-img, declared with its sha256 (`file://` beside env.yaml), locked
with `gen lock` and put in the store by `gen fetch`: the same path a real image takes. The
container images and the CNI manifest are pinned the same offline way, so the lock is whole.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import gen, without_blueprint_tools
from reconcile_fixtures import private_libvirtd, scale_lab, wipe_libvirt

pytestmark = pytest.mark.libvirtd
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVuLXRlc3Qta2V5LWZvci1pbWFnZXMtaW4tdGhlLXBvb2w gen@test"
VOLUME = "debian-12-genericcloud"


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    with private_libvirtd() as uri:
        yield uri


def scale_k8s_lab(repo: Path, pool: Path) -> str:
    """Lab B made small, its base image a qcow2 made here; returns that image's sha256."""
    env_dir = repo / "environments" / "k8s-lab"
    without_blueprint_tools(repo)  # its binaries are on dl.k8s.io: `gen fetch` stays local
    image = env_dir / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    manifest = env_dir / "flannel.yml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n")
    path = env_dir / "env.yaml"
    text = path.read_text()
    edits = [("    bridge: br0\n\nhypervisors:", "    libvirt: {mode: isolated}\n\nhypervisors:"),
             ("domainType: kvm", "domainType: qemu"),
             ("path: /var/lib/libvirt/images", f"path: {pool}"),
             ("url: https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
              "kube-flannel.yml", "url: file://flannel.yml\n      sha256: "
              + hashlib.sha256(manifest.read_bytes()).hexdigest())]
    for old, new in edits:
        assert text.count(old) == 1, f"lab B's env.yaml changed: {old!r}"
        text = text.replace(old, new)
    text = re.sub(r"^  - \{name: test-node\d.*\n", "", text, flags=re.M)
    text = text.replace("hypervisor: hv1,", "hypervisor: hv1, vcpu: 1, memory: 256MiB, "
                        "disks: [{name: root, size: 16MiB}],")
    assert text.count("memory: 256MiB") == 2, "lab B's node lines changed"
    # Stand-ins pinned offline: the base image by the sha256 computed above, the add-ons'
    # images by digest (never pulled here: no Kubernetes runs in this test).
    text = text[:text.index("artifacts:")] + (
        "artifacts:\n  os:\n"
        f"    {VOLUME}: {{url: \"file://base.qcow2\", sha256: {sha}}}\n"
        "  images:\n"
        "    registry: docker.io/library/registry@sha256:" + "1" * 64 + "\n"
        "    tomcat: docker.io/library/tomcat@sha256:" + "2" * 64 + "\n"
        "    ingress-nginx: registry.k8s.io/ingress-nginx/controller@sha256:" + "3" * 64 + "\n"
        "    nfs-subdir-external-provisioner: registry.k8s.io/sig-storage/"
        "nfs-subdir-external-provisioner@sha256:" + "4" * 64 + "\n")
    path.write_text(text)
    return sha


@pytest.fixture
def lab(libvirtd: str, repo: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    import os

    pool = tmp_path / "pool"
    sha = scale_k8s_lab(repo, pool)
    home = tmp_path / "home"
    (home / ".config" / "gen" / "secrets").mkdir(parents=True)  # the default secrets dir
    (home / ".config" / "gen" / "secrets" / "id_rsa.pub").write_text(KEY + "\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GEN_STORE": str(tmp_path / "store"),
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    for verb in (("lock",), ("fetch", "--no-images")):  # made-up image digests: not pulled
        done = gen(*verb, "env/k8s-lab", cwd=repo, env=env)
        assert done.code == 0, done.out + done.err
    yield {"repo": repo, "uri": libvirtd, "env": env, "pool": pool, "sha": sha,
           "state": str(tmp_path / "state"), "store": tmp_path / "store"}
    wipe_libvirt(libvirtd)


def run(lab: dict[str, object], verb: str, *args: str) -> tuple[int, str, str]:
    extra = ["--state-dir", str(lab["state"]), "--auto-approve"] if verb == "converge" else []
    done = gen(verb, "env/k8s-lab", "--uri-override", f"hv1={lab['uri']}", "--provider",
               "libvirt", *extra, *args, cwd=Path(str(lab["repo"])), env=dict(lab["env"]),
               timeout=300)  # type: ignore[call-overload]
    return done.code, done.out, done.err


def virsh(lab: dict[str, object], *args: str) -> str:
    proc = subprocess.run(["virsh", "-c", str(lab["uri"]), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_converge_uploads_the_pinned_base_image_into_an_empty_pool(
        lab: dict[str, object], tmp_path: Path) -> None:
    sha = str(lab["sha"])
    code, out, err = run(lab, "plan", "--detailed-exitcode")
    assert code == 2, out + err
    assert "Wave 14: base images" in out
    assert f"+ libvirt volume hv1/{VOLUME}  (upload volume {VOLUME} sha256:{sha}" in out
    assert out.index(f"hv1/{VOLUME}") < out.index("hv1/test-master-root.qcow2")

    code, out, err = run(lab, "converge")
    assert code == 0, out + err
    assert f"+ libvirt volume hv1/{VOLUME} done in" in err
    # The base is in the pool, byte for byte (downloaded back through libvirt), and both
    # overlays back onto it; both VMs run.
    back = tmp_path / "back.qcow2"
    virsh(lab, "vol-download", "--pool", "default", VOLUME, str(back))
    assert hashlib.sha256(back.read_bytes()).hexdigest() == sha
    for node in ("test-master", "test-storage1"):
        info = subprocess.run(["qemu-img", "info", "-U", "--output", "json",
                               str(Path(str(lab["pool"])) / f"{node}-root.qcow2")],
                              capture_output=True, text=True, check=True).stdout
        assert f'"backing-filename": "{lab["pool"]}/{VOLUME}"' in info, info
    assert set(virsh(lab, "list", "--name").split()) == {"test-master", "test-storage1"}

    code, out, err = run(lab, "plan", "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes." in out


def test_a_base_image_that_differs_from_the_pin_is_never_overwritten(
        lab: dict[str, object], tmp_path: Path) -> None:
    assert run(lab, "converge")[0] == 0
    other = tmp_path / "other.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(other), "2M"], check=True)
    virsh(lab, "vol-upload", "--pool", "default", VOLUME, str(other))
    code, out, err = run(lab, "plan")
    assert code == 1, out + err
    assert f"base image {VOLUME} (volume {VOLUME} in pool default) holds sha256:" \
           f"{hashlib.sha256(other.read_bytes()).hexdigest()}, the lock pins sha256:" \
           f"{lab['sha']}" in out + err


def test_a_corrupt_store_object_is_refused_before_upload(lab: dict[str, object]) -> None:
    obj = Path(str(lab["store"])) / "sha256" / str(lab["sha"])
    obj.write_bytes(b"not the image\n")
    code, out, err = run(lab, "converge")
    assert code == 4, out + err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert re.fullmatch(rf"store object {re.escape(str(obj))} is corrupt: its content "
                        rf"hashes to sha256:[0-9a-f]{{64}}, not sha256:{lab['sha']} .*",
                        lines[0]), lines[0]
    # Refused while planning: nothing was applied, not even the network or the pool.
    assert virsh(lab, "pool-list", "--all", "--name").split() == []
    assert virsh(lab, "list", "--all", "--name").split() == []


# -- a helper from nothing -----------------------------------------------------------------

def test_the_helper_comes_up_from_its_cloud_image_and_seed(
        libvirtd: str, repo: Path, tmp_path: Path) -> None:
    """Lab A on an empty hypervisor: the helper's base image is uploaded, its overlay and
    its NoCloud seed are created and it is started, all before the boot-services wave; the
    seed's network-config is accepted by cloud-init's own renderer for its distribution."""
    import os

    from generator.lock.store import Store

    image = repo / "environments" / "lab" / "helper-base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    sha = Store(tmp_path / "store").put_bytes(image.read_bytes())  # what `gen fetch` does
    pool = tmp_path / "pool"
    scale_lab(repo, pool, helper_image=(image.name, sha))
    home = tmp_path / "home"
    (home / ".config" / "gen" / "secrets").mkdir(parents=True)  # the default secrets dir
    (home / ".config" / "gen" / "secrets" / "id_rsa.pub").write_text(KEY + "\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GEN_SECRET_PULL": '{"auths":{}}',
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    args = ["--uri-override", f"hv1={libvirtd}", "--provider", "libvirt", "--start", "helper",
            "--store", str(tmp_path / "store")]
    try:
        plan = gen("plan", "env/lab", *args, cwd=repo, env=env)
        assert plan.code == 0, plan.out + plan.err
        text = plan.out
        assert "Wave 16: service hosts" in text
        order = [text.index(f"hv1/{name}") for name in (
            "centos-stream-9-genericcloud", "helper-root.qcow2", "helper-seed.iso",
            "helper  (define and start)", "bootstrap-root.qcow2")]
        assert order == sorted(order), text
        done = gen("converge", "env/lab", *args, "--state-dir", str(tmp_path / "state"),
                   "--auto-approve", cwd=repo, env=env, timeout=300)
        assert done.code == 0, done.out + done.err
        again = gen("plan", "env/lab", *args, "--detailed-exitcode", cwd=repo, env=env)
        assert again.code == 0 and "No changes." in again.out, again.out + again.err

        virsh = ["virsh", "-c", libvirtd]
        dom = ET.fromstring(subprocess.run([*virsh, "dumpxml", "helper"], capture_output=True,
                                           text=True, check=True).stdout)
        disks = {d.get("device"): d.find("source").get("volume")  # type: ignore[union-attr]
                 for d in dom.iter("disk")}
        assert disks == {"disk": "helper-root.qcow2", "cdrom": "helper-seed.iso"}
        assert subprocess.run([*virsh, "domstate", "helper"], capture_output=True, text=True,
                              check=True).stdout.strip() == "running"
        info = subprocess.run(["qemu-img", "info", "-U", "--output", "json",
                               str(pool / "helper-root.qcow2")], capture_output=True, text=True,
                              check=True).stdout
        assert f'"backing-filename": "{pool}/centos-stream-9-genericcloud"' in info, info

        iso = tmp_path / "seed.iso"
        subprocess.run([*virsh, "vol-download", "--pool", "default", "helper-seed.iso",
                        str(iso)], check=True, capture_output=True)
        seed_dir = tmp_path / "seed"
        seed_dir.mkdir()
        for name in ("user-data", "meta-data", "network-config"):
            (seed_dir / name).write_bytes(subprocess.run(
                ["isoinfo", "-R", "-x", f"/{name}", "-i", str(iso)], capture_output=True,
                check=True).stdout)
        user_data = (seed_dir / "user-data").read_text()
        assert KEY in user_data and "@@gen-secret" not in user_data
        assert "- bind\n" in user_data and "- dhcp-server\n" in user_data  # el9 names
        schema = subprocess.run(["cloud-init", "schema", "--config-file",
                                 str(seed_dir / "user-data")], capture_output=True, text=True)
        assert schema.returncode == 0, schema.stdout + schema.stderr
        out = tmp_path / "sysconfig"
        converted = subprocess.run(["cloud-init", "devel", "net-convert", "-p",
                                    str(seed_dir / "network-config"), "-k", "yaml", "-d",
                                    str(out), "-D", "centos", "-O", "sysconfig"],
                                   capture_output=True, text=True, timeout=120)
        assert converted.returncode == 0, converted.stdout + converted.stderr
        ifcfg = (out / "etc/sysconfig/network-scripts/ifcfg-ens3").read_text()
        assert "IPADDR=192.168.20.111" in ifcfg and "GATEWAY=192.168.20.1" in ifcfg, ifcfg
        # Its own named is not up at first boot: it resolves through the forwarders.
        assert "DNS1=8.8.8.8" in ifcfg, ifcfg
    finally:
        wipe_libvirt(libvirtd)


def test_a_base_nothing_backs_onto_is_uploaded_again(lab: dict[str, object],
                                                     tmp_path: Path) -> None:
    """A copy that does not hash to the pin and that no overlay uses (an interrupted upload)
    is replaced by the pinned image."""
    assert run(lab, "converge")[0] == 0
    for node in ("test-master", "test-storage1"):
        virsh(lab, "destroy", node)
        virsh(lab, "undefine", node)
        virsh(lab, "vol-delete", "--pool", "default", f"{node}-root.qcow2")
    torn = tmp_path / "torn"
    torn.write_bytes(b"\0" * 4096)  # what a killed upload leaves: the start of the volume
    virsh(lab, "vol-upload", "--pool", "default", VOLUME, str(torn))
    code, out, err = run(lab, "plan")
    assert code == 0, out + err
    assert f"-/+ libvirt volume hv1/{VOLUME}  (nothing backs onto the pool's copy: upload " \
           f"volume {VOLUME} sha256:{lab['sha']}" in out, out
    code, out, err = run(lab, "converge")
    assert code == 0, out + err
    code, out, err = run(lab, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out + err
