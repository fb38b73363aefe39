"""Real cloud-init applies the NoCloud seed gen builds, inside a booted Debian VM.

gen renders lab B (environments/k8s-lab); the seed of `test-master` is built by the very
functions `gen converge` uses (generator.reconcile.seed: `seeds`, `fill_secrets` with the SSH
key as the secret's value, `build_iso`) and attached as the SATA cdrom the rendered domain
names. The VM is a Debian bookworm image built from Debian's packages and cached
(cloudinit_image.py), booted by qemu (-kernel/-initrd) under TCG (GEN_E2E_ACCEL=kvm
for KVM). Its NIC, with the MAC of the rendered domain, is a tap in a
lo-only network namespace: no route out. There 192.168.111.1 (lab B's gateway and DNS) runs
dnsmasq answering pkgs.k8s.io with itself, and an HTTPS server (certificate from the test CA
the image trusts) serving a signed stand-in of the pkgs.k8s.io repository with packages of
the pinned names and versions (standin_apt.py). After cloud-init, the image's
gen-proof.service runs cloudinit_proof's script and writes its report to a raw disk; the
test checks it step by step (cloudinit_proof.problems) and, on failure, shows the first
missing step with the console tail.

test_broken_network_config_fails_at_address proves the proof can fail: the same seed with
`addresses` misspelt in network-config fails at step `address`, naming the node.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from cloudinit_image import Image, image
from cloudinit_proof import Expected, file_entry, problems, proof_script
from netns import netns
from standin_apt import build_repo

from generator.model import SecretRef
from generator.reconcile import seed

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE = "test-master"
GATEWAY = "192.168.111.1"
USER = "debian"  # Debian's cloud.cfg default user: gets the keys of `ssh_authorized_keys`
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbe0xs2FU3J19psscbjHQhOAXAS1Hkj2i+nZkklDoyW "
           "gen-e2e-cloudinit")
# The seed cdrom on the bus the rendered domain names, as libvirt would attach it.
CDROM = {"sata": ("-device", "ahci,id=sata0", "-device", "ide-cd,bus=sata0.0,drive=seed"),
         "scsi": ("-device", "virtio-scsi-pci,id=scsi0", "-device",
                  "scsi-cd,bus=scsi0.0,drive=seed"),
         "ide": ("-device", "ide-cd,bus=ide.0,drive=seed")}
BOOT_TIMEOUT = 900  # TCG on 2 shared cores: cloud-init's Python is slow there
HTTPS_SERVER = """
import functools, http.server, ssl, sys
root, cert, key, log = sys.argv[1:5]
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(log, "a") as out:
            out.write(f"{self.address_string()} {fmt % args}\\n")
server = http.server.ThreadingHTTPServer((sys.argv[5], 443),
                                         functools.partial(Handler, directory=root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def vm_image() -> Image:
    for tool in ("mmdebstrap", "qemu-system-x86_64", "xorriso", "apt-ftparchive", "dnsmasq"):
        assert shutil.which(tool), f"{tool} missing (tests/run.sh APT_PACKAGES)"
    started = time.monotonic()
    built = image()
    print(f"cloud-init image ready in {time.monotonic() - started:.1f} s: {built.root}")
    return built


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lab B rendered by gen render."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "blueprints", repo / "blueprints",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "environments/k8s-lab", repo / "environments/k8s-lab")
    proc = subprocess.run([sys.executable, "-m", "generator", "render",
                           "environments/k8s-lab", "--out", "out"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return repo / "out"


def the_seed(rendered: Path) -> seed.Seed:
    """test-master's seed as converge reads it from the rendered tree."""
    tree = {str(p.relative_to(rendered)): p.read_bytes()
            for p in (rendered / "clusters").rglob("*") if p.is_file()}
    found = [s for s in seed.seeds(tree, "hv1") if s.node == NODE]
    assert len(found) == 1, [s.node for s in seed.seeds(tree, "hv1")]
    return found[0]


def seed_iso(wanted: seed.Seed, names: list[str]) -> bytes:
    """The ISO converge would upload: markers filled with the secret's value, then built."""
    refs = [SecretRef(name, "file", "id_rsa.pub") for name in names]
    return seed.build_iso(((name, seed.fill_secrets(content, refs, lambda _: SSH_KEY.encode()))
                           for name, content in wanted.files), wanted.label)


def expected(rendered: Path, user_data: dict[str, object]) -> Expected:
    """What lab B (environments/k8s-lab/env.yaml) says lands on test-master; the files and
    pinned packages are the rendered user-data's own."""
    files = {str(f["path"]): file_entry(f["content"], f["permissions"], f["owner"])
             for f in user_data["write_files"]}  # type: ignore[attr-defined]
    return Expected(node=NODE, fqdn=f"{NODE}.k8s.localtest.com", interface="ens3",
                    mac=hardware(rendered).mac, address="192.168.111.169/24", gateway=GATEWAY,
                    dns=GATEWAY, search="k8s.localtest.com", user=USER, ssh_key=SSH_KEY,
                    files=files, packages=pinned(user_data))


def pinned(user_data: dict[str, object]) -> dict[str, str]:
    """name -> version of the Kubernetes packages the user-data's runcmd installs."""
    install = next(c for c in user_data["runcmd"] if "apt-get install" in c)  # type: ignore[attr-defined]
    return dict(re.findall(r"\b(kube\w+)=(\S+)", install))


def repo_path(user_data: dict[str, object]) -> str:
    """`core:/stable:/v1.NN/deb` from the kubernetes.list the user-data writes."""
    source = next(f["content"] for f in user_data["write_files"]  # type: ignore[attr-defined]
                  if f["path"].endswith("kubernetes.list"))
    match = re.search(r"https://pkgs\.k8s\.io/(\S+)/ /", source)
    assert match, source
    return match.group(1)


def accel() -> str:
    """TCG unless GEN_E2E_ACCEL=kvm: TCG runs anywhere, and this machine's nested /dev/kvm
    opens but aborts qemu (`failed to set MSR 0x10a`)."""
    return os.environ.get("GEN_E2E_ACCEL", "tcg")


@dataclasses.dataclass
class Boot:
    report: str
    console: str
    seconds: float
    requests: str  # the stand-in pkgs.k8s.io's access log


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the rendered libvirt domain gives the VM."""

    machine: str
    cdrom_bus: str
    mac: str


def hardware(rendered: Path) -> Hardware:
    domain = ET.parse(rendered / f"hypervisors/hv1/domains/{NODE}.xml").getroot()
    machine = domain.find("os/type")
    cdrom = domain.find("devices/disk[@device='cdrom']/target")
    mac = domain.find("devices/interface/mac")
    assert machine is not None and cdrom is not None and mac is not None
    return Hardware(machine.get("machine", "pc"), cdrom.get("bus", ""), mac.get("address", ""))


def boot(vm: Image, tmp: Path, iso: bytes, user_data: dict[str, object],
         want: Expected, hw: Hardware) -> Boot:
    """Boot test-master with this seed in the lo-only namespace; what it reported."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "seed.iso").write_bytes(iso)
    proof = tmp / "proof"
    proof.mkdir()
    (proof / "proof.sh").write_text(proof_script(sorted(want.files), USER))
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(tmp / "proof.iso"),
                    "-V", "GENPROOF", "-r", str(proof)], check=True, capture_output=True)
    report = tmp / "report.img"
    report.write_bytes(b"\0" * (1 << 20))
    docroot = tmp / "htdocs"
    build_repo(docroot / repo_path(user_data), want.packages, tmp / "gnupg")
    cert, key = server_cert(vm, tmp)
    console, log, qemu_log = tmp / "console.log", tmp / "access.log", tmp / "qemu.log"
    log.touch()
    machine = accel()
    with netns("ci") as ns:
        for argv in (["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                     ["ip", "addr", "add", f"{GATEWAY}/24", "dev", "tap0"],
                     ["ip", "link", "set", "tap0", "up"]):
            ns.run(argv, check=True)
        ns.popen(["dnsmasq", "-k", "--no-resolv", "--no-hosts", "--bind-interfaces",
                  f"--listen-address={GATEWAY}", f"--host-record=pkgs.k8s.io,{GATEWAY}",
                  "--local=/k8s.io/",  # answered here (AAAA: no data), never forwarded
                  "--pid-file=", "--user=root", "--log-queries",
                  f"--log-facility={tmp / 'dnsmasq.log'}"])
        ns.popen([sys.executable, "-c", HTTPS_SERVER, str(docroot), str(cert), str(key),
                  str(log), GATEWAY])
        ns.wait_port(443)
        started = time.monotonic()
        qemu = ns.popen([
            "qemu-system-x86_64", "-nodefaults", "-display", "none",
            "-machine", f"{hw.machine},accel={machine}",
            "-cpu", "host" if machine == "kvm" else "max",
            "-m", "1024", "-smp", "1", "-no-reboot",
            "-kernel", str(vm.kernel), "-initrd", str(vm.initrd),
            "-append", "root=LABEL=root rw console=ttyS0",
            "-drive", f"file={vm.root},if=virtio,format=raw,snapshot=on",
            "-drive", f"if=none,id=proof,file={tmp / 'proof.iso'},format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=proof,serial=genproof",
            "-drive", f"if=none,id=report,file={report},format=raw",
            "-device", "virtio-blk-pci,drive=report,serial=genreport",
            "-drive", f"if=none,id=seed,file={tmp / 'seed.iso'},media=cdrom,readonly=on",
            *CDROM[hw.cdrom_bus],
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={want.mac}",
            "-serial", f"file:{console}"], stdout=qemu_log.open("wb"), stderr=subprocess.STDOUT)
        try:
            qemu.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
        seconds = time.monotonic() - started
    print(f"{NODE}: boot to report {seconds:.1f} s ({machine})")
    return Boot(report.read_bytes().rstrip(b"\0").decode(errors="replace"),
                (console.read_text(errors="replace") if console.exists() else "")
                + qemu_log.read_text(errors="replace"),
                seconds, log.read_text())


def server_cert(vm: Image, tmp: Path) -> tuple[Path, Path]:
    """pkgs.k8s.io's stand-in certificate, issued by the CA the image trusts."""
    key, csr, cert, ext = (tmp / n for n in ("srv.key", "srv.csr", "srv.pem", "srv.ext"))
    ext.write_text("subjectAltName=DNS:pkgs.k8s.io\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=pkgs.k8s.io", "-keyout", str(key), "-out", str(csr)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(vm.ca_cert),
                    "-CAkey", str(vm.ca_key), "-CAcreateserial", "-CAserial",
                    str(tmp / "ca.srl"), "-days", "2", "-extfile", str(ext), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def verdict(found: list[str], run: Boot) -> str:
    tail = "\n".join(run.console.splitlines()[-40:])
    return f"{found}\n--- report ---\n{run.report[-3000:]}\n--- console tail ---\n{tail}"


@pytest.fixture(scope="module")
def user_data(rendered: Path) -> dict[str, object]:
    return yaml.safe_load((rendered / f"clusters/k8s/cloud-init/{NODE}/user-data").read_text())


def test_rendered_seed_applies(vm_image: Image, rendered: Path, user_data: dict[str, object],
                               tmp_path: Path) -> None:
    wanted = the_seed(rendered)
    names = ["sshAuthorizedKeys[0]"]
    want = expected(rendered, user_data)
    run = boot(vm_image, tmp_path, seed_iso(wanted, names), user_data, want,
               hardware(rendered))
    found = problems(run.report, want)
    assert found == [], verdict(found, run)
    # The pinned packages came from the stand-in repository, over HTTPS, by the VM.
    for path in ("Release.key", "InRelease", *(f"{n}_{v}_amd64.deb"
                                               for n, v in want.packages.items())):
        assert re.search(rf"^{GATEWAY.rsplit('.', 1)[0]}\.169 \"GET /\S*/{re.escape(path)} "
                         r"HTTP/1\.1\" 200 ", run.requests, re.M), (path, run.requests)


def test_broken_network_config_fails_at_address(vm_image: Image, rendered: Path,
                                                user_data: dict[str, object],
                                                tmp_path: Path) -> None:
    wanted = the_seed(rendered)
    files = dict(wanted.files)
    assert b"    addresses:\n" in files["network-config"]
    files["network-config"] = files["network-config"].replace(b"    addresses:\n",
                                                              b"    adresses:\n", 1)
    broken = dataclasses.replace(wanted, files=tuple(files.items()))
    want = expected(rendered, user_data)
    run = boot(vm_image, tmp_path, seed_iso(broken, ["sshAuthorizedKeys[0]"]), user_data, want,
               hardware(rendered))
    found = problems(run.report, want)
    assert len(found) == 1 and found[0].startswith(f"{NODE}: step address: ens3 has no "
                                                   "192.168.111.169/24"), verdict(found, run)
