"""Every lookup of gen's built-in data: JSON Schemas, blueprints, CI templates.

They ship inside the package (`generator/_data`), so an installed wheel finds them with no
source tree anywhere; in a source checkout `_data/*` are symlinks to the top-level folders,
so both read the same files through `importlib.resources`. Nothing else in gen locates data
relative to its own code.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

DATA_PACKAGE = "generator._data"
BUILTIN = "built-in"  # how messages and `gen validate` name a blueprint shipped with gen


@functools.cache
def data_dir() -> Path:
    """The package's data folder as a real directory (gen is installed unpacked, not zipped;
    cookiecutter and the NAR hasher need real paths)."""
    found = resources.files(DATA_PACKAGE)
    if not isinstance(found, Path):  # pragma: no cover - only a zipped install gets here
        raise RuntimeError(f"gen's data ({DATA_PACKAGE}) is not on a file system: install gen "
                           "unpacked (pip does)")
    return found


def schemas_dir() -> Path:
    return data_dir() / "schemas"


def schema_file(name: str) -> Path:
    """`blueprint.schema.json`, `lock.schema.json`, `ignition-3.3.schema.json`, ..."""
    return schemas_dir() / name


def builtin_blueprints_dir() -> Path:
    return data_dir() / "blueprints"


def builtin_blueprint(name: str) -> Path | None:
    """The built-in blueprint folder called `name`, or None."""
    if name not in builtin_blueprint_names():
        return None
    return builtin_blueprints_dir() / name


@functools.cache
def builtin_blueprint_names() -> tuple[str, ...]:
    base = builtin_blueprints_dir()
    if not base.is_dir():
        return ()
    return tuple(sorted(p.name for p in base.iterdir() if (p / "blueprint.yaml").is_file()))


def ci_template(relative: str) -> Path:
    """A CI template, e.g. `github/gen-pr.yml` or `pre-commit/.pre-commit-config.yaml`."""
    return data_dir() / "ci" / relative
