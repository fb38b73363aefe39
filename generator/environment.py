"""Find, load, merge and validate an environment: the I/O edge in front of the pure core."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator import model as m
from generator.errors import InvalidInput, Problem, UserError
from generator.expand import expand
from generator.loader import (
    BLUEPRINT_FILE,
    ENV_FILE,
    Document,
    apply_role_defaults,
    deep_merge,
    load_yaml,
    read_yaml_file,
)
from generator.schema import schema_problems
from generator.semantic import semantic_problems


@dataclass(frozen=True, slots=True)
class Source:
    """Where an environment lives: the repo root, its directory and its blueprint's."""

    root: Path
    name: str
    env_dir: Path
    blueprint_dir: Path

    def display(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True, slots=True)
class Loaded:
    source: Source
    model: m.Environment
    warnings: tuple[Problem, ...]


def find_root(start: Path) -> Path:
    """The nearest directory at or above `start` that holds `environments/` or `blueprints/`."""
    for candidate in (start, *start.parents):
        if (candidate / "environments").is_dir() or (candidate / "blueprints").is_dir():
            return candidate
    return start


def resolve_env_dir(ref: str, cwd: Path | None = None) -> Path:
    """`env/lab` -> `<root>/environments/lab`; a path to a directory works as it is."""
    cwd = cwd or Path.cwd()
    plain = Path(ref).expanduser()
    if (cwd / plain / ENV_FILE).is_file() or (plain.is_absolute() and (plain / ENV_FILE).is_file()):
        return (cwd / plain).resolve()
    name = ref[4:] if ref.startswith("env/") else ref
    root = find_root(cwd)
    candidate = root / "environments" / name
    if (candidate / ENV_FILE).is_file():
        return candidate.resolve()
    known = sorted(p.name for p in (root / "environments").glob("*") if (p / ENV_FILE).is_file())
    hint = f"known environments: {', '.join(known)}" if known else "create it with `gen new`"
    raise UserError(f"environment '{ref}' not found (looked for {candidate / ENV_FILE})", hint)


def load_documents(env_dir: Path, env_text: str | None = None) -> tuple[Source, Document]:
    """Read env.yaml (or `env_text` standing in for it) and its blueprint, merge them, and
    fill role defaults."""
    root = find_root(env_dir.parent)
    display = Source(root, env_dir.name, env_dir, env_dir).display
    env_file = env_dir / ENV_FILE
    env_doc = (read_yaml_file(env_file, display(env_file)) if env_text is None
               else load_yaml(env_text, display(env_file)))
    _expect_kind(env_doc, "Environment")
    blueprint_name = env_doc.data.get("blueprint") if isinstance(env_doc.data, dict) else None
    if not isinstance(blueprint_name, str) or not blueprint_name:
        raise InvalidInput([Problem("missing required key 'blueprint'", env_doc.locate(()),
                                    "name a folder of blueprints/, e.g. blueprint: openshift-upi")])
    blueprint_dir = root / "blueprints" / blueprint_name
    source = Source(root, env_dir.name, env_dir, blueprint_dir)
    if not (blueprint_dir / BLUEPRINT_FILE).is_file() or "/" in blueprint_name:
        known = sorted(p.name for p in (root / "blueprints").glob("*")
                       if (p / BLUEPRINT_FILE).is_file())
        raise InvalidInput([Problem(f"unknown blueprint {blueprint_name!r}",
                                    env_doc.locate(("blueprint",)),
                                    f"known blueprints: {', '.join(known) or 'none'}")])
    blueprint = read_yaml_file(blueprint_dir / BLUEPRINT_FILE,
                               display(blueprint_dir / BLUEPRINT_FILE))
    _expect_kind(blueprint, "Blueprint")
    problems = schema_problems(blueprint)
    if problems:
        raise InvalidInput(problems)
    defaults = Document(blueprint.data.get("defaults", {}), {
        path[1:]: pos for path, pos in blueprint.positions.items() if path[:1] == ("defaults",)
    }, blueprint.files)
    merged = deep_merge(defaults, env_doc)
    apply_role_defaults(merged)
    return source, merged


def _expect_kind(doc: Document, kind: str) -> None:
    """env.yaml must be an Environment and blueprint.yaml a Blueprint, or nothing else fits."""
    found = doc.data.get("kind") if isinstance(doc.data, dict) else None
    if isinstance(found, str) and found != kind:
        raise InvalidInput([Problem(f"{found!r} must be {kind!r} in this file",
                                    doc.locate(("kind",)),
                                    f"{ENV_FILE} holds an Environment, {BLUEPRINT_FILE} a "
                                    "Blueprint")])


def load_environment(ref: str, cwd: Path | None = None, env_text: str | None = None) -> Loaded:
    """The whole front half: resolve, load, merge, validate, expand. Raises InvalidInput.

    `env_text` validates a candidate env.yaml (an edit not yet written) in place of the file.
    """
    env_dir = resolve_env_dir(ref, cwd)
    source, doc = load_documents(env_dir, env_text)
    problems = schema_problems(doc)
    if not problems:
        problems = semantic_problems(doc)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise InvalidInput(problems)
    env = expand(doc, source.name)
    return Loaded(source, env, tuple(sorted(problems, key=Problem.sort_key)))
