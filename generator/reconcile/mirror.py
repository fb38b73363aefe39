"""The mirror provider: every image the lock pins, pushed by digest from the store to the
environment's mirror registry (`mirror.registry`).

Images land where the rendered configs send nodes (`Mirror.repository`: the upstream
`host/repository` under the mirror), by digest, so the mirror serves exactly the locked
bytes. Nothing is read from the upstream registry: the store is the only source, which is
what makes a disconnected site work (`gen store import`, then converge). Plan asks the mirror
for each image's manifest and, when it is absent, for each object (HEAD), and proposes one
action per image naming what is missing by digest; apply uploads only those objects (blobs
streamed from the store, verified as they are read), then PUTs the manifests by digest. A
second converge finds every manifest present and proposes nothing.

Credentials are the secret `mirror.credentials` names (`user:password`), read on this
machine at plan time and never shown; TLS trusts the `mirror.ca` the environment gives (the
same CA the nodes are told to trust), plain HTTP only for a loopback mirror without a CA or
with --mirror-plain-http.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.errors import UserError
from generator.lock.store import Store
from generator.model import Environment
from generator.reconcile.base import WAVE_MIRROR, Action, DiffItem
from generator.tree import Tree

if TYPE_CHECKING:  # the registry client (http.client, ssl) loads only when a mirror is set:
    # every plan starts this provider, most environments have no mirror
    from generator.lock.images import Missing
    from generator.lock.oci import Client


class MirrorProvider:
    name = "mirror"

    def __init__(self, store: Store, plain_http: bool, required: bool = True) -> None:
        self.store, self.plain_http, self.required = store, plain_http, required
        self.images: dict[str, str] = {}
        self.client: Client | None = None
        self.notices: list[str] = []
        self.skipped: list[str] = []
        self.read_seconds = 0.0

    def use_images(self, images: dict[str, str]) -> None:
        self.images = dict(images)

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        mirror = env.mirror
        if mirror is None:  # images are pulled from their upstream registries
            return []
        from generator.lock.images import architectures, missing
        from generator.lock.oci import RegistryError
        from generator.lock.resolve import parse_image

        if not self.images:
            self.notices.append("mirror: the lock pins no image (run `gen lock` first)")
            return []
        if not self.store.root.is_dir():
            raise UserError(f"mirror: the store {self.store.root} does not exist",
                            "run `gen fetch ENV` or `gen store import FILE` first, or pass "
                            "--store")
        started = time.monotonic()
        self.client = self._client(env)
        try:
            self.client.has_manifest("gen/ping", "sha256:" + "0" * 64)
        except RegistryError as exc:
            if self.required:  # asked for by name: an unreachable mirror is an error
                raise
            # say, the helper that will run it is created by this very converge
            self.skipped.append(f"mirror: {mirror.registry} ({exc.message})")
            return []
        archs = architectures(env)
        actions = []
        for order, (key, locked) in enumerate(sorted(self.images.items())):
            image = parse_image(locked)
            assert image.digest is not None
            repository = f"{image.registry}/{image.repository}"
            gap = missing(self.store, self.client, key, repository, image.digest, archs)
            if gap.objects:
                actions.append(_action(mirror.repository(repository), gap, order, archs))
        self.read_seconds = time.monotonic() - started
        return actions

    def _client(self, env: Environment) -> Client:
        from generator.lock.oci import Client, Credentials
        from generator.lock.resolve import _plain_http
        from generator.reconcile.secrets import read_local

        mirror = env.mirror
        assert mirror is not None
        credentials = None
        if mirror.credentials is not None:
            credentials = Credentials.parse(read_local(mirror.credentials),
                                            f"mirror.credentials ({mirror.credentials.name})")
        # a CA given means TLS, even to a loopback address
        plain = self.plain_http or (mirror.ca is None and _plain_http(mirror.registry,
                                                                      frozenset()))
        return Client(mirror.registry, plain_http=plain, cadata=mirror.ca,
                      credentials=credentials)

    def apply(self, action: Action) -> None:
        from generator.commands.lock import ProgressLine
        from generator.lock.images import missing, push

        gap: Missing = action.payload["missing"]
        assert self.client is not None
        # the action may be re-applied after an interruption: ask again what is missing
        fresh = missing(self.store, self.client, gap.key, gap.repository, gap.digest,
                        action.payload["archs"])
        push(self.store, self.client, fresh, ProgressLine.for_key(f"mirror {gap.key}"))
        click.echo(f"mirror: {gap.key}: pushed {len(fresh.objects)} object(s)", err=True)


def _action(target: str, gap: Missing, order: int, archs: frozenset[str]) -> Action:
    from generator.commands.lock import _size

    shown = f"{target}@{gap.digest}"
    return Action("create", "mirror", "image", gap.key, WAVE_MIRROR,
                  changes=tuple(DiffItem("add", f"{'manifest' if b.manifest else 'blob'} "
                                                f"{b.digest}", None, b.size)
                                for b in gap.objects),
                  note=f"{shown}: {len(gap.objects)} object(s), {_size(gap.bytes)} missing",
                  order=order, payload={"missing": gap, "archs": archs})


def start(store_dir: str | None, plain_http: bool, required: bool) -> MirrorProvider:
    from generator.lock.store import default_root

    return MirrorProvider(Store(Path(store_dir) if store_dir else default_root()), plain_http,
                          required)
