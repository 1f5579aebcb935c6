"""Conntrack tuples and entries (struct nf_conntrack_tuple, struct nf_conn)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..packet import (IPPROTO_ICMP, IPPROTO_ICMPV6, IPAddress, IcmpHeader, Packet, TcpHeader,
                      UdpHeader)
from .defs import Dir, Status

# The reply type of each ICMP query type (nf_conntrack_proto_icmp.c invmap[])
ICMP_INVERSE_TYPE = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMP_NEW_TYPES = frozenset({8, 13, 15, 17})  # only these may create an entry
ICMPV6_INVERSE_TYPE = {128: 129, 129: 128, 139: 140, 140: 139}
ICMPV6_NEW_TYPES = frozenset({128, 139})


@dataclass(frozen=True, slots=True)
class ConnTuple:
    """One direction of a connection. For ICMP, `sport` holds the echo id and `dport`
    holds type << 8 | code, as the kernel keeps them in the tuple's src.u / dst.u."""

    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int = 0
    dport: int = 0

    @property
    def is_icmp(self) -> bool:
        return self.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6)

    @property
    def icmp_type(self) -> int:
        return self.dport >> 8

    @property
    def icmp_code(self) -> int:
        return self.dport & 0xFF

    @property
    def icmp_id(self) -> int:
        return self.sport

    def invert(self) -> "ConnTuple | None":
        """nf_ct_invert_tuple: swap addresses and ports; ICMP maps the query type to its
        reply type (None when the type has no inverse, like a lone echo reply)."""
        if self.is_icmp:
            inv = ICMP_INVERSE_TYPE if self.proto == IPPROTO_ICMP else ICMPV6_INVERSE_TYPE
            t = inv.get(self.icmp_type)
            if t is None:
                return None
            return ConnTuple(self.dst, self.src, self.proto, self.sport, (t << 8) | self.icmp_code)
        return ConnTuple(self.dst, self.src, self.proto, self.dport, self.sport)

    def with_src(self, addr: IPAddress, port: int | None = None) -> "ConnTuple":
        return ConnTuple(addr, self.dst, self.proto, self.sport if port is None else port, self.dport)

    def with_dst(self, addr: IPAddress, port: int | None = None) -> "ConnTuple":
        return ConnTuple(self.src, addr, self.proto, self.sport, self.dport if port is None else port)

    @property
    def has_ports(self) -> bool:
        return self.proto in (6, 17, 132, 33, 136)

    def __str__(self) -> str:
        if self.is_icmp:
            return (f"src={self.src} dst={self.dst} type={self.icmp_type} code={self.icmp_code} "
                    f"id={self.icmp_id}")
        if self.has_ports:
            return f"src={self.src} dst={self.dst} sport={self.sport} dport={self.dport}"
        return f"src={self.src} dst={self.dst}"


def tuple_of(pkt: Packet) -> ConnTuple:
    """nf_ct_get_tuple for the packet as it is now (after any rewriting so far)."""
    l4 = pkt.l4
    src, dst = intern_addr(pkt.src), intern_addr(pkt.dst)
    if isinstance(l4, (TcpHeader, UdpHeader)):
        return ConnTuple(src, dst, pkt.proto, l4.sport, l4.dport)
    if isinstance(l4, IcmpHeader):
        return ConnTuple(src, dst, pkt.proto, l4.id, (l4.type << 8) | l4.code)
    return ConnTuple(src, dst, pkt.proto)


_ids = itertools.count(1)

# Addresses repeat across flows (servers, NAT addresses): tuples share one object per address.
_ADDR_INTERN: dict = {}


def intern_addr(a):
    hit = _ADDR_INTERN.get(a)
    if hit is None:
        if len(_ADDR_INTERN) > 1_000_000:
            _ADDR_INTERN.clear()
        hit = _ADDR_INTERN[a] = a
    return hit


@dataclass(slots=True)
class DirCounters:
    packets: int = 0
    bytes: int = 0


@dataclass(eq=False, slots=True)
class ConntrackEntry:
    """struct nf_conn. `tuples[Dir.ORIGINAL]` / `tuples[Dir.REPLY]` are the two directions;
    NAT changes the reply tuple only (nf_nat_setup_info). Slotted and lazy (event cache,
    counters) because a table holds a million of these."""

    orig_tuple: ConnTuple
    reply_tuple: ConnTuple
    zone: int = 0
    status: Status = Status(0)
    mark: int = 0
    secmark: int = 0
    timeout: float = 0.0  # unconfirmed: relative seconds; confirmed: absolute expiry time
    created: float = 0.0
    id: int = field(default_factory=lambda: next(_ids))
    # per-protocol tracker state (TcpConntrack for TCP, None otherwise)
    proto_state: Any = None
    # opaque slot the NAT layer owns (conntrack never looks inside)
    nat: Any = None
    labels: int = 0
    # the CPU whose packet created the entry (races between CPUs)
    cpu: int = 0
    _counters: Any = None
    _ecache: Any = None

    @property
    def counters(self) -> tuple[DirCounters, DirCounters]:
        """Per-direction packet/byte counters (the acct extension), made on first use."""
        if self._counters is None:
            self._counters = (DirCounters(), DirCounters())
        return self._counters

    @counters.setter
    def counters(self, value) -> None:
        self._counters = value

    @property
    def ecache(self) -> set:
        """Event bits cached for delivery at the next confirm (nf_conntrack_event_cache):
        "NEW", "RELATED", "REPLY", "ASSURED", "PROTOINFO", "MARK", ..."""
        if self._ecache is None:
            self._ecache = set()
        return self._ecache

    @ecache.setter
    def ecache(self, value) -> None:
        self._ecache = value

    @property
    def has_events(self) -> bool:
        return bool(self._ecache)

    def tuple(self, d: Dir) -> ConnTuple:
        return self.orig_tuple if d is Dir.ORIGINAL else self.reply_tuple

    @property
    def proto(self) -> int:
        return self.orig_tuple.proto

    @property
    def confirmed(self) -> bool:
        return bool(self.status & Status.CONFIRMED)

    @property
    def assured(self) -> bool:
        return bool(self.status & Status.ASSURED)

    @property
    def seen_reply(self) -> bool:
        return bool(self.status & Status.SEEN_REPLY)

    def remaining(self, now: float) -> float:
        """Seconds left before expiry (the TIMEOUT column of conntrack -L)."""
        if not self.confirmed:
            return self.timeout
        return max(0.0, self.timeout - now)

    def __repr__(self) -> str:
        return f"<ct #{self.id} {self.orig_tuple} | {self.reply_tuple} {self.status!r}>"
