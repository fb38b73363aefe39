"""Git at the edge: temporary worktrees of a revision, and the rendered repo's commits.

`gen diff` runs the git binary directly (`GitCli`): importing gitpython costs more CPU
(~0.2-0.4 s) than everything git does for a diff. gitpython is imported lazily, for
`gen render --commit` only. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.errors import UserError

# Branches whose merge-base with HEAD is the default base of `gen diff`, first found wins.
MAIN_REFS = ("origin/main", "main", "origin/master", "master")
GEN_ACTOR = ("gen", "gen@localhost")


class GitCli:
    """The repository holding a path, driven through the git binary.

    `repo.git.<command>(*args)` runs `git <command> args` in its top level and returns
    stdout without its final newline (what gitpython's `repo.git` does, for the few
    commands `gen diff` needs); a failing command raises GitFailed.
    """

    def __init__(self, top: str) -> None:
        self.working_tree_dir = top
        self.git = self

    def __getattr__(self, command: str) -> Any:
        if command.startswith("_"):
            raise AttributeError(command)
        return lambda *args: self.run(command.replace("_", "-"), *args)

    def run(self, *args: str) -> str:
        import subprocess

        proc = subprocess.run(["git", *args], cwd=self.working_tree_dir, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise GitFailed(args, proc.returncode, proc.stderr)
        return proc.stdout.removesuffix("\n")


class GitFailed(Exception):
    """A git command exited non-zero (not a user error by itself: callers decide)."""

    def __init__(self, args: tuple[str, ...], code: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} exited {code}: {stderr.strip()}")
        self.code = code


def open_repo(path: Path) -> Any:
    """The git repository holding `path` (searching parents); UserError when there is none."""
    import subprocess

    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path if path.is_dir()
                          else path.parent, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    top = proc.stdout.strip()
    if proc.returncode != 0 or not top:
        raise UserError(f"{path} is not inside a git repository",
                        "run gen diff from a clone of the monorepo (git init, commit)")
    return GitCli(top)


def resolve(repo: Any, ref: str) -> str:
    """The full commit sha of `ref`; UserError naming the ref when it does not resolve."""
    try:
        if ref.startswith("-"):  # never an option to any git command
            raise ValueError(ref)
        # ^{commit}: `REV:PATH` names a tree or blob, never a revision to render
        return str(repo.run("rev-parse", "--verify", "--quiet", "--end-of-options",
                            f"{ref}^{{commit}}"))
    except (ValueError, GitFailed):
        raise UserError(f"unknown git revision '{ref}'",
                        "pass a branch, tag or commit that exists locally (git fetch first)"
                        ) from None


def default_base(repo: Any) -> tuple[str, str]:
    """(sha, label): HEAD's merge-base with the main branch when one exists, else HEAD.

    On a pull-request branch that is exactly what the branch changes; on main itself (or a
    repo without a main branch) it is HEAD, so the diff shows uncommitted work.
    """
    names = set(repo.run("for-each-ref", "--format=%(refname:short)",
                         "refs/heads", "refs/remotes").splitlines())
    head = resolve(repo, "HEAD")
    for name in MAIN_REFS:
        if name in names:
            try:
                base = repo.run("merge-base", "HEAD", name).strip()
            except GitFailed:
                continue
            if base and base != head:
                return base, f"merge-base with {name}"
            break
    return head, "HEAD"


@contextmanager
def worktree(repo: Any, sha: str) -> Iterator[Path]:
    """A detached temporary worktree of commit `sha`, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="gen-worktree-"))
    path = parent / "tree"
    repo.git.worktree("add", "--detach", "--quiet", str(path), sha)
    try:
        yield path
    finally:
        try:
            repo.git.worktree("remove", "--force", str(path))
        finally:
            shutil.rmtree(parent, ignore_errors=True)
            repo.git.worktree("prune")


def source_commit(path: Path) -> str:
    """HEAD of the repo holding `path`, with `+dirty` for uncommitted changes; or `none`."""
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
        sha = str(repo.head.commit.hexsha)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return "none"
    return sha + ("+dirty" if repo.is_dirty(untracked_files=True) else "")


def lock_hash(lock_file: Path) -> str:
    """sha256 of the lock file's bytes, or `unlocked` when there is no lock."""
    if not lock_file.is_file():
        return "unlocked"
    return "sha256:" + hashlib.sha256(lock_file.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Commit:
    """What `gen render --commit` did: the commit sha, or None when the tree was unchanged."""

    sha: str | None
    tree: str
    message: str


def commit_message(env: str, lock: str, source: str) -> str:
    return (f"gen render {env}\n\n"
            f"Environment: {env}\nLock: {lock}\nSource: {source}\n")


def commit_rendered(out: Path, env: str, lock: str, source: str) -> Commit:
    """Keep `out` a git repo of the rendered tree; commit only when its tree hash changed."""
    import git

    repo = git.Repo(out) if (out / ".git").exists() else git.Repo.init(out)
    repo.git.add("--all", ".")
    tree = repo.git.write_tree()
    head_tree = repo.git.rev_parse("HEAD^{tree}") if repo.head.is_valid() else None
    message = commit_message(env, lock, source)
    if tree == head_tree:
        return Commit(None, tree, message)
    # The git binary (not gitpython's index.commit) honours every GIT_* variable CI sets.
    repo.git.execute(["git", *_identity(repo), "commit", "--quiet", "--no-verify",
                      "--message", message])
    return Commit(str(repo.head.commit.hexsha), tree, message)


def _identity(repo: Any) -> list[str]:
    """`-c user.*` for gen's own identity when none is configured (common on CI runners)."""
    import os

    reader = repo.config_reader()
    args = []
    for key, env, default in (("name", "GIT_COMMITTER_NAME", GEN_ACTOR[0]),
                              ("email", "GIT_COMMITTER_EMAIL", GEN_ACTOR[1])):
        if not reader.get_value("user", key, default="") and not os.environ.get(env):
            args += ["-c", f"user.{key}={default}"]
    return args
