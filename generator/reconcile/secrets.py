"""Secret references at converge time, shared by every provider.

A rendered file carries `SecretRef.marker()` (`@@gen-secret:NAME@@`) instead of a value.
Providers fill the markers only while applying (on the target, or on this machine for
seeds and Kubernetes objects) and never show a value in a plan, journal or error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from generator.errors import UserError
from generator.model import Environment, SecretRef

# Marker names are the references' names (`sshAuthorizedKeys[0]` included): anything but `@`.
MARKER = re.compile(r"@@gen-secret:([^@]+)@@")
MARKER_BYTES = re.compile(rb"@@gen-secret:([^@]+)@@")


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
