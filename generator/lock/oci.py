"""A small Registry v2 (OCI distribution) client: manifests and blobs by digest, streamed.

Only `gen fetch` (pull into the store) and the mirror provider (push from the store) use it.
It speaks HTTP/1.1 through http.client with one kept-alive connection per host, so a blob is
copied in 1 MiB chunks and never held whole in memory. Authentication follows the registry's
challenge: `Bearer realm=...` gets a token (anonymously, or with the credentials given), and
`Basic` gets the credentials themselves. Credentials come from a secret reference; they are
sent only to the registry (or its token realm) and never appear in an error.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from generator.errors import UserError
from generator.lock.resolve import MANIFEST_TYPES, realm_problem

CHUNK = 1 << 20
TIMEOUT = 60.0
MAX_MANIFEST = 4 << 20
MAX_REPLY = 64 << 10  # token replies and error bodies
MAX_REDIRECTS = 5
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryError(UserError):
    """A registry answered something gen cannot use, or could not be reached."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, value: bytes, what: str) -> Credentials:
        """`user:password` (what a secret for a registry holds), one line."""
        text = value.decode("utf-8", errors="replace").strip()
        user, sep, password = text.partition(":")
        if not sep or not user or "\n" in text:
            raise UserError(f"{what}: the secret is not one line `user:password`",
                            "write the registry's user and password as user:password")
        return cls(user, password)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    response: http.client.HTTPResponse

    def read_small(self, limit: int, what: str) -> bytes:
        body = self.response.read(limit + 1)
        if len(body) > limit:
            raise RegistryError(f"{what}: the registry sent more than {limit >> 10} KiB",
                                "check the registry; gen reads small replies only here")
        return body


class Client:
    """One registry (`host[:port]`), over https (optionally trusting one CA) or plain http."""

    def __init__(self, host: str, plain_http: bool = False, cadata: str | None = None,
                 credentials: Credentials | None = None) -> None:
        """`cadata`: PEM of the CA to trust instead of the system's (the environment's)."""
        self.host, self.plain_http, self.credentials = host, plain_http, credentials
        self.context = None if plain_http else ssl.create_default_context(cadata=cadata)
        self.connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self.auth: dict[str, str] = {}  # scope -> Authorization header value

    # -- reads ---------------------------------------------------------------------------

    def manifest(self, repository: str, digest: str) -> bytes:
        """The manifest `digest` of `repository`, checked against its digest."""
        what = f"{self.host}/{repository}@{digest}"
        reply = self.request("GET", f"/v2/{repository}/manifests/{digest}", repository,
                             {"Accept": ", ".join(MANIFEST_TYPES)})
        self.expect(reply, (200,), what)
        body = reply.read_small(MAX_MANIFEST, what)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"{what}: the manifest the registry sent does not hash to its "
                                "digest", "check the registry or proxy; nothing was stored")
        return body

    def blob_chunks(self, repository: str, digest: str, progress: Callable[[int], None]
                    ) -> Iterator[bytes]:
        """The blob's bytes in chunks (redirects to a storage backend followed)."""
        what = f"{self.host}/{repository}@{digest}"
        reply = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository, {},
                             follow=True)
        self.expect(reply, (200,), what)
        while chunk := reply.response.read(CHUNK):
            progress(len(chunk))
            yield chunk

    def has_blob(self, repository: str, digest: str) -> bool:
        reply = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, {},
                             push=True)
        reply.response.read()
        self.expect(reply, (200, 404), f"{self.host}/{repository}@{digest}")
        return reply.status == 200

    def has_manifest(self, repository: str, digest: str) -> bool:
        reply = self.request("HEAD", f"/v2/{repository}/manifests/{digest}", repository,
                             {"Accept": ", ".join(MANIFEST_TYPES)}, push=True)
        reply.response.read()
        self.expect(reply, (200, 404), f"{self.host}/{repository}@{digest}")
        return reply.status == 200

    # -- writes --------------------------------------------------------------------------

    def upload_blob(self, repository: str, digest: str, size: int,
                    chunks: Iterator[bytes]) -> None:
        """POST an upload session, then one streamed PUT of the whole blob (monolithic)."""
        what = f"{self.host}/{repository}@{digest}"
        reply = self.request("POST", f"/v2/{repository}/blobs/uploads/", repository,
                             {"Content-Length": "0"}, push=True)
        reply.response.read()
        self.expect(reply, (202,), what)
        location = reply.headers.get("location", "")
        if not location:
            raise RegistryError(f"{what}: the registry opened an upload without a Location")
        url = urljoin(self.base(), location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        reply = self.request("PUT", url, repository, {
            "Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=chunks, push=True)
        reply.response.read()
        self.expect(reply, (201,), what)

    def put_manifest(self, repository: str, digest: str, body: bytes, media_type: str) -> None:
        what = f"{self.host}/{repository}@{digest}"
        reply = self.request("PUT", f"/v2/{repository}/manifests/{digest}", repository,
                             {"Content-Type": media_type, "Content-Length": str(len(body))},
                             body=body, push=True)
        error = reply.read_small(MAX_REPLY, what)
        if reply.status == 400 and b"MANIFEST_BLOB_UNKNOWN" in error:
            raise RegistryError(
                f"{what}: the registry refuses the manifest because a manifest or blob it "
                "names is not there (a multi-arch index whose other architectures were not "
                "fetched: this registry does not accept sparse indexes)",
                "run `gen fetch --all-architectures ENV`, carry the store again, then "
                "converge")
        self.expect(reply, (201,), what)

    # -- transport -----------------------------------------------------------------------

    def base(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    def request(self, method: str, target: str, repository: str, headers: dict[str, str],
                body: Iterator[bytes] | bytes | None = None, follow: bool = False,
                push: bool = False) -> Reply:
        """One request, authenticating once on a 401 challenge. A streamed body cannot be
        sent twice: the upload's POST, sent first, has already authenticated its PUT."""
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        url = target if "://" in target else self.base() + target
        sent = dict(headers)
        if scope in self.auth:
            sent["Authorization"] = self.auth[scope]
        reply = self._send(method, url, sent, body)
        if reply.status == 401:
            reply.response.read()
            if body is not None and not isinstance(body, bytes):
                raise RegistryError(f"{self.host}: the registry refused an upload's "
                                    "authorisation", "check the credentials the secret holds")
            self.auth[scope] = self._authorize(reply.headers.get("www-authenticate", ""),
                                               scope, url)
            sent["Authorization"] = self.auth[scope]
            reply = self._send(method, url, sent, body)
        for _ in range(MAX_REDIRECTS if follow else 0):
            if reply.status not in (301, 302, 303, 307, 308):
                break
            reply.response.read()
            location = urljoin(url, reply.headers.get("location", ""))
            # a storage backend's signed URL carries its own authorisation
            url, sent = location, {k: v for k, v in headers.items() if k != "Authorization"}
            reply = self._send(method, url, sent, None)
        return reply

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: Iterator[bytes] | bytes | None) -> Reply:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{self.host}: the registry sent a URL gen does not follow: "
                                f"{url[:200]!r}")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):  # a kept-alive connection the server closed: reopen once
            conn = self._connection(parts.scheme, parts.netloc)
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                for key, value in {"User-Agent": "gen", **headers}.items():
                    conn.putheader(key, value)
                conn.endheaders()
                for chunk in [body] if isinstance(body, bytes) else body or ():
                    conn.send(chunk)
                response = conn.getresponse()
                return Reply(response.status, {k.lower(): v for k, v in
                                               response.getheaders()}, response)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self.connections.pop((parts.scheme, parts.netloc), None)
                if attempt == 2 or (body is not None and not isinstance(body, bytes)):
                    raise RegistryError(f"{parts.netloc}: the connection was closed during "
                                        f"{method}", "try again") from None
            except (OSError, http.client.HTTPException) as exc:
                self.connections.pop((parts.scheme, parts.netloc), None)
                raise RegistryError(f"cannot reach {parts.scheme}://{parts.netloc}: {exc}",
                                    "check the network, the registry and its CA") from None
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        if key not in self.connections:
            self.connections[key] = (
                http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=self.context,
                                            blocksize=CHUNK)
                if scheme == "https" else
                http.client.HTTPConnection(netloc, timeout=TIMEOUT, blocksize=CHUNK))
        return self.connections[key]

    def _authorize(self, challenge: str, scope: str, url: str) -> str:
        """The Authorization header a 401's challenge asks for."""
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.host}: the registry wants credentials",
                                    "name a secret holding user:password for it")
            return self.credentials.basic()
        if kind != "bearer":
            raise RegistryError(f"{self.host}: answered 401 with no usable challenge",
                                "check the registry's auth configuration")
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        insecure = frozenset({self.host}) if self.plain_http else frozenset()
        problem = realm_problem(realm, insecure) if realm else "is missing"
        if problem:
            raise RegistryError(f"{self.host}: the registry's token realm {problem}",
                                "a realm must be an https:// URL (http only for a plain-http "
                                "registry)")
        params["scope"] = scope
        headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
        reply = self._send("GET", f"{realm}?{urlencode(params)}", headers, None)
        body = reply.read_small(MAX_REPLY, f"{self.host} token")
        if reply.status != 200:
            raise RegistryError(f"{self.host}: its token realm answered HTTP {reply.status}",
                                "check the credentials the secret holds")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not re.fullmatch(r"[\x21-\x7e]{1,8192}", token):
            raise RegistryError(f"{self.host}: its token realm answered no usable token")
        return f"Bearer {token}"

    def expect(self, reply: Reply, statuses: tuple[int, ...], what: str) -> None:
        if reply.status in statuses:
            return
        try:
            detail = reply.read_small(MAX_REPLY, what)
        except RegistryError:
            detail = b""
        codes = re.findall(rb'"code"\s*:\s*"([A-Z_]+)"', detail)
        shown = f" ({', '.join(c.decode() for c in codes)})" if codes else ""
        hint = ("the name or digest is not there, or the credentials may not read it"
                if reply.status in (401, 403, 404) else "check the registry's log")
        raise RegistryError(f"{what}: the registry answered HTTP {reply.status}{shown}", hint)

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()


def media_type(body: bytes) -> str:
    """A manifest's media type, from its own `mediaType` (OCI lets it be absent)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if isinstance(data, dict) and isinstance(data.get("mediaType"), str):
        return str(data["mediaType"])
    if isinstance(data, dict) and "manifests" in data:
        return "application/vnd.oci.image.index.v1+json"
    return "application/vnd.oci.image.manifest.v1+json"


def parse_manifest(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what}: the manifest is not JSON") from None
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise RegistryError(f"{what}: not a schema 2 / OCI manifest",
                            "gen stores OCI and Docker v2 images only")
    return data
