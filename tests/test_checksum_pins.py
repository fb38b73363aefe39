"""OS images pinned offline from an excerpt of the distribution's own checksum file
(`checksums: {file: ...}` beside env.yaml or blueprint.yaml), like RHCOS from its stream."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clirun import gen

ROOT = Path(__file__).resolve().parent.parent
EXCERPT = "blueprints/openshift-upi/CentOS-Stream-GenericCloud-9-x86_64-CHECKSUM"
KEY = "os/centos-stream-9-genericcloud"


def lock(repo: Path) -> tuple[int, str]:
    done = gen("lock", "--offline", "env/lab", cwd=repo,
               env={"GEN_STORE": str(repo / "store"), "HOME": str(repo),
                    "PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    return done.code, done.out + done.err


def test_the_helper_image_is_pinned_offline_from_the_shipped_excerpt(repo: Path) -> None:
    code, text = lock(repo)
    assert code == 0, text
    entry = json.loads((repo / "lock/lab.lock").read_text())["inputs"][KEY]
    name, _, sha = (ROOT / EXCERPT).read_text().strip().partition(") = ")
    assert entry["locked"]["location"].endswith("/" + name.removeprefix("SHA256 ("))
    assert entry["locked"]["sha256"] == sha
    assert entry["original"]["checksums"] == {"file": Path(EXCERPT).name}


def test_sha256sum_lines_are_read_too(repo: Path) -> None:
    url = "https://cloud.centos.org/centos/9-stream/x86_64/images/" \
          "CentOS-Stream-GenericCloud-9-20250428.0.x86_64.qcow2"
    (repo / EXCERPT).write_text(f"{'ab' * 32}  other.qcow2\n{'cd' * 32} *{url.rsplit('/', 1)[1]}\n")
    code, text = lock(repo)
    assert code == 0, text
    assert json.loads((repo / "lock/lab.lock").read_text())["inputs"][KEY]["locked"][
        "sha256"] == "cd" * 32


def test_an_excerpt_without_the_image_is_one_clean_line(repo: Path) -> None:
    (repo / EXCERPT).write_text("SHA256 (CentOS-Stream-GenericCloud-9-20240101.0.x86_64.qcow2)"
                                f" = {'ef' * 32}\n")
    code, text = lock(repo)
    lines = [line for line in text.splitlines() if line and not line.startswith("warning")]
    assert code == 1 and len(lines) == 1, text
    assert lines[0].startswith(f"{KEY}: CentOS-Stream-GenericCloud-9-x86_64-CHECKSUM lists no "
                               "sha256 for CentOS-Stream-GenericCloud-9-20250428.0.x86_64.qcow2")
    assert not (repo / "lock/lab.lock").exists()
