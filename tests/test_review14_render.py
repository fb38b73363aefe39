"""Escapes found by the adversarial review of issue 14 (hostile pull requests) in what gen
renders: each test is one finding's reproduction, which must now fail cleanly."""

from __future__ import annotations

from pathlib import Path

from clirun import gen

KOLLA_ANSWERS = "subnet: 10.40.0.0/24\ninternal_vip_host: 200\ncinder_size: 50GiB\n"


def test_template_jinja_cannot_reach_python(repo: Path, tmp_path: Path) -> None:
    """B4: a blueprint's template file is PR-controlled; Jinja reaching `__globals__` must
    not run a command at `gen new`."""
    proof = tmp_path / "pwn_template"
    env_template = (repo / "blueprints" / "kolla-aio" / "template"
                    / "{{cookiecutter.env_name}}" / "env.yaml")
    payload = ("# {{ cycler.__init__.__globals__.os.popen('id > " + str(proof)
               + "').read() }}\n")
    env_template.write_text(payload + env_template.read_text())
    answers = repo / "answers.yaml"
    answers.write_text(KOLLA_ANSWERS)
    before = sorted(p.name for p in repo.iterdir())
    result = gen("new", "x2", "--blueprint", "kolla-aio", "--answers", str(answers), cwd=repo)
    assert result.code == 1, result.err
    assert not proof.exists()
    assert len(result.err.strip().splitlines()) == 1
    assert "sandbox refuses" in result.err and "Traceback" not in result.err
    assert not (repo / "environments" / "x2").exists()
    assert sorted(p.name for p in repo.iterdir()) == before


def _new_aio(repo: Path) -> Path:
    answers = repo / "answers.yaml"
    answers.write_text(KOLLA_ANSWERS)
    assert gen("new", "aio", "--blueprint", "kolla-aio", "--answers", str(answers),
               cwd=repo).code == 0
    return repo / "environments" / "aio" / "env.yaml"


def _refused(repo: Path, *expected: str) -> None:
    for command in ("validate", "render"):
        result = gen(command, "env/aio", cwd=repo)
        assert result.code == 1, (command, result.err)
        assert "Traceback" not in result.err
        for text in expected:
            assert text in result.err, (command, result.err)
    assert not (repo / "rendered" / "aio").exists()


def test_kolla_fields_in_env_cannot_add_inventory_sections(repo: Path) -> None:
    """B1: `openstack.kollaAnsible` from env.yaml lands in an INI inventory; a newline in
    `version` or a `children` key used to add `[all:vars]` with an interpreter of the PR's."""
    env_file = _new_aio(repo)
    env_file.write_text(env_file.read_text().replace("openstack:\n", (
        "openstack:\n"
        "  kollaAnsible:\n"
        '    version: "18.8.0\\n[all:vars]\\nansible_python_interpreter=/tmp/evil"\n'
        '    openstackRelease: "2024.1"\n'
        "    hostGroups: [control]\n"
        "    passwords: [database_password]\n"
        '    children: {"x:children]\\nfoo\\n[all:vars]\\nansible_become_exe=/tmp/evil\\n[y":'
        " [control]}\n"), 1))
    _refused(repo, "at openstack.kollaAnsible.version: ", "is not a kolla-ansible version",
             "at openstack.kollaAnsible.children: ", "is not an Ansible group name")


def test_kolla_host_group_in_blueprint_is_typed(repo: Path) -> None:
    """B1: the blueprint's release data is PR-controlled as well."""
    _new_aio(repo)
    blueprint = repo / "blueprints" / "kolla-aio" / "blueprint.yaml"
    text = blueprint.read_text()
    assert "hostGroups: [control," in text
    blueprint.write_text(text.replace(
        "hostGroups: [control,",
        "hostGroups: [\"control]\\nlocalhost ansible_connection=local\\n[all:vars]\\n"
        "ansible_ssh_common_args='-o ProxyCommand=sh'\\n[x\",", 1))
    _refused(repo, "at openstack.kollaAnsible.hostGroups[0]: ", "is not an Ansible group name")


def test_kolla_children_bounded(repo: Path) -> None:
    """B1: every kolla list and map has an upper bound (threat model: bounded input)."""
    env_file = _new_aio(repo)
    groups = ", ".join(f"g{i}: [control]" for i in range(1001))
    env_file.write_text(env_file.read_text().replace("openstack:\n", (
        "openstack:\n"
        "  kollaAnsible:\n"
        "    version: 18.8.0\n"
        '    openstackRelease: "2024.1"\n'
        "    hostGroups: [control]\n"
        "    passwords: [database_password]\n"
        f"    children: {{{groups}}}\n"), 1))
    _refused(repo, "at openstack.kollaAnsible.children: ")
