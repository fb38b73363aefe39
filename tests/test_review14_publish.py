"""Review 14, still open after findings 1-9: what converge publishes into the served roots.

- A published file (a DHCP boot file) never replaces a rendered file, gen's state or a
  directory gen renders into; validation refuses such names (tests/hostile/input.yaml,
  `bootfile-*`), and the files provider refuses them again (defence in depth).
- `manifest.json` (gen's publish list) is never installed on the target, and the
  ownership record `.gen-managed.json` is not world-readable: in the TFTP root either
  would show anyone who can TFTP the whole layout.

The files provider is the real one, writing under a scratch root on this machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clirun import gen, helper_on_debian
from fstree import snapshot

from generator.errors import UserError
from generator.families import Pins
from generator.pipeline import render_environment
from generator.reconcile.files import FilesProvider, Target

ROOT = Path(__file__).resolve().parent.parent
TFTP = "hosts/helper/tftp/manifest.json"
# lab A's helper as a Debian host (helper_on_debian): its TFTP root and GRUB's grub/ prefix
TFTP_ROOT = "srv/tftp"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForTests gen@test"


@pytest.fixture
def debian(repo: Path) -> Path:
    """The scratch repo with lab A's helper on Debian, this machine's layout."""
    helper_on_debian(repo)
    return repo


@pytest.fixture
def home(tmp_path: Path) -> Path:
    where = tmp_path / "home"
    (where / ".config/gen/secrets").mkdir(parents=True)
    (where / ".config/gen/secrets/id_rsa.pub").write_text(PUBLIC_KEY + "\n")
    return where


def _converge(repo: Path, root: Path, home: Path, *extra: str):  # type: ignore[no-untyped-def]
    env = {**os.environ, "HOME": str(home)}
    env.pop("GEN_SECRETS_DIR", None)
    return gen("converge", "env/lab", "--auto-approve", "--provider", "files",
               "--files-target", f"helper={root}", "--state-dir", str(root.parent / "state"),
               *extra, cwd=repo, env=env)


def test_manifest_is_never_installed_and_state_is_not_world_readable(
        debian: Path, tmp_path: Path, home: Path) -> None:
    root = tmp_path / "root"
    result = _converge(debian, root, home)
    assert result.code == 0, result.err
    assert (root / TFTP_ROOT / "pxelinux.0").is_file()  # publishing still works
    assert (root / TFTP_ROOT / "grub/grub.cfg").is_file()
    assert sorted(root.rglob("manifest.json")) == []
    managed = sorted(root.rglob(".gen-managed.json"))
    assert managed, "converge keeps its ownership record"
    for record in managed:
        assert record.stat().st_mode & 0o777 == 0o600, record
        assert not any(p.endswith("/manifest.json")
                       for p in json.loads(record.read_text())["files"])


def test_a_manifest_an_earlier_gen_installed_is_removed(debian: Path, tmp_path: Path,
                                                        home: Path) -> None:
    root = tmp_path / "root"
    assert _converge(debian, root, home).code == 0
    tftp = root / TFTP_ROOT
    (tftp / "manifest.json").write_text('{"files": {}}')  # what earlier versions left
    record = json.loads((tftp / ".gen-managed.json").read_text())
    record["files"][f"/{TFTP_ROOT}/manifest.json"] = "sha256:" + "0" * 64
    (tftp / ".gen-managed.json").write_text(json.dumps(record))
    result = _converge(debian, root, home)  # no --prune: this one file is gen's own leak
    assert result.code == 0, result.err
    assert not (tftp / "manifest.json").exists()
    assert (tftp / "pxelinux.0").is_file()


@pytest.mark.parametrize("published", ["grub/grub.cfg", "boot.ipxe", ".gen-managed.json",
                                       "manifest.json", "grub", "pxelinux.cfg"])
def test_the_provider_never_publishes_over_what_gen_renders(debian: Path, tmp_path: Path,
                                                            home: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            published: str) -> None:
    """A manifest that got past validation (a hand-edited tree, a future renderer bug)."""
    monkeypatch.setenv("HOME", str(home))
    rendered = render_environment("env/lab", cwd=debian, pins=Pins())
    tree = dict(rendered.tree)
    manifest = json.loads(tree[TFTP])
    manifest["files"][published] = {"source": "package",
                                    "path": "/usr/lib/PXELINUX/pxelinux.0"}
    tree[TFTP] = json.dumps(manifest).encode()
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot(tmp_path)
    files = FilesProvider(targets={"helper": Target(str(root))})
    with pytest.raises(UserError) as caught:
        files.plan(rendered.loaded.model, files.scope(tree))
    (line,) = caught.value.lines()
    assert line.startswith(f'manifest.json publishes "/{TFTP_ROOT}/{published}", which '
                           "would replace")
    assert snapshot(tmp_path) == before
