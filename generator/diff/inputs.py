"""What a change does to the inputs themselves, and to the generator that renders them.

Some input changes alter behaviour without changing one rendered byte: a hypervisor `uri:`
is used by plan/converge only, a stream file may be read only by `gen lock`. A reviewer must
still see them, so `gen diff` lists every changed field of env.yaml and blueprint.yaml
(`nodes[worker1].memory: 8GiB -> 16GiB`) and every other changed file of the two
directories. Secret references are never shown, only `(sensitive value changed)`.

The generator is compared the same way: a side is rendered by the generator its revision
carries (`generator/` in the repo) or by the running one, and when the two differ the
report names the version and the changed source files, so a renderer-only pull request is
never reviewed blind.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.diff.semantic import SENSITIVE, Finding
from generator.model import SECRET_MARKER_PREFIX
from generator.reconcile import essence

# Keys whose whole subtree refers to a secret (a {env: VAR} or {file: PATH} reference).
SECRET_KEYS = frozenset({"pullSecret", "sshAuthorizedKeys", "passwords", "secrets"})
ENV_FILE, BLUEPRINT_FILE = "env.yaml", "blueprint.yaml"
# Inputs are read as a reviewer reads them: sorted keys, nodes and networks matched by name.
INPUTS = essence.Rules(lists="named")
OPS = {"add": "+", "remove": "-", "change": "~"}


@dataclass(frozen=True, slots=True)
class Inputs:
    """One side's inputs, keyed by role so a renamed environment still compares field by
    field: `documents` maps "env"/"blueprint" to (display path, parsed YAML), `files` maps
    (role, path inside its directory) to (display path, sha256)."""

    documents: Mapping[str, tuple[str, Any]]
    files: Mapping[tuple[str, str], tuple[str, str]]


NO_INPUTS = Inputs({}, {})


def read_inputs(root: Path, env_rel: str) -> Inputs:
    """The environment directory at `root/env_rel` and the blueprint its env.yaml names."""
    from generator.loader import read_yaml_file

    env_dir = root / env_rel
    if not (env_dir / ENV_FILE).is_file():
        return NO_INPUTS
    env_display = f"{env_rel}/{ENV_FILE}"
    env_data = read_yaml_file(env_dir / ENV_FILE, env_display, root).data
    documents: dict[str, tuple[str, Any]] = {"env": (env_display, env_data)}
    dirs = {"env": env_rel}
    blueprint = env_data.get("blueprint") if isinstance(env_data, dict) else None
    if isinstance(blueprint, str) and blueprint and "/" not in blueprint and \
            (root / "blueprints" / blueprint / BLUEPRINT_FILE).is_file():
        bp_display = f"blueprints/{blueprint}/{BLUEPRINT_FILE}"
        documents["blueprint"] = (bp_display,
                                  read_yaml_file(root / bp_display, bp_display, root).data)
        dirs["blueprint"] = f"blueprints/{blueprint}"
    files: dict[tuple[str, str], tuple[str, str]] = {}
    for role, rel in dirs.items():
        for inner, digest in _file_digests(root / rel).items():
            if inner not in (ENV_FILE, BLUEPRINT_FILE):
                files[(role, inner)] = (f"{rel}/{inner}", digest)
    return Inputs(documents, files)


def _file_digests(directory: Path) -> dict[str, str]:
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            found[path.relative_to(directory).as_posix()] = \
                hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def input_changes(old: Inputs, new: Inputs) -> list[Finding]:
    """Changed fields of the YAML documents, then other files added, removed or changed."""
    found: list[Finding] = []
    for role in ("env", "blueprint"):
        a, b = old.documents.get(role), new.documents.get(role)
        if a is None and b is None:
            continue
        if a is None or b is None:
            found.append(Finding("+" if a is None else "-", (b or a)[0]))  # type: ignore[index]
            continue
        name = b[0] if a[0] == b[0] else f"{b[0]} (was {a[0]})"
        found += [Finding(op, f"{name}: {path}", detail) for op, path, detail in
                  field_diff(a[1], b[1])]
    for key in sorted(set(old.files) | set(new.files)):
        fa, fb = old.files.get(key), new.files.get(key)
        if fa is None or fb is None or fa[1] != fb[1]:
            op = "+" if fa is None else "-" if fb is None else "~"
            found.append(Finding(op, (fb or fa)[0],  # type: ignore[index]
                                 "content changed" if op == "~" else ""))
    return found


def field_diff(old: Any, new: Any, path: str = "") -> list[tuple[str, str, str]]:
    """(op, field path, detail) rows; lists of named items are matched by name. An added
    mapping or named list is shown leaf by leaf: as one object, the key that sorts last (a
    new hypervisor's `uri`) would sit at the far end of a long line. A secret reference's
    subtree is one row."""
    rows: list[tuple[str, str, str]] = []
    for item in essence.compare(old, new, INPUTS, path):
        secret = _secret_part(item.path)
        if secret is not None:  # the reference itself added or removed, else changed
            op = OPS[item.op] if item.path == secret else "~"
            found = [(op, secret, "" if op == "-" else SENSITIVE)]
        elif item.op == "add":
            found = [_added_row(leaf) for leaf in essence.added(item.new, INPUTS, item.path)]
        elif item.op == "remove":
            found = [("-", item.path, "")]
        else:
            found = [("~", item.path or "(document)", _masked(item.old, item.new))]
        for row in found:  # a secret's leaves become one row
            if not rows or rows[-1] != row:
                rows.append(row)
    return rows


def _added_row(leaf: essence.DiffItem) -> tuple[str, str, str]:
    secret = _secret_part(leaf.path)
    if secret is not None:
        return ("+", secret, SENSITIVE)
    return ("+", leaf.path, _masked(leaf.new))


def _secret_part(path: str) -> str | None:
    """The leading part of `path` that names a secret reference (`nodes[a].passwords`)."""
    for part in re.finditer(r"[^.\[\]]+", path):
        if part.group() in SECRET_KEYS:
            end = part.end() + (path[part.end():part.end() + 1] == "]")
            return path[:end]
    return None


def _mentions_secret(value: Any) -> bool:
    return SECRET_MARKER_PREFIX in repr(value)


def _masked(*values: Any) -> str:
    """`old -> new` (or the one added value), unless a secret marker is in it."""
    if any(_mentions_secret(value) for value in values):
        return SENSITIVE
    return " -> ".join(_show(value) for value in values)


def _show(value: Any) -> str:
    import json

    if isinstance(value, str):
        text = value if value.isprintable() else json.dumps(value)  # newlines stay visible
    else:
        text = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    return text  # whole: a cut value could hide its end (a URI's host or query) from review


# --- the generator each side was rendered with ----------------------------------------------

@dataclass(frozen=True, slots=True)
class GeneratorId:
    """Who rendered a side: gen's version and the sha256 of each of its source files."""

    version: str
    where: str  # "generator/ at this revision" or "the running gen"
    sources: Mapping[str, str]


def generator_id(package_dir: Path, where: str) -> GeneratorId:
    """Identify the generator package at `package_dir` by version and source file hashes."""
    import re

    sources = {}
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts \
                and not path.name.endswith((".pyc", ".pyo")):
            sources[path.relative_to(package_dir).as_posix()] = \
                hashlib.sha256(path.read_bytes()).hexdigest()
    init = package_dir / "__init__.py"
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""",
                      init.read_text() if init.is_file() else "", re.M)
    return GeneratorId(match.group(1) if match else "unknown", where, sources)


def generator_changes(old: GeneratorId | None, new: GeneratorId | None) -> list[Finding]:
    """One finding when the two sides were rendered by different generators."""
    if old is None or new is None or old.sources == new.sources:
        return []
    changed = [f"generator/{name}" for name in sorted(set(old.sources) | set(new.sources))
               if old.sources.get(name) != new.sources.get(name)]
    shown = ", ".join(changed[:12]) + (f" and {len(changed) - 12} more"
                                       if len(changed) > 12 else "")
    version = old.version if old.version == new.version else f"{old.version} -> {new.version}"
    return [Finding("~", "generator",
                    f"gen {version} (base: {old.where}; head: {new.where}); "
                    f"{len(changed)} source file(s) changed: {shown}")]
