"""What real cloud-init applied inside a booted VM, read from the report the VM writes, against
what the environment (and the rendered user-data's own files) say.

`proof_script` is the shell script the image's gen-proof.service runs once cloud-init is
done: one `== <section>` header per fact, the facts in plain command output, written to the
raw report disk (`/dev/disk/by-id/virtio-genreport`). `problems` names the first step that
is missing or wrong, so a failure reads `<node>: step <step>: <why>`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# In the order cloud-init applies them; its overall status last, since one wrong early step
# (no address) fails later ones too (runcmd cannot reach the package repository), and the
# first failing step is the one that explains.
STEPS = ("report", "hostname", "fqdn", "interface", "address", "route", "dns", "user-key",
         "write-files", "modules", "sysctls", "swap", "containerd", "packages", "kubelet",
         "cloud-init", "cloud-init-log")
REPORT_DISK = "/dev/disk/by-id/virtio-genreport"
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1",
           "net.ipv4.ip_forward": "1"}
MODULES = ("overlay", "br_netfilter")
KUBE_TOOLS = ("kubelet", "kubeadm", "kubectl")
# cloud-init.log lines that mean something went wrong or will break on the next release.
LOG_PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|DEPRECAT|Traceback", re.I)


@dataclass(frozen=True)
class Expected:
    """What should have landed on one node."""

    node: str
    fqdn: str
    interface: str
    mac: str
    address: str  # ip/prefix
    gateway: str
    dns: str
    search: str
    user: str  # the image's default user, who gets the SSH keys
    ssh_key: str
    files: dict[str, tuple[str, str, str]]  # path -> (sha256, mode, owner) from user-data
    packages: dict[str, str]  # name -> version pinned by the user-data


def proof_script(files: list[str], user: str) -> str:
    """The script gen-proof.service runs inside the VM."""
    stats = "\n".join(f"echo '== file {path}'; stat -c '%a %U:%G' {path} && sha256sum < {path}"
                      for path in files)
    return f"""#!/bin/sh
# gen's cloud-init proof: what landed, one section per fact.
out=/run/gen-report.txt
{{
echo '== status'; cloud-init status --wait --long
echo '== result'; cat /run/cloud-init/result.json
echo '== hostname'; hostname
echo '== fqdn'; hostname --fqdn
echo '== link'; ip -o link show
echo '== addr'; ip -o -4 addr show
echo '== route'; ip -4 route show
echo '== resolv'; cat /etc/resolv.conf
echo '== user'; getent passwd {user}
echo '== keys'; cat /home/{user}/.ssh/authorized_keys
{stats}
echo '== modules'; cut -d' ' -f1 /proc/modules
echo '== sysctls'; sysctl {' '.join(SYSCTLS)}
echo '== swaps'; tail -n +2 /proc/swaps
echo '== fstab'; cat /etc/fstab
echo '== containerd'; systemctl is-active containerd; containerd config dump
echo '== packages'; dpkg-query -W -f='${{Package}}=${{Version}}\\n' {' '.join(KUBE_TOOLS)}
echo '== holds'; apt-mark showhold
echo '== kubelet'; systemctl is-enabled kubelet; systemctl is-active kubelet; kubelet --version
echo '== cloud-init-log'; grep -E '{LOG_PROBLEM.pattern}' /var/log/cloud-init.log
echo '== output-tail'; tail -n 30 /var/log/cloud-init-output.log
echo '== end'
}} > $out 2>&1
dd if=$out of={REPORT_DISK} conv=fsync status=none
"""


def sections(report: str) -> dict[str, str]:
    """`== name` -> the text below it."""
    found: dict[str, str] = {}
    name = None
    for line in report.replace("\0", "").splitlines():
        if line.startswith("== "):
            name = line[3:].strip()
            found[name] = ""
        elif name is not None:
            found[name] += line + "\n"
    return found


def problems(report: str, want: Expected) -> list[str]:
    """`<node>: step <step>: <why>` for the first step that did not land (empty: all did)."""
    got = sections(report)
    for step in STEPS:
        why = CHECKS[step](got, want)
        if why:
            return [f"{want.node}: step {step}: {why}"]
    return []


Got = dict[str, str]


def _report(got: Got, want: Expected) -> str | None:
    return None if "end" in got else \
        "no complete report on the report disk (the VM never finished gen-proof.service)"


def _hostname(got: Got, want: Expected) -> str | None:
    return _equal("hostname", got.get("hostname", "").strip(), want.node)


def _fqdn(got: Got, want: Expected) -> str | None:
    return _equal("hostname --fqdn", got.get("fqdn", "").strip(), want.fqdn)


def _interface(got: Got, want: Expected) -> str | None:
    line = re.search(rf"^\d+: {re.escape(want.interface)}: .*link/ether {want.mac} ",
                     got.get("link", ""), re.M)
    return None if line else f"no {want.interface} with MAC {want.mac}: {got.get('link')!r}"


def _address(got: Got, want: Expected) -> str | None:
    line = re.search(rf"^\d+: {re.escape(want.interface)}\s+inet {re.escape(want.address)} ",
                     got.get("addr", ""), re.M)
    return None if line else \
        f"{want.interface} has no {want.address}; ip addr: {got.get('addr', '').strip()!r}"


def _route(got: Got, want: Expected) -> str | None:
    wanted = f"default via {want.gateway} dev {want.interface}"
    return None if wanted in got.get("route", "") else \
        f"no '{wanted}'; ip route: {got.get('route', '').strip()!r}"


def _dns(got: Got, want: Expected) -> str | None:
    resolv = got.get("resolv", "")
    missing = [w for w in (f"nameserver {want.dns}", f"search {want.search}")
               if not re.search(rf"^{re.escape(w)}\b", resolv, re.M)]
    return f"/etc/resolv.conf lacks {missing}: {resolv!r}" if missing else None


def _user_key(got: Got, want: Expected) -> str | None:
    if not got.get("user", "").startswith(f"{want.user}:"):
        return f"no user {want.user}: {got.get('user')!r}"
    keys = got.get("keys", "").splitlines()
    return None if want.ssh_key in keys else \
        f"{want.user}'s authorized_keys lacks the key: {keys!r}"


def _modules(got: Got, want: Expected) -> str | None:
    loaded = got.get("modules", "").split()
    missing = [m for m in MODULES if m not in loaded]
    return f"modules not loaded: {missing}" if missing else None


def _sysctls(got: Got, want: Expected) -> str | None:
    values = dict(re.findall(r"^(\S+) = (\S+)$", got.get("sysctls", ""), re.M))
    wrong = [f"{k} is {values.get(k)!r}, not {v!r}" for k, v in SYSCTLS.items()
             if values.get(k) != v]
    return ", ".join(wrong) if wrong else None


def _containerd(got: Got, want: Expected) -> str | None:
    text = got.get("containerd", "")
    if not text.startswith("active\n"):
        return f"containerd is not active: {text[:200]!r}"
    return None if re.search(r"^\s*SystemdCgroup = true$", text, re.M) else \
        "containerd's effective config lacks SystemdCgroup = true"


def _kubelet(got: Got, want: Expected) -> str | None:
    lines = got.get("kubelet", "").splitlines()
    return None if lines[:2] == ["enabled", "active"] else \
        f"kubelet is not enabled and active: {lines!r}"


def _log(got: Got, want: Expected) -> str | None:
    logged = got.get("cloud-init-log", "").strip()
    return f"cloud-init.log: {logged[:800]}" if logged else None


def _equal(what: str, got: str, want: str) -> str | None:
    return None if got == want else f"{what} is {got!r}, not {want!r}"


def _cloud_init(got: Got, want: Expected) -> str | None:
    status = got.get("status", "")
    if not re.search(r"^status: done$", status, re.M):
        return f"cloud-init status is not done: {status.strip()!r}"
    try:
        result = json.loads(got.get("result", ""))["v1"]
    except (ValueError, KeyError):
        return f"no /run/cloud-init/result.json: {got.get('result', '')[:300]!r}"
    errors = result.get("errors", []) + result.get("recoverable_errors", [])
    if errors:
        return f"cloud-init reported errors: {errors}"
    return f"DEPRECATED in cloud-init status: {status!r}" if "DEPRECAT" in status else None


def _files(got: Got, want: Expected) -> str | None:
    for path, (sha, mode, owner) in want.files.items():
        text = got.get(f"file {path}", "")
        lines = text.split("\n")
        if not text or lines[0] != f"{mode} {owner}":
            return f"{path}: not written as {mode} {owner}: {text.strip()!r}"
        if not lines[1].startswith(sha):
            return f"{path}: content differs from the rendered user-data"
    return None


def _swap(got: Got, want: Expected) -> str | None:
    active = got.get("swaps", "").strip()
    if active:
        return f"swap still active: {active!r}"
    live = [line for line in got.get("fstab", "").splitlines()
            if re.match(r"^[^#].*\sswap\s", line)]
    return f"swap left in /etc/fstab: {live!r}" if live else None


def _packages(got: Got, want: Expected) -> str | None:
    installed = dict(line.split("=", 1) for line in got.get("packages", "").split() if "=" in line)
    wrong = [f"{name} {installed.get(name)!r}, not {version!r}"
             for name, version in want.packages.items() if installed.get(name) != version]
    if wrong:
        return "installed " + ", ".join(wrong)
    held = got.get("holds", "").split()
    missing = [name for name in want.packages if name not in held]
    return f"not held: {missing}" if missing else None


def file_entry(content: str, permissions: str, owner: str) -> tuple[str, str, str]:
    """(sha256, mode as stat prints it, owner) of one write_files entry."""
    return (hashlib.sha256(content.encode()).hexdigest(), permissions.lstrip("0") or "0",
            owner)


CHECKS = {"report": _report, "hostname": _hostname, "fqdn": _fqdn,
          "interface": _interface, "address": _address, "route": _route, "dns": _dns,
          "user-key": _user_key, "write-files": _files, "modules": _modules,
          "sysctls": _sysctls, "swap": _swap, "containerd": _containerd,
          "packages": _packages, "kubelet": _kubelet, "cloud-init": _cloud_init,
          "cloud-init-log": _log}
assert tuple(CHECKS) == STEPS
