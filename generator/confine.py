"""Names and paths that come from users (or pull requests) stay inside the repo.

An environment or blueprint name becomes a folder and file names in several places, so it
must be one plain DNS label; a folder reached through a symlink, or a `stream: {file: ...}`
path, must not lead outside the directory it belongs to.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

# The name rule lives with the repo's paths (generator.repo_paths), which resolve names
# without importing this module's dependencies.
from generator.repo_paths import NAME_FIX as NAME_FIX
from generator.repo_paths import NAME_RULE as NAME_RULE
from generator.repo_paths import name_problem as name_problem
from generator.safefile import inside


def relative_file_problem(relative: str) -> str | None:
    """Why `relative` cannot name a file beside an env.yaml or blueprint.yaml, or None."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or relative.startswith("~"):
        return f"{relative!r} must be a path relative to its folder"
    if ".." in pure.parts or any(ord(c) < 32 or c == "\x7f" for c in relative):
        return f"{relative!r} must stay inside its folder (no '..', no control characters)"
    return None


def confined_file(relative: str, bases: tuple[Path, ...]) -> Path | str:
    """The first of `bases/relative` that exists and does not leave its base through a
    symlink; else a one-line reason (the path that was refused, or that none exists)."""
    problem = relative_file_problem(relative)
    if problem:
        return problem
    for base in bases:
        candidate = base / relative
        if not os.path.lexists(candidate):
            continue
        if not inside(candidate, base):
            return (f"{relative!r} leads outside {base.name}/ through a symlink "
                    f"(to {os.path.realpath(candidate)})")
        return candidate
    return f"{relative!r} not found in {' or '.join(f'{b.name}/' for b in bases)}"
