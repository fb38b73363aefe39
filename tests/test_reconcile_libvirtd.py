"""`gen converge` against a REAL libvirtd with the qemu driver (a private one per module).

Lab A scaled to the machine: 7 nodes, TCG domains of 256 MiB on an isolated libvirt network,
helper and bootstrap with 16 MiB qcow2 disks, masters and workers diskless (PXE). At most
two VMs run at once here, so converge keeps only helper and bootstrap running
(`--start helper,bootstrap`); the other five are defined. The real `gen` runs as a
subprocess, the way CI runs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from reconcile_fixtures import LAB_NODES, edit_node, private_libvirtd, scale_lab, wipe_libvirt

pytestmark = pytest.mark.libvirtd
START = ("--start", "helper,bootstrap")
FOREIGN = """<domain type='qemu'><name>intruder</name><memory unit='KiB'>131072</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"""


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    with private_libvirtd() as uri:
        yield uri


@pytest.fixture
def lab(libvirtd: str, repo: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    pool = tmp_path / "pool"
    scale_lab(repo, pool)
    yield {"env": str(repo / "environments" / "lab"), "uri": libvirtd,
           "state": str(tmp_path / "state"), "pool": pool}
    wipe_libvirt(libvirtd)


def gen(lab: dict[str, object], verb: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "generator", verb, str(lab["env"]), "--uri-override",
            f"hv1={lab['uri']}", "--provider", "libvirt", *START, *args]
    if verb == "converge":
        argv += ["--state-dir", str(lab["state"]), "--auto-approve"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def virsh(lab: dict[str, object], *args: str) -> str:
    proc = subprocess.run(["virsh", "-c", str(lab["uri"]), *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def end_state(lab: dict[str, object]) -> dict[str, object]:
    """What converge is responsible for, read back through virsh."""
    running = set(virsh(lab, "list", "--name").split())
    defined = set(virsh(lab, "list", "--all", "--name").split()) - {"intruder"}  # foreign
    memory = {name: ET.fromstring(virsh(lab, "dumpxml", "--inactive", name)).findtext(
        "currentMemory") for name in sorted(defined)}
    return {"running": running, "defined": defined, "memory": memory,
            "networks": virsh(lab, "net-list", "--name").split(),
            "volumes": sorted(p.name for p in Path(str(lab["pool"])).iterdir())}


EXPECTED = {"running": {"helper", "bootstrap"}, "defined": set(LAB_NODES),
            "networks": ["lan"], "volumes": ["bootstrap-root.qcow2", "helper-root.qcow2"]}


def assert_converged(lab: dict[str, object]) -> dict[str, object]:
    state = end_state(lab)
    assert {k: state[k] for k in EXPECTED} == EXPECTED
    assert set(state["memory"].values()) == {str(256 * 1024)}  # type: ignore[union-attr]
    plan = gen(lab, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout
    return state


def test_converge_lab_then_replan_is_empty(lab: dict[str, object]) -> None:
    plan = gen(lab, "plan", "--detailed-exitcode")
    assert plan.returncode == 2
    assert "Plan: 11 to add, 0 to change, 0 to replace, 0 to destroy." in plan.stdout
    result = gen(lab, "converge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[11/11] + libvirt domain hv1/worker1 done in" in result.stderr
    assert_converged(lab)
    # Real qemu processes back the running domains (TCG, 256 MiB, PXE looping on iPXE).
    assert virsh(lab, "domstate", "bootstrap").strip() == "running"
    assert virsh(lab, "domid", "bootstrap").strip().isdigit()
    assert virsh(lab, "domstate", "worker0").strip() == "shut off"


def test_drift_is_reported_and_repaired(lab: dict[str, object], tmp_path: Path) -> None:
    assert gen(lab, "converge").returncode == 0
    # Behind gen's back: memory, a foreign domain, an owned domain undefined, a network gone.
    # (A live `virsh setmem` on a guest without a balloon driver changes nothing libvirt
    # reports, so the memory drift is made on the definition with --config.)
    virsh(lab, "setmem", "master0", "200M", "--config")
    (tmp_path / "foreign.xml").write_text(FOREIGN)
    virsh(lab, "define", str(tmp_path / "foreign.xml"))
    foreign = virsh(lab, "dumpxml", "intruder")
    virsh(lab, "undefine", "worker1")
    virsh(lab, "net-destroy", "lan")
    virsh(lab, "net-undefine", "lan")

    plan = gen(lab, "plan", "--format", "json", "--prune")
    assert plan.returncode == 0, plan.stderr
    actions = {(a["op"], a["kind"], a["name"]): a for a in json.loads(plan.stdout)["actions"]}
    assert set(actions) == {("create", "network", "hv1/lan"),
                            ("create", "domain", "hv1/worker1"),
                            ("update", "domain", "hv1/master0")}
    assert actions[("update", "domain", "hv1/master0")]["changes"] == [
        {"op": "change", "path": "currentMemory", "old": "204800 KiB", "new": "262144 KiB"}]
    assert "intruder" not in plan.stdout

    result = gen(lab, "converge", "--prune", "--allow-destroy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_converged(lab)
    assert virsh(lab, "dumpxml", "intruder") == foreign  # never touched
    assert virsh(lab, "net-info", "lan").count("Active:         yes") == 1


def test_sigkill_midway_resumes_to_the_same_end_state(lab: dict[str, object]) -> None:
    argv = [sys.executable, "-m", "generator", "converge", str(lab["env"]), "--uri-override",
            f"hv1={lab['uri']}", "--provider", "libvirt", *START, "--state-dir", str(lab["state"]),
            "--auto-approve"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # type: ignore[union-attr]
            seen.append(line)
            # mid-way: infra, the helper (service hosts' wave) and bootstrap's disk done
            if "domain hv1/bootstrap ..." in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    state = Path(str(lab["state"])) / "lab"
    assert (state / "converge.lock").exists()  # left behind by the killed run
    records = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()
               if line.strip()]
    assert records[0]["event"] == "start" and records[-1]["event"] != "complete"
    partial = end_state(lab)
    assert partial["defined"] != set(LAB_NODES)  # really interrupted

    started = time.monotonic()
    result = gen(lab, "converge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "taking over an abandoned converge lock (pid" in result.stderr
    assert re.search(r"resuming an interrupted converge: [45] of 11 action\(s\) were done",
                     result.stderr), result.stderr
    assert time.monotonic() - started < 60
    resumed = assert_converged(lab)

    wipe_libvirt(str(lab["uri"]))  # the same converge from scratch ends the same way
    for path in Path(str(lab["pool"])).iterdir():
        path.unlink()
    assert gen(lab, "converge").returncode == 0
    fresh = assert_converged(lab)
    assert {k: v for k, v in fresh.items()} == resumed


def test_sigkill_inside_a_wave_keeps_every_journal_record_written(
        lab: dict[str, object]) -> None:
    """The journal is fsynced once per wave, not per record: a converge SIGKILLed inside the
    domain wave (bootstrap defined and started, master0 in flight) still leaves a record for
    every action it reported done and the one it began, and the next converge resumes."""
    argv = [sys.executable, "-m", "generator", "converge", str(lab["env"]), "--uri-override",
            f"hv1={lab['uri']}", "--provider", "libvirt", *START, "--state-dir", str(lab["state"]),
            "--auto-approve"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported: list[str] = []
    try:
        seen = []
        for line in proc.stderr:  # type: ignore[union-attr]
            seen.append(line)
            done = re.match(r"\[\d+/\d+\] (\S+) (\S+) (\S+) (\S+) done in", line)
            if done:
                reported.append(done.group(0))
            if "domain hv1/master0 ..." in line:  # the wave's second domain is in flight
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    records = [json.loads(line) for line in
               (Path(str(lab["state"])) / "lab" / "journal.jsonl").read_text().splitlines()]
    done_keys = [r["key"] for r in records if r["event"] == "done"]
    assert len(done_keys) == len(reported) >= 2, (records, reported)
    assert "libvirt:domain:hv1/bootstrap:create" in done_keys
    begun = [r["key"] for r in records if r["event"] == "begin"]
    assert begun[-1] == "libvirt:domain:hv1/master0:create" not in done_keys

    result = gen(lab, "converge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"resuming an interrupted converge: {len(done_keys)} of 11 action(s) were done; "
            "libvirt:domain:hv1/master0:create was in flight") in result.stderr, result.stderr
    assert_converged(lab)


def test_cloud_init_seed_isos_are_reproducible_and_uploaded(
        libvirtd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab B's seeds: built with the secret filled in, uploaded as `<node>-seed.iso`."""
    from generator.pipeline import render_environment
    from generator.reconcile import seed
    from generator.reconcile.converge import Journal, apply_plan
    from generator.reconcile.plan import Desired, Settings, build_plan

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config/gen/secrets").mkdir(parents=True)
    (tmp_path / ".config/gen/secrets" / "id_rsa.pub").write_text("ssh-ed25519 AAAAtest gen@test\n")
    rendered = render_environment("env/k8s-lab", cwd=Path(__file__).parent.parent)
    tree = {p: c for p, c in rendered.tree.items()
            if "/cloud-init/" in p or p.startswith("hypervisors/hv1/pools/")}
    seeds = seed.seeds(tree, "hv1")
    assert len(seeds) >= 4
    first = seeds[0]
    filled = [(n, seed.fill_secrets(c, rendered.loaded.model.cluster.ssh_keys))
              for n, c in first.files]
    assert b"ssh-ed25519 AAAAtest gen@test" in dict(filled)["user-data"]
    assert b"@@gen-secret" not in dict(filled)["user-data"]
    iso = seed.build_iso(filled)
    assert seed.build_iso(filled) == iso  # byte-reproducible
    (tmp_path / "seed.iso").write_bytes(iso)
    info = subprocess.run(["isoinfo", "-d", "-i", str(tmp_path / "seed.iso")],
                          capture_output=True, text=True, check=True).stdout
    assert "Volume id: cidata" in info and "Rock Ridge" in info
    extracted = subprocess.run(["isoinfo", "-R", "-x", "/user-data", "-i",
                                str(tmp_path / "seed.iso")], capture_output=True, check=True)
    assert extracted.stdout == dict(filled)["user-data"]

    try:
        desired = Desired(rendered.loaded.model, tree, "t", False)
        settings = Settings(uri_overrides=(("hv1", libvirtd),), providers=("libvirt",))
        plan = build_plan(desired, settings)
        created = sorted(a.name for a in plan.actions if a.kind == "volume")
        assert created == sorted(f"hv1/{s.volume}" for s in seeds)
        apply_plan(plan, Journal(tmp_path / "state", "k8s-lab"))
        assert build_plan(desired, settings).empty
        out = tmp_path / "downloaded.iso"
        subprocess.run(["virsh", "-c", libvirtd, "vol-download", "--pool", first.pool,
                        first.volume, str(out)], check=True, capture_output=True)
        assert out.read_bytes() == iso
    finally:
        wipe_libvirt(libvirtd)


def test_lowering_memory_of_a_guest_without_balloon_driver_converges(
        lab: dict[str, object]) -> None:
    """The iPXE-looping guest never balloons down: gen asks once, then says next boot."""
    env_yaml = Path(str(lab["env"])) / "env.yaml"
    edit_node(env_yaml, "bootstrap", "memory: 256MiB", "memory: 320MiB")
    assert gen(lab, "converge").returncode == 0
    edit_node(env_yaml, "bootstrap", "memory: 320MiB", "memory: 256MiB")
    first = gen(lab, "converge", "--format", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    changes = {c["path"] for a in json.loads(first.stdout)["plan"]["actions"]
               for c in a["changes"]}
    assert changes == {"memory", "currentMemory", "currentMemory (live)"}
    again = gen(lab, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    assert "hv1/bootstrap: the guest did not follow the balloon request to 262144 KiB" in \
        again.stdout + again.stderr
    inactive = ET.fromstring(virsh(lab, "dumpxml", "--inactive", "bootstrap"))
    assert inactive.findtext("currentMemory") == str(256 * 1024)


def test_uefi_firmware_is_chosen_by_libvirt_and_boots(lab: dict[str, object]) -> None:
    """`<os firmware='efi'>` names no OVMF file: the real libvirtd picks one from its
    firmware descriptors, the domain starts, and the expanded XML is no change on re-plan."""
    env_yaml = Path(str(lab["env"])) / "env.yaml"
    edit_node(env_yaml, "bootstrap", "vcpu: 1,", "vcpu: 1, firmware: uefi,")
    result = gen(lab, "converge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert virsh(lab, "domstate", "bootstrap").strip() == "running"
    live = ET.fromstring(virsh(lab, "dumpxml", "bootstrap"))
    loader = live.find("os/loader")
    assert loader is not None and loader.get("type") == "pflash", ET.tostring(live.find("os"))
    assert Path((loader.text or "").strip()).is_file()  # a firmware file of this host
    plan = gen(lab, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
