"""Secret references at converge time, shared by every provider.

A rendered file carries `SecretRef.marker()` (`@@gen-secret:NAME@@`) instead of a value.
Providers fill the markers only while applying (on the target, or on this machine for
seeds and Kubernetes objects) and never show a value in a plan, journal or error.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from generator.errors import UserError
from generator.families.kolla import GENERATED_PASSWORDS
from generator.model import SECRET_MARKER, SECRET_MARKER_BYTES, Environment, SecretRef

MARKER = SECRET_MARKER
MARKER_BYTES = SECRET_MARKER_BYTES


def declared(env: Environment) -> dict[str, SecretRef]:
    """Every secret reference the environment declares, by name: what a marker may name."""
    refs = [*env.secrets, *env.cluster.ssh_keys]
    if env.cluster.pull_secret is not None:
        refs.append(env.cluster.pull_secret)
    if env.openstack is not None:
        refs += env.openstack.passwords
    return {ref.name: ref for ref in refs}


# Where a secret reference may point. A pull request writes the references, so they name
# only what the operator set aside for gen: files inside one secrets directory (chosen on
# the machine that runs gen, read where the secret is filled) and environment variables
# whose names start with GEN_SECRET_. Anything else (~/.ssh/id_rsa, /etc/shadow, $AWS_...)
# is an error at validate and refused again right before it is read.
SECRETS_DIR_VARIABLE = "GEN_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "~/.config/gen/secrets"
ENV_PREFIX = "GEN_SECRET_"
MAX_SECRET_BYTES = 1 << 20  # a pull secret is a few KiB; a certificate chain fits too
# Relative, normalised, no hidden parts (so never `.` or `..`), no characters a shell or
# a config would read; at most 16 levels.
_FILE_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,254})"
                       r"{0,15}")
_ENV_REF = re.compile(ENV_PREFIX + r"[A-Z0-9_]{1,200}")


def secrets_dir() -> str:
    """The operator's secrets directory (`--secrets-dir`, $GEN_SECRETS_DIR); a leading
    `~/` means the home directory where the secret is read."""
    return os.environ.get(SECRETS_DIR_VARIABLE) or DEFAULT_SECRETS_DIR


def ref_problem(source: str, ref: str) -> str | None:
    """Why a reference may not be followed, or None. Never names a value."""
    if source == "file" and not _FILE_REF.fullmatch(ref):
        return ("a file secret reference must be a relative path inside the secrets "
                "directory (letters, digits, _.- and /; no leading /, ~ or ..)")
    if source == "env" and not _ENV_REF.fullmatch(ref):
        return f"an environment secret reference must name a variable {ENV_PREFIX}*"
    return None


REF_HINT = (f"put the secret in a file under ${SECRETS_DIR_VARIABLE} (default "
            f"{DEFAULT_SECRETS_DIR}) and write {{file: NAME}}, or export it as "
            f"{ENV_PREFIX}NAME and write {{env: {ENV_PREFIX}NAME}}")


def _where(ref: SecretRef) -> str:
    return f"environment variable {ref.ref}" if ref.source == "env" else f"file {ref.ref}"


def confined_ref(ref: SecretRef) -> SecretRef:
    """`ref` if it may be followed; a one-line error naming the reference otherwise."""
    problem = ref_problem(ref.source, ref.ref)
    if problem is not None:
        raise UserError(f"secret '{ref.name}': {problem}", REF_HINT)
    return ref


def read_local(ref: SecretRef) -> bytes:
    """A secret's value on this machine (the one running converge), checked for its kind;
    one trailing newline of a file is dropped."""
    confined_ref(ref)
    if ref.source == "env":
        if ref.ref not in os.environ:
            raise UserError(f"secret '{ref.name}' is not available (environment variable "
                            f"{ref.ref} is missing)", "provide it before plan/converge")
        return checked_value(ref, os.environ[ref.ref].encode())
    return checked_value(ref, _read_confined(ref, Path(secrets_dir()).expanduser()))


def _read_confined(ref: SecretRef, root: Path) -> bytes:
    """The file `ref` names below `root`, opened one component at a time without following
    a symbolic link (the directory itself is the operator's and may be one)."""
    parts = ref.ref.split("/")
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise UserError(f"secret '{ref.name}' is not available (the secrets directory "
                        f"{root} is missing)", f"create it, or set ${SECRETS_DIR_VARIABLE} "
                        "or --secrets-dir") from None
    try:
        for part in parts[:-1]:
            fd = _open_below(ref, dir_fd, part, os.O_RDONLY | os.O_DIRECTORY)
            os.close(dir_fd)
            dir_fd = fd
        fd = _open_below(ref, dir_fd, parts[-1], os.O_RDONLY | os.O_NONBLOCK)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refused(ref, "is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise _refused(ref, f"is larger than {MAX_SECRET_BYTES} bytes")
    return data.removesuffix(b"\n")


def _open_below(ref: SecretRef, dir_fd: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP or _is_link(dir_fd, name):
            raise _refused(ref, "leads through a symbolic link, which gen does not "
                                "follow") from None
        if error.errno == errno.ENOTDIR:
            raise _refused(ref, "is not below a directory") from None
        raise UserError(f"secret '{ref.name}' is not available (file {ref.ref} is missing "
                        f"in the secrets directory)", f"put it under ${SECRETS_DIR_VARIABLE} "
                        f"(default {DEFAULT_SECRETS_DIR}) or pass --secrets-dir") from None


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refused(ref: SecretRef, why: str) -> UserError:
    return UserError(f"secret '{ref.name}' (file {ref.ref} in the secrets directory) {why}, "
                     "so it is not used", "make it a regular file inside the secrets directory")


# Reading on a target (the files provider: `ssh root@helper`, a netns, or this machine):
# the same rules in POSIX sh, since a target need not have Python. Arguments, never shell
# text: the directory (a leading ~/ is the target's $HOME), the reference, the size bound.
_TARGET_READ = r"""
set -f
d=$1 f=$2 max=$3
case $d in "~") d=$HOME;; "~/"*) d="$HOME/${d#"~/"}";; esac
cd -- "$d" 2>/dev/null || exit 3
p=.
IFS=/
for part in $f; do
  p="$p/$part"
  [ -L "$p" ] && exit 4
done
[ -e "$p" ] || exit 5
[ -f "$p" ] || exit 6
[ "$(wc -c < "$p")" -le "$max" ] || exit 7
exec cat -- "$p"
"""
_TARGET_REFUSALS = {
    3: "the secrets directory {dir} is missing on the target",
    4: "file {ref} leads through a symbolic link, which gen does not follow",
    5: "file {ref} is missing in the secrets directory {dir} on the target",
    6: "file {ref} is not a regular file",
    7: f"file {{ref}} is larger than {MAX_SECRET_BYTES} bytes",
}


def target_read_argv(ref: SecretRef) -> list[str]:
    """The command that prints `ref`'s value on a target (after `confined_ref`)."""
    confined_ref(ref)
    if ref.source == "env":
        return ["printenv", ref.ref]
    return ["sh", "-c", _TARGET_READ, "sh", secrets_dir(), ref.ref, str(MAX_SECRET_BYTES)]


def target_read_error(ref: SecretRef, returncode: int) -> UserError:
    """The one-line error for a failed `target_read_argv` (no output is ever shown)."""
    why = (f"environment variable {ref.ref} is missing" if ref.source == "env" else
           _TARGET_REFUSALS.get(returncode, "file {ref} cannot be read").format(
               ref=ref.ref, dir=secrets_dir()))
    return UserError(f"secret '{ref.name}' is not available on the target ({why})",
                     "provide it there before converging")


# An SSH key reference fills a public place (Ignition served over HTTP, cloud-init
# user-data): its value must be one OpenSSH public key line, so a pull request that points
# the reference at a private key or another secret file cannot publish it.
_PUBLIC_KEY = re.compile(rb"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
                         rb"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
                         rb" [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?")
# Kinds of secrets gen places itself; a secret under `secrets:` is the operator's own
# (Kubernetes objects: certificates, tokens) and has no kind.
PULL_SECRET, SSH_KEY, PASSWORD = "pull secret", "SSH public key", "password"


def kinds(env: Environment) -> dict[str, str]:
    """Secret name -> its kind, for every secret gen checks before use."""
    out = {ref.name: SSH_KEY for ref in env.cluster.ssh_keys}
    if env.cluster.pull_secret is not None:
        out[env.cluster.pull_secret.name] = PULL_SECRET
    if env.openstack is not None:
        out.update({ref.name: PASSWORD for ref in env.openstack.passwords})
    return out


def _kind_by_name(name: str) -> str | None:
    if name == "pullSecret":
        return PULL_SECRET
    return SSH_KEY if name.startswith("sshAuthorizedKeys[") else None


def _fits(kind: str, value: bytes) -> bool:
    if kind == SSH_KEY:
        return _PUBLIC_KEY.fullmatch(value) is not None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if kind == PASSWORD:
        return 0 < len(text) <= 4096 and text.isprintable()
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("auths"), dict)


_KIND_SHAPES = {
    PULL_SECRET: ("is not a pull secret (a JSON object with an \"auths\" object)",
                  "point pullSecret at the pull secret from console.redhat.com"),
    SSH_KEY: ("is not one OpenSSH public key line",
              "point sshAuthorizedKeys at a public key such as id_ed25519.pub in the "
              "secrets directory"),
    PASSWORD: ("is not a password (one line of printable characters)",
               "point it at a file or variable holding just the password"),
}


def checked_value(ref: SecretRef, value: bytes, kind: str | None = None) -> bytes:
    """`value` if it fits its kind (by default the kind of gen's own secret names); the
    value is never named."""
    kind = kind or _kind_by_name(ref.name)
    if kind is None or _fits(kind, value):
        return value
    shape, hint = _KIND_SHAPES[kind]
    published = ", so it is not published" if kind == SSH_KEY else ", so it is not used"
    raise UserError(f"secret '{ref.name}' ({_where(ref)}) {shape}{published}", hint)


# Where gen's renderers put each secret's marker, by file name (families/openshift.py,
# ignition.py, cloudinit.py, kolla.py, kubeadm.py). A marker anywhere else (a zone file,
# dhcpd.conf, a TXT record) did not come from a renderer: it is never filled, so a pull
# request cannot publish a secret by writing its marker into a public file.
_SSH_KEY_FILES = ("install-config.yaml", "*.ign", "user-data")
_KUBEADM_FILES = ("init.yaml", "join-*.yaml", "user-data")


def places(env: Environment) -> dict[str, tuple[str, ...]]:
    """Secret name -> the file names (globs) whose markers the files provider may fill.

    The secrets gen places itself (pull secret, SSH keys, kubeadm join data, OpenStack
    passwords) are confined to their files. Secrets under `secrets:` are the operator's
    own (Kubernetes objects, hand-placed markers); no renderer writes them and validation
    refuses markers in environment values, so their markers may be filled where found."""
    allowed: dict[str, tuple[str, ...]] = {ref.name: ("*",) for ref in env.secrets}
    allowed.update({ref.name: _SSH_KEY_FILES for ref in env.cluster.ssh_keys})
    if env.cluster.pull_secret is not None:
        allowed["pullSecret"] = ("install-config.yaml",)
    if env.openstack is not None:
        # kolla's passwords are published as GENERATED_PASSWORDS and merged into
        # passwords.yml on the host by kolla's own tools
        kolla_files = ("passwords.yml", GENERATED_PASSWORDS)
        allowed.update({ref.name: kolla_files for ref in env.openstack.passwords})
    for name in ("kubeadm-token", "kubeadm-ca-cert-hash", "kubeadm-certificate-key"):
        allowed[name] = _KUBEADM_FILES
    return allowed


def check_places(path: str, content: bytes, allowed: dict[str, tuple[str, ...]]) -> None:
    """Refuse to fill a file whose markers name an undeclared secret, or a secret whose
    place is not this file. The marker text is named, never a value."""
    name_of_file = PurePosixPath(path).name
    for raw in MARKER_BYTES.findall(content):
        name = raw.decode(errors="replace")
        globs = allowed.get(name)
        if globs is None:
            raise UserError(f"{path} carries a marker for secret {name!r}, which the "
                            "environment does not declare", "declare it, or remove the marker")
        if not any(fnmatch.fnmatchcase(name_of_file, glob) for glob in globs):
            raise UserError(f"{path} carries a marker for secret {name!r}, which gen fills "
                            f"only in {', '.join(globs)}",
                            "a secret goes only where its field puts it")
