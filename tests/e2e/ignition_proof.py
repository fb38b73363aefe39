"""What real Ignition left on a node, read from its console, against what the environment says.

The stand-in OS (tests/e2e/standin_os.APPLY_IGNITION) runs Ignition's fetch and files stages
and prints `GEN-STANDIN: ignition-<stage> ok` (or `ignition-<stage>-failed <why>`), then one
`GEN-STANDIN: landed <what> ...` line per thing that landed in the sysroot. `problems` names
the first step that is missing or wrong, so a failure reads `<node>: step <step>: <why>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

STEPS = ("ignition-fetch", "ignition-files", "hostname", "keyfile", "role-file", "ssh-key")
ROLE_FILE = "/etc/gen-role"  # the file the test's stand-in role configs write
# A real ed25519 public key (its private half was thrown away): the value of GEN_SECRET_SSH.
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbe0xs2FU3J19psscbjHQhOAXAS1Hkj2i+nZkklDoyW "
           "gen-e2e-core")


@dataclass(frozen=True)
class Expected:
    """What the environment says should land on one node."""

    node: str
    fqdn: str
    address: str  # ip/prefix
    mac: str
    gateway: str
    dns: str
    search: str
    role_text: str  # the stand-in role config's file content (one line)
    ssh_key: str


def role_config(role: str) -> dict[str, object]:
    """The stand-in for `openshift-install`'s role config: one recognisable file."""
    return {"ignition": {"version": "3.3.0"}, "storage": {"files": [{
        "path": ROLE_FILE, "mode": 0o644, "overwrite": True,
        "contents": {"source": "data:," + quote(role_text(role), safe="")}}]}}


def role_text(role: str) -> str:
    return f"gen-e2e-role-config:{role}"


def landed(console: str) -> dict[str, str]:
    """step -> the rest of its console line (a failed stage: `failed <why>`)."""
    found: dict[str, str] = {}
    for stage in ("fetch", "files"):
        line = re.search(rf"^GEN-STANDIN: ignition-{stage}(-failed)? ?(.*)$", console, re.M)
        if line:
            found[f"ignition-{stage}"] = ("failed " if line.group(1) else "") + line.group(2)
    for line in re.finditer(r"^GEN-STANDIN: landed (\S+) ?(.*)$", console, re.M):
        found.setdefault(line.group(1), line.group(2).strip())
    return found


def _fields(text: str) -> dict[str, str]:
    return dict(f.split("=", 1) for f in text.split() if "=" in f)


def problems(console: str, want: Expected) -> list[str]:
    """`<node>: step <step>: <why>` for the first step that did not land as the environment
    says (an empty list: everything landed)."""
    found = landed(console)
    for step in STEPS:
        why = _wrong(step, found.get(step), want)
        if why:
            return [f"{want.node}: step {step}: {why}"]
    return []


def _wrong(step: str, text: str | None, want: Expected) -> str | None:
    if text is None:
        return "no trace on the console"
    if step.startswith("ignition-"):
        return None if text == "ok" else text
    if step == "hostname":
        return None if text == want.fqdn else f"/etc/hostname is {text!r}, not {want.fqdn!r}"
    if step == "keyfile":
        got = _fields(text)
        wanted = {"mode": "600", "mac": want.mac.upper(), "address": want.address,
                  "gateway": want.gateway, "dns": f"{want.dns};", "search": f"{want.search};"}
        wrong = [f"{k} {got.get(k)!r}, not {v!r}" for k, v in wanted.items() if got.get(k) != v]
        return f"{text.split()[0]}: " + ", ".join(wrong) if wrong else None
    if step == "role-file":
        return None if text == want.role_text else \
            f"{ROLE_FILE} is {text!r}, not {want.role_text!r} (the role config was not merged)"
    # ssh-key: `core:/home/core <key>`
    wanted_key = f"core:/home/core {want.ssh_key}"
    return None if text == wanted_key else f"user core and key are {text!r}, not {wanted_key!r}"


def expected(rendered: Path, node: str, role: str, ip: str) -> Expected:
    """What lab-boot (tests/e2e/lab-boot/env.yaml) says lands on `node`; its MAC is the one
    its rendered libvirt domain gives the VM."""
    domain = (rendered / f"hypervisors/hv1/domains/{node}.xml").read_text()
    mac = re.search(r'<mac address="([0-9a-f:]+)"', domain)
    assert mac, domain
    return Expected(node=node, fqdn=f"{node}.ocp4.example.com", address=f"{ip}/24",
                    mac=mac.group(1), gateway="192.168.20.1", dns="192.168.20.111",
                    search="ocp4.example.com", role_text=role_text(role), ssh_key=SSH_KEY)
