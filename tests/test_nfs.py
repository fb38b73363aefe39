"""NFS family: exports(5) lines for both labs, checked by the real `exportfs`.

The check (the design names one but gives no recipe; this is it): `exportfs -ra` from
nfs-utils parses the rendered file with its own rules and writes the resulting export table
(etab). It runs inside a private mount namespace over an overlay of `/` whose upper layer
is the test's temporary directory, chrooted there, inside a lo-only network namespace: the
rendered file becomes /etc/exports, the exported paths exist, and every write (etab, the
paths) lands in the temporary directory. No nfsd is needed, no kernel export is changed
(no /proc in the chroot). It proves: exportfs accepts every line without error or warning,
and the table it computes holds each path for each client with the rendered options.
It does not prove that a client can mount (that needs nfsd in the kernel).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from netns import netns

from generator.environment import load_environment
from generator.families import Pins, nfs
from generator.model import Environment

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# Rendered by gen for environment {}; do not edit by hand.\n"


def model(ref: str) -> Environment:
    return load_environment(ref, ROOT).model


def exports_of(ref: str) -> tuple[str, str]:
    tree = nfs.render(model(ref), Pins())
    assert len(tree) == 1
    return next((path, content.decode()) for path, content in tree.items())


def test_lab_a_exports() -> None:
    assert exports_of("env/lab") == (
        "hosts/helper/nfs/exports",
        HEADER.format("lab") +
        "/exports/registry 192.168.20.0/24(rw,sync,no_root_squash,no_subtree_check)\n")


def test_lab_b_exports() -> None:
    # The seed's line, with exportfs's default subtree setting written out.
    assert exports_of("env/k8s-lab") == (
        "hosts/test-storage1/nfs/exports",
        HEADER.format("k8s-lab") +
        "/share_storage 192.168.111.0/255.255.255.0(rw,no_root_squash,no_subtree_check)\n")


def test_option_and_client_rules() -> None:
    assert nfs.option_problem("rw") is None
    assert nfs.option_problem("anonuid=1000") is None
    assert nfs.option_problem("mountpoint") is None and nfs.option_problem("mp=/x") is None
    assert nfs.option_problem("rw=1") == "'rw=1' is not an exports(5) option"
    assert nfs.option_problem("anonuid") == "'anonuid' needs a value (anonuid=...)"
    assert nfs.option_problem("no_root_sqash") is not None
    for good in ("192.168.20.0/24", "192.168.111.0/255.255.255.0", "*", "@trusted",
                 "*.example.com", "node1", "10.0.0.5"):
        assert nfs.client_ok(good), good
    for bad in ("10.0.0.0/24(rw)", "a b", "host,other", ""):
        assert not nfs.client_ok(bad), bad
    assert nfs.path_ok("/share_storage") and not nfs.path_ok("share") \
        and not nfs.path_ok("/with space")


# --- the real exportfs -----------------------------------------------------------------

def exportfs(tmp: Path, exports: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `exportfs -ra` on `exports` as /etc/exports; (result, the etab it wrote)."""
    up, work, merged = tmp / "up", tmp / "work", tmp / "merged"
    for d in (up, work, merged):
        d.mkdir()
    (tmp / "exports").write_text(exports)
    paths = [line.split()[0] for line in exports.splitlines()
             if line.strip() and not line.startswith("#")]
    script = (
        f"mount -t overlay overlay -o lowerdir=/,upperdir={up},workdir={work} {merged} && "
        f"cp {tmp / 'exports'} {merged}/etc/exports && "
        + "".join(f"mkdir -p {merged}{p} && " for p in paths)
        + f"chroot {merged} exportfs -ra")
    with netns("nfs") as ns:
        result = ns.run(["unshare", "-m", "sh", "-c", script])
    etab = up / "var/lib/nfs/etab"
    return result, etab.read_text() if etab.exists() else ""


def etab_entries(etab: str) -> dict[tuple[str, str], set[str]]:
    """(path, client) -> the options exportfs computed."""
    entries = {}
    for line in etab.splitlines():
        path, spec = line.split("\t")
        client, options = re.fullmatch(r"(.*)\((.*)\)", spec).groups()  # type: ignore[union-attr]
        entries[(path, client)] = set(options.split(","))
    return entries


@pytest.mark.daemons
@pytest.mark.parametrize("ref", ["env/lab", "env/k8s-lab"])
def test_exportfs_accepts_rendered_exports(ref: str, tmp_path: Path) -> None:
    env = model(ref)
    _, exports = exports_of(ref)
    result, etab = exportfs(tmp_path, exports)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # not even a warning
    entries = etab_entries(etab)
    assert env.services.nfs is not None
    for export in env.services.nfs.exports:
        for client in export.clients:
            computed = entries[(export.path, client.host)]
            assert set(nfs.with_defaults(client.options)) <= computed, computed


@pytest.mark.daemons
def test_exportfs_check_can_fail(tmp_path: Path) -> None:
    result, etab = exportfs(tmp_path, "/data 10.0.0.0/8(rw,no_root_sqash)\n")
    assert result.returncode != 0
    assert 'unknown keyword "no_root_sqash"' in result.stderr
    assert "/data" not in etab


@pytest.mark.daemons
def test_option_names_agree_with_exportfs(tmp_path: Path) -> None:
    """Every option gen's semantic check accepts is one the real exportfs accepts."""
    values = {"anonuid": "1000", "anongid": "1000", "sec": "sys", "fsid": "1",
              "refer": "/x@10.0.0.1", "replicas": "/x@10.0.0.1", "mountpoint": "/",
              "mp": "/"}
    options = sorted(nfs.FLAGS) + [f"{k}={v}" for k, v in sorted(values.items())]
    assert set(values) == set(nfs.VALUED)
    lines = [f"/opt{i} 10.0.0.0/8({option},no_subtree_check)"
             for i, option in enumerate(options)]
    result, etab = exportfs(tmp_path, "\n".join(lines) + "\n")
    assert "unknown keyword" not in result.stderr, result.stderr
    exported = {line.split("\t")[0] for line in etab.splitlines()}
    rejected = [o for i, o in enumerate(options) if f"/opt{i}" not in exported]
    assert rejected == [], result.stderr


# --- bad input -------------------------------------------------------------------------

CLIENT = "{host: 192.168.111.0/255.255.255.0, options: [rw, no_root_squash]}"


@pytest.mark.parametrize(("new", "message"), [
    ("{host: 192.168.111.0/255.255.255.0, options: [rw, no_root_sqash]}",
     "at services.nfs.exports[0].clients[0].options[1]: 'no_root_sqash' is not an exports(5) "
     "option (see exports(5))"),
    ("{host: 192.168.111.0/255.255.255.0, options: [rw, anonuid]}",
     "'anonuid' needs a value (anonuid=...)"),
    ("{host: '192.168.111.0/24(rw)', options: [rw]}", "'192.168.111.0/24(rw)' is not an NFS "
     "client"),
    ("{host: 192.168.111.0/24, options: [rw, ro]}", "both rw and ro (choose one)"),
])
def test_bad_exports_are_rejected(repo: Path, new: str, message: str) -> None:
    path = repo / "environments/k8s-lab/env.yaml"
    text = path.read_text()
    assert CLIENT in text
    path.write_text(text.replace(CLIENT, new))
    result = subprocess.run([sys.executable, "-m", "generator", "render", "env/k8s-lab",
                             "--out", str(repo / "out")], cwd=repo, capture_output=True,
                            text=True, check=False)
    errors = [line for line in result.stderr.splitlines()
              if line and not line.startswith("warning:")]
    assert result.returncode == 1
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith("environments/k8s-lab/env.yaml:")
