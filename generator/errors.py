"""One error root for gen; the CLI adapts these to exit codes in one place.

Exit codes (docs/design.md): 0 ok, 1 user error, 2 changes present (--detailed-exitcode),
3 destructive change not approved, 4 lock stale or mismatched, 64 usage, 70 internal.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_USER = 1
EXIT_CHANGES = 2
EXIT_DESTRUCTIVE = 3
EXIT_LOCK = 4
EXIT_USAGE = 64
EXIT_INTERNAL = 70


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value came from: a file, a 1-based line and column, and a field path."""

    file: str
    line: int = 0
    column: int = 0
    path: str = ""

    def prefix(self) -> str:
        # A file name is input too (a directory named with a newline): kept to one line.
        file = self.file if self.file.isprintable() else \
            self.file.encode("unicode_escape").decode()
        where = file if not self.line else f"{file}:{self.line}:{self.column}"
        return f"{where}: at {self.path}" if self.path else where


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about an input; an error unless warning is set."""

    message: str
    location: Location | None = None
    hint: str = ""
    warning: bool = False

    def render(self) -> str:
        text = self.message
        if self.location is not None:
            text = f"{self.location.prefix()}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return f"warning: {text}" if self.warning else text

    def sort_key(self) -> tuple[str, int, int]:
        loc = self.location
        return (loc.file, loc.line, loc.column) if loc else ("", 0, 0)


class GenError(Exception):
    """Base of every error gen reports without a traceback."""

    exit_code = EXIT_INTERNAL

    def lines(self) -> list[str]:
        return [str(self)]


class UserError(GenError):
    """Bad input or a failed check: the user can fix it."""

    exit_code = EXIT_USER

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        return [f"{self.message} ({self.hint})" if self.hint else self.message]


class InvalidInput(UserError):
    """Every problem found in the inputs, reported together in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__(f"{len(self.problems)} problem(s) in the input")

    def lines(self) -> list[str]:
        return [p.render() for p in self.problems]


class LockMismatch(GenError):
    """The lock is stale, would change, or does not match what was rendered."""

    exit_code = EXIT_LOCK


class DestructiveNotApproved(GenError):
    exit_code = EXIT_DESTRUCTIVE


class UsageError(GenError):
    exit_code = EXIT_USAGE
