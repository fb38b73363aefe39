"""The kubeadm provider's phases (init, joins, CNI, nodes Ready) through `gen converge`.

kubeadm cannot be installed here: tests/standins/kubeadm stands in for it with the real
command line, the config API types of kubeadm.k8s.io/v1beta3 and v1beta4, the files init
and join write under /etc/kubernetes, kubeadm's error lines and exit codes (its docstring
lists them). The tests pin it as a real binary is pinned: env.yaml names it (file://) with
the sha256 of the file as shipped, `gen lock` records that as tool/kubeadm, and converge
checks every node's kubeadm against the lock (kubelet and kubectl are pinned the same way,
by small stand-in files).

Each node of lab B is a root of its own: a private mount namespace over an overlay of `/`
whose upper layer is the test's tmp dir, chrooted into (as tests/test_profiles.py does), the
stand-in installed at /usr/local/bin/kubeadm and one directory bind-mounted into every node
as the cluster's network (where init publishes cluster-info and join discovers it). gen
reaches each node with `--kubeadm-exec NODE='nsenter -t PID -m -r -w'`, so it runs exactly
the commands it would run over ssh. The API server is kmock; a stand-in kubelet (a thread
here) registers each node that kubeadm announced as NotReady and marks it Ready once the
CNI's DaemonSet exists, as a node's kubelet does once the CNI runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import Result, gen
from test_reconcile_kubernetes import Kube, kube  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standins" / "kubeadm"
NET = "/var/lib/standin-kubeadm-net"
NODES = ("test-master", "test-node1", "test-node2", "test-node3")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubeadmPhasesTestKey gen@test"
FLANNEL = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n---\n"
           "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-flannel-ds\n"
           "  namespace: kube-flannel\nspec:\n  selector:\n    matchLabels: {app: flannel}\n"
           "  template:\n    metadata:\n      labels: {app: flannel}\n    spec:\n"
           "      containers:\n      - name: kube-flannel\n"
           "        image: ghcr.io/flannel-io/flannel@sha256:" + "5" * 64 + "\n")
SEQUENCE = ["init test-master", "join test-node1", "join test-node2", "join test-node3"]


def standin_sha() -> str:
    return hashlib.sha256(STANDIN.read_bytes()).hexdigest()


# The Kubernetes binaries lab B pins: the kubeadm stand-in, and placeholders for the two
# binaries no test runs (pinned and fetched all the same).
TOOLS = {"kubeadm": STANDIN.read_bytes(), "kubelet": b"#!/bin/sh\necho kubelet stand-in\n",
         "kubectl": b"#!/bin/sh\necho kubectl stand-in\n"}


@dataclass
class NodeRoot:
    pid: int
    upper: Path  # what the node wrote, at its absolute paths

    @property
    def prefix(self) -> str:
        return f"nsenter -t {self.pid} -m -r -w"


@contextmanager
def node_root(tmp: Path, net: Path) -> Iterator[NodeRoot]:
    up, work, merged = tmp / "up", tmp / "work", tmp / "merged"
    for d in (up, work, merged):
        d.mkdir(parents=True)
    script = f"""set -e
mount -t overlay overlay -o lowerdir=/,upperdir={up},workdir={work} {merged}
mount --rbind /dev {merged}/dev
mount -t tmpfs tmpfs {merged}/run
mkdir -p {merged}{NET} {merged}/usr/local/bin
mount --bind {net} {merged}{NET}
cp {STANDIN} {merged}/usr/local/bin/kubeadm
echo ready
exec chroot {merged} sleep infinity
"""
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline().decode()
        assert line.strip() == "ready", proc.stderr.read().decode()
        deadline = time.monotonic() + 10
        while str(Path(f"/proc/{proc.pid}/root").readlink()) == "/" \
                and time.monotonic() < deadline:
            time.sleep(0.05)  # until `exec chroot` has happened
        yield NodeRoot(proc.pid, up)
    finally:
        proc.kill()
        proc.wait(10)


class Kubelets:
    """Stand-in kubelets: register every node kubeadm announced, NotReady until the CNI's
    DaemonSet exists in the API, then Ready."""

    def __init__(self, kube: Kube, net: Path) -> None:  # noqa: F811
        self.kube, self.net = kube, net
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.once()
            except Exception:  # noqa: BLE001 - the emulator is starting or stopping
                continue

    def once(self) -> None:
        announced = sorted(p.name for p in (self.net / "kubelets").glob("*"))
        cni = self.kube.call("GET", "/apis/apps/v1/namespaces/kube-flannel/daemonsets") or {}
        ready = bool(cni.get("items"))
        listed = self.kube.call("GET", "/api/v1/nodes") or {}
        known = {i["metadata"]["name"]: any(c.get("status") == "True" for c in
                                            i.get("status", {}).get("conditions", []))
                 for i in listed.get("items", [])}
        for name in announced:
            if known.get(name) == ready:
                continue  # as the kubelet last posted it
            condition = {"type": "Ready", "status": "True" if ready else "False",
                         "reason": "KubeletReady" if ready else "KubeletNotReady",
                         "message": "kubelet is posting ready status" if ready else
                         "container runtime network not ready: cni plugin not initialized"}
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                    "status": {"conditions": [condition]}}
            if name not in known:
                self.kube.call("POST", "/api/v1/nodes", body, "application/json")
            else:
                self.kube.call("PATCH", f"/api/v1/nodes/{name}", {"status": body["status"]})

    def __enter__(self) -> Kubelets:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def lab_b(repo: Path) -> None:
    """Lab B with its inputs pinned offline: the CNI manifest and the base image are files
    beside env.yaml, the add-ons' images pinned by digest (never pulled here)."""
    env_dir = repo / "environments" / "k8s-lab"
    (env_dir / "flannel.yml").write_text(FLANNEL)
    (env_dir / "base.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 508)
    base_sha = hashlib.sha256((env_dir / "base.qcow2").read_bytes()).hexdigest()
    path = env_dir / "env.yaml"
    text = path.read_text()
    old = ("url: https://raw.githubusercontent.com/flannel-io/flannel/v0.26.7/Documentation/"
           "kube-flannel.yml")
    assert text.count(old) == 1, "lab B's CNI line changed"
    text = text.replace(old, "url: file://flannel.yml\n      sha256: "
                        + hashlib.sha256(FLANNEL.encode()).hexdigest())
    # the cluster's own add-ons are the kubernetes provider's tests: here only the CNI
    text = text[:text.index("  ingress:\n")] + text[text.index("\nartifacts:") + 1:]
    for tool, data in TOOLS.items():
        (env_dir / tool).write_bytes(data)
    text = text[:text.index("artifacts:")] + (
        "artifacts:\n  tools:\n" + "".join(
            f"    {tool}: {{version: v1.30.14, url: \"file://{tool}\", "
            f"sha256: {hashlib.sha256(data).hexdigest()}}}\n" for tool, data in TOOLS.items())
        + "  os:\n"
        f"    debian-12-genericcloud: {{url: \"file://base.qcow2\", sha256: {base_sha}}}\n"
        "  images:\n"
        "    registry: docker.io/library/registry@sha256:" + "1" * 64 + "\n"
        "    tomcat: docker.io/library/tomcat@sha256:" + "2" * 64 + "\n"
        "    ingress-nginx: registry.k8s.io/ingress-nginx/controller@sha256:" + "3" * 64 + "\n"
        "    nfs-subdir-external-provisioner: registry.k8s.io/sig-storage/"
        "nfs-subdir-external-provisioner@sha256:" + "4" * 64 + "\n")
    path.write_text(text)


class Site:
    def __init__(self, repo: Path, tmp: Path, kube: Kube, roots: dict[str, NodeRoot],  # noqa: F811
                 net: Path) -> None:
        self.repo, self.tmp, self.kube, self.roots, self.net = repo, tmp, kube, roots, net
        self.home = tmp / "home"
        self.state, self.kubeadm = tmp / "state", tmp / "kubeadm"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "GEN_STORE": str(self.tmp / "store"),
                "STANDIN_KUBECONFIG": str(self.kube.kubeconfig), **extra}

    def argv(self, *extra: str, command: str = "converge") -> list[str]:
        approve = ["--auto-approve", "--state-dir", str(self.state)] \
            if command == "converge" else []
        return [command, "env/k8s-lab", "--provider", "kubeadm", "--provider", "kubernetes",
                *approve, "--kubeadm-state-dir", str(self.kubeadm),
                "--kubeadm-ready-timeout", "60",
                *[f"--kubeadm-exec={n}={r.prefix}" for n, r in self.roots.items()], *extra]

    def run(self, *extra: str, command: str = "converge", **env: str) -> Result:
        return gen(*self.argv(*extra, command=command), cwd=self.repo, env=self.env(**env),
                   timeout=300)

    def called(self) -> list[str]:
        calls = self.net / "calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def node_file(self, node: str, path: str) -> Path:
        return self.roots[node].upper / path.lstrip("/")


@pytest.fixture
def site(repo: Path, tmp_path: Path, kube: Kube) -> Iterator[Site]:  # noqa: F811
    lab_b(repo)
    secrets = tmp_path / "home" / ".config" / "gen" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "id_rsa.pub").write_text(SSH_KEY + "\n")
    net = tmp_path / "net"
    net.mkdir()
    with ExitStack() as stack:
        roots = {n: stack.enter_context(node_root(tmp_path / "nodes" / n, net)) for n in NODES}
        stack.enter_context(Kubelets(kube, net))
        made = Site(repo, tmp_path, kube, roots, net)
        for step in (["lock"], ["fetch", "--no-images"]):  # images: pinned, never pulled
            done = gen(*step, "env/k8s-lab", cwd=repo, env=made.env())
            assert done.code == 0, done.out + done.err
        yield made


def ready_nodes(kube: Kube) -> set[str]:  # noqa: F811
    listed = kube.call("GET", "/api/v1/nodes")
    return {i["metadata"]["name"] for i in listed["items"]
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in i["status"]["conditions"])}


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_clean_converge_inits_joins_applies_the_cni_and_waits_then_does_nothing(
        site: Site) -> None:
    first = site.run()
    assert first.code == 0, first.out + first.err
    assert site.called() == SEQUENCE
    for phase in ("init", "join/test-node1", "join/test-node2", "join/test-node3",
                  "nodes-ready"):
        assert f"+ kubeadm phase k8s-lab/{phase}" in first.out, phase
    # the CNI the lock pins was applied by the kubernetes provider, after a re-plan
    assert site.kube.call("GET", "/apis/apps/v1/namespaces/kube-flannel/daemonsets/"
                          "kube-flannel-ds")["metadata"]["name"] == "kube-flannel-ds"
    assert ready_nodes(site.kube) == set(NODES)
    state = site.kubeadm / "k8s-lab"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert (state / "admin.conf").read_text() == site.kube.kubeconfig.read_text()
    for node in NODES:
        assert site.node_file(node, "/etc/kubernetes/kubelet.conf").is_file(), node
        # the filled config lived on the node only while kubeadm ran
        assert list(site.node_file(node, "/var/lib/gen/kubeadm").iterdir()) == [], node
    second = site.run("--detailed-exitcode")
    assert second.code == 0, second.out + second.err
    assert "No changes." in second.out
    assert site.called() == SEQUENCE


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_join_data_never_reaches_output_tree_or_logs(site: Site) -> None:
    import json

    result = site.run()
    assert result.code == 0, result.err
    data = json.loads((site.kubeadm / "k8s-lab" / "secrets.json").read_text())
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", data["token"])
    assert re.fullmatch(r"[0-9a-f]{64}", data["certificateKey"])
    # the CA hash gen computed is the one the stand-in checked with openssl on every join
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", data["caCertHash"])
    for value in (data["token"], data["token"].split(".")[1], data["certificateKey"]):
        assert value not in result.out + result.err
        for top in ("environments", "blueprints", "lock", "state"):  # the tree, lock, journal
            for path in (site.tmp / top).rglob("*"):
                if path.is_file():
                    assert value.encode() not in path.read_bytes(), path


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_plan_lists_each_phase_and_changes_nothing(site: Site) -> None:
    planned = site.run(command="plan")
    assert planned.code == 0, planned.err
    for phase in ("init", "join/test-node1", "join/test-node3", "nodes-ready"):
        assert f"+ kubeadm phase k8s-lab/{phase}" in planned.out, planned.out
    assert "the cluster is not up yet" in planned.out + planned.err
    assert site.called() == [] and not (site.kubeadm / "k8s-lab").exists()
    without = gen("plan", "env/k8s-lab", "--provider", "kubeadm", cwd=site.repo,
                  env=site.env())
    assert without.code == 0 and "No changes." in without.out, without.out + without.err


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_failed_join_names_the_node_and_kubeadms_tail_then_resumes(site: Site) -> None:
    failed = site.run(STANDIN_FAIL="join test-node2")
    assert failed.code == 1
    assert ("kubeadm join on node test-node2 failed (exit 1): [preflight] Running pre-flight "
            "checks | error execution phase kubelet-start: error uploading crisocket: timed "
            "out waiting for the condition") in failed.err
    assert site.called() == SEQUENCE[:3]
    # kubeadm leaves the CA behind; the next attempt resets the half-joined node first
    again = site.run()
    assert again.code == 0, again.out + again.err
    assert "test-node2: a previous kubeadm join did not finish" in again.err
    assert site.called() == [*SEQUENCE[:3], "reset", "join test-node2", "join test-node3"]
    assert ready_nodes(site.kube) == set(NODES)


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
@pytest.mark.parametrize("hang", ["init test-master", "join test-node2"])
def test_sigkill_in_a_phase_resumes_to_the_same_end(site: Site, hang: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "generator", *site.argv()], cwd=site.repo,
                            env=site.env(STANDIN_HANG=hang), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = site.net / "hang"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "converge ended before the phase it was to be killed in"
        assert time.monotonic() < deadline, "the stand-in never reached " + hang
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    marker.unlink()
    resumed = site.run()
    assert resumed.code == 0, resumed.out + resumed.err
    calls = site.called()
    index = SEQUENCE.index(hang)
    assert calls == [*SEQUENCE[:index + 1], "reset", *SEQUENCE[index:]]
    assert ready_nodes(site.kube) == set(NODES)
    assert site.run("--detailed-exitcode").code == 0 and site.called() == calls


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_kubeadm_that_does_not_match_its_pin_is_never_run(site: Site) -> None:
    node1 = site.node_file("test-node1", "/usr/local/bin/kubeadm")
    node1.parent.mkdir(parents=True, exist_ok=True)
    tampered = STANDIN.read_bytes() + b"\n# one more line\n"
    subprocess.run(["nsenter", "-t", str(site.roots["test-node1"].pid), "-m", "-r", "-w", "sh",
                    "-c", "cat > /usr/local/bin/kubeadm"], input=tampered, check=True)
    result = site.run()
    assert result.code == 1
    assert (f"kubeadm: test-node1's kubeadm has sha256 {hashlib.sha256(tampered).hexdigest()}"
            f", not the pinned {standin_sha()}; it was not run") in result.err
    assert site.called() == SEQUENCE[:1]


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_the_standin_refuses_what_kubeadm_refuses(site: Site) -> None:
    """The stand-in is an oracle of its own (the API types, not gen's rules): a field
    kubeadm's v1beta3 types lack, a v1beta4-only field, and a malformed token."""
    master = site.roots["test-master"]

    def kubeadm_init(config: str) -> subprocess.CompletedProcess[str]:
        subprocess.run(["nsenter", "-t", str(master.pid), "-m", "-r", "-w", "sh", "-c",
                        "cat > /tmp/c.yaml"], input=config, text=True, check=True)
        return subprocess.run(["nsenter", "-t", str(master.pid), "-m", "-r", "-w", "kubeadm",
                               "init", "--config", "/tmp/c.yaml"], capture_output=True,
                              text=True)

    base = ("apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
            "bootstrapTokens: [{token: abcdef.0123456789abcdef}]\n"
            "nodeRegistration: {name: test-master}\n"
            "localAPIEndpoint: {advertiseAddress: 192.168.111.169}\n")
    unknown = kubeadm_init(base + "timeouts: {}\n")
    assert unknown.returncode == 1
    assert 'strict decoding error: unknown field "timeouts"' in unknown.stderr
    token = kubeadm_init(base.replace("abcdef.0123456789abcdef", "ABCDEF.0123456789abcdef"))
    assert token.returncode == 1 and 'the bootstrap token "ABCDEF.0123456789abcdef" was not ' \
        "of the form" in token.stderr
    args = kubeadm_init(base.replace("{name: test-master}", "{name: test-master, "
                                     "kubeletExtraArgs: [{name: a, value: b}]}"))
    assert args.returncode == 1 and "cannot unmarshal array" in args.stderr
    assert kubeadm_init(base).returncode == 0
    again = kubeadm_init(base)
    assert again.returncode == 1 and "/etc/kubernetes/kubelet.conf already exists" in \
        again.stderr
    token_create_config_is_checked(master)
    shutil.rmtree(site.net / "clusters")


def token_create_config_is_checked(master: NodeRoot) -> None:
    """`token create --config` (upstream token.go): flags that do not mix with --config are
    refused, the file's bootstrapTokens are checked and created, the first printed."""

    def create(config: str, *extra: str) -> subprocess.CompletedProcess[str]:
        subprocess.run(["nsenter", "-t", str(master.pid), "-m", "-r", "-w", "sh", "-c",
                        "cat > /tmp/t.yaml"], input=config, text=True, check=True)
        return subprocess.run(["nsenter", "-t", str(master.pid), "-m", "-r", "-w", "kubeadm",
                               "token", "create", "--config", "/tmp/t.yaml", *extra],
                              capture_output=True, text=True)

    config = ("apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
              "bootstrapTokens: [{token: ghijkl.0123456789abcdef, ttl: 24h0m0s}]\n")
    mixed = create(config, "--ttl", "1h")
    assert mixed.returncode == 1 and "can not mix '--config' with arguments [ttl]" in \
        mixed.stderr
    bad = create(config.replace("ghijkl", "GHIJKL"))
    assert bad.returncode == 1 and 'the bootstrap token "GHIJKL.0123456789abcdef" was not' \
        in bad.stderr
    ttl = create(config.replace("24h0m0s", "a day"))
    assert ttl.returncode == 1 and 'time: invalid duration "a day"' in ttl.stderr
    unknown = create(config.replace("ttl:", "lifetime:"))
    assert unknown.returncode == 1 and 'unknown field "bootstrapTokens[0].lifetime"' in \
        unknown.stderr
    made = create(config)
    assert made.returncode == 0 and made.stdout == "ghijkl.0123456789abcdef\n", made.stderr


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_late_join_creates_the_expired_token_again_first(site: Site) -> None:
    """A node joining after the token's 24 h (here test-node3, reset and joined again the
    next day): the cluster deleted the token, so gen creates it again on the first control
    plane before the join; without that, discovery fails as kubeadm's does."""

    assert site.run().code == 0
    secrets = site.kubeadm / "k8s-lab" / "secrets.json"
    data = json.loads(secrets.read_text())
    secrets.write_text(json.dumps({**data, "issued": str(int(time.time()) - 25 * 3600)}))
    published = next((site.net / "clusters").iterdir()) / "tokens"
    published.write_text("")  # the token cleaner deleted the expired token
    subprocess.run(["nsenter", "-t", str(site.roots["test-node3"].pid), "-m", "-r", "-w",
                    "kubeadm", "reset", "-f"], check=True, capture_output=True)
    late = site.run()
    assert late.code == 0, late.out + late.err
    assert "+ kubeadm phase k8s-lab/join/test-node3" in late.out
    assert "created it again on test-master (ttl 24h)" in late.err
    assert site.called()[len(SEQUENCE):] == ["reset", "token delete", "token create",
                                             "join test-node3"]
    assert published.read_text().split() == [data["token"]]
    assert data["token"] not in late.out + late.err
    assert not site.node_file("test-master", "/var/lib/gen/kubeadm/token.yaml").exists()


@pytest.mark.parametrize("key", [["-newkey", "rsa:2048"],
                                 ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]])
def test_the_ca_hash_is_the_one_kubeadms_docs_compute_with_openssl(tmp_path: Path,
                                                                    key: list[str]) -> None:
    from generator.reconcile.kubeadm_phases import ca_cert_hash

    cert = tmp_path / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", *key, "-nodes", "-keyout",
                    str(tmp_path / "ca.key"), "-out", str(cert), "-subj", "/CN=kubernetes",
                    "-days", "1"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(cert)],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    assert ca_cert_hash(cert.read_bytes()) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_nodes_without_a_prefix_are_named_and_nothing_is_planned(repo: Path,
                                                                  tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    base = ["plan", "env/k8s-lab", "--provider", "kubeadm", "--kubeadm-state-dir",
            str(tmp_path / "kubeadm"), "--kubeadm-sha256", standin_sha()]
    partial = gen(*base, "--kubeadm-exec", "test-master=local", cwd=repo, env=env)
    assert partial.code == 0, partial.err
    assert ("kubeadm: no --kubeadm-exec for test-node1, test-node2, test-node3; the kubeadm "
            "phases are not planned") in partial.out + partial.err
    # nodes nobody looked at are no evidence of convergence: named, and CI sees exit 2
    assert "No changes." not in partial.out and "matches the rendered tree" not in partial.out
    assert ("Not looked at: kubeadm: test-node1 (no --kubeadm-exec), kubeadm: test-node2 (no "
            "--kubeadm-exec), kubeadm: test-node3 (no --kubeadm-exec).") in partial.out
    detailed = gen(*base, "--kubeadm-exec", "test-master=local", "--detailed-exitcode",
                   "--format", "json", cwd=repo, env=env)
    assert detailed.code == 2, detailed.out + detailed.err
    plan = json.loads(detailed.out)
    assert plan["complete"] is False and plan["actions"] == []
    assert plan["skipped"] == [f"kubeadm: {n} (no --kubeadm-exec)" for n in NODES[1:]]
    unknown = gen(*base, "--kubeadm-exec", "nosuch=local", cwd=repo, env=env)
    assert unknown.code == 64
    assert "--kubeadm-exec: environment k8s-lab has no node named 'nosuch'" in unknown.err


def test_without_a_pinned_kubeadm_nothing_is_planned(repo: Path, tmp_path: Path) -> None:
    """No lock (so no tool/kubeadm) and no --kubeadm-sha256: an unpinned kubeadm is never
    run, and the plan says why and that it is incomplete."""
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    plan = gen("plan", "env/k8s-lab", "--provider", "kubeadm", "--kubeadm-state-dir",
               str(tmp_path / "kubeadm"), "--detailed-exitcode", "--format", "json",
               *[f"--kubeadm-exec={n}=local" for n in NODES], cwd=repo, env=env)
    assert plan.code == 2, plan.out + plan.err
    found = json.loads(plan.out)
    assert found["actions"] == [] and found["complete"] is False
    assert found["skipped"] == ["kubeadm: k8s-lab (no pinned kubeadm)"]
    assert "kubeadm: the lock pins no kubeadm; add artifacts.tools.kubeadm and run `gen " \
           "lock`, or pass --kubeadm-sha256" in plan.out + plan.err


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_control_plane_that_lost_its_kubelet_conf_is_never_reset_unapproved(
        site: Site) -> None:
    """A node holding etcd data but no kubelet.conf is no unfinished kubeadm run (kubeadm
    writes kubelet.conf before etcd ever runs): it is a member whose kubelet.conf went
    missing. Resetting it would delete the cluster's data, so it is a destructive change:
    shown by plan, refused without --allow-destroy (exit 3, nothing run), done with it."""
    assert site.run().code == 0
    etcd = site.node_file("test-master", "/var/lib/etcd/member/snap/db")
    assert etcd.is_file()
    subprocess.run(["nsenter", "-t", str(site.roots["test-master"].pid), "-m", "-r", "-w",
                    "rm", "/etc/kubernetes/kubelet.conf"], check=True)
    calls = site.called()
    planned = site.run(command="plan")
    assert "kubeadm phase k8s-lab/init" in planned.out, planned.out
    assert "DELETES that data" in planned.out + planned.err
    refused = site.run()
    assert refused.code == 3, refused.out + refused.err
    assert "--allow-destroy" in refused.err
    assert site.called() == calls and etcd.is_file()
    approved = site.run("--allow-destroy")
    assert approved.code == 0, approved.out + approved.err
    assert site.called()[len(calls):] == ["reset", "init test-master"]


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_state_dir_of_another_cluster_of_the_same_name_is_refused(site: Site) -> None:
    """Two repos both naming their environment k8s-lab and one --kubeadm-state-dir: the
    second must not take the first's admin.conf (the kubernetes provider would apply its
    objects to the wrong cluster) or its token."""
    other = site.kubeadm / "k8s-lab"
    other.mkdir(parents=True, mode=0o700)
    (other / "cluster.json").write_text(json.dumps({"domain": "prod.example.com",
                                                    "firstControlPlane": "cp0"}))
    (other / "admin.conf").write_text("apiVersion: v1\nkind: Config\n")
    for command in ("plan", "converge"):
        refused = site.run(command=command)
        assert refused.code == 1, refused.out + refused.err
        assert (f"kubeadm state directory {other} belongs to the cluster prod.example.com "
                "(first control plane cp0)") in refused.err
        assert "give each cluster its own --kubeadm-state-dir" in refused.err
    assert site.called() == [] and (other / "admin.conf").read_text().startswith("apiVersion")
    (other / "cluster.json").unlink()  # a directory from before cluster.json: claimed
    (other / "admin.conf").unlink()
    assert site.run().code == 0
    claimed = json.loads((other / "cluster.json").read_text())
    assert claimed["firstControlPlane"] == "test-master"
    assert (other / "cluster.json").stat().st_mode & 0o777 == 0o600
