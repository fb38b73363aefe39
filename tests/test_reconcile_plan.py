"""`gen plan` / `gen converge` logic against libvirt's test driver (one state file per test).

The test driver keeps its state inside the connection, so these tests run the real CLI
entry point in-process (`generator.cli.main`) and the provider's per-process connection
cache carries the state from one command to the next, like a daemon would.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from reconcile_fixtures import LAB_NODES, edit_node, scale_lab, state_file

from generator.cli import main
from generator.reconcile import libvirt as provider
from generator.reconcile.base import WAVE_DOMAINS, WAVE_HOSTS, WAVE_INFRA, WAVE_VOLUMES, Action
from generator.reconcile.converge import Journal, apply_plan, converge_lock
from generator.reconcile.plan import Desired, Settings, build_plan, load_desired, safety
from generator.reconcile.providers import PROVIDERS


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Lab:
    repo: Path
    env_yaml: Path
    uri: str
    state: Path

    @property
    def env(self) -> str:
        return str(self.repo / "environments" / "lab")

    def gen(self, verb: str, *args: str, input: str | None = None) -> Result:
        extra = ["--state-dir", str(self.state)] if verb == "converge" else []
        # libvirt only: the helper's files (no target here) would make the plan incomplete
        return run(verb, self.env, "--uri-override", f"hv1={self.uri}", "--provider",
                   "libvirt", *extra, *args, input=input)

    def plan_json(self, *args: str) -> dict:
        result = self.gen("plan", "--format", "json", *args)
        assert result.code in (0, 2, 3), result.err
        return json.loads(result.out)

    def conn(self):  # type: ignore[no-untyped-def]
        return provider.open_connection(self.uri)


def run(*argv: str, input: str | None = None) -> Result:
    runner = CliRunner()
    code = 0
    with runner.isolation(input=input) as (out, err, _):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture(autouse=True)
def fresh_connections():
    provider.forget_connections()
    yield
    provider.forget_connections()


@pytest.fixture
def lab(repo: Path, tmp_path: Path) -> Lab:
    env_yaml = scale_lab(repo, tmp_path / "pool")
    return Lab(repo, env_yaml, state_file(tmp_path / "libvirt"), tmp_path / "state")


def names(plan: dict, op: str | None = None, kind: str | None = None) -> list[str]:
    return [a["name"] for a in plan["actions"]
            if (op is None or a["op"] == op) and (kind is None or a["kind"] == kind)]


def converged(lab: Lab, *args: str) -> Result:
    result = lab.gen("converge", "--auto-approve", *args)
    assert result.code == 0, result.out + result.err
    return result


# -- plan on an empty hypervisor ----------------------------------------------------------


def test_plan_on_empty_host_creates_everything_in_wave_order(lab: Lab) -> None:
    plan = lab.plan_json()
    assert plan["summary"] == {"add": 11, "change": 0, "replace": 0, "destroy": 0}
    assert {a["op"] for a in plan["actions"]} == {"create"}
    waves = [a["wave"] for a in plan["actions"]]
    assert waves == sorted(waves) and waves[0] == WAVE_INFRA and waves[-1] == WAVE_DOMAINS
    assert names(plan, kind="network") == ["hv1/lan"]
    assert names(plan, kind="pool") == ["hv1/default"]
    assert sorted(names(plan, kind="volume")) == ["hv1/bootstrap-root.qcow2",
                                                  "hv1/helper-root.qcow2"]
    # The helper runs the boot services: its disk and domain come up in their own wave,
    # before the services are installed and before every other VM.
    assert {a["name"]: a["wave"] for a in plan["actions"] if a["kind"] == "volume"} == {
        "hv1/helper-root.qcow2": WAVE_HOSTS, "hv1/bootstrap-root.qcow2": WAVE_VOLUMES}
    assert {a["wave"] for a in plan["actions"] if a["name"] == "hv1/helper"} == {WAVE_HOSTS}
    # Boot order: the helper (boot services) first, then bootstrap, masters, workers.
    assert names(plan, kind="domain") == [f"hv1/{n}" for n in LAB_NODES]
    text = lab.gen("plan")
    assert text.code == 0
    assert "Plan: 11 to add, 0 to change, 0 to replace, 0 to destroy." in text.out
    assert text.out.index("Wave 10") < text.out.index("Wave 16: service hosts") < \
        text.out.index("Wave 30") < text.out.index("Wave 40")
    assert "  + libvirt domain hv1/bootstrap" in text.out
    assert lab.gen("plan", "--detailed-exitcode").code == 2


def test_plan_changes_nothing(lab: Lab) -> None:
    lab.gen("plan")
    conn = lab.conn()
    assert conn.listAllDomains(0) == [] and conn.listAllNetworks(0) == []


# -- converge, then nothing to do -----------------------------------------------------------


def test_converge_then_replan_is_empty(lab: Lab) -> None:
    result = converged(lab)
    assert "[11/11] + libvirt domain hv1/worker1 done in" in result.err  # progress, timed
    assert "Apply complete. 11 to add" in result.out
    conn = lab.conn()
    running = {d.name() for d in conn.listAllDomains(0) if d.isActive()}
    assert running == set(LAB_NODES)
    assert conn.networkLookupByName("lan").isActive()
    pool = conn.storagePoolLookupByName("default")
    assert sorted(v.name() for v in pool.listAllVolumes(0)) == [
        "bootstrap-root.qcow2", "helper-root.qcow2"]
    again = lab.gen("plan", "--detailed-exitcode")
    assert again.code == 0, again.out
    assert "No changes." in again.out
    second = lab.gen("converge", "--auto-approve")
    assert second.code == 0 and "No changes." in second.out and second.err == ""


def test_start_only_some_roles(lab: Lab) -> None:
    converged(lab, "--start", "helper,bootstrap")
    running = {d.name() for d in lab.conn().listAllDomains(0) if d.isActive()}
    assert running == {"helper", "bootstrap"}
    assert lab.gen("plan", "--start", "helper,bootstrap", "--detailed-exitcode").code == 0
    plan = lab.plan_json()  # starting the rest is a change of state
    assert names(plan, "update") == [f"hv1/{n}" for n in LAB_NODES[2:]]
    assert plan["actions"][0]["changes"] == [
        {"op": "change", "path": "state", "old": "shut off", "new": "running"}]


# -- drift behind gen's back ----------------------------------------------------------------


FOREIGN = """<domain type='test'><name>intruder</name><memory unit='KiB'>131072</memory>
<os><type>hvm</type></os></domain>"""


def test_drift_is_reported_and_repaired_foreign_domain_untouched(lab: Lab) -> None:
    converged(lab)
    conn = lab.conn()
    conn.lookupByName("master0").setMemory(128 * 1024)  # like `virsh setmem master0 128M`
    foreign = conn.defineXML(FOREIGN)
    foreign_xml = foreign.XMLDesc(0)
    worker1 = conn.lookupByName("worker1")
    worker1.destroy()
    worker1.undefine()
    network = conn.networkLookupByName("lan")
    network.destroy()
    network.undefine()

    plan = lab.plan_json()
    assert plan["summary"] == {"add": 2, "change": 1, "replace": 0, "destroy": 0}
    assert names(plan, "create") == ["hv1/lan", "hv1/worker1"]
    master0 = next(a for a in plan["actions"] if a["name"] == "hv1/master0")
    assert master0["changes"] == [{"op": "change", "path": "currentMemory (live)",
                                   "old": "131072 KiB", "new": "262144 KiB"}]
    assert "intruder" not in json.dumps(plan)

    converged(lab, "--prune", "--allow-destroy")  # even pruning never touches foreign objects
    assert lab.gen("plan", "--detailed-exitcode").code == 0
    conn = lab.conn()
    assert conn.lookupByName("master0").info()[2] == 256 * 1024
    assert conn.lookupByName("worker1").isActive()
    assert conn.lookupByName("intruder").XMLDesc(0) == foreign_xml


def test_config_drift_and_environment_change_update_in_place(lab: Lab) -> None:
    converged(lab)
    edit_node(lab.env_yaml, "worker0", "vcpu: 1", "vcpu: 2")
    plan = lab.plan_json()
    (action,) = plan["actions"]
    assert action["op"] == "update" and action["name"] == "hv1/worker0"
    assert action["note"] == "takes effect at next boot"  # the domain is running
    assert action["changes"] == [{"op": "change", "path": "vcpu", "old": "1", "new": "2"}]
    text = lab.gen("plan").out
    assert "  ~ libvirt domain hv1/worker0  (takes effect at next boot)" in text
    assert "      ~ vcpu: 1 -> 2" in text
    converged(lab)
    assert lab.gen("plan", "--detailed-exitcode").code == 0
    config = lab.conn().lookupByName("worker0").XMLDesc(2)  # VIR_DOMAIN_XML_INACTIVE
    assert ET.fromstring(config).findtext("vcpu") == "2"


def test_firmware_change_forces_replace_which_needs_allow_destroy(lab: Lab) -> None:
    converged(lab)
    uuid = lab.conn().lookupByName("worker1").UUIDString()
    edit_node(lab.env_yaml, "worker1", "vcpu: 1,", "vcpu: 1, firmware: uefi,")
    plan = lab.plan_json()
    (action,) = plan["actions"]
    assert (action["op"], action["forcingField"], action["refused"]) == (
        "replace", "os.firmware", True)
    text = lab.gen("plan")
    assert text.code == 3 and "--allow-destroy" in text.err
    assert "-/+ libvirt domain hv1/worker1  (forced by os.firmware;" in text.out
    assert "Plan: 0 to add, 0 to change, 1 to replace, 0 to destroy." in text.out
    refused = lab.gen("converge", "--auto-approve")
    assert refused.code == 3
    assert lab.conn().lookupByName("worker1").UUIDString() == uuid  # untouched
    converged(lab, "--allow-destroy")
    replaced = lab.conn().lookupByName("worker1")
    assert replaced.UUIDString() != uuid and replaced.isActive()
    assert lab.gen("plan", "--detailed-exitcode").code == 0


# -- prune rules ----------------------------------------------------------------------------


def _remove_worker1(lab: Lab) -> None:
    lines = [line for line in lab.env_yaml.read_text().splitlines(keepends=True)
             if "{name: worker1," not in line]
    lab.env_yaml.write_text("".join(lines))


def test_prune_needs_flags_and_exit_codes(lab: Lab) -> None:
    converged(lab)
    _remove_worker1(lab)
    plain = lab.gen("plan", "--detailed-exitcode")
    assert plain.code == 0, plain.out  # nothing is deleted without --prune
    assert "kept: domain hv1/worker1 (run with --prune" in plain.out
    pruned = lab.gen("plan", "--prune")
    assert pruned.code == 3, pruned.out + pruned.err
    assert "  - libvirt domain hv1/worker1" in pruned.out
    assert "[destructive: needs --allow-destroy]" in pruned.out
    assert "Plan: 0 to add, 0 to change, 0 to replace, 1 to destroy." in pruned.out
    assert lab.gen("converge", "--auto-approve", "--prune").code == 3
    assert lab.conn().lookupByName("worker1")  # still there
    converged(lab, "--prune", "--allow-destroy")
    assert "worker1" not in {d.name() for d in lab.conn().listAllDomains(0)}
    assert lab.gen("plan", "--prune", "--detailed-exitcode").code == 0


def test_prune_deletes_volumes_after_domains_and_networks_last(lab: Lab) -> None:
    edit_node(lab.env_yaml, "worker1", "disks: []", "disks: [{name: root, size: 16MiB}]")
    converged(lab)
    _remove_worker1(lab)
    edit_node(lab.env_yaml, "helper", "disks: [{name: root, size: 16MiB}]", "disks: []")
    plan = lab.plan_json("--prune", "--allow-destroy")
    ops = [(a["op"], a["kind"], a["name"]) for a in plan["actions"]]
    assert ops == [("update", "domain", "hv1/helper"),  # detach first ...
                   ("delete", "domain", "hv1/worker1"),  # ... prune last, domains first
                   ("delete", "volume", "hv1/helper-root.qcow2"),
                   ("delete", "volume", "hv1/worker1-root.qcow2")]
    converged(lab, "--prune", "--allow-destroy")
    assert lab.gen("plan", "--prune", "--detailed-exitcode").code == 0
    pool = lab.conn().storagePoolLookupByName("default")
    assert [v.name() for v in pool.listAllVolumes(0)] == ["bootstrap-root.qcow2"]


def test_protect_forbids_destroy_outright(lab: Lab) -> None:
    edit_node(lab.env_yaml, "worker1", "vcpu: 1,", "vcpu: 1, protect: true,")
    converged(lab)
    _remove_worker1(lab)  # the marker on the live domain still protects it
    result = lab.gen("plan", "--prune", "--allow-destroy")
    assert result.code == 3 and "protected" in result.err
    assert "[protected: refused]" in result.out
    assert lab.gen("converge", "--auto-approve", "--prune", "--allow-destroy").code == 3
    assert lab.conn().lookupByName("worker1").isActive()


def test_disk_shrink_is_a_wipe_and_protected_disks_refuse_it(lab: Lab) -> None:
    converged(lab)
    edit_node(lab.env_yaml, "bootstrap", "size: 16MiB", "size: 8MiB")
    plan = lab.plan_json()
    (action,) = plan["actions"]
    assert (action["op"], action["kind"], action["forcingField"]) == ("replace", "volume",
                                                                      "capacity")
    assert action["destructive"] and "never shrink" in action["note"]
    assert lab.gen("plan").code == 3
    edit_node(lab.env_yaml, "bootstrap", "size: 8MiB}", "size: 8MiB, protect: true}")
    result = lab.gen("plan", "--allow-destroy")
    assert result.code == 3 and "protected" in result.err


def test_empty_desired_set_never_prunes(lab: Lab) -> None:
    converged(lab)
    desired = load_desired(lab.env)
    empty = desired.__class__(desired.env, {}, desired.tree_hash, False)
    settings = Settings(prune=True, allow_destroy=True, uri_overrides=(("hv1", lab.uri),))
    plan = build_plan(empty, settings)
    assert plan.count("delete") == 0
    assert any("empty desired set never prunes" in n for n in plan.notices)
    kept, why = safety([Action("delete", "libvirt", "domain", "hv1/x", WAVE_DOMAINS)],
                       settings, desired_empty=True)
    assert kept == [] and "never prunes" in why[0]


def test_other_environments_and_unmarked_objects_are_never_touched(lab: Lab) -> None:
    converged(lab)
    conn = lab.conn()
    other = FOREIGN.replace("intruder", "other-vm").replace(
        "<os>", "<metadata><gen:owner xmlns:gen='https://gen.invalid/xmlns/libvirt/1' "
        "env='otherenv' kind='domain' node='other-vm' role='worker'/></metadata><os>")
    conn.defineXML(other)
    plan = lab.plan_json("--prune", "--allow-destroy")
    assert plan["actions"] == []
    # A foreign object holding a desired name is a conflict: reported, never adopted.
    worker0 = conn.lookupByName("worker0")
    worker0.destroy()
    worker0.undefine()
    conn.defineXML(FOREIGN.replace("intruder", "worker0"))
    result = lab.gen("plan")
    assert result.code == 1
    assert "domain 'worker0' exists but is owned by nobody" in result.out
    assert lab.gen("converge", "--auto-approve").code == 1
    assert conn.lookupByName("worker0").XMLDesc(0).count("gen:owner") == 0


# -- journal, lock, confirmation ------------------------------------------------------------


def test_interrupted_converge_resumes_from_the_journal(lab: Lab) -> None:
    settings = Settings(uri_overrides=(("hv1", lab.uri),))
    plan = build_plan(load_desired(lab.env), settings)
    journal = Journal(lab.state, "lab")
    applied = apply_plan(plan, journal, limit=5)  # stands in for a run killed after 5 steps
    assert len(applied) == 5 and journal.unfinished() is not None
    result = converged(lab)
    assert "resuming an interrupted converge: 5 of 11 action(s) were done" in result.err
    assert "[6/6]" in result.err and "Apply complete. 6 to add" in result.out
    assert journal.unfinished() is None
    records = [json.loads(line) for line in
               (lab.state / "lab" / "last.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("done") == 11
    assert lab.gen("plan", "--detailed-exitcode").code == 0


def test_a_second_converge_says_who_holds_the_lock(lab: Lab) -> None:
    with converge_lock(lab.state, "lab"):
        result = lab.gen("converge", "--auto-approve")
    assert result.code == 1
    assert f"another converge of lab is running: host {os.uname().nodename} pid " \
           f"{os.getpid()} since " in result.err
    assert lab.conn().listAllDomains(0) == []
    # A holder record left by a dead process (whose flock the kernel dropped) is named.
    (lab.state / "lab" / "converge.lock").write_text(json.dumps(
        {"host": os.uname().nodename, "pid": 2**22 + 7, "started": 1.0e9, "id": "x"}))
    result = converged(lab)
    assert "taking over an abandoned converge lock" in result.err
    assert (lab.state / "lab" / "converge.lock").read_text() == ""  # released: no holder


def test_interactive_confirmation(lab: Lab) -> None:
    declined = lab.gen("converge", input="no\n")
    assert declined.code == 1 and "converge cancelled" in declined.err
    assert lab.conn().listAllDomains(0) == []
    accepted = lab.gen("converge", input="yes\n")
    assert accepted.code == 0, accepted.err
    assert len(lab.conn().listAllDomains(0)) == len(LAB_NODES)


def test_json_plan_and_usage_errors(lab: Lab) -> None:
    plan = lab.plan_json()
    action = plan["actions"][0]
    assert set(action) >= {"op", "symbol", "kind", "name", "wave", "changes", "forcingField"}
    assert "xml" not in json.dumps(plan)  # payloads stay out of the output
    assert run("plan", lab.env, "--uri-override", "hv1").code == 64
    missing = run("plan", lab.env, "--uri-override", "hv1=test:///nonexistent/state.xml")
    assert missing.code == 1 and "cannot connect to libvirt" in missing.err


def test_stale_lock_refuses_with_exit_4(lab: Lab) -> None:
    assert run("lock", lab.env, "--offline").code == 0
    assert lab.gen("plan").out.startswith("gen plan for lab (locked render")
    edit_node(lab.env_yaml, "worker0", "vcpu: 1", "vcpu: 2")
    result = lab.gen("plan")
    assert result.code == 4 and "would change" in result.err
    assert lab.gen("converge", "--auto-approve").code == 4
    assert lab.conn().listAllDomains(0) == []


def test_converge_flow_runs_without_the_command_line(lab: Lab) -> None:
    """reconcile.converge.converge is the whole flow (locks, journal, plan, approval, apply);
    the click command only parses flags and prints what it is handed."""
    from generator.errors import UserError
    from generator.reconcile.converge import converge

    settings = Settings(uri_overrides=(("hv1", lab.uri),), providers=("libvirt",))
    shown: list[object] = []
    said: list[str] = []

    def refuse(count: int) -> None:
        raise UserError(f"declined {count}")

    with pytest.raises(UserError, match="declined 11"):
        converge(load_desired(lab.env), settings, lab.state, lock_timeout=60, lock_wait=0,
                 show=shown.append, confirm=refuse, say=said.append)
    assert lab.conn().listAllDomains(0) == [] and said == []
    done = converge(load_desired(lab.env), settings, lab.state, lock_timeout=60, lock_wait=0,
                    show=shown.append, confirm=lambda count: None, say=said.append)
    assert shown[-1] is done.plan and len(done.applied) == len(done.plan.actions) == 11
    assert said[-1].startswith("[11/11] + libvirt domain ")
    assert set(done.summary) == {"total", "apply", "plan", "liveRead"}
    assert len(lab.conn().listAllDomains(0)) == len(LAB_NODES)
    again = converge(load_desired(lab.env), settings, lab.state, lock_timeout=60, lock_wait=0,
                     show=shown.append, confirm=refuse, say=said.append)
    assert again.plan.empty and again.applied == () and again.seconds is None


def calls_of(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[str]:
    """The environment refs `module.name` is called with from now on (the real function
    still runs: the count says whether a plan rendered or loaded, not what it planned)."""
    calls: list[str] = []
    real = getattr(module, name)

    def counted(ref: str, *args: object, **kwargs: object) -> object:
        calls.append(ref)
        return real(ref, *args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_plan_reads_its_tree_from_the_render_cache(lab: Lab, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A second plan of the same inputs takes the tree from the render cache and loads the
    environment without re-checking it (the key hashes the inputs and the generator); the
    plan is the one a full render gives, and an edit is a new key, checked again."""
    import generator.pipeline

    monkeypatch.setenv("GEN_STORE", str(tmp_path / "store"))
    renders = calls_of(monkeypatch, generator.pipeline, "render_with_lock")
    first = lab.plan_json()
    assert len(renders) == 1 and any((tmp_path / "store" / "renders").iterdir())
    assert lab.plan_json() == first and len(renders) == 1  # a hit: nothing rendered
    monkeypatch.setenv("GEN_RENDER_CACHE", "off")
    assert lab.plan_json() == first and len(renders) == 2
    monkeypatch.delenv("GEN_RENDER_CACHE")
    edit_node(lab.env_yaml, "worker0", "vcpu: 1", "vcpu: 0")
    refused = lab.gen("plan")
    assert refused.code == 1 and "vcpu" in refused.err and len(renders) == 3


def test_parse_many_reads_each_part_as_alone() -> None:
    """Definitions parsed through one parser are the parts parsed alone; a part that is not
    one well-formed element raises the error it raises alone."""
    parts = ['<domain xmlns:gen="https://gen.invalid/x" type="kvm"><name>a</name>'
             '<metadata><gen:owner env="lab"/></metadata></domain>\n',
             "<network><name>b</name></network>", "<!-- c --><pool><name>c</name></pool>\n"]
    assert [ET.tostring(e) for e in provider.parse_many(parts)] == [
        ET.tostring(ET.fromstring(p)) for p in parts]
    for bad in (["<a/>", "text<b/>"], ["<a/>", "<b/><c/>"], ["<a/>", "<b>"]):
        with pytest.raises(ET.ParseError) as many:
            provider.parse_many(bad)
        with pytest.raises(ET.ParseError) as alone:
            ET.fromstring(bad[1])
        assert str(many.value) == str(alone.value)


def test_plan_keeps_what_it_needs_beside_the_render(lab: Lab, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """After `gen render` stored the tree, the first plan loads the environment (unchecked)
    and keeps the model, tree hash and pins' products beside the entry; the next plan of the
    same inputs loads nothing and plans the same. An edit names another entry."""
    import generator.environment
    from generator.reconcile import plan_cache

    store = tmp_path / "store"
    monkeypatch.setenv("GEN_STORE", str(store))
    real = generator.environment.load_environment  # the checked load, for comparing
    loads = calls_of(monkeypatch, generator.environment, "load_environment")
    assert run("render", lab.env, "--out", str(tmp_path / "out")).code == 0
    entries = {p.name for p in (store / "renders").iterdir()}
    loads.clear()
    first = lab.plan_json()
    assert loads == [lab.env]  # the stored tree's environment, loaded once without checks
    kept = {p.name for p in (store / "renders").iterdir()} - entries
    assert len(kept) == 1
    (key,) = entries
    assert kept == {plan_cache.companion_key(key)}
    from generator.lock.nar import tree_hash

    known = plan_cache.load(key)
    desired = load_desired(lab.env)
    assert known is not None and known.env == real(lab.env).model  # the checked model
    assert known.env.locate is None and desired.env == known.env
    assert known.tree_hash == tree_hash(desired.tree) == desired.tree_hash
    routed = {d.name: tuple(d.scope(desired.tree)) for d in PROVIDERS}
    assert dict(known.scopes) == routed and routed["libvirt"] and routed["files"]
    loads.clear()
    assert lab.plan_json() == first and loads == []  # nothing loaded at all
    monkeypatch.setenv("GEN_RENDER_CACHE", "off")  # a full render plans the same
    assert lab.plan_json() == first
    monkeypatch.delenv("GEN_RENDER_CACHE")
    edit_node(lab.env_yaml, "worker0", "vcpu: 1", "vcpu: 2")
    changed = lab.plan_json()
    assert changed != first and changed["treeHash"] != first["treeHash"]


def test_a_planted_companion_entry_runs_nothing(lab: Lab, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry beside a render is read by an unpickler that builds only the model: one
    naming any other callable (framed and hashed like a sound entry) is a miss, the plan
    loads the environment and is the same, and the planted call never runs. An entry
    filed under another render's name is a miss too."""
    import pickle

    from generator import render_cache
    from generator.pipeline import render_key
    from generator.reconcile import plan_cache

    monkeypatch.setenv("GEN_STORE", str(tmp_path / "store"))
    first = lab.plan_json()
    key = render_key(lab.env, None, None, False)
    assert key is not None and plan_cache.load(key) is not None
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    def plant(payload: bytes, filed_for: str = key) -> None:
        render_cache.save_entry(plan_cache.companion_key(key),
                                {"kind": plan_cache.KIND, "for": filed_for},
                                {plan_cache.PAYLOAD: payload})

    sound = plan_cache.encode(plan_cache.load(key))  # type: ignore[arg-type]
    for payload in ({"env": Planted(), "treeHash": "x", "objects": {}, "tools": (),
                     "images": ()}, Planted()):
        plant(pickle.dumps(payload))
        assert plan_cache.load(key) is None
        assert lab.plan_json() == first  # loaded again, and the entry rewritten sound
        assert not marker.exists() and plan_cache.load(key) is not None
    plant(sound, "another key")
    assert plan_cache.load(key) is None
    plant(sound)
    assert plan_cache.load(key) is not None


@pytest.mark.parametrize("env", ["lab", "k8s-lab", "lab-debian12", "k8s-lab-argocd",
                                 "k8s-lab-flux"])
def test_every_golden_model_reads_back_through_the_model_only_unpickler(
        env: str, repo: Path) -> None:
    """Each built-in environment's model (and the golden variants': every OS profile and
    hand-off engine) round-trips through plan_cache's restricted unpickler: a class it
    could not build would make every plan of such an environment a silent miss."""
    import gitops_env
    from clirun import helper_on_debian

    from generator.environment import load_environment
    from generator.reconcile import plan_cache

    edits = {"lab-debian12": ("lab", helper_on_debian), "k8s-lab-argocd": (
        "k8s-lab", gitops_env.argocd), "k8s-lab-flux": ("k8s-lab", gitops_env.flux)}
    base, edit = edits.get(env, (env, None))
    if edit is not None:
        edit(repo)
    model = load_environment(str(repo / "environments" / base)).model
    known = plan_cache.Known(model, "hash", {"c": [{"kind": "ConfigMap"}]},
                             (("oc", "0" * 64),), (("image/x", "r@sha256:" + "0" * 64),))
    assert plan_cache.decode(plan_cache.encode(known)) == known


def test_stored_scopes_give_way_to_a_registered_family(lab: Lab) -> None:
    """Scopes kept beside a render are used as stored; once a family is registered in the
    process (its paths may route to any provider), they are routed from the tree again."""
    from generator.families import FamilyDescriptor, Outputs, register

    libvirt = next(d for d in PROVIDERS if d.name == "libvirt")
    desired = load_desired(lab.env)
    tree = {**desired.tree, "bells/chime.xml": b"<chime/>"}
    stored = Desired(desired.env, tree, desired.tree_hash, False,
                     scopes=(("libvirt", tuple(libvirt.scope(desired.tree))),))
    assert stored.scope(libvirt) == libvirt.scope(desired.tree)
    assert Desired(desired.env, tree, "", False).scope(libvirt) == stored.scope(libvirt)
    unregister = register(FamilyDescriptor("chime", lambda env, pins: {},
                                           (Outputs(("bells/*",), "libvirt"),)))
    try:
        assert stored.scope(libvirt) == {**libvirt.scope(desired.tree),
                                         "bells/chime.xml": b"<chime/>"}
    finally:
        unregister()


def test_owner_finds_what_the_element_path_finds() -> None:
    """essence.owner walks the children instead of ElementPath, with the same answer: the
    first marker under the first <metadata> holding one; never one outside <metadata>."""
    from generator.reconcile import essence

    mark = f'<gen:owner xmlns:gen="{essence.GEN_NS}" env="{{}}"/>'
    cases = [f"<domain><metadata><x/>{mark.format('a')}</metadata></domain>", "<domain/>",
             f"<domain><metadata/><metadata>{mark.format('b')}{mark.format('c')}</metadata>"
             "</domain>", f"<domain>{mark.format('d')}<metadata/></domain>",
             f"<domain><devices><metadata>{mark.format('e')}</metadata></devices></domain>"]
    for text in cases:
        root = ET.fromstring(text)
        found = root.find(f"metadata/{essence.OWNER}")
        assert essence.owner(root) == (dict(found.attrib) if found is not None else {})
    assert [essence.owner(ET.fromstring(t)).get("env") for t in cases] == [
        "a", None, "b", None, None]


def test_reconcile_value_classes_write_their_own_docstrings() -> None:
    """A dataclass without a docstring gets one from its signature; for a @record class
    (no generated __init__) that goes through tokenize, whose pattern every process
    compiles anew in a hash-seeded order: the regex cache was rewritten by every plan."""
    import dataclasses
    import importlib

    checked = 0
    for name in ("csr", "essence", "files", "installer", "kubernetes", "libvirt", "plan",
                 "plan_cache", "providers", "seed"):
        module = importlib.import_module(f"generator.reconcile.{name}")
        for value in vars(module).values():
            init = getattr(value, "__init__", None)
            if isinstance(value, type) and value.__module__ == module.__name__ \
                    and dataclasses.is_dataclass(value) \
                    and getattr(init, "__code__", None) is not None \
                    and init.__code__.co_filename.startswith("<record"):
                assert not (value.__doc__ or "").startswith(value.__name__ + "("), value
                checked += 1
    assert checked >= 20
