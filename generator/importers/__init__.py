"""Importers: describe what already exists (a helper-node vars file, a live libvirt host) as
an environment, so a running lab can be adopted instead of retyped.

An importer is pure: it reads its input (text, or live state handed to it) and returns an
`Imported`: the environment as ruamel round-trip data (comments on every value it could not
infer) and one report line per input field (mapped, or not supported and why). Writing goes
through `write_environment`, which validates the result before anything reaches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from generator.errors import Location, Problem


@dataclass(frozen=True, slots=True)
class Line:
    """One report line about one input field: `mapped` to an environment path, or not."""

    location: Location
    status: str  # mapped | not supported | refused
    detail: str

    def render(self) -> str:
        return f"{self.location.prefix()}: {self.status}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {"file": self.location.file, "line": self.location.line,
                "column": self.location.column, "field": self.location.path,
                "status": self.status, "detail": self.detail}


@dataclass(slots=True)
class Imported:
    """What an importer found: the environment (round-trip data) and the report."""

    data: CommentedMap
    lines: list[Line] = field(default_factory=list)

    @property
    def refused(self) -> list[Line]:
        return [line for line in self.lines if line.status == "refused"]

    def problems(self) -> list[Problem]:
        return [Problem(f"refused: {line.detail}", line.location) for line in self.refused]


def blame_source(problems: list[Problem], imported: Imported, source: str,
                 env_file: str) -> list[Problem]:
    """Validation problems of the candidate environment (never written, so its lines mean
    nothing to the user) moved to the input line the value came from, naming the
    environment field; a problem no report line explains names the source and the field."""
    targets = [(line, line.detail[3:].split(" ")[0]) for line in imported.lines
               if line.status == "mapped" and line.detail.startswith("-> ")]
    out = []
    for problem in problems:
        loc = problem.location
        if loc is None or not loc.file.endswith(env_file):
            out.append(problem)
            continue
        field_path = loc.path
        line = _origin(targets, field_path) or _origin(
            targets, _named_path(imported.data, field_path))
        message = f"{problem.message} [imported as {field_path}]"
        where = line.location if line else Location(source, 0, 0, field_path)
        out.append(Problem(message, where, problem.hint, problem.warning))
    return out


def _origin(targets: list[tuple[Line, str]], field_path: str) -> Line | None:
    """The report line whose target is `field_path`, lies inside it, or contains it."""
    if not field_path:
        return None
    for line, target in targets:
        if target == field_path:
            return line
    for line, target in targets:
        if target.startswith((field_path + ".", field_path + "[")):
            return line
    inner = [(len(t), line) for line, t in targets if field_path.startswith((t + ".", t + "["))]
    return max(inner, key=lambda pair: pair[0])[1] if inner else None


def _named_path(data: Any, field_path: str) -> str:
    """nodes[3].nics[0].ip -> nodes[worker0].nics[0].ip: list items by name, where named."""
    out, value = "", data
    for key, index in re.findall(r"([^.\[\]]+)|\[([^\]]*)\]", field_path):
        if key:
            out += ("." if out else "") + key
            value = value.get(key) if isinstance(value, dict) else None
            continue
        item = value[int(index)] if isinstance(value, list) and index.isdigit() \
            and int(index) < len(value) else None
        name = item.get("name") if isinstance(item, dict) else None
        out += f"[{name if isinstance(name, str) else index}]"
        value = item
    return out


def cmap(*pairs: tuple[str, Any], flow: bool = False) -> CommentedMap:
    out = CommentedMap(pairs)
    if flow:
        out.fa.set_flow_style()
    return out


def cseq(items: list[Any], flow: bool = False) -> CommentedSeq:
    out = CommentedSeq(items)
    if flow:
        out.fa.set_flow_style()
    return out


def note(container: CommentedMap, key: str, comment: str) -> None:
    """An end-of-line comment on `key`: why a value was assumed, not read."""
    container.yaml_add_eol_comment(comment, key)


def write_environment(root: Path, name: str, data: CommentedMap, header: str,
                      sections: tuple[str, ...] = ()) -> Path:
    """Write environments/<name>/env.yaml: a new file, or the imported sections merged into
    an existing one through the round-trip editor (its comments and other keys stay; only
    `sections`, when given, are merged).
    The candidate is validated first; an invalid result raises and writes nothing."""
    from generator import edit
    from generator.environment import load_environment
    from generator.loader import ENV_FILE
    from generator.safefile import check_replaceable, replace_file

    env_dir = root / "environments" / name
    path = env_dir / ENV_FILE
    check_replaceable(path)  # a symlinked env.yaml is neither read nor written through
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        yaml, existing = edit.load(old, str(path))
        merge_into(existing, CommentedMap(
            (k, v) for k, v in data.items() if not sections or k in sections))
        text = edit.dump(yaml, existing)
    else:
        yaml, _ = edit.load("a: 1\n", "new")
        data.yaml_set_start_comment(header)
        text = edit.dump(yaml, data)
    if path.is_file():
        load_environment(str(env_dir), env_text=text)
    else:
        _validate_new(root, name, text)
        env_dir.mkdir(parents=True, exist_ok=True)
    replace_file(path, text)
    return path


def _validate_new(root: Path, name: str, text: str) -> None:
    """Validate a new environment where it will live, from its text (nothing written yet)."""
    from generator.environment import load_environment_dir

    load_environment_dir(root / "environments" / name, text)


def merge_into(existing: Any, imported: Any) -> None:
    """Imported top-level sections win; lists of named items (nodes, networks, hypervisors)
    are merged by name, so hand-written items and their comments stay."""
    for key, value in imported.items():
        current = existing.get(key)
        if isinstance(value, list) and isinstance(current, list) and _named(value) \
                and _named(current):
            by_name = {item["name"]: index for index, item in enumerate(current)}
            for item in value:
                if item["name"] in by_name:
                    target = current[by_name[item["name"]]]
                    for field_name, field_value in item.items():
                        if field_name == "nics" and isinstance(target.get("nics"), list):
                            _merge_nics(target["nics"], field_value)
                        else:
                            target[field_name] = field_value
                else:
                    current.append(item)
        elif isinstance(value, dict) and isinstance(current, dict) and key != "metadata":
            merge_into(current, value)
        elif key not in existing or key not in ("apiVersion", "kind", "metadata"):
            existing[key] = value


def _merge_nics(current: Any, imported: Any) -> None:
    """NIC by NIC: imported keys win, keys only the file has (a static ip) stay."""
    for index, nic in enumerate(imported):
        if index < len(current) and isinstance(current[index], dict):
            for key, value in nic.items():
                current[index][key] = value
        else:
            current.append(nic)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)
