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
