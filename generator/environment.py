"""Find, load, merge and validate an environment: the I/O edge in front of the pure core."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from generator import model as m
from generator.confine import NAME_FIX, name_problem, relative_file_problem
from generator.errors import InvalidInput, Location, Problem, UserError
from generator.expand import expand
from generator.loader import (
    BLUEPRINT_FILE,
    ENV_FILE,
    Document,
    FieldPath,
    apply_role_defaults,
    deep_merge,
    load_yaml,
    read_yaml_file,
    sub_document,
)
from generator.records import record
from generator.repo_paths import REPO_MARKER as REPO_MARKER  # re-exported, as those below
from generator.repo_paths import find_repo as find_repo
from generator.repo_paths import find_root as find_root
from generator.repo_paths import refuse_escape as _refuse_escape
from generator.repo_paths import resolve_env_dir as resolve_env_dir
from generator.resources import BUILTIN, builtin_blueprint, builtin_blueprint_names
from generator.schema import schema_problems
from generator.semantic import model_problems, semantic_problems


@record
class Source:
    """Where an environment lives: the repo root, its directory and its blueprint's."""

    root: Path
    name: str
    env_dir: Path
    blueprint_dir: Path
    blueprint_origin: str = ""  # "blueprints/NAME" in the repo, or "built-in"

    def display(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            pass
        try:  # a built-in blueprint's files: the same name on every machine (the lock keeps it)
            builtin = path.relative_to(builtin_blueprint_dir_of(self.blueprint_dir))
            return f"<{BUILTIN}>/{self.blueprint_dir.name}/{builtin.as_posix()}".rstrip("/.")
        except ValueError:
            return str(path)


def builtin_blueprint_dir_of(blueprint_dir: Path) -> Path:
    """`blueprint_dir` itself when it is a built-in blueprint, else a path nothing is under."""
    builtin = builtin_blueprint(blueprint_dir.name)
    return builtin if builtin is not None and builtin == blueprint_dir else Path("/\0none")


@record
class Loaded:
    """A validated environment: where it came from, its model and its warnings."""

    source: Source
    model: m.Environment
    warnings: tuple[Problem, ...]
    # Where a field of the merged document came from, for errors raised while rendering.
    locate: Callable[[FieldPath], Location] | None = None


def env_dir_to_write(name: str, cwd: Path | None = None) -> tuple[Path, Path]:
    """(repo root, environments/NAME) for a command that writes a new or merged environment
    (`gen new`, `gen import`): inside a gen repo only, under a valid name, and never through
    a symlink that leads out of the repo (gen validate would refuse what was written)."""
    cwd = cwd or Path.cwd()
    root = find_repo(cwd)
    if root is None:
        raise UserError(f"{cwd} is not inside a gen repo (no environments/ folder or "
                        f"{REPO_MARKER} file here or above)",
                        "run `gen init` to make one, or cd into your gen repo")
    problem = name_problem(name)
    if problem:
        raise UserError(f"environment {problem}", NAME_FIX)
    target = root / "environments" / name
    for folder in (target.parent, target):
        if os.path.lexists(folder):
            _refuse_escape(folder, root, folder.relative_to(root).as_posix())
    return root, target


def load_documents(env_dir: Path, env_text: str | None = None) -> tuple[Source, Document]:
    """Read env.yaml (or `env_text` standing in for it) and its blueprint, merge them, and
    fill role defaults."""
    root = find_root(env_dir.parent)
    display = Source(root, env_dir.name, env_dir, env_dir).display
    env_file = env_dir / ENV_FILE
    env_doc = (read_yaml_file(env_file, display(env_file), root) if env_text is None
               else load_yaml(env_text, display(env_file)))
    _expect_kind(env_doc, "Environment")
    blueprint_name = env_doc.data.get("blueprint") if isinstance(env_doc.data, dict) else None
    if not isinstance(blueprint_name, str) or not blueprint_name:
        raise InvalidInput([Problem("missing required key 'blueprint'", env_doc.locate(()),
                                    "name a folder of blueprints/, e.g. blueprint: openshift-upi")])
    found = resolve_blueprint(root, blueprint_name)
    if found is None:
        known = ", ".join(known_blueprints(root)) or "none"
        raise InvalidInput([Problem(f"unknown blueprint {blueprint_name!r}",
                                    env_doc.locate(("blueprint",)), f"known blueprints: {known}")])
    blueprint_dir, origin = found
    source = Source(root, env_dir.name, env_dir, blueprint_dir, origin)
    blueprint = read_yaml_file(blueprint_dir / BLUEPRINT_FILE,
                               source.display(blueprint_dir / BLUEPRINT_FILE),
                               blueprint_dir if origin == BUILTIN else root)
    _expect_kind(blueprint, "Blueprint")
    problems = schema_problems(blueprint)
    if problems:
        raise InvalidInput(problems)
    defaults = sub_document(blueprint, "defaults")
    merged = deep_merge(defaults, env_doc, consume=True)  # env_doc is not used again
    apply_role_defaults(merged)
    return source, merged


def resolve_blueprint(root: Path, name: str) -> tuple[Path, str] | None:
    """(folder, origin) of blueprint `name`: the repo's blueprints/NAME overrides the
    built-in one of the same name; None when neither exists."""
    if name_problem(name):
        return None
    mine = root / "blueprints" / name
    if (mine / BLUEPRINT_FILE).is_file():
        _refuse_escape(mine, root, f"blueprints/{name}")
        return mine, f"blueprints/{name}"
    builtin = builtin_blueprint(name)
    if builtin is not None:
        return builtin, BUILTIN
    return None


def known_blueprints(root: Path) -> list[str]:
    """Every blueprint name an environment in this repo can use."""
    mine = {p.name for p in (root / "blueprints").glob("*") if (p / BLUEPRINT_FILE).is_file()}
    return sorted(mine | set(builtin_blueprint_names()))


def _stream_file_problems(doc: Document) -> list[Problem]:
    """`stream: {file: ...}` names a file beside env.yaml or blueprint.yaml, nowhere else."""
    artifacts = doc.data.get("artifacts") if isinstance(doc.data, dict) else None
    os_artifacts = artifacts.get("os") if isinstance(artifacts, dict) else None
    problems = []
    for name, raw in (os_artifacts or {}).items():
        stream = raw.get("stream") if isinstance(raw, dict) else None
        file = stream.get("file") if isinstance(stream, dict) else None
        problem = relative_file_problem(file) if isinstance(file, str) else None
        if problem:
            problems.append(Problem(problem, doc.locate(("artifacts", "os", name, "stream",
                                                         "file")),
                                    "ship the file beside env.yaml and name it relative to it"))
    return problems


def _expect_kind(doc: Document, kind: str) -> None:
    """env.yaml must be an Environment and blueprint.yaml a Blueprint, or nothing else fits."""
    found = doc.data.get("kind") if isinstance(doc.data, dict) else None
    if isinstance(found, str) and found != kind:
        raise InvalidInput([Problem(f"{found!r} must be {kind!r} in this file",
                                    doc.locate(("kind",)),
                                    f"{ENV_FILE} holds an Environment, {BLUEPRINT_FILE} a "
                                    "Blueprint")])


def load_environment(ref: str, cwd: Path | None = None, env_text: str | None = None,
                     known_valid: bool = False) -> Loaded:
    """The whole front half: resolve, load, merge, validate, expand. Raises InvalidInput.

    `env_text` validates a candidate env.yaml (an edit not yet written) in place of the file.
    `known_valid`: skip the checks, which only refuse and never change the model; for a
    caller that found these exact inputs rendered by this generator in the render cache
    (its key hashes both), so they passed every check then (`gen plan`). No warnings then.
    """
    env_dir = resolve_env_dir(ref, cwd)
    if known_valid:
        source, doc = load_documents(env_dir, env_text)
        return Loaded(source, expand(doc, source.name), (), doc.locate)
    return load_environment_dir(env_dir, env_text)


def load_environment_dir(env_dir: Path, env_text: str | None = None) -> Loaded:
    """load_environment for a known folder, which need not exist yet when `env_text` is
    given (`gen new` checks an environment before it moves it into place)."""
    source, doc = load_documents(env_dir, env_text)
    problems = schema_problems(doc)
    if not problems:
        problems = semantic_problems(doc) + _stream_file_problems(doc)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise InvalidInput(problems)
    env = expand(doc, source.name)
    problems += model_problems(doc, env)
    # the families build their outputs to check them: only from a model the rules accept
    if not any(not p.warning for p in problems):
        problems += family_problems(env)
    if any(not p.warning for p in problems):
        raise InvalidInput(problems)
    return Loaded(source, env, tuple(sorted(problems, key=Problem.sort_key)), doc.locate)


def family_problems(env: m.Environment) -> list[Problem]:
    """What each output family refuses (its `check` hook), on the typed model: run by
    `gen validate` and before every render, so no renderer refuses input later."""
    from generator.families import checks
    from generator.families.escape import UnsafeValue

    problems = []
    for check in checks().values():
        try:
            problems += check(env)
        except UnsafeValue as refused:  # an emitter a check builds with refused a value
            where = (env.where(refused.field) if refused.field is not None
                     else Location(f"environments/{env.name}"))
            problems.append(Problem(refused.reason, where, refused.hint))
    return problems
