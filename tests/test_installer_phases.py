"""The installer provider's openshift-upi phases, through the real `gen converge` CLI.

openshift-install cannot be installed here: tests/standins/openshift-install stands in for
it with the real command line, the files each subcommand reads, writes and deletes in its
asset dir, its exit codes and log lines (its docstring lists them). The tests pin it by the
sha256 of the file as shipped, exactly as a real binary is pinned.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import Result, gen, helper_on_debian
from test_csr_approval import client, conditions, route_approval  # noqa: F401
from test_reconcile_kubernetes import Kube, kube  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standins" / "openshift-install"
PULL_SECRET = '{"auths":{"registry.example":{"auth":"cHVsbC1zZWNyZXQtdmFsdWUtMTIzNDU="}}}'
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGenInstallerPhaseTestKey gen@test"
SEQUENCE = ["create manifests", "create ignition-configs", "wait-for bootstrap-complete",
            "wait-for install-complete"]


def pin(path: Path = STANDIN) -> str:
    return f"{path}={hashlib.sha256(STANDIN.read_bytes()).hexdigest()}"


class Site:
    """A scratch repo, a HOME whose secrets directory holds the SSH key lab A names, and
    the state directories."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo, self.tmp = repo, tmp
        self.home = tmp / "home"
        secrets = self.home / ".config" / "gen" / "secrets"  # the default secrets directory
        secrets.mkdir(parents=True)
        (secrets / "id_rsa.pub").write_text(SSH_KEY + "\n")
        self.state, self.installer = tmp / "state", tmp / "installer"
        self.calls = tmp / "calls"
        self.assets = self.installer / "lab" / "assets"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "GEN_SECRET_PULL": PULL_SECRET,
                "STANDIN_CALLS": str(self.calls), **extra}

    def argv(self, *extra: str, tool: str | None = None) -> list[str]:
        return ["converge", "env/lab", "--provider", "installer", "--auto-approve",
                "--state-dir", str(self.state), "--installer-state-dir", str(self.installer),
                "--openshift-install", tool or pin(), *extra]

    def converge(self, *extra: str, tool: str | None = None, **env: str) -> Result:
        return gen(*self.argv(*extra, tool=tool), cwd=self.repo, env=self.env(**env))

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def done(self) -> set[str]:
        return set(json.loads((self.installer / "lab" / "phases.json").read_text()))


@pytest.fixture
def site(repo: Path, tmp_path: Path) -> Site:
    return Site(repo, tmp_path)


def test_clean_converge_runs_every_phase_in_order_and_a_second_does_nothing(
        site: Site) -> None:
    first = site.converge()
    assert first.code == 0, first.out + first.err
    assert site.called() == SEQUENCE
    assert site.done() == {"installer-assets", "bootstrap-complete", "install-complete"}
    assert {p.name for p in site.assets.iterdir()} >= {
        "bootstrap.ign", "master.ign", "worker.ign", "metadata.json", "auth",
        ".openshift_install.log"}
    assert not (site.assets / "install-config.yaml").exists()  # the installer consumed it
    assert (site.installer / "lab").stat().st_mode & 0o777 == 0o700
    assert "It is now safe to remove the bootstrap resources" in first.err
    assert "gen node remove env/lab bootstrap" in first.err
    second = site.converge("--detailed-exitcode")
    assert second.code == 0, second.out + second.err
    assert site.called() == SEQUENCE
    assert "No changes. Live state matches the rendered tree." in second.out


def test_rendered_inputs_and_secrets_reach_the_installer_but_no_output(site: Site) -> None:
    result = site.converge()
    assert result.code == 0, result.err
    state = json.loads((site.assets / ".openshift_install_state.json").read_text())
    config = state["installConfig"]
    assert config["pullSecretSha256"] == hashlib.sha256(PULL_SECRET.encode()).hexdigest()
    assert config["sshKey"] == SSH_KEY and config["networkType"] == "OVNKubernetes"
    bootstrap = json.loads((site.assets / "bootstrap.ign").read_text())
    source = bootstrap["storage"]["files"][0]["contents"]["source"]
    seen = json.loads(base64.b64decode(source.split(",", 1)[1]))
    # gen's scheduler manifest replaced the installer's (masters stay unschedulable)
    assert seen["mastersSchedulable"] is False
    password = (site.assets / "auth" / "kubeadmin-password").read_text()
    for secret in (PULL_SECRET, "cHVsbC1zZWNyZXQtdmFsdWUtMTIzNDU=", password):
        assert secret not in result.out + result.err
    plan = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
               str(site.installer), "--openshift-install", pin(), cwd=site.repo,
               env=site.env())
    assert plan.code == 0 and "No changes." in plan.out, plan.out + plan.err


def test_plan_lists_the_phases_only_with_a_pinned_installer(site: Site) -> None:
    without = gen("plan", "env/lab", "--provider", "installer", cwd=site.repo, env=site.env())
    assert without.code == 0 and "No changes." in without.out, without.err
    planned = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
                  str(site.installer), "--openshift-install", pin(), cwd=site.repo,
                  env=site.env())
    assert planned.code == 0, planned.err
    for phase in ("installer-assets", "bootstrap-complete", "install-complete"):
        assert f"+ installer phase lab/{phase}" in planned.out
    assert site.called() == [] and not site.installer.exists()  # a plan changes nothing


def test_a_binary_that_does_not_match_its_pin_is_never_run(site: Site) -> None:
    tampered = site.tmp / "openshift-install"
    tampered.write_bytes(STANDIN.read_bytes() + b"\n# one more line\n")
    tampered.chmod(0o755)
    result = site.converge(tool=pin(tampered))
    assert result.code == 1
    assert f"installer: {tampered} has sha256 " in result.err
    assert "not the pinned" in result.err and "it was not run" in result.err
    assert site.called() == []


def test_a_failed_gate_names_phase_exit_and_log_then_resumes(site: Site) -> None:
    failed = site.converge(STANDIN_FAIL="wait-for bootstrap-complete")
    assert failed.code == 1
    log = site.assets / ".openshift_install.log"
    assert ("installer phase bootstrap-complete failed: openshift-install wait-for "
            "bootstrap-complete exited 5 (Bootstrap failed to complete) "
            f"(log: {log})") in failed.err
    assert "Bootstrap failed to complete" in log.read_text()
    ignition = (site.assets / "bootstrap.ign").read_bytes()
    again = site.converge()
    assert again.code == 0, again.err
    assert site.called() == [*SEQUENCE[:3], *SEQUENCE[2:]]  # the assets were not remade
    assert (site.assets / "bootstrap.ign").read_bytes() == ignition


def test_a_malformed_pull_secret_is_refused_before_the_installer_runs(site: Site) -> None:
    # gen checks the secret's kind (a JSON object with "auths") itself, so the installer's
    # own exit 3 for it is never reached, and the value is never printed.
    bad = "not-json-" + "x" * 20
    result = gen(*site.argv(), cwd=site.repo, env={**site.env(), "GEN_SECRET_PULL": bad})
    assert result.code == 1
    assert "secret 'pullSecret' (environment variable GEN_SECRET_PULL) is not" in result.err
    assert bad not in result.err + result.out
    assert site.called() == []
    assert not site.assets.exists()


@pytest.mark.parametrize("hang", SEQUENCE)
def test_sigkill_in_any_phase_resumes_to_the_same_end(site: Site, hang: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "generator", *site.argv()], cwd=site.repo,
                            env=site.env(STANDIN_HANG=hang), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = Path(f"{site.calls}.hang")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "converge ended before the phase it was to be killed in"
        assert time.monotonic() < deadline, "the stand-in never reached " + hang
        time.sleep(0.05)
    before = (site.assets / "bootstrap.ign").read_bytes() if hang.startswith("wait-for") \
        else None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    marker.unlink()
    resumed = site.converge()
    assert resumed.code == 0, resumed.out + resumed.err
    assert site.done() == {"installer-assets", "bootstrap-complete", "install-complete"}
    assert not (site.installer / "lab" / "assets.partial").exists()
    calls = site.called()
    # a killed assets phase starts again from its first step; a killed gate waits again
    again = SEQUENCE if hang.startswith("create") else SEQUENCE[SEQUENCE.index(hang):]
    assert calls[-len(again):] == again and calls[:-len(again)] == \
        SEQUENCE[:SEQUENCE.index(hang) + 1]
    if before is not None:  # killed at a gate: the cluster keeps the assets it booted with
        assert (site.assets / "bootstrap.ign").read_bytes() == before
    settled = len(calls)
    assert site.converge().code == 0 and len(site.called()) == settled


def test_one_converge_publishes_the_role_configs_it_created(site: Site) -> None:
    """Installer and files providers together: the role configs do not exist when the plan
    is made; converge re-plans after the assets phase, and the same run publishes them
    under the helper's HTTP root (no --ignition-dir), then a second converge does nothing."""
    from test_files_provider import NO_RELOAD

    helper_on_debian(site.repo)  # the files provider runs this machine's checkers
    root = site.tmp / "helper-root"
    files = ["--provider", "files", "--files-target", f"helper={root}", "--files-exec",
             "helper=local", "--no-install-packages",
             *[f"--reload={svc}=true" for svc in NO_RELOAD if svc not in ("kea", "dnsmasq")]]
    first = site.converge(*files)
    assert first.code == 0, first.out + first.err
    assert "is not published" in first.out  # the first plan could not see them yet
    served = root / "var/lib/gen/http/htdocs/ignition/roles"
    for role in ("bootstrap", "master", "worker"):
        assert (served / f"{role}.ign").read_bytes() == \
            (site.assets / f"{role}.ign").read_bytes(), role
    second = site.converge("--detailed-exitcode", *files)
    assert second.code == 0, second.out + second.err
    assert site.called() == SEQUENCE


def test_the_install_gate_approves_the_workers_csrs_while_it_waits(
        site: Site, kube: Kube) -> None:  # noqa: F811
    """The installer's kubeconfig points at the kmock API server holding a worker's real CSR
    and a stranger's; install-complete succeeds only once the worker's is approved, which
    gen does while the gate waits. The stranger's stays pending."""
    client(kube, "csr-worker0", "worker0.ocp4.example.com")
    client(kube, "csr-stranger", "intruder.ocp4.example.com")
    result = site.converge(STANDIN_KUBECONFIG=str(kube.kubeconfig),
                           STANDIN_NEEDS_CSR="csr-worker0")
    assert result.code == 0, result.out + result.err
    assert ("installer: approved CertificateSigningRequest csr-worker0 (kubelet client "
            "certificate of worker worker0)") in result.err
    assert "CertificateSigningRequest csr-stranger left pending" in result.err
    assert [c["type"] for c in conditions(kube, "csr-worker0")] == ["Approved"]
    assert conditions(kube, "csr-stranger") == []


def test_plan_warns_when_the_bootstrap_certificates_are_about_to_expire(site: Site) -> None:
    assert site.converge(STANDIN_FAIL="wait-for bootstrap-complete").code == 1
    phases = site.installer / "lab" / "phases.json"
    done = json.loads(phases.read_text())
    fresh = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
                str(site.installer), "--openshift-install", pin(), cwd=site.repo,
                env=site.env())
    assert fresh.code == 0 and "24-hour certificate window" not in fresh.out, fresh.out
    phases.write_text(json.dumps({**done, "installer-assets": time.time() - 25 * 3600}))
    stale = gen("plan", "env/lab", "--provider", "installer", "--installer-state-dir",
                str(site.installer), "--openshift-install", pin(), cwd=site.repo,
                env=site.env())
    assert stale.code == 0, stale.err
    assert ("note: installer: warning: the bootstrap Ignition is older than the installer's "
            "24-hour certificate window") in stale.out
    assert "+ installer phase lab/installer-assets" not in stale.out  # never regenerated


def test_assets_of_a_bootstrapped_cluster_are_never_regenerated(site: Site) -> None:
    assert site.converge().code == 0
    shutil.rmtree(site.assets)
    result = site.converge()
    assert result.code == 1
    assert (f"installer: the assets of lab are gone from {site.assets}, but its cluster has "
            "bootstrapped") in result.err
    assert site.called() == SEQUENCE and not site.assets.exists()
