"""Lab B handed over to Argo CD or Flux: the one edit its golden variants and tests make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ENV_FILE = "environments/k8s-lab/env.yaml"
ANCHOR = "kubernetes:\n  cni:\n"
RENDERED_URL = "https://git.example.com/infra/rendered-k8s-lab.git"


def hand_off(repo: Path, engine: str, gitops: dict[str, Any] | None = None,
             raw: str | None = None) -> str:
    """Set lab B's `kubernetes.engine` (and `gitops`, as a flow mapping, or `raw` lines put
    verbatim under `kubernetes:`); return `FILE:LINE` of the first inserted line."""
    env_file = repo / ENV_FILE
    text = env_file.read_text()
    assert text.count(ANCHOR) == 1, ANCHOR
    lines = [f"  engine: {engine}"]
    if gitops is not None:
        lines.append(f"  gitops: {json.dumps(gitops)}")
    if raw is not None:
        lines.append(raw.rstrip("\n"))
    env_file.write_text(text.replace(ANCHOR, "kubernetes:\n" + "\n".join(lines) + "\n  cni:\n"))
    return f"{ENV_FILE}:{text[: text.index(ANCHOR)].count(chr(10)) + 2}"


def argocd(repo: Path) -> None:
    hand_off(repo, "argocd", {"url": RENDERED_URL, "branch": "main"})


def flux(repo: Path) -> None:
    hand_off(repo, "flux", {"url": "ssh://git@git.example.com/infra/rendered-k8s-lab.git",
                            "branch": "rendered/k8s-lab", "secretRef": "rendered-repo-key"})
