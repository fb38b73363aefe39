"""The mirror registry gen pushes to: `mirror.credentials` and `mirror.host` are checked by
`gen validate` (one line each, at the value's own position). The pushes themselves (TLS
against the environment's CA, credentials) run against real registries in
tests/test_images_mirror.py."""

from __future__ import annotations

from pathlib import Path

from clirun import gen

from generator.errors import EXIT_OK, EXIT_USER


def with_mirror(repo: Path, body: str) -> Path:
    env_yaml = repo / "environments" / "k8s-lab" / "env.yaml"
    env_yaml.write_text(env_yaml.read_text() + "\nmirror:\n" + body)
    return env_yaml


def test_credentials_must_name_a_declared_secret(repo: Path) -> None:
    env_yaml = with_mirror(repo, "  registry: mirror.site.example:5000\n"
                                 "  credentials: mirror-push\n")
    result = gen("validate", "env/k8s-lab", cwd=repo)
    line = len(env_yaml.read_text().splitlines())
    assert result.code == EXIT_USER
    assert (f"environments/k8s-lab/env.yaml:{line}:16: at mirror.credentials: secret "
            "'mirror-push' is not declared") in result.err, result.err
    env_yaml.write_text(env_yaml.read_text()
                        + "\nsecrets:\n  mirror-push: {env: GEN_SECRET_MIRROR_PUSH}\n")
    assert gen("validate", "env/k8s-lab", cwd=repo).code == EXIT_OK


def test_host_must_name_a_node(repo: Path) -> None:
    with_mirror(repo, "  registry: mirror.site.example:5000\n  host: nowhere\n")
    result = gen("validate", "env/k8s-lab", cwd=repo)
    assert result.code == EXIT_USER
    assert "at mirror.host: node 'nowhere' does not exist (name one of: " in result.err

