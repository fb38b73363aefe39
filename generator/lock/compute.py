"""Computing, checking and applying a lock: which inputs an environment has, how each is
resolved, the pins renderers get from it, and what would change.

The pure part (wanted inputs, pins, lock diffs) never touches the network; resolution goes
through `generator.lock.resolve` only when a command asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import SCHEMA_VERSION, __version__
from generator.environment import Loaded
from generator.errors import LockMismatch, Problem
from generator.families import Pins, render_all
from generator.families.kubernetes import workload_images
from generator.lock import nar
from generator.lock.lockfile import (
    PATH_INPUTS,
    GeneratorInfo,
    Input,
    Lock,
    Outputs,
    PathInput,
    Pinned,
)
from generator.lock.resolve import DEFAULT_FORMATS, Offline, Progress, Unreachable
from generator.lock.store import Store, StoreCorrupt, StoreMissing
from generator.model import Mirror
from generator.tree import Tree

RELEASE_KEY = "release/openshift"  # the OpenShift release image, by digest

# --- what an environment needs pinned -----------------------------------------------------

def wanted_inputs(loaded: Loaded) -> dict[str, Any]:
    """Input key -> its `original` form, for every external artifact the model uses."""
    env = loaded.model
    wanted: dict[str, Any] = {f"image/{name}": ref for name, ref in env.images}
    for used in workload_images(env):
        # a reference written in place (or gen's add-on default) is pinned under its own name
        wanted.setdefault(f"image/{used.key}", used.ref)
    for art in env.os_artifacts:
        wanted[f"os/{art.name}"] = _os_original(art)
    kolla = env.openstack.kolla_ansible if env.openstack is not None else None
    if kolla is not None and kolla.url:
        # The converge tool is pinned like an artifact: the package that deploys this
        # environment's OpenStack release, by the sha256 the blueprint ships (or fetched).
        wanted["tool/kolla-ansible"] = {"pypi": "kolla-ansible", "version": kolla.version,
                                        "url": kolla.url,
                                        **({"sha256": kolla.sha256} if kolla.sha256 else {})}
    for tool in env.tools:
        # A client tool converge runs (openshift-install, oc), by the sha256 the release's
        # checksum file lists for its archive (an excerpt ships with the blueprint).
        wanted[f"tool/{tool.name}"] = {"version": tool.version, "url": tool.url,
                                       **({"sha256": tool.sha256} if tool.sha256 else {}),
                                       **({"checksums": {"file": tool.checksums_file}}
                                          if tool.checksums_file and not tool.sha256 else {})}
    if env.release is not None:
        # The release image by digest: what openshift-install installs (and must embed).
        release = env.release
        wanted[RELEASE_KEY] = {"version": release.version, "url": release.url,
                               **({"file": release.file} if release.file else {}),
                               **({"image": release.image} if release.image else {})}
    for ref in _manifest_refs(env):
        original = {"url": ref.url}
        if ref.sha256:
            original["sha256"] = ref.sha256
        wanted[f"manifest/{ref.name}"] = original
    return dict(sorted(wanted.items()))


def _manifest_refs(env: Any) -> list[Any]:
    refs = list(getattr(env, "manifests", ()) or ())
    if env.kubernetes.cni_manifest is not None:
        refs.append(env.kubernetes.cni_manifest)
    return refs


def _os_original(art: Any) -> dict[str, Any]:
    if art.stream_url or art.stream_file:
        source = {"file": art.stream_file} if art.stream_file else {"url": art.stream_url}
        artifact = art.stream_artifact or art.kind
        return {"stream": {**source, "artifact": artifact, "arch": art.arch,
                           "platform": art.platform,
                           "format": art.format or DEFAULT_FORMATS.get(artifact, "raw.gz")}}
    original: dict[str, Any] = {"url": art.url}
    if art.sha256:
        original["sha256"] = art.sha256
    elif art.checksums_file:
        original["checksums"] = {"file": art.checksums_file}
    return original


def path_inputs(loaded: Loaded) -> dict[str, PathInput]:
    source = loaded.source
    return {"environment": PathInput(source.display(source.env_dir),
                                     nar.source_hash(source.env_dir)),
            "blueprint": PathInput(source.display(source.blueprint_dir),
                                   nar.source_hash(source.blueprint_dir))}


def generator_info() -> GeneratorInfo:
    return GeneratorInfo(__version__, SCHEMA_VERSION, installed_wheel_sha256())


def installed_wheel_sha256() -> str | None:
    """The sha256 pip recorded for the wheel file this running gen was installed from.

    None for a source checkout, an editable install, or an install from an index (no
    direct_url.json): then the version alone names the generator. Only counts when the
    installed distribution is the code running now, not another copy on sys.path.
    """
    import importlib.metadata
    import json

    import generator

    try:
        dist = importlib.metadata.distribution("gen")
        installed = Path(str(dist.locate_file("generator/__init__.py"))).resolve()
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
        return None
    if installed != Path(generator.__file__).resolve():
        return None
    archive = direct.get("archive_info") if isinstance(direct, dict) else None
    if not isinstance(archive, dict):
        return None
    hashes = archive.get("hashes") or {}
    legacy = str(archive.get("hash", ""))  # "sha256=<hex>" before PEP 610's `hashes`
    found = hashes.get("sha256") or (legacy[7:] if legacy.startswith("sha256=") else None)
    return found if isinstance(found, str) and len(found) == 64 else None


# --- resolving ---------------------------------------------------------------------------

@dataclass(slots=True)
class Resolver:
    """The live context of `gen lock` / `gen update`: store, env dir, network policy."""

    store: Store
    env_dir: Path
    offline: bool = False
    insecure: frozenset[str] = frozenset()
    progress: Callable[[str], Progress] | None = None
    blueprint_dir: Path | None = None  # a stream file not beside env.yaml may ship here
    mirror: Mirror | None = None  # the site's mirror, asked before the upstreams
    _streams: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, key: str, original: Any) -> Any:
        from generator.lock import resolve as r

        kind, _, name = key.partition("/")
        # stream files and file:// URLs are found beside env.yaml, else in the blueprint
        bases = (self.env_dir, *([self.blueprint_dir] if self.blueprint_dir else []))
        if kind == "image":
            return r.resolve_image(original, self.insecure, self.offline, self.mirror)
        if kind == "release":
            return r.release_image(original, bases, self.offline, self._artifacts, key)
        if kind == "os" and "stream" in original:
            spec = original["stream"]
            source = spec.get("file") or spec["url"]
            if source not in self._streams:
                self._streams[source] = r.load_stream(source, bases, self.offline,
                                                      self._artifacts)
            location, sha256 = r.stream_artifact(self._streams[source], spec["arch"],
                                                 spec["platform"], spec["format"],
                                                 spec["artifact"], f"{key} ({source})")
            return {"location": location, "sha256": sha256}
        if kind == "tool" and not original.get("sha256") and "checksums" in original:
            sha256 = r.listed_sha256(original["checksums"]["file"], original["url"], bases,
                                     key)
            return {"version": original["version"], "url": original["url"], "sha256": sha256}
        if kind == "tool":
            sha256 = original.get("sha256") or r.download(
                original["url"], self.store, None, key,
                self.progress(key) if self.progress else None, self.offline, bases,
                self._artifacts)
            return {"version": original["version"], "url": original["url"], "sha256": sha256}
        if kind == "os" and original.get("sha256"):
            return {"location": original["url"], "sha256": original["sha256"]}
        if kind == "os" and "checksums" in original:
            sha256 = r.listed_sha256(original["checksums"]["file"], original["url"], bases,
                                     key)
            return {"location": original["url"], "sha256": sha256}
        sha256 = r.download(original["url"], self.store, original.get("sha256"), key,
                            self.progress(key) if self.progress else None, self.offline, bases,
                            self._artifacts)
        if kind == "os":
            return {"location": original["url"], "sha256": sha256}
        return {"url": original["url"], "sha256": sha256}

    @property
    def _artifacts(self) -> str | None:
        return self.mirror.artifacts if self.mirror is not None else None


@dataclass(frozen=True, slots=True)
class LockResult:
    lock: Lock
    resolved: tuple[str, ...]  # keys resolved in this run
    unresolved: tuple[tuple[str, str], ...]  # (key, why) left out (offline)
    tree: Tree


def lock_environment(loaded: Loaded, old: Lock | None, resolver: Resolver,
                     update: Iterable[str] | None = None, allow_missing: bool = False,
                     ) -> LockResult:
    """The lock for `loaded`: keep what `old` pins unless named in `update` or stale.

    `update=None` re-resolves nothing already pinned (`gen lock`); a set re-resolves those
    keys (`gen update`). With `allow_missing`, inputs that cannot be resolved offline are
    left out and reported instead of failing.
    """
    if resolver.blueprint_dir is None:
        resolver.blueprint_dir = loaded.source.blueprint_dir
    if resolver.mirror is None:
        resolver.mirror = loaded.model.mirror
    redo = set(update or ())
    kept = _usable(loaded, old)
    artifacts: dict[str, Input] = {}
    resolved, unresolved = [], []
    for key, original in wanted_inputs(loaded).items():
        if key in kept and key not in redo:
            artifacts[key] = kept[key]
            continue
        if update and key not in redo:  # `gen update X` moves X only
            unresolved.append((key, "not pinned yet and not named; run `gen lock` to add it"))
            continue
        try:
            artifacts[key] = Pinned(original, resolver.resolve(key, original))
            resolved.append(key)
        except Offline as exc:
            # a release digest no server gave is left unpinned even online: no rendered
            # byte needs it, and the locked installer refuses to run without it
            if not allow_missing and not isinstance(exc, Unreachable):
                raise
            if key in kept:  # `gen update` of a pin whose source did not answer keeps it
                artifacts[key] = kept[key]
            unresolved.append((key, exc.message))
    tree = render_all(loaded.model, pins_from(artifacts, resolver.store, strict=False)[0],
                      locate=loaded.locate)
    lock = assemble(loaded, artifacts, tree)
    return LockResult(lock, tuple(resolved), tuple(unresolved), tree)


def _usable(loaded: Loaded, old: Lock | None) -> dict[str, Pinned]:
    """Entries of `old` whose original still matches what the environment says."""
    if old is None:
        return {}
    wanted = wanted_inputs(loaded)
    return {k: v for k, v in old.pinned().items() if wanted.get(k) == v.original}


def assemble(loaded: Loaded, artifacts: dict[str, Input], tree: Tree) -> Lock:
    inputs: dict[str, Input] = {**path_inputs(loaded), **artifacts}
    return Lock(generator_info(), dict(sorted(inputs.items())),
                Outputs(*nar.tree_hashes(tree)))


# --- from a lock to renderer pins -----------------------------------------------------------

def pins_from(inputs: dict[str, Input], store: Store, strict: bool) -> tuple[Pins, list[str]]:
    """Pins for renderers, plus notes. Manifests come from the store, verified.

    Strict (`--locked`/`--frozen`/verify): a missing or corrupt store object is an error.
    Otherwise it is left unpinned with a note.
    """
    images: dict[str, str] = {}
    os_pins: dict[str, tuple[str, str]] = {}
    manifests: dict[str, bytes] = {}
    notes: list[str] = []
    for key, entry in sorted(inputs.items()):
        kind, _, name = key.partition("/")
        if not isinstance(entry, Pinned):
            continue
        if kind == "image":
            images[name] = entry.locked
        elif kind == "os":
            os_pins[name] = (entry.locked["location"], entry.locked["sha256"])
        elif kind == "manifest":
            try:
                manifests[name] = store.read(entry.locked["sha256"], f"manifest {name}")
            except (StoreMissing, StoreCorrupt) as exc:
                if strict:
                    raise
                notes.append(f"{key}: {exc} ; rendering without it")
    return Pins(images=images, os=os_pins, manifests=manifests), notes


def pinned_tools(loaded: Loaded, lock: Lock) -> dict[str, str]:
    """Tool name -> the sha256 of its archive, for the lock's `tool/` entries that still
    match the environment (converge runs only these); and `release/openshift` -> the
    release image by digest the pinned openshift-install must embed."""
    usable = _usable(loaded, lock)
    tools = {key.partition("/")[2]: str(entry.locked["sha256"])
             for key, entry in usable.items() if key.startswith("tool/")}
    if RELEASE_KEY in usable:
        tools[RELEASE_KEY] = str(usable[RELEASE_KEY].locked)
    return tools


def render_pins(loaded: Loaded, lock: Lock | None, store: Store, strict: bool,
                ) -> tuple[Pins, list[str]]:
    """Pins for `gen render`: the lock's entries that still match the environment."""
    if lock is None:
        return Pins(), []
    usable = _usable(loaded, lock)
    pins, notes = pins_from(dict(usable), store, strict)
    stale = sorted(set(lock.pinned()) & set(wanted_inputs(loaded)) - set(usable))
    notes += [f"{key}: the lock pins an older form of this input; run `gen lock`"
              for key in stale]
    return pins, notes


def unpinned_images(loaded: Loaded, pins: Pins, where: str) -> list[Problem]:
    """One located problem per workload image the render would run by tag: a locked render
    runs every image by the digest the lock pins, which is also what lets a mirror serve it
    (a mirror is asked by digest; a tag could be anything there)."""
    env = loaded.model
    return [Problem(f"{used.what} runs image {used.ref}, which {where} does not pin by digest",
                    env.where(used.path),
                    f"run `gen lock env/{env.name}` where its registry or the site's mirror "
                    "answers, and commit the lock")
            for used in workload_images(env)
            if "@sha256:" not in pins.images.get(used.key, used.ref)]


class UnpinnedImages(LockMismatch):
    """Images a locked render would run by tag (exit 4), then what else would change."""

    def __init__(self, problems: list[Problem], stale: list[str]) -> None:
        super().__init__(f"{len(problems)} image(s) not pinned")
        self.problems, self.stale = problems, stale

    def lines(self) -> list[str]:
        return [p.render() for p in self.problems] + self.stale


def unpinned_manifests(loaded: Loaded, pins: Pins) -> list[str]:
    """A warning per manifest the environment declares but the render cannot include: an
    offline, unlocked or unfetched render must never drop the CNI without saying so."""
    env = loaded.model
    return [f"{ref.name} ({ref.url}) is not pinned, so it is left out of the rendered "
            f"manifests: nodes stay NotReady without a CNI; run `gen lock env/{env.name}` "
            "with network access, then `gen fetch`"
            for ref in _manifest_refs(env) if ref.name not in pins.manifests]


# --- what would change --------------------------------------------------------------------

def lock_changes(old: Lock, new: Lock, wanted: dict[str, Any] | None = None) -> list[str]:
    """One line per difference between two locks, inputs first, then outputs."""
    lines = []
    if old.version != new.version:
        lines.append(f"lock format: {old.version} -> {new.version}")
    if old.generator != new.generator:
        for attr in ("version", "schema", "wheel"):
            a, b = getattr(old.generator, attr), getattr(new.generator, attr)
            if a != b:
                lines.append(f"generator.{attr}: {a or 'none'} -> {b or 'none'}")
    for key in sorted(set(old.inputs) | set(new.inputs)):
        a, b = old.inputs.get(key), new.inputs.get(key)
        if a == b:
            continue
        if a is None:
            lines.append(f"input {key}: not in the lock")
        elif b is None:
            lines.append(f"input {key}: in the lock but no longer used")
        elif isinstance(a, PathInput) and isinstance(b, PathInput):
            lines.append(f"input {key} ({b.path}): {a.nar_hash} -> {b.nar_hash}")
        elif isinstance(a, Pinned) and isinstance(b, Pinned) and a.original != b.original:
            lines.append(f"input {key}: the environment now says {_short(b.original)}, "
                         f"the lock pins {_short(a.original)}")
        else:
            lines.append(f"input {key}: {_describe(a)} -> {_describe(b)}")
    lines += output_changes(old.outputs, new.outputs)
    return lines


def output_changes(old: Outputs, new: Outputs) -> list[str]:
    lines = []
    for name in sorted(set(old.subtrees) | set(new.subtrees)):
        a, b = old.subtrees.get(name), new.subtrees.get(name)
        if a != b:
            lines.append(f"output {name}: {a or 'absent'} -> {b or 'absent'}")
    if old.nar_hash != new.nar_hash and not lines:
        lines.append(f"output (tree): {old.nar_hash} -> {new.nar_hash}")
    return lines


def _describe(entry: Input) -> str:
    return entry.nar_hash if isinstance(entry, PathInput) else entry.describe()


def _short(original: Any) -> str:
    if isinstance(original, str):
        return original
    stream = original.get("stream")
    if stream:
        return f"{stream.get('file') or stream.get('url')} {stream['artifact']}"
    return str(original.get("url"))


def check_locked(loaded: Loaded, lock: Lock, tree: Tree, where: str) -> None:
    """Raise StaleLock (exit 4) naming every way the lock would change; UnpinnedImages
    (exit 4, one located line per image, then those changes) when a workload would run an
    image by tag."""
    lines = locked_differences(loaded, lock, tree)
    images = {key.partition("/")[2]: str(entry.locked)
              for key, entry in _usable(loaded, lock).items() if key.startswith("image/")}
    problems = unpinned_images(loaded, Pins(images=images), where)
    if problems:
        raise UnpinnedImages(problems, StaleLock(where, lines).lines() if lines else [])
    if lines:
        raise StaleLock(where, lines)


def locked_differences(loaded: Loaded, lock: Lock, tree: Tree) -> list[str]:
    """What `gen lock` would change: artifact entries, then input hashes and outputs."""
    wanted, kept = wanted_inputs(loaded), _usable(loaded, lock)
    lines = []
    for key in sorted((set(wanted) | set(lock.pinned())) - set(kept)):
        entry = lock.inputs.get(key)
        if key not in wanted:
            lines.append(f"input {key}: in the lock but no longer used")
        elif not isinstance(entry, Pinned) and key == RELEASE_KEY:
            # No rendered byte depends on the release digest, and it may have no offline
            # source at all: a lock without it still renders. Converge's locked installer
            # refuses to run without it (reconcile/installer.py).
            continue
        elif not isinstance(entry, Pinned):
            lines.append(f"input {key}: not in the lock")
        else:
            lines.append(f"input {key}: the environment now says {_short(wanted[key])}, "
                         f"the lock pins {_short(entry.original)}")
    expected = assemble(loaded, dict(kept), tree)
    same_artifacts = Lock(lock.generator, {k: v for k, v in lock.inputs.items()
                                           if k in PATH_INPUTS or k in kept}, lock.outputs,
                          lock.version)
    changes = lines + lock_changes(same_artifacts, expected)
    return changes + what_moved(changes, expected.generator) if changes else []


def what_moved(changes: list[str], generator: GeneratorInfo) -> list[str]:
    """One line naming the cause of `changes`: the environment, an input, the generator.

    Output hashes that moved with none of them moving mean the renderers changed without a
    version change (a gen built from source): that is the generator too.
    """
    causes = []
    if any(c.startswith(("input environment", "input blueprint")) for c in changes):
        causes.append("the environment (its files or its blueprint's)")
    if any(c.startswith("input ") and not c.startswith(("input environment",
                                                         "input blueprint")) for c in changes):
        causes.append("an input (a pinned artifact)")
    if any(c.startswith(("generator.", "lock format")) for c in changes):
        causes.append("the generator")
    if not causes and any(c.startswith("output") for c in changes):
        causes.append(f"the generator: its renderers changed output without a version "
                      f"change (gen {generator.version})")
    return [f"moved: {'; '.join(causes)}"] if causes else []


class StaleLock(LockMismatch):
    def __init__(self, where: str, lines: list[str]) -> None:
        super().__init__(f"{where} would change")
        self.where, self.changes = where, lines

    def lines(self) -> list[str]:
        return [f"{self.where} would change:"] + [f"  {line}" for line in self.changes] + [
            "run `gen lock ENV` (adds what is missing) or `gen update ENV [INPUT...]`, "
            "review the diff, and commit the lock"]
