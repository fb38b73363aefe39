"""Review 14, still open after findings 1-9: a secret reference may name only what the
operator set aside for gen (a file inside the secrets directory, a GEN_SECRET_* variable),
and each secret gen places is checked for its kind before it is used.

The readers are the real ones: `read_local` on this machine, the target script through
`sh` (what the files provider runs through `ssh`/`ip netns exec`), and `gen converge` in a
subprocess. Values are dummies of the right shape; no assertion looks at a mock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clirun import gen, helper_on_debian

from generator.errors import UserError
from generator.model import SecretRef
from generator.reconcile import secrets
from generator.reconcile.secrets import (
    MAX_SECRET_BYTES,
    PASSWORD,
    checked_value,
    read_local,
    target_read_argv,
    target_read_error,
)

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForTests gen@test"
PULL_SECRET = '{"auths": {"registry.example.com": {"auth": "ZHVtbXk6ZHVtbXk="}}}'
OUTSIDE_VALUE = "TOPSECRET-outside-the-secrets-dir"


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "secrets"
    (where / "keys").mkdir(parents=True)
    (where / "keys" / "id.pub").write_text(PUBLIC_KEY + "\n")
    (where / "pull.json").write_text(PULL_SECRET + "\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "loot").write_text(OUTSIDE_VALUE + "\n")
    monkeypatch.setenv("GEN_SECRETS_DIR", str(where))
    return where


def _read_on_target(ref: SecretRef) -> bytes:
    """The files provider's read, run here as it runs on a target; its error on failure."""
    proc = subprocess.run(target_read_argv(ref), capture_output=True, check=False)
    if proc.returncode != 0:
        assert OUTSIDE_VALUE.encode() not in proc.stdout + proc.stderr
        raise target_read_error(ref, proc.returncode)
    return proc.stdout.rstrip(b"\n")


READERS = {"local": read_local, "target": _read_on_target}


@pytest.mark.parametrize("reader", READERS)
def test_a_file_in_the_secrets_directory_is_read(secrets_dir: Path, reader: str) -> None:
    ref = SecretRef("sshAuthorizedKeys[0]", "file", "keys/id.pub")
    assert READERS[reader](ref) == PUBLIC_KEY.encode()
    assert READERS[reader](SecretRef("pullSecret", "file", "pull.json")) == PULL_SECRET.encode()


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("path", ["/etc/passwd", "~/.ssh/id_rsa", "../outside/loot",
                                  "keys/../../outside/loot", "./keys/id.pub", "keys//id.pub",
                                  ".hidden", "keys/id.pub\n"])
def test_a_file_reference_outside_the_secrets_directory_is_refused(
        secrets_dir: Path, reader: str, path: str) -> None:
    with pytest.raises(UserError) as caught:
        READERS[reader](SecretRef("token", "file", path))
    (line,) = caught.value.lines()
    assert "a file secret reference must be a relative path inside the secrets directory" in line
    assert OUTSIDE_VALUE not in line


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("link", ["leaf", "directory"])
def test_a_symlink_inside_the_secrets_directory_is_not_followed(
        secrets_dir: Path, tmp_path: Path, reader: str, link: str) -> None:
    if link == "leaf":
        (secrets_dir / "loot").symlink_to(tmp_path / "outside" / "loot")
        ref = SecretRef("token", "file", "loot")
    else:
        (secrets_dir / "out").symlink_to(tmp_path / "outside")
        ref = SecretRef("token", "file", "out/loot")
    with pytest.raises(UserError) as caught:
        READERS[reader](ref)
    (line,) = caught.value.lines()
    assert "symbolic link" in line and OUTSIDE_VALUE not in line


@pytest.mark.parametrize("reader", READERS)
def test_special_and_oversized_files_are_refused(secrets_dir: Path, reader: str) -> None:
    os.mkfifo(secrets_dir / "fifo")  # a FIFO would block a plain read forever
    (secrets_dir / "huge").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (secrets_dir / "dir").mkdir()
    for name, why in (("fifo", "not a regular file"), ("dir", "not a regular file"),
                      ("huge", f"larger than {MAX_SECRET_BYTES} bytes"),
                      ("absent", "missing")):
        with pytest.raises(UserError, match=why):
            READERS[reader](SecretRef("token", "file", name))


@pytest.mark.parametrize("reader", READERS)
def test_only_gen_secret_variables_are_read(secrets_dir: Path, reader: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", OUTSIDE_VALUE)
    monkeypatch.setenv("GEN_SECRET_TOKEN", "dummy-token")
    assert READERS[reader](SecretRef("token", "env", "GEN_SECRET_TOKEN")) == b"dummy-token"
    with pytest.raises(UserError, match=r"must name a variable GEN_SECRET_\*") as caught:
        READERS[reader](SecretRef("token", "env", "AWS_SECRET_ACCESS_KEY"))
    assert OUTSIDE_VALUE not in str(caught.value)


def test_the_default_secrets_directory_is_under_the_home(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEN_SECRETS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config/gen/secrets").mkdir(parents=True)
    (tmp_path / ".config/gen/secrets/id.pub").write_text(PUBLIC_KEY)
    ref = SecretRef("sshAuthorizedKeys[0]", "file", "id.pub")
    assert read_local(ref) == _read_on_target(ref) == PUBLIC_KEY.encode()


@pytest.mark.parametrize("kind, good, bad", [
    ("pullSecret", PULL_SECRET, '{"notauths": {}} TOPSECRET'),
    ("pullSecret", PULL_SECRET, "TOPSECRET not json"),
    ("pullSecret", PULL_SECRET, '{"auths": "TOPSECRET"}'),
    ("sshAuthorizedKeys[0]", PUBLIC_KEY,
     "-----BEGIN OPENSSH PRIVATE KEY-----\nTOPSECRET\n-----END OPENSSH PRIVATE KEY-----"),
    ("password", "dummy-Passw0rd with spaces", "TOPSECRET\nsecond line"),
    ("password", "dummy-Passw0rd", "TOPSECRET\x1b[2J"),
    ("password", "dummy-Passw0rd", ""),
])
def test_each_kind_is_checked_before_use_and_never_shown(kind: str, good: str, bad: str) -> None:
    name, check_as = ("database_password", PASSWORD) if kind == "password" else (kind, None)
    ref = SecretRef(name, "env", "GEN_SECRET_X")
    assert checked_value(ref, good.encode(), check_as) == good.encode()
    with pytest.raises(UserError) as caught:
        checked_value(ref, bad.encode(), check_as)
    (line,) = caught.value.lines()
    assert line.startswith(f"secret '{name}' (environment variable GEN_SECRET_X) is not ")
    assert "TOPSECRET" not in line


def test_kinds_name_every_secret_gen_places(repo: Path) -> None:
    from generator.environment import load_environment

    env = load_environment("env/lab", repo).model
    assert secrets.kinds(env) == {"pullSecret": secrets.PULL_SECRET,
                                  "sshAuthorizedKeys[0]": secrets.SSH_KEY}


def test_converge_reads_ssh_keys_only_from_the_secrets_dir_option(repo: Path,
                                                                  tmp_path: Path) -> None:
    """`--secrets-dir` chooses the directory; a link in it to a key elsewhere is refused,
    and nothing is installed."""
    helper_on_debian(repo)  # the files provider runs this machine's checkers
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    elsewhere = tmp_path / "elsewhere.pub"
    elsewhere.write_text(PUBLIC_KEY + "\n")
    (chosen / "id_rsa.pub").symlink_to(elsewhere)
    root = tmp_path / "root"
    args = ("converge", "env/lab", "--auto-approve", "--provider", "files",
            "--files-target", f"helper={root}", "--state-dir", str(tmp_path / "state"),
            "--secrets-dir", str(chosen))
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    env.pop("GEN_SECRETS_DIR", None)
    refused = gen(*args, cwd=repo, env=env)
    assert refused.code == 1, refused.out + refused.err
    assert refused.err.strip().splitlines()[-1] == (
        "secret 'sshAuthorizedKeys[0]' is not available on the target (file id_rsa.pub leads "
        "through a symbolic link, which gen does not follow) (provide it there before "
        "converging)")
    assert not list(root.rglob("*.ign"))
    (chosen / "id_rsa.pub").unlink()
    (chosen / "id_rsa.pub").write_text(PUBLIC_KEY + "\n")
    done = gen(*args, cwd=repo, env=env)
    assert done.code == 0, done.err
    assert PUBLIC_KEY.encode() in b"".join(p.read_bytes() for p in root.rglob("*.ign"))
