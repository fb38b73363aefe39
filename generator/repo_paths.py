"""Where things are in a gen repo: its root, an environment's folder, its lock, the store.

Kept apart from `generator.environment` (which loads and checks environments) and the lock
modules so that a process needing only these paths imports neither: a render-cache hit
(`gen render` of unchanged inputs) names its entry from them and never loads the model,
YAML, the schemas or the lock's dataclasses. Nothing here is imported beyond `os`, `re`
and `pathlib`; `generator.errors` only when a path is refused. The other modules re-export
what used to live in them, so their callers are unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# `gen init` writes this file at a repo's root, so gen finds the root before the first
# environment exists (an `environments/` folder marks it too).
REPO_MARKER = ".gen-repo"
ENV_FILE = "env.yaml"  # generator.loader's ENV_FILE (a test keeps the two equal)

# The same rule as node names: one DNS label (lowercase letters, digits, inner '-').
NAME_RULE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_FIX = "use lowercase letters, digits and inner '-', at most 63 characters (like lab-2)"


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an environment or blueprint folder, or None when it can."""
    if NAME_RULE.fullmatch(name):
        return None
    return f"{name!r} is not a valid name"


def inside(path: Path, root: Path) -> bool:
    """True when `path`, with every symlink resolved, is `root` or below it."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def find_repo(start: Path) -> Path | None:
    """The nearest directory at or above `start` that holds `environments/` or the marker
    `gen init` writes; None outside any gen repo."""
    start = Path(os.path.abspath(start))  # noqa: PTH100 - lexical: symlinks are checked later
    for candidate in (start, *start.parents):
        if (candidate / "environments").is_dir() or (candidate / REPO_MARKER).is_file():
            return candidate
    return None


def find_root(start: Path) -> Path:
    """The repo root above `start`, or `start` itself outside any repo."""
    return find_repo(start) or Path(os.path.abspath(start))  # noqa: PTH100 - as above


def refuse_escape(path: Path, root: Path, what: str) -> None:
    """A folder of the repo reached through a symlink that leaves the repo would make gen read
    (and write beside) another tree than the one under review."""
    if not inside(path, root):
        from generator.errors import UserError

        raise UserError(f"{what} leads outside the repository through a symlink "
                        f"(to {os.path.realpath(path)})",
                        "gen reads environments and blueprints only from inside the repo: "
                        "copy the folder in instead of linking it")


def resolve_env_dir(ref: str, cwd: Path | None = None) -> Path:
    """`env/lab` -> `<root>/environments/lab`; a path to a directory works as it is."""
    cwd = cwd or Path.cwd()
    plain = Path(ref).expanduser()
    if (cwd / plain / ENV_FILE).is_file() or (plain.is_absolute() and (plain / ENV_FILE).is_file()):
        env_dir = Path(os.path.abspath(cwd / plain))  # noqa: PTH100 - see the symlink first
        refuse_escape(env_dir, find_root(env_dir.parent), ref)
        return env_dir.resolve()
    name = ref[4:] if ref.startswith("env/") else ref
    problem = name_problem(name)
    if problem:
        from generator.errors import UserError

        raise UserError(f"environment {problem}", NAME_FIX)
    root = find_root(cwd)
    candidate = root / "environments" / name
    if (candidate / ENV_FILE).is_file():
        refuse_escape(candidate, root, f"environments/{name}")
        return candidate.resolve()
    from generator.errors import UserError

    known = sorted(p.name for p in (root / "environments").glob("*") if (p / ENV_FILE).is_file())
    hint = f"known environments: {', '.join(known)}" if known else "create it with `gen new`"
    raise UserError(f"environment '{ref}' not found (looked for {candidate / ENV_FILE})", hint)


def lock_path(root: Path, env_name: str) -> Path:
    """lock/<env>.lock of the repo at `root`."""
    return root / "lock" / f"{env_name}.lock"


def default_store_root(environ: dict[str, str] | None = None) -> Path:
    """`$GEN_STORE`, else `$XDG_CACHE_HOME/gen/store`, else `~/.cache/gen/store`."""
    env = os.environ if environ is None else environ
    if env.get("GEN_STORE"):
        return Path(env["GEN_STORE"]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "gen" / "store"
