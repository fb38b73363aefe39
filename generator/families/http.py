"""The helper's web server: Apache httpd on services.http.port serving /install and /ignition.

Two files under `hosts/<http host>/http/`:
- `httpd.conf`: a self-contained Apache httpd 2.4 configuration for a dedicated instance,
  so it never fights the distribution's default site on port 80 (where HAProxy listens on
  the helper). The HTTP host's OS profile names the module directory, the modules to load
  and the user (Debian's `apache2` and /usr/lib/apache2/modules, www-data; el9's `httpd`,
  /usr/lib64/httpd/modules, apache). Every relative path in it is relative to the
  ServerRoot, which the config does not set: converge starts it as
  `<apache2|httpd> -d <dir> -f <dir>/httpd.conf` with <dir> = the synced `http/` directory
  (SERVER_ROOT on the helper), and tests do the same with a temporary directory.
- `manifest.json`: what must be present under the document root before nodes boot:
  every OS artifact under `install/<name>` (with its sha256 when the lock pins it) and the
  Ignition files under `ignition/` (per node, rendered by the ignition family; per role
  under `ignition/roles/`, written by `openshift-install create ignition-configs`).
"""

from __future__ import annotations

import json
from typing import Any

from generator.families import Pins, common, escape, ignition
from generator.model import Environment, HttpService, OsArtifact
from generator.profiles import HTTP_ROOT
from generator.tree import Tree, canonical_json, lines

SERVER_ROOT = HTTP_ROOT
DOCUMENT_ROOT = "htdocs"  # relative to the ServerRoot
DIRECTORIES = ("htdocs/install", "htdocs/ignition", "htdocs/ignition/roles", "logs", "run")


def render(env: Environment, pins: Pins) -> Tree:
    """httpd.conf and manifest.json, or nothing without services.http."""
    service = env.services.http
    if service is None:
        return {}
    base = f"hosts/{service.host}/http"
    return {f"{base}/httpd.conf": config(env, service),
            f"{base}/manifest.json": manifest_json(manifest(env, pins))}


def manifest_json(data: dict[str, Any]) -> bytes:
    """`canonical_json(data)`, its `files` (one entry per node: ~80% of the http family's
    time at 10,000 nodes in the general encoder) encoded by `_flat_entries_json`."""
    files = _flat_entries_json(data["files"])
    if files is None or any(type(v) is dict for k, v in data.items() if k != "files"):
        return canonical_json(data)
    # "files" is the only key whose value is a dict, so its text is the only `"files": {}`
    # outside a string (inside one, the quotes would be escaped).
    text = canonical_json({**data, "files": {}}).decode()
    return text.replace('"files": {}', f'"files": {files}', 1).encode()


def _flat_entries_json(files: dict[str, Any]) -> str | None:
    """The canonical JSON of a top-level key's value that maps names to flat dicts of
    strings (sorted keys, 2-space indent; tests/test_http.py compares it with the
    encoder's), or None when it is something else."""
    if not files or not all(type(k) is str for k in files):
        return None
    inner, entry_inner = "\n    ", "\n      "
    entries = []
    for name in sorted(files):
        entry = files[name]
        if type(entry) is not dict or not entry:
            return None
        fields = []
        try:  # keys are unique: only they are compared, and only str keys are written
            items = sorted(entry.items()) if len(entry) > 1 else entry.items()
        except TypeError:
            return None
        for key, value in items:
            if type(key) is not str or type(value) is not str:
                return None
            fields.append(f"{entry_inner}{_quote(key)}: {_quote(value)}")
        entries.append(f"{inner}{_quote(name)}: {{{','.join(fields)}{inner}}}")
    return "{" + ",".join(entries) + "\n  }"


_quote = json.encoder.encode_basestring  # what canonical_json writes a string with


def config(env: Environment, service: HttpService) -> bytes:
    """Apache httpd configuration serving the document root read-only on the service port."""
    paths = service.os
    # Guarded: a module one build links in (Debian: unixd, log_config) is a module file on
    # another (el9), and loading a linked-in module is an error.
    modules = [f"<IfModule !{name}_module>\n    LoadModule {name}_module "
               f"{paths.httpd_module_dir}/{so}\n</IfModule>"
               for name, so in paths.httpd_modules]
    host = env.node(service.host)
    server_name = escape.fqdn(host.fqdn, host.name,
                              lambda: ("nodes", env.nodes.index(host), "name"),
                              "an httpd.conf directive")
    return lines(
        f"# Rendered by gen for environment {escape.comment(env.name, None, HTTPD)}; "
        "do not edit by hand.",
        f"# Start: {paths.httpd_start} -d {SERVER_ROOT} -f {SERVER_ROOT}/httpd.conf -k start",
        "# Relative paths below are relative to that ServerRoot (-d).",
        *modules,
        "",
        f"ServerName {server_name}",
        f"Listen {escape.number(service.port, ('services', 'http', 'port'), HTTPD)}",
        f"User {paths.httpd_user}",
        f"Group {paths.httpd_user}",
        "DefaultRuntimeDir run",
        "PidFile run/httpd.pid",
        "ErrorLog logs/error.log",
        "LogLevel warn",
        'LogFormat "%h %l %u %t \\"%r\\" %>s %b" common',
        "CustomLog logs/access.log common",
        "TypesConfig /etc/mime.types",
        "AddType application/vnd.coreos.ignition+json .ign",
        "ServerTokens Prod",
        "ServerSignature Off",
        "TraceEnable Off",
        "",
        f'DocumentRoot "{DOCUMENT_ROOT}"',
        "<Directory />",
        "    AllowOverride None",
        "    Require all denied",
        "</Directory>",
        # Only the two trees nodes fetch from are readable; no listings, no .htaccess.
        "DirectoryIndex disabled",
        *_served("install"),
        *_served("ignition"),
    )


HTTPD = "httpd.conf"


def _served(name: str) -> list[str]:
    # <Location>, not <Directory>: Directory needs absolute paths, and the ServerRoot is only
    # known at start. Location sections merge after Directory ones, so this grant wins over
    # the `Require all denied` on / for these two URL trees only.
    return [f'<Location "/{name}/">',
            "    Options None",
            "    Require all granted",
            "</Location>"]


def served_artifacts(env: Environment) -> list[OsArtifact]:
    """What PXE installs fetch: kernel, initramfs, rootfs and disk artifacts, and an `image`
    artifact only as the metal image of a non-live install. A VM's cloud image (the
    helper's, lab B's nodes') is uploaded into the pool instead, never served."""
    pxe = env.services.pxe
    metal = common.metal_image(env) if pxe is not None and pxe.rootfs != "live" else None
    return [a for a in env.os_artifacts if a.kind != "image" or a == metal]


def manifest(env: Environment, pins: Pins) -> dict[str, Any]:
    """Files (path under the document root -> where it comes from) and directories to create."""
    files: dict[str, dict[str, Any]] = {}
    for artifact in served_artifacts(env):
        files[f"install/{artifact.name}"] = common.artifact_source(artifact, pins)
    nodes = ignition.coreos_nodes(env)
    for node in nodes:
        files[f"ignition/{node.name}.ign"] = {
            "source": "rendered", "path": f"clusters/{env.cluster.name}/ignition/{node.name}.ign"}
    for role in sorted({n.role for n in nodes}):
        files[f"ignition/roles/{role}.ign"] = {"source": "openshift-install", "role": role}
    return {"serverRoot": SERVER_ROOT, "documentRoot": DOCUMENT_ROOT,
            "port": env.services.http.port if env.services.http else None,
            "baseUrl": common.http_base(env),
            "directories": list(DIRECTORIES), "files": files}
