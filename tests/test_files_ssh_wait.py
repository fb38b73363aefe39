"""The files provider over ssh, against a REAL sshd in a lo-only network namespace.

Lab A's helper address (192.168.20.111) lives on the namespace's `lo`; gen runs inside the
namespace with `--files-exec helper='ssh ... root@192.168.20.111'`, the way an operator
converges a helper, and its files go under a temp root (`--files-target`). The case that
matters for a helper built from nothing: converge starts while nothing answers on the
helper's address (its VM is still booting), plans every file as new, waits, and installs
once sshd answers, taking the helper's converge lock then. A helper that never answers
fails after --ssh-wait with one line naming the host and its address.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Netns, netns

pytestmark = pytest.mark.daemons
ADDRESS = "192.168.20.111"
PORT = 2222
RELOADS = ("dns", "dhcp", "haproxy", "http", "nfs")  # lab A's helper services with a reload


@pytest.fixture
def ns() -> Iterator[Netns]:
    with netns("ssh") as space:
        space.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        yield space


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    for name in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gen-{name}",
                        "-f", str(tmp_path / name)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client.pub").read_text())
    config = tmp_path / "sshd_config"
    config.write_text(f"Port {PORT}\nListenAddress {ADDRESS}\nHostKey {tmp_path / 'host'}\n"
                      f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
                      "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                      "UsePAM no\nStrictModes no\nPidFile none\n"
                      # File secrets are read on the target, from its ~ (the same key here)
                      f"SetEnv HOME={tmp_path / 'home'}\n")
    return {"client": tmp_path / "client", "config": config}


def start_sshd(ns: Netns, config: Path) -> None:
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation dir (as Debian's unit)
    ns.popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])
    ns.wait_port(PORT)


def files_flags(tmp_path: Path, client: Path) -> list[str]:
    ssh = (f"ssh -i {client} -o BatchMode=yes -o StrictHostKeyChecking=no "
           f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 "
           f"-p {PORT} root@{ADDRESS}")
    return ["--provider", "files", "--files-target", f"helper={tmp_path / 'helper-root'}",
            "--files-exec", f"helper={ssh}", "--no-install-packages",
            *[f"--reload={s}=true" for s in RELOADS]]


def converge_argv(tmp_path: Path, client: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "generator", "converge", "env/lab",
            *files_flags(tmp_path, client), "--state-dir", str(tmp_path / "state"),
            "--auto-approve", *extra]


def gen_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    secrets = home / ".config" / "gen" / "secrets"  # the default secrets directory
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "id_rsa.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVuLXNzaC10ZXN0LWtleS1mb3ItdGhlLWhlbHBlcg gen\n")
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GEN_SECRET_PULL": '{"auths":{}}',
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}


def test_converge_waits_for_the_helper_to_answer_then_installs(
        ns: Netns, keys: dict[str, Path], debian_repo: Path, tmp_path: Path) -> None:
    repo = debian_repo  # the checkers run on this machine, at Debian's paths
    proc = ns.popen(converge_argv(tmp_path, keys["client"]), cwd=repo,
                    env=gen_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)  # converge has planned against a silent address and is waiting
    assert proc.poll() is None, proc.communicate()
    start_sshd(ns, keys["config"])
    out, err = proc.communicate(timeout=300)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "host helper does not answer over ssh yet" in text
    assert f"helper ({ADDRESS}) does not answer over ssh yet" in text
    root = tmp_path / "helper-root"
    for installed in ("etc/bind/named.conf", "etc/dhcp/dhcpd.conf", "etc/haproxy/haproxy.cfg"):
        assert (root / installed).is_file(), installed
    # The helper's converge lock was taken over ssh once it answered, and released.
    lock = root / "run/lock/gen/converge-lab.lock"
    assert lock.is_file() and b'"pid"' in lock.read_bytes()

    again = ns.run([sys.executable, "-m", "generator", "plan", "env/lab",
                    *files_flags(tmp_path, keys["client"]), "--detailed-exitcode"],
                   cwd=repo, env=gen_env(tmp_path), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_helper_that_never_answers_fails_in_one_line(
        ns: Netns, keys: dict[str, Path], debian_repo: Path, tmp_path: Path) -> None:
    repo = debian_repo  # the checkers run on this machine, at Debian's paths
    started = time.monotonic()
    done = ns.run(converge_argv(tmp_path, keys["client"], "--ssh-wait", "3"), cwd=repo,
                  env=gen_env(tmp_path), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 120
    lines = done.stderr.splitlines()
    assert lines[-1].startswith(f"helper ({ADDRESS}) did not answer over ssh within 3 s: "
                                "ssh: connect to host"), done.stderr
    assert sum("did not answer" in line for line in lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "helper-root" / "etc/bind/named.conf").exists()
