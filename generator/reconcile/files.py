"""The files provider: the helper's boot-service configs under a target root.

Rendered `hosts/<host>/<service>/...` files are installed into the service's install
directory on that host. Every change goes through the same steps: stage the candidate files
beside the live ones (`<root>/.gen-staging/`), fill secret markers there, run the daemon's
own checker on the staged copy, and only if it passes rename each file into place (atomic
per file) and run the service's reload command. A failing check leaves the old files in
place and fails the converge with the checker's message.

All target I/O goes through a `Target`: a root directory plus an optional command prefix
(`ssh root@helper`, `ip netns exec helper`, or nothing for this machine). Reads and writes
are tar streams through that prefix, so the same code serves a local root and a remote host.

Publishing: the http and tftp families render a `manifest.json` naming files that must be
present in their roots but are not rendered (OS artifacts, boot loaders, role Ignition from
openshift-install, the rendered per-node Ignition). They are published from gen's store
(artifacts by the sha256 the manifest carries: the locked pin, since plan renders with the
lock), from the rendered tree, or copied on the target from an installed package path.

Host OS profiles (generator/profiles.py) decide per host where each service's files go,
how they are checked and reloaded, which packages provide it (converge installs missing ones
through the same prefix: one `packages` action per host, before its services, unless
--no-install-packages) and what runs after new files land (SELinux labels, firewalld).

Confinement: every path gen writes, stages or prunes is a plain relative path under its
service's install directory (no `..`, no empty or `.` parts, no control characters),
checked when planning, before anything on the target changes; paths in a target's
`.gen-managed.json` that are not are never pruned. Before it swaps files in, gen checks on
the target that no component under the install directory (nor the staging directory) is a
symlink, so a link there cannot carry a write or a deletion elsewhere.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from generator.errors import UserError
from generator.families import service_install
from generator.model import SECRET_MARKER_PREFIX, Environment, SecretRef
from generator.profiles import Profile, ServiceSpec, profile
from generator.reconcile.base import WAVE_SERVICES, Action, DiffItem, Op
from generator.reconcile.essence import file_digest, fills
from generator.reconcile.secrets import (
    check_places,
    checked_value,
    declared,
    kinds,
    places,
    target_read_argv,
    target_read_error,
)
from generator.records import record
from generator.tree import Tree

MANAGED = ".gen-managed.json"
# gen's instructions to itself (what to publish, which directories to make); read from the
# rendered tree, never installed: in a served root (TFTP) it would show anyone the layout.
MANIFEST = "manifest.json"
STAGING = ".gen-staging"
MARKER_PREFIX = SECRET_MARKER_PREFIX.encode()


# ssh's messages for a host that is not reachable yet (its VM still boots): worth waiting for
_NOT_UP_YET = re.compile(r"Connection refused|No route to host|Connection timed out|"
                         r"Network is unreachable|Connection reset|Connection closed|"
                         r"Operation timed out|Could not resolve hostname")


def not_up_yet(ssh_says: str) -> bool:
    """Whether ssh's message means the host cannot be reached yet (worth waiting for)."""
    return _NOT_UP_YET.search(ssh_says) is not None


def unreachable(prefix: tuple[str, ...], reason: str) -> UserError:
    """ssh's own failure: nothing ran on the far side."""
    return UserError(f"cannot reach the target through `{shlex.join(prefix)}`: {reason}",
                     "check that the host is up, that its host key is the one in the "
                     "known-hosts file ssh reads, and that it accepts your key")


@record
class Target:
    """A host's filesystem root, reached through an optional command prefix."""

    root: str = "/"
    prefix: tuple[str, ...] = ()
    # False: reloads are not run. A host given only --files-target has no prefix, so its
    # reloads would run on the machine that runs gen; that needs --files-exec HOST=local.
    reloads: bool = True

    @property
    def over_ssh(self) -> bool:
        """Reached through ssh: the host may be a VM that is still coming up."""
        return self.prefix[:1] == ("ssh",)

    def answers(self, timeout: float = 20) -> str | None:
        """None when a no-op runs through the prefix, else why the host is not up yet.

        Only a host that cannot be reached yet (refused, no route, no answer) is "not up":
        a VM still booting. Anything else ssh refuses (a host key that is not the known one,
        a key the host does not accept) will not change by waiting and fails at once.
        """
        try:
            proc = subprocess.run(self.command(["true"]), capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"no answer within {timeout:.0f} s"
        if proc.returncode == 0:
            return None
        message = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        reason = message.splitlines()[-1] if message else f"exit {proc.returncode}"
        if self.over_ssh and proc.returncode == 255 and not not_up_yet(message):
            raise unreachable(self.prefix, reason)
        return reason

    def path(self, absolute: str) -> str:
        """Where an absolute target path lives under the root."""
        return str(PurePosixPath(self.root) / absolute.lstrip("/"))

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as run through the prefix on the target."""
        # ssh runs one shell string on the far side; other prefixes take an argv as it is
        remote = self.prefix[:1] == ("ssh",)
        return [*self.prefix, shlex.join(argv)] if remote else [*self.prefix, *argv]

    def run(self, argv: list[str], data: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(self.command(argv), input=data, capture_output=True, timeout=600)
        if proc.returncode == 255 and self.prefix[:1] == ("ssh",):
            # ssh's own failure (host key, authentication, connection): nothing ran there, so
            # even a read that may fail (check=False) must not pass for "no such files"
            message = proc.stderr.decode(errors="replace").strip()
            raise unreachable(self.prefix, message.splitlines()[-1] if message
                               else "ssh exited 255")
        if check and proc.returncode != 0:
            message = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            raise UserError(f"`{shlex.join(argv)}` failed on the target: "
                            f"{message.splitlines()[-1] if message else proc.returncode}")
        return proc

    def read_files(self, paths: list[str]) -> dict[str, bytes]:
        """The content of those absolute target paths that exist (one tar stream)."""
        if not paths:
            return {}
        script = ("cd \"$1\" && shift && for f; do [ -f \"$f\" ] && printf '%s\\0' \"$f\"; "
                  "done | tar --null -T - -cf -")
        proc = self.run(["sh", "-c", script, "sh", self.root,
                         *[p.lstrip("/") for p in paths]], check=False)
        found: dict[str, bytes] = {}
        if not proc.stdout:
            return found
        import tarfile  # only when a host's files are read or written: ~5 ms to import

        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member)
                if handle is not None:
                    found["/" + member.name.lstrip("./")] = handle.read()
        return found

    def write_files(self, files: Mapping[str, bytes], mode: int = 0o644) -> None:
        """Write absolute target paths (under the root) from one tar stream."""
        import tarfile

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:") as archive:
            for path, data in sorted(files.items()):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode = len(data), mode
                archive.addfile(info, io.BytesIO(data))
        self.run(["sh", "-c", 'mkdir -p "$1" && tar -C "$1" --no-same-owner -xf -', "sh",
                  self.root], data=buffer.getvalue())


@dataclass
class FilesProvider:
    """Converges `hosts/<host>/<service>/` subtrees onto each host's target."""

    targets: dict[str, Target] = field(default_factory=dict)
    reloads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    store_root: Path | None = None
    ignition_dir: Path | None = None
    installer_root: Path | None = None  # the installer provider's state: role configs
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    rendered: Tree = field(default_factory=dict)
    prune: bool = False
    install_packages: bool = True  # False: --no-install-packages (no post-install steps either)
    name: str = "files"
    notices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # hosts not looked at (no target)
    ssh_wait: float = 300.0  # seconds apply waits for a host reached over ssh to answer
    addresses: dict[str, str] = field(default_factory=dict)  # host -> its node's address
    down: set[str] = field(default_factory=set)  # ssh hosts that did not answer at plan
    answered: set[str] = field(default_factory=set)  # ssh hosts that did
    ready: set[str] = field(default_factory=set)  # hosts that answered during apply

    def scope(self, tree: Tree) -> Tree:
        # Manifests publish rendered files from outside hosts/ (per-node Ignition).
        self.rendered = tree
        return {p: c for p, c in tree.items() if p.startswith("hosts/")}

    def target(self, env: Environment, host: str) -> Target | None:
        """The configured target; gen never guesses a remote host to connect to."""
        return self.targets.get(host)

    # -- plan -----------------------------------------------------------------------------

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        if self.ignition_dir is None and self.installer_root is not None:
            self.ignition_dir = self.installer_root / env.name / "assets"  # --ignition-dir wins
        self.secrets = declared(env)
        self.places = places(env)
        self.kinds = kinds(env)
        self.addresses = {n.name: str(n.ip) for n in env.nodes}
        actions = []
        packages: dict[str, list[str]] = {}  # host -> packages its services need
        for (host, service), files in sorted(_by_service(tree).items()):
            os_profile = host_profile(env, host)
            spec = os_profile.service(service) or service_install(service, os_profile.name)
            if spec is None:
                self.notices.append(f"no install rule for service '{service}' on {host} "
                                    f"({os_profile.name}); its files are not converged")
                continue
            target = self.target(env, host)
            if target is None:
                self._skip(env, host)
                continue
            if not target.reloads:
                self._no_reload(host, target)
            self._look_up(host, target)
            packages.setdefault(host, []).extend(spec.packages)
            desired = self._desired_files(spec, files, self.rendered or tree)
            action = self._plan_service(host, service, spec, target, desired,
                                        _directories(spec, files), _export_directories(files))
            if action is not None:
                action.payload["ports"] = _listening_ports(env, service)
                actions.append(action)
        for host, wanted in sorted(packages.items()):
            action = self._plan_packages(env, host, wanted)
            if action is not None:
                actions.append(action)
        return actions

    def _look_up(self, host: str, target: Target) -> None:
        """A host reached over ssh that does not answer is planned as empty: on an empty
        hypervisor converge creates its VM in an earlier wave, and apply waits for it."""
        if not target.over_ssh or host in self.down or host in self.answered:
            return
        reason = target.answers()
        if reason is None:
            self.answered.add(host)
        if reason is not None:
            self.down.add(host)
            self.notices.append(f"{host} ({self.addresses.get(host, '?')}) does not answer over "
                                f"ssh yet ({reason}): its files are planned as new; converge "
                                f"waits up to {self.ssh_wait:.0f} s for it")

    def _plan_packages(self, env: Environment, host: str, wanted: list[str]) -> Action | None:
        """A `packages` action for what the host's services need and it lacks. Only where
        gen runs the host's commands (as for reloads), and not with --no-install-packages."""
        target = self.targets[host]
        if not (self.install_packages and target.reloads and wanted):
            return None
        os_profile = host_profile(env, host)
        names = sorted(set(wanted))
        # a host that does not answer yet (its VM boots) is asked nothing: all are planned
        have = set() if host in self.down else installed(target, os_profile, names)
        missing = [n for n in names if n not in have]
        if not missing:
            return None
        return Action("create", self.name, "packages", host, WAVE_SERVICES,
                      tuple(DiffItem("add", n, None, "installed") for n in missing),
                      note=f"{shlex.join(os_profile.install)} (before {host}'s services)",
                      order=-1, payload={"target": target, "install": os_profile.install,
                                         "missing": missing})

    def _skip(self, env: Environment, host: str) -> None:
        note = (f"{host}: boot services not converged: no target given (pass --files-exec "
                f"{host}='ssh root@{env.node(host).ip}' or --files-target {host}=DIR)")
        if note not in self.notices:
            self.notices.append(note)
            self.skipped.append(f"{self.name}: {host}")

    def _no_reload(self, host: str, target: Target) -> None:
        note = (f"{host}: files go under {target.root} on this machine and no service is "
                f"reloaded (pass --files-exec {host}=local to run the reloads here, or "
                f"--files-exec {host}='ssh root@...' to run them on {host})")
        if note not in self.notices:
            self.notices.append(note)

    def _desired_files(self, spec: ServiceSpec, files: dict[str, bytes],
                       tree: Tree) -> dict[str, bytes | tuple[str, str]]:
        """Install path -> content, or ("store", sha256) / ("package", path) to publish."""
        desired: dict[str, bytes | tuple[str, str]] = {
            spec.place(rel) or confined(spec.install, rel, "a rendered file"): content
            for rel, content in files.items() if rel != MANIFEST}
        if spec.publish is not None and MANIFEST in files:
            base = f"{spec.install}/{spec.publish}".rstrip("/")
            for rel, entry in json.loads(files[MANIFEST]).get("files", {}).items():
                path = confined(base, rel, "a file manifest.json publishes")
                _refuse_publish_over(spec, path, desired)
                source = self._publish_source(entry, tree)
                if source is not None:
                    desired[path] = source
        return desired

    def _publish_source(self, entry: dict[str, Any], tree: Tree) -> bytes | tuple[str, str] | None:
        kind = entry.get("source")
        if kind == "rendered":
            return tree.get(entry["path"])
        if kind == "os-artifact":
            sha = entry.get("sha256")
            if not sha:
                self.notices.append(f"OS artifact {entry['artifact']} is not locked; run "
                                    "`gen lock` and `gen fetch` to publish it")
                return None
            return ("store", sha)
        if kind == "package":
            return ("package", _package_path(entry["path"]))
        if kind == "openshift-install":
            path = (self.ignition_dir / f"{entry['role']}.ign") if self.ignition_dir else None
            if path is None or not path.is_file():
                self.notices.append(f"{entry['role']}.ign from openshift-install is not "
                                    "published (pass --ignition-dir)")
                return None
            return path.read_bytes()
        return None

    def _plan_service(self, host: str, service: str, spec: ServiceSpec, target: Target,
                      desired: dict[str, bytes | tuple[str, str]], directories: list[str],
                      exported: tuple[ExportDirectory, ...] = ()) -> Action | None:
        managed_path = f"{spec.install}/{MANAGED}"
        down = host in self.down
        live = {} if down else target.read_files(
            [managed_path, *[p for p, v in desired.items() if isinstance(v, bytes)]])
        managed = json.loads(live.get(managed_path, b"{}") or b"{}")
        digests = {p: file_digest(v) for p, v in desired.items()}
        changes = []
        for path, digest in sorted(digests.items()):
            was = managed.get("files", {}).get(path)
            content = desired[path]
            current = live.get(path)
            if isinstance(content, bytes) and current is not None:
                same = current == content or fills(content, current)
            else:
                same = was == digest
            if not same:
                changes.append(DiffItem("change" if was or current is not None else "add",
                                        path, was, digest))
        stale = {p: d for p, d in sorted(managed.get("files", {}).items()) if p not in digests}
        outside = [p for p in stale if not (inside(spec.install, p)
                                            or p in dict(spec.placed).values())]
        if outside:  # never delete what a hostile earlier render or edit recorded there
            self.notices.append(f"{host}/{service}: {len(outside)} path(s) in {managed_path} "
                                f"are not inside {spec.install} and are never pruned: "
                                f"{', '.join(map(_shown, outside))}")
            stale = {p: d for p, d in stale.items() if p not in outside}
        # an earlier gen installed its manifest into served roots: removed without --prune
        kept = {p: d for p, d in stale.items() if p != f"{spec.install}/{MANIFEST}"}
        if kept and not self.prune:  # deleting needs --prune, as for every provider
            self.notices.append(f"{host}/{service}: {len(kept)} file(s) gen installed are no "
                                f"longer rendered and are kept (run with --prune to delete "
                                f"them): {', '.join(kept)}")
            digests = {**digests, **kept}
            stale = {p: d for p, d in stale.items() if p not in kept}
        changes += [DiffItem("remove", p, d, None) for p, d in stale.items()]
        directory_changes = _directory_changes(target, exported, down)
        changes += directory_changes
        if not changes:
            return None
        op: Op = "update" if managed or live else "create"
        return Action(op, self.name, "service", f"{host}/{service}", WAVE_SERVICES,
                      tuple(changes), note="checked, then reloaded" if target.reloads
                      else "checked; not reloaded: no --files-exec for this host",
                      payload={"host": host, "service": service, "desired": desired,
                               "digests": digests, "target": target, "spec": spec,
                               "stale": [c.path for c in changes if c.op == "remove"],
                               "directories": directories,
                               "exported": [d for d in exported if d.path in
                                            {c.path for c in directory_changes}]})

    # -- apply ----------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        p = action.payload
        target: Target = p["target"]
        if action.kind == "packages":
            self._await(action.name, target)  # the host may still be booting
            target.run([*p["install"], *p["missing"]])
            return
        spec: ServiceSpec = p["spec"]
        service: str = p["service"]
        self._await(p["host"], target)
        staging = f"/{STAGING}/{service}"
        _refuse_symlinks(target, "/", [staging])
        _refuse_symlinks(target, spec.install, [*p["desired"], *p["stale"], *p["directories"],
                                                f"{spec.install}/{MANAGED}"])
        _refuse_symlinks(target, "/", [d.path for d in p.get("exported", [])])
        files, values = self._materialize(target, p["desired"])
        target.run(["rm", "-rf", target.path(staging)])
        target.write_files({f"{staging}{path}": data for path, data in files.items()},
                           spec.mode)
        for path, source in p["desired"].items():
            if isinstance(source, tuple) and source[0] == "package":
                target.run(["cp", source[1], target.path(f"{staging}{path}")])
        if p["directories"]:
            target.run(["mkdir", "-p", *[target.path(f"{where}{d}") for d in p["directories"]
                                         for where in (staging, "")]])
        if spec.check_dirs:
            target.run(["mkdir", "-p", *[target.path(f"{staging}{d}") for d in spec.check_dirs]])
        self._check(target, spec, staging, values)
        self._swap(target, staging, list(p["desired"]), p["stale"])
        managed = {"files": p["digests"], "service": service}
        # 0600: in a TFTP root a world-readable list of every file would be served
        target.write_files({f"{spec.install}/{MANAGED}": json.dumps(
            managed, indent=2, sort_keys=True).encode()}, 0o600)
        target.run(["rm", "-rf", target.path(staging)])
        target.run(["rmdir", target.path(f"/{STAGING}")], check=False)  # others may be busy
        _make_export_directories(target, p.get("exported", []))
        if self.install_packages and target.reloads:
            for step in spec.post_install:
                target.run(_fill_all(step, target, spec, staging, p.get("ports", ())))
        reload = self.reloads.get(service, spec.reload)
        if reload and target.reloads:
            target.run([_fill(a, target, spec, staging) for a in reload])

    def _await(self, host: str, target: Target) -> None:
        """Before the first file goes to a host reached over ssh: wait until it answers
        (its VM may be booting from its cloud image), then take its converge lock if the
        converge could not take it at the start."""
        if host in self.ready or not target.over_ssh:
            return
        from generator.reconcile.converge import take_deferred_lock

        deadline = time.monotonic() + self.ssh_wait
        while (reason := target.answers()) is not None:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{host} ({self.addresses.get(host, '?')}) did not answer over ssh within "
                    f"{self.ssh_wait:.0f} s: {reason}",
                    f"check that its VM runs (virsh console {host}) and that its seed gave it "
                    "that address and your key; converge again resumes here")
            time.sleep(2)
        take_deferred_lock(host)
        self.ready.add(host)

    def _materialize(self, target: Target, desired: dict[str, Any],
                     ) -> tuple[dict[str, bytes], list[bytes]]:
        """Bytes for every file gen uploads (store objects read and verified here), and the
        secret values filled in (each read once on the target; kept out of error messages)."""
        out = {}
        values: dict[str, bytes] = {}
        for path, source in desired.items():
            if isinstance(source, bytes):
                check_places(path, source, self.places)
                out[path] = self._fill_secrets(target, source, values)
            elif source[0] == "store":
                out[path] = self._store().read(source[1], f"published {path}")
        return out, list(values.values())

    def _store(self) -> Any:
        from generator.lock.store import Store, default_root

        return Store(self.store_root or default_root())

    def _fill_secrets(self, target: Target, content: bytes, values: dict[str, bytes]) -> bytes:
        """Replace `@@gen-secret:NAME@@` markers with values read on the target (`values`
        caches them by name for the whole action)."""
        if MARKER_PREFIX not in content:
            return content
        for ref in self.secrets.values():
            marker = ref.marker().encode()
            if marker in content:
                if ref.name not in values:
                    values[ref.name] = checked_value(ref, _read_secret(target, ref),
                                                    self.kinds.get(ref.name))
                content = content.replace(marker, values[ref.name])
        return content

    def _check(self, target: Target, spec: ServiceSpec, staging: str,
               secrets: list[bytes]) -> None:
        if not spec.check:
            return
        argv = [_fill(a, target, spec, staging) for a in spec.check]
        proc = target.run(argv, check=False)
        if proc.returncode != 0:
            target.run(["rm", "-rf", target.path(staging)], check=False)
            target.run(["rmdir", target.path(f"/{STAGING}")], check=False)
            raw = proc.stdout + proc.stderr
            for value in secrets:  # checkers quote the offending line: never show a value
                if value:
                    raw = raw.replace(value, b"(sensitive value)")
            output = raw.decode(errors="replace").strip()
            raise UserError(f"{argv[0]} rejected the new {spec.install} files; the old ones "
                            f"stay in place: {' | '.join(output.splitlines()[-3:])}")

    def _swap(self, target: Target, staging: str, paths: list[str], stale: list[str]) -> None:
        script = ("root=\"$1\"; staging=\"$2\"; shift 2; for f; do mkdir -p \"$root$(dirname "
                  "\"$f\")\" && mv -f \"$staging$f\" \"$root$f\" || exit 1; done")
        target.run(["sh", "-c", script, "sh", target.root.rstrip("/"),
                    target.path(staging), *paths])
        if stale:
            target.run(["rm", "-f", *[target.path(p) for p in stale]])


def _fill(arg: str, target: Target, spec: ServiceSpec, staging: str) -> str:
    return arg.format(staged=target.path(f"{staging}{spec.install}"),
                      staging=target.path(staging), install=target.path(spec.install),
                      absolute=spec.install)


def _fill_all(argv: tuple[str, ...], target: Target, spec: ServiceSpec, staging: str,
              ports: tuple[int, ...]) -> list[str]:
    """A post-install argv with its templates filled; `{ports}` becomes one argument per
    port the service listens on (none: no argument)."""
    out: list[str] = []
    for arg in argv:
        if arg == "{ports}":
            out += [f"--add-port={port}/tcp" for port in ports]
        else:
            out.append(_fill(arg, target, spec, staging))
    return out


def host_profile(env: Environment, host: str) -> Profile:
    """The OS profile of a host by its node's `os` (the default for a name no node has)."""
    node = next((n for n in env.nodes if n.name == host), None)
    return profile(node.os if node else None)


def installed(target: Target, os_profile: Profile, names: list[str]) -> set[str]:
    """Which of `names` the target has installed, asked of its package database (the query
    prints `NAME installed` per installed package; a missing package is no error)."""
    try:
        proc = target.run([*os_profile.query, *names], check=False)
    except FileNotFoundError:  # no prefix: the query runs on this machine
        proc = subprocess.CompletedProcess([], 127, b"", b"")
    if proc.returncode == 127:  # the shell's "command not found"
        raise UserError(f"cannot ask the target which packages are installed: "
                        f"`{os_profile.query[0]}` is not there (is the host's os "
                        f"'{os_profile.name}' right?)",
                        "set the node's os: to its distribution, or pass "
                        "--no-install-packages")
    found = set()
    for line in proc.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if len(words) == 2 and words[1] == "installed":
            found.add(words[0])
    return found


def _listening_ports(env: Environment, service: str) -> tuple[int, ...]:
    """The TCP ports a service listens on that its environment chooses (for the firewall;
    well-known ports are opened by service name in the profile)."""
    from generator.families import haproxy

    if service == "http" and env.services.http is not None:
        return (env.services.http.port,)
    if service == "haproxy" and env.services.haproxy is not None:
        lb = env.services.haproxy
        return tuple(sorted({p.port for p in haproxy.proxies(env, lb)} | {lb.stats_port}))
    return ()


def _read_secret(target: Target, ref: SecretRef) -> bytes:
    # confined to the secrets directory (or a GEN_SECRET_* variable) on the target; the
    # reference is an argument, never shell text (reconcile/secrets.target_read_argv)
    proc = target.run(target_read_argv(ref), check=False)
    if proc.returncode != 0:
        raise target_read_error(ref, proc.returncode)
    return proc.stdout.rstrip(b"\n")


def _directories(spec: ServiceSpec, files: dict[str, bytes]) -> list[str]:
    """Directories a manifest.json asks for (logs, run, ...), as absolute target paths."""
    if MANIFEST not in files:
        return []
    wanted = json.loads(files[MANIFEST]).get("directories", [])
    return [confined(spec.install, d, "a directory manifest.json asks for") for d in wanted]


@record
class ExportDirectory:
    """A directory outside the install dir that the service needs (an NFS export's path),
    with the owner, group and mode the environment gives it."""

    path: str
    owner: str
    group: str
    mode: str

    def shown(self) -> str:
        return f"directory {self.owner}:{self.group} {self.mode}"


_OWNER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}")
_MODE = re.compile(r"[0-3][0-7]{3}")  # no setuid bit on an export directory


def _export_directories(files: dict[str, bytes]) -> tuple[ExportDirectory, ...]:
    """The manifest's `exportDirectories`, each checked again here (defence in depth: the
    paths are absolute by nature, so a system directory is refused before the plan)."""
    from generator.families.nfs import path_ok, system_path

    if "manifest.json" not in files:
        return ()
    wanted = json.loads(files["manifest.json"]).get("exportDirectories", [])
    found = []
    for entry in wanted:
        directory = ExportDirectory(entry.get("path"), entry.get("owner"), entry.get("group"),
                                    entry.get("mode"))
        if not (isinstance(directory.path, str) and inside("/", directory.path)
                and path_ok(directory.path) and not system_path(directory.path)
                and all(isinstance(v, str) and _OWNER.fullmatch(v)
                        for v in (directory.owner, directory.group))
                and isinstance(directory.mode, str) and _MODE.fullmatch(directory.mode)):
            raise UserError(f"an export directory, {_shown(entry)}, is not a plain directory "
                            "outside the system trees with a user, group and octal mode; "
                            "nothing was changed on the target",
                            "fix services.nfs.exports in the environment")
        found.append(directory)
    return tuple(found)


# One line per directory: `path<TAB>user group uid gid mode`, or `path<TAB>-` when missing.
STAT_DIRECTORIES = """root="$1"; shift
for d; do
  if [ -d "$root$d" ] && [ ! -L "$root$d" ]; then
    printf '%s\t%s\n' "$d" "$(stat -c '%U %G %u %g %a' "$root$d")"
  else printf '%s\t-\n' "$d"; fi
done"""


def _directory_changes(target: Target, wanted: tuple[ExportDirectory, ...],
                       down: bool = False) -> list[DiffItem]:
    """A DiffItem per export directory that is missing or has another owner or mode (all
    of them on a host that is not up yet)."""
    if down:
        return [DiffItem("add", d.path, None, d.shown()) for d in wanted]
    if not wanted:
        return []
    proc = target.run(["sh", "-c", STAT_DIRECTORIES, "sh", target.root.rstrip("/"),
                       *[d.path for d in wanted]])
    live = dict(line.split("\t", 1) for line in proc.stdout.decode().splitlines())
    changes = []
    for directory in wanted:
        state = live.get(directory.path, "-").split()
        if state == ["-"]:
            changes.append(DiffItem("add", directory.path, None, directory.shown()))
            continue
        user, group, uid, gid, mode = state
        if (directory.owner not in (user, uid) or directory.group not in (group, gid)
                or int(mode, 8) != int(directory.mode, 8)):
            was = ExportDirectory(directory.path, user, group, mode.rjust(4, "0"))
            changes.append(DiffItem("change", directory.path, was.shown(), directory.shown()))
    return changes


def _make_export_directories(target: Target, wanted: list[ExportDirectory]) -> None:
    """Create each directory (parents root 0755, as mkdir -p makes them) and set its owner
    and mode; refused when a component is a symlink, so chown never follows one."""
    if not wanted:
        return
    _refuse_symlinks(target, "/", [d.path for d in wanted])
    for directory in wanted:
        where = target.path(directory.path)
        target.run(["mkdir", "-p", where])
        target.run(["chown", f"{directory.owner}:{directory.group}", where])
        target.run(["chmod", directory.mode, where])


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def confined(base: str, rel: str, what: str) -> str:
    """`base/rel` when `rel` is a plain relative path (UserError otherwise): no leading
    `/`, no empty, `.` or `..` part, no control character, so it stays inside `base`."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if (any(part in ("", ".", "..") for part in parts) or CONTROL.search(rel)):
        raise UserError(f"{what}, {_shown(rel)}, is not a plain relative path inside {base}; "
                        "nothing was changed on the target",
                        "a rendered path never holds '..', a leading '/' or control characters")
    return f"{base}/{rel}"


def inside(base: str, path: str) -> bool:
    """True when the absolute `path` is normalised and strictly below `base`."""
    return (isinstance(path, str) and not CONTROL.search(path)
            and posixpath.normpath(path) == path and path.startswith(base.rstrip("/") + "/"))


def _refuse_publish_over(spec: ServiceSpec, path: str,
                         desired: Mapping[str, bytes | tuple[str, str]]) -> None:
    """A published file never replaces a rendered one, gen's own state or a directory gen
    renders into (defence in depth: validation refuses such boot file names first)."""
    managed = f"{spec.install}/{MANAGED}"
    clash = next((p for p in [*desired, managed, f"{spec.install}/{MANIFEST}"]
                  if p == path or p.startswith(path + "/") or path.startswith(p + "/")), None)
    if clash is not None:
        raise UserError(f"manifest.json publishes {_shown(path)}, which would replace "
                        f"{_shown(clash)} that gen renders or keeps there; nothing was changed "
                        "on the target", "give the published file (a DHCP boot file) its own "
                        "name")


PACKAGE_TREES = ("/usr", "/boot/efi/EFI")  # el9's grub2-efi-x64 installs under the ESP


def _package_path(path: str) -> str:
    """Package files are copied from the target's /usr or EFI tree only (defence in depth:
    the profiles name them, but a manifest must not copy /etc/shadow into a served
    directory)."""
    if not any(inside(tree, path) for tree in PACKAGE_TREES):
        raise UserError(f"a package file to publish, {_shown(path)}, is not below /usr or "
                        "/boot/efi/EFI", "boot loaders are copied from installed packages only")
    return path


def _shown(value: object) -> str:
    """A path for a message: quoted, control characters escaped, bounded."""
    text = json.dumps(value if isinstance(value, str) else str(value))
    return text if len(text) <= 120 else text[:117] + '..."'


SYMLINK_CHECK = """root="$1"; base="$2"; shift 2
for f; do
  p="$f"
  while [ -n "$p" ] && [ "$p" != "$base" ]; do
    if [ -L "$root$p" ]; then printf '%s\\n' "$p"; exit 3; fi
    p="${p%/*}"
  done
done"""


def _refuse_symlinks(target: Target, base: str, paths: list[str]) -> None:
    """Refuse (UserError, nothing changed) when a component of a path below `base` on the
    target is a symlink: mv, rm and mkdir would follow it out of the install directory."""
    if not paths:
        return
    proc = target.run(["sh", "-c", SYMLINK_CHECK, "sh", target.root.rstrip("/"),
                       base.rstrip("/"), *paths], check=False)
    if proc.returncode == 3:
        link = proc.stdout.decode(errors="replace").strip()
        raise UserError(f"{_shown(link)} is a symlink on the target; gen does not write or "
                        "delete through symlinks, and nothing was changed",
                        "replace it with a directory or file")
    if proc.returncode != 0:
        raise UserError("cannot check the target for symlinks: "
                        + (proc.stderr or proc.stdout).decode(errors="replace").strip())


def _by_service(tree: Tree) -> dict[tuple[str, str], dict[str, bytes]]:
    grouped: dict[tuple[str, str], dict[str, bytes]] = {}
    for path, content in tree.items():
        _, host, service, rel = path.split("/", 3)
        grouped.setdefault((host, service), {})[rel] = content
    return grouped
