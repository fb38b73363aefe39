"""JSON Schemas compiled to Python by fastjsonschema, cached across processes.

Compiling the blueprint schema generates ~800 kB of Python, and turning that into bytecode
costs more than everything else `gen render env/lab` does. Like Python's own `.pyc` files,
the bytecode is kept in a cache (`$GEN_CACHE_DIR`, else `$XDG_CACHE_HOME/gen`, else
`~/.cache/gen`) under a key naming everything it depends on: the schema's canonical JSON,
fastjsonschema's version and the interpreter's bytecode tag. A missing, unreadable,
foreign-owned or corrupt entry is ignored and the schema compiled again; a cache that
cannot be written costs speed, never correctness. Output never depends on the cache.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

from generator.regexcache import cache_dir

Validator = Callable[[Any], Any]

# Bump when what is cached changes shape (it is part of every key).
_FORMAT = "gen-compiled-schema-3"


def compile_schema(schema: dict[str, Any], draft: str | None = None,
                   whole_integers: bool = False, unnamed_refs: bool = False) -> Validator:
    """fastjsonschema's validator for `schema` (with `$schema` set to `draft` if given).

    `whole_integers`: `integer` means an int, never a float such as 4.0 (which JSON Schema,
    and fastjsonschema, count as an integer); raises ValueError if fastjsonschema's code is
    not the shape this rewrites.

    `unnamed_refs`: a `$ref`'s function is not told the path of the value it checks, so
    an error names it `data` (see _unnamed_refs); for a validator used only to accept or
    refuse, whose errors are explained by another (generator/schema.py)."""
    import fastjsonschema

    if draft is not None:
        schema = {**schema, "$schema": draft}
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256("\0".join((_FORMAT, fastjsonschema.VERSION,
                                    sys.implementation.cache_tag or "", str(whole_integers),
                                    str(unnamed_refs), text)).encode()).hexdigest()
    name, code = _cached("schemas", key,
                         lambda: _compile(schema, f"<schema {key[:12]}>", whole_integers,
                                          unnamed_refs))
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - gen's own schema, compiled by fastjsonschema
    validate: Validator = namespace[name]
    return validate


def compile_cached(source: str, label: str) -> CodeType:
    """`compile(source, label, "exec")`, its code kept in the same cache (generator.records
    compiles the model's dataclass methods this way: compiling them was most of the cost of
    importing the model)."""
    key = hashlib.sha256("\0".join((_FORMAT, sys.implementation.cache_tag or "", label,
                                    source)).encode()).hexdigest()
    return _cached("code", key, lambda: (label, compile(source, label, "exec")))[1]


def _cached(folder: str, key: str,
            make: Callable[[], tuple[str, CodeType]]) -> tuple[str, CodeType]:
    """The entry `key` of the cache's `folder`, made and stored when missing or unusable."""
    try:
        path: Path | None = cache_dir() / folder / f"{key}.bytecode"
    except RuntimeError:  # no home directory to find a cache in: compile every time
        path = None
    entry = _read_cached(path) if path else None
    if entry is None:
        entry = make()
        if path:
            _write_cached(path, entry)
    return entry


class _NoRemote(dict[str, Any]):
    """fastjsonschema's `handlers` (URI scheme -> fetch): without one for a scheme it fetches
    a `$ref` with urllib. gen's schemas refer only within themselves, so every remote
    reference is refused instead: compiling never touches the network."""

    def __contains__(self, scheme: object) -> bool:
        return True

    def __getitem__(self, scheme: str) -> Any:
        def refuse(uri: str) -> Any:
            raise ValueError(f"remote $ref {uri!r}: gen's schemas never fetch a reference")
        return refuse


_NO_REMOTE = _NoRemote()


def _compile(schema: dict[str, Any], label: str,
             whole_integers: bool = False, unnamed_refs: bool = False) -> tuple[str, Any]:
    """(the validating function's name, the module's code object), as
    `fastjsonschema.compile` builds them, but kept as code rather than a live function."""
    import fastjsonschema

    resolver, generator = fastjsonschema._factory(schema, _NO_REMOTE)  # what compile() uses
    func_code = _without_locals(generator.func_code)
    if whole_integers:
        func_code = _whole_integers(func_code)
    if unnamed_refs:
        func_code = _unnamed_refs(func_code)
    source = f"{_lazy_state_code(generator) or generator.global_state_code}\n{func_code}"
    return resolver.get_scope_name(), compile(source, label, "exec")


# fastjsonschema names the value it passes to a `$ref`'s function (for that function's error
# message) with `"...nodes[{data__nodes_x}]".format(**locals())`, evaluated on every call,
# valid or not: a `$ref` inside an array or a map pays it per item. `locals()` builds a dict
# of every local of the calling function, and the environment validator has hundreds (one
# per field path), so at 10,000 nodes this was a third of the schema check. Passing the
# fields by name formats the same text without building that dict.
_FORMAT_LOCALS = re.compile(r'"((?:[^"\\]|\\.)*)"\.format\(\*\*locals\(\)\)')
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _without_locals(code: str) -> str:
    """`code` with each `"...{name}...".format(**locals())` formatting `name=name` instead;
    a literal with any other brace is left as it is."""
    def by_name(match: re.Match[str]) -> str:
        literal = match.group(1)
        names = list(dict.fromkeys(_FIELD.findall(literal)))
        if not names or "{" in _FIELD.sub("", literal) or "}" in _FIELD.sub("", literal):
            return match.group(0)
        return f'"{literal}".format({", ".join(f"{n}={n}" for n in names)})'
    return _FORMAT_LOCALS.sub(by_name, code)


# Each `$ref` call builds its value's name, `(name_prefix or "data") + ".nodes[{x}]"`, on
# every call, valid or not, for the message of an error the call may raise: at 10,000
# nodes a fifth of the blueprint validator's time. The name feeds only messages (and the
# names passed further down), never a decision, so passing None accepts and refuses the
# same documents; schema.py uses the blueprint validator only to accept or refuse.
_REF_CALL_NAME = re.compile(r'(validate_\w+\(\w+, custom_formats, )\(name_prefix or "data"\) '
                            r'\+ "(?:[^"\\]|\\.)*"(?:\.format\([^()]*\))?\)')


def _unnamed_refs(code: str) -> str:
    return _REF_CALL_NAME.sub(r"\1None)", code)


# fastjsonschema's `integer` test: `not isinstance(x, (int)) and not (isinstance(x, float)
# and x.is_integer()) or isinstance(x, bool)`. Dropping the middle clause leaves "an int that
# is not a bool", the rule gen's jsonschema validator applies (generator/schema.py), so a
# document with a float needs no separate walk to be sent to jsonschema.
_FLOAT_AS_INTEGER = re.compile(r" and not \(isinstance\((\w+), float\) and \1\.is_integer\(\)\)")


def _whole_integers(code: str) -> str:
    strict = _FLOAT_AS_INTEGER.sub("", code)
    if "is_integer" in strict:  # a shape this was not written against: never guess
        raise ValueError("fastjsonschema's integer check changed shape")
    return strict


# fastjsonschema's module compiles every `pattern` of the schema when it is loaded: ~40
# regular expressions for the blueprint schema, a tenth of `gen render env/lab`'s own work,
# though a document uses a few. This module compiles each on first use instead.
_LAZY_PATTERNS = """
class _Patterns(dict):
    def __init__(self, sources):
        super().__init__()
        self.sources = sources

    def __missing__(self, key):
        pattern = self[key] = re.compile(*self.sources[key])
        return pattern


REGEX_PATTERNS = _Patterns({sources})
"""


def _lazy_state_code(generator: Any) -> str | None:
    """fastjsonschema's module header with lazily compiled patterns, or None (then its own
    header) if its internals are not the ones this was written against."""
    patterns = getattr(generator, "_compile_regexps", None)
    imports = getattr(generator, "_extra_imports_lines", None)
    if not isinstance(patterns, dict) or not isinstance(imports, list) or not patterns:
        return None
    sources = {key: (regex.pattern, regex.flags) for key, regex in patterns.items()}
    return "\n".join([*imports, "import re",
                      "from fastjsonschema import JsonSchemaValueException, "
                      "JsonSchemaValuesException",
                      _LAZY_PATTERNS.format(sources=repr(sources))])


def _read_cached(path: Path) -> tuple[str, Any] | None:
    """The cached (name, code object), or None (absent, not ours, writable by others,
    or corrupt)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return None
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read()
        entry = marshal.loads(data)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    if (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
            and type(entry[1]) is type(_read_cached.__code__)):
        return entry[0], entry[1]
    return None


def _write_cached(path: Path, entry: tuple[str, Any]) -> None:
    """Write the entry whole or not at all (temp file + rename); any failure is ignored."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(entry))
        temp.replace(path)
    except OSError:
        try:
            temp.unlink()
        except OSError:
            pass
