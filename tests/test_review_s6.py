"""Adversarial review of session 6's fast paths and safety fixes (tests/test_review_s6.py).

Each test here failed on the code it was written against; it runs the real `gen` CLI on
real files (and, for kubeadm, real node roots: tests/test_kubeadm_phases.py's site).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from test_kubeadm_phases import Site, site  # noqa: F401
from test_reconcile_kubernetes import kube  # noqa: F401

KUBELET_CONF = "/etc/kubernetes/kubelet.conf"


def _flaky_prefix(tmp: Path, prefix: str) -> str:
    """`prefix` behind a wrapper whose one probe of kubelet.conf fails the way a dropped ssh
    connection does (exit 255, nothing run on the node); every other command goes through."""
    wrapper = tmp / "flaky-exec"
    wrapper.write_text("#!/bin/sh\n"
                       f'if [ "$*" = "test -e {KUBELET_CONF}" ]; then\n'
                       "  echo 'ssh: connect to host: Connection reset by peer' >&2\n"
                       "  exit 255\n"
                       "fi\n"
                       f'exec {prefix} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return f"{wrapper}"


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_member_whose_kubelet_conf_probe_fails_is_never_reset(site: Site) -> None:  # noqa: F811
    """A joined worker whose `test -e kubelet.conf` fails in transport (not "absent": exit
    255, as ssh exits) was taken for a node that never joined: converge ran `kubeadm reset
    -f` on a live member (its leftovers check saw ca.crt, its etcd check saw none). Only a
    node known to lack kubelet.conf may be reset."""
    assert site.run().code == 0
    joined = site.node_file("test-node1", KUBELET_CONF)
    assert joined.is_file()
    calls = site.called()
    flaky = _flaky_prefix(site.tmp, site.roots["test-node1"].prefix)
    argv = [a if not a.startswith("--kubeadm-exec=test-node1=") else
            f"--kubeadm-exec=test-node1={flaky}" for a in site.argv()]
    from clirun import gen

    done = gen(*argv, cwd=site.repo, env=site.env(), timeout=300)
    assert "reset" not in site.called()[len(calls):], (site.called(), done.out + done.err)
    assert joined.is_file()
    assert done.code == 1, done.out + done.err
    assert "test-node1" in done.err and "kubelet.conf" in done.err


def test_verify_reports_a_name_that_is_not_utf8_as_a_mismatch(tmp_path: Path) -> None:
    """A file whose name is not UTF-8 (bytes a\\xff) in the rendered directory made `gen
    verify` exit 70 (UnicodeEncodeError while hashing the disk's subtrees to name the
    difference) instead of reporting the directory as modified (exit 4)."""
    import os
    import shutil

    from clirun import gen

    root = Path(__file__).resolve().parent.parent
    for name in ("environments", "blueprints"):
        shutil.copytree(root / name, tmp_path / name)
    (tmp_path / "lock").mkdir()
    shutil.copy(root / "lock" / "lab.lock", tmp_path / "lock" / "lab.lock")
    env = {**os.environ, "GEN_STORE": str(tmp_path / "store"), "GEN_SECRET_PULL": "{}",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert gen("render", "env/lab", cwd=tmp_path, env=env).code == 0
    assert gen("verify", "env/lab", cwd=tmp_path, env=env).code == 0
    stray = os.fsencode(tmp_path / "rendered" / "lab" / "hosts") + b"/a\xff"
    fd = os.open(stray, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"x")
    os.close(fd)
    found = gen("verify", "env/lab", cwd=tmp_path, env=env)
    assert found.code == 4, found.out + found.err
    assert "internal error" not in found.err
    assert "was modified after rendering" in found.err
    assert "+ hosts/a\\udcff" in found.err or "+ hosts/a" in found.err, found.err


@pytest.mark.daemons  # node roots: mount namespaces and overlays (root)
def test_a_damaged_cluster_json_is_refused_not_claimed(site: Site) -> None:  # noqa: F811
    """cluster.json says whose a kubeadm state directory is; one that no longer parses (a
    truncated write, an edit) was read as absent, so the directory, with another cluster's
    admin.conf and token, was claimed by this environment and used."""
    import json

    other = site.kubeadm / "k8s-lab"
    other.mkdir(parents=True, mode=0o700)
    whole = json.dumps({"domain": "prod.example.com", "firstControlPlane": "cp0"})
    (other / "admin.conf").write_text("apiVersion: v1\nkind: Config\n")
    for damaged in (whole[:-1], "[]", json.dumps({"domain": "prod.example.com"})):
        (other / "cluster.json").write_text(damaged)
        for command in ("plan", "converge"):
            refused = site.run(command=command)
            assert refused.code == 1, (damaged, refused.out + refused.err)
            assert f"{other / 'cluster.json'}" in refused.err, refused.err
        assert site.called() == [] and (other / "cluster.json").read_text() == damaged


def test_a_damaged_regex_cache_entry_costs_only_its_compiling(tmp_path: Path) -> None:
    """The regex cache builds each stored pattern on first use now, outside the guarded
    read of the file: one damaged entry (a file whose outer layer still reads) raised from
    inside `re.compile` on every later run, a traceback in any command, where a damaged
    file used to be ignored. Such an entry is compiled afresh and the file rewritten."""
    import marshal
    import os
    import shutil

    from clirun import gen

    root = Path(__file__).resolve().parent.parent
    for name in ("environments", "blueprints"):
        shutil.copytree(root / name, tmp_path / name)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "GEN_STORE": str(tmp_path / "store")}
    assert gen("validate", "env/lab", cwd=tmp_path, env=env).code == 0
    [stored] = (tmp_path / "cache" / "gen" / "regex").glob("*-validate.marshal")
    header, entries = marshal.loads(stored.read_bytes())
    stored.write_bytes(marshal.dumps(
        (header, [(pattern, flags, blob[: len(blob) // 2]) for pattern, flags, blob in entries])))
    again = gen("validate", "env/lab", cwd=tmp_path, env=env)  # asserts no traceback
    assert again.code == 0, again.out + again.err
    _, rewritten = marshal.loads(stored.read_bytes())

    def whole(blob: bytes) -> bool:
        try:
            marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            return False
        return True

    assert any(whole(blob) for _, _, blob in rewritten)  # those this run used, whole again
    assert gen("validate", "env/lab", cwd=tmp_path, env=env).code == 0


def test_a_damaged_kept_source_hash_costs_only_its_hashing(tmp_path: Path) -> None:
    """The render-cache key's kept source hashes (gen cache/sources): an entry that reads
    but is not (identity, sha256) made every later render exit 70 (IndexError) where a
    damaged file is meant to cost only the hashing it saves."""
    import marshal
    import os
    import shutil

    from clirun import gen

    root = Path(__file__).resolve().parent.parent
    for name in ("environments", "blueprints"):
        shutil.copytree(root / name, tmp_path / name)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "GEN_SECRET_PULL": "{}",
           "GEN_STORE": str(tmp_path / "store")}
    assert gen("render", "env/lab", cwd=tmp_path, env=env).code == 0
    [kept] = (tmp_path / "cache" / "gen" / "sources").iterdir()
    kind, where, known = marshal.loads(kept.read_bytes())
    for damaged in ((next(iter(known.values()))[0],), None, (1, 2, 3)):
        kept.write_bytes(marshal.dumps((kind, where, {**known, "cli.py": damaged})))
        again = gen("render", "env/lab", cwd=tmp_path, env=env)  # asserts no traceback
        assert again.code == 0, (damaged, again.out + again.err)
        assert "0 added, 0 changed, 0 removed" in again.out, again.out
