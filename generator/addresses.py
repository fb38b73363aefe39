"""The one IP allocator: which address a NIC without `ip:` gets.

`expand` gives every such NIC the next free address of its network's `range:`, in node
order; `gen node add` writes the next free address for the new node. Both use this class, so
both skip the same addresses: a network's own and broadcast address, its gateway, DNS and NTP
servers, the DHCP pool (a static address there would be leased to another machine), the
load-balancer and OpenStack VIPs, every address a node has, and every address `expand` hands
out to the nodes without one.

Works on the document as written (a plain or ruamel mapping): `gen node add` runs before
validation, so a value that does not parse is skipped here and reported by validation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from generator.model import Address

Span = tuple[int, int]  # first and last address, as integers, inclusive


class Allocator:
    """Free addresses per network; `next` hands one out and marks it taken."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.ranged: dict[str, Span] = {}  # networks with a range:, what expand allocates from
        self.hosts: dict[str, Span] = {}  # every network's host addresses, by its cidr
        self.taken: set[int] = set()
        self.pools: list[Span] = []
        self.cursor: dict[str, int] = {}
        for net in _maps(data.get("networks")):
            self._add_network(net)
        for node in _maps(data.get("nodes")):
            self._take(*(nic.get("ip") for nic in _maps(node.get("nics"))))
        self._add_services(data)

    def _take(self, *values: Any) -> None:
        self.taken.update(number for number in map(_int, values) if number is not None)

    def _add_network(self, net: Mapping[str, Any]) -> None:
        name = str(net.get("name"))
        cidr = _network(net.get("cidr"))
        if cidr is not None:
            first, last = int(cidr.network_address), int(cidr.broadcast_address)
            if cidr.prefixlen < 31:  # /31 and /32 have no network or broadcast address
                self.taken.update((first, last))
                first, last = first + 1, last - 1
            self.hosts[name] = (first, last)
        span = net.get("range")
        if isinstance(span, Mapping):
            start, end = _int(span.get("start")), _int(span.get("end"))
            if start is not None and end is not None:
                self.ranged[name] = (start, end)
        self._take(net.get("gateway"), *_items(net.get("dns")), *_items(net.get("ntp")))

    def _add_services(self, data: Mapping[str, Any]) -> None:
        services = _map(data.get("services"))
        self._take(_map(services.get("haproxy")).get("address"),
                   _map(data.get("openstack")).get("internalVip"))
        pool = _map(services.get("dhcp")).get("pool")
        if isinstance(pool, Mapping):
            start, end = _int(pool.get("start")), _int(pool.get("end"))
            if start is not None and end is not None:
                self.pools.append((start, end))

    def next(self, network: str, start: IPv4Address | None = None,
             anywhere: bool = False) -> IPv4Address | None:
        """The first free address of `network`'s range (of all its host addresses when it
        has none, or `anywhere`) at or after `start`, wrapping round; None when none is free.
        Without `start`, the scan goes on where the last one stopped, else at the range."""
        span = (None if anywhere else self.ranged.get(network)) or self.hosts.get(network)
        if span is None:
            return None
        first, last = span
        ranged = self.ranged.get(network, span)
        begin = int(start) if start is not None else self.cursor.get(network, ranged[0])
        begin = begin if first <= begin <= last else first
        number = self._free(begin, last)
        number = number if number is not None else self._free(first, begin - 1)
        if number is None:
            return None
        self.taken.add(number)
        self.cursor[network] = number + 1
        return Address(number)  # keeps its text for the families, as expand's do

    def assign_unaddressed(self, data: Mapping[str, Any]) -> None:
        """Take what expand gives the NICs without `ip:` (node order), so a new static
        address never moves an existing node."""
        for node in _maps(data.get("nodes")):
            for nic in _maps(node.get("nics")):
                if not nic.get("ip") and str(nic.get("network")) in self.ranged:
                    self.next(str(nic.get("network")))

    def is_free(self, address: IPv4Address) -> bool:
        return int(address) not in self.taken and self._pool_end(int(address)) is None

    def _free(self, low: int, high: int) -> int | None:
        number = low
        while number <= high:
            pool_end = self._pool_end(number)
            if pool_end is not None:
                number = pool_end + 1  # skip a whole pool at once: a /8 pool is no loop
            elif number in self.taken:
                number += 1
            else:
                return number
        return None

    def _pool_end(self, number: int) -> int | None:
        return next((end for start, end in self.pools if start <= number <= end), None)


def _items(value: Any) -> Iterator[Any]:
    """The items of a list that may be missing or mistyped."""
    yield from value if isinstance(value, list) else ()


def _maps(value: Any) -> Iterator[Mapping[str, Any]]:
    yield from (item for item in _items(value) if isinstance(item, Mapping))


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    try:
        return int(IPv4Address(str(value))) if value else None
    except ValueError:
        return None


def _network(value: Any) -> IPv4Network | None:
    try:
        return IPv4Network(str(value), strict=False) if value else None
    except ValueError:
        return None
