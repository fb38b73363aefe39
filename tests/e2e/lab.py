"""The world the end-to-end boot test runs in: an artifact server, a bridge, a helper host.

    libvirtd's netns L (tests/reconcile_fixtures.private_libvirtd)
      br0 (no uplink) -- the node VMs' taps (libvirt network `lan`: forward mode bridge)
                      -- veth -- helper: netns H + a private mount namespace
                                 ens3 192.168.20.111/24

The helper is lab A's bare-metal helper played by namespaces: `/etc` is an overlay whose
upper dir is in tmp, `/var` and `/run` are bind mounts of tmp dirs, `/dev` is an overlay
holding the helper's own `/dev/log` (a busybox syslogd writing `logs/syslog.log`: tftpd logs
each read request there, so the test can count kernel fetches), so the files provider
installs configs at their real absolute paths (`--files-target helper=/` through
`--files-exec helper='nsenter -t PID -m -n'`) while nothing is written outside tmp. The
daemons are started by the `--reload` commands gen runs after installing each service
(`svc NAME CMD...`: stop the previous one by pid, start CMD in the background, its output
appended to `logs/NAME.log`).

Nothing here reaches beyond loopback and the bridge: the artifact server listens on
127.0.0.1 in the root namespace, and the helper and the VMs have no route anywhere else.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netns import Netns, netns

HELPER_IP = "192.168.20.111"
BRIDGE = "br0"
ENV_YAML = Path(__file__).resolve().parent / "lab-boot" / "env.yaml"
# The blueprint's helper image, unused by lab-boot's bare-metal helper: a stand-in the
# artifact server serves, pinned in env.yaml by its sha256 so `gen fetch` needs no network.
HELPER_IMAGE = "centos-stream-9-genericcloud.qcow2"
HELPER_IMAGE_BYTES = b"gen e2e stand-in helper image\n" * 64


def lab_boot_env(artifacts_url: str) -> str:
    """tests/e2e/lab-boot/env.yaml with its artifact server and stand-in image pinned."""
    sha256 = hashlib.sha256(HELPER_IMAGE_BYTES).hexdigest()
    return ENV_YAML.read_text().replace("ARTIFACTS", artifacts_url) \
        .replace("HELPER_IMAGE_SHA256", sha256)

_SVC = r"""#!/bin/sh
# svc NAME CMD...: (re)start daemon NAME in the background inside the helper.
name=$1; shift
pidfile=/run/gen-e2e-$name.pid
if [ -f "$pidfile" ]; then
  old=$(cat "$pidfile"); kill "$old" 2>/dev/null; i=0
  while kill -0 "$old" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
fi
echo "--- $(date +%T) start: $*" >> LOGS/$name.log
setsid "$@" < /dev/null >> LOGS/$name.log 2>&1 &
echo $! > "$pidfile"
"""

_HELPER = """set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir={t}/etc-upper,workdir={t}/etc-work /etc
mount --bind {t}/var /var
mount --bind {t}/srv /srv
mount --bind {t}/run /run
mount --rbind /dev {t}/host-dev
mount -t overlay overlay -o lowerdir={t}/host-dev,upperdir={t}/dev-upper,workdir={t}/dev-work /dev
mount --rbind {t}/host-dev/pts /dev/pts
mount --rbind {t}/host-dev/shm /dev/shm
busybox syslogd -n -O {t}/logs/syslog.log &
i=0; while [ ! -S /dev/log ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
[ -S /dev/log ]
echo ready $$
exec sleep infinity
"""

# Each daemon in the foreground (so `svc` holds its pid), logging to stderr.
RELOADS = {
    "dns": "named -g -c /etc/bind/named.conf",
    "dhcp": "dhcpd -f -d -cf /etc/dhcp/dhcpd.conf -lf /var/lib/dhcp/dhcpd.leases "
            "-pf /run/dhcpd.pid ens3",
    "dnsmasq": "dnsmasq -k -C /dev/null --conf-dir=/etc/dnsmasq.d --user=root "
               "--log-facility=- --log-dhcp --dhcp-leasefile=/var/lib/dhcp/dnsmasq.leases "
               "--pid-file=/run/dnsmasq.pid",
    "tftp": f"in.tftpd -L -v -s /srv/tftp -a {HELPER_IP}:69",
    "http": "apache2 -d /var/lib/gen/http -f /var/lib/gen/http/httpd.conf -DFOREGROUND",
    "haproxy": "haproxy -db -f /etc/haproxy/haproxy.cfg",
}
LOG_NAMES = {"dns": "named", "dhcp": "dhcpd", "dnsmasq": "dnsmasq", "tftp": "tftpd",
             "http": "httpd", "haproxy": "haproxy"}


@dataclass
class Helper:
    """The helper host: its netns, the pid of its mount namespace, its tmp dir."""

    ns: Netns
    pid: int
    root: Path  # tmp dir holding var/, run/, etc-upper/, logs/

    @property
    def exec_prefix(self) -> str:
        return f"nsenter -t {self.pid} -m -n"

    def reload_flags(self, services: list[str]) -> list[str]:
        svc = self.root / "svc"
        return [f"--reload={s}={svc} {LOG_NAMES[s]} {RELOADS[s]}" for s in services]

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tftp_reads(self) -> list[str]:
        """`RRQ from <client> filename <path>` of each TFTP read the helper served."""
        path = self.root / "logs" / "syslog.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [m.group(1) for m in re.finditer(r"in\.tftpd\[\d+\]: (RRQ from .*)", text)]

    def access_log(self) -> str:
        path = self.root / "var/lib/gen/http/logs/access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def served(self, path: str) -> bytes:
        """A file under the helper's HTTP document root, as nodes get it."""
        return (self.root / "var/lib/gen/http/htdocs" / path).read_bytes()


def _ip(ns: str | None, *args: str) -> None:
    argv = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _sysctl(ns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings], check=True,
                   capture_output=True, timeout=30)


@contextlib.contextmanager
def helper_host(libvirtd_netns: str, tmp: Path, router_advert: bool = True) -> Iterator[Helper]:
    """br0 in libvirtd's netns, and the helper attached to it; torn down on exit."""
    root = tmp / "helper"
    for sub in ("etc-upper", "etc-work", "var/lib/dhcp", "srv/tftp",
                "var/lib/gen/http", "var/cache/bind", "var/lock", "run/named", "logs",
                "host-dev", "dev-upper", "dev-work"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "var/run").symlink_to("/run")
    (root / "var/lib/dhcp/dhcpd.leases").touch()
    (root / "svc").write_text(_SVC.replace("LOGS", str(root / "logs")))
    (root / "svc").chmod(0o755)
    _ip(libvirtd_netns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
        "forward_delay", "0")
    _ip(libvirtd_netns, "link", "set", BRIDGE, "up")
    with netns("helper") as ns:
        here, there = f"gh{os.getpid() % 100000}", f"gb{os.getpid() % 100000}"
        _ip(None, "link", "add", here, "type", "veth", "peer", "name", there)
        _ip(None, "link", "set", here, "netns", ns.name)
        _ip(None, "link", "set", there, "netns", libvirtd_netns)
        _ip(ns.name, "link", "set", here, "name", "ens3")
        _ip(ns.name, "addr", "add", f"{HELPER_IP}/24", "dev", "ens3")
        _ip(ns.name, "link", "set", "ens3", "up")
        _ip(libvirtd_netns, "link", "set", there, "master", BRIDGE, "up")
        proc = ns.popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                         _HELPER.format(t=root)], stderr=subprocess.PIPE)
        line = proc.stdout.readline().decode()  # type: ignore[union-attr]
        match = re.fullmatch(r"ready (\d+)\n", line)
        assert match, f"helper namespace did not come up: {line!r} " \
                      f"{proc.stderr.read().decode() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        if router_advert:
            ns.popen([sys.executable, "-c", _RA], stdout=subprocess.DEVNULL)
        yield Helper(ns, int(match.group(1)), root)
    subprocess.run(["ip", "netns", "exec", libvirtd_netns, "ip", "link", "del", BRIDGE],
                   capture_output=True, timeout=30)


# An IPv6 router advertisement (no prefix, no flags, router lifetime 0) every second.
# iPXE waits ~13 s for IPv6 autoconfiguration before it boots unless a router says there is
# nothing to configure; a real helper's radvd or dnsmasq `enable-ra` would. Runs inside the
# helper's netns (ns.popen), so it is killed with the namespace.
_RA = """
import socket, struct, time
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
advert = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
index = socket.if_nametoindex("ens3")
while True:
    try:
        sock.sendto(advert, ("ff02::1", 0, 0, index))
    except OSError:
        pass  # the link-local address is tentative until DAD ends
    time.sleep(1)
"""


# -- artifact server ------------------------------------------------------------------------

@contextlib.contextmanager
def artifact_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (an ephemeral port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def wait_for(predicate: object, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(predicate())  # type: ignore[operator]
