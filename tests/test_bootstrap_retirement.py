"""Retiring the OpenShift bootstrap node through a reviewed change.

`cluster.bootstrapComplete: true` (set with `gen set`, or by `gen node remove ENV bootstrap`
together with the node's removal) takes the bootstrap out of HAProxy, DNS and DHCP; the
rendered configs still pass the real checkers; removing the node lets plan destroy its VM
and volume, only with --allow-destroy; `gen diff` shows the whole retirement as one change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import gen
from netns import Netns, netns
from test_dns import install_bind
from test_haproxy import (
    ask,
    ask_api,
    haproxy_check,
    lab_network,
    rendered_config,
    routes,
    start_api_backends,
    start_backends,
    start_haproxy,
    wait_states,
)
from test_reconcile_plan import Lab, converged, fresh_connections, lab  # noqa: F401

from generator.environment import load_environment
from generator.model import Environment
from generator.pipeline import render_environment
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_LINE = ("  - {name: bootstrap, role: bootstrap, hypervisor: hv1, "
                  "nics: [{network: lan, ip: 192.168.20.150}]}\n")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def retire(repo: Path) -> None:
    result = gen("set", "env/lab", "cluster.bootstrapComplete", "true", cwd=repo)
    assert result.code == 0, result.err


def render(repo: Path) -> tuple[Environment, Tree]:
    rendered = render_environment("env/lab", cwd=repo)
    return rendered.loaded.model, rendered.tree


def test_node_remove_bootstrap_is_one_validated_edit(repo: Path) -> None:
    env_yaml = repo / "environments/lab/env.yaml"
    before = env_yaml.read_text()
    result = gen("node", "remove", "env/lab", "bootstrap", cwd=repo)
    assert result.code == 0, result.err
    after = env_yaml.read_text()
    # the node goes, and the field that makes a bootstrap-less cluster valid comes beside
    # the release it belongs to: two lines a reviewer reads together
    assert after == before.replace(BOOTSTRAP_LINE, "").replace(
        '  version: "4.17"\n', '  version: "4.17"\n  bootstrapComplete: true\n')
    assert gen("validate", "env/lab", cwd=repo).code == 0


def test_a_cluster_that_has_not_bootstrapped_needs_its_bootstrap(repo: Path) -> None:
    env_yaml = repo / "environments/lab/env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace(BOOTSTRAP_LINE, ""))
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == 1
    assert result.err.splitlines() == [
        "environments/lab/env.yaml:40:3: at nodes: openshift UPI needs exactly one bootstrap "
        "node, found 0 (declare one node with role bootstrap, or set "
        "cluster.bootstrapComplete: true once the cluster has bootstrapped)"]


def test_kubeadm_has_no_bootstrap_to_retire(repo: Path) -> None:
    result = gen("set", "env/k8s-lab", "cluster.bootstrapComplete", "true", cwd=repo)
    assert result.code == 1
    assert "kubeadm clusters have no bootstrap to retire (remove cluster.bootstrapComplete)" \
        in result.err


def test_retired_bootstrap_leaves_the_boot_services_but_keeps_its_vm(repo: Path) -> None:
    env, tree = render(repo)
    assert "bootstrap" in rendered_config(env)[1]
    retire(repo)
    env, tree = render(repo)
    found = routes(rendered_config(env)[1])
    masters = ["master0", "master1", "master2"]
    assert [name for name, _, _ in found[6443][1]] == masters
    assert [name for name, _, _ in found[22623][1]] == masters
    assert b"bootstrap" not in tree["hosts/helper/dhcp/dhcpd.conf"]
    for zone in ("ocp4.example.com", "20.168.192.in-addr.arpa"):
        assert b"bootstrap" not in tree[f"hosts/helper/dns/zones/{zone}.zone"]
    # the VM stays until the node is removed (then plan destroys it, see below)
    assert "hypervisors/hv1/domains/bootstrap.xml" in tree


def test_retired_rendering_passes_the_real_checkers(repo: Path, tmp_path: Path) -> None:
    retire(repo)
    env, tree = render(repo)
    config = tmp_path / "haproxy.cfg"
    config.write_bytes(tree["hosts/helper/haproxy/haproxy.cfg"])
    with netns("hapc") as ns:
        checked = haproxy_check(ns, config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    conf = install_bind(tree, env, tmp_path / "bind")
    result = subprocess.run(["named-checkconf", "-z", conf], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for zone_file in sorted((tmp_path / "bind/zones").iterdir()):
        zone = zone_file.name.removesuffix(".zone")
        result = subprocess.run(["named-checkzone", "-k", "fail", "-n", "fail", zone,
                                 zone_file], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    dhcpd = tmp_path / "dhcpd.conf"
    dhcpd.write_bytes(tree["hosts/helper/dhcp/dhcpd.conf"])
    result = subprocess.run(["dhcpd", "-t", "-cf", dhcpd], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def test_diff_shows_the_retirement_as_one_change(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    git(site, "init", "-q", "-b", "main")
    git(site, "add", "-A")
    git(site, "commit", "-q", "-m", "site")
    assert gen("node", "remove", "env/lab", "bootstrap", cwd=site).code == 0
    result = gen("diff", "env/lab", "--no-color", "--detailed-exitcode", cwd=site)
    assert result.code == 2, result.err
    for line in ("  + environments/lab/env.yaml: cluster.bootstrapComplete: true",
                 "  - environments/lab/env.yaml: nodes[bootstrap]",
                 "  - domain hv1/bootstrap",
                 "  - volume hv1/bootstrap-root.qcow2",
                 "  - A bootstrap.ocp4.example.com.: 192.168.20.150",
                 "  - PTR 150.20.168.192.in-addr.arpa.: bootstrap.ocp4.example.com.",
                 "  - reservation bootstrap",
                 "  - backend api server bootstrap",
                 "  - backend machine-config server bootstrap"):
        assert line in result.out.splitlines(), line


def test_plan_destroys_the_bootstrap_vm_only_with_allow_destroy(lab: Lab) -> None:  # noqa: F811
    converged(lab)
    assert lab.conn().lookupByName("bootstrap")
    removed = gen("node", "remove", lab.env, "bootstrap", cwd=lab.repo)
    assert removed.code == 0, removed.err
    pruned = lab.gen("plan", "--prune")
    assert pruned.code == 3, pruned.out + pruned.err
    assert "  - libvirt domain hv1/bootstrap" in pruned.out
    assert "[destructive: needs --allow-destroy]" in pruned.out
    assert lab.gen("converge", "--auto-approve", "--prune").code == 3
    assert lab.conn().lookupByName("bootstrap")  # still there
    converged(lab, "--prune", "--allow-destroy")
    assert "bootstrap" not in {d.name() for d in lab.conn().listAllDomains(0)}
    pool = lab.conn().storagePoolLookupByName("default")
    assert "bootstrap-root.qcow2" not in pool.listVolumes()
    assert lab.gen("plan", "--prune", "--detailed-exitcode").code == 0


@pytest.mark.daemons
def test_real_haproxy_stops_sending_api_traffic_to_a_retired_bootstrap(
        repo: Path, tmp_path: Path) -> None:
    """With every master down the bootstrap (a backup server) answers the API; once retired,
    nobody does: the real HAProxy no longer routes 6443 or 22623 to it."""
    retire(repo)
    retired_env = load_environment("env/lab", repo).model
    _, config = rendered_config(retired_env)
    bootstrap = load_environment("env/lab", ROOT).model.node("bootstrap")
    with lab_network(load_environment("env/lab", ROOT).model) as (lb, nodes):
        start_backends(nodes, [f"{bootstrap.ip}:22623=bootstrap/22623"])
        start_api_backends(nodes, tmp_path, (bootstrap,))
        start_haproxy(lb, tmp_path, config, 6443)
        masters = {n: "DOWN" for n in ("master0", "master1", "master2")}
        wait_states(lb, "api", masters, 30)
        assert ask_api(lb) == ""
        assert "bootstrap" not in machine_config_answer(lb)


def machine_config_answer(ns: Netns) -> str:
    """What answers 22623 through HAProxy: "" when HAProxy closes or resets the connection."""
    try:
        return ask(ns, 22623)
    except AssertionError:  # reset: no server to send the connection to
        return ""
