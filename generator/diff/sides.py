"""The I/O edge of `gen diff`: render an environment at two git revisions.

Each revision is checked out into a temporary worktree (or, for the head, the working tree
is used as it is). A revision that carries its own generator (`generator/` in the repo,
as gen's own repo and a site repo vendoring gen do) is rendered by that generator: `python
-m generator render` run in a subprocess with PYTHONPATH set to that worktree, the way
copier renders an update's base from the template's base commit. So a pull request that
changes only the renderers shows the output it changes, with the generator change named.
A revision without one, or whose generator is byte-identical to the running one, is
rendered in-process by the running gen (fast: no second interpreter).
The lock at each revision supplies that side's pins (generator.pipeline.render_with_lock).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Any

from generator import graph
from generator.diff import Report, Side, build_report
from generator.diff.inputs import GeneratorId, generator_id, read_inputs
from generator.errors import GenError, UserError
from generator.loader import ENV_FILE
from generator.model import SecretRef

WORKING_TREE = "working tree"


def run_diff(env_ref: str, base: str | None = None, head: str | None = None,
             cwd: Path | None = None) -> Report:
    """Render `env_ref` at base and head (default: merge-base with main / the working tree)."""
    from generator import gitrepo

    cwd = (cwd or Path.cwd()).resolve()
    repo = gitrepo.open_repo(cwd)
    root = Path(repo.working_tree_dir).resolve()
    rel = env_path(env_ref, cwd, root)
    base_sha, base_label = (gitrepo.resolve(repo, base), base) if base else \
        gitrepo.default_base(repo)
    head_sha = gitrepo.resolve(repo, head) if head else None
    with ExitStack() as stack:
        head_root = stack.enter_context(gitrepo.worktree(repo, head_sha)) if head_sha else root
        base_root = stack.enter_context(gitrepo.worktree(repo, base_sha))
        base_rel = rel
        if not (base_root / rel / ENV_FILE).is_file():
            base_rel = renamed_from(repo, base_sha, head_sha, rel) or rel
        base_side, head_side = render_both(
            (base_label, base_sha, base_root, base_rel),
            (head or WORKING_TREE, head_sha, head_root, rel))
    if base_side.env is None and head_side.env is None:
        raise UserError(f"environment '{env_ref}' exists at neither revision",
                        "check the name (env/NAME) and the --base/--head revisions")
    return build_report(base_side, head_side)


class RemoteError(GenError):
    """A GenError raised while rendering the other side in a child process."""

    def __init__(self, exit_code: int, lines: list[str]) -> None:
        super().__init__(lines[0] if lines else "error")
        self.exit_code = exit_code
        self._lines = lines

    def lines(self) -> list[str]:
        return self._lines


SideArgs = tuple[str, str | None, Path, PurePosixPath]


def render_both(base: SideArgs, head: SideArgs) -> tuple[Side, Side]:
    """Render the two sides, each with the generator it carries, else the running one.

    A side the running gen renders is first looked up in the render cache (diff/cache.py):
    the base of a pull request was usually rendered before. Loading and rendering a side
    is CPU-bound pure Python (seconds for 1,000 nodes), and the sides are independent, so
    when both miss two processes halve the wall time: a side with its own generator runs in
    its own interpreter anyway; otherwise the base goes to a forked child when there is a
    second CPU.
    """
    running = running_generator()
    own = [own_generator(side[2], running) for side in (base, head)]
    if any(own):
        return _render_with_generators(base, head, own, running)
    looked = [_look_up(args, running) for args in (base, head)]
    if looked[0].side is not None or looked[1].side is not None:
        sides = [found.side or _render_and_keep(args, found)
                 for args, found in zip((base, head), looked, strict=True)]
        return sides[0], sides[1]
    if (os.cpu_count() or 1) < 2 or "fork" not in mp.get_all_start_methods():
        return _render_and_keep(base, looked[0]), _render_and_keep(head, looked[1])
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("fork")) as pool:
        future = pool.submit(_render_side_safely, *base, looked[0].inputs)
        head_side = _render_and_keep(head, looked[1])
        outcome = future.result()
    if isinstance(outcome, Side):
        _keep(looked[0], outcome)
        return outcome, head_side
    raise RemoteError(*outcome)


@dataclasses.dataclass(frozen=True, slots=True)
class _Lookup:
    """A side's render-cache key and inputs, and the side itself on a hit."""

    key: str | None  # None: no environment at this revision (nothing to cache)
    inputs: Any = None
    side: Side | None = None
    again: Callable[[], str | None] | None = None  # the key taken once more after a render


def _key(args: SideArgs, running: GeneratorId) -> tuple[str | None, bytes | None]:
    """(render cache key, the lock's bytes) of a side; no key when there is nothing to
    render or the lock is one the render refuses (the render reports it)."""
    from generator.diff import cache
    from generator.lock.lockfile import lock_path

    _, _, root, rel = args
    path = lock_path(root, rel.name)
    if not (root / rel / ENV_FILE).is_file() or (
            os.path.lexists(path) and (path.is_symlink() or not path.is_file())):
        return None, None
    try:
        lock = path.read_bytes() if path.is_file() else None
    except OSError:
        return None, None
    return cache.render_key(running, root, rel, lock), lock


def _look_up(args: SideArgs, running: GeneratorId) -> _Lookup:
    from generator.diff import cache

    label, sha, root, rel = args
    key, lock = _key(args, running)
    if key is None:
        return _Lookup(None)
    hit = cache.load(key)
    if hit is None:  # the head may be the working tree: an edit while it renders is seen
        return _Lookup(key, again=lambda: _key(args, running)[0])
    inputs = hit.inputs if hit.inputs is not None else read_inputs(root, str(rel))
    return _Lookup(key, inputs, Side(label, sha, hit.env, hit.tree,
                                     json.loads(lock) if lock is not None else None,
                                     hit.secrets, inputs, topology=hit.topology))


def _render_and_keep(args: SideArgs, found: _Lookup) -> Side:
    side = render_side(*args, inputs=found.inputs)
    _keep(found, side)
    return side


def _keep(found: _Lookup, side: Side) -> None:
    from generator.diff import cache

    if found.key is not None and side.env is not None and (
            found.again is None or found.again() == found.key):
        cache.save(found.key, cache.Rendered(side.env, side.tree, dict(side.secrets),
                                             side.topology, side.inputs))


def running_generator() -> GeneratorId:
    import generator

    return generator_id(Path(generator.__file__).resolve().parent,
                        f"the running gen ({Path(generator.__file__).resolve().parent})")


def own_generator(root: Path, running: GeneratorId) -> GeneratorId | None:
    """The generator `root` carries when it differs from the running one, else None."""
    package = root / "generator"
    if not (package / "__init__.py").is_file() or not (package / "__main__.py").is_file():
        return None
    carried = generator_id(package, "generator/ at this revision")
    return None if carried.sources == running.sources else carried


def _render_with_generators(base: SideArgs, head: SideArgs, own: list[GeneratorId | None],
                            running: GeneratorId) -> tuple[Side, Side]:
    with ExitStack() as stack:
        started = [_start_render(args, stack) if gen_id else None
                   for args, gen_id in zip((base, head), own, strict=True)]
        sides = [render_side(*args) if proc is None else _finish_render(args, *proc)
                 for args, proc in zip((base, head), started, strict=True)]
    out = [dataclasses.replace(side, generator=gen_id or running)
           for side, gen_id in zip(sides, own, strict=True)]
    return out[0], out[1]


def _start_render(args: SideArgs, stack: ExitStack) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m generator render` of the side's own worktree, into a scratch directory."""
    _, _, root, rel = args
    scratch = tempfile.TemporaryDirectory(prefix="gen-diff-side-", dir=_memory_backed())
    out = Path(stack.enter_context(scratch)) / "out"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "generator", "render", str(root / rel),
                             "--out", str(out)], cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stack.callback(_reap, proc)
    return proc, out


def _memory_backed() -> str | None:
    """/dev/shm when writable: the writer fsyncs every file, which on a busy disk costs far
    more than rendering (thousands of files for a large environment); None: the default."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _finish_render(args: SideArgs, proc: subprocess.Popen[bytes], out: Path) -> Side:
    from generator.environment import load_environment
    from generator.lock.lockfile import lock_path
    from generator.writer import read_tree

    label, sha, root, rel = args
    if not (root / rel / ENV_FILE).is_file():
        return Side(label, sha, None)
    _, err = proc.communicate()
    if proc.returncode != 0:
        where = f"{label} ({sha[:7]})" if sha else label
        lines = err.decode(errors="replace").splitlines() or [f"exit {proc.returncode}"]
        raise RemoteError(proc.returncode, [
            f"rendering {where} with the generator it carries (generator/ there) failed:",
            *lines])
    name = rel.name
    path = lock_path(root, name)
    lock = json.loads(path.read_bytes()) if path.is_file() else None
    topology = None
    try:  # secret references come from the inputs; the running gen reads them if it can
        model = load_environment(str(root / rel), cwd=root).model
        secrets = secret_refs(model)
        topology = graph.build_full(model)
    except GenError:
        secrets = {}
    return Side(label, sha, name, read_tree(out), lock, secrets, read_inputs(root, str(rel)),
                topology=topology)


def _render_side_safely(*args: Any) -> Side | tuple[int, list[str]]:
    # GenErrors do not all survive pickling (InvalidInput takes Problems): send their lines.
    try:
        return render_side(*args)
    except GenError as exc:
        return exc.exit_code, exc.lines()


def env_path(env_ref: str, cwd: Path, root: Path) -> PurePosixPath:
    """The environment's directory relative to the repo root (`environments/lab`)."""
    if env_ref.startswith("env/"):
        return PurePosixPath("environments", env_ref[4:])
    path = (cwd / env_ref).resolve()
    try:
        return PurePosixPath(path.relative_to(root).as_posix())
    except ValueError:
        raise UserError(f"{env_ref} is outside the git repository {root}",
                        "name the environment as env/NAME") from None


def renamed_from(repo: Any, base_sha: str, head_sha: str | None,
                 rel: PurePosixPath) -> PurePosixPath | None:
    """Where git's rename detection says the environment's env.yaml was at the base."""
    args = ["--name-status", "-M", base_sha, *([head_sha] if head_sha else []), "--",
            "environments"]
    target = str(rel / ENV_FILE)
    for line in repo.git.diff(*args).splitlines():
        fields = line.split("\t")
        if fields[0].startswith("R") and len(fields) == 3 and fields[2] == target:
            return PurePosixPath(fields[1]).parent
    return None


def render_side(label: str, sha: str | None, root: Path, rel: PurePosixPath,
                inputs: Any = None) -> Side:
    """Render the environment at `root/rel` with its lock's pins; an empty Side if absent.
    `inputs`: its read_inputs, when the caller has read them already."""
    from generator.lock.lockfile import lock_path
    from generator.pipeline import render_with_lock

    env_dir = root / rel
    if not (env_dir / ENV_FILE).is_file():
        return Side(label, sha, None)
    # The lock's own API picks the pins still matching this side's environment; manifests
    # come from the local content store (left unpinned if absent: a diff never fetches).
    rendered = render_with_lock(str(env_dir), cwd=root)
    # render_with_lock has read and validated the lock (a damaged one raised): its entries
    # are shown as they are written.
    path = lock_path(rendered.loaded.source.root, rendered.env_name)
    lock = json.loads(path.read_bytes()) if path.is_file() else None
    return Side(label, sha, rendered.env_name, rendered.tree, lock,
                secret_refs(rendered.loaded.model),
                inputs if inputs is not None else read_inputs(root, str(rel)),
                topology=graph.build_full(rendered.loaded.model))


def secret_refs(model: Any) -> dict[str, tuple[str, str]]:
    """Every SecretRef reachable from the model, by name: (source, ref), never a value."""
    found: dict[str, tuple[str, str]] = {}
    stack = [model]
    while stack:
        value = stack.pop()
        if isinstance(value, SecretRef):
            found[value.name] = (value.source, value.ref)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, tuple | list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return found
