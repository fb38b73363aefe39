"""Shared helpers of the reconciler tests (tests/test_reconcile_*.py) and bench_reconcile.

`scale_lab` turns a scratch copy of lab A into something a test machine can run: an isolated
libvirt network (no host bridge), TCG domains (`type='qemu'`), 256 MiB per node, a pool in a
temp directory, tiny disks for helper and bootstrap and diskless PXE masters and workers.
"""

from __future__ import annotations

import re
from pathlib import Path

LAB_NODES = ("helper", "bootstrap", "master0", "master1", "master2", "worker0", "worker1")


def scale_lab(repo: Path, pool_dir: Path, memory: str = "256MiB") -> Path:
    """Rewrite `repo/environments/lab/env.yaml` in place; returns the env.yaml path."""
    path = repo / "environments" / "lab" / "env.yaml"
    text = path.read_text()
    text = text.replace("    bridge: br0\n\nhypervisors:",
                        "    libvirt: {mode: isolated}\n\nhypervisors:", 1)
    text = text.replace("domainType: kvm", "domainType: qemu", 1)
    text = text.replace("path: /var/lib/libvirt/images", f"path: {pool_dir}", 1)

    def node(match: re.Match[str]) -> str:
        line = match.group(0)
        role = re.search(r"role: (\w+)", line).group(1)  # type: ignore[union-attr]
        disks = "[{name: root, size: 16MiB}]" if role in ("helper", "bootstrap") else "[]"
        return line.replace("hypervisor: hv1,",
                            f"hypervisor: hv1, vcpu: 1, memory: {memory}, disks: {disks},", 1)

    text = re.sub(r"^  - \{name: \w+, role: .*\}$", node, text, flags=re.M)
    assert "mode: isolated" in text and "domainType: qemu" in text, "lab A's env.yaml changed"
    assert text.count("memory: ") == len(LAB_NODES), "lab A's node lines changed"
    path.write_text(text)
    return path


def edit_node(env_yaml: Path, node: str, old: str, new: str) -> None:
    """Replace `old` by `new` in the one line defining `node`."""
    lines = env_yaml.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if f"{{name: {node}," in line]
    assert len(hits) == 1 and old in lines[hits[0]], (node, old)
    lines[hits[0]] = lines[hits[0]].replace(old, new, 1)
    env_yaml.write_text("".join(lines))


def state_file(directory: Path) -> str:
    """A fresh, empty libvirt test-driver state; returns its test:/// URI."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "state.xml"
    path.write_text("<node/>\n")
    return f"test://{path}"
