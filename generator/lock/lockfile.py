"""The lock model: canonical JSON in and out, validated against schemas/lock.schema.json.

`lock/<env>.lock` is canonical JSON (sorted keys, 2-space indent, LF, trailing newline) with
no timestamps, so the same inputs always give the same bytes and a diff shows exactly which
input moved. Any edit that breaks the schema, the canonical form or the internal
consistency (an image pinned to another repository, say) is reported as a tampered lock.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import LockMismatch
from generator.repo_paths import lock_path as lock_path  # re-exported (lives with the paths)
from generator.resources import schema_file
from generator.tree import canonical_json

LOCK_VERSION = 2  # 1 also pinned the renderers' source text (`generator.templates`)
SCHEMA_FILE = schema_file("lock.schema.json")
PATH_INPUTS = ("environment", "blueprint")
MAX_LOCK_BYTES = 16 << 20  # a lock of 10,000 inputs is ~5 MiB; more is not a lock


@dataclass(frozen=True, slots=True)
class GeneratorInfo:
    """Which gen wrote the lock: its version, and the wheel's sha256 when installed from one.

    The renderers' source text is deliberately not pinned: a comment in a family must not
    stale every lock, and the output hashes already catch every change that matters.
    """

    version: str
    schema: str
    wheel: str | None = None  # hex sha256 of the wheel file gen was installed from

    def to_data(self) -> dict[str, str]:
        data = {"version": self.version, "schema": self.schema}
        return {**data, "wheel": self.wheel} if self.wheel else data


@dataclass(frozen=True, slots=True)
class PathInput:
    """A directory input (the environment, the blueprint) pinned by its NAR hash."""

    path: str
    nar_hash: str

    def to_data(self) -> dict[str, str]:
        return {"path": self.path, "narHash": self.nar_hash}


@dataclass(frozen=True, slots=True)
class Pinned:
    """An external artifact: what the blueprint says (`original`) and what it resolved to."""

    original: Any
    locked: Any

    def to_data(self) -> dict[str, Any]:
        return {"original": self.original, "locked": self.locked}

    def describe(self) -> str:
        """One short line for `gen update`'s old -> new output."""
        locked = self.locked
        if isinstance(locked, dict):
            return f"{locked.get('location') or locked.get('url')} sha256:{locked['sha256']}"
        return str(locked)


Input = PathInput | Pinned


@dataclass(frozen=True, slots=True)
class Outputs:
    nar_hash: str
    subtrees: dict[str, str] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {"narHash": self.nar_hash, "subtrees": dict(sorted(self.subtrees.items()))}


@dataclass(frozen=True, slots=True)
class Lock:
    generator: GeneratorInfo
    inputs: dict[str, Input]
    outputs: Outputs
    version: int = LOCK_VERSION

    def to_data(self) -> dict[str, Any]:
        return {"version": self.version, "generator": self.generator.to_data(),
                "inputs": {k: v.to_data() for k, v in sorted(self.inputs.items())},
                "outputs": self.outputs.to_data()}

    def dumps(self) -> bytes:
        return canonical_json(self.to_data())

    def pinned(self) -> dict[str, Pinned]:
        return {k: v for k, v in self.inputs.items() if isinstance(v, Pinned)}


def from_data(data: Any, where: str = "lock") -> Lock:
    """A Lock from parsed JSON, after schema and consistency checks (LockMismatch if bad)."""
    legacy = isinstance(data, dict) and data.get("version") == 1
    if legacy:
        data = _from_format_1(data)
    problems = schema_problems(data)
    if not problems:
        problems = consistency_problems(data)
    if problems:
        raise TamperedLock(where, problems)
    inputs: dict[str, Input] = {}
    for key, entry in data["inputs"].items():
        inputs[key] = (PathInput(entry["path"], entry["narHash"]) if key in PATH_INPUTS
                       else Pinned(entry["original"], entry["locked"]))
    gen = data["generator"]
    return Lock(GeneratorInfo(gen["version"], gen["schema"], gen.get("wheel")), inputs,
                Outputs(data["outputs"]["narHash"], dict(data["outputs"]["subtrees"])),
                1 if legacy else data["version"])


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 differs only by `generator.templates` (the renderers' source hash), which gen
    no longer pins. Such a lock still reads, so `--locked` names the format change and
    `gen lock` rewrites it, instead of calling it tampered."""
    generator = data.get("generator")
    if isinstance(generator, dict):
        generator = {k: v for k, v in generator.items() if k != "templates"}
    return {**data, "version": LOCK_VERSION, "generator": generator}


def loads(text: bytes, where: str = "lock") -> Lock:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TamperedLock(where, [f"not JSON: {exc}"]) from None
    except RecursionError:
        raise TamperedLock(where, ["not a lock: its JSON is nested too deeply"]) from None
    lock = from_data(data, where)
    if canonical_json(data) != text:
        raise TamperedLock(where, ["not in canonical form (sorted keys, 2-space indent, "
                                   "trailing newline): it was edited by hand"])
    return lock


def read_lock(path: Path, where: str | None = None) -> Lock | None:
    """The lock at `path`, or None when there is none yet.

    A lock is a plain file of bounded size: a symlink (it could point at a secret that the
    schema errors would quote), a FIFO, a device or a directory there is a tampered lock."""
    from generator.safefile import UnsafeFile, read_regular

    if path.parent.is_symlink():  # a committed `lock -> elsewhere` would read and write there
        raise TamperedLock(where or str(path), [f"{path.parent.name}/ is a symlink, not the "
                                                "repo's lock directory"])
    try:
        text = read_regular(path, MAX_LOCK_BYTES, follow=False)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise TamperedLock(where or str(path), [exc.reason]) from None
    return loads(text, where or str(path))


def write_lock(path: Path, lock: Lock) -> bool:
    """Write atomically; return False (and touch nothing) when the bytes are unchanged."""
    from generator.safefile import UnsafeFile, read_regular

    data = lock.dumps()
    try:
        if read_regular(path, MAX_LOCK_BYTES, follow=False) == data:
            return False
    except (FileNotFoundError, UnsafeFile):  # absent, or replaced by what gen writes now
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary of its own per process: concurrent `gen lock` runs never share one
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gen-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide it from others
            os.fsync(handle.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return True


class TamperedLock(LockMismatch):
    """A lock file that fails the schema, the canonical form or the consistency checks."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where} is invalid")
        self.where, self.problems = where, problems

    def lines(self) -> list[str]:
        return [f"{self.where}: {p}" for p in self.problems] + [
            f"{self.where}: the lock was edited or damaged; restore it from git or "
            "regenerate it with `gen lock` / `gen update`"]


@functools.cache
def _lock_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


@functools.cache
def _lock_validator() -> Any:
    from generator.compiled_schema import compile_schema

    return compile_schema(_lock_schema(), "http://json-schema.org/draft-07/schema#")


def _quickly_valid(data: Any) -> bool:
    """True only when the compiled validator accepts `data` (cached across processes, see
    generator/compiled_schema.py; the schema uses only draft-07 keywords). Any rejection
    goes to jsonschema, imported only then, which decides and explains."""
    try:
        _lock_validator()(data)
    except Exception:  # noqa: BLE001 - any doubt: let jsonschema decide and explain
        return False
    return True


def schema_problems(data: Any) -> list[str]:
    if _quickly_valid(data):
        return []
    import jsonschema

    schema = _lock_schema()
    validator = jsonschema.Draft202012Validator(schema)
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        at = ".".join(map(str, error.absolute_path)) or "(top)"
        found.append(f"at {at}: {error.message}")
    return found


def consistency_problems(data: dict[str, Any]) -> list[str]:
    """Checks the schema cannot express: an image must stay in its own repository."""
    from generator.errors import UserError
    from generator.lock.resolve import parse_image

    found = []
    for key, entry in sorted(data["inputs"].items()):
        if key.startswith("image/"):
            try:
                original, locked = parse_image(entry["original"]), parse_image(entry["locked"])
            except UserError as exc:
                found.append(f"at inputs.{key}: {exc.message}")
                continue
            if (original.registry, original.repository) != (locked.registry, locked.repository):
                found.append(f"at inputs.{key}: locked {entry['locked']} is not in the "
                             f"repository of {entry['original']}")
            elif original.digest and original.digest != locked.digest:
                found.append(f"at inputs.{key}: locked digest differs from the digest written "
                             "in the blueprint")
        if key.startswith("release/"):
            found += _release_problems(key, entry)
        found += _location_problems(key, entry)
        if key.startswith("manifest/") and entry["original"].get("sha256") not in (
                None, entry["locked"]["sha256"]):
            found.append(f"at inputs.{key}: locked sha256 differs from the one in the blueprint")
        if key.startswith(("os/", "tool/")) and entry["original"].get("sha256") not in (
                None, entry["locked"]["sha256"]):
            found.append(f"at inputs.{key}: locked sha256 differs from the one in the blueprint")
    return found


def _release_problems(key: str, entry: dict[str, Any]) -> list[str]:
    """A release image is pinned by digest; a digest written in the environment is the pin."""
    from generator.errors import UserError
    from generator.lock.resolve import parse_image

    try:
        locked = parse_image(entry["locked"])
    except UserError as exc:
        return [f"at inputs.{key}: {exc.message}"]
    written = entry["original"].get("image")
    if written is not None and written != locked.pinned(locked.digest or ""):
        return [f"at inputs.{key}: locked {entry['locked']} is not the release image "
                f"written in the environment ({written})"]
    return []


# The field of `locked` that holds where an input kind is fetched from, as lock/compute.py
# writes it: OS artifacts name a `location` (a stream may choose it), the others their `url`.
_LOCATION_FIELD = {"os": "location", "manifest": "url", "tool": "url"}


def _location_problems(key: str, entry: dict[str, Any]) -> list[str]:
    """A URL artifact's locked location must be its original URL: a lock whose location
    was swapped, together with its sha256, for another file's is tampered."""
    original, locked = entry.get("original"), entry.get("locked")
    if isinstance(locked, dict):  # the lock carries stream locations into rendered files
        from generator.lock.resolve import location_problem

        for field in ("location", "url"):
            value = locked.get(field)
            problem = location_problem(value) if isinstance(value, str) else None
            if problem:
                return [f"at inputs.{key}.locked.{field}: {problem}"]
    if not (isinstance(original, dict) and isinstance(locked, dict) and "url" in original):
        return []  # images are checked above, stream entries by re-reading the stream
    field = _LOCATION_FIELD.get(key.partition("/")[0], "url")
    if locked.get(field) != original["url"]:
        return [f"at inputs.{key}: locked {field} {locked.get(field)} is not the URL the "
                f"environment names ({original['url']})"]
    return []
