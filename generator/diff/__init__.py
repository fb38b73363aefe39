"""`gen diff` as data: two rendered sides in, a Report out (pure; formats.py renders it).

A Report has notes (environment added, removed or renamed), the generator change (when the
two sides were rendered by different generators), changed input fields (env.yaml and
blueprint.yaml, and other files of their directories), lock input changes (image
digests, OS artifacts), secret reference changes (always `(sensitive value changed)`, never
a value or even the reference), and one Section per output family holding its semantic
findings and its changed files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from generator.diff.inputs import (
    NO_INPUTS,
    GeneratorId,
    Inputs,
    generator_changes,
    input_changes,
)
from generator.diff.semantic import (
    OTHER,
    SENSITIVE,
    Family,
    Finding,
    families_of,
    field_changes,
    member_findings,
    summarised_families,
    summarize,
)
from generator.diff.trees import FileChange, compare_trees
from generator.tree import Tree

# Lock inputs that are the sources themselves: their changes are the diff below, not news.
SOURCE_INPUTS = ("environment", "blueprint")


@dataclass(frozen=True, slots=True)
class Side:
    """One rendered revision: its label, commit, environment name, tree, lock and secrets."""

    label: str
    sha: str | None
    env: str | None  # None when the environment does not exist at this revision
    tree: Tree = field(default_factory=dict)
    lock: Mapping[str, Any] | None = None
    secrets: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (kind, ref)
    inputs: Inputs | None = None  # the environment's and blueprint's files as read
    generator: GeneratorId | None = None  # who rendered this side
    topology: Any = None  # graph.Topology of its model: the picture of a markdown diff

    @property
    def short(self) -> str:
        return f"{self.label} ({self.sha[:7]})" if self.sha else self.label


@dataclass(frozen=True, slots=True)
class Section:
    family: Family
    findings: tuple[Finding, ...]
    files: tuple[FileChange, ...]


@dataclass(frozen=True, slots=True)
class Report:
    env: str
    base: Side
    head: Side
    notes: tuple[Finding, ...]
    inputs: tuple[Finding, ...]
    secrets: tuple[Finding, ...]
    sections: tuple[Section, ...]
    generator: tuple[Finding, ...] = ()
    fields: tuple[Finding, ...] = ()  # changed input fields and files

    @property
    def empty(self) -> bool:
        return not (self.notes or self.inputs or self.secrets or self.sections
                    or self.generator or self.fields)

    @property
    def files(self) -> tuple[FileChange, ...]:
        return tuple(f for s in self.sections for f in s.files)


def build_report(base: Side, head: Side) -> Report:
    """Compare two sides: notes, lock inputs, secrets, then per-family sections."""
    changes = compare_trees(base.tree, head.tree)
    return Report(
        env=head.env or base.env or "?",
        base=base,
        head=head,
        notes=tuple(environment_notes(base, head)),
        inputs=tuple(lock_input_changes(base.lock, head.lock)),
        secrets=tuple(secret_changes(base.secrets, head.secrets)),
        sections=tuple(with_tags(sections(changes), pinned_names(base.lock, head.lock))),
        generator=tuple(generator_changes(base.generator, head.generator)),
        fields=tuple(input_changes(base.inputs or NO_INPUTS, head.inputs or NO_INPUTS)),
    )


def environment_notes(base: Side, head: Side) -> list[Finding]:
    if base.env is None and head.env is not None:
        return [Finding("+", "environment", f"{head.env} (not present at {base.label})")]
    if head.env is None and base.env is not None:
        return [Finding("-", "environment", f"{base.env} (not present at {head.label})")]
    if base.env != head.env:
        return [Finding("~", "environment", f"renamed {base.env} -> {head.env}")]
    return []


def sections(changes: tuple[FileChange, ...]) -> list[Section]:
    """Group changed files by family (first claimant shows the file's diff) and summarize."""
    claimed: dict[str, list[FileChange]] = {}
    shown: dict[str, list[FileChange]] = {}
    families = summarised_families()
    for change in changes:
        owners = families_of(change.path, families)
        shown.setdefault(owners[0].key, []).append(change)
        for family in owners:
            claimed.setdefault(family.key, []).append(change)
    out = []
    for family in (*families, OTHER):
        if family.key in claimed:
            files = tuple(shown.get(family.key, ()))
            findings = tuple(summarize(family, claimed[family.key], files))
            if findings or files:
                out.append(Section(family, findings, files))
    return out


def lock_input_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
                       ) -> list[Finding]:
    """Pinned inputs (images, OS artifacts, manifests) added, removed or re-pinned."""
    a = _inputs(old)
    b = _inputs(new)
    found = [image_move(k, None, b[k]) or Finding("+", k, _pin(b[k]))
             for k in sorted(set(b) - set(a))]
    found += [image_move(k, a[k], None) or Finding("-", k, _pin(a[k]))
              for k in sorted(set(a) - set(b))]
    for key in sorted(set(a) & set(b)):
        if a[key] != b[key]:
            found.append(image_move(key, a[key], b[key]) or
                         Finding("~", key, _repin(a[key], b[key])))
    return found


SHORT_DIGEST = len("sha256:") + 12  # as `docker images` shortens an id


def image_move(key: str, old: Any, new: Any) -> Finding | None:
    """An image entry as a reviewer reads it: the tag the environment asks for, then the
    digest it ran and the one it will run (`tomcat:9 sha256:0123456789ab -> sha256:...`),
    the full digests kept in the finding's data. None for anything else."""
    a = _image_pin(old) if old is not None else None
    b = _image_pin(new) if new is not None else None
    if not key.startswith("image/") or (old is not None and a is None) or \
            (new is not None and b is None):
        return None
    if a is None and b is not None:
        return Finding("+", key, f"{b[0]} {b[1][:SHORT_DIGEST]}",
                       data=(("image", b[0]), ("to", b[1])))
    if b is None and a is not None:
        return Finding("-", key, f"{a[0]} {a[1][:SHORT_DIGEST]}",
                       data=(("image", a[0]), ("from", a[1])))
    assert a is not None and b is not None
    moved = f"{a[1][:SHORT_DIGEST]} -> " + (b[1][:SHORT_DIGEST] if a[0] == b[0] else
                                           f"{b[0]} {b[1][:SHORT_DIGEST]}")
    data = (("image", b[0]), ("from", a[1]), ("to", b[1]))
    return Finding("~", key, f"{a[0]} {moved}",
                   data=data + ((("fromImage", a[0]),) if a[0] != b[0] else ()))


def pinned_names(*locks: Mapping[str, Any] | None) -> dict[str, str]:
    """Locked image reference -> how a reviewer knows it: `REFERENCE:TAG sha256:<12 hex>`."""
    names = {}
    for lock in locks:
        for key, entry in _inputs(lock).items():
            pin = _image_pin(entry) if key.startswith("image/") else None
            if pin is not None:
                names[entry["locked"]] = f"{pin[0]} {pin[1][:SHORT_DIGEST]}"
    return names


def with_tags(found: list[Section], names: Mapping[str, str]) -> list[Section]:
    """Sections whose findings name each locked image as its tag and short digest (a
    manifest runs `repo@sha256:<64 hex>`, which says little in review); files unchanged."""
    if not names:
        return found
    pattern = re.compile("|".join(re.escape(ref) for ref in sorted(names, key=len,
                                                                     reverse=True)))

    def named(finding: Finding) -> Finding:
        detail = pattern.sub(lambda m: names[m.group(0)], finding.detail)
        return finding if detail == finding.detail else replace(finding, detail=detail)

    return [replace(s, findings=tuple(map(named, s.findings))) for s in found]


def _image_pin(entry: Any) -> tuple[str, str] | None:
    """(the reference as the environment writes it, the digest the lock pins) or None."""
    if not isinstance(entry, dict):
        return None
    original, locked = entry.get("original"), entry.get("locked")
    if not isinstance(original, str) or not isinstance(locked, str) or "@" not in locked:
        return None
    return original, locked.rpartition("@")[2]


def _inputs(lock: Mapping[str, Any] | None) -> dict[str, Any]:
    inputs = (lock or {}).get("inputs") or {}
    return {k: v for k, v in inputs.items() if k not in SOURCE_INPUTS}


def _pin(entry: Any) -> str:
    locked = entry.get("locked", entry) if isinstance(entry, dict) else entry
    if isinstance(locked, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(locked.items()))
    return str(locked)


def _repin(old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict) and "locked" in old and "locked" in new:
        rows = [f"{_pin(old)} -> {_pin(new)}"] if not isinstance(old["locked"], dict) else \
            field_changes(old["locked"], new["locked"])
        if old.get("original") != new.get("original"):
            rows.insert(0, "; ".join(field_changes(old.get("original"), new.get("original"),
                                                   "original")))
        return "; ".join(rows)
    return "; ".join(field_changes(old, new))


def secret_changes(old: Mapping[str, tuple[str, str]], new: Mapping[str, tuple[str, str]]
                   ) -> list[Finding]:
    """Secret references by name; a changed reference is only ever `(sensitive value changed)`."""
    return member_findings("secret", old, new, lambda _ref: "", lambda _k, _a, _b: [SENSITIVE])
