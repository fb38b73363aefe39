"""A node's `image:` must name a disk-image artifact of artifacts.os: a typo, or an artifact
of another kind (a PXE kernel), is one validation error naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("env", "old", "new", "message"), [
    ("k8s-lab", "  - {name: test-node2, role: worker, hypervisor: hv1,",
     "  - {name: test-node2, role: worker, image: debian-12-genericclod, hypervisor: hv1,",
     "environments/k8s-lab/env.yaml:35:45: at nodes[2].image: image 'debian-12-genericclod' "
     "of node 'test-node2' names no artifact under artifacts.os (use one of: "
     "debian-12-genericcloud)"),
    ("lab", "image: centos-stream-9-genericcloud,", "image: rhcos-live-kernel,",
     "environments/lab/env.yaml:40:58: at nodes[0].image: image 'rhcos-live-kernel' of node "
     "'helper' is an OS artifact of kind kernel, not a disk image (use one of: "
     "centos-stream-9-genericcloud)"),
])
def test_a_wrong_node_image_is_a_validation_error(repo: Path, env: str, old: str, new: str,
                                                  message: str) -> None:
    path = repo / f"environments/{env}/env.yaml"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    result = subprocess.run([sys.executable, "-m", "generator", "validate", f"env/{env}"],
                            cwd=repo, capture_output=True, text=True, check=False)
    errors = [line for line in result.stderr.splitlines()
              if line and not line.startswith("warning:")]
    assert result.returncode == 1
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_the_committed_environments_name_their_images_right(repo: Path) -> None:
    for env in ("lab", "k8s-lab"):
        result = subprocess.run([sys.executable, "-m", "generator", "validate", f"env/{env}"],
                                cwd=repo, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
