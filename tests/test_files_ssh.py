"""The files provider's SSH path against a real sshd in a lo-only network namespace.

The test makes a host key and a client key, runs OpenSSH's sshd on 127.0.0.2 inside the
namespace (its own /run, so /run/sshd exists without touching this machine's), and runs
`gen converge` and `gen plan` there with

    --files-exec helper='ssh -i KEY -o UserKnownHostsFile=KNOWN
                         -o StrictHostKeyChecking=yes ... root@127.0.0.2'

so every read, write, checker and reload of lab A's helper services crosses SSH into a root
directory on the far side. Proven: the far root ends up exactly as a local converge leaves
its root; the SSH key the Ignition files reference is read on the far side (gen's own HOME
has none); each reload ran in an SSH session; a re-plan is empty. With a host key that is
not the one in the known-hosts file (or no entry at all), plan and converge fail with one
line and the far root is untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import Result
from fstree import snapshot
from netns import Netns, netns

pytestmark = pytest.mark.daemons
SSHD = Path("/usr/sbin/sshd")
ADDRESS = "127.0.0.2"
RELOADED = ("dns", "dhcp", "haproxy", "http", "nfs")  # lab A's services with a reload
FAR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFarSideKeyOfTheSshTest gen-ssh-test"
SSHD_CONFIG = """ListenAddress {address}:22
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# the key files live under pytest's tmp dir, below the world-writable /tmp
StrictModes no
# the far side's home: its secrets directory holds lab A's sshAuthorizedKeys file
SetEnv HOME={dir}/far-home
"""
# sshd wants its privilege separation directory /run/sshd: give it a /run of its own
START = ("mount --bind {dir}/run /run && mkdir -p /run/sshd && "
         "exec {sshd} -D -e -f {dir}/sshd_config")


@dataclass
class Sshd:
    ns: Netns
    dir: Path
    log: Path

    def prefix(self, known_hosts: Path) -> str:
        """The --files-exec prefix: only this key, only this known-hosts file, no prompts."""
        return (f"ssh -F /dev/null -i {self.dir / 'client_key'} -o IdentitiesOnly=yes "
                f"-o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null "
                f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 "
                f"root@{ADDRESS}")

    def known_hosts(self, name: str, key_file: Path | None) -> Path:
        path = self.dir / name
        entry = " ".join(key_file.read_text().split()[:2]) if key_file else ""
        path.write_text(f"{ADDRESS} {entry}\n" if entry else "")
        return path


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    assert SSHD.is_file(), "openssh-server missing (tests/run.sh APT_PACKAGES)"
    work = tmp_path / "sshd"
    (work / "run").mkdir(parents=True)
    secrets = work / "far-home" / ".config" / "gen" / "secrets"  # the default secrets dir
    secrets.mkdir(parents=True)
    (secrets / "id_rsa.pub").write_text(FAR_KEY + "\n")
    _keygen(work / "host_key", "gen-test-host")
    _keygen(work / "other_host_key", "gen-test-impostor")
    _keygen(work / "client_key", "gen-test-client")
    (work / "authorized_keys").write_bytes((work / "client_key.pub").read_bytes())
    (work / "sshd_config").write_text(SSHD_CONFIG.format(address=ADDRESS, dir=work))
    log = work / "sshd.log"
    with netns("ssh") as ns, log.open("wb") as out:
        ns.popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                  START.format(dir=work, sshd=SSHD)], stdout=out, stderr=subprocess.STDOUT)
        ns.wait_port(22)
        yield Sshd(ns, work, log)


def gen_in(ns: Netns, *args: str, cwd: Path, home: Path) -> Result:
    """The real gen CLI, run inside the namespace (where 127.0.0.2 is sshd)."""
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.run(ns.argv([sys.executable, "-m", "generator", *args]), cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def files_flags(root: Path, prefix: str, reloads: Path) -> list[str]:
    # Each reload records the SSH session it ran in ($SSH_CONNECTION is set by sshd only).
    return ["--provider", "files", "--files-target", f"helper={root}",
            "--files-exec", f"helper={prefix}", "--no-install-packages",
            *[f"--reload={svc}=sh -c 'echo \"$SSH_CONNECTION\" >> {reloads}/{svc}'"
              for svc in RELOADED]]


def test_converge_over_ssh_installs_checks_reloads_then_plan_is_empty(
        sshd: Sshd, debian_repo: Path, tmp_path: Path) -> None:
    repo = debian_repo  # the far side's checkers are this machine's, at Debian's paths
    far, reloads, home = tmp_path / "far-root", tmp_path / "reloads", tmp_path / "gen-home"
    for directory in (reloads, home):
        directory.mkdir()
    known = sshd.known_hosts("known_hosts", sshd.dir / "host_key.pub")
    flags = files_flags(far, sshd.prefix(known), reloads)

    first = gen_in(sshd.ns, "converge", "env/lab", "--auto-approve", *flags, "--state-dir",
                   str(tmp_path / "state"), cwd=repo, home=home)
    assert first.code == 0, first.out + first.err
    assert "Accepted publickey for root" in sshd.log.read_text()
    # every reload ran on the far side, in an SSH session to 127.0.0.2
    for svc in RELOADED:
        sessions = (reloads / svc).read_text().split("\n")
        assert sessions[0].endswith(f" {ADDRESS} 22"), (svc, sessions)
    # the secret came from the far side's secrets directory: gen's own HOME has none
    assert not (home / ".config" / "gen" / "secrets").exists()
    ignition = next(far.rglob("master0.ign")).read_bytes()
    assert FAR_KEY.encode() in ignition and b"@@gen-secret:" not in ignition

    again = gen_in(sshd.ns, "plan", "env/lab", "--detailed-exitcode", *flags, cwd=repo,
                   home=home)
    assert again.code == 0, again.out + again.err

    # the same converge through no transport at all leaves the same tree
    local = tmp_path / "local-root"
    (tmp_path / "local-reloads").mkdir()
    reference = ["--provider", "files", "--files-target", f"helper={local}",
                 "--files-exec", "helper=local",
                 *[f"--reload={svc}=true" for svc in RELOADED]]
    same = gen_in(sshd.ns, "converge", "env/lab", "--auto-approve", *reference,
                  "--state-dir", str(tmp_path / "local-state"), cwd=repo,
                  home=sshd.dir / "far-home")
    assert same.code == 0, same.out + same.err
    # the converge lock on the host names its holder (pid, time): the only difference
    lock = "run/lock/gen/converge-lab.lock"
    far_tree, local_tree = snapshot(far), snapshot(local)
    assert lock in far_tree and lock in local_tree
    del far_tree[lock], local_tree[lock]
    assert far_tree == local_tree


@pytest.mark.parametrize("known_key", ["other_host_key.pub", None],
                         ids=["changed-host-key", "unknown-host"])
def test_a_host_key_that_is_not_known_fails_in_one_line_and_touches_nothing(
        sshd: Sshd, repo: Path, tmp_path: Path, known_key: str | None) -> None:
    far, reloads, home = tmp_path / "far-root", tmp_path / "reloads", tmp_path / "gen-home"
    for directory in (far, reloads, home):
        directory.mkdir()
    (far / "etc").mkdir()
    (far / "etc" / "motd").write_text("the far side before gen came\n")
    before = snapshot(far)
    known = sshd.known_hosts("known_hosts", sshd.dir / known_key if known_key else None)
    flags = files_flags(far, sshd.prefix(known), reloads)

    for args in (["plan", "env/lab", *flags],
                 ["converge", "env/lab", "--auto-approve", *flags, "--state-dir",
                  str(tmp_path / "state")]):
        result = gen_in(sshd.ns, *args, cwd=repo, home=home)
        assert result.code == 1, f"gen {args[0]}: {result.code}\n{result.out}{result.err}"
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        assert "Host key verification failed." in lines[0], lines[0]
        print(f"gen {args[0]}: {lines[0]}")
    assert snapshot(far) == before
    assert list(reloads.iterdir()) == []
    assert "Accepted publickey" not in sshd.log.read_text()
