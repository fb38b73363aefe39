"""gen new: each blueprint scaffolds an environment that validates, renders and locks."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import gen

ANSWERS = {
    "openshift-upi": "cluster_name: edge\nbase_domain: corp.test\nsubnet: 10.20.0.0/24\n"
                     "masters: 3\nworkers: 3\nworker_memory: 16GiB\ndns_provider: dnsmasq\n",
    "kubeadm": "cluster_name: k8s2\nsubnet: 10.30.0.0/26\nmasters: 3\nworkers: 2\n",
    "kolla-aio": "subnet: 10.40.0.0/24\ninternal_vip_host: 200\ncinder_size: 50GiB\n",
}


@pytest.mark.parametrize("blueprint", sorted(ANSWERS))
def test_new_validates_renders_and_locks(repo: Path, blueprint: str) -> None:
    answers = repo / "answers.yaml"
    answers.write_text(ANSWERS[blueprint])
    result = gen("new", "site1", "--blueprint", blueprint, "--answers", str(answers), cwd=repo)
    assert result.code == 0, result.err
    env_file = repo / "environments" / "site1" / "env.yaml"
    assert f"blueprint: {blueprint}" in env_file.read_text()
    assert gen("validate", "env/site1", cwd=repo).code == 0
    rendered = gen("render", "env/site1", "--format", "json", cwd=repo)
    assert rendered.code == 0, rendered.err
    assert (repo / "rendered" / "site1" / "hypervisors" / "hv1" / "pools" / "default.xml").is_file()
    assert (repo / "lock" / "site1.lock").is_file()


def test_answers_reach_the_environment(repo: Path) -> None:
    answers = repo / "answers.yaml"
    answers.write_text(ANSWERS["openshift-upi"])
    assert gen("new", "site2", "--blueprint", "openshift-upi", "--answers", str(answers),
               cwd=repo).code == 0
    text = (repo / "environments" / "site2" / "env.yaml").read_text()
    assert "baseDomain: corp.test" in text and "provider: dnsmasq" in text
    assert text.count("role: worker") == 3 and text.count("role: master") == 3
    assert "worker: {vcpu: 2, memory: 16GiB}" in text
    assert "ip: 10.20.0.10}" in text  # the helper takes first_host


def test_subnet_too_small_fails_before_writing(repo: Path) -> None:
    answers = repo / "answers.yaml"
    answers.write_text("subnet: 10.0.0.0/28\nmasters: 3\nworkers: 4\n")
    before = sorted(p.name for p in repo.iterdir())
    result = gen("new", "tiny", "--blueprint", "openshift-upi", "--answers", str(answers),
                 cwd=repo)
    assert result.code == 1
    assert result.err.strip() == (
        "subnet 10.0.0.0/28 has 5 free address(es) from host 10 on, but 9 nodes need one "
        "each (use a larger subnet, a lower first_host, or fewer nodes)")
    assert not (repo / "environments" / "tiny").exists()
    assert sorted(p.name for p in repo.iterdir()) == before  # no scratch dir left behind


def test_invalid_answer_caught_by_validation_writes_nothing(repo: Path) -> None:
    answers = repo / "answers.yaml"
    answers.write_text("masters: 2\n")
    result = gen("new", "even", "--blueprint", "openshift-upi", "--answers", str(answers),
                 cwd=repo)
    assert result.code == 1
    assert "2 control-plane nodes cannot keep etcd quorum well" in result.err
    assert not (repo / "environments" / "even").exists()


def test_existing_environment_is_not_overwritten(repo: Path) -> None:
    before = (repo / "environments" / "lab" / "env.yaml").read_bytes()
    result = gen("new", "lab", "--blueprint", "openshift-upi", "--no-input", cwd=repo)
    assert (result.code, result.err.strip()) == (
        1, "environments/lab already exists (pick another name)")
    assert (repo / "environments" / "lab" / "env.yaml").read_bytes() == before
