"""The kubeadm provider: a kubeadm cluster brought up from its rendered configs.

One plan action per phase, each run on a node through its command prefix
(`--kubeadm-exec NODE=PREFIX`: `ssh root@NODE`, `nsenter ...`, or `local`):

- `ENV/init` on the first control plane: the rendered `init.yaml` with its bootstrap token
  and certificate key filled in is written to the node (0600, removed after the run),
  `kubeadm init --config` runs, and the node's admin.conf and CA certificate are read back
  into the state directory. A node whose /etc/kubernetes/kubelet.conf exists is a member
  already: kubeadm is not run there again, only admin.conf is fetched.
- `ENV/join/NODE` for every other node, in the order the family renders them: its
  `join-NODE.yaml` filled with the token, the CA certificate hash (computed here from the
  CA certificate, as `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`
  does) and the certificate key, then `kubeadm join --config`. A failed join names the node
  and the tail of kubeadm's output (the join data masked).
- The CNI and the other Kubernetes objects are the kubernetes provider's: it plans them once
  admin.conf is in the state directory (converge plans again after the last membership
  phase), from the manifest the lock pins.
- `ENV/nodes-ready` last: waits until every node of the cluster reports Ready.

Before kubeadm runs on a node, the node's kubeadm must be the pinned one: its version the
cluster's `kubernetesVersion`, and its sha256 the lock's `tool/kubeadm` (the sha256
dl.k8s.io publishes for that release's binary; `--kubeadm-sha256` overrides it). Without
either pin the phases are not planned: an unpinned kubeadm is never run.

Secrets: the token and certificate key are generated into `secrets.json` of the
per-environment state directory (mode 0700, the file 0600), never into the tree, the lock
or a log line; admin.conf is kept there too. `phases.json` records the Ready gate, so a
second converge plans nothing; membership is read live from the nodes, so a converge killed
in any phase (even by SIGKILL) plans the unfinished phases again and a node that joined is
never re-joined.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import DestructiveNotApproved, UserError
from generator.families.kubeadm import joining_nodes, kubernetes_version, token_configuration
from generator.model import SECRET_MARKER, Environment, Node
from generator.reconcile.base import WAVE_KUBEADM_MEMBERS, WAVE_KUBEADM_READY, Action, DiffItem
from generator.reconcile.files import Target
from generator.tree import Tree

INIT, READY = "init", "nodes-ready"
LOCKED_TOOL = "kubeadm"  # the lock input tool/kubeadm
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"  # exists once a node is a member
ADMIN_CONF = "/etc/kubernetes/admin.conf"
CA_CERT = "/etc/kubernetes/pki/ca.crt"
CONFIG_DIR = "/var/lib/gen/kubeadm"  # on the node; a filled config lives there only during a run
TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")  # kubeadm's bootstrap token format
TAIL_LINES = 12
ANSWER_SECONDS = 20  # how long plan waits for a node to say whether it is a member
TOKEN_RENEW_AFTER = 23 * 3600  # the init.yaml token's ttl is 24h; renewed an hour ahead
# What a kubeadm init or join that did not finish leaves on a node that is no member yet.
LEFTOVERS = (CA_CERT, "/etc/kubernetes/manifests/kube-apiserver.yaml")
# A control plane's etcd data. kubeadm writes kubelet.conf before etcd ever runs (init's
# kubeconfig phase, join's kubelet-start), so a node holding this without kubelet.conf is no
# unfinished run: it is a cluster's member whose kubelet.conf went missing, or a node of
# another cluster. `kubeadm reset -f` deletes it: a destructive change, run only when approved.
ETCD_DATA = "/var/lib/etcd/member"


def default_root() -> Path:
    """`$XDG_STATE_HOME/gen/kubeadm` (~/.local/state/gen/kubeadm)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gen" / "kubeadm"


def new_token() -> str:
    alphabet = string.ascii_lowercase + string.digits

    def pick(count: int) -> str:
        return "".join(secrets.choice(alphabet) for _ in range(count))

    return f"{pick(6)}.{pick(16)}"


def new_certificate_key() -> str:
    """32 random bytes as hex, what `kubeadm certs certificate-key` prints."""
    return secrets.token_hex(32)


# -- the CA certificate hash ------------------------------------------------------------------


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at `pos`."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, element start, element end) of a constructed element's content."""
    out, pos = [], start
    while pos < end:
        tag, content, stop = _element(der, pos)
        out.append((tag, pos, stop))
        pos = stop
    return out


def ca_cert_hash(pem: bytes) -> str:
    """`sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo: kubeadm's discovery
    hash (`caCertHashes`)."""
    import base64

    match = re.search(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem,
                      re.DOTALL)
    if match is None:
        raise UserError("kubeadm: the CA certificate read from the first control plane is "
                        "not a PEM certificate", f"check {CA_CERT} there")
    der = base64.b64decode(b"".join(match.group(1).split()))
    _, cert, cert_end = _element(der, 0)
    _, tbs_start, _ = _children(der, cert, cert_end)[0]
    _, tbs, tbs_end = _element(der, tbs_start)
    fields = _children(der, tbs, tbs_end)
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    _, spki_start, spki_end = fields[5]  # serial, signature, issuer, validity, subject, SPKI
    return "sha256:" + hashlib.sha256(der[spki_start:spki_end]).hexdigest()


# -- state ------------------------------------------------------------------------------------


@dataclass
class ClusterState:
    """One environment's kubeadm state directory (0700), under the --kubeadm-state-dir root
    by environment name; `cluster.json` says whose it is (see state_for)."""

    root: Path

    @property
    def admin_conf(self) -> Path:
        return self.root / "admin.conf"

    def ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)  # mkdir's mode is masked by the umask

    def claim(self, identity: dict[str, str]) -> None:
        """Record whose state this is (state_for refuses any other cluster from now on)."""
        if self._read("cluster.json") != identity:
            self._write("cluster.json", identity)

    def _read(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: dict[str, Any] | bytes) -> None:
        """Atomically, mode 0600 from the first byte."""
        body = data if isinstance(data, bytes) else \
            json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
        tmp = self.root / f"{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # a leftover tmp keeps its own mode; open's applies only to new
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.root / name)

    def join_data(self) -> dict[str, str]:
        """The bootstrap token and certificate key, generated on first use and kept."""
        data = self._read("secrets.json")
        if TOKEN.fullmatch(str(data.get("token", ""))) is None or \
                re.fullmatch(r"[0-9a-f]{64}", str(data.get("certificateKey", ""))) is None:
            data = {"token": new_token(), "certificateKey": new_certificate_key()}
            self._write("secrets.json", data)
        return {k: str(v) for k, v in data.items()}

    def remember(self, key: str, value: str) -> None:
        self._write("secrets.json", {**self._read("secrets.json"), key: value})

    def keep_admin_conf(self, content: bytes) -> None:
        self._write("admin.conf", content)

    def ready(self) -> list[str] | None:
        nodes = self._read("phases.json").get(READY)
        return [str(n) for n in nodes] if isinstance(nodes, list) else None

    def mark_ready(self, nodes: list[str]) -> None:
        self._write("phases.json", {**self._read("phases.json"), READY: nodes})


def cluster_identity(env: Environment) -> dict[str, str]:
    """What tells one kubeadm cluster from another of the same environment name (two repos
    both calling theirs `lab`): its domain and its first control plane."""
    first = env.nodes_with_role("master")[0]
    return {"domain": env.cluster.domain, "firstControlPlane": first.name}


def state_for(root: Path, env: Environment) -> ClusterState:
    """The environment's state directory, refused when it holds another cluster's state: its
    admin.conf would point the kubernetes provider at the wrong cluster, its token at the
    wrong join. A directory without `cluster.json` (new, or written before it existed) is
    claimed by the first run that writes to it."""
    state = ClusterState(root / env.name)
    wanted = cluster_identity(env)
    found = state._read("cluster.json")
    claim = state.root / "cluster.json"
    # Present but not an identity (a truncated write, an edit) is no "unclaimed": whose
    # admin.conf sits beside it is then unknown.
    if (found.keys() != wanted.keys() or not all(isinstance(v, str) for v in found.values())) \
            and (found or os.path.lexists(claim)):
        raise UserError(f"kubeadm state directory {state.root}: {claim} does not say which "
                        "cluster the directory belongs to (damaged); nothing was run",
                        "restore it, or remove it if the directory is this cluster's")
    if found and found != wanted:
        raise UserError(f"kubeadm state directory {state.root} belongs to the cluster "
                        f"{found.get('domain')} (first control plane "
                        f"{found.get('firstControlPlane')}), not to this environment's "
                        f"{wanted['domain']} ({wanted['firstControlPlane']}); nothing was run",
                        "give each cluster its own --kubeadm-state-dir; if this is the same "
                        "cluster with its masters reordered, put its first control plane first "
                        "again (kubeadm init ran there)")
    return state


def kubeadm_kubeconfig(root: Path | None, env: Environment) -> Path | None:
    """Where the kubeadm phases keep the cluster's admin.conf (None: not in use)."""
    if root is None or env.cluster.flavour != "kubeadm":
        return None
    return state_for(root, env).admin_conf


# -- the provider -----------------------------------------------------------------------------


@dataclass
class KubeadmProvider:
    """Runs kubeadm's phases for the environment's cluster (see module doc)."""

    root: Path = field(default_factory=default_root)
    enabled: bool = False  # --kubeadm-state-dir given: plan and run the phases
    targets: dict[str, Target] = field(default_factory=dict)  # node -> where its commands run
    kubeadm_sha256: str | None = None  # --kubeadm-sha256: the binary on the nodes
    pinned: dict[str, str] = field(default_factory=dict)  # the lock's tool name -> sha256
    say: Callable[[str], None] = lambda line: None
    node_wait: float = 600.0  # seconds apply waits for a node to answer (a VM still booting)
    ready_timeout: float = 900.0
    poll: float = 2.0
    name: str = "kubeadm"
    notices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # scopes not looked at (plan.Plan)

    def use_tools(self, tools: dict[str, str]) -> None:
        self.pinned = dict(tools)

    @property
    def wanted_sha256(self) -> str | None:
        """The sha256 each node's kubeadm must have: --kubeadm-sha256, else the lock's."""
        return self.kubeadm_sha256 or self.pinned.get(LOCKED_TOOL)

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        base = f"clusters/{env.cluster.name}/kubeadm"
        if not self.enabled or env.cluster.flavour != "kubeadm" or f"{base}/init.yaml" not in tree:
            return []
        if self.wanted_sha256 is None:
            self.notices.append(f"kubeadm: the lock pins no {LOCKED_TOOL}; add "
                                f"artifacts.tools.{LOCKED_TOOL} and run `gen lock`, or pass "
                                "--kubeadm-sha256; the kubeadm phases are not planned")
            self.skipped.append(f"kubeadm: {env.name} (no pinned {LOCKED_TOOL})")
            return []
        first = env.nodes_with_role("master")[0]
        nodes = [first, *joining_nodes(env)]
        missing = [n.name for n in nodes if n.name not in self.targets]
        if missing:
            # Membership was not read on those nodes, so "no changes" would be a guess: the
            # plan is incomplete (--detailed-exitcode exits 2), as for a host without target.
            self.notices.append(f"kubeadm: no --kubeadm-exec for {', '.join(missing)}; the "
                                "kubeadm phases are not planned (give every node's command "
                                "prefix, e.g. --kubeadm-exec NODE='ssh root@NODE')")
            self.skipped.extend(f"kubeadm: {name} (no --kubeadm-exec)" for name in missing)
            return []
        state = state_for(self.root, env)
        actions: list[Action] = []
        if not (self._member(first) and state.admin_conf.is_file()):
            actions.append(self._action(env, INIT, first, f"{base}/init.yaml",
                                        tree[f"{base}/init.yaml"], 0,
                                        "kubeadm init --config init.yaml"))
        for order, node in enumerate(nodes[1:], 1):
            if not self._member(node):
                actions.append(self._action(env, f"join/{node.name}", node,
                                            f"{base}/join-{node.name}.yaml",
                                            tree[f"{base}/join-{node.name}.yaml"], order,
                                            "kubeadm join --config join.yaml"))
        names = sorted(n.name for n in nodes)
        if actions or state.ready() != names:
            actions.append(Action(
                "create", self.name, "phase", f"{env.name}/{READY}", WAVE_KUBEADM_READY,
                (DiffItem("add", "nodes", None, " ".join(names)),),
                note=f"waits up to {self.ready_timeout:.0f} s for every node to be Ready "
                     "(the CNI is the kubernetes provider's)",
                payload={"phase": READY, "env": env, "nodes": names}))
        return actions

    def _action(self, env: Environment, phase: str, node: Node, config: str, content: bytes,
                order: int, command: str) -> Action:
        wipes = self._holds(node, ETCD_DATA) and any(self._holds(node, p) for p in LEFTOVERS)
        note = ("token and certificate key from the state dir, filled on the node" if not wipes
                else f"{node.name} holds etcd data ({ETCD_DATA}) but no kubelet.conf: kubeadm "
                     "reset -f runs first and DELETES that data (a member whose kubelet.conf "
                     "went missing, or a node of another cluster)")
        return Action("create", self.name, "phase", f"{env.name}/{phase}", WAVE_KUBEADM_MEMBERS,
                      (DiffItem("add", "command", None, f"{command} on {node.name}"),),
                      destructive=wipes, note=note, order=order,
                      payload={"phase": phase, "env": env, "node": node,
                               "config": (config, content), "replan": True,
                               "wipe_etcd": wipes})

    def _member(self, node: Node) -> bool:
        """Whether the node has joined (its kubelet.conf exists). A node that does not
        answer yet (its VM is created by this converge) is not."""
        return self._holds(node, KUBELET_CONF)

    def _holds(self, node: Node, path: str) -> bool:
        """Whether `path` exists on the node (False when the node does not answer)."""
        command = self.targets[node.name].command(["test", "-e", path])
        try:  # bounded: a plan must not hang on a VM that is not there yet
            proc = subprocess.run(command, capture_output=True, timeout=ANSWER_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    # -- apply ---------------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        env: Environment = action.payload["env"]
        state = state_for(self.root, env)
        state.ensure()
        state.claim(cluster_identity(env))
        if action.payload["phase"] == READY:
            self._wait_ready(state, action.payload["nodes"])
            state.mark_ready(action.payload["nodes"])
            return
        node: Node = action.payload["node"]
        target = self._reachable(node)
        config: tuple[str, bytes] = action.payload["config"]
        may_wipe = bool(action.payload.get("wipe_etcd"))  # destructive: approved to get here
        if action.payload["phase"] == INIT:
            self._init(env, state, node, target, config, may_wipe)
        else:
            self._join(env, state, node, target, config, may_wipe)

    def _init(self, env: Environment, state: ClusterState, node: Node, target: Target,
              rendered: tuple[str, bytes], may_wipe: bool) -> None:
        data = state.join_data()
        if not self._member(node):
            config = _filled(rendered, data)
            upload = ["--upload-certs"] if b"certificateKey:" in config else []
            self._kubeadm(env, node, target, "init", config, upload, data, may_wipe)
            state.remember("issued", f"{time.time():.0f}")  # the token exists from now on
        admin = target.run(["cat", ADMIN_CONF]).stdout
        state.remember("caCertHash", ca_cert_hash(target.run(["cat", CA_CERT]).stdout))
        state.keep_admin_conf(admin)
        self.say(f"kubeadm: {node.name}: admin.conf kept in {state.admin_conf}")

    def _join(self, env: Environment, state: ClusterState, node: Node, target: Target,
              rendered: tuple[str, bytes], may_wipe: bool) -> None:
        if self._member(node):
            return
        data = state.join_data()
        first = env.nodes_with_role("master")[0]
        if "caCertHash" not in data:  # the state dir was lost after init: read it again
            pem = self._reachable(first).run(["cat", CA_CERT]).stdout
            state.remember("caCertHash", ca_cert_hash(pem))
            data = state.join_data()
        self._fresh_token(env, state, first, data)
        config = _filled(rendered, data)
        self._kubeadm(env, node, target, "join", config, [], data, may_wipe)

    def _reachable(self, node: Node) -> Target:
        target = self.targets[node.name]
        deadline = time.monotonic() + self.node_wait
        while (reason := target.answers()) is not None:
            if time.monotonic() > deadline:
                raise UserError(f"kubeadm: node {node.name} did not answer within "
                                f"{self.node_wait:.0f} s: {reason}",
                                "check that its VM runs and the --kubeadm-exec prefix reaches it")
            time.sleep(self.poll)
        return target

    def _check_binary(self, env: Environment, node: Node, target: Target) -> None:
        """The kubeadm on the node is the pinned one: its version is the cluster's pinned
        Kubernetes version, and its sha256 the lock's (or --kubeadm-sha256)."""
        proc = target.run(["kubeadm", "version", "-o", "short"], check=False)
        found = proc.stdout.decode(errors="replace").strip()
        wanted = kubernetes_version(env)
        if proc.returncode != 0 or found != wanted:
            raise UserError(f"kubeadm: {node.name} has kubeadm {found or 'nothing'}, not the "
                            f"pinned {wanted}; it was not run",
                            "install the pinned kubeadm package there (cloud-init does)")
        wanted_sha = self.wanted_sha256
        if wanted_sha is None:  # plan refuses this; a hand-built action must too
            raise UserError(f"kubeadm: no pinned {LOCKED_TOOL} sha256; it was not run",
                            "run `gen lock`, or pass --kubeadm-sha256")
        proc = target.run(["sh", "-c", 'sha256sum "$(command -v kubeadm)"'], check=False)
        digest = proc.stdout.decode(errors="replace").split(" ")[0]
        if digest != wanted_sha:
            raise UserError(f"kubeadm: {node.name}'s kubeadm has sha256 {digest or '?'}, "
                            f"not the pinned {wanted_sha}; it was not run",
                            "install the binary the pin names")

    def _kubeadm(self, env: Environment, node: Node, target: Target, verb: str,
                 config: bytes, extra: list[str], data: dict[str, str], may_wipe: bool) -> None:
        self._check_binary(env, node, target)
        self._reset_leftovers(node, target, verb, may_wipe)
        path = _put_config(target, verb, config)
        self.say(f"kubeadm: {node.name}: kubeadm {verb} --config {path}")
        try:
            proc = subprocess.run(target.command(["kubeadm", verb, "--config", path, *extra]),
                                  capture_output=True)
        finally:
            target.run(["rm", "-f", path], check=False)
        if proc.returncode != 0:
            text = (proc.stdout + proc.stderr).decode(errors="replace")
            tail = " | ".join(_masked(text, data).strip().splitlines()[-TAIL_LINES:])
            raise UserError(f"kubeadm {verb} on node {node.name} failed (exit "
                            f"{proc.returncode}): {tail}",
                            f"fix the cause on {node.name} (`kubeadm reset` undoes a half "
                            "join) and run converge again")

    def _fresh_token(self, env: Environment, state: ClusterState, first: Node,
                     data: dict[str, str]) -> None:
        """A bootstrap token lives 24 hours (its ttl in init.yaml), then the cluster deletes
        it: a node joining later (added to the environment, or a converge resumed the next
        day) would fail discovery. Before such a join, the same token is created again on the
        first control plane; a token gen has no record of creating (a lost state directory
        generated a new one) is created there too.

        The token goes in a 0600 config file (`bootstrapTokens[0]`), as init's does: a
        positional `kubeadm token create TOKEN` would show its secret to every local user
        of both machines (ps, /proc/PID/cmdline). Only the public token ID is an argument."""
        if time.time() - float(data.get("issued") or 0) < TOKEN_RENEW_AFTER:
            return
        target = self._reachable(first)
        target.run(["kubeadm", "token", "delete", data["token"].split(".")[0]], check=False)
        config = _filled(("token.yaml", token_configuration(env)), data)
        path = _put_config(target, "token", config)
        try:
            proc = subprocess.run(target.command(["kubeadm", "token", "create", "--config",
                                                  path]), capture_output=True)
        finally:
            target.run(["rm", "-f", path], check=False)
        if proc.returncode != 0:
            tail = " | ".join(_masked((proc.stdout + proc.stderr).decode(errors="replace"),
                                      data).strip().splitlines()[-TAIL_LINES:])
            raise UserError(f"kubeadm token create on node {first.name} failed (exit "
                            f"{proc.returncode}): {tail}", "check the first control plane")
        state.remember("issued", f"{time.time():.0f}")
        self.say(f"kubeadm: the bootstrap token was not known to be valid for another hour; "
                 f"created it again on {first.name} (ttl 24h)")

    def _reset_leftovers(self, node: Node, target: Target, verb: str, may_wipe: bool) -> None:
        """A kubeadm run that was killed or failed half-way leaves certificates and static
        pods behind (the node is no member: it has no kubelet.conf), and kubeadm's preflight
        refuses to run over them; `kubeadm reset -f` clears them, as the manual
        procedure does before trying again. Etcd data is never such a leftover (ETCD_DATA):
        reset then runs only when the plan showed it and converge was given --allow-destroy."""
        proc = target.run(["sh", "-c", " || ".join(f"test -e {p}" for p in LEFTOVERS)],
                          check=False)
        if proc.returncode != 0:
            return
        # The member check before this one reads "no answer" as "no kubelet.conf" (right for
        # a plan, where the VM may not exist yet): reset runs only on a node that answered
        # that it lacks kubelet.conf, and its etcd data too is known, never assumed absent.
        if self._exists(node, target, KUBELET_CONF):
            raise UserError(f"kubeadm: {node.name} holds {KUBELET_CONF}: it is a member, so "
                            f"kubeadm {verb} was not run and nothing was reset",
                            "run converge again (the plan then sees the member)")
        if not may_wipe and self._exists(node, target, ETCD_DATA):
            raise DestructiveNotApproved(
                f"kubeadm: {node.name} holds etcd data ({ETCD_DATA}) but no kubelet.conf; "
                f"kubeadm reset -f would delete it, so kubeadm {verb} was not run (a member "
                "whose kubelet.conf went missing? restore it; to wipe the node, run `gen plan` "
                "to see it, then converge with --allow-destroy)")
        self.say(f"kubeadm: {node.name}: a previous kubeadm {verb} did not finish; "
                 "running kubeadm reset -f first")
        reset = subprocess.run(target.command(["kubeadm", "reset", "-f"]), capture_output=True)
        if reset.returncode != 0:
            tail = " | ".join((reset.stdout + reset.stderr).decode(errors="replace")
                              .strip().splitlines()[-TAIL_LINES:])
            raise UserError(f"kubeadm reset on node {node.name} failed (exit "
                            f"{reset.returncode}): {tail}", f"clean {node.name} by hand")

    @staticmethod
    def _exists(node: Node, target: Target, path: str) -> bool:
        """Whether `path` exists on the node, as `test -e` answered (0 yes, 1 no); any other
        exit (a transport that failed: ssh exits 255) refuses rather than guess."""
        code = target.run(["test", "-e", path], check=False).returncode
        if code not in (0, 1):
            raise UserError(f"kubeadm: cannot tell whether {node.name} holds {path} (`test -e` "
                            f"exited {code}); nothing was reset",
                            f"check that the --kubeadm-exec prefix reaches {node.name}, then "
                            "run converge again")
        return code == 0

    def _wait_ready(self, state: ClusterState, names: list[str]) -> None:
        from generator.reconcile.kubernetes import connect

        if not state.admin_conf.is_file():
            raise UserError(f"kubeadm: no admin.conf in {state.root}",
                            "run converge again: the init phase fetches it")
        api = connect(str(state.admin_conf), None)
        deadline = time.monotonic() + self.ready_timeout
        self.say(f"kubeadm: waiting for {len(names)} node(s) to be Ready")
        while True:
            waiting = _not_ready(api, names)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise UserError(f"kubeadm phase {READY}: not Ready after "
                                f"{self.ready_timeout:.0f} s: " + "; ".join(
                                    f"{n} ({why})" for n, why in sorted(waiting.items())),
                                "check the CNI pods and the kubelet on those nodes")
            time.sleep(self.poll)


def _not_ready(api: Any, names: list[str]) -> dict[str, str]:
    """Node name -> why it is not Ready yet, for the wanted nodes."""
    try:
        listed = api.request("GET", "/api/v1/nodes")
    except Exception as exc:  # noqa: BLE001 - the API server may still be starting
        return dict.fromkeys(names, f"API not answering: {str(exc).splitlines()[0][:80]}")
    seen: dict[str, str] = {}
    for item in (listed or {}).get("items", []):
        name = item.get("metadata", {}).get("name")
        ready = next((c for c in item.get("status", {}).get("conditions", [])
                      if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") == "True":
            seen[name] = ""
        else:
            seen[name] = (ready or {}).get("message") or "NotReady"
    return {n: seen.get(n, "not registered") for n in names if seen.get(n, "?") != ""}


def _put_config(target: Target, name: str, config: bytes) -> str:
    """Write a filled config to the node, 0600 from its first byte (umask 077), through
    stdin (never argv); returns its path there. The caller removes it after the run."""
    path = f"{CONFIG_DIR}/{name}.yaml"
    # rm first: `cat >` into a leftover file would keep that file's (maybe wider) mode
    target.run(["sh", "-c", f"umask 077 && mkdir -p {CONFIG_DIR} && rm -f {path} && "
                f"cat > {path}"], data=config)
    return path


def _filled(rendered: tuple[str, bytes], data: dict[str, str]) -> bytes:
    """The rendered config with its join-data markers filled; any other marker is refused
    (a secret goes only where its field puts it)."""
    path, content = rendered
    values = {"kubeadm-token": data["token"], "kubeadm-certificate-key":
              data["certificateKey"], "kubeadm-ca-cert-hash": data.get("caCertHash", "")}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if not values.get(name):
            raise UserError(f"kubeadm: {path} carries a marker for {name!r}, which the "
                            "kubeadm phases do not fill",
                            "only the token, CA certificate hash and certificate key are")
        return values[name]

    return SECRET_MARKER.sub(fill, content.decode()).encode()


def _masked(text: str, data: dict[str, str]) -> str:
    """kubeadm's output with the join data masked: `kubeadm init` prints the join command
    with the token and certificate key."""
    for key in ("token", "certificateKey"):
        if data.get(key):
            text = text.replace(data[key], "<redacted>")
    return TOKEN.sub("<redacted>", text)

