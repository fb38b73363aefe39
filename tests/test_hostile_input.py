"""Hostile input (issue 14, the input side): a pull request cannot make gen run code, paste
config syntax, move a secret, escape a directory or exhaust the loader through env.yaml.

The corpus tests/hostile/input.yaml runs through the bad-blueprint runner of
tests/test_validation.py (the real CLI in subprocesses: exact one-line errors, exit 1,
nothing written). The tests below it cover what a text edit cannot express: special and
oversized files, bytes that are not UTF-8, the command line (`gen node add`, `gen plan`
with a program-running libvirt URI) and converge's secret filler.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import test_validation as runner
from ruamel.yaml import YAML

from generator.errors import GenError, UserError
from generator.loader import MAX_FILE_BYTES, read_yaml_file
from generator.schema import SCHEMA_FILE, full_match_pattern

CORPUS = Path(__file__).resolve().parent / "hostile" / "input.yaml"
CASES: list[dict[str, Any]] = YAML(typ="safe", pure=True).load(CORPUS.read_text())
LAB_URI = "    uri: qemu:///system\n"


def test_corpus_is_large_and_well_formed() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 60
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert case["stderr"], f"{case['id']}: expected stderr lines are required"
        assert set(case) <= {"id", "about", "env", "edits", "stderr"}, case["id"]
    classes = {case["about"].split()[0] for case in CASES}
    assert {"#1", "#2", "#3", "#4", "#6", "#7", "#8", "typed:"} <= classes


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_input(case: dict[str, Any], repo: Path) -> None:
    runner.test_bad_blueprint(case, repo)


# --- #7: every pattern is a full match ------------------------------------------------------

def _schema_nodes(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            found += _schema_nodes(value)
    return found


RAW_SCHEMA = json.loads(SCHEMA_FILE.read_text())
PATTERNS = sorted({n["pattern"] for n in _schema_nodes(RAW_SCHEMA) if "pattern" in n})
# Values valid for some pattern: each pattern that accepts one must refuse it with a newline.
SAMPLES = ["worker1", "192.168.20.162", "192.168.20.0/24", "52:54:00:aa:bb:cc", "example.com",
           "16GiB", "4.16", "v1.30.2", "2024.1", "/var/named", "pxelinux.0", "efi/grubx64.efi",
           "br0", "ens3", "/dev/vda", "console=ttyS0", "registry:2", "x86_64", "GEN_SECRET_PULL",
           "~/.ssh/id_rsa.pub", "qemu:///system", "https://example.com/x", "a" * 64,
           "rw", "192.168.111.0/255.255.255.0", "*.apps", "0" * 64, "pullSecret"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_is_anchored_and_full_match(pattern: str) -> None:
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    python = full_match_pattern(pattern)
    accepted = [s for s in SAMPLES if re.search(python, s)]
    for sample in accepted:
        for tail in ("\n", "\r\n", "\n; evil"):
            assert re.search(python, sample + tail) is None, (pattern, sample + tail)


def test_every_string_in_the_schema_is_bounded() -> None:
    for node in _schema_nodes(RAW_SCHEMA):
        if node.get("type") == "string":
            assert "maxLength" in node, f"unbounded string: {node}"


# --- #6: files the loader refuses without reading them --------------------------------------

def test_100000_nested_brackets_are_one_clean_line(repo: Path) -> None:
    """The issue's segfault: which bound stops it first depends on the libyaml PyYAML
    bundles (6.0.4's stops flow nesting at 1,000 levels itself, before gen's 64), so this
    asserts the contract, not the wording: exit 1, one located line, nothing written."""
    (repo / "environments/lab/env.yaml").write_text("[" * 100_000 + "\n")
    proc = runner.run_gen(repo, "validate", "env/lab")
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert lines[0].startswith("environments/lab/env.yaml:1:") and "nesting" in lines[0]


def test_fifo_device_directory_and_huge_files_are_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody writes: reading it would block forever
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: refused by size, never read
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    began = time.monotonic()
    for path, expected in ((fifo, "not a regular file"), (zero, "not a regular file"),
                           (tmp_path, "not a regular file"),
                           (huge, f"larger than {MAX_FILE_BYTES} bytes")):
        with pytest.raises(UserError) as failure:
            read_yaml_file(path, path.name)
        assert failure.value.lines() == [f"{path.name}: cannot read: {expected} "
                                         f"({failure.value.hint})"]
    assert time.monotonic() - began < 5


def test_fifo_as_env_yaml_is_a_clean_error(repo: Path) -> None:
    env = repo / "environments" / "lab" / "env.yaml"
    env.unlink()
    os.mkfifo(env)
    proc = runner.run_gen(repo, "validate", "env/lab")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


def test_non_utf8_is_reported_with_line_and_column(repo: Path) -> None:
    env = repo / "environments" / "lab" / "env.yaml"
    env.write_bytes(env.read_bytes().replace(b"UPI lab", b"UPI l\xffab"))
    proc = runner.run_gen(repo, "validate", "env/lab")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.splitlines() == ["environments/lab/env.yaml:7:31: cannot read: byte 0xff is not "
                                "UTF-8 (save the file as UTF-8)"]


# --- the command line ------------------------------------------------------------------------

def test_node_add_refuses_a_name_with_a_newline(repo: Path) -> None:
    env = repo / "environments" / "lab" / "env.yaml"
    before = env.read_bytes()
    proc = runner.run_gen(repo, "node", "add", "env/lab", "w9\n", "--role", "worker")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "'w9\\n' is not a valid name" in err
    assert env.read_bytes() == before


def _program(tmp_path: Path) -> tuple[Path, Path]:
    """A script that leaves a file behind if anything runs it."""
    witness = tmp_path / "ran"
    script = tmp_path / "pwn.sh"
    script.write_text(f"#!/bin/sh\ntouch {witness}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, witness


def test_a_uri_that_runs_a_program_is_refused_and_never_run(repo: Path,
                                                            tmp_path: Path) -> None:
    script, witness = _program(tmp_path)
    env = repo / "environments" / "lab" / "env.yaml"
    env.write_text(env.read_text().replace(
        LAB_URI, f"    uri: 'qemu+ext:///system?command={script}'\n"))
    for verb in ("validate", "plan"):
        proc = runner.run_gen(repo, verb, "env/lab")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, f"gen {verb}: {err}"
        assert "is not a libvirt URI gen accepts" in err and "Traceback" not in err
    assert not witness.exists(), "gen ran the program named in the URI"


@pytest.mark.parametrize("uri", ["qemu+ext:///system?command={script}",
                                 "qemu+ssh://root@localhost/system?netcat={script}",
                                 "qemu+ssh://root@localhost/system?command={script}"])
def test_a_uri_override_that_runs_a_program_is_refused(repo: Path, tmp_path: Path,
                                                       uri: str) -> None:
    script, witness = _program(tmp_path)
    proc = runner.run_gen(repo, "plan", "env/lab", "--uri-override",
                          f"hv1={uri.format(script=script)}")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "libvirt URI" in err and "Traceback" not in err
    assert not witness.exists(), "gen ran the program named in the URI"


def test_the_connection_itself_refuses_program_uris(tmp_path: Path) -> None:
    from generator.reconcile.libvirt import open_connection

    script, witness = _program(tmp_path)
    with pytest.raises(UserError, match="is not a qemu:// or test:// URI"):
        open_connection(f"qemu+ext:///system?command={script}")
    assert not witness.exists()


# --- #3: converge fills gen's secrets only in their files -----------------------------------

def test_filler_refuses_a_secret_outside_its_files() -> None:
    from generator.environment import load_environment
    from generator.reconcile.secrets import check_places, places

    allowed = places(load_environment("env/lab", cwd=runner.CASES_FILE.parents[2]).model)
    marker = b"x @@gen-secret:pullSecret@@ y"
    check_places("/var/lib/gen/http/install-config.yaml", marker, allowed)
    check_places("/var/lib/gen/http/ignition/worker0.ign",
                 b"@@gen-secret:sshAuthorizedKeys[0]@@", allowed)
    for path, content in (("/var/named/db.example.com", marker),
                          ("/etc/dhcp/dhcpd.conf", b"@@gen-secret:sshAuthorizedKeys[0]@@"),
                          ("/var/lib/gen/http/ignition/worker0.ign", marker),
                          ("/var/lib/gen/http/x.ign", b"@@gen-secret:notDeclared@@")):
        with pytest.raises(GenError) as failure:
            check_places(path, content, allowed)
        assert failure.value.exit_code == 1 and path in str(failure.value)



def test_the_compiled_validator_is_full_match_too() -> None:
    """Large documents go through fastjsonschema first (schema._quickly_valid): it applies
    the same translated patterns, so it never accepts a trailing newline either."""
    from generator import schema
    from generator.environment import load_documents

    _, doc = load_documents(runner.CASES_FILE.parents[2] / "environments" / "lab")
    schema._compiled()(doc.data)  # the clean lab passes
    doc.data["nodes"][6]["name"] = "worker1\n"
    with pytest.raises(Exception, match="must match pattern"):
        schema._compiled()(doc.data)


def test_an_odd_environment_directory_name_is_refused_at_validate(repo: Path) -> None:
    """The directory name lands in every config's header; no file holds it, so the check
    is on the name itself, at validate (the emitters would refuse it only at render)."""
    odd = repo / "environments" / "la b;x"
    (repo / "environments" / "lab").rename(odd)
    for verb in ("validate", "render"):
        proc = runner.run_gen(repo, verb, str(odd))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert err.splitlines() == [
            "environments/la b;x/env.yaml: the environment's directory name 'la b;x' is "
            "not a plain name (rename the directory: at most 63 letters, digits and ._- , "
            "starting with a letter, digit or _)"]


@pytest.mark.parametrize("argv", [["node", "remove", "env/lab", "x\ny"],
                                  ["set", "env/lab", "nodes[x\ny].memory", "8GiB"],
                                  ["node", "add", "env/lab", "w9", "--role", "worker",
                                   "--network", "l\nan"]])
def test_edit_errors_stay_one_line(repo: Path, argv: list[str]) -> None:
    env = repo / "environments" / "lab" / "env.yaml"
    before = env.read_bytes()
    proc = runner.run_gen(repo, *argv)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert env.read_bytes() == before
