"""Mistakes that used to be silently ignored, or paths and names that let an environment
reach outside its repo: each case here failed (did the wrong thing quietly) before.

Everything runs the real CLI on a scratch copy of the repo.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from clirun import gen, helper_on_debian

from generator.loader import ENV_FILE

SERVICES = ("dhcp", "dns", "haproxy", "http", "nfs", "tftp")


def plan(repo: Path, *args: str):  # type: ignore[no-untyped-def]
    return gen("plan", "env/lab", *args, cwd=repo)


# --- names the environment does not have: exit 64 with the known names ------------------

@pytest.mark.parametrize(("flags", "message"), [
    (["--uri-override", "hv9=qemu:///session"],
     "--uri-override: environment lab has no hypervisor named 'hv9' (known hypervisors: hv1)"),
    (["--provider", "files", "--files-target", "helpr=/tmp/x"],
     "--files-target: environment lab has no host named 'helpr' (known hosts: helper)"),
    (["--provider", "files", "--files-exec", "helpr=ssh root@h"],
     "--files-exec: environment lab has no host named 'helpr' (known hosts: helper)"),
    (["--provider", "files", "--reload", "dsn=true"],
     "--reload: environment lab has no service named 'dsn' (known services: "
     + ", ".join(SERVICES) + ")"),
    (["--start", "helper,wrker"],
     "--start: environment lab has no node role named 'wrker' (known node roles: bootstrap, "
     "helper, master, worker)"),
    (["--provider", "files", "--files-exec", "helper="],
     "--files-exec helper=: an empty prefix is ambiguous (write --files-exec helper=local "
     "to run helper's commands on this machine)"),
    (["--provider", "files", "--files-target", "helper="],
     "--files-target helper=: an empty root is ambiguous (write --files-target helper=/ for "
     "helper's own root, or a folder)"),
    (["--provider", "files", "--files-exec", "helper=Local"],
     "--files-exec helper='Local': command 'Local' not found on this machine (write "
     "helper=local to run helper's commands here, or a command such as 'ssh root@HOST')"),
    (["--provider", "files", "--files-exec", "helper=ssh 'root@h"],
     "--files-exec helper=\"ssh 'root@h\": not a command line (quote it like a shell would, "
     "e.g. 'ssh root@HOST')"),
])
def test_unknown_names_are_usage_errors(repo: Path, flags: list[str], message: str) -> None:
    result = plan(repo, *flags)
    assert (result.code, result.err.strip(), result.out) == (64, message, "")


def test_converge_refuses_unknown_names_before_touching_anything(repo: Path,
                                                                 tmp_path: Path) -> None:
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", f"helpr={tmp_path / 'root'}", "--state-dir",
                 str(tmp_path / "state"), cwd=repo)
    assert result.code == 64 and "no host named 'helpr'" in result.err
    assert not (tmp_path / "root").exists()


# --- a host plan could not look at is never "no changes" -------------------------------

def test_skipped_host_is_in_the_summary_and_never_no_changes(repo: Path) -> None:
    result = plan(repo, "--provider", "files")
    assert result.code == 0, result.err
    assert "No changes" not in result.out
    assert result.out.rstrip().endswith(
        "Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy. Not looked at: files: helper.")


def test_skipped_host_is_in_the_json(repo: Path) -> None:
    result = plan(repo, "--provider", "files", "--format", "json")
    data = json.loads(result.out)
    assert (data["complete"], data["skipped"]) == (False, ["files: helper"])


def test_skipped_host_makes_detailed_exitcode_nonzero(repo: Path) -> None:
    assert plan(repo, "--provider", "files", "--detailed-exitcode").code == 2


def test_plan_that_looked_everywhere_is_complete(repo: Path, tmp_path: Path) -> None:
    # the helper as a blank disk: its base image would need the lock and the store (both
    # tested in test_reconcile_images.py), not what completeness is about
    env_file = repo / "environments/lab" / ENV_FILE
    env_file.write_text(env_file.read_text().replace(" image: centos-stream-9-genericcloud,", ""))
    state = tmp_path / "empty-host.xml"
    state.write_text("<node/>\n")  # libvirt's test driver: a host with nothing defined
    result = plan(repo, "--provider", "libvirt", "--uri-override", f"hv1=test://{state}",
                  "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["complete"], data["skipped"]) == (True, [])


# --- reloads never run here unless asked for ---------------------------------------------

def _converge_files(repo: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    (home / ".config/gen/secrets").mkdir(parents=True, exist_ok=True)
    (home / ".config/gen/secrets" / "id_rsa.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIT t\n")
    marker = tmp_path / "reloaded"
    helper_on_debian(repo)  # the checkers run here, at Debian's paths
    reloads = [f"--reload={s}=true" for s in SERVICES if s not in ("dns", "tftp")]
    env = {**os.environ, "HOME": str(home)}
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", f"helper={tmp_path / 'root'}", *reloads,
                 f"--reload=dns=touch {marker}", "--state-dir", str(tmp_path / "state"),
                 *extra, cwd=repo, env=env)
    return result, marker


def test_files_target_alone_never_reloads_on_this_machine(repo: Path, tmp_path: Path) -> None:
    result, marker = _converge_files(repo, tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "root" / "etc/dhcp/dhcpd.conf").is_file()  # files written
    assert not marker.exists()  # but no reload ran here
    assert "no service is reloaded (pass --files-exec helper=local" in result.out


def test_files_exec_local_runs_the_reloads_here(repo: Path, tmp_path: Path) -> None:
    result, marker = _converge_files(repo, tmp_path, "--files-exec", "helper=local",
                                     "--no-install-packages")
    assert result.code == 0, result.err
    assert marker.exists()


# --- names and paths stay inside the repo ------------------------------------------------

def test_new_refuses_a_name_that_is_a_path(repo: Path) -> None:
    result = gen("new", "../../../x", "--blueprint", "openshift-upi", "--no-input", cwd=repo)
    assert result.code == 1
    assert result.err.strip() == (
        "environment '../../../x' is not a valid name (use lowercase letters, digits and "
        "inner '-', at most 63 characters (like lab-2))")
    assert not (repo / ".." / ".." / "x").exists()
    assert sorted(p.name for p in (repo / "environments").iterdir()) == ["k8s-lab", "lab"]


@pytest.mark.parametrize("name", ["a/b", "x\ny", "lab-", "Lab", "a..b", "."])
def test_new_refuses_names_that_are_not_labels(repo: Path, name: str) -> None:
    result = gen("new", name, "--blueprint", "kubeadm", "--no-input", cwd=repo)
    assert result.code == 1 and "is not a valid name" in result.err


INJECTION = "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}"


@pytest.mark.parametrize("key", ["description", "cluster_name", "bridge"])
def test_answers_are_never_run_as_templates(repo: Path, tmp_path: Path, key: str) -> None:
    marker = tmp_path / f"pwned-{key}"
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({key: INJECTION % marker}))
    result = gen("new", "site", "--blueprint", "openshift-upi", "--answers", str(answers),
                 cwd=repo)
    assert not marker.exists()
    assert result.code == 1
    assert result.err.startswith(f"answer {key}: ") and "cycler" in result.err
    assert len(result.err.splitlines()) == 1
    assert not (repo / "environments" / "site").exists()


@pytest.mark.parametrize(("answers", "message"), [
    ({"_extensions": ["jinja2.ext.do"]}, "answer _extensions: not a question of this template"),
    ({"description": "x\nnodes: []"}, "answer description: 'x\\nnodes: []' contains a control "
                                      "character (write it on one line)"),
    ({"subnet": "10.0.0.0/24 # x"}, "answer subnet: '10.0.0.0/24 # x' is not an IPv4 CIDR"),
    ({"hypervisor_uri": "qemu+ext:///system?command=/tmp/x"},
     "answer hypervisor_uri: 'qemu+ext:///system?command=/tmp/x' is not a plain libvirt "
     "qemu URI"),
    ({"masters": "3; rm"}, "answer masters: '3; rm' is not allowed here"),
])
def test_answers_are_checked_by_the_schema_first(repo: Path, tmp_path: Path,
                                                 answers: dict, message: str) -> None:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    result = gen("new", "site", "--blueprint", "openshift-upi", "--answers", str(path),
                 cwd=repo)
    assert result.code == 1
    assert result.err.startswith(message), result.err
    assert not (repo / "environments" / "site").exists()


def test_symlinked_environment_leaving_the_repo_is_refused(
        repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other-repo")
    shutil.copytree(repo / "environments", other / "environments")
    (repo / "environments" / "evil").symlink_to(other / "environments" / "lab")
    for ref, shown in (("env/evil", "environments/evil"),
                       (str(repo / "environments" / "evil"), str(repo / "environments/evil"))):
        result = gen("render", ref, cwd=repo)
        assert result.code == 1
        assert result.err.startswith(f"{shown} leads outside the repository through a "
                                     f"symlink (to {other / 'environments' / 'lab'})")
    assert not (repo / "rendered").exists() and not (other / "rendered").exists()


def test_symlinked_blueprint_leaving_the_repo_is_refused(
        repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "openshift-upi"
    shutil.move(repo / "blueprints" / "openshift-upi", elsewhere)
    (repo / "blueprints" / "openshift-upi").symlink_to(elsewhere)
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == 1
    assert result.err.startswith("blueprints/openshift-upi leads outside the repository")


def test_symlink_inside_the_repo_is_fine(repo: Path) -> None:
    shutil.move(repo / "environments" / "lab", repo / "lab-real")
    (repo / "environments" / "lab").symlink_to(repo / "lab-real")
    assert gen("validate", "env/lab", cwd=repo).code == 0


@pytest.mark.parametrize("path", ["../../../../etc/x.json", "/etc/x.json", "a/../../x.json"])
def test_stream_file_outside_its_folder_is_refused_at_validate(repo: Path, path: str) -> None:
    env_file = repo / "environments" / "lab" / ENV_FILE
    text = env_file.read_text()
    old = "stream: {file: rhcos-4.16.json, artifact: kernel}"
    env_file.write_text(text.replace(old, f"stream: {{file: '{path}', artifact: kernel}}"))
    line = text[: text.index(old)].count("\n") + 1
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == 1
    first = result.err.splitlines()[0]
    assert first.startswith(f"environments/lab/env.yaml:{line}:")
    assert "at artifacts.os.rhcos-live-kernel.stream.file:" in first


def test_stream_file_symlinked_outside_is_refused_at_lock(repo: Path, tmp_path: Path) -> None:
    stream = repo / "environments" / "lab" / "rhcos-4.16.json"
    outside = tmp_path / "elsewhere.json"
    shutil.move(stream, outside)
    stream.symlink_to(outside)
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store")})
    assert result.code == 1
    assert result.err.startswith("stream metadata 'rhcos-4.16.json' leads outside lab/ "
                                 "through a symlink")
    assert not (repo / "lock" / "lab.lock").exists()


def test_converge_refuses_an_empty_files_target_before_touching_anything(
        repo: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in repo.iterdir())
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", "helper=", "--state-dir", str(tmp_path / "state"),
                 cwd=repo)
    assert result.code == 64, (result.out, result.err)
    assert "--files-target helper=: an empty root is ambiguous" in result.err
    assert sorted(p.name for p in repo.iterdir()) == before
    assert not (tmp_path / "state").exists()
