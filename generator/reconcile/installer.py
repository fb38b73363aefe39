"""The installer provider: openshift-install's phases of an OpenShift/OKD UPI cluster.

Each phase is one plan action, applied by running the pinned `openshift-install` in a
per-environment state directory outside the git tree (mode 0700):

- `installer-assets` (before the boot services): fill the secret markers of the rendered
  install-config.yaml, `create manifests`, copy the rendered manifests over the generated
  ones, `create ignition-configs`. The asset dir is built beside its final place and renamed
  into it when complete, so a converge killed half-way starts the phase again from scratch;
  once `assets/` exists it is never regenerated (nodes may have booted with its
  certificates).
- `bootstrap-complete` and `install-complete` (after the machines): `wait-for`, with the
  installer's own timeouts; its progress lines are relayed (any line naming a password is
  not), a failure names the phase, the exit code, the installer's last error and its log.

Done phases are recorded in `phases.json` (written atomically), so a second converge has
nothing to do and a killed one resumes where it stopped. The binary is copied into the
state directory and its sha256 checked against the pin before every run.

The release: openshift-install installs the release image built into it. When the lock pins
`release/openshift`, the binary's `openshift-install version` must report exactly that
image (`release image registry/repository@sha256:...`) before any phase runs, and
OPENSHIFT_INSTALL_RELEASE_IMAGE_OVERRIDE is removed from its environment, so nothing but
the reviewed lock decides what gets installed. Running `version` rather than scanning the
binary for a pull spec: it is the installer's own answer to "which release do you install"
(the scan could find another image's string), the binary is already verified by sha256,
and a stand-in implements the same contract. The locked installer runs only with a pinned
release when the environment names one (`artifacts.release`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import UserError
from generator.families.common import COREOS_FLAVOURS
from generator.model import Environment
from generator.reconcile.base import (
    WAVE_INSTALLER_ASSETS,
    WAVE_INSTALLER_GATES,
    Action,
    DiffItem,
)
from generator.reconcile.secrets import (
    MARKER,
    check_places,
    checked_value,
    declared,
    places,
    read_local,
)
from generator.records import record
from generator.tree import Tree

ASSETS, GATES = "installer-assets", ("bootstrap-complete", "install-complete")
PHASES = (ASSETS, *GATES)
ROLE_CONFIGS = ("bootstrap.ign", "master.ign", "worker.ign")
LOCKED_TOOL = "openshift-install"  # the lock input tool/openshift-install
RELEASE_KEY = "release/openshift"  # the lock input: the release image by digest
RELEASE_OVERRIDE = "OPENSHIFT_INSTALL_RELEASE_IMAGE_OVERRIDE"  # would bypass the pin
_RELEASE_LINE = re.compile(r"release image (\S+)")
CERT_WINDOW = 24 * 3600  # openshift-install's bootstrap certificates expire after 24 hours
_SECRET_LINE = re.compile(r"password", re.IGNORECASE)
_LEVEL = re.compile(r'level=(error|fatal) msg="?(.*?)"?$')


def default_root() -> Path:
    """`$XDG_STATE_HOME/gen/installer` (~/.local/state/gen/installer)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gen" / "installer"


@record
class Tool:
    """A pinned executable: where it is and the sha256 it must have."""

    path: Path
    sha256: str

    @staticmethod
    def parse(text: str) -> Tool:
        path, sep, digest = text.rpartition("=")
        if not sep or not path or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise UserError(f"--openshift-install {text!r}: write it as PATH=SHA256",
                            "the sha256 the release's checksum file lists for the binary")
        return Tool(Path(path).expanduser(), digest)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class State:
    """One environment's installer state directory."""

    root: Path

    @property
    def assets(self) -> Path:
        return self.root / "assets"

    @property
    def kubeconfig(self) -> Path:
        return self.assets / "auth" / "kubeconfig"

    def ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)  # mkdir's mode is masked by the umask

    def done(self) -> dict[str, float]:
        try:
            data = json.loads((self.root / "phases.json").read_text())
        except (OSError, ValueError):
            data = {}
        finished = {k: float(v) for k, v in data.items() if k in PHASES}
        if ASSETS not in finished and self.assets_complete():
            finished[ASSETS] = (self.assets / "bootstrap.ign").stat().st_mtime
        return finished

    def mark(self, phase: str) -> None:
        data = {**self.done(), phase: time.time()}
        tmp = self.root / "phases.json.tmp"
        with tmp.open("w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.root / "phases.json")

    def assets_complete(self) -> bool:
        return all((self.assets / name).is_file() for name in ROLE_CONFIGS)


@dataclass
class InstallerProvider:
    """Runs openshift-install's phases for the environment's cluster (see module doc)."""

    tool: Tool | None = None  # --openshift-install: overrides the locked archive
    root: Path = field(default_factory=default_root)
    say: Callable[[str], None] = lambda line: None
    enabled: bool = False  # --installer-state-dir: run the phases with the locked binary
    store_root: Path | None = None  # gen's store (--store), where `gen fetch` put the archive
    pinned: dict[str, str] = field(default_factory=dict)  # tool name -> archive sha256
    name: str = "installer"
    _member_sha: str | None = None  # sha256 of the binary inside the verified archive
    _release_checked: Path | None = None  # the binary whose embedded release matched
    notices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    env_name: str = ""
    tree: Tree = field(default_factory=dict)

    def state(self) -> State:
        return State(self.root / self.env_name)

    def use_tools(self, tools: dict[str, str]) -> None:
        self.pinned = dict(tools)

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        if env.cluster.flavour not in COREOS_FLAVOURS or not tree:
            return []
        if self.tool is None and not (self.enabled and LOCKED_TOOL in self.pinned):
            if self.enabled:
                self.notices.append(f"installer: the lock pins no {LOCKED_TOOL}; add "
                                    f"artifacts.tools.{LOCKED_TOOL}, run `gen lock` and "
                                    "`gen fetch`, or pass --openshift-install PATH=SHA256")
            return []  # phases run only with a pinned installer
        if self.tool is None and env.release is not None and RELEASE_KEY not in self.pinned:
            self.notices.append(f"installer: the lock pins no release image ({RELEASE_KEY} "
                                f"{env.release.version}); run `gen lock env/{env.name}` where "
                                f"{env.release.url} answers, or write artifacts.release.image"
                                "; the installer phases are not planned")
            return []  # the locked installer runs only with its release pinned as well
        if self.tool is None:
            self._stored_archive()  # a missing or tampered archive stops the plan itself
        self.env_name, self.tree = env.name, tree
        state = self.state()
        done = state.done()
        if "bootstrap-complete" in done and not state.assets_complete():
            raise UserError(f"installer: the assets of {env.name} are gone from "
                            f"{state.assets}, but its cluster has bootstrapped",
                            "restore them from a backup; gen never regenerates the assets of "
                            "a bootstrapped cluster (its certificates would no longer match)")
        if ASSETS in done and "bootstrap-complete" not in done and \
                time.time() - done[ASSETS] > CERT_WINDOW:
            self.notices.append("installer: warning: the bootstrap Ignition is older than "
                                "the installer's 24-hour certificate window and bootstrap has "
                                "not completed; the cluster may never bootstrap")
        actions = []
        for order, phase in enumerate(PHASES):
            if phase in done:
                continue
            wave = WAVE_INSTALLER_ASSETS if phase == ASSETS else WAVE_INSTALLER_GATES
            actions.append(Action("create", self.name, "phase", f"{env.name}/{phase}", wave,
                                  (DiffItem("add", "command", None, _command(phase)),),
                                  note=_note(phase), order=order,
                                  payload={"phase": phase, "env": env}))
        return actions

    def apply(self, action: Action) -> None:
        phase, env = action.payload["phase"], action.payload["env"]
        state = self.state()
        state.ensure()
        if phase in state.done():
            return
        if phase == ASSETS:
            self._assets(env, state)
        else:
            with CsrApprover(state.kubeconfig, env, self.say):
                self._run(state, phase, ["wait-for", phase, "--dir", str(state.assets)])
        state.mark(phase)
        if phase == "bootstrap-complete" and not env.cluster.bootstrap_complete:
            self.say(f"installer: bootstrap complete; retire the bootstrap node with "
                     f"`gen node remove env/{env.name} bootstrap` (or `gen set env/{env.name} "
                     "cluster.bootstrapComplete true`) in a reviewed change")

    # -- phases ------------------------------------------------------------------------------

    def _assets(self, env: Environment, state: State) -> None:
        if state.assets_complete():
            return
        work = state.root / "assets.partial"
        shutil.rmtree(work, ignore_errors=True)  # a killed earlier attempt
        work.mkdir(mode=0o700)
        base = f"clusters/{env.cluster.name}/openshift"
        config = self.tree[f"{base}/install-config.yaml"]
        (work / "install-config.yaml").write_bytes(self._filled(env, base, config))
        self._run(state, ASSETS, ["create", "manifests", "--dir", str(work)])
        for path, content in sorted(self.tree.items()):
            if path.startswith(f"{base}/manifests/"):
                target = work / "manifests" / path[len(f"{base}/manifests/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        self._run(state, ASSETS, ["create", "ignition-configs", "--dir", str(work)])
        missing = [name for name in ROLE_CONFIGS if not (work / name).is_file()]
        if missing:
            raise UserError(f"installer phase {ASSETS}: openshift-install wrote no "
                            f"{', '.join(missing)}", f"see {work / '.openshift_install.log'}")
        shutil.rmtree(state.assets, ignore_errors=True)
        work.replace(state.assets)

    def _filled(self, env: Environment, base: str, content: bytes) -> bytes:
        """install-config.yaml with its markers filled, as JSON (which YAML reads): a value
        never has to fit YAML's quoting."""
        from generator.loader import load_yaml

        check_places(f"{base}/install-config.yaml", content, places(env))
        secrets = declared(env)

        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return MARKER.sub(lambda m: checked_value(
                    secrets[m.group(1)], read_local(secrets[m.group(1)])).decode(), value)
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            if isinstance(value, list):
                return [fill(v) for v in value]
            return value

        data = load_yaml(content.decode(), "install-config.yaml").data
        return json.dumps(fill(data), indent=2).encode() + b"\n"

    def _binary(self, state: State) -> Path:
        """The pinned binary, checked before every run, and the release it embeds checked
        once against the lock's release image."""
        binary = self._verified_binary(state)
        if RELEASE_KEY in self.pinned and self._release_checked != binary:
            self._check_release(binary, self.pinned[RELEASE_KEY])
            self._release_checked = binary
        return binary

    def _check_release(self, binary: Path, wanted: str) -> None:
        """`openshift-install version` names the release image the binary installs; it must
        be the pinned one, or no phase runs."""
        try:
            proc = subprocess.run([str(binary), "version"], capture_output=True, text=True,
                                  env=_installer_env(), cwd=binary.parent, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"installer: cannot run {LOCKED_TOOL} version: {exc}",
                            "check the pinned binary") from None
        found = _RELEASE_LINE.search(proc.stdout + proc.stderr)
        embedded = found.group(1) if found else None
        if proc.returncode != 0 or embedded != wanted:
            raise UserError(f"installer: the pinned {LOCKED_TOOL} installs release image "
                            f"{embedded or '(none reported)'}, not the locked {wanted} "
                            f"({RELEASE_KEY}); no phase was run",
                            "pin the openshift-install of that release (oc adm release extract "
                            "--command=openshift-install <the locked image>), or relock")

    def _verified_binary(self, state: State) -> Path:
        """The pinned binary, copied into the state dir and checked before every run (the
        copy, so nothing can swap the file between the check and the exec)."""
        if self.tool is None:
            return self._locked_binary(state)
        local = state.root / "bin" / f"openshift-install-{self.tool.sha256[:16]}"
        if not local.is_file():
            if not self.tool.path.is_file():
                raise UserError(f"installer: {self.tool.path} does not exist",
                                "run `gen fetch` or pass the path of the pinned binary")
            local.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = local.with_suffix(".tmp")
            shutil.copyfile(self.tool.path, tmp)
            tmp.chmod(0o700)
            tmp.replace(local)
        found = sha256_of(local)
        if found != self.tool.sha256:
            local.unlink()
            raise UserError(f"installer: {self.tool.path} has sha256 {found}, not the pinned "
                            f"{self.tool.sha256}; it was not run",
                            "use the binary the release's checksum file lists")
        return local

    def _stored_archive(self) -> Path:
        """The pinned archive's store object, re-hashed (StoreMissing / StoreCorrupt)."""
        from generator.lock.store import Store, StoreMissing
        from generator.lock.store import default_root as store_root

        archive_sha = self.pinned[LOCKED_TOOL]
        store = Store(self.store_root or store_root())
        if not store.has(archive_sha):
            raise StoreMissing(archive_sha, f"tool/{LOCKED_TOOL}", store.root)
        return store.verify(archive_sha)

    def _locked_binary(self, state: State) -> Path:
        """`openshift-install` from the archive the lock pins: the store object is re-hashed
        before every run (a tampered archive stops everything), the binary extracted from
        it once into the state dir, and that copy checked against the archive's member."""
        archive_sha = self.pinned[LOCKED_TOOL]
        archive = self._stored_archive()
        local = state.root / "bin" / f"{LOCKED_TOOL}-{archive_sha[:16]}"
        if self._member_sha is None:
            self._member_sha = _extract_member(archive, LOCKED_TOOL, local)
        found = sha256_of(local) if local.is_file() else "nothing"
        if found != self._member_sha:
            local.unlink(missing_ok=True)
            raise UserError(f"installer: {local} has sha256 {found}, not that of "
                            f"{LOCKED_TOOL} in the pinned archive sha256:{archive_sha}; it "
                            "was not run", "run converge again: the binary is re-extracted "
                            "from the store")
        return local

    def _run(self, state: State, phase: str, args: list[str]) -> None:
        binary = self._binary(state)
        log = Path(args[-1]) / ".openshift_install.log"
        self.say(f"installer: {phase}: openshift-install {' '.join(args[:2])}")
        proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=state.root,
                                env=_installer_env())
        assert proc.stdout is not None
        last_error = ""
        for line in proc.stdout:
            line = line.rstrip("\n")
            match = _LEVEL.search(line)
            if match:
                last_error = match.group(2)
            if not _SECRET_LINE.search(line):
                self.say(f"installer: {line}")
        code = proc.wait()
        if code != 0:
            why = f" ({last_error})" if last_error and not _SECRET_LINE.search(last_error) \
                else ""
            raise UserError(f"installer phase {phase} failed: openshift-install "
                            f"{' '.join(args[:2])} exited {code}{why}", f"log: {log}")


def _installer_env() -> dict[str, str]:
    """This process's environment without the override that would make openshift-install
    install another release image than the one it embeds (and the lock pins)."""
    return {k: v for k, v in os.environ.items() if k != RELEASE_OVERRIDE}


def _extract_member(archive: Path, member: str, target: Path) -> str:
    """Extract the regular file `member` (top level, as the release's client archives hold
    it) from a tar.gz into `target` (mode 0700); return its sha256."""
    import tarfile

    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    digest = hashlib.sha256()
    try:
        with tarfile.open(archive, "r:*") as tar:
            info = next((i for i in tar if i.name.lstrip("./") == member and i.isreg()), None)
            source = tar.extractfile(info) if info is not None else None
            if source is None:
                raise UserError(f"installer: the pinned archive {archive} holds no {member}",
                                "pin the release's openshift-install-linux-*.tar.gz")
            with source, tmp.open("wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    except (tarfile.TarError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"installer: cannot read the pinned archive {archive}: {exc}",
                        "run `gen fetch` again") from None
    tmp.chmod(0o700)
    tmp.replace(target)
    return digest.hexdigest()


class CsrApprover:
    """While a gate waits, approve the node CSRs `reconcile/csr.py` allows, as the UPI
    procedure does by hand: the workers' CSRs appear during `wait-for install-complete`,
    and the cluster cannot complete without them. Until the API answers, it retries."""

    POLL_SECONDS = 5.0

    def __init__(self, kubeconfig: Path, env: Environment, say: Callable[[str], None]) -> None:
        self.kubeconfig, self.env, self.say = kubeconfig, env, say
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.told: set[str] = set()

    def __enter__(self) -> CsrApprover:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(30)

    def _loop(self) -> None:
        while not self.stopped.wait(self.POLL_SECONDS):
            self.once()

    def once(self) -> None:
        from generator.reconcile import csr
        from generator.reconcile.kubernetes import connect

        if not self.kubeconfig.is_file():
            return
        try:
            api = connect(str(self.kubeconfig), None)
            actions, notices = csr.plan(api, self.env, "installer")
            for action in actions:
                csr.approve(api, action)
                self.say(f"installer: approved {action.kind} {action.name} ({action.note})")
        except Exception:  # noqa: BLE001 - the API is not up yet: the installer waits for it
            return
        for notice in notices:
            if notice not in self.told:
                self.told.add(notice)
                self.say(f"installer: {notice}")


def _command(phase: str) -> str:
    if phase == ASSETS:
        return "openshift-install create manifests; create ignition-configs"
    return f"openshift-install wait-for {phase}"


def _note(phase: str) -> str:
    return {ASSETS: "install-config secrets filled in the state dir, rendered manifests added",
            "bootstrap-complete": "waits up to the installer's own timeouts, about 50 minutes",
            "install-complete": "waits up to the installer's own timeout, about 40 minutes"}[phase]


def installer_kubeconfig(root: Path | None, env_name: str) -> str | None:
    """The cluster's kubeconfig the installer wrote, when the installer phases are in use."""
    path = State(root / env_name).kubeconfig if root is not None else None
    return str(path) if path is not None and path.is_file() else None
