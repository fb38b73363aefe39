"""Ignition per CoreOS node, proven by Debian's real `ignition-validate` (Ignition 2.14)."""

from __future__ import annotations

import configparser
import dataclasses
import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from generator.errors import UserError
from generator.families import Pins, ignition
from generator.model import Environment, Nic, Node
from generator.pipeline import render_environment
from generator.tree import canonical_json, canonical_json_fragment

ROOT = Path(__file__).resolve().parent.parent
LAB_NODES = ("bootstrap", "master0", "master1", "master2", "worker0", "worker1")
KEYFILE = "/etc/NetworkManager/system-connections/ens3.nmconnection"


@pytest.fixture(scope="module")
def lab() -> Environment:
    return render_environment("env/lab", cwd=ROOT).loaded.model


@pytest.fixture(scope="module")
def lab_ignition() -> dict[str, bytes]:
    tree = render_environment("env/lab", cwd=ROOT).tree
    prefix = "clusters/ocp4/ignition/"
    return {p[len(prefix):-len(".ign")]: c for p, c in tree.items() if p.startswith(prefix)}


def ignition_validate(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("ignition-validate")
    assert tool, "ignition-validate is missing: apt-get install ignition (tests/run.sh does)"
    return subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)


def assert_validates_silently(path: Path) -> None:
    """Exit 0 and no output at all: ignition-validate only *warns* on unknown keys."""
    result = ignition_validate(path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"{path.name}: {output}"


def files_of(config: dict) -> dict[str, dict]:
    return {f["path"]: f for f in config["storage"]["files"]}


def decode(source: str) -> str:
    assert source.startswith("data:,"), source
    return unquote(source[len("data:,"):])


def keyfile(config: dict, path: str = KEYFILE) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(decode(files_of(config)[path]["contents"]["source"]))
    return parser


def test_one_file_per_coreos_node(lab_ignition: dict[str, bytes]) -> None:
    # The helper boots a plain image: no Ignition for it.
    assert sorted(lab_ignition) == sorted(LAB_NODES)


def test_ignition_validate_passes_every_lab_file_silently(
        lab_ignition: dict[str, bytes], tmp_path: Path) -> None:
    for node, content in lab_ignition.items():
        path = tmp_path / f"{node}.ign"
        path.write_bytes(content)
        assert_validates_silently(path)


def test_ignition_validate_would_catch_a_warning(tmp_path: Path) -> None:
    """The silence check above is meaningful: an unknown key makes the real tool talk."""
    path = tmp_path / "bad.ign"
    path.write_text(json.dumps({"ignition": {"version": "3.3.0"}, "storrage": {}}))
    result = ignition_validate(path)
    assert "storrage" in result.stdout + result.stderr


def test_keyfile_matches_the_blueprint(lab: Environment, lab_ignition: dict[str, bytes]) -> None:
    net = lab.network("lan")
    helper_ip = lab.node("helper").ip
    for name in LAB_NODES:
        config = json.loads(lab_ignition[name])
        node = lab.node(name)
        entry = files_of(config)[KEYFILE]
        assert entry["mode"] == 0o600, "NetworkManager ignores keyfiles others can read"
        parsed = keyfile(config)
        # Matched by MAC: the installed system's udev names the NIC after its PCI slot.
        assert "interface-name" not in parsed["connection"]
        assert parsed["ethernet"]["mac-address"].lower() == node.nic.mac
        assert parsed["ipv4"]["method"] == "manual"
        assert parsed["ipv4"]["address1"] == f"{node.ip}/{net.cidr.prefixlen}"
        assert parsed["ipv4"]["gateway"] == str(net.gateway)
        assert parsed["ipv4"]["dns"] == f"{helper_ip};"
    bootstrap = keyfile(json.loads(lab_ignition["bootstrap"]))
    assert bootstrap["ipv4"]["address1"] == "192.168.20.150/24"
    assert bootstrap["ipv4"]["gateway"] == "192.168.20.1"
    assert bootstrap["ipv4"]["dns"] == "192.168.20.111;"


def test_hostname_is_the_fqdn(lab_ignition: dict[str, bytes]) -> None:
    config = json.loads(lab_ignition["master1"])
    entry = files_of(config)["/etc/hostname"]
    assert decode(entry["contents"]["source"]) == "master1.ocp4.example.com\n"
    assert entry["mode"] == 0o644


def test_merge_points_at_the_role_config_on_the_helper(lab_ignition: dict[str, bytes]) -> None:
    for name, role in (("bootstrap", "bootstrap"), ("master2", "master"), ("worker0", "worker")):
        config = json.loads(lab_ignition[name])
        assert config["ignition"]["version"] == "3.3.0"
        assert config["ignition"]["config"]["merge"] == [
            {"source": f"http://192.168.20.111:8080/ignition/roles/{role}.ign"}]


def test_merge_carries_sha512_when_the_lock_knows_the_role_config(
        lab: Environment, tmp_path: Path) -> None:
    role_config = b'{"ignition":{"version":"3.2.0"}}'
    tree = ignition.render(lab, Pins(manifests={"ignition/master": role_config}))
    master = json.loads(tree["clusters/ocp4/ignition/master0.ign"])
    worker = json.loads(tree["clusters/ocp4/ignition/worker0.ign"])
    expected = "sha512-" + hashlib.sha512(role_config).hexdigest()
    assert master["ignition"]["config"]["merge"][0]["verification"] == {"hash": expected}
    assert "verification" not in worker["ignition"]["config"]["merge"][0]
    path = tmp_path / "master0.ign"
    path.write_bytes(tree["clusters/ocp4/ignition/master0.ign"])
    assert_validates_silently(path)


@pytest.mark.parametrize("manifests", [{}, {"ignition/master": b'{"ignition":{}}'}])
def test_render_after_check_reuses_its_configs_byte_for_byte(
        lab: Environment, manifests: dict[str, bytes]) -> None:
    """`check` keeps the configs it encoded for the environment it checked; `render` of
    that environment splices in the role's pinned merge resource instead of building and
    checking each config again. A copy of the environment (another identity) was never
    checked, so it renders the long way: both must be the same bytes."""
    pins = Pins(manifests=manifests)
    assert ignition.check(lab) == []
    assert ignition._checked_configs(lab, ignition.DEFAULT_SPEC)  # the short way is taken
    spliced = ignition.render(lab, pins)
    unchecked = dataclasses.replace(lab)
    assert ignition._checked_configs(unchecked, ignition.DEFAULT_SPEC) == {}
    built = ignition.render(unchecked, pins)
    assert spliced == built
    if manifests:
        assert b"sha512-" in spliced["clusters/ocp4/ignition/master1.ign"]
        assert b"sha512-" not in spliced["clusters/ocp4/ignition/worker1.ign"]


def test_configs_composed_from_shared_parts_are_the_whole_configs_bytes(
        lab: Environment) -> None:
    """`check` encodes what a role's configs share once and each node's own files alone;
    every composed config must be canonical_json of that node's whole config."""
    shared: dict[tuple[str, str], ignition._Shared] = {}
    composed = 0
    for node in ignition.coreos_nodes(lab):
        config = ignition.build_config(lab, node, Pins(), ignition.DEFAULT_SPEC)
        own = ignition._own_files(lab, node)
        key = (node.role, node.nic.network)
        if key in shared:
            assert shared[key].compose(own) == canonical_json(config), node.name
            composed += 1
        else:
            shared[key] = ignition._Shared.of(config, own, canonical_json(config))
    assert composed >= 3  # master1, master2, worker1 share their role's parts


# Values a node's own files are made of, awkward for a path, a keyfile or JSON.
HOSTILE_INTERFACES = ["ens3", "ens4", "", ".", "..", "a b", "a/b", "../x", "x/..", "é", "a\nb",
                      "%", '"', "\\", "a\tb", "-x", "_x.y-z", "x" * 300, "ens3\n", "@:+"]
HOSTILE_MACS = ["52:54:00:aa:bb:cc", "52:54:00:AA:BB:CC", "zz", "52:54:00:aa:bb:cc\n", "",
                "fF:eE:dD:cC:bB:aA", "00:00:00:00:00:09", "52-54-00-aa-bb-cc", "52:54:00:aa:bb:c%"]
HOSTILE_NAMES = ["worker1", "w", "a b", "w.x", "ü", "w\n", "-", "_w"]


def _with_node(lab: Environment, name: str, node: Node) -> Environment:
    return dataclasses.replace(lab, nodes=tuple(node if n.name == name else n
                                                for n in lab.nodes))


def _outcome(build: Callable[[], object]) -> object:
    try:
        return build()
    except UserError as refused:
        return (type(refused), refused.message, refused.hint, getattr(refused, "field", None))


def test_own_files_are_the_node_files(lab: Environment) -> None:
    """`_own_files` (check's fast path) against `_node_files` (the dicts every config is
    built from) on hostile names, interfaces and MACs, one or two NICs: the same refusal,
    or the same (path, mode) and canonical_json text of every file; and a group's parts
    accept exactly the nodes whose files pass the schema's `file` rule without a path
    written twice, composing canonical_json's bytes of their whole config."""
    worker0, worker1 = lab.node("worker0"), lab.node("worker1")
    config = ignition.build_config(lab, worker0, Pins(), ignition.DEFAULT_SPEC)
    shared = ignition._Shared.of(config, ignition._own_files(lab, worker0),
                                 canonical_json(config))
    rng = random.Random(7)
    cases = [(i, m, n, s) for i in HOSTILE_INTERFACES for m in HOSTILE_MACS[:2]
             for n in HOSTILE_NAMES[:2] for s in (None, "ens3", "ens4")]
    cases += [(rng.choice(HOSTILE_INTERFACES), rng.choice(HOSTILE_MACS),
               rng.choice(HOSTILE_NAMES), rng.choice([None, *HOSTILE_INTERFACES]))
              for _ in range(400)]
    accepted = refused = rejected = 0
    for interface, mac, name, second in cases:
        nics = (dataclasses.replace(worker1.nic, interface=interface, mac=mac),)
        if second is not None:
            nics += (Nic(network="lan", mac="52:54:00:aa:bb:cd",
                         ip=IPv4Address("192.168.20.201"), interface=second),)
        node = dataclasses.replace(worker1, name=name, fqdn=f"{name}.{lab.cluster.domain}",
                                   nics=nics)
        env = _with_node(lab, "worker1", node)
        files = _outcome(lambda: ignition._node_files(env, node))  # noqa: B023
        own = _outcome(lambda: ignition._own_files(env, node))  # noqa: B023
        if not isinstance(files, list):
            assert own == files, (interface, mac, name, second)
            refused += 1
            continue
        assert isinstance(own, ignition._Own)
        assert own.keys == tuple((f["path"], f["mode"]) for f in files)
        assert own.fragments == tuple(canonical_json_fragment(f, ignition._FILES)
                                      for f in files)
        paths = [f["path"] for f in files] + list(shared.paths)
        valid = (len(set(paths)) == len(paths)
                 and ignition._files_problem(files) is None)
        assert shared.accepts(own) == valid, (interface, mac, name, second)
        if valid:
            whole = ignition.build_config(env, node, Pins(), ignition.DEFAULT_SPEC)
            assert shared.compose(own) == canonical_json(whole)
            accepted += 1
        else:
            rejected += 1
    assert accepted and refused and rejected  # every branch was taken


def test_every_data_url_passes_the_source_rule() -> None:
    """`_Own` checks a file's (path, mode) only: whatever the content, its data URL passes
    the schema's `source` rule (percent-encoding leaves no whitespace)."""
    rng = random.Random(21)
    samples = [bytes(range(256)), "\u2028\u00a0\u3000\x85 \t\r\n\x0b\x0c".encode()]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(2000)]
    for sample in samples:
        assert ignition._files_problem([ignition._file("/etc/x", sample, 0o600)]) is None
    assert ignition._files_problem([ignition._file("/etc/x", b"", 0o600)
                                    | {"contents": {"source": "data:,a b"}}]) is not None


def test_ssh_keys_are_markers_for_core(lab: Environment, lab_ignition: dict[str, bytes]) -> None:
    config = json.loads(lab_ignition["worker1"])
    assert config["passwd"]["users"] == [
        {"name": "core", "sshAuthorizedKeys": [lab.cluster.ssh_keys[0].marker()]}]
    assert lab.cluster.ssh_keys[0].marker() == "@@gen-secret:sshAuthorizedKeys[0]@@"


def test_output_is_canonical_json_and_deterministic(
        lab: Environment, lab_ignition: dict[str, bytes]) -> None:
    for content in lab_ignition.values():
        assert content == canonical_json(json.loads(content))
    again = ignition.render(lab, Pins())
    assert {p.rsplit("/", 1)[1][:-4]: c for p, c in again.items()} == lab_ignition


def test_second_nic_gets_no_default_route_and_still_validates(
        lab: Environment, tmp_path: Path) -> None:
    node = lab.node("worker0")
    second = Nic(network="lan", mac="52:54:00:aa:bb:cc", ip=IPv4Address("192.168.20.200"),
                 interface="ens4")
    node = dataclasses.replace(node, nics=(*node.nics, second))
    config = ignition.node_config(lab, node, Pins())
    parsed = keyfile(config, "/etc/NetworkManager/system-connections/ens4.nmconnection")
    assert parsed["ipv4"]["address1"] == "192.168.20.200/24"
    assert parsed["ipv4"]["never-default"] == "true"
    assert "gateway" not in parsed["ipv4"] and "dns" not in parsed["ipv4"]
    path = tmp_path / "worker0.ign"
    path.write_bytes(canonical_json(config))
    assert_validates_silently(path)


def test_two_nics_with_one_interface_name_fail_cleanly(lab: Environment) -> None:
    """The config would write one keyfile twice: refused with one line (validate reports
    it at the NIC, test_hostile_input's two-nics-one-interface); the renderer never gets
    such a model, so it asserts instead of refusing input."""
    node = lab.node("worker0")
    node = dataclasses.replace(node, nics=(node.nic, dataclasses.replace(node.nic)))
    config = ignition.build_config(lab, node, Pins(), "3.3.0")
    with pytest.raises(UserError) as caught:
        ignition.check_config(config, "3.3.0", "worker0")
    assert "worker0" in caught.value.message and "ens3.nmconnection twice" in caught.value.message
    with pytest.raises(AssertionError):
        ignition.node_config(lab, node, Pins())


def test_check_hook_passes_the_lab_and_builds_every_config(lab: Environment) -> None:
    """ignition.check builds and checks the config of every PXE CoreOS node of lab A."""
    assert ignition.check(lab) == []
    assert len(ignition.coreos_nodes(lab)) == 6


def test_render_time_schema_rejects_a_broken_config_with_one_line() -> None:
    config = {"ignition": {"version": "3.3.0"},
              "storage": {"files": [{"path": "etc/hostname", "mode": 420}]}}
    with pytest.raises(UserError) as caught:
        ignition.check_config(config, "3.3.0", "master0")
    message = caught.value.lines()[0]
    assert "\n" not in message
    assert "node 'master0'" in message and "storage.files.0.path" in message
    assert '"etc/hostname"' in message


@pytest.mark.parametrize("broken", [
    {"ignition": {"version": "3.2.0"}},
    {"ignition": {"version": "3.3.0"}, "passwd": {"users": [{"name": "core", "x": 1}]}},
    {"ignition": {"version": "3.3.0"},
     "ignition_": {}},
    {"ignition": {"version": "3.3.0", "config": {"merge": [{"source": "ftp://x/y"}]}}},
    {"ignition": {"version": "3.3.0", "config": {"merge": [
        {"source": "http://h/x.ign", "verification": {"hash": "md5-00"}}]}}},
    {"ignition": {"version": "3.3.0"},
     "storage": {"files": [{"path": "/etc/../shadow"}]}},
])
def test_render_time_schema_rejects(broken: dict) -> None:
    with pytest.raises(UserError):
        ignition.check_config(broken, "3.3.0", "n")


# Valid Ignition 3.3 in the subset gen's render-time schema covers (users, files, config
# merge/replace) beyond what lab renders: the schema must not refuse any of them.
VALID_SHAPES = [
    {"ignition": {"version": "3.3.0"}},
    {"ignition": {"version": "3.3.0", "config": {"merge": [
        {"source": "https://h.example.com/x.ign",
         "verification": {"hash": "sha512-" + "0" * 128}}]}}},
    {"ignition": {"version": "3.3.0", "config": {"replace": {
        "source": "http://192.168.20.111:8080/ignition/worker.ign"}}}},
    {"ignition": {"version": "3.3.0"}, "passwd": {"users": [
        {"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA k", "ssh-rsa BBBB j"]},
        {"name": "ops_1"}]}},
    {"ignition": {"version": "3.3.0"}, "storage": {"files": [
        {"path": "/etc/motd", "mode": 420, "overwrite": True,
         "contents": {"source": "data:,hello%20world", "compression": ""}},
        {"path": "/etc/x.gz", "mode": 384, "user": {"id": 0}, "group": {"name": "root"},
         "contents": {"source": "https://h.example.com/x.gz", "compression": "gzip",
                      "verification": {"hash": "sha256-" + "a" * 64}}},
        {"path": "/var/home/core/.config/a@b:c+d-e.f"}]}},
]


def test_schema_accepts_what_ignition_validate_accepts(
        lab_ignition: dict[str, bytes], tmp_path: Path) -> None:
    corpus = [json.loads(c) for c in lab_ignition.values()] + VALID_SHAPES
    for index, config in enumerate(corpus):
        path = tmp_path / f"{index}.ign"
        path.write_text(json.dumps(config))
        assert_validates_silently(path)  # the real tool accepts it ...
        ignition.check_config(config, "3.3.0", "n")  # ... so gen's render-time schema must


def test_unknown_spec_version_is_a_user_error(lab: Environment) -> None:
    with pytest.raises(UserError) as caught:
        ignition.render(lab, Pins(), spec="9.9.9")
    assert "3.3.0" in caught.value.hint


def test_every_spec_row_has_a_schema_for_its_version() -> None:
    for version, spec in ignition.SPECS.items():
        schema = json.loads((ignition.SCHEMA_DIR / spec.schema).read_text())
        assert schema["properties"]["ignition"]["properties"]["version"]["const"] == version


def test_kubeadm_lab_gets_no_ignition() -> None:
    tree = render_environment("env/k8s-lab", cwd=ROOT).tree
    assert not [p for p in tree if "/ignition/" in p]


def test_data_url_is_urllib_quote_exactly() -> None:
    """data_url's table encoder against urllib's quote(safe=""): every byte alone, each
    between newlines, every code point's UTF-8, and random bytes heavy in newlines (empty
    lines, leading and trailing ones) — through the line cache twice."""
    samples = [bytes([b]) for b in range(256)] + [b"\n" + bytes([b]) + b"\n" for b in range(256)]
    samples += ["\n".join(map(chr, range(c, c + 64))).encode("utf-8", "surrogatepass")
                for c in range(0, 0x110000, 64)]  # every code point, 64 to a sample
    rng = random.Random(20)
    samples += [bytes(rng.choice(b"\n\n\na=:/%~ \x00\xff\x7f") if rng.random() < .3
                      else rng.randrange(256) for _ in range(rng.randrange(40)))
                for _ in range(5000)]
    samples += [b"", b"\n", b"\n\n", b"a\n", b"\na", b"same\nsame\n"]
    for _ in range(2):
        for sample in samples:
            assert ignition.data_url(sample) == "data:," + quote(sample, safe=""), sample


def test_the_files_rule_is_per_item_so_one_batch_check_is_every_nodes() -> None:
    """ignition.check holds each of a node's own files to the `file` rule alone (one
    (path, mode) at a time); that equals checking them together only while the schema's
    storage.files rule holds each item alone (no uniqueItems, no count)."""
    files = ignition._schema(ignition.DEFAULT_SPEC)["properties"]["storage"]["properties"]["files"]
    assert set(files) == {"items", "type"}
    good = ignition._file("/etc/hostname", b"a\n", 0o644)
    bad = ignition._file("/etc/with space", b"a\n", 0o644)
    assert ignition._files_problem([good, good]) is None
    assert ignition._files_problem([good, bad]) is not None
