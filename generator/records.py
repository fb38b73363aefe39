"""`@record`: `@dataclass(frozen=True, slots=True)`, built several times faster at import.

Python 3.11's dataclass compiles each method it generates (`__init__`, `__repr__`, `__eq__`,
`__hash__`, `__setattr__`, `__delattr__`) in an `exec` of its own: ~4.5 million instructions
a class, and the model's 30 classes were a sixth of `gen render env/lab`'s whole process.
`record` lets dataclasses lay out the fields, slots and `__match_args__` (asking it for no
methods), then compiles the same six methods, behaving the same, in one `exec` per class.
The class is a dataclass all the same: `fields()`, `replace()`, `asdict()`, pickling and
copying work as before (tests/test_records.py compares it with the real thing).

Only what the model uses is supported: fields with or without a plain default, and
`field(default=..., compare=False, repr=False, hash=None)`. Anything else (a default
factory, `init=False`, keyword-only fields, `__post_init__`, dataclass bases) raises
TypeError at import: use `@dataclass(frozen=True, slots=True)` for such a class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

from generator.compiled_schema import compile_cached

T = TypeVar("T")

_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__",
              "__getstate__", "__setstate__")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: type[T]) -> type[T]:
    """The frozen, slotted dataclass of `cls`."""
    _refuse_unsupported(cls)
    if cls.__doc__ is None:
        # dataclasses would write one from inspect.signature, whose tokenizer compiles regular
        # expressions that vary with the hash seed: every run would then rewrite the regex cache.
        cls.__doc__ = f"{cls.__name__}({', '.join(cls.__dict__.get('__annotations__', {}))})"
    built: Any = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=True)
    fields = dataclasses.fields(built)
    namespace: dict[str, Any] = {
        "__object_setattr": object.__setattr__,
        "FrozenInstanceError": dataclasses.FrozenInstanceError,
        "cls": built,
        **{f"_dflt_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING},
    }
    code = compile_cached(_source(fields), f"<record {built.__module__}.{built.__qualname__}>")
    exec(code, namespace)  # noqa: S102 - text built from the class's own field names
    for name in _GENERATED:
        method = namespace[name]
        method.__qualname__ = f"{built.__qualname__}.{name}"
        setattr(built, name, method)
    return built  # type: ignore[no-any-return]


def _refuse_unsupported(cls: type) -> None:
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            raise TypeError(f"@record {cls.__name__}: dataclass bases are not supported")
    for name in ("__post_init__", *_GENERATED):
        if name in cls.__dict__:  # dataclass would keep (or refuse) it; record would not
            raise TypeError(f"@record {cls.__name__}: defines {name}: use @dataclass")
    for name, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field) and (
                not value.init or value.kw_only is True
                or value.default_factory is not dataclasses.MISSING):
            raise TypeError(f"@record {cls.__name__}.{name}: only field(default=, compare=, "
                            "repr=, hash=) is supported")
        if value is dataclasses.KW_ONLY:
            raise TypeError(f"@record {cls.__name__}: keyword-only fields are not supported")


def _tuple(owner: str, names: list[str]) -> str:
    return "(" + "".join(f"{owner}.{name}," for name in names) + ")"


def _source(fields: tuple[dataclasses.Field[Any], ...]) -> str:
    """The six methods as dataclasses writes them for frozen=True, eq=True (3.11), plus the
    pickling pair it adds to frozen slotted classes."""
    names = [f.name for f in fields]
    params = ", ".join(f"{f.name}=_dflt_{f.name}" if f.default is not dataclasses.MISSING
                       else f.name for f in fields)
    assigns = "".join(f"    __object_setattr(self, {n!r}, {n})\n" for n in names) or "    pass\n"
    compared = [f.name for f in fields if f.compare]
    hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
    shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields if f.repr)
    frozen = "(" + "".join(f"{n!r}," for n in names) + ")"
    return (
        f"def __init__(self, {params}):\n{assigns}"
        f"def __repr__(self):\n"
        f"    return self.__class__.__qualname__ + f\"({shown})\"\n"
        f"def __eq__(self, other):\n"
        f"    if other.__class__ is self.__class__:\n"
        f"        return {_tuple('self', compared)} == {_tuple('other', compared)}\n"
        f"    return NotImplemented\n"
        f"def __hash__(self):\n"
        f"    return hash({_tuple('self', hashed)})\n"
        f"def __setattr__(self, name, value):\n"
        f"    if type(self) is cls or name in {frozen}:\n"
        f"        raise FrozenInstanceError(f\"cannot assign to field {{name!r}}\")\n"
        f"    super(cls, self).__setattr__(name, value)\n"
        f"def __delattr__(self, name):\n"
        f"    if type(self) is cls or name in {frozen}:\n"
        f"        raise FrozenInstanceError(f\"cannot delete field {{name!r}}\")\n"
        f"    super(cls, self).__delattr__(name)\n"
        f"def __getstate__(self):\n"
        f"    return [{''.join(f'self.{n}, ' for n in names)}]\n"
        f"def __setstate__(self, state):\n"
        f"    for name, value in zip({frozen}, state):\n"
        f"        __object_setattr(self, name, value)\n"
    )
