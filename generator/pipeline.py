"""The pure core end to end: environment reference in, rendered Tree out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.environment import Loaded, load_environment
from generator.families import Pins, render_all
from generator.tree import Tree


@dataclass(frozen=True, slots=True)
class Rendered:
    loaded: Loaded
    tree: Tree

    @property
    def env_name(self) -> str:
        return self.loaded.source.name

    def default_out(self) -> Path:
        return self.loaded.source.root / "rendered" / self.env_name


def render_environment(ref: str, cwd: Path | None = None, pins: Pins | None = None) -> Rendered:
    loaded = load_environment(ref, cwd)
    return Rendered(loaded, render_all(loaded.model, pins or Pins()))
