"""Host OS profiles (generator/profiles.py): lab A's boot services, converged by `gen converge`
into a root laid out like each distribution, accepted by the real checkers and daemons at the
paths that distribution uses; packages installed through the same prefix.

The root: a private mount namespace, inside a lo-only network namespace, over an overlay of
`/` whose upper layer is the test's tmp dir, with the process chrooted into it (as
tests/test_nfs.py does for exportfs; no /proc there, so `exportfs -ra` computes its table
without touching the kernel's). Converge reaches it with
`--files-exec helper='nsenter -t PID -m -n -r -w'` and `--files-target helper=/`, so it
writes the distribution's real absolute paths (/etc/named.conf or /etc/bind/named.conf,
/var/lib/tftpboot or /srv/tftp, ...) and every write lands in tmp.

This machine runs Debian. For el9 its binaries stand in at el9's paths: `httpd` runs apache2,
Apache's modules are bound at /usr/lib64/httpd/modules, syslinux and GRUB files are copied
where el9's packages put them, and the `apache` user exists. el9's package tools are
stand-ins (no el9 repository here) that behave like the real ones: `rpm -q` answers from a
package list, `dnf install` refuses a name el9 has no package for and records the rest; the
SELinux and firewalld tools record their calls. Debian's package query is the real
dpkg-query, reading this machine's package database.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clirun import gen, helper_on_debian
from netns import Netns, netns

from generator.environment import load_environment
from generator.errors import UserError
from generator.families import Pins
from generator.model import Environment
from generator.pipeline import render_environment
from generator.profiles import DEBIAN12, EL9, PROFILES
from generator.reconcile.files import FilesProvider, Target

ROOT = Path(__file__).resolve().parent.parent
HELPER_IP = "192.168.20.111"  # lab A's helper, on lo: in.tftpd wants an address to bind
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProfilesTestKey gen-test"

# Packages CentOS Stream 9's BaseOS/AppStream ship (a stand-in dnf knows no others)
EL9_REPOSITORY = ("bind", "bind-utils", "dhcp-server", "kea", "dnsmasq", "haproxy", "httpd",
                  "tftp-server", "syslinux", "syslinux-nonlinux", "grub2-efi-x64",
                  "shim-x64", "nfs-utils", "firewalld", "policycoreutils")
EL9_PREINSTALLED = ("bind", "firewalld", "policycoreutils")

STANDIN_RPM = """#!/bin/sh
# rpm -q [--queryformat FMT] NAME...: the installed ones from the list, like rpm
[ "$1" = -q ] || { echo "rpm (stand-in): only -q" >&2; exit 2; }
shift
if [ "$1" = --queryformat ]; then fmt=$2; shift 2; else fmt='%{NAME}\\n'; fi
missing=0
for p; do
  if grep -qx -- "$p" /var/lib/standin-rpm/installed; then
    printf "$(printf '%s' "$fmt" | sed "s/%{NAME}/$p/")"
  else echo "package $p is not installed"; missing=$((missing + 1)); fi
done
exit $missing
"""
STANDIN_DNF = """#!/bin/sh
# dnf install -y NAME...: refuses a name the repository lacks (nothing installed then)
echo "dnf $*" >> /var/log/standin-dnf.log
[ "$1" = install ] && [ "$2" = -y ] || { echo "dnf (stand-in): install -y only" >&2; exit 2; }
shift 2
for p; do
  grep -qx -- "$p" /var/lib/standin-rpm/repository || {
    echo "No match for argument: $p" >&2; echo "Error: Unable to find a match: $p" >&2; exit 1; }
done
db=/var/lib/standin-rpm/installed
for p; do grep -qx -- "$p" $db || echo "$p" >> $db; done
"""
STANDIN_RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> /var/log/standin-os.log
"""
STANDIN_APT = """#!/bin/sh
# apt-get install -y --no-install-recommends NAME...: refuses a name Debian has no package for
echo "apt-get $*" >> "$STANDIN_LOG"
for p; do
  case "$p" in -*|install) continue;; esac
  apt-cache show --no-all-versions -- "$p" >/dev/null 2>&1 || {
    echo "E: Unable to locate package $p" >&2; exit 100; }
done
"""


def _el9_setup(merged: Path) -> str:
    """Shell lines that make the overlay look like an el9 helper to this machine's tools."""
    m = merged
    rpm_db = "\n".join(EL9_PREINSTALLED)
    repo = "\n".join(EL9_REPOSITORY)
    return f"""
mkdir -p {m}/usr/lib64/httpd/modules {m}/usr/share/syslinux {m}/boot/efi/EFI/centos \
  {m}/var/lib/standin-rpm {m}/var/named {m}/var/log
mount --bind /usr/lib/apache2/modules {m}/usr/lib64/httpd/modules
printf '#!/bin/sh\\nexec apache2 "$@"\\n' > {m}/usr/sbin/httpd && chmod 755 {m}/usr/sbin/httpd
cp /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 {m}/usr/share/syslinux/
cp /usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi {m}/boot/efi/EFI/centos/grubx64.efi
echo 'apache:x:48:48:Apache:/usr/share/httpd:/sbin/nologin' >> {m}/etc/passwd
echo 'apache:x:48:' >> {m}/etc/group
printf '%s\\n' '{rpm_db}' > {m}/var/lib/standin-rpm/installed
printf '%s\\n' '{repo}' > {m}/var/lib/standin-rpm/repository
"""


@dataclasses.dataclass
class DistroRoot:
    ns: Netns
    pid: int
    upper: Path  # what converge wrote, at the distribution's absolute paths

    @property
    def prefix(self) -> str:
        return f"nsenter -t {self.pid} -m -n -r -w"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-n", "-r", "-w", *argv],
                              capture_output=True, text=True, timeout=60)


@contextmanager
def distro_root(tmp: Path, os_name: str) -> Iterator[DistroRoot]:
    up, work, merged = tmp / "up", tmp / "work", tmp / "merged"
    for d in (up, work, merged):
        d.mkdir()
    bin_dir = merged / "usr/local/sbin"
    setup = _el9_setup(merged) if os_name == "el9" else ""
    standins = {"rpm": STANDIN_RPM, "dnf": STANDIN_DNF,
                **dict.fromkeys(("restorecon", "firewall-cmd", "setsebool", "semanage"),
                                STANDIN_RECORDER)} if os_name == "el9" else {}
    write_standins = "".join(
        f"cat > {bin_dir}/{name} <<'STANDIN'\n{text}STANDIN\nchmod 755 {bin_dir}/{name}\n"
        for name, text in standins.items())
    script = f"""set -e
mount -t overlay overlay -o lowerdir=/,upperdir={up},workdir={work} {merged}
mount --rbind /dev {merged}/dev
mount -t tmpfs tmpfs {merged}/run
mkdir -p {bin_dir} {merged}/run/named {merged}/var/log
{setup}
{write_standins}
echo ready
exec chroot {merged} sleep infinity
"""
    with netns(f"os{os_name[:3]}") as ns:
        proc = ns.popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        ns.run(["ip", "addr", "add", f"{HELPER_IP}/32", "dev", "lo"], check=True)
        line = proc.stdout.readline().decode()
        assert line.strip() == "ready", proc.stderr.read().decode()
        deadline = time.monotonic() + 10
        while str(Path(f"/proc/{proc.pid}/root").readlink()) == "/" \
                and time.monotonic() < deadline:
            time.sleep(0.05)  # until `exec chroot` has happened
        yield DistroRoot(ns, proc.pid, up)


def repo_for(tmp: Path, os_name: str) -> Path:
    """A scratch repo whose lab A helper runs `os_name` (el9 is the blueprint's default)."""
    repo = tmp / "repo"
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name)
    (repo / "lock").mkdir()
    if os_name == "debian12":
        helper_on_debian(repo)
    secrets = tmp / "home/.config/gen/secrets"  # the overlay's lower layer shows it there too
    secrets.mkdir(parents=True)
    (secrets / "id_rsa.pub").write_text(SSH_KEY + "\n")
    return repo


def converge_flags(root: DistroRoot, tmp: Path, os_name: str) -> list[str]:
    """Files only, into the distribution root. Reloads start the real daemons where the
    profile's would ask systemd (which the namespace has not got)."""
    tftp = PROFILES[os_name].services["tftp"].install
    conf = "/etc/named.conf" if os_name == "el9" else "/etc/bind/named.conf"
    return ["--provider", "files", "--files-target", "helper=/",
            "--files-exec", f"helper={root.prefix}",
            f"--reload=dns=named -c {conf}", "--reload=dhcp=true",
            "--reload=haproxy=haproxy -D -p /run/haproxy.pid -f /etc/haproxy/haproxy.cfg",
            f"--reload=tftp=in.tftpd -l -4 -s {tftp} -a {HELPER_IP}:69",
            "--state-dir", str(tmp / "state")]


def gen_env(tmp: Path) -> dict[str, str]:
    path = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{os.environ['PATH']}"
    return {**os.environ, "HOME": str(tmp / "home"), "PATH": path}


@pytest.mark.daemons
@pytest.mark.parametrize("os_name", ["el9", "debian12"])
def test_boot_services_installed_where_the_distribution_reads_them(os_name: str,
                                                                    tmp_path: Path) -> None:
    repo = repo_for(tmp_path, os_name)
    env = load_environment("env/lab", repo).model
    assert env.node("helper").os == os_name
    profile = PROFILES[os_name]
    with distro_root(tmp_path, os_name) as root:
        flags = converge_flags(root, tmp_path, os_name)
        first = gen("converge", "env/lab", "--auto-approve", *flags, cwd=repo,
                    env=gen_env(tmp_path), timeout=600)
        assert first.code == 0, first.out + first.err
        up = root.upper
        # where the distribution's daemons read them
        for service in ("dns", "dhcp", "haproxy", "http", "tftp", "nfs"):
            assert (up / profile.services[service].install.lstrip("/")).is_dir(), service
        named_conf = "etc/named.conf" if os_name == "el9" else "etc/bind/named.conf"
        zones = env.services.dns.os.bind_zones.lstrip("/")  # type: ignore[union-attr]
        assert (up / named_conf).is_file() and (up / zones / "ocp4.example.com.zone").is_file()
        assert not (up / "var/named/named.conf").exists()
        tftp = profile.services["tftp"].install.lstrip("/")
        assert (up / tftp / "pxelinux.0").read_bytes() == \
            Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()
        assert (up / "etc/exports.d/gen.exports").is_file()
        # the real checkers, at the installed paths
        checks = [["named-checkconf", "-z", f"/{named_conf}"],
                  ["dhcpd", "-t", "-q", "-cf", "/etc/dhcp/dhcpd.conf"],
                  ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"],
                  [profile.services["http"].check[0], "-t", "-d", "/var/lib/gen/http", "-f",
                   "/var/lib/gen/http/httpd.conf"]]
        for argv in checks:
            result = root.run(*argv)
            assert result.returncode == 0, (argv, result.stdout + result.stderr)
        # the daemons the reloads started answer
        root.ns.wait_port(53, "udp")
        dig = root.ns.run(["dig", "@127.0.0.1", "+short", "bootstrap.ocp4.example.com"])
        assert dig.stdout.strip() == str(env.node("bootstrap").ip), dig.stdout + dig.stderr
        root.ns.wait_port(8080)
        ign = root.ns.run(["curl", "-fsS", "http://127.0.0.1:8080/ignition/master0.ign"])
        assert ign.returncode == 0 and SSH_KEY in ign.stdout, ign.stderr
        root.ns.wait_port(6443)
        tftp_got = root.ns.run(["curl", "-sS", "--max-time", "10",
                                f"tftp://{HELPER_IP}/ldlinux.c32"], text=False)
        assert tftp_got.stdout == Path(profile.paths.ldlinux if os_name == "debian12"
                                       else DEBIAN12.paths.ldlinux).read_bytes()
        exports = root.run("exportfs", "-v")
        assert exports.returncode == 0 and "/exports/registry" in exports.stdout, exports
        plan = gen("plan", "env/lab", "--detailed-exitcode", *flags[:-2], cwd=repo,
                   env=gen_env(tmp_path), timeout=300)
        assert plan.code == 0, plan.out + plan.err  # packages included: nothing left to do
        if os_name == "el9":
            _assert_el9_host_steps(root, profile)
        else:  # every package the services need is installed on this machine: no action
            assert "packages" not in first.out, first.out


def _assert_el9_host_steps(root: DistroRoot, profile: object) -> None:
    """dnf installed what rpm did not have, once, before the services; SELinux labels and
    firewalld were set after the files landed."""
    dnf = (root.upper / "var/log/standin-dnf.log").read_text().splitlines()
    assert len(dnf) == 1, dnf
    installed = set(dnf[0].split()[3:])
    wanted = {p for s in ("dns", "dhcp", "haproxy", "http", "tftp", "nfs")
              for p in EL9.services[s].packages}
    assert installed == wanted - set(EL9_PREINSTALLED)
    steps = (root.upper / "var/log/standin-os.log").read_text()
    assert "restorecon -R /var/named\n" in steps and "restorecon -R /var/lib/gen/http" in steps
    assert "setsebool -P haproxy_connect_any 1" in steps
    assert "semanage fcontext -a -t httpd_sys_rw_content_t /var/lib/gen/http(/.*)?" in steps
    firewall = [line for line in steps.splitlines() if line.startswith("firewall-cmd")]
    assert "firewall-cmd --quiet --add-port=8080/tcp" in firewall  # the running firewall
    assert "firewall-cmd --quiet --permanent --add-port=8080/tcp" in firewall  # and for good
    assert "firewall-cmd --quiet --permanent --add-service=dns" in firewall
    haproxy = [line for line in firewall if "--permanent" in line and "6443" in line]
    for port in (80, 443, 6443, 9000, 22623):  # API, machine-config, ingress, stats
        assert f"--add-port={port}/tcp" in haproxy[0].split(), (port, haproxy)


# --- packages without daemons --------------------------------------------------------------

def _bin(tmp: Path, **scripts: str) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _debian_lab(tmp: Path, provider: str = "bind") -> tuple[Environment, dict[str, bytes]]:
    repo = repo_for(tmp, "debian12")
    if provider == "dnsmasq":
        env_file = repo / "environments/lab/env.yaml"
        text = env_file.read_text()
        old = "services:\n  dns:\n    provider: bind\n"
        assert old in text
        env_file.write_text(text.replace(old, "services:\n  dhcp:\n    provider: dnsmasq\n"
                                              "  dns:\n    provider: dnsmasq\n"))
    rendered = render_environment("env/lab", cwd=repo, pins=Pins())
    return rendered.loaded.model, rendered.tree


def _not_installed_here(names: list[str]) -> set[str]:
    """Asked of dpkg itself (`dpkg -s`), not through the code under test."""
    return {n for n in names if b"Status: install ok installed" not in subprocess.run(
        ["dpkg", "-s", n], capture_output=True).stdout}


def test_debian_packages_are_asked_of_the_real_dpkg_query(tmp_path: Path) -> None:
    env, tree = _debian_lab(tmp_path, "dnsmasq")
    log = tmp_path / "apt.log"
    bin_dir = _bin(tmp_path, **{"apt-get": STANDIN_APT})
    target = Target(str(tmp_path / "root"), ("env", f"STANDIN_LOG={log}",
                                             f"PATH={bin_dir}:{os.environ['PATH']}"))
    provider = FilesProvider(targets={"helper": target})
    actions = provider.plan(env, provider.scope(tree))
    needed = sorted({p for a in actions if a.kind == "service"
                     for p in a.payload["spec"].packages})
    assert "dnsmasq" in needed
    missing = _not_installed_here(needed)
    packages = [a for a in actions if a.kind == "packages"]
    if not missing:
        assert packages == []
        return
    (action,) = packages
    assert action.name == "helper" and action.order < 0  # before the services
    assert {c.path for c in action.changes} == missing
    provider.apply(action)
    assert log.read_text().split() == ["apt-get", "install", "-y", "--no-install-recommends",
                                       *sorted(missing)]
    bogus = dataclasses.replace(action, payload={**action.payload,
                                                 "missing": ["no-such-package-gen"]})
    with pytest.raises(UserError, match="Unable to locate package no-such-package-gen"):
        provider.apply(bogus)


def test_no_install_packages_plans_none_and_runs_no_post_install(tmp_path: Path) -> None:
    env, tree = _debian_lab(tmp_path, "dnsmasq")
    target = Target(str(tmp_path / "root"))
    off = FilesProvider(targets={"helper": target}, install_packages=False)
    assert [a for a in off.plan(env, off.scope(tree)) if a.kind == "packages"] == []


def test_files_target_alone_installs_no_packages(tmp_path: Path) -> None:
    """Without --files-exec gen would run the package manager on this machine: never."""
    env, tree = _debian_lab(tmp_path, "dnsmasq")
    provider = FilesProvider(targets={"helper": Target(str(tmp_path / "root"), reloads=False)})
    assert [a for a in provider.plan(env, provider.scope(tree)) if a.kind == "packages"] == []


def test_a_wrong_profile_is_one_clear_error(tmp_path: Path) -> None:
    """An el9 helper reached on a machine without rpm: the converge says what to fix."""
    repo = repo_for(tmp_path, "el9")
    path = "/usr/bin:/bin"
    assert shutil.which("rpm", path=path) is None  # this machine runs Debian
    result = gen("plan", "env/lab", "--provider", "files", "--files-exec",
                 f"helper=env PATH={path}", cwd=repo, env=gen_env(tmp_path))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "cannot ask the target which packages are installed: `rpm` is not there (is the "
        "host's os 'el9' right?) (set the node's os: to its distribution, or pass "
        "--no-install-packages)"]


# --- the table -----------------------------------------------------------------------------

def test_schema_offers_exactly_the_profiles() -> None:
    schema = json.loads((ROOT / "schemas/blueprint.schema.json").read_text())
    for definition in ("node", "nodeDefaults"):
        assert schema["$defs"][definition]["properties"]["os"]["enum"] == list(PROFILES)


def test_blueprints_default_helpers_to_el9_and_debian_hosts_to_debian12() -> None:
    lab = load_environment("env/lab", ROOT).model
    assert lab.node("helper").os == "el9"
    assert lab.services.dns is not None and lab.services.dns.directory == "/var/named"
    k8s = load_environment("env/k8s-lab", ROOT).model
    assert {n.os for n in k8s.nodes} == {"debian12"}


def test_every_profile_covers_the_same_services() -> None:
    # but the mirror registry: el9 packages no Docker distribution (refused at validate there)
    services = {name: set(p.services) - {"registry"} for name, p in PROFILES.items()}
    assert len({frozenset(s) for s in services.values()}) == 1, services
    assert [n for n, p in PROFILES.items() if p.service("registry") is None] == ["el9"]
    for profile in PROFILES.values():
        for name, spec in profile.services.items():
            assert spec.install.startswith("/") and (spec.packages or name == "kolla"), name


def test_no_code_branches_on_a_distribution() -> None:
    """Profiles are looked up, never compared: no `== "el9"` (or any profile name) in code."""
    names = "|".join(map(re.escape, PROFILES))
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?\s*["']({names})["']"""
                         rf"""|["']({names})["']\s*(==|!=)""")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in (ROOT / "generator").rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
    assert pattern.search('if node.os == "el9":')  # the check can fail


def test_debian_named_conf_names_zones_where_debian_keeps_them(tmp_path: Path) -> None:
    env, tree = _debian_lab(tmp_path)
    conf = tree["hosts/helper/dns/named.conf"].decode()
    assert 'directory "/var/cache/bind";' in conf
    assert 'file "/etc/bind/zones/ocp4.example.com.zone";' in conf
    el9 = render_environment("env/lab", cwd=ROOT, pins=Pins()).tree
    el9_conf = el9["hosts/helper/dns/named.conf"].decode()
    assert 'directory "/var/named";' in el9_conf
    assert 'file "zones/ocp4.example.com.zone";' in el9_conf  # below /var/named


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
