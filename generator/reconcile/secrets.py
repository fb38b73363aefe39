"""Secret references at converge time, shared by every provider.

A rendered file carries `SecretRef.marker()` (`@@gen-secret:NAME@@`) instead of a value.
Providers fill the markers only while applying (on the target, or on this machine for
seeds and Kubernetes objects) and never show a value in a plan, journal or error.
"""

from __future__ import annotations

import fnmatch
import os
import re
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


def read_local(ref: SecretRef) -> bytes:
    """A secret's value on this machine (the one running converge); one trailing newline of
    a file is dropped."""
    try:
        if ref.source == "env":
            return os.environ[ref.ref].encode()
        return Path(ref.ref).expanduser().read_bytes().rstrip(b"\n")
    except (KeyError, OSError):
        where = f"environment variable {ref.ref}" if ref.source == "env" else f"file {ref.ref}"
        raise UserError(f"secret '{ref.name}' is not available ({where} is missing)",
                        "provide it before plan/converge") from None


# An SSH key reference fills a public place (Ignition served over HTTP, cloud-init
# user-data): its value must be one OpenSSH public key line, so a pull request that points
# the reference at a private key or another secret file cannot publish it.
_PUBLIC_KEY = re.compile(rb"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
                         rb"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
                         rb" [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?")


def checked_value(ref: SecretRef, value: bytes) -> bytes:
    """`value` if it fits the place its reference fills; the value is never named."""
    if ref.name.startswith("sshAuthorizedKeys[") and not _PUBLIC_KEY.fullmatch(value):
        where = f"environment variable {ref.ref}" if ref.source == "env" else f"file {ref.ref}"
        raise UserError(f"secret '{ref.name}' ({where}) is not one OpenSSH public key line, "
                        "so it is not published",
                        "point sshAuthorizedKeys at a public key such as ~/.ssh/id_ed25519.pub")
    return value


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
