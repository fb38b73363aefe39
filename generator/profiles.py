"""Host OS profiles: what a distribution decides about the boot services gen installs.

A profile is one table, written as data: per service the packages that provide it, where
its files go, the checker and reload commands, the unit, and the steps the OS wants after
files land (SELinux labels and firewalld on el9; nothing on Debian and Ubuntu, which ship
no active firewall or SELinux by default). It also names the few paths a rendered config
must spell the way its host's distribution does (BIND's working directory, Apache's modules
and user, where the PXE loaders come from). Code looks a profile up by a host's `os`; it
never asks which distribution it is.

Argv templates (check, reload, post-install) are filled by the files provider: `{staged}`
is the staged copy of the install dir, `{staging}` the staging root mirroring the target's
absolute layout (for chroot-style checkers such as `named-checkconf -t`), `{install}` the
install dir under the target's root, `{absolute}` the install dir as configs name it, and
an argument `{ports}` expands to one `--add-port=PORT/tcp` per port the service listens on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT = "debian12"  # a host whose role sets no `os` (blueprints set one per role)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Where a service's files go on one distribution, how they are checked, and how the
    daemon picks them up."""

    install: str
    check: tuple[str, ...] = ()
    reload: tuple[str, ...] = ()
    publish: str | None = None  # subdir of install that manifest.json entries are relative to
    mode: int = 0o644  # of every file installed (0o600 where they carry secrets)
    packages: tuple[str, ...] = ()
    # rendered files installed outside the install dir, by their path under the service
    # (el9's named reads /etc/named.conf, its zones from /var/named)
    placed: tuple[tuple[str, str], ...] = ()
    post_install: tuple[tuple[str, ...], ...] = ()  # run after files change, before reload
    # directories the checker needs in the staging root (the package made them on the host:
    # named-checkconf changes into BIND's working directory)
    check_dirs: tuple[str, ...] = ()

    def place(self, rel: str) -> str | None:
        """The absolute path of a rendered file the profile installs outside `install`."""
        return dict(self.placed).get(rel)


@dataclass(frozen=True, slots=True)
class HostPaths:
    """What a rendered config says about its host's distribution (the typed model carries
    it to the families: they render the same content with these paths)."""

    bind_directory: str  # named.conf `directory`: named's writable working directory
    bind_zones: str  # where converge installs the zone files (absolute)
    httpd_module_dir: str
    httpd_modules: tuple[tuple[str, str], ...]  # (module name, .so) LoadModule'd
    httpd_user: str
    httpd_start: str  # the binary that starts the dedicated instance (for the comment)
    pxelinux: str  # package paths the TFTP manifest publishes
    ldlinux: str
    grub_efi: str
    grub_prefix: str  # the directory of the TFTP root GRUB looks in for grub.cfg


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    # argv prefixes; package names are appended. The query prints `NAME installed` for
    # every installed package (other lines, and its exit code, are ignored).
    query: tuple[str, ...]
    install: tuple[str, ...]
    paths: HostPaths
    services: Mapping[str, ServiceSpec] = field(default_factory=lambda: MappingProxyType({}))

    def service(self, name: str) -> ServiceSpec | None:
        return self.services.get(name)


# kolla-ansible's inputs on the all-in-one host (families/kolla.py). gen's passwords arrive
# as passwords.gen.yml; kolla's own tools merge them into passwords.yml (values already there
# win, as in kolla's upgrade procedure) and generate what is still empty.
KOLLA_PASSWORDS = (
    'cd "$1" && if [ -f passwords.yml ]; then kolla-mergepwd --clean --old passwords.yml '
    "--new passwords.gen.yml --final passwords.next.yml; else cp passwords.gen.yml "
    "passwords.next.yml; fi && kolla-genpwd -p passwords.next.yml && chmod 600 "
    "passwords.next.yml && mv -f passwords.next.yml passwords.yml")
HTTP_ROOT = "/var/lib/gen/http"  # a dedicated Apache instance's ServerRoot (families/http.py)
BASE_MODULES = (("mpm_event", "mod_mpm_event.so"), ("authz_core", "mod_authz_core.so"),
                ("mime", "mod_mime.so"), ("dir", "mod_dir.so"))


def _restart(unit: str) -> tuple[str, ...]:
    return ("systemctl", "restart", unit)


def _reload(unit: str) -> tuple[str, ...]:
    return ("systemctl", "reload-or-restart", unit)


def _named_check(conf: str) -> tuple[str, ...]:
    # chrooted into the staging root, so named.conf's absolute zone paths resolve there
    return ("named-checkconf", "-t", "{staging}", "-z", conf)


def _httpd(binary: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(check, reload) of the dedicated Apache instance under its binary's name."""
    return ((binary, "-t", "-d", "{staged}", "-f", "{staged}/httpd.conf"),
            (binary, "-d", "{install}", "-f", "{install}/httpd.conf", "-k", "graceful"))


def _firewalld(*services: str) -> tuple[str, ...]:
    """Open firewalld services (and the environment's ports, `{ports}`), at once and for
    good: firewall-cmd without --permanent changes only the running firewall."""
    adds = " ".join(f"--add-service={s}" for s in services)
    return ("sh", "-c", f'firewall-cmd --quiet {adds} "$@" && firewall-cmd --quiet '
            f'--permanent {adds} "$@"', "sh", "{ports}")


def _label(*paths: str) -> tuple[str, ...]:
    return ("restorecon", "-R", *paths)


# Apache serves a directory outside /var/www: SELinux must label it as web content (logs
# and pid file live there too, so the read-write type). Idempotent: add, else modify.
_HTTP_FCONTEXT = ("sh", "-c", 'semanage fcontext -a -t httpd_sys_rw_content_t "$1(/.*)?" '
                  '2>/dev/null || semanage fcontext -m -t httpd_sys_rw_content_t "$1(/.*)?"',
                  "sh", HTTP_ROOT)

EL9 = Profile(
    name="el9",
    description="RHEL 9 family: RHEL, CentOS Stream, Rocky, AlmaLinux 9",
    query=("rpm", "-q", "--queryformat", "%{NAME} installed\\n"),
    install=("dnf", "install", "-y"),
    paths=HostPaths(
        bind_directory="/var/named", bind_zones="/var/named/zones",
        httpd_module_dir="/usr/lib64/httpd/modules",
        # RHEL builds unixd (User/Group) and log_config as modules; Debian links them in
        httpd_modules=(*BASE_MODULES, ("unixd", "mod_unixd.so"),
                       ("log_config", "mod_log_config.so")),
        httpd_user="apache", httpd_start="httpd",
        pxelinux="/usr/share/syslinux/pxelinux.0", ldlinux="/usr/share/syslinux/ldlinux.c32",
        # grub2-efi-x64 installs under the vendor's EFI directory (CentOS Stream's here);
        # it looks for grub.cfg beside itself, so the GRUB configs sit in the TFTP root.
        grub_efi="/boot/efi/EFI/centos/grubx64.efi", grub_prefix=""),
    services=MappingProxyType({
        "dns": ServiceSpec("/var/named", _named_check("/etc/named.conf"), _reload("named"),
                           packages=("bind", "bind-utils"),
                           placed=(("named.conf", "/etc/named.conf"),),
                           post_install=(_label("{install}"), _firewalld("dns"))),
        "dhcp": ServiceSpec("/etc/dhcp", ("dhcpd", "-t", "-q", "-cf", "{staged}/dhcpd.conf"),
                            _restart("dhcpd"), packages=("dhcp-server",),
                            post_install=(_label("{install}"), _firewalld("dhcp"))),
        "kea": ServiceSpec("/etc/kea", ("kea-dhcp4", "-t", "{staged}/kea-dhcp4.conf"),
                           _restart("kea-dhcp4"), packages=("kea",),
                           post_install=(_label("{install}"), _firewalld("dhcp"))),
        "dnsmasq": ServiceSpec("/etc/dnsmasq.d", ("dnsmasq", "--test", "--conf-dir={staged}"),
                               _restart("dnsmasq"), packages=("dnsmasq",),
                               post_install=(_label("{install}"),
                                             _firewalld("dns", "dhcp", "tftp"))),
        "haproxy": ServiceSpec("/etc/haproxy", ("haproxy", "-c", "-f", "{staged}/haproxy.cfg"),
                               _reload("haproxy"), packages=("haproxy",),
                               post_install=(_label("{install}"),
                                             # the API and ingress ports are no http ports
                                             ("setsebool", "-P", "haproxy_connect_any", "1"),
                                             _firewalld())),
        "http": ServiceSpec(HTTP_ROOT, *_httpd("httpd"), publish="htdocs",
                            packages=("httpd",),
                            post_install=(_HTTP_FCONTEXT, _label("{install}"), _firewalld())),
        "tftp": ServiceSpec("/var/lib/tftpboot", (), ("systemctl", "enable", "--now",
                                                      "tftp.socket"), publish="",
                            packages=("tftp-server", "syslinux-nonlinux", "grub2-efi-x64"),
                            post_install=(_label("{install}"), _firewalld("tftp"))),
        "nfs": ServiceSpec("/etc/exports.d", (), ("exportfs", "-ra"),
                           packages=("nfs-utils",),
                           post_install=(_firewalld("nfs", "mountd", "rpc-bind"),)),
        "kolla": ServiceSpec("/etc/kolla", (), ("sh", "-c", KOLLA_PASSWORDS, "sh",
                                                "{install}"), publish="", mode=0o600),
    }),
)

DEBIAN12 = Profile(
    name="debian12",
    description="Debian 12 (bookworm)",
    query=("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"),
    install=("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
             "--no-install-recommends"),
    paths=HostPaths(
        # named may write only below /var/cache/bind (AppArmor); configs live in /etc/bind
        bind_directory="/var/cache/bind", bind_zones="/etc/bind/zones",
        httpd_module_dir="/usr/lib/apache2/modules", httpd_modules=BASE_MODULES,
        httpd_user="www-data", httpd_start="apache2",
        pxelinux="/usr/lib/PXELINUX/pxelinux.0",
        ldlinux="/usr/lib/syslinux/modules/bios/ldlinux.c32",
        # grub-efi-amd64-bin's network image, whose compiled-in prefix is /grub
        grub_efi="/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi", grub_prefix="grub"),
    services=MappingProxyType({
        "dns": ServiceSpec("/etc/bind", _named_check("/etc/bind/named.conf"),
                           _reload("named"), packages=("bind9",),
                           check_dirs=("/var/cache/bind",)),
        "dhcp": ServiceSpec("/etc/dhcp", ("dhcpd", "-t", "-q", "-cf", "{staged}/dhcpd.conf"),
                            _restart("isc-dhcp-server"), packages=("isc-dhcp-server",)),
        "kea": ServiceSpec("/etc/kea", ("kea-dhcp4", "-t", "{staged}/kea-dhcp4.conf"),
                           _restart("kea-dhcp4-server"), packages=("kea-dhcp4-server",)),
        "dnsmasq": ServiceSpec("/etc/dnsmasq.d", ("dnsmasq", "--test", "--conf-dir={staged}"),
                               _restart("dnsmasq"), packages=("dnsmasq",)),
        "haproxy": ServiceSpec("/etc/haproxy", ("haproxy", "-c", "-f", "{staged}/haproxy.cfg"),
                               _reload("haproxy"), packages=("haproxy",)),
        "http": ServiceSpec(HTTP_ROOT, *_httpd("apache2"), publish="htdocs",
                            packages=("apache2",)),
        "tftp": ServiceSpec("/srv/tftp", publish="",
                            packages=("tftpd-hpa", "pxelinux", "syslinux-common",
                                      "grub-efi-amd64-bin")),
        "nfs": ServiceSpec("/etc/exports.d", (), ("exportfs", "-ra"),
                           packages=("nfs-kernel-server",)),
        "kolla": ServiceSpec("/etc/kolla", (), ("sh", "-c", KOLLA_PASSWORDS, "sh",
                                                "{install}"), publish="", mode=0o600),
        # the mirror registry (families/mirror_registry.py): Docker distribution has no
        # config checker of its own; el9 packages none (BaseOS/AppStream), so it has no entry
        "registry": ServiceSpec("/etc/docker/registry", (), _restart("docker-registry"),
                                packages=("docker-registry",)),
    }),
)

# Ubuntu 24.04 packages and lays out every boot service as Debian 12 does.
UBUNTU24 = replace(DEBIAN12, name="ubuntu24", description="Ubuntu 24.04 LTS (noble)")

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (EL9, DEBIAN12, UBUNTU24)})


def profile(name: str | None) -> Profile:
    """The profile of a host's `os` (the schema allows only PROFILES' names)."""
    return PROFILES[name or DEFAULT]
