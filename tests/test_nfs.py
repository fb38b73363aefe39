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
    (path,) = [p for p in tree if p.endswith(".exports")]
    return path, tree[path].decode()


def test_lab_a_exports() -> None:
    assert exports_of("env/lab") == (
        "hosts/helper/nfs/gen.exports",
        HEADER.format("lab") +
        "/exports/registry 192.168.20.0/24(rw,sync,no_root_squash,no_subtree_check)\n")


def test_lab_b_exports() -> None:
    # The seed's line, with exportfs's default subtree setting written out.
    assert exports_of("env/k8s-lab") == (
        "hosts/test-storage1/nfs/gen.exports",
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


def assert_render_refused(repo: Path, message: str) -> None:
    """`gen render env/k8s-lab` exits 1 with one located error line carrying `message`."""
    result = subprocess.run([sys.executable, "-m", "generator", "render", "env/k8s-lab",
                             "--out", str(repo / "out")], cwd=repo, capture_output=True,
                            text=True, check=False)
    errors = [line for line in result.stderr.splitlines()
              if line and not line.startswith("warning:")]
    assert result.returncode == 1
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith("environments/k8s-lab/env.yaml:")


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
    assert_render_refused(repo, message)


# --- converge: the installed file, the export directories, the real exportfs -----------

NFS_HOSTS = {"env/lab": "helper", "env/k8s-lab": "test-storage1"}


def converge_nfs(repo: Path, ref: str, root: Path, *extra: str) -> tuple[int, str]:
    """`gen converge REF` with the files provider into `root` (no reloads: exportfs runs
    below, in a private namespace); (exit code, output)."""
    from clirun import gen, helper_on_debian

    if ref == "env/lab":
        helper_on_debian(repo)  # the other services' checkers run here, at Debian's paths
    result = gen("converge", ref, "--auto-approve", "--provider", "files", "--files-target",
                 f"{NFS_HOSTS[ref]}={root}", "--state-dir", str(root.parent / "state"), *extra,
                 cwd=repo, timeout=300)
    return result.code, result.out + result.err


def exportfs_installed(tmp: Path, root: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`exportfs -ra` then `exportfs -v` chrooted into an overlay of `/` holding a copy of
    the converged root (owners and modes kept; overlayfs refuses a lower layer inside
    another): exportfs reads /etc/exports.d/*.exports as installed (an empty /etc/exports
    beside it, so only gen's file counts) and needs the export directories converge made."""
    up, work, merged = tmp / "up", tmp / "work", tmp / "merged"
    for d in (up, work, merged):
        d.mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir=/,upperdir={up},workdir={work} {merged} && "
        f"cp -a {root}/. {merged}/ && : > {merged}/etc/exports && "
        f"chroot {merged} sh -c 'exportfs -ra && exportfs -v'")
    with netns("nfs") as ns:
        result = ns.run(["unshare", "-m", "sh", "-c", script])
    return result, result.stdout


def listed_exports(listing: str) -> dict[tuple[str, str], set[str]]:
    """`exportfs -v` output -> (path, client) -> options (a long path wraps its client onto
    the next line)."""
    entries: dict[tuple[str, str], set[str]] = {}
    path = ""
    for word in listing.split():
        if word.startswith("/"):
            path = word
            continue
        client, options = re.fullmatch(r"(.*)\((.*)\)", word).groups()  # type: ignore[union-attr]
        entries[(path, client)] = set(options.split(","))
    return entries


@pytest.fixture
def ssh_key_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab A's Ignition references id_rsa.pub in the secrets directory, read on the
    target (this machine)."""
    home = tmp_path / "home"
    (home / ".config/gen/secrets").mkdir(parents=True)
    (home / ".config/gen/secrets/id_rsa.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINfsTest t\n")
    monkeypatch.setenv("HOME", str(home))


@pytest.mark.daemons
@pytest.mark.parametrize("ref", ["env/lab", "env/k8s-lab"])
def test_converged_exports_are_listed_by_exportfs(ref: str, repo: Path, tmp_path: Path,
                                                  ssh_key_home: None) -> None:
    root = tmp_path / "root"
    code, output = converge_nfs(repo, ref, root)
    assert code == 0, output
    env = model(ref)
    assert env.services.nfs is not None
    installed = root / "etc/exports.d/gen.exports"
    assert installed.read_text() == exports_of(ref)[1]
    for export in env.services.nfs.exports:  # default: root 0755
        info = (root / export.path.lstrip("/")).stat()
        assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o7777)) == (0, 0, "0o755")
    result, listing = exportfs_installed(tmp_path, root)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    entries = listed_exports(listing)
    expected = {(e.path, c.host) for e in env.services.nfs.exports for c in e.clients}
    assert set(entries) == expected, listing
    for export in env.services.nfs.exports:
        for client in export.clients:
            assert set(nfs.with_defaults(client.options)) <= entries[(export.path, client.host)]


@pytest.mark.daemons
def test_export_directory_owner_and_mode_converge_and_drift(repo: Path, tmp_path: Path) -> None:
    from clirun import gen

    env_file = repo / "environments/k8s-lab/env.yaml"
    text = env_file.read_text()
    old = "      - path: /share_storage\n"
    assert text.count(old) == 1
    env_file.write_text(text.replace(old, old + "        owner: nobody\n        group: '65534'\n"
                                               "        mode: '2775'\n"))
    root = tmp_path / "root"
    (root / "share_storage").mkdir(parents=True)  # already there, root 0700: converge fixes it
    (root / "share_storage").chmod(0o700)
    code, output = converge_nfs(repo, "env/k8s-lab", root)
    assert code == 0, output
    info = (root / "share_storage").stat()
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o7777)) == (65534, 65534, "0o2775")
    flags = ["--provider", "files", "--files-target", f"test-storage1={root}"]
    plan = gen("plan", "env/k8s-lab", "--detailed-exitcode", *flags, cwd=repo)
    assert plan.code == 0, plan.out + plan.err
    (root / "share_storage").chmod(0o755)  # drift: someone changed the mode by hand
    plan = gen("plan", "env/k8s-lab", "--detailed-exitcode", *flags, cwd=repo)
    assert plan.code == 2, plan.out + plan.err
    assert "/share_storage" in plan.out and "directory nobody:65534 2775" in plan.out, plan.out
    result, listing = exportfs_installed(tmp_path, root)
    assert result.returncode == 0 and "/share_storage" in listing, result.stderr


@pytest.mark.parametrize(("path", "mode", "message"), [
    ("/etc", "'0755'", "export path '/etc' is a system directory that converge would re-own"),
    ("/var", "'0755'", "export path '/var' is a system directory"),
    ("/share_storage", "0755", "mode: 755 is not a directory mode (write it quoted in octal"),
    ("/share_storage", "'07777'", "is not a directory mode"),
])
def test_bad_export_directories_are_rejected(repo: Path, path: str, mode: str,
                                             message: str) -> None:
    env_file = repo / "environments/k8s-lab/env.yaml"
    text = env_file.read_text()
    old = "      - path: /share_storage\n"
    env_file.write_text(text.replace(old, f"      - path: {path}\n        mode: {mode}\n"))
    assert_render_refused(repo, message)
    assert not (repo / "out").exists()


def test_gen_diff_names_a_changed_export_directory() -> None:
    from generator.diff.semantic import summarize_nfs
    from generator.diff.trees import FileChange

    def manifest(mode: str) -> bytes:
        return nfs.canonical_json({"exportDirectories": [
            {"path": "/share_storage", "owner": "root", "group": "root", "mode": mode}]})

    change = FileChange("hosts/s/nfs/manifest.json", "modified", manifest("0755"),
                        manifest("2775"))
    (finding,) = summarize_nfs([change])
    assert (finding.op, finding.subject) == ("~", "directory /share_storage")
    assert "mode: 0755 -> 2775" in finding.detail
