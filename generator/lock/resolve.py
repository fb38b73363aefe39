"""The live layer of the lock: turn image tags, stream entries and URLs into pinned digests.

Only `gen lock`, `gen update` and `gen fetch` call this module; rendering never does. Network
access goes through urllib, imported lazily; errors become one-line UserErrors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from generator.confine import confined_file, relative_file_problem
from generator.errors import UserError
from generator.lock.store import ChecksumMismatch, Store
from generator.model import SECRET_MARKER_PREFIX, Mirror
from generator.safefile import UnsafeFile, open_regular, read_regular

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_FORMATS = {"kernel": "pxe", "initramfs": "pxe", "rootfs": "pxe", "disk": "raw.gz"}
TIMEOUT = 30.0
MAX_STREAM_BYTES = 64 << 20  # CoreOS stream metadata is ~100 KiB
MAX_MANIFEST_BYTES = 4 << 20  # OCI indexes are a few KiB; a PR-named registry must not fill RAM
MAX_TOKEN_BYTES = 64 << 10  # a token reply is one small JSON object
MAX_URL = 2048
# http(s), or file:// with a path relative to the environment's (or blueprint's) folder: the
# same rule as the schema's `url` type, for values that do not pass through the schema
LOCATION = re.compile(r"https?://[^\s\"'\\<>`\x00-\x1f\x7f]+|file://[^/\s\"'\\<>`\x00-\x1f\x7f]"
                      r"[^\s\"'\\<>`\x00-\x1f\x7f]*")
TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")  # goes into an Authorization header as is
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
Progress = Callable[[int, int | None], None]  # bytes so far, total (None if unknown)
T = TypeVar("T")


class Offline(UserError):
    """Resolution needed the network, but the command runs offline."""


class Unreachable(Offline):
    """A converge-only input (the release digest) whose server did not answer: `gen lock`
    leaves it unpinned, as offline, instead of failing (converge refuses without it)."""


# --- image references --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference: `[registry/]repository[:tag][@digest]`."""

    registry: str  # as written or implied ("docker.io")
    repository: str  # with "library/" for official Docker Hub images
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def pinned(self, digest: str) -> str:
        """`registry/repository@sha256:...` (the tag goes: the digest alone decides)."""
        return f"{self.registry}/{self.repository}@{digest}"


def parse_image(ref: str) -> ImageRef:
    name, _, digest = ref.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
                        repository) or (digest and not re.fullmatch(r"sha256:[0-9a-f]{64}",
                                                                    digest)):
        raise UserError(f"'{ref}' is not a valid image reference",
                        "write [registry/]repository[:tag][@sha256:<hex>]")
    return ImageRef(registry, repository, tag if tag or digest else "latest", digest or None)


def resolve_image(ref: str, insecure: frozenset[str] = frozenset(), offline: bool = False,
                  mirror: Mirror | None = None) -> str:
    """The pinned `repo@sha256:...` of an image tag, via the registry HTTP API v2.

    For a multi-arch image this is the digest of the index (manifest list), so every
    architecture stays pinned. A reference that already names a digest needs no network.
    With the site's `mirror`, the mirror is asked first (a disconnected site has nothing
    else); the upstream registry only when the mirror does not answer for this tag. The pin
    names the upstream repository either way: nodes reach the mirror by their hosts.toml
    or imageDigestSources, by digest.
    """
    image = parse_image(ref)
    if image.digest:
        return image.pinned(image.digest)
    if offline:
        raise Offline(f"image {ref}: resolving a tag needs the registry",
                      "run without --offline/--frozen where the registry is reachable")
    if mirror is None:
        return image.pinned(_upstream_digest(image, ref, insecure))
    try:
        return image.pinned(mirror_digest(image, mirror, ref, insecure))
    except UserError as at_mirror:
        try:
            return image.pinned(_upstream_digest(image, ref, insecure))
        except UserError as upstream:
            raise UserError(f"{at_mirror.message}; and upstream, {upstream.message}",
                            f"push it to the mirror {mirror.registry} (skopeo copy, or gen "
                            "converge from the store), or lock where its registry answers"
                            ) from None


def _upstream_digest(image: ImageRef, ref: str, insecure: frozenset[str]) -> str:
    scheme = "http" if _plain_http(image.api_host, insecure) else "https"
    url = f"{scheme}://{image.api_host}/v2/{image.repository}/manifests/{image.tag}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    _, reply_headers, body = _registry_get(url, headers, ref, insecure)
    return _served_digest(reply_headers, body, ref)


def _served_digest(reply_headers: dict[str, str], body: bytes, ref: str) -> str:
    digest = reply_headers.get("docker-content-digest") or ""
    computed = "sha256:" + hashlib.sha256(body).hexdigest()
    if digest and digest.startswith("sha256:") and digest != computed:
        raise UserError(f"image {ref}: the registry's Docker-Content-Digest {digest} does not "
                        f"match the manifest it sent ({computed})", "check the registry or proxy")
    return digest if digest.startswith("sha256:") else computed


def mirror_digest(image: ImageRef, mirror: Mirror, ref: str,
                  insecure: frozenset[str] = frozenset()) -> str:
    """The digest the site's mirror serves for the tag, where the mirror keeps it
    (`<mirror>/<upstream host>/<repository>`): a Registry v2 HEAD on the manifest with
    every manifest type accepted (so an index stays an index), read from
    Docker-Content-Digest. A HEAD moves no manifest; a mirror that omits the header is
    asked with a GET and the manifest hashed. Trusting the header pins nothing unsafe: a
    node pulls by that digest, and its runtime checks the content against it."""
    host, _, repository = mirror.repository(f"{image.registry}/{image.repository}") \
        .partition("/")
    scheme = "http" if _plain_http(host, insecure) else "https"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{image.tag}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    what = f"image {ref} at the site's mirror"
    context = _tls_context(mirror.ca)
    _, reply_headers, _ = _registry_get(url, headers, what, insecure, "HEAD", context)
    digest = reply_headers.get("docker-content-digest", "")
    if DIGEST.fullmatch(digest):
        return digest
    _, reply_headers, body = _registry_get(url, headers, what, insecure, "GET", context)
    return _served_digest(reply_headers, body, ref)


def _tls_context(ca: str | None) -> Any:
    """TLS trusting the environment's CA for its mirror (None: the system's CAs)."""
    if not ca:
        return None
    import ssl

    return ssl.create_default_context(cadata=ca)


def _plain_http(host: str, insecure: frozenset[str]) -> bool:
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host in insecure or hostname in ("localhost", "::1") or hostname.startswith("127.")


def _registry_get(url: str, headers: dict[str, str], what: str,
                  insecure: frozenset[str] = frozenset(), method: str = "GET",
                  context: Any = None) -> tuple[int, dict[str, str], bytes]:
    """GET (or HEAD) with the anonymous bearer-token dance real registries (Docker Hub,
    quay) need."""
    from urllib.error import HTTPError

    try:
        return _http_get(url, headers, what, MAX_MANIFEST_BYTES, method, context)
    except HTTPError as exc:
        challenge = exc.headers.get("WWW-Authenticate", "") if exc.code == 401 else ""
        if not challenge.lower().startswith("bearer "):
            raise _http_error(what, url, exc) from None
    token = _anonymous_token(challenge, what, insecure, context)
    try:
        return _http_get(url, {**headers, "Authorization": f"Bearer {token}"}, what,
                         MAX_MANIFEST_BYTES, method, context)
    except HTTPError as exc:
        raise _http_error(what, url, exc) from None


def _anonymous_token(challenge: str, what: str, insecure: frozenset[str] = frozenset(),
                     context: Any = None) -> str:
    """The token a registry's `WWW-Authenticate: Bearer realm=...` grants anonymously.

    The registry is named by the environment (a pull request), so its realm is hostile
    input: an https URL (http only where the registry itself may be plain http), and the
    reply a small JSON object whose token fits an HTTP header."""
    from urllib.error import HTTPError
    from urllib.parse import urlencode

    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise UserError(f"image {what}: the registry asked for a token without a realm")
    problem = realm_problem(realm, insecure)
    if problem:
        raise UserError(f"image {what}: the registry's token realm {problem}",
                        "a registry's realm must be an https:// URL (http:// only for "
                        "loopback or --insecure-registry hosts)")
    try:
        _, _, body = _http_get(f"{realm}?{urlencode(params)}", {}, what, MAX_TOKEN_BYTES,
                               context=context)
    except HTTPError as exc:
        raise _http_error(what, realm, exc) from None
    return _token_from(body, what, realm)


def realm_problem(realm: str, insecure: frozenset[str]) -> str | None:
    """Why a Bearer realm may not be asked for a token, or None."""
    from urllib.parse import urlsplit

    shown = repr(realm[:200])
    if len(realm) > MAX_URL or not re.fullmatch(r"https?://[\x21-\x7e]+", realm):
        return f"{shown} is not an http(s) URL"
    try:
        parts = urlsplit(realm)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{shown} is not an http(s) URL"
    if not host or "@" in parts.netloc:
        return f"{shown} names no plain host"
    if parts.scheme == "http" and not _plain_http(f"{host}:{port}" if port else host, insecure):
        return f"{shown} is plain http to a host that is not loopback or --insecure-registry"
    return None


def _token_from(body: bytes, what: str, realm: str) -> str:
    hint = "check the registry: its token endpoint must answer a JSON object with a token"
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        raise UserError(f"image {what}: the token reply of {realm} is not JSON", hint) from None
    if not isinstance(reply, dict):
        raise UserError(f"image {what}: the token reply of {realm} is not a JSON object", hint)
    token = reply.get("token") or reply.get("access_token")
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise UserError(f"image {what}: the token reply of {realm} holds no usable token", hint)
    return token


def _opener(context: Any = None) -> Any:
    """A urllib opener that speaks http and https only: without the default file, ftp and
    data handlers, no URL and no redirect a registry or stream server sends can make gen
    read a local file. `context`: TLS trusting a site's own CA (its mirror)."""
    from urllib import request

    opener = request.OpenerDirector()
    for handler in (request.ProxyHandler(), request.UnknownHandler(), request.HTTPHandler(),
                    request.HTTPSHandler(context=context), request.HTTPDefaultErrorHandler(),
                    request.HTTPRedirectHandler(), request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _http_get(url: str, headers: dict[str, str], what: str, limit: int, method: str = "GET",
              context: Any = None) -> tuple[int, dict[str, str], bytes]:
    """GET (or HEAD) `url` (http or https only), reading at most `limit` bytes of the reply."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request

    try:
        with _opener(context).open(Request(url, headers=headers, method=method),
                                   timeout=TIMEOUT) as reply:
            body = reply.read(limit + 1)
            if len(body) > limit:
                raise UserError(f"{what}: {url} sent more than {limit >> 10} KiB",
                                "check the registry or server; gen reads small replies only")
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, body
    except HTTPError:
        raise
    except (URLError, OSError, ValueError) as exc:
        raise _unreachable(what, url, exc) from None


def _http_error(what: str, url: str, exc: Any) -> UserError:
    hint = ("the name or tag does not exist, or the registry needs credentials"
            if exc.code in (401, 403, 404) else "try again later")
    return UserError(f"{what}: {url} answered HTTP {exc.code} {exc.reason}", hint)


def _unreachable(what: str, url: str, exc: Exception) -> UserError:
    reason = getattr(exc, "reason", exc)
    return UserError(f"{what}: cannot reach {url}: {reason}",
                     "check the network or proxy; `gen render` itself needs no network")


# --- CoreOS stream metadata ----------------------------------------------------------------

def load_stream(source: str, base_dirs: tuple[Path, ...], offline: bool = False,
                mirror: str | None = None) -> dict[str, Any]:
    """Stream metadata JSON from an http(s) URL (the site's artifact `mirror` asked first),
    or from a file in the env dir or else the blueprint's dir (`base_dirs`), confined to
    that dir."""
    if source.startswith(("http://", "https://")):
        if offline:
            raise Offline(f"stream metadata {source} needs the network",
                          "ship a copy beside env.yaml and use `stream: {file: ...}`")
        body = mirror_first(source, mirror, lambda url: _small_get(
            url, f"stream {source}", MAX_STREAM_BYTES))
        text, where = body, source
    else:
        path = shipped_file(source.removeprefix("file://"), base_dirs, "stream metadata")
        try:
            text, where = read_regular(path, MAX_STREAM_BYTES), str(path)
        except UnsafeFile as exc:
            raise UserError(f"stream metadata {exc}", "ship the stream JSON as a plain file") \
                from None
        except OSError as exc:
            raise UserError(f"stream metadata {path}: {exc.strerror}",
                            "write a path relative to the environment dir") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"stream metadata {where} is not JSON: {exc}") from None
    except RecursionError:
        raise UserError(f"stream metadata {where} is nested too deeply to be stream "
                        "metadata") from None
    if not isinstance(data, dict):
        raise UserError(f"stream metadata {where} is not a JSON object")
    return data


def stream_artifact(stream: dict[str, Any], arch: str, platform: str, fmt: str | None,
                    artifact: str, where: str = "stream") -> tuple[str, str]:
    """(location, sha256) at architectures.<arch>.artifacts.<platform>.formats.<fmt>.<artifact>."""
    fmt = fmt or DEFAULT_FORMATS.get(artifact, "raw.gz")
    keys = ("architectures", arch, "artifacts", platform, "formats", fmt, artifact)
    node: Any = stream
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            known = sorted(node) if isinstance(node, dict) else []
            at = ".".join(keys[:depth + 1])
            raise UserError(f"{where}: no {at} in the stream metadata",
                            f"available: {', '.join(known) or 'nothing'}")
        node = node[key]
    location, sha256 = node.get("location"), node.get("sha256")
    if not isinstance(location, str) or not re.fullmatch(r"[0-9a-f]{64}", str(sha256)):
        raise UserError(f"{where}: {'.'.join(keys)} lacks a location or a sha256")
    problem = location_problem(location)
    if problem:
        raise UserError(f"{where}: {'.'.join(keys)}.location {problem}",
                        "the stream file is input like env.yaml: fix or re-download it")
    return location, str(sha256)


def location_problem(location: str) -> str | None:
    """Why `location` may not be locked, fetched or copied into a rendered file, or None.

    Stream files are PR-controlled but bypass the schema, so their locations get the
    schema's `url` rule here, plus the secret-marker rule env.yaml gets."""
    shown = repr(location[:200])
    if len(location) > MAX_URL or not LOCATION.fullmatch(location):
        return (f"{shown} is not an http(s) URL or a file:// path relative to the "
                "environment's folder (one line, no quotes or control characters)")
    if SECRET_MARKER_PREFIX in location:
        return f"{shown} holds a secret marker (@@gen-secret:...@@), which is not allowed here"
    if location.startswith("file://"):
        return relative_file_problem(location.removeprefix("file://"))
    return None


# --- upstream checksum files ------------------------------------------------------------------

# CentOS/Fedora `CHECKSUM` (BSD tag style) and sha256sum(1) output (`*` marks binary mode).
CHECKSUM_LINE = re.compile(r"SHA256 \((?P<tagged>[^()\s]+)\) = (?P<hex1>[0-9a-f]{64})"
                           r"|(?P<hex2>[0-9a-f]{64}) [ *](?P<plain>\S+)")
MAX_CHECKSUM_BYTES = 1 << 20  # an upstream checksum file is a few KiB


def listed_sha256(source: str, url: str, base_dirs: tuple[Path, ...], what: str) -> str:
    """The sha256 a checksum file shipped beside env.yaml (or the blueprint) lists for the
    url's file name: an excerpt of the distribution's own file pins its image offline."""
    found = confined_file(source, base_dirs)
    if isinstance(found, str):
        raise UserError(f"{what}: checksum file {found}",
                        "ship the excerpt beside env.yaml and name it relative to that folder")
    try:
        text = read_regular(found, MAX_CHECKSUM_BYTES).decode("utf-8", errors="replace")
    except UnsafeFile as exc:
        raise UserError(f"{what}: checksum file {exc}", "ship it as a plain file") from None
    except OSError as exc:
        raise UserError(f"{what}: checksum file {found}: {exc.strerror}",
                        "write a path relative to the environment dir") from None
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for line in text.splitlines():
        match = CHECKSUM_LINE.fullmatch(line.strip())
        if match and name in (match.group("tagged"), match.group("plain")):
            return str(match.group("hex1") or match.group("hex2"))
    raise UserError(f"{what}: {found.name} lists no sha256 for {name}",
                    "copy that file's line from the distribution's checksum file, or point "
                    "url at a file it lists")


# --- OpenShift release images -----------------------------------------------------------------

# release.txt, published beside the client archives (clients/ocp/<version>/release.txt):
# `Name:` the version, `Digest:` the release image's digest, `Pull From:` its pull spec.
RELEASE_FIELD = re.compile(r"(Name|Digest|Pull From):\s+(\S+)\s*")
MAX_RELEASE_TXT = 1 << 20  # release.txt is a few KiB (it lists the component images)
RELEASE_REF = re.compile(r"[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}")


def release_image(original: dict[str, Any], bases: tuple[Path, ...], offline: bool = False,
                  mirror: str | None = None, key: str = "release") -> str:
    """The release image by digest (`registry/repository@sha256:...`) of an OpenShift
    release: written in the environment (`image`), read from a copy of its release.txt
    shipped beside env.yaml or the blueprint (`file`), or fetched from `url` (the site's
    artifact mirror asked first, as for the client archives)."""
    version, url = str(original["version"]), str(original["url"])
    what = f"{key} {version}"
    if original.get("image"):
        return _release_ref(str(original["image"]), version, what)
    if original.get("file") or url.startswith("file://"):
        name = str(original.get("file") or url.removeprefix("file://"))
        path = shipped_file(name, bases, f"{what}: release.txt")
        try:
            text, where = read_regular(path, MAX_RELEASE_TXT).decode("utf-8", "replace"), name
        except UnsafeFile as exc:
            raise UserError(f"{what}: release.txt {exc}", "ship it as a plain file") from None
        except OSError as exc:
            raise UserError(f"{what}: release.txt {path}: {exc.strerror}",
                            "write a path relative to the environment dir") from None
        return parse_release_txt(text, version, where, what)
    if offline:
        # The hint is part of the message: an offline `gen lock` prints only the message
        # of what it leaves unpinned, and this input has no offline way round.
        raise Offline(f"{what}: its release image digest is published only in {url} (no "
                      "copy ships with the environment or blueprint); run `gen lock` once "
                      "where that server answers (the lock keeps the digest), or write "
                      "artifacts.release.image (that file's `Pull From:` value) in a reviewed "
                      "change")
    problem = location_problem(url)
    if problem:
        raise UserError(f"{what}: url {problem}", "write the release's release.txt URL")
    try:
        body = mirror_first(url, mirror,
                            lambda source: _small_get(source, what, MAX_RELEASE_TXT))
    except UserError as exc:
        raise Unreachable(f"{exc.message}; run `gen lock` again where it answers, or write "
                          "artifacts.release.image (the `Pull From:` value of that file) in a "
                          "reviewed change") from None
    return parse_release_txt(body.decode("utf-8", "replace"), version, url, what)


def parse_release_txt(text: str, version: str, where: str, what: str) -> str:
    """The `Pull From:` pull spec of a release.txt, checked against its `Name:` (the
    version the environment pins) and `Digest:` lines where the file has them."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = RELEASE_FIELD.fullmatch(line.strip())
        if match and match.group(1) not in fields:
            fields[match.group(1)] = match.group(2)
    if "Pull From" not in fields:
        raise UserError(f"{what}: {where} has no `Pull From:` line",
                        "use the release's own release.txt (or its `Pull From:` line)")
    if fields.get("Name", version) != version:
        raise UserError(f"{what}: {where} is the release.txt of {fields['Name']}, not {version}",
                        "use the release.txt of the pinned version")
    ref = _release_ref(fields["Pull From"], version, what)
    if fields.get("Digest", ref.rpartition("@")[2]) != ref.rpartition("@")[2]:
        raise UserError(f"{what}: {where} says Digest {fields['Digest']} but pulls from {ref}",
                        "the file is damaged: fetch it again")
    return ref


def _release_ref(ref: str, version: str, what: str) -> str:
    # release.txt is fetched from a server: its pull spec is checked as strictly as the
    # schema checks a written `image` (it lands in the lock and in converge's messages)
    if len(ref) > 512 or not RELEASE_REF.fullmatch(ref):
        raise UserError(f"{what}: {ref[:200]!r} does not name the release image by digest",
                        "write registry/repository@sha256:<hex>")
    image = parse_image(ref)
    return image.pinned(image.digest or "")


# --- plain URLs ------------------------------------------------------------------------------

def download(url: str, store: Store, expected: str | None, what: str,
             progress: Progress | None = None, offline: bool = False,
             bases: tuple[Path, ...] = (), mirror: str | None = None) -> str:
    """Download `url` into the store, verifying `expected` when given; return its sha256.

    A file:// URL names a file relative to, and confined in, the first of `bases` (the
    environment's folder, then its blueprint's) that holds it, like `stream: {file:}`:
    an absolute path would let a pull request copy any file of the CI host into the store.
    With the site's artifact `mirror` (a base URL), an http(s) URL is asked there first, at
    `<mirror>/<host>/<path>`; the upstream only when the mirror does not serve it. Content
    the mirror serves against an `expected` sha256 is a mismatch, never a fallback."""
    if offline:
        raise Offline(f"{what}: downloading {url} needs the network",
                      "run `gen fetch` where the network is reachable, or copy the store")
    problem = location_problem(url)
    if problem:
        raise UserError(f"{what}: {problem}", "write an https:// URL, or file://PATH relative "
                        "to the environment's folder")
    if url.startswith("file://"):
        path = shipped_file(url.removeprefix("file://"), bases, f"{what}: file:// URL")
        try:
            return store.put_chunks(_file_chunks(path, progress), expected, what)
        except UnsafeFile as exc:
            raise UserError(f"{what}: {exc}", "a file:// URL names a plain file") from None
        except OSError as exc:
            raise UserError(f"{what}: cannot read {path}: {exc.strerror or exc}",
                            "fix the file:// URL or copy the file there") from None
    return mirror_first(url, mirror, lambda source: _download_http(source, store, expected,
                                                                   what, progress))


def mirror_first(url: str, mirror: str | None, get: Callable[[str], T]) -> T:
    """`get` from the site's artifact mirror, else from `url`; one line naming both failures.
    A checksum mismatch is never a reason to ask elsewhere: it is reported as it is."""
    if mirror is None:
        return get(url)
    try:
        return get(mirrored_url(url, mirror))
    except ChecksumMismatch:
        raise
    except UserError as at_mirror:
        try:
            return get(url)
        except ChecksumMismatch:
            raise
        except UserError as upstream:
            raise UserError(f"{at_mirror.message}; and upstream, {upstream.message}",
                            f"put the file on the site's artifact mirror {mirror}, or lock "
                            "where its server answers") from None


def _small_get(url: str, what: str, limit: int) -> bytes:
    from urllib.error import HTTPError

    try:
        return _http_get(url, {"Accept": "application/json"}, what, limit)[2]
    except HTTPError as exc:
        raise _http_error(what, url, exc) from None


def mirrored_url(url: str, mirror: str) -> str:
    """Where the site's artifact mirror keeps `url`: `<mirror>/<host[:port]>/<path>[?query]`
    (the host keeps two upstreams' equal paths apart, as the registry mirror does)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{mirror.rstrip('/')}/{host}{port}{parts.path}{query}"


def _download_http(url: str, store: Store, expected: str | None, what: str,
                   progress: Progress | None) -> str:
    from urllib.error import HTTPError, URLError
    from urllib.request import Request

    try:
        with _opener().open(Request(url), timeout=TIMEOUT) as reply:
            total = reply.headers.get("Content-Length")
            chunks = _reply_chunks(reply, int(total) if total else None, progress)
            return store.put_chunks(chunks, expected, what)
    except ChecksumMismatch:
        raise
    except HTTPError as exc:
        raise _http_error(what, url, exc) from None
    except (URLError, OSError, ValueError) as exc:
        raise _unreachable(what, url, exc) from None


def _reply_chunks(reply: Any, total: int | None, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    while chunk := reply.read(1 << 20):
        done += len(chunk)
        if progress:
            progress(done, total)
        yield chunk


def _file_chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    # a regular file only: file:///dev/zero or a FIFO would fill the store or block
    with open_regular(path) as (fd, info):
        total, done = info.st_size, 0
        while done <= total and (chunk := os.read(fd, 1 << 20)):
            done += len(chunk)
            if progress:
                progress(done, total)
            yield chunk


def shipped_file(name: str, bases: tuple[Path, ...], what: str) -> Path:
    """A file a pull request names relative to, and confined in, the environment's or the
    blueprint's folder (`confined_file`), or one line saying why not."""
    found = confined_file(name, bases)
    if isinstance(found, str):
        raise UserError(f"{what} {found}",
                        "ship the file beside env.yaml and name it relative to that folder")
    return found
