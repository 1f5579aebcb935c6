"""Interfaces, addresses, routes and the address classes the kernel derives from them.

The kernel keeps local/broadcast addresses in the `local` routing table (fib_add_ifaddr in
net/ipv4/fib_frontend.c). `addrtype` and the input routing decision consult it first.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from ..errors import InputError
from ..packet import IPAddress


_V4_ANY = ipaddress.IPv4Address("0.0.0.0")
_V4_BCAST = ipaddress.IPv4Address("255.255.255.255")


class RouteType(Enum):
    """RTN_* (include/uapi/linux/rtnetlink.h); `addrtype` names them without the prefix."""

    UNSPEC = 0
    UNICAST = 1
    LOCAL = 2
    BROADCAST = 3
    ANYCAST = 4
    MULTICAST = 5
    BLACKHOLE = 6
    UNREACHABLE = 7
    PROHIBIT = 8
    THROW = 9
    NAT = 10
    XRESOLVE = 11


@dataclass
class Interface:
    name: str
    mac: str = "00:00:00:00:00:00"
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = field(default_factory=list)
    ifindex: int = 0
    mtu: int = 1500
    up: bool = True

    @property
    def primary_v4(self) -> ipaddress.IPv4Address | None:
        """The first IPv4 address: REDIRECT in PREROUTING uses it (nf_nat_redirect.c)."""
        for a in self.addresses:
            if a.version == 4:
                return a.ip
        return None


@dataclass
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    dev: str | None = None
    via: IPAddress | None = None
    src: IPAddress | None = None  # preferred source (`src` in `ip route`)
    type: RouteType = RouteType.UNICAST
    metric: int = 0
    table: str = "main"
    scope: str | None = None
    proto: str | None = None

    def describe(self) -> str:
        parts = [self.type.name.lower()] if self.type is not RouteType.UNICAST else []
        parts.append("default" if self.dst.prefixlen == 0 else str(self.dst))
        if self.via:
            parts += ["via", str(self.via)]
        if self.dev:
            parts += ["dev", self.dev]
        if self.src:
            parts += ["src", str(self.src)]
        return " ".join(parts)


@dataclass(frozen=True)
class RouteResult:
    """The outcome of a route lookup for one packet."""

    type: RouteType
    dev: str | None = None
    gateway: IPAddress | None = None
    src: IPAddress | None = None  # the source address the kernel would choose
    route: Route | None = None


class NetDevices:
    """Interfaces and routing tables of one network namespace."""

    def __init__(self) -> None:
        self.interfaces: dict[str, Interface] = {}
        self.routes: list[Route] = []  # main table, as configured
        self._next_ifindex = 1
        self._cache: dict[str, list[Route]] = {}
        self.add_interface(Interface(name="lo", mac="00:00:00:00:00:00",
                                     addresses=[ipaddress.ip_interface("127.0.0.1/8")],
                                     mtu=65536))

    # -- configuration --------------------------------------------------------------------
    def changed(self) -> None:
        """Call after changing interfaces or addresses in place: derived tables are cached."""
        self._cache.clear()

    def add_interface(self, iface: Interface) -> Interface:
        if iface.name in self.interfaces and iface.name != "lo":
            raise InputError(f"interface '{iface.name}' is defined twice")
        if iface.name == "lo" and "lo" in self.interfaces:
            lo = self.interfaces["lo"]
            for a in iface.addresses:
                if a not in lo.addresses:
                    lo.addresses.append(a)
            self.changed()
            return lo
        iface.ifindex = self._next_ifindex
        self._next_ifindex += 1
        self.interfaces[iface.name] = iface
        self.changed()
        return iface

    def add_route(self, route: Route) -> None:
        if route.dev is not None and route.dev not in self.interfaces:
            raise InputError(f"route '{route.describe()}' uses unknown interface '{route.dev}'")
        self.routes.append(route)
        self.changed()

    # -- the local table (what the kernel derives from addresses) -------------------------
    def local_table(self) -> list[Route]:
        cached = self._cache.get("local")
        if cached is not None:
            return cached
        out: list[Route] = []
        for iface in self.interfaces.values():
            if not iface.up:
                continue
            for a in iface.addresses:
                if a.version != 4:
                    out.append(Route(dst=ipaddress.ip_network(f"{a.ip}/128"), dev=iface.name,
                                     type=RouteType.LOCAL, table="local", src=a.ip))
                    continue
                if iface.name == "lo" and a.network.prefixlen < 32:
                    # lo's whole 127/8 is local (fib_add_ifaddr adds the prefix as LOCAL on lo)
                    out.append(Route(dst=a.network, dev="lo", type=RouteType.LOCAL,
                                     table="local", src=a.ip))
                out.append(Route(dst=ipaddress.ip_network(f"{a.ip}/32"), dev=iface.name,
                                 type=RouteType.LOCAL, table="local", src=a.ip))
                if a.network.prefixlen < 31:
                    out.append(Route(dst=ipaddress.ip_network(f"{a.network.broadcast_address}/32"),
                                     dev=iface.name, type=RouteType.BROADCAST, table="local",
                                     src=a.ip))
        self._cache["local"] = out
        return out

    def connected_routes(self) -> list[Route]:
        cached = self._cache.get("connected")
        if cached is not None:
            return cached
        out = []
        for iface in self.interfaces.values():
            if not iface.up or iface.name == "lo":
                continue
            for a in iface.addresses:
                if a.version == 4 and a.network.prefixlen < 32:
                    out.append(Route(dst=a.network, dev=iface.name, src=a.ip, scope="link",
                                     proto="kernel"))
        self._cache["connected"] = out
        return out

    def is_local(self, addr: IPAddress) -> bool:
        return self.addr_type(addr) is RouteType.LOCAL

    def addr_type(self, addr: IPAddress, dev: str | None = None) -> RouteType:
        """inet_dev_addr_type (net/ipv4/fib_frontend.c): only the local table is consulted;
        anything not found there is UNICAST. With `dev`, a local/broadcast route on another
        device does not count (addrtype --limit-iface-in/out)."""
        if addr.version == 4:
            if addr == _V4_ANY or addr == _V4_BCAST:
                return RouteType.BROADCAST
            if addr.is_multicast:
                return RouteType.MULTICAST
        else:
            if addr.is_multicast:
                return RouteType.MULTICAST
        best: Route | None = None
        for r in self.local_table():
            if addr.version == r.dst.version and addr in r.dst:
                if best is None or r.dst.prefixlen > best.dst.prefixlen:
                    best = r
        if best is None:
            return RouteType.UNICAST
        if dev is not None and best.dev != dev:
            return RouteType.UNICAST
        return best.type

    # -- route lookup ---------------------------------------------------------------------
    def lookup(self, dst: IPAddress) -> RouteResult:
        """fib_lookup: local table first, then main (connected + configured routes)."""
        t = self.addr_type(dst)
        if t in (RouteType.LOCAL, RouteType.BROADCAST):
            dev = "lo" if t is RouteType.LOCAL else None
            for r in self.local_table():
                if dst in r.dst and r.type is t:
                    dev = "lo" if t is RouteType.LOCAL else r.dev
                    return RouteResult(type=t, dev=dev, src=dst if t is RouteType.LOCAL else r.src,
                                       route=r)
            return RouteResult(type=t, dev=dev)
        best: Route | None = None
        for r in self.connected_routes() + self.routes:
            if r.dst.version != dst.version or dst not in r.dst:
                continue
            if best is None or r.dst.prefixlen > best.dst.prefixlen or (
                    r.dst.prefixlen == best.dst.prefixlen and r.metric < best.metric):
                best = r
        if best is None:
            return RouteResult(type=RouteType.UNREACHABLE)
        if best.type is not RouteType.UNICAST:
            return RouteResult(type=best.type, route=best)
        dev = best.dev
        if dev is None and best.via is not None:
            # `via GW` without `dev`: the device is the one GW is directly reachable on
            for r in self.connected_routes():
                if best.via.version == r.dst.version and best.via in r.dst:
                    dev = r.dev
                    break
            else:
                return RouteResult(type=RouteType.UNREACHABLE, route=best)
        src = best.src or self.select_source(dev, best.via or dst)
        return RouteResult(type=RouteType.UNICAST, dev=dev, gateway=best.via, src=src,
                           route=best)

    def select_source(self, dev: str | None, target: IPAddress) -> IPAddress | None:
        """inet_select_addr(dev, dst, RT_SCOPE_UNIVERSE): the first primary address of the
        device in the target's subnet, else the device's first address, else any address
        of another device (MASQUERADE and local output both use this)."""
        iface = self.interfaces.get(dev or "")
        if iface is not None:
            v4 = [a for a in iface.addresses if a.version == target.version]
            for a in v4:
                if target in a.network:
                    return a.ip
            if v4:
                return v4[0].ip
        for other in self.interfaces.values():
            if other.name == "lo":
                continue
            for a in other.addresses:
                if a.version == target.version:
                    return a.ip
        return None
