"""NFS exports on the storage host, under `hosts/<nfs host>/nfs/`:

- `gen.exports`: exports(5) lines, installed as /etc/exports.d/gen.exports (`exportfs -ra`
  reads only `*.exports` files there). One line per export: the path, then
  `client(options)` for every client. Where the blueprint names neither `subtree_check` nor
  `no_subtree_check`, `no_subtree_check` (exportfs's own default) is written out, so
  `exportfs -ra` does not warn on every converge.
- `manifest.json`: `exportDirectories`, each export's path with the owner, group and mode
  the environment gives it; the files provider creates them before it reloads, since
  exportfs skips a path that does not exist.
"""

from __future__ import annotations

import posixpath
import re

from generator.errors import Problem
from generator.families import escape
from generator.loader import FieldPath
from generator.model import Environment, NfsExport
from generator.tree import Tree, canonical_json, lines

# exports(5) option names Debian 12's exportfs (nfs-utils 2.6.2) accepts, tested against it:
# flags, and options that take `=value`.
FLAGS = frozenset({
    "secure", "insecure", "rw", "ro", "async", "sync", "wdelay", "no_wdelay", "hide",
    "nohide", "crossmnt", "nocrossmnt", "subtree_check", "no_subtree_check", "insecure_locks",
    "secure_locks", "no_auth_nlm", "auth_nlm", "acl", "no_acl", "root_squash",
    "no_root_squash", "all_squash", "no_all_squash", "mountpoint", "mp", "pnfs", "no_pnfs",
    "security_label"})
VALUED = frozenset({"anonuid", "anongid", "sec", "fsid", "refer", "replicas", "mountpoint",
                    "mp"})
# Clients: a host name or wildcard, an IPv4 address with an optional /prefix or /netmask,
# a @netgroup, or `*` (everyone).
_CLIENT = re.compile(r"^(\*|@[\w.-]+|[A-Za-z0-9*?.\[\]-]+|\d{1,3}(\.\d{1,3}){3}"
                     r"(/(\d{1,2}|\d{1,3}(\.\d{1,3}){3}))?)$")
_PATH = re.compile(r"^/[^\s\"]*$")


# exportfs reads /etc/exports.d/*.exports only; any other name there is ignored.
EXPORTS_FILE = "gen.exports"
# Directories converge must never re-own or re-mode as an export (nor anything below the
# first group): the blueprint may name a path that already exists on the host.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev",
                "/proc", "/sys", "/run", "/root")
SYSTEM_DIRS = ("/", "/var", "/var/lib", "/home", "/tmp", "/var/tmp", "/opt", "/srv", "/mnt",
               "/media")
# Where an export may live: a deny-list of system directories always misses one (a cron
# spool, a zone directory, the TFTP root, gen's own state), so converge creates and
# re-owns only directories at or below these roots (what the reference labs use, plus
# the usual homes of shared storage, and /export, the helper-node playbook's). /srv/nfs,
# not /srv: Debian's TFTP root is /srv/tftp.
EXPORT_ROOTS = ("/exports", "/export", "/share_storage", "/srv/nfs", "/data", "/var/nfs")


def render(env: Environment, pins: object) -> Tree:
    """The exports file and the export directories, or nothing without services.nfs."""
    service = env.services.nfs
    if service is None or not service.exports:
        return {}
    body = [export_line(e, i) for i, e in enumerate(service.exports)]
    name = escape.comment(env.name, None, "an exports(5) comment")
    header = f"# Rendered by gen for environment {name}; do not edit by hand."
    base = f"hosts/{service.host}/nfs"
    return {f"{base}/{EXPORTS_FILE}": lines(header, *body),
            f"{base}/manifest.json": canonical_json({"exportDirectories": [
                export_directory(e) for e in service.exports]})}


def check(env: Environment) -> list[Problem]:
    """Export paths, clients and options exportfs would accept (exports(5)), and no system
    directory, which converge would create and re-own as an export directory."""
    service = env.services.nfs
    problems: list[Problem] = []

    def error(path: FieldPath, message: str, hint: str) -> None:
        problems.append(Problem(message, env.where(path), hint))

    for i, export in enumerate(service.exports if service else ()):
        field = ("services", "nfs", "exports", i)
        if not path_ok(export.path):
            error((*field, "path"), f"export path '{export.path}' has whitespace or quotes",
                  "use a plain absolute path")
        elif _system_dir(export.path):
            error((*field, "path"), f"export path '{export.path}' is a system directory "
                  "that converge would re-own", "export a directory of its own, like "
                  "/exports/NAME")
        elif outside_export_roots(export.path):
            error((*field, "path"), f"export path '{export.path}' is not a plain path under "
                  f"an export root ({', '.join(EXPORT_ROOTS)}), so converge would not "
                  "create or re-own it", "export a directory of its own, like /exports/NAME")
        for j, client in enumerate(export.clients):
            at = (*field, "clients", j)
            if not client_ok(client.host):
                error((*at, "host"), f"'{client.host}' is not an NFS client",
                      "use a host, a wildcard, a @netgroup or an address with /prefix")
            for k, option in enumerate(client.options):
                problem = option_problem(option)
                if problem:
                    error((*at, "options", k), problem, "see exports(5)")
            if "rw" in client.options and "ro" in client.options:
                error((*at, "options"), "both rw and ro", "choose one")
    return problems


def export_directory(export: NfsExport) -> dict[str, str]:
    """What converge makes of the export's path: a directory with this owner and mode."""
    return {"path": export.path, "owner": export.owner, "group": export.group,
            "mode": export.mode}


def system_path(path: str) -> bool:
    """True for a path converge must not create or re-own as an export directory."""
    return _system_dir(path) or outside_export_roots(path)


def _system_dir(path: str) -> bool:
    return path in SYSTEM_DIRS or any(path == top or path.startswith(top + "/")
                                      for top in SYSTEM_TREES)


def outside_export_roots(path: str) -> bool:
    """True unless `path` is normalised (no `..`, `.`, `//`, trailing /) and at or below
    one of EXPORT_ROOTS."""
    if posixpath.normpath(path) != path:
        return True
    return not any(path == root or path.startswith(root + "/") for root in EXPORT_ROOTS)


def export_line(export: NfsExport, index: int = 0) -> str:
    """`/path client(opt,...) client(opt,...)`, every word checked to stay one word."""
    field = ("services", "nfs", "exports", index)
    clients = [f"{_client(c.host, (*field, 'clients', j, 'host'))}"
               f"({','.join(_options(c.options, (*field, 'clients', j, 'options')))})"
               for j, c in enumerate(export.clients)]
    return " ".join([escape.export_path(export.path, (*field, "path")), *clients])


def _client(host: str, field: escape.FieldPath) -> str:
    escape.export_word(host, field)
    if not client_ok(host):
        raise escape.UnsafeValue(field, f"'{host}' is not an exports(5) client",
                                 "a host name, an address with /prefix, @netgroup or *")
    return host


def _options(options: tuple[str, ...], field: escape.FieldPath) -> tuple[str, ...]:
    for k, option in enumerate(options):
        escape.export_word(option, (*field, k))
        problem = option_problem(option)
        if problem is not None:
            raise escape.UnsafeValue((*field, k), problem, "see exports(5)")
    return with_defaults(options)


def with_defaults(options: tuple[str, ...]) -> tuple[str, ...]:
    """The options as written, plus an explicit `no_subtree_check` when none was chosen."""
    if {"subtree_check", "no_subtree_check"} & set(options):
        return options
    return (*options, "no_subtree_check")


def option_problem(option: str) -> str | None:
    """Why `option` is not an exports(5) option, or None when it is one."""
    name, eq, value = option.partition("=")
    if eq and name in VALUED and value and "," not in value and not value.isspace():
        return None
    if not eq and name in FLAGS:
        return None
    if name in VALUED and name not in FLAGS:
        return f"'{name}' needs a value ({name}=...)"
    return f"'{option}' is not an exports(5) option"


def client_ok(host: str) -> bool:
    """Whether `host` is a client exportfs accepts (no spaces, parentheses or commas)."""
    return bool(_CLIENT.fullmatch(host))


def path_ok(path: str) -> bool:
    """Absolute and free of whitespace and quotes (gen does not quote export paths)."""
    return bool(_PATH.fullmatch(path))
