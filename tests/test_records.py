"""`@record` behaves as `@dataclass(frozen=True, slots=True)`: each class below is built both
ways from the same body and every observable behaviour is compared."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from generator import model
from generator.records import record

Body = Callable[[], type]


def _plain() -> type:
    class Plain:
        """A record with no defaults."""

        name: str
        size: int

        def double(self) -> int:
            return self.size * 2

    return Plain


def _defaults() -> type:
    class Defaults:
        name: str
        ip: IPv4Address | None = None
        tags: tuple[str, ...] = ()
        flag: bool = False

    return Defaults


def _not_compared() -> type:
    class NotCompared:
        name: str
        locate: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
        weight: int = field(default=1, hash=False)

    return NotCompared


def _empty() -> type:
    class Empty:
        pass

    return Empty


BODIES = [_plain, _defaults, _not_compared, _empty]
ARGS: dict[str, list[tuple[Any, ...]]] = {
    "Plain": [("a", 1), ("a", 2)],
    "Defaults": [("a",), ("a", IPv4Address("10.0.0.1"), ("x", "y"), True)],
    "NotCompared": [("a",), ("a", str.upper), ("a", None, 5)],
    "Empty": [()],
}

# pickle finds classes by module and qualified name: both twins are published here
_PUBLISHED = sys.modules[__name__]


def _twins(body: Body) -> tuple[type, type]:
    fast, real = record(body()), dataclass(frozen=True, slots=True)(body())
    fast.__qualname__ = fast.__name__ = f"Fast{body().__name__}"
    real.__qualname__ = real.__name__ = f"Real{body().__name__}"
    setattr(_PUBLISHED, fast.__name__, fast)
    setattr(_PUBLISHED, real.__name__, real)
    return fast, real


def _strip(text: str, fast: type, real: type) -> str:
    return text.replace(fast.__qualname__, "X").replace(real.__qualname__, "X")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.__name__)
def test_record_behaves_as_a_frozen_slotted_dataclass(body: Body) -> None:
    fast, real = _twins(body)
    plain_name = body().__name__
    assert dataclasses.is_dataclass(fast)
    assert fast.__slots__ == real.__slots__  # type: ignore[attr-defined]
    assert fast.__match_args__ == real.__match_args__  # type: ignore[attr-defined]
    assert [(f.name, f.default, f.compare, f.repr, f.hash) for f in dataclasses.fields(fast)] \
        == [(f.name, f.default, f.compare, f.repr, f.hash) for f in dataclasses.fields(real)]
    assert _params(fast) == _params(real)
    for args in ARGS[plain_name]:
        a, b = fast(*args), real(*args)
        assert _strip(repr(a), fast, real) == _strip(repr(b), fast, real)
        assert a == fast(*args) and not a != fast(*args)
        assert (a == b) is False  # another class: NotImplemented both ways
        assert hash(a) == hash(b)
        assert hash(a) == hash(fast(*args))
        for target in (a, b):
            if dataclasses.fields(fast):
                with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
                    target.name = "z"
                with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete"):
                    del target.name
            # not a field: 3.11's dataclass fails with TypeError (its __setattr__ holds the
            # class from before slots were added), record with FrozenInstanceError
            with pytest.raises((AttributeError, TypeError)):
                target.not_a_field = 1
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        assert dataclasses.astuple(a) == dataclasses.astuple(b)
        assert pickle.loads(pickle.dumps(a)) == a
        assert copy.deepcopy(a) == a and copy.copy(a) == a
        if dataclasses.fields(fast):
            first = dataclasses.fields(fast)[0].name
            assert dataclasses.replace(a, **{first: "r"}) == fast(*("r", *args[1:]))
    for x in ARGS[plain_name]:
        for y in ARGS[plain_name]:
            assert (fast(*x) == fast(*y)) == (real(*x) == real(*y))
            assert (fast(*x) != fast(*y)) == (real(*x) != real(*y))


def _params(cls: type) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]


def test_record_signature_and_defaults_match() -> None:
    for body in BODIES:
        fast, real = _twins(body)
        assert _params(fast) == _params(real)


def test_fields_left_out_of_eq_and_hash_stay_out() -> None:
    fast = record(_not_compared())
    assert fast("a", str.upper, 1) == fast("a", None, 1)  # locate is not compared
    assert fast("a", None, 1) != fast("a", None, 2)  # weight is compared...
    assert hash(fast("a", None, 1)) == hash(fast("a", None, 2))  # ...but not hashed
    assert "locate" not in repr(fast("a", str.upper))


def test_record_refuses_what_it_does_not_build() -> None:
    class Factory:
        items: list[str] = field(default_factory=list)

    class PostInit:
        name: str

        def __post_init__(self) -> None:
            pass

    class OwnRepr:
        name: str

        def __repr__(self) -> str:
            return "mine"

    for cls in (Factory, PostInit, OwnRepr):
        with pytest.raises(TypeError, match="@record"):
            record(cls)


def test_every_model_class_is_a_frozen_slotted_dataclass() -> None:
    classes = [c for c in vars(model).values()
               if isinstance(c, type) and c.__module__ == model.__name__
               and dataclasses.is_dataclass(c)]
    assert len(classes) >= 30
    for cls in classes:
        names = tuple(f.name for f in dataclasses.fields(cls))
        assert cls.__slots__ == names, cls  # type: ignore[attr-defined]
        assert [p.name for p in inspect.signature(cls).parameters.values()] == list(names)
        assert "__dict__" not in dir(cls)


def test_a_cold_and_a_warm_code_cache_build_the_same_model(tmp_path: Path) -> None:
    """The records' methods come from the code cache when warm: both processes agree."""
    program = ("from ipaddress import IPv4Address\n"
               "from generator.model import Disk, Nic, Node\n"
               "n = Node('w1', 'worker', 'hv1', 2, 4096, (Disk('root', 10, 'default'),),\n"
               "         (Nic('lab', '52:54:00:00:00:01', IPv4Address('10.0.0.5')),), 'w1.x')\n"
               "print(repr(n), n == Node(*[getattr(n, f) for f in n.__slots__]), hash(n) != 0)\n")
    env = {**os.environ, "GEN_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    outputs = [subprocess.run([sys.executable, "-c", program], env=env, check=True,
                              capture_output=True, text=True).stdout for _ in range(2)]
    assert outputs[0] == outputs[1] and outputs[0].endswith("True True\n")
    assert "Node(name='w1', role='worker'" in outputs[0]
    assert len(list((tmp_path / "cache" / "code").iterdir())) >= 30


def test_a_record_without_a_docstring_gets_one_without_inspecting_its_signature() -> None:
    """dataclasses writes a missing docstring from inspect.signature (a tokenizer run whose
    regular expressions vary with the hash seed, so the regex cache was rewritten by every
    process); @record names the fields itself."""

    @record
    class Undocumented:
        name: str
        count: int = 0

    assert Undocumented.__doc__ == "Undocumented(name, count)"
    assert Undocumented("x").count == 0
