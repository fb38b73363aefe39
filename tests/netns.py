"""Lo-only network namespaces for tests that start real daemons (no outbound traffic: see
docs/design.md).

Import it from a test module as `from netns import Netns, netns` (pytest puts tests/ on
sys.path). API, kept stable because several test modules share it:

    with netns("dns") as ns:                 # namespace with only `lo`, brought up
        ns.run(["named-checkconf", path])    # subprocess.run inside the namespace
        proc = ns.popen(["dnsmasq", "-k", ...])          # foreground daemon, tracked
        pid = ns.start_daemon(["named", ...], pidfile)   # forking daemon, pid file, tracked
        ns.wait_port(53, "udp")              # until something listens
        with netns("client") as peer:
            ns.add_veth(peer, "192.168.20.111/24", "192.168.20.150/24", peer_mac=mac)
        ns.kill_all()                        # also done on exit

Every process is killed by its own pid (never by name); on exit the namespace is deleted,
which also deletes veth pairs with an end inside it. Needs root and iproute2.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_counter = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"


class Netns:
    """A network namespace holding only `lo` (and veth ends a test adds)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """`argv` wrapped in `ip netns exec <name>`."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, argv: Sequence[str | os.PathLike[str]], check: bool = False,
            timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; output captured as text unless told otherwise."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(argv), check=check, timeout=timeout, **kw)  # type: ignore[call-overload,no-any-return]

    def popen(self, argv: Sequence[str | os.PathLike[str]],
              **kw: object) -> subprocess.Popen[bytes]:
        """Start a foreground process inside the namespace; killed by kill_all()."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.argv(argv), **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def start_daemon(self, argv: Sequence[str | os.PathLike[str]], pidfile: str | Path,
                     timeout: float = 10) -> int:
        """Start a daemon that forks and writes `pidfile`; return (and track) its pid."""
        pidfile = Path(pidfile)
        result = self.run(argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(pidfile.read_text().split()[0])
                self.pids.append(pid)
                return pid
            time.sleep(0.05)
        raise RuntimeError(f"{argv[0]} wrote no pid file {pidfile} (rc={result.returncode}): "
                           f"{result.stdout}{result.stderr}")

    def track(self, pid: int) -> None:
        """Have kill_all() end a pid started some other way inside this namespace."""
        self.pids.append(pid)

    def add_veth(self, peer: Netns | None, addr_cidr: str | None, peer_addr_cidr: str | None,
                 mac: str | None = None, peer_mac: str | None = None) -> tuple[str, str]:
        """A veth pair: one end here, the other in `peer` (None: the root namespace).

        Both ends are brought up, with the given addresses (None: no address) and MACs.
        Returns (this end's name, the peer end's name).
        """
        here, there = _unique("gv"), _unique("gp")
        subprocess.run(["ip", "link", "add", here, "type", "veth", "peer", "name", there],
                       check=True)
        subprocess.run(["ip", "link", "set", here, "netns", self.name], check=True)
        if peer is not None:
            subprocess.run(["ip", "link", "set", there, "netns", peer.name], check=True)
        for ns, ifname, addr, lladdr in ((self, here, addr_cidr, mac),
                                         (peer, there, peer_addr_cidr, peer_mac)):
            run = ns.run if ns is not None else _run_root
            if lladdr:
                run(["ip", "link", "set", ifname, "address", lladdr], check=True)
            if addr:
                run(["ip", "addr", "add", addr, "dev", ifname], check=True)
            run(["ip", "link", "set", ifname, "up"], check=True)
        return here, there

    def wait_port(self, port: int, proto: str = "tcp", timeout: float = 10) -> None:
        """Wait until something inside the namespace listens on `port` (tcp or udp)."""
        flag = "-ltn" if proto == "tcp" else "-lun"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(["ss", flag]).stdout
            if any(f":{port} " in line for line in out.splitlines()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"nothing listens on {proto}/{port} in {self.name}")

    def kill_all(self) -> None:
        """Terminate every tracked process (and anything left in the namespace) by pid."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for pid in self.pids:
            _signal(pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._reap_namespace()
        self.procs.clear()
        self.pids.clear()

    def _reap_namespace(self) -> None:
        # Whatever still runs inside this test's own namespace was started by the test.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", self.name],
                                                   capture_output=True, text=True).stdout.split()]
            if not pids:
                return
            sig = signal.SIGTERM if time.monotonic() < deadline - 3 else signal.SIGKILL
            for pid in pids:
                _signal(pid, sig)
            time.sleep(0.1)


def _run_root(argv: Sequence[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@contextlib.contextmanager
def netns(name: str = "t") -> Iterator[Netns]:
    """A fresh namespace `gen-<name>-<unique>` with `lo` up; deleted (daemons killed) on exit."""
    full = _unique(f"gen-{name}-")
    subprocess.run(["ip", "netns", "add", full], check=True)
    ns = Netns(full)
    try:
        ns.run(["ip", "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        ns.kill_all()
        subprocess.run(["ip", "netns", "del", full], check=False)
