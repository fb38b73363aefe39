"""`gen import` and `gen set` against hostile surroundings and inputs (review of issue 21):
planted symlinks, unbounded inputs, values that must be refused, errors that must point to
the file the user wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clirun import gen
from tests.conftest import ROOT
from tests.test_import_helpernode import LAB_A_VARS


def _vars(repo: Path, text: str = LAB_A_VARS) -> Path:
    vars_file = repo / "vars.yaml"
    vars_file.write_text(text)
    return vars_file


def test_import_never_writes_through_a_planted_temp_symlink(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    env_dir = repo / "environments" / "planted"
    env_dir.mkdir()
    (env_dir / ".env.yaml.gen-tmp").symlink_to(outside)
    result = gen("import", "helpernode", str(_vars(repo)), "--env", "planted", cwd=repo)
    assert result.code == 0, result.err
    assert not outside.exists()
    env_file = env_dir / "env.yaml"
    assert env_file.is_file() and not env_file.is_symlink()
    assert sorted(p.name for p in env_dir.iterdir()) == [".env.yaml.gen-tmp", "env.yaml"]


def test_set_never_writes_through_a_planted_temp_symlink(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside-set"
    env_dir = repo / "environments" / "lab"
    (env_dir / ".env.yaml.gen-tmp").symlink_to(outside)
    result = gen("set", "env/lab", "cluster.name", "other", cwd=repo)
    assert result.code == 0, result.err
    assert not outside.exists()
    assert not (env_dir / "env.yaml").is_symlink()
    assert "name: other" in (env_dir / "env.yaml").read_text()


def test_set_refuses_a_symlinked_env_yaml(repo: Path) -> None:
    env_dir = repo / "environments" / "lab"
    real = repo / "elsewhere.yaml"
    (env_dir / "env.yaml").rename(real)
    (env_dir / "env.yaml").symlink_to(real)
    before = real.read_text()
    result = gen("set", "env/lab", "cluster.name", "other", cwd=repo)
    assert result.code == 1, result
    assert "symlink" in result.err and len(result.err.strip().splitlines()) == 1
    assert real.read_text() == before and (env_dir / "env.yaml").is_symlink()


def test_import_into_a_symlinked_env_yaml_is_refused(repo: Path) -> None:
    env_dir = repo / "environments" / "linked"
    env_dir.mkdir()
    target = repo / "target.yaml"
    first = gen("import", "helpernode", str(_vars(repo)), "--env", "other", cwd=repo)
    assert first.code == 0, first.err
    target.write_text((repo / "environments/other/env.yaml").read_text())
    (env_dir / "env.yaml").symlink_to(target)
    before = target.read_text()
    result = gen("import", "helpernode", str(_vars(repo)), "--env", "linked", cwd=repo)
    assert result.code == 1, result
    assert "symlink" in result.err
    assert target.read_text() == before
    assert not [p for p in env_dir.iterdir() if p.name.endswith(".gen-tmp")]


def test_helpernode_refuses_devices_fifos_and_huge_files_unread(repo: Path) -> None:
    fifo = repo / "fifo.yaml"
    os.mkfifo(fifo)
    huge = repo / "huge.yaml"
    with huge.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    for source, message in (("/dev/zero", "not a regular file"),
                            (str(fifo), "not a regular file"),
                            (str(huge), "larger than")):
        result = gen("import", "helpernode", source, "--env", "z", cwd=repo, timeout=30)
        assert result.code == 1, (source, result)
        assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (repo / "environments/z").exists()


@pytest.mark.parametrize(("old", "new", "field", "imported_as"), [
    ('poolstart: "192.168.20.200"', 'poolstart: "192.168.20.230"', "dhcp.poolstart",
     "services.dhcp.pool"),
    ('macaddr: "52:54:00:aa:00:62"', 'macaddr: "01:54:00:aa:00:62"', "workers[1].macaddr",
     "nodes[6].nics[0].mac"),
    ('ipaddr: "192.168.20.162"', 'ipaddr: "192.168.20.111"', "workers[1].ipaddr",
     "nodes[6].nics[0].ip"),
    ('  clusterid: "ocp4"', '  clusterid: "ocp4"\n  lb_ipaddr: "10.0.0.5"', "dns.lb_ipaddr",
     "services.haproxy.address"),
])
def test_invalid_imports_name_the_vars_file_line(repo: Path, old: str, new: str, field: str,
                                                 imported_as: str) -> None:
    """The candidate environment is never written, so its errors point into vars.yaml."""
    text = LAB_A_VARS.replace(old, new)
    assert text != LAB_A_VARS
    _vars(repo, text)
    result = gen("import", "helpernode", "vars.yaml", "--env", "bad", cwd=repo)
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if "env.yaml" not in line]
    assert errors == result.err.splitlines(), result.err
    number = LAB_A_VARS[: LAB_A_VARS.index(old)].count("\n") + 1 + new.count("\n")
    assert any(line.startswith(f"vars.yaml:{number}:") and f": at {field}: " in line
               and f"[imported as {imported_as}]" in line for line in errors), result.err
    assert not (repo / "environments/bad").exists()


@pytest.mark.parametrize("flags", [
    ("--hypervisor", "../hv"), ("--hypervisor", "h" * 300), ("--blueprint", "nope"),
    ("--blueprint", "../x"),
])
def test_bad_import_flags_are_usage_errors(repo: Path, flags: tuple[str, str]) -> None:
    result = gen("import", "libvirt", "test:///default", "--env", "y", *flags, cwd=repo)
    assert result.code == 64, result
    assert flags[0] in result.err and "Traceback" not in result.err
    assert sorted(p.name for p in (repo / "environments").iterdir()) == \
        sorted(p.name for p in (ROOT / "environments").iterdir())


@pytest.mark.parametrize(("addition", "field"), [
    ('ssh_gen_key: "false"\n', "ssh_gen_key"),
    ("ssh_gen_key: no\n", "ssh_gen_key"),
    ('staticips: "yes"\n', "staticips"),
    ("uefi: maybe\n", "uefi"),
    ('ipi: "true"\n', "ipi"),
    ("setup_registry:\n  deploy: yes\n", "setup_registry.deploy"),
])
def test_helpernode_booleans_are_yaml_booleans_only(repo: Path, addition: str,
                                                    field: str) -> None:
    text = LAB_A_VARS + addition
    _vars(repo, text)
    result = gen("import", "helpernode", "vars.yaml", "--env", "b", cwd=repo)
    assert result.code == 1, result
    number = LAB_A_VARS.count("\n") + 1 + (1 if "\n  " in addition else 0)
    refused = [line for line in result.err.splitlines() if "refused" in line]
    assert refused == [line for line in refused if line.startswith(
        f"vars.yaml:{number}:")] and len(refused) == 1, result.err
    assert f": at {field}: refused: " in refused[0] and "is not true or false" in refused[0]
    assert not (repo / "environments/b").exists()


def test_helpernode_file_urls_are_refused_unread(repo: Path) -> None:
    _vars(repo, LAB_A_VARS + "ocp_install_kernel: file:///etc/shadow\n")
    result = gen("import", "helpernode", "vars.yaml", "--env", "f", cwd=repo)
    assert result.code == 1, result
    assert f"vars.yaml:{LAB_A_VARS.count(chr(10)) + 1}:21: at ocp_install_kernel: refused: " \
           "a file:// URL" in result.err, result.err
    assert not (repo / "environments/f").exists()
