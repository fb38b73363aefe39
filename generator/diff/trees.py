"""Tree-vs-tree comparison: which rendered files were added, removed or modified.

Pure: two Trees in, FileChange records out (with their unified diffs built on demand).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from generator.tree import Executable, Tree

ADDED, REMOVED, MODIFIED = "added", "removed", "modified"
SYMBOL = {ADDED: "+", REMOVED: "-", MODIFIED: "~"}
BINARY_NOTE = "(binary file)"


@dataclass(frozen=True, slots=True)
class FileChange:
    """One rendered file that differs between the two sides."""

    path: str
    status: str  # added | removed | modified
    old: bytes | None
    new: bytes | None

    @property
    def mode_only(self) -> bool:
        return self.old == self.new

    def unified(self, context: int = 3) -> str:
        """The unified diff of the file (text), `a/` and `b/` prefixed like git."""
        old, new = _text(self.old), _text(self.new)
        if old is None or new is None:
            return f"{BINARY_NOTE} {self.path} {self.status}\n"
        if self.mode_only:
            return f"{self.path}: executable bit changed\n"
        a = f"a/{self.path}" if self.old is not None else "/dev/null"
        b = f"b/{self.path}" if self.new is not None else "/dev/null"
        rows = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    a, b, n=context)
        return "".join(r if r.endswith("\n") else r + "\n\\ No newline at end of file\n"
                       for r in rows)


def _text(content: bytes | None) -> str | None:
    if content is None:
        return ""
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def compare_trees(old: Tree, new: Tree) -> tuple[FileChange, ...]:
    """Every path that differs (content or executable bit), sorted by path."""
    changes = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before is None:
            changes.append(FileChange(path, ADDED, None, after))
        elif after is None:
            changes.append(FileChange(path, REMOVED, before, None))
        elif before != after or isinstance(before, Executable) != isinstance(after, Executable):
            changes.append(FileChange(path, MODIFIED, before, after))
    return tuple(changes)
