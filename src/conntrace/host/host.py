"""One network namespace: devices, routes, sysctls, sockets, ruleset and conntrack table."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..packet import IPAddress
from .extstate import ExtState
from .netdev import NetDevices
from .sysctl import Sysctls

if TYPE_CHECKING:
    from ..ruleset.model import Ruleset


@dataclass
class Socket:
    """A socket as netfilter sees it: owner for `-m owner`, address for TPROXY/socket
    lookups and for the endpoints of scenarios."""

    proto: int  # 6 or 17
    addr: IPAddress | None  # None: bound to any address (0.0.0.0)
    port: int
    uid: int = 0
    gid: int = 0
    supplementary_gids: tuple[int, ...] = ()
    listening: bool = True
    transparent: bool = False  # IP_TRANSPARENT (needed for TPROXY to non-local addresses)
    echo: bool = True  # scenario servers echo what they receive
    # connected sockets: the peer
    peer_addr: IPAddress | None = None
    peer_port: int | None = None
    name: str = ""

    def matches_local(self, addr: IPAddress, port: int) -> bool:
        return self.port == port and (self.addr is None or self.addr == addr)


class SocketTable:
    """Sockets indexed like the kernel's hash tables: connected sockets by their 4-tuple,
    listeners by port."""

    def __init__(self) -> None:
        self._established: dict[tuple, Socket] = {}
        self._listeners: dict[tuple[int, int], list[Socket]] = {}

    @property
    def sockets(self) -> list[Socket]:
        out = [s for lst in self._listeners.values() for s in lst]
        return out + list(self._established.values())

    @staticmethod
    def _key(s: Socket) -> tuple:
        return (s.proto, s.addr, s.port, s.peer_addr, s.peer_port)

    def add(self, sock: Socket) -> Socket:
        if sock.listening:
            self._listeners.setdefault((sock.proto, sock.port), []).append(sock)
        else:
            self._established[self._key(sock)] = sock
        return sock

    def remove(self, sock: Socket) -> None:
        if sock.listening:
            lst = self._listeners.get((sock.proto, sock.port), [])
            if sock in lst:
                lst.remove(sock)
        elif self._established.get(self._key(sock)) is sock:
            del self._established[self._key(sock)]

    def lookup_established(self, proto: int, saddr: IPAddress, sport: int, daddr: IPAddress,
                           dport: int) -> Socket | None:
        """A connected socket whose local end is daddr:dport and peer saddr:sport."""
        return self._established.get((proto, daddr, dport, saddr, sport))

    def lookup_listener(self, proto: int, daddr: IPAddress, dport: int) -> Socket | None:
        """A listening (TCP) or bound (UDP) socket for daddr:dport; a specific address wins
        over a wildcard bind, as in the kernel's lookup scoring."""
        best = None
        for s in self._listeners.get((proto, dport), ()):
            if s.matches_local(daddr, dport):
                if s.addr is not None:
                    return s
                best = best or s
        return best


class Host:
    """A network namespace. The packet path through it lives in `netfilter.stack`."""

    def __init__(self, name: str = "host", *, sysctls: Sysctls | None = None,
                 seed: int = 0) -> None:
        self.name = name
        self.devices = NetDevices()
        self.sysctls = sysctls or Sysctls()
        self.sockets = SocketTable()
        self.ext_state = ExtState()
        self.ruleset: "Ruleset | None" = None
        self.ruleset6: "Ruleset | None" = None
        self.rng = random.Random(seed)
        # The conntrack table is attached by conntrack.table.ConntrackTable(host); it stays
        # switched off until something needs it (nf_ct_netns_get is per netns).
        self.conntrack: Any = None
        self.conntrack_enabled = False
        # The packet path (netfilter.stack.NetfilterStack), attached by netfilter.stack.attach
        self.stack: Any = None
        # conntrack events: kept on the table, and/or handed to these callables (CtEvent)
        self.record_ct_events = True
        self.ct_event_listeners: list = []
        # Free-form notes on assumptions the model made for this host (printed by `trace`).
        self.assumptions: list[str] = []

    # convenience passthroughs used by matches and targets
    @property
    def interfaces(self):
        return self.devices.interfaces

    def addr_type(self, addr: IPAddress, dev: str | None = None):
        return self.devices.addr_type(addr, dev)

    def is_local(self, addr: IPAddress) -> bool:
        return self.devices.is_local(addr)

    def __repr__(self) -> str:
        return f"<Host {self.name}>"
