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
