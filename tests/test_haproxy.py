"""HAProxy family: the rendered configs pass `haproxy -c`, and a real HAProxy proxies them.

API backends are probed the way the OpenShift 4.16 UPI docs require: over HTTPS on /readyz,
so the live API backends are small TLS servers whose /readyz a test can switch off
(`READYZ_BACKEND`); a master whose /readyz fails leaves the pool within the required 30 s,
and the bootstrap node serves only while no master is ready.

Live tests run HAProxy and its backends (small Python TCP servers that answer with their own
name, so a test sees which backend a frontend reached) in two lo-only namespaces joined by a
veth pair on the lab's own subnet, one holding the load-balancer host's address, the other
every other node's, so the rendered configs run unchanged:
- lab A: 6443 and 22623 reach bootstrap + masters, 80 and 443 the workers, stats on 9000;
- lab B: port 80 must reach the workers' http NodePort, 443 the https one (the seed
  crossed them).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Netns, netns

from generator.environment import load_environment
from generator.families import Pins, haproxy
from generator.model import Environment, Node

ROOT = Path(__file__).resolve().parent.parent

# Listens on every ADDR:PORT=NAME argument; answers each connection with NAME and closes.
BACKEND = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for spec in sys.argv[1:]:
    where, name = spec.split("=")
    host, port = where.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ, name.encode() + b"\n")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(key.data)
        conn.close()
"""


# HTTPS on every ADDR:PORT=NAME argument (argv[1] = cert+key PEM, argv[2] = a directory):
# GET /readyz answers 200 while the file <directory>/<NAME> exists, 503 otherwise (a
# kube-apiserver shutting down); any other path answers NAME.
READYZ_BACKEND = r"""
import http.server, os, socketserver, ssl, sys, threading
pem, flags = sys.argv[1], sys.argv[2]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(pem)
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
def handler_for(name):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ready = os.path.exists(os.path.join(flags, name))
            status, body = (200, b"ok") if self.path != "/readyz" or ready else (503, b"no")
            if self.path != "/readyz":
                body = name.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    return Handler
for spec in sys.argv[3:]:
    where, name = spec.split("=")
    host, port = where.rsplit(":", 1)
    server = Server((host, int(port)), handler_for(name))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def model(ref: str, cwd: Path = ROOT) -> Environment:
    return load_environment(ref, cwd).model


def rendered_config(env: Environment) -> tuple[str, str]:
    """(path, text) of the one haproxy.cfg the family renders."""
    tree = haproxy.render(env, Pins())
    assert len(tree) == 1, sorted(tree)
    path, content = next(iter(tree.items()))
    return path, content.decode()


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections (`frontend api`, `backend api`, ...) -> directive -> argument strings."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = sections.setdefault(line.strip(), {})
            continue
        assert current is not None, raw
        key, _, rest = line.strip().partition(" ")
        current.setdefault(key, []).append(rest)
    return sections


def routes(text: str) -> dict[int, tuple[str, list[tuple[str, str, int]]]]:
    """Frontend port -> (mode, [(server name, ip, port)]) through default_backend."""
    sections = parse(text)
    result = {}
    for title, body in sections.items():
        if not title.startswith("frontend "):
            continue
        port = int(body["bind"][0].rsplit(":", 1)[1])
        backend = sections[f"backend {body['default_backend'][0]}"]
        servers = []
        for line in backend.get("server", []):
            name, address, *_ = line.split()
            ip, server_port = address.rsplit(":", 1)
            servers.append((name, ip, int(server_port)))
        modes = {body.get("mode", ["tcp"])[0], backend.get("mode", ["tcp"])[0]}
        assert len(modes) == 1, f"frontend and backend modes differ on {port}: {modes}"
        result[port] = (modes.pop(), servers)
    return result


def ingress_problems(text: str, http_port: int, https_port: int) -> list[str]:
    """Everything wrong with a config's ingress frontends (lab B's seed had two of these)."""
    found = routes(text)
    problems = []
    for frontend, want in ((80, http_port), (443, https_port)):
        mode, servers = found[frontend]
        if mode != "tcp":
            problems.append(f"{frontend} runs in mode {mode}, not tcp")
        if not servers:
            problems.append(f"{frontend} has no servers")
        problems += [f"{frontend} goes to {name}:{port}, not the NodePort {want}"
                     for name, _, port in servers if port != want]
    return problems


def haproxy_check(ns: Netns, config: Path) -> subprocess.CompletedProcess[str]:
    return ns.run(["haproxy", "-c", "-f", config])


def names(servers: list[tuple[str, str, int]]) -> list[str]:
    return [name for name, _, _ in servers]


# --- structure -------------------------------------------------------------------------

def test_lab_a_routes() -> None:
    env = model("env/lab")
    path, text = rendered_config(env)
    assert path == "hosts/helper/haproxy/haproxy.cfg"
    found = routes(text)
    # the bootstrap node last, as a backup server (see test_api_pool_follows_readyz)
    control = ["master0", "master1", "master2", "bootstrap"]
    assert names(found[6443][1]) == control
    assert names(found[22623][1]) == control
    assert {p for _, _, p in found[22623][1]} == {22623}
    servers = [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]
    assert [line for line in servers if line.endswith(" backup")] == [
        "server bootstrap 192.168.20.150:6443 check check-ssl verify none inter 5s fall 3 rise 2"
        " backup", "server bootstrap 192.168.20.150:22623 check inter 1s backup"]
    api = parse(text)["backend api"]
    assert api["option"] == ["httpchk GET /readyz HTTP/1.0", "log-health-checks"]
    assert set(parse(text)["backend ingress-https"]["balance"]) == {"source"}
    assert names(found[80][1]) == ["worker0", "worker1"]
    assert names(found[443][1]) == ["worker0", "worker1"]
    assert {p for _, _, p in found[80][1]} == {80}
    assert {p for _, _, p in found[443][1]} == {443}
    assert ("192.168.20.150", 6443) in {(ip, p) for _, ip, p in found[6443][1]}
    assert all(mode == "tcp" for mode, _ in found.values())
    assert parse(text)["listen stats"]["bind"] == ["*:9000"]
    assert all(" check " in line for line in servers)


def test_lab_b_ingress_not_crossed() -> None:
    env = model("env/k8s-lab")
    path, text = rendered_config(env)
    assert path == "hosts/test-storage1/haproxy/haproxy.cfg"
    assert ingress_problems(text, 32334, 30570) == []
    found = routes(text)
    assert names(found[6443][1]) == ["test-master"]
    assert names(found[80][1]) == ["test-node1", "test-node2", "test-node3"]
    assert 22623 not in found  # no machine-config server outside OpenShift
    assert set(parse(text)["backend ingress-http"]["balance"]) == {"roundrobin"}


def test_crossing_check_catches_the_seed_config() -> None:
    """The check above fails on the seed's config: ports crossed and 443 in mode http."""
    _, text = rendered_config(model("env/k8s-lab"))
    crossed = text.replace(":32334 ", ":TMP ").replace(":30570 ", ":32334 ")
    crossed = crossed.replace(":TMP ", ":30570 ")
    assert len(ingress_problems(crossed, 32334, 30570)) == 6
    http443 = text.replace("frontend ingress-https\n    bind *:443\n    mode tcp",
                           "frontend ingress-https\n    bind *:443\n    mode http")
    with pytest.raises(AssertionError, match="modes differ"):
        ingress_problems(http443, 32334, 30570)


def test_ingress_goes_to_masters_without_workers(repo: Path) -> None:
    env_file = repo / "environments/lab/env.yaml"
    text = env_file.read_text()
    text = re.sub(r"  - \{name: worker\d.*\n", "", text)
    env_file.write_text(text)
    _, config = rendered_config(model("env/lab", repo))
    found = routes(config)
    assert names(found[80][1]) == ["master0", "master1", "master2"]
    assert names(found[443][1]) == ["master0", "master1", "master2"]


def test_no_haproxy_service_renders_nothing() -> None:
    env = model("env/lab")
    from dataclasses import replace
    bare = replace(env, services=replace(env.services, haproxy=None))
    assert haproxy.render(bare, Pins()) == {}


# --- the real checker and the real daemon ----------------------------------------------

@pytest.mark.daemons
@pytest.mark.parametrize("ref", ["env/lab", "env/k8s-lab"])
def test_haproxy_check_passes(ref: str, tmp_path: Path) -> None:
    _, text = rendered_config(model(ref))
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    with netns("hapc") as ns:
        result = haproxy_check(ns, config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.daemons
def test_haproxy_check_can_fail(tmp_path: Path) -> None:
    _, text = rendered_config(model("env/lab"))
    config = tmp_path / "haproxy.cfg"
    config.write_text(text.replace("balance roundrobin", "balance nosuchalgo", 1))
    with netns("hapc") as ns:
        assert haproxy_check(ns, config).returncode != 0


def start_backends(ns: Netns, specs: list[str]) -> None:
    proc = ns.popen([sys.executable, "-c", BACKEND, *specs], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")


def start_haproxy(ns: Netns, tmp_path: Path, text: str, port: int) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    proc = ns.popen(["haproxy", "-db", "-f", config], stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    # Backends listen on the same port numbers at node addresses: wait for the wildcard.
    deadline = time.monotonic() + 10
    while f"0.0.0.0:{port} " not in ns.run(["ss", "-ltn"]).stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            output = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"haproxy did not listen on *:{port}: {output}")
        time.sleep(0.05)


def ask(ns: Netns, port: int, host: str = "127.0.0.1") -> str:
    """Connect to host:port inside the namespace and return what the backend said."""
    script = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])),5);"
              "print(s.recv(100).decode().strip())")
    result = ns.run([sys.executable, "-c", script, host, str(port)], timeout=15)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@contextlib.contextmanager
def lab_network(env: Environment) -> Iterator[tuple[Netns, Netns]]:
    """(lb, nodes): the load-balancer host's namespace and one holding every other node's
    address, joined by a veth pair on the lab's own subnet. Nothing leaves the two."""
    lb_node = env.node(env.services.haproxy.host)  # type: ignore[union-attr]
    prefix = env.network(lb_node.nic.network).cidr.prefixlen
    others = [n for n in env.nodes if n.name != lb_node.name]
    with netns("lb") as lb, netns("nodes") as nodes:
        _, peer = lb.add_veth(nodes, f"{lb_node.ip}/{prefix}", f"{others[0].ip}/{prefix}")
        for node in others[1:]:
            nodes.run(["ip", "addr", "add", f"{node.ip}/{prefix}", "dev", peer], check=True)
        yield lb, nodes


def start_api_backends(ns: Netns, tmp_path: Path, nodes: tuple[Node, ...]) -> Path:
    """HTTPS API servers on the nodes' addresses, every /readyz on; returns the flag dir."""
    pem, flags = tmp_path / "api.pem", tmp_path / "ready"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=api", "-keyout", pem, "-out", pem], check=True,
                   capture_output=True)
    flags.mkdir()
    for node in nodes:
        (flags / node.name).touch()
    proc = ns.popen([sys.executable, "-c", READYZ_BACKEND, str(pem), str(flags),
                     *(f"{n.ip}:6443={n.name}" for n in nodes)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    return flags


def ask_api(ns: Netns) -> str:
    """Who answered https://127.0.0.1:6443/ through HAProxy ("" when nobody did)."""
    result = ns.run(["curl", "-sk", "--max-time", "5", "https://127.0.0.1:6443/"], timeout=15)
    return result.stdout.strip()


def server_states(ns: Netns, backend: str) -> dict[str, str]:
    """Server name -> UP/DOWN/... of one backend, from the stats page's CSV."""
    csv = ns.run(["curl", "-sf", "http://127.0.0.1:9000/;csv"]).stdout.splitlines()
    header = csv[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in csv[1:] if line]
    return {r["svname"]: r["status"] for r in rows
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}


def wait_states(ns: Netns, backend: str, want: dict[str, str], limit: float) -> float:
    """Seconds until the backend's servers reach `want`; fails after `limit` seconds."""
    start = time.monotonic()
    while (have := server_states(ns, backend)) != want:
        assert time.monotonic() - start < limit, f"{backend}: {have}, want {want}"
        time.sleep(0.25)
    return time.monotonic() - start


@pytest.mark.daemons
def test_haproxy_forwards_lab_a(tmp_path: Path) -> None:
    """Lab A as rendered: 6443 reaches the ready masters over a /readyz-checked pool, 22623
    every master in turn, 80/443 the workers."""
    env = model("env/lab")
    _, config = rendered_config(env)
    masters = env.nodes_with_role("master")
    specs = [f"{n.ip}:{port}={n.name}/{port}" for port in (22623, 80, 443)
             for n in env.nodes if n.role in ("bootstrap", "master", "worker")]
    with lab_network(env) as (lb, nodes):
        start_backends(nodes, specs)
        start_api_backends(nodes, tmp_path, env.nodes_with_role("bootstrap", "master"))
        start_haproxy(lb, tmp_path, config, 6443)
        up = {n.name: "UP" for n in env.nodes_with_role("bootstrap", "master")}
        wait_states(lb, "api", up, 30)
        assert {ask_api(lb) for _ in range(8)} == {n.name for n in masters}
        assert {ask(lb, 22623) for _ in range(8)} == {f"{n.name}/22623" for n in masters}
        assert {ask(lb, 80) for _ in range(4)} <= {"worker0/80", "worker1/80"}
        assert {ask(lb, 443) for _ in range(4)} <= {"worker0/443", "worker1/443"}
        stats = lb.run(["curl", "-sf", "http://127.0.0.1:9000/"])
        assert stats.returncode == 0 and "Statistics Report" in stats.stdout


@pytest.mark.daemons
def test_api_pool_follows_readyz(tmp_path: Path) -> None:
    """The docs' requirement, on the real daemon: a master whose /readyz fails leaves the API
    pool within 30 s; with no master ready, the bootstrap node (a backup server) answers;
    a master whose /readyz recovers joins again."""
    env = model("env/lab")
    _, config = rendered_config(env)
    masters = env.nodes_with_role("master")
    with lab_network(env) as (lb, nodes):
        flags = start_api_backends(nodes, tmp_path, env.nodes_with_role("bootstrap", "master"))
        start_haproxy(lb, tmp_path, config, 6443)
        up = {n.name: "UP" for n in env.nodes_with_role("bootstrap", "master")}
        wait_states(lb, "api", up, 30)
        for master in masters:
            (flags / master.name).unlink()
        down = {**up, **{m.name: "DOWN" for m in masters}}
        seconds = wait_states(lb, "api", down, 30)
        print(f"masters left the API pool {seconds:.1f} s after /readyz failed (limit 30 s)")
        assert {ask_api(lb) for _ in range(4)} == {"bootstrap"}
        (flags / masters[0].name).touch()
        wait_states(lb, "api", {**down, masters[0].name: "UP"}, 30)
        assert {ask_api(lb) for _ in range(4)} == {masters[0].name}


@pytest.mark.daemons
def test_lab_b_ports_reach_their_own_nodeport(tmp_path: Path) -> None:
    """Lab B as rendered: 80 must land on the http NodePort, 443 on the https one."""
    env = model("env/k8s-lab")
    _, config = rendered_config(env)
    workers = env.nodes_with_role("worker")
    specs = [f"{n.ip}:32334={n.name}/http-nodeport" for n in workers]
    specs += [f"{n.ip}:30570={n.name}/https-nodeport" for n in workers]
    with lab_network(env) as (lb, nodes):
        start_backends(nodes, specs)
        start_api_backends(nodes, tmp_path, env.nodes_with_role("master"))
        start_haproxy(lb, tmp_path, config, 443)
        wait_states(lb, "api", {"test-master": "UP"}, 30)
        http = {ask(lb, 80) for _ in range(6)}
        https = {ask(lb, 443) for _ in range(6)}
        assert http == {f"{n.name}/http-nodeport" for n in workers}
        assert https == {f"{n.name}/https-nodeport" for n in workers}
        assert ask_api(lb) == "test-master"


@pytest.mark.daemons
def test_ask_helper_sees_refused_connections() -> None:
    """The live tests can fail: nothing listening means the client reports an error."""
    with netns("hapr") as ns, pytest.raises(AssertionError):
        ask(ns, 6443)


# --- bad input -------------------------------------------------------------------------

def render_errors(repo: Path, env: str, old: str, new: str) -> list[str]:
    """Edit the scratch environment, run `gen render`, return its error lines (exit 1)."""
    path = repo / f"environments/{env}/env.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    result = subprocess.run([sys.executable, "-m", "generator", "render", f"env/{env}",
                             "--out", str(repo / "out")], cwd=repo, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 1, result.stderr
    return [line for line in result.stderr.splitlines()
            if line and not line.startswith("warning:")]


PORTS = "ingressNodePorts: {http: 32334, https: 30570}"


def test_crossed_node_ports_are_rejected(repo: Path) -> None:
    errors = render_errors(repo, "k8s-lab", PORTS, "ingressNodePorts: {http: 30570, https: 32334}")
    assert errors == [
        "environments/k8s-lab/env.yaml:44:23: at services.haproxy.ingressNodePorts: http 30570 "
        "and https 32334 are crossed: the ingress serves http on 32334 and https on 30570 "
        "(swap them: port 80 goes to the http NodePort)"]


@pytest.mark.parametrize(("new", "message"), [
    ("ingressNodePorts: {http: 32334, https: 32334}", "http and https both go to NodePort 32334"),
    ("ingressNodePorts: {http: 32334, https: 30571}",
     "ingress NodePorts differ from kubernetes.ingress.nodePorts (use http 32334 and https 30570)"),
    ("statsPort: 9000", "HAProxy does not know the ingress NodePorts"),
])
def test_bad_node_ports(repo: Path, new: str, message: str) -> None:
    errors = render_errors(repo, "k8s-lab", PORTS, new)
    assert len(errors) == 1 and message in errors[0], errors


def test_http_port_clash_on_the_helper(repo: Path) -> None:
    errors = render_errors(repo, "lab", "  nfs:\n", "  http:\n    port: 9000\n  nfs:\n")
    assert len(errors) == 1, errors
    assert "at services.http.port: HTTP port 9000 is taken by HAProxy on the same host" \
        in errors[0]
