"""The site's mirror registry: Docker distribution's config on the node `mirror.host` names.

One file, `hosts/<mirror host>/registry/config.yml`, installed by the files provider where
the host's OS profile runs the registry (Debian 12 and Ubuntu 24.04: the `docker-registry`
package, /etc/docker/registry/config.yml, `systemctl restart docker-registry`). Then the
mirror provider pushes every pinned image into it from the store.

- storage: the filesystem driver under /var/lib/docker-registry, the directory the package
  creates and owns for its `docker-registry` user; no environment value chooses it, so a
  converge never points the daemon (or its garbage collector) at another tree.
- http: listens on every address at the port of `mirror.registry` (443 when it names none
  and a CA is given, else 5000, the package's own).
- TLS, when the environment gives `mirror.ca`: the certificate and key the CA signed, read
  from /etc/docker/registry/tls/ (gen issues no certificates; the operator puts them there).
- auth, when `mirror.credentials` is set: htpasswd at /etc/docker/registry/htpasswd (bcrypt;
  the operator writes it with `htpasswd -B` from the same user:password).

el9 ships no registry package in BaseOS or AppStream, so `mirror.host` on an el9 node is
refused at validate (`check`). Every value is written through the YAML emitter (yamlout).
"""

from __future__ import annotations

from generator.errors import Problem
from generator.families import yamlout
from generator.model import Environment, Mirror
from generator.profiles import DEFAULT, profile
from generator.tree import Tree

CONFIG_DIR = "/etc/docker/registry"
STORAGE = "/var/lib/docker-registry"
TLS_CERTIFICATE = f"{CONFIG_DIR}/tls/registry.crt"
TLS_KEY = f"{CONFIG_DIR}/tls/registry.key"
HTPASSWD = f"{CONFIG_DIR}/htpasswd"


def render(env: Environment, pins: object) -> Tree:
    """config.yml for the mirror host, or nothing when no node runs the mirror."""
    mirror = env.mirror
    if mirror is None or mirror.host is None:
        return {}
    header = f"Rendered by gen for environment {env.name}; do not edit by hand."
    return {f"hosts/{mirror.host}/registry/config.yml":
            yamlout.dump_one(config(mirror), header="# " + " ".join(header.split()))}


def config(mirror: Mirror) -> dict[str, object]:
    """Docker distribution's configuration (version 0.1) as plain data."""
    http: dict[str, object] = {"addr": f":{port(mirror)}",
                               "headers": {"X-Content-Type-Options": ["nosniff"]}}
    if mirror.ca is not None:
        http["tls"] = {"certificate": TLS_CERTIFICATE, "key": TLS_KEY}
    document: dict[str, object] = {
        "version": "0.1",
        # no access log: one line per blob request during a push is noise in the journal
        "log": {"level": "info", "accesslog": {"disabled": True},
                "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": STORAGE},
                    "cache": {"blobdescriptor": "inmemory"},
                    # the mirror holds what the lock pins; deleting is the operator's call
                    "delete": {"enabled": False}},
        "http": http,
    }
    if mirror.credentials is not None:
        document["auth"] = {"htpasswd": {"realm": "gen-mirror", "path": HTPASSWD}}
    return document


def port(mirror: Mirror) -> int:
    """The port clients reach the mirror at: mirror.registry's, else the default."""
    _, colon, number = mirror.registry.rpartition(":")
    if colon and number.isdigit():
        return int(number)
    return 443 if mirror.ca is not None else 5000


def check(env: Environment) -> list[Problem]:
    """A mirror host whose OS has a registry package, and a port that exists."""
    mirror = env.mirror
    if mirror is None or mirror.host is None:
        return []
    problems: list[Problem] = []
    node = next((n for n in env.nodes if n.name == mirror.host), None)
    os_name = (node.os if node is not None else None) or DEFAULT
    if node is not None and profile(os_name).service("registry") is None:
        problems.append(Problem(
            f"node '{mirror.host}' runs {os_name}, which ships no registry package "
            "(el9 has no Docker distribution in BaseOS or AppStream)",
            env.where(("mirror", "host")),
            "put the mirror on a Debian 12 or Ubuntu 24.04 node, or run the registry "
            "yourself and drop mirror.host"))
    if not 0 < port(mirror) < 65536:
        problems.append(Problem(f"port {port(mirror)} of mirror.registry does not exist",
                                env.where(("mirror", "registry")),
                                "use a port from 1 to 65535"))
    return problems
