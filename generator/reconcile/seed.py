"""cloud-init NoCloud seed ISOs, built at converge (secrets filled in) and byte-reproducible.

The cloud-init family renders `clusters/<c>/cloud-init/<node>/{user-data,meta-data,
network-config,seed.json}`; seed.json names the volume, pool, hypervisor and label. The ISO
is built with xorriso (`-as mkisofs`, Joliet + Rock Ridge) from a staging dir whose files
all carry the same fixed mtime, with SOURCE_DATE_EPOCH fixing the volume dates: the same
inputs give the same bytes. (genisoimage stamps the build time into the volume descriptor
and has no option to fix it, so it cannot be reproducible.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from generator.errors import UserError
from generator.model import SecretRef
from generator.reconcile.secrets import MARKER_BYTES, checked_value, read_local
from generator.records import record
from generator.tree import Tree

SEED = re.compile(r"^clusters/[^/]+/cloud-init/([^/]+)/seed\.json$")
EPOCH = 1  # fixed timestamp for every file and volume date in the image


@record
class Seed:
    """One node's seed as rendered: where it goes and the files it holds (markers intact)."""

    node: str
    volume: str
    pool: str
    hypervisor: str
    label: str
    files: tuple[tuple[str, bytes], ...]


def seeds(tree: Tree, hypervisor: str) -> list[Seed]:
    """The seeds rendered for one hypervisor."""
    out = []
    for path in sorted(tree):
        match = SEED.match(path)
        if not match:
            continue
        info = json.loads(tree[path])
        if info.get("hypervisor") != hypervisor:
            continue
        base = path.rsplit("/", 1)[0]
        files = tuple((name, tree[f"{base}/{name}"]) for name in sorted(info["files"]))
        out.append(Seed(match.group(1), info["volume"], info["pool"], hypervisor,
                        info.get("label", "cidata"), files))
    return out


def fill_secrets(content: bytes, refs: Iterable[SecretRef],
                 read: Callable[[SecretRef], bytes] | None = None) -> bytes:
    """Replace `@@gen-secret:NAME@@` markers with the values of the named references."""
    by_name = {ref.name: ref for ref in refs}
    reader = read or read_local

    def value(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode()
        if name not in by_name:
            raise UserError(f"seed refers to unknown secret '{name}'",
                            "declare it in the environment")
        return checked_value(by_name[name], reader(by_name[name]))

    return MARKER_BYTES.sub(value, content)


def build_iso(files: Iterable[tuple[str, bytes]], label: str = "cidata") -> bytes:
    """A NoCloud seed: ISO 9660 + Joliet + Rock Ridge, volume id `label`, reproducible."""
    tool = shutil.which("xorriso")
    if tool is None:
        raise UserError("xorriso is not installed (needed to build cloud-init seed ISOs)",
                        "apt-get install xorriso")
    with tempfile.TemporaryDirectory(prefix="gen-seed-") as tmp:
        root = Path(tmp) / "seed"
        root.mkdir()
        for name, content in files:
            (root / name).write_bytes(content)
            os.utime(root / name, (EPOCH, EPOCH))
        os.utime(root, (EPOCH, EPOCH))
        out = Path(tmp) / "seed.iso"
        proc = subprocess.run(
            [tool, "-as", "mkisofs", "-quiet", "-output", str(out), "-volid", label,
             "-joliet", "-rock", str(root)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
        if proc.returncode != 0:
            raise UserError(f"xorriso failed to build the seed ISO: {proc.stderr.strip()}")
        return out.read_bytes()


def volume_xml(name: str, size: int) -> str:
    """A raw volume exactly the ISO's size."""
    return (f"<volume type='file'><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
            "<target><format type='raw'/></target></volume>")
