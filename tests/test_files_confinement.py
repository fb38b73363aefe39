"""The files provider against hostile rendered paths and a hostile target, on a real target
root in a temp dir: nothing is written, staged or pruned outside a service's install
directory, and no symlink on the target carries a write or a deletion elsewhere.

The schema may refuse such names earlier; these tests assume it does not (defence in depth)
and hand the provider the hostile tree directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import gen
from fstree import snapshot

from generator.errors import UserError
from generator.reconcile.files import FilesProvider, Target

ROOT = Path(__file__).resolve().parent.parent
PXELINUX = "/usr/lib/PXELINUX/pxelinux.0"


@pytest.fixture(scope="module")
def lab(debian_lab):  # type: ignore[no-untyped-def]
    return debian_lab


@pytest.fixture
def tftp(lab):
    """lab's tftp subtree only: no checker or reload, so each case is quick."""
    env, tree = lab
    return env, {p: c for p, c in tree.items() if p.startswith("hosts/helper/tftp/")}


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    """(target root, a victim directory beside it holding a precious file)."""
    root, victim = tmp_path / "deep/er/root", tmp_path / "victim"
    root.mkdir(parents=True)
    victim.mkdir()
    (victim / "victim.txt").write_text("precious\n")
    return root, victim


def provider(root: Path, prune: bool = False) -> FilesProvider:
    return FilesProvider(targets={"helper": Target(str(root))}, prune=prune)


def converge(files: FilesProvider, env, tree) -> None:
    for action in files.plan(env, files.scope(tree)):
        files.apply(action)


def with_manifest(tree, **changes):
    """The tree with tftp's manifest.json edited: files and directories merged in."""
    manifest = json.loads(tree["hosts/helper/tftp/manifest.json"])
    for key, value in changes.items():
        manifest.setdefault(key, {} if isinstance(value, dict) else [])
        if isinstance(value, dict):
            manifest[key].update(value)
        else:
            manifest[key] += value
    return {**tree, "hosts/helper/tftp/manifest.json": json.dumps(manifest).encode()}


def assert_refused_untouched(files, env, tree, places, match: str) -> None:
    root, victim = places
    before, outside = snapshot(root), snapshot(victim)
    with pytest.raises(UserError, match=match):
        converge(files, env, tree)
    assert snapshot(root) == before, "nothing changed on the target"
    assert snapshot(victim) == outside, "nothing changed outside it"


# ---- hostile rendered paths ------------------------------------------------------------------

ESCAPES = ["../../../../victim/victim.txt", "pxelinux.cfg/../../../../../victim/victim.txt",
           "/../../../../victim/victim.txt", "grub//x", "./x", "grub/.", "a\nb", "a\x00b"]


@pytest.mark.parametrize("rel", ESCAPES)
def test_a_published_path_that_leaves_the_root_is_refused_before_any_change(
        tftp, places, rel: str) -> None:
    # what `bootFiles.uefi: ../../../../../victim.txt` put into tftp's manifest.json
    env, tree = tftp
    hostile = with_manifest(tree, files={rel: {"source": "package", "path": PXELINUX}})
    assert_refused_untouched(provider(places[0]), env, hostile, places,
                             "is not a plain relative path inside /srv/tftp")


@pytest.mark.parametrize("rel", ESCAPES[:3])
def test_a_rendered_file_path_that_leaves_the_root_is_refused(tftp, places, rel: str) -> None:
    env, tree = tftp
    hostile = {**tree, f"hosts/helper/tftp/{rel.lstrip('/')}": b"overwritten\n"}
    assert_refused_untouched(provider(places[0]), env, hostile, places,
                             "is not a plain relative path inside /srv/tftp")


def test_a_manifest_directory_that_leaves_the_root_is_refused(tftp, places) -> None:
    env, tree = tftp
    hostile = with_manifest(tree, directories=["../../../../../victim/made-by-gen"])
    assert_refused_untouched(provider(places[0]), env, hostile, places,
                             "a directory manifest.json asks for")


def test_a_package_file_outside_usr_is_never_copied_into_a_served_root(tftp, places,
                                                                         tmp_path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000::::::\n")
    env, tree = tftp
    hostile = with_manifest(tree, files={"shadow": {"source": "package", "path": str(secret)}})
    assert_refused_untouched(provider(places[0]), env, hostile, places, "is not below /usr")
    assert not (places[0] / "srv/tftp/shadow").exists()


# ---- prune -----------------------------------------------------------------------------------


def test_prune_never_deletes_a_managed_path_outside_the_root(tftp, places) -> None:
    root, victim = places
    env, tree = tftp
    converge(provider(root), env, tree)
    managed_file = root / "srv/tftp/.gen-managed.json"
    managed = json.loads(managed_file.read_text())
    # what an earlier hostile render (or an edit on the target) recorded as installed
    escape = "/srv/tftp/../../../../../victim/victim.txt"
    managed["files"][escape] = "sha256:" + "0" * 64
    managed_file.write_text(json.dumps(managed))
    files = provider(root, prune=True)
    converge(files, env, tree)
    assert (victim / "victim.txt").read_text() == "precious\n"
    assert any("never pruned" in note and "victim.txt" in note for note in files.notices)


# ---- symlinks on the target ------------------------------------------------------------------


def test_a_symlinked_directory_in_the_install_dir_is_not_written_through(tftp, places) -> None:
    root, victim = places
    env, tree = tftp
    (root / "srv/tftp").mkdir(parents=True)
    (root / "srv/tftp/pxelinux.cfg").symlink_to(victim)
    assert_refused_untouched(provider(root), env, tree, places,
                             "/srv/tftp/pxelinux.cfg.* is a symlink on the target")


def test_a_symlinked_staging_directory_is_not_followed(tftp, places) -> None:
    root, victim = places
    env, tree = tftp
    (victim / "tftp").mkdir()
    (victim / "tftp/keep").write_text("keep\n")
    (root / ".gen-staging").symlink_to(victim)
    assert_refused_untouched(provider(root), env, tree, places,
                             "/.gen-staging.* is a symlink on the target")


def test_prune_does_not_delete_through_a_symlinked_directory(tftp, places) -> None:
    root, victim = places
    env, tree = tftp
    converge(provider(root), env, tree)
    ipxe = root / "srv/tftp/ipxe"
    gone = sorted(p for p in tree if "/ipxe/" in p)[0]
    name = gone.rsplit("/", 1)[1]
    # the directory holding a file that is about to be pruned becomes a link elsewhere
    for child in ipxe.iterdir():
        (victim / child.name).write_bytes(child.read_bytes())
    for child in ipxe.iterdir():
        child.unlink()
    ipxe.rmdir()
    ipxe.symlink_to(victim)
    smaller = {p: c for p, c in tree.items() if p != gone}
    assert_refused_untouched(provider(root, prune=True), env, smaller, places,
                             "is a symlink on the target")
    assert (victim / name).is_file()


# ---- through the CLI -------------------------------------------------------------------------


def test_cli_converge_with_an_escaping_boot_file_changes_nothing_outside(repo: Path,
                                                                          places) -> None:
    root, victim = places
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    assert text.count("services:\n") == 1
    escape = "../../../../../../../../victim/victim.txt"
    env_file.write_text(text.replace("services:\n", "services:\n  dhcp:\n    bootFiles:\n"
                                     f"      uefi: {escape}\n", 1))
    before, outside = snapshot(root), snapshot(victim)
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", f"helper={root}", "--reload=tftp=true",
                 "--state-dir", str(root.parent / "state"), cwd=repo)
    assert result.code == 1, result.out + result.err
    assert snapshot(victim) == outside
    assert snapshot(root) == before


# ---- secret references read on the target ----------------------------------------------------


def test_a_secret_file_reference_is_a_path_never_shell_text(lab, places, tmp_path) -> None:
    from generator.model import SecretRef

    root, _ = places
    env, tree = lab
    pwned = tmp_path / "pwned"
    ref = SecretRef("nfsToken", "file", f"/nonexistent; touch {pwned}; $(touch {pwned})")
    exports = "hosts/helper/nfs/gen.exports"
    hostile = {exports: tree[exports] + f"# token {ref.marker()}\n".encode()}
    hostile_env = env.__class__(**{**{f: getattr(env, f) for f in env.__dataclass_fields__},
                                   "secrets": (ref,)})
    files = FilesProvider(targets={"helper": Target(str(root))}, reloads={"nfs": ("true",)})
    (action,) = files.plan(hostile_env, files.scope(hostile))
    with pytest.raises(UserError, match="secret 'nfsToken': a file secret reference must be"):
        files.apply(action)
    assert not pwned.exists(), "the reference ran as shell code"
    assert not (root / "etc/exports.d/gen.exports").exists()


# ---- NFS export directories: absolute by nature ----------------------------------------

def nfs_tree(lab, directories: list[object]):
    env, tree = lab
    nfs = {p: c for p, c in tree.items() if p.startswith("hosts/helper/nfs/")}
    nfs["hosts/helper/nfs/manifest.json"] = json.dumps(
        {"exportDirectories": directories}).encode()
    return env, nfs


@pytest.mark.parametrize("entry", [
    {"path": "/etc", "owner": "nobody", "group": "nogroup", "mode": "0777"},
    {"path": "/usr/lib", "owner": "root", "group": "root", "mode": "0755"},
    {"path": "/exports/../etc", "owner": "root", "group": "root", "mode": "0755"},
    {"path": "exports", "owner": "root", "group": "root", "mode": "0755"},
    {"path": "/exports/x", "owner": "root;reboot", "group": "root", "mode": "0755"},
    {"path": "/exports/x", "owner": "root", "group": "root", "mode": "u+s"},
    {"path": "/exports/x"},
])
def test_hostile_export_directories_are_refused_before_anything_changes(
        lab, places, entry) -> None:
    env, tree = nfs_tree(lab, [entry])
    assert_refused_untouched(provider(places[0]), env, tree, places,
                             "is not a plain directory outside the system trees")


def test_an_export_directory_through_a_symlink_is_refused(lab, places) -> None:
    root, victim = places
    env, tree = nfs_tree(lab, [{"path": "/exports/registry", "owner": "nobody",
                                "group": "nogroup", "mode": "0777"}])
    (root / "exports").symlink_to(victim)  # chown/chmod would follow it to the victim
    before = victim.stat()
    files = provider(root)
    files.reloads = {"nfs": ("true",)}
    with pytest.raises(UserError, match="is a symlink on the target"):
        converge(files, env, tree)
    after = victim.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert not (victim / "registry").exists()
    assert not (root / "etc/exports.d/gen.exports").exists(), "refused before the swap"
