"""HAProxy on the load-balancer host: the API, the machine-config server and the ingress.

One `haproxy.cfg` under `hosts/<haproxy host>/haproxy/`. Everything is layer 4 (`mode tcp`):
TLS to the API and to the routers/ingress controller passes through untouched. Servers are
IP addresses, so neither `haproxy -c` nor a restart ever depends on DNS.

Backends by flavour:
- OpenShift/OKD (lab A): 6443 and 22623 -> bootstrap + masters; 80 and 443 -> the workers'
  routers (the masters when there are no workers).
- kubeadm (lab B): 6443 -> the control planes; 80 and 443 -> the workers' ingress NodePorts
  (`services.haproxy.ingressNodePorts`), http to http and https to https, never crossed.

Health checks follow the OpenShift 4.16 UPI load-balancer requirements
(docs/requirements-openshift.md): the API servers are probed over HTTPS on `/readyz`
(`API_CHECK`: every 5 s, 2 successes to join, 3 failures to leave, so a server whose
`/readyz` fails leaves the pool within 3 x 5 s = 15 s, inside the required 30 s; the probe's
own connect and read timeouts are capped at `API_CHECK_TIMEOUT`); the other backends get a
TCP check every second. On OpenShift the bootstrap node is a `backup` server: it takes API
and machine-config traffic only while no master is up, and drops out of the way as soon as
the masters answer. The ingress is balanced by source address, the persistence the docs
recommend for routers.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.families import escape
from generator.families.common import COREOS_FLAVOURS, retired
from generator.model import Environment, HaproxyService, Node
from generator.tree import Tree, lines

API_PORT = 6443
MACHINE_CONFIG_PORT = 22623
HTTP_PORT = 80
HTTPS_PORT = 443
API_CHECK = "check check-ssl verify none inter 5s fall 3 rise 2"
API_CHECK_TIMEOUT = "5s"
TCP_CHECK = "check inter 1s"


@dataclass(frozen=True, slots=True)
class Proxy:
    """One TCP frontend and the servers behind it."""

    name: str
    port: int  # where HAProxy listens
    nodes: tuple[Node, ...]
    server_port: int  # where the servers listen
    comment: str
    backups: tuple[Node, ...] = ()  # used only while every node of `nodes` is down
    readyz: bool = False  # probe the servers over HTTPS on /readyz (a Kubernetes API)
    balance: str | None = None  # None: services.haproxy.balance


def render(env: Environment, pins: object) -> Tree:
    """`hosts/<host>/haproxy/haproxy.cfg`, or nothing without services.haproxy."""
    service = env.services.haproxy
    if service is None:
        return {}
    return {f"hosts/{service.host}/haproxy/haproxy.cfg": config(env, service)}


def proxies(env: Environment, service: HaproxyService) -> tuple[Proxy, ...]:
    """The frontends of this environment, in a stable order."""
    masters = env.nodes_with_role("master")
    ingress = env.nodes_with_role("worker") or masters
    if env.cluster.flavour in COREOS_FLAVOURS:
        bootstrap = tuple(n for n in env.nodes_with_role("bootstrap") if not retired(env, n))
        return (
            Proxy("api", API_PORT, masters, API_PORT,
                  "Kubernetes API: masters, bootstrap while no master is ready",
                  backups=bootstrap, readyz=True),
            Proxy("machine-config", MACHINE_CONFIG_PORT, masters, MACHINE_CONFIG_PORT,
                  "machine-config server: masters, bootstrap while no master is up",
                  backups=bootstrap),
            Proxy("ingress-http", HTTP_PORT, ingress, service.ingress_http_port,
                  "ingress http: routers", balance="source"),
            Proxy("ingress-https", HTTPS_PORT, ingress, service.ingress_https_port,
                  "ingress https: routers, TLS passed through", balance="source"),
        )
    return (
        Proxy("api", API_PORT, masters, API_PORT, "Kubernetes API: control planes",
              readyz=True),
        Proxy("ingress-http", HTTP_PORT, ingress, service.ingress_http_port,
              "ingress http -> the http NodePort"),
        Proxy("ingress-https", HTTPS_PORT, ingress, service.ingress_https_port,
              "ingress https -> the https NodePort, TLS passed through"),
    )


def config(env: Environment, service: HaproxyService) -> bytes:
    """The whole haproxy.cfg."""
    parts = [*_header(env), *_global(), *_defaults(), *_stats(service)]
    balance = escape.haproxy_word(service.balance, ("services", "haproxy", "balance"))
    for key, port in (("statsPort", service.stats_port),
                      ("ingressNodePorts", service.ingress_http_port),
                      ("ingressNodePorts", service.ingress_https_port)):
        escape.number(port, ("services", "haproxy", key), "an HAProxy config")
    index = {n.name: i for i, n in enumerate(env.nodes)}
    # A node serves in up to four proxies: its name is checked, and its `server` words
    # written, once.
    servers: dict[str, str] = {}
    for proxy in proxies(env, service):
        for node in (*proxy.nodes, *proxy.backups):
            if node.name not in servers:
                escape.haproxy_word(node.name, ("nodes", index[node.name], "name"))
                servers[node.name] = f"    server {node.name} {str(node.ip)}:"
        parts += _proxy(proxy, balance, servers)
    return lines(*parts)


def _header(env: Environment) -> list[str]:
    name = escape.comment(env.name, None, "an HAProxy comment")
    return [f"# Rendered by gen for environment {name}; do not edit by hand.", ""]


def _global() -> list[str]:
    # Logs go to stdout: the journal under systemd, the terminal in the foreground.
    return ["global",
            "    log stdout format raw local0 info",
            "    maxconn 4096",  # needs ~2 fds per connection; must fit the hard open-files limit
            "    user haproxy",
            "    group haproxy",
            ""]


def _defaults() -> list[str]:
    return ["defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    option dontlognull",
            "    retries 3",
            "    timeout connect 10s",
            "    timeout client 1m",
            "    timeout server 1m",
            "    timeout check 10s",
            ""]


def _stats(service: HaproxyService) -> list[str]:
    return ["listen stats",
            f"    bind *:{service.stats_port}",
            "    mode http",
            "    stats enable",
            "    stats uri /",
            "    stats refresh 10s",
            ""]


def _proxy(proxy: Proxy, balance: str, servers: dict[str, str]) -> list[str]:
    """A frontend and its backend; `servers`: each node's `    server <name> <ip>:`."""
    out = [f"# {proxy.comment}",
           f"frontend {proxy.name}",
           f"    bind *:{proxy.port}",
           "    mode tcp",
           f"    default_backend {proxy.name}",
           "",
           f"backend {proxy.name}",
           "    mode tcp",
           f"    balance {proxy.balance or balance}"]
    check = TCP_CHECK
    if proxy.readyz:
        # An HTTP probe inside a TCP proxy: the traffic stays layer 4, only the check speaks
        # HTTPS (the API's certificate is the cluster's own CA's, hence verify none).
        out += ["    option httpchk GET /readyz HTTP/1.0",
                "    http-check expect status 200",
                "    option log-health-checks",
                f"    timeout check {API_CHECK_TIMEOUT}"]
        check = API_CHECK
    port_check = f"{proxy.server_port} {check}"
    out += [servers[n.name] + port_check for n in proxy.nodes]
    out += [f"{servers[n.name]}{port_check} backup" for n in proxy.backups]
    return [*out, ""]
