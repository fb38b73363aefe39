"""cloud-init family: lab B's NoCloud seeds, checked by Debian's cloud-init itself.

- user-data: `cloud-init schema --config-file` (offline), plus every top-level key must be
  one the shipped schema knows (22.4's schema allows unknown keys, so typos would pass).
- network-config: cloud-init 22.4 has no network schema command, so the seed goes through
  cloud-init's own code instead: NoCloud's seed reader, the v2 parser (`network_state`) and
  the systemd-networkd renderer, and the rendered .network file is checked.
- the seed ISO: built from seed.json's recipe with the real genisoimage, read back with
  isoinfo (label `cidata`, byte-identical files).
- libvirt: the domain attaches the seed as a virtio-scsi cdrom and still validates
  (virt-xml-validate, and `virsh define` on the test driver).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml as pyyaml

from generator.environment import load_environment
from generator.families import Pins, cloudinit, libvirt
from generator.model import Environment

ROOT = Path(__file__).resolve().parent.parent
BASE = "clusters/k8s/cloud-init"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python, where the cloudinit package lives
CLOUD_INIT_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/"
                         "schema-cloud-config-v1.json")
NODES = ("test-master", "test-node1", "test-node2", "test-node3", "test-storage1")

# Runs under Debian's python: read a seed dir the way NoCloud does, parse network-config v2
# with cloud-init's parser and render it for systemd-networkd.
NOCLOUD_READER = """
import json, os, sys, tempfile
from cloudinit import util
from cloudinit.net import network_state, networkd
from cloudinit.sources.DataSourceNoCloud import _merge_new_seed
seeded = util.pathprefix2dict(sys.argv[1], required=["user-data", "meta-data"],
                              optional=["vendor-data", "network-config"])
data = _merge_new_seed({"meta-data": {}}, seeded)
state = network_state.parse_net_config_data(data["network-config"], skip_broken=False)
target = tempfile.mkdtemp()
networkd.Renderer({}).render_network_state(state, target=target)
netdir = os.path.join(target, "etc/systemd/network")
print(json.dumps({"meta-data": data["meta-data"],
                  "networkd": {f: open(os.path.join(netdir, f)).read()
                               for f in sorted(os.listdir(netdir))}}))
"""


@pytest.fixture(scope="module")
def lab_b() -> Environment:
    return load_environment("env/k8s-lab", ROOT).model


@pytest.fixture(scope="module")
def tree(lab_b) -> dict[str, bytes]:
    return cloudinit.render(lab_b, Pins())


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing (tests/run.sh installs it)"
    return found


def write_seed(tree: dict[str, bytes], node: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in cloudinit.SEED_FILES:
        (directory / name).write_bytes(tree[f"{BASE}/{node}/{name}"])
    return directory


def user_data(tree: dict[str, bytes], node: str) -> dict:
    content = tree[f"{BASE}/{node}/user-data"]
    assert content.startswith(b"#cloud-config\n")
    return pyyaml.safe_load(content)


def test_one_seed_per_image_node(tree):
    assert sorted(tree) == sorted(f"{BASE}/{n}/{f}" for n in NODES
                                  for f in (*cloudinit.SEED_FILES, "seed.json"))


@pytest.mark.parametrize("node", NODES)
def test_user_data_passes_cloud_init_schema(tree, node, tmp_path):
    path = tmp_path / "user-data"
    path.write_bytes(tree[f"{BASE}/{node}/user-data"])
    result = subprocess.run([tool("cloud-init"), "schema", "--config-file", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
    assert "deprecat" not in (result.stdout + result.stderr).lower().replace(
        "cloud config schema deprecations: \n", "")
    schema = json.loads(CLOUD_INIT_SCHEMA.read_text())
    known = {key for part in schema["allOf"]
             for key in schema["$defs"][part["$ref"].split("/")[-1]].get("properties", {})}
    assert set(user_data(tree, node)) <= known


def test_cloud_init_schema_rejects_a_wrong_type(tmp_path):
    """The same check fails a broken document, so a pass above means something."""
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nruncmd: swapoff -a\nwrite_files: {path: /x}\n")
    result = subprocess.run([tool("cloud-init"), "schema", "--config-file", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_network_config_through_cloud_inits_own_reader(tree, tmp_path):
    seed = write_seed(tree, "test-master", tmp_path / "seed")
    result = subprocess.run([SYSTEM_PYTHON, "-c", NOCLOUD_READER, str(seed)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read["meta-data"] == {"instance-id": "iid-k8s-lab-test-master",
                                 "local-hostname": "test-master"}
    (network,) = read["networkd"].values()
    assert "Address=192.168.111.169/24" in network
    assert "MACAddress=52:54:00:" in network and "Name=ens3" in network
    assert "Gateway=192.168.111.1" in network and "DNS=192.168.111.1" in network


def test_master_preparation_follows_lab_b(tree):
    doc = user_data(tree, "test-master")
    assert doc["hostname"] == "test-master"
    assert doc["fqdn"] == "test-master.k8s.localtest.com"
    assert doc["manage_etc_hosts"] is False
    assert doc["ssh_authorized_keys"] == ["@@gen-secret:sshAuthorizedKeys[0]@@"]
    files = {f["path"]: f for f in doc["write_files"]}
    hosts = files["/etc/hosts"]["content"]
    for line in ("192.168.111.169 test-master.k8s.localtest.com test-master",
                 "192.168.111.170 test-node3.k8s.localtest.com test-node3",
                 "192.168.111.177 test-storage1.k8s.localtest.com test-storage1",
                 "192.168.111.177 registry.localtest.com share-storage.localtest.com"):
        assert line in hosts.splitlines()
    sysctl = files["/etc/sysctl.d/99-kubernetes.conf"]["content"]
    assert "net.bridge.bridge-nf-call-iptables = 1" in sysctl
    assert "net.bridge.bridge-nf-call-ip6tables = 1" in sysctl
    assert "net.ipv4.ip_forward = 1" in sysctl
    assert "br_netfilter" in files["/etc/modules-load.d/kubernetes.conf"]["content"]
    assert files["/etc/apt/sources.list.d/kubernetes.list"]["content"].startswith(
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
        "https://pkgs.k8s.io/core:/stable:/v1.30/deb/ /")
    assert files["/etc/apt/sources.list.d/kubernetes.list"]["defer"] is True
    assert {"containerd", "nfs-common"} <= set(doc["packages"])
    commands = doc["runcmd"]
    for expected in ("swapoff -a", "systemctl enable --now kubelet",
                     "apt-mark hold kubelet kubeadm kubectl",
                     "DEBIAN_FRONTEND=noninteractive apt-get install -y kubelet=1.30.14-1.1 "
                     "kubeadm=1.30.14-1.1 kubectl=1.30.14-1.1"):
        assert expected in commands
    assert any("/etc/fstab" in c and "swap" in c for c in commands)
    assert any("SELINUX=permissive" in c for c in commands)
    assert any("disable --now firewalld" in c for c in commands)


def test_containerd_config_uses_systemd_cgroups(tree):
    import tomllib

    files = {f["path"]: f for f in user_data(tree, "test-node1")["write_files"]}
    config = tomllib.loads(files["/etc/containerd/config.toml"]["content"])
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    hosts = tomllib.loads(
        files["/etc/containerd/certs.d/registry.localtest.com/hosts.toml"]["content"])
    assert hosts["server"] == "http://registry.localtest.com"


def test_storage_node_gets_base_preparation_and_its_services(tree):
    doc = user_data(tree, "test-storage1")
    assert "runcmd" not in doc
    assert {"nfs-kernel-server", "haproxy"} <= set(doc["packages"])
    assert "kubelet" not in tree[f"{BASE}/test-storage1/user-data"].decode()


def test_seed_description_builds_a_real_cidata_iso(tree, tmp_path):
    description = json.loads(tree[f"{BASE}/test-node1/seed.json"])
    assert description["volume"] == "test-node1-seed.iso"
    assert description["label"] == "cidata" and description["pool"] == "default"
    seed = write_seed(tree, "test-node1", tmp_path / "seed")
    for name, meta in description["files"].items():
        assert hashlib.sha256((seed / name).read_bytes()).hexdigest() == meta["sha256"]
    command = [tool(description["build"][0]), "-quiet", *description["build"][1:]]
    subprocess.run(command, cwd=seed, check=True, capture_output=True)
    iso = seed / description["volume"]
    info = subprocess.run([tool("isoinfo"), "-d", "-i", str(iso)], capture_output=True,
                          text=True, check=True).stdout
    assert "Volume id: cidata" in info
    for name in cloudinit.SEED_FILES:
        extracted = subprocess.run([tool("isoinfo"), "-R", "-i", str(iso), "-x", f"/{name}"],
                                   capture_output=True, check=True).stdout
        assert extracted == tree[f"{BASE}/test-node1/{name}"]


def test_libvirt_domain_attaches_the_seed_and_still_validates(lab_b, tmp_path):
    domains = {p: c for p, c in libvirt.render(lab_b, Pins()).items() if "/domains/" in p}
    assert len(domains) == len(NODES)
    for path, content in domains.items():
        xml = content.decode()
        node = Path(path).stem
        assert (f'<source pool="default" volume="{node}-seed.iso" />') in xml
        assert '<disk type="volume" device="cdrom">' in xml
        # virtio-scsi: Debian's cloud kernel has no AHCI driver, so a SATA cdrom is invisible
        assert '<target dev="sda" bus="scsi" />' in xml and "<readonly />" in xml
        assert '<controller type="scsi" index="0" model="virtio-scsi" />' in xml
        file = tmp_path / f"{node}.xml"
        file.write_bytes(content)
        checked = subprocess.run([tool("virt-xml-validate"), str(file), "domain"],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        defined = subprocess.run([tool("virsh"), "-c", "test:///default", "define", str(file)],
                                 capture_output=True, text=True, check=False)
        assert defined.returncode == 0, defined.stderr


def test_only_lab_as_cloud_image_helper_gets_a_seed():
    """CoreOS nodes get Ignition; the helper, booted from a cloud image, gets a seed with
    its services' packages (el9 names for its CentOS image) and root's keys."""
    lab_a = load_environment("env/lab", ROOT).model
    tree = cloudinit.render(lab_a, Pins())
    assert sorted(tree) == [f"clusters/ocp4/cloud-init/helper/{name}" for name in (
        "meta-data", "network-config", "seed.json", "user-data")]
    assert [n.name for n in lab_a.nodes if cloudinit.needs_seed(lab_a, n)] == ["helper"]
    user_data = pyyaml.safe_load(tree["clusters/ocp4/cloud-init/helper/user-data"])
    assert user_data["packages"] == [
        "curl", "ca-certificates", "bind", "bind-utils", "dhcp-server", "tftp-server",
        "syslinux-tftpboot", "grub2-efi-x64", "shim-x64", "httpd", "nfs-utils", "haproxy"]
    assert user_data["disable_root"] is False
    domains = libvirt.render(lab_a, Pins())
    assert [p for p, xml in domains.items() if b"cdrom" in xml] == [
        "hypervisors/hv1/domains/helper.xml"]
