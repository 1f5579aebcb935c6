"""The ICMP and ICMPv6 trackers, and the RELATED lookup of ICMP errors.

Kernel: net/netfilter/nf_conntrack_proto_icmp.c (icmp_pkt_to_tuple, nf_conntrack_icmp_packet,
nf_conntrack_inet_error, nf_conntrack_icmpv4_error), nf_conntrack_proto_icmpv6.c.

Queries (echo, timestamp, info, address mask) are tracked like a tiny connection: tuple
(type, code, id), the reply tuple carries the reply type; 30 s, refreshed by every packet,
never ASSURED, not deleted by the reply. Only requests create entries: a lone echo reply
is INVALID.

ICMP *errors* never create or refresh entries. The core handles them before the normal
lookup (nf_conntrack_handle_icmp), in this order:

1. ``tracker.error(pkt, env)``: header problems -> INVALID (stats: ``error``).
2. ``is_icmp_error(pkt)``: if False the packet is a query and follows the normal path.
3. ``icmp_error_related(pkt, lookup)``: takes the embedded header's tuple, inverts it
   (``icmp_error_inner_tuple``) and looks it up. ``lookup(tuple)`` must return the entry and
   the direction whose tuple matched (a confirmed entry, in the packet's zone), or None.
   The result is ``(ct, ctinfo)`` -- RELATED when the inner tuple matched the original
   direction's tuple, RELATED_REPLY when it matched the reply tuple -- or an 'invalid'
   L4Result (stats: ``error``): no match, or the outer destination differs from the matched
   tuple's destination ("outer daddr A != inner B", a forged error).
The error gets the entry attached but the tracker's packet() is not called: no refresh,
no state change, no SEEN_REPLY.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..packet import (ICMP_ERROR_TYPES, IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpHeader, Packet,
                      TcpHeader, UdpHeader)
from .defs import CtInfo, Dir
from .entry import ICMP_NEW_TYPES, ICMPV6_NEW_TYPES, ConnTuple, tuple_of
from .l4 import L4Result, TrackEnv, invalid

if TYPE_CHECKING:
    from .entry import ConntrackEntry

NR_ICMP_TYPES = 18  # include/uapi/linux/icmp.h: higher types are "a mystery"
# ICMPv6 types conntrack leaves untracked (nf_conntrack_proto_icmpv6.c noct_valid_new):
# MLD query/report/done, router/neighbour solicitation/advertisement, MLDv2 report.
ICMPV6_NOCT_TYPES = frozenset({130, 131, 132, 133, 134, 135, 136, 143})
# Protocols whose tuple needs the first bytes of the L4 header (ports).
_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})


class IcmpTracker:
    def __init__(self, proto: int):
        self.proto = proto
        self.v6 = proto == IPPROTO_ICMPV6
        self.name = "icmpv6" if self.v6 else "icmp"
        self._new_types = ICMPV6_NEW_TYPES if self.v6 else ICMP_NEW_TYPES
        self._timeout = ("nf_conntrack_icmpv6_timeout" if self.v6
                         else "nf_conntrack_icmp_timeout")

    def new(self, ct: "ConntrackEntry", pkt: Packet, env: TrackEnv) -> L4Result | None:
        t = ct.orig_tuple.icmp_type
        if t in self._new_types:
            return None
        # ICMPv6 logs the refusal; ICMPv4 only has a pr_debug
        return invalid(f"invalid new with type {t}" if self.v6 else None)

    def packet(self, ct: "ConntrackEntry", pkt: Packet, ctinfo: CtInfo,
               env: TrackEnv) -> L4Result:
        return L4Result("accept", timeout=self.timeout_for(ct, env))

    def error(self, pkt: Packet, env: TrackEnv) -> L4Result | None:
        icmp = pkt.l4
        if not isinstance(icmp, IcmpHeader):
            return invalid("short packet", count_error=True)
        if env.checksum_checked and pkt.bad_l4_checksum:
            msg = "ICMPv6 checksum failed" if self.v6 else "bad hw icmp checksum"
            return invalid(msg, count_error=True)
        if self.v6:
            if icmp.type in ICMPV6_NOCT_TYPES:
                return L4Result("untracked")
        elif icmp.type > NR_ICMP_TYPES:
            return invalid("invalid icmp type", count_error=True)
        return None

    def timeout_for(self, ct: "ConntrackEntry", env: TrackEnv) -> float:
        return float(env.sysctl(self._timeout))

    def state_name(self, ct: "ConntrackEntry") -> str | None:
        return None


ICMP = IcmpTracker(IPPROTO_ICMP)
ICMPV6 = IcmpTracker(IPPROTO_ICMPV6)


def is_icmp_error(pkt: Packet) -> bool:
    """icmp_is_err() for ICMP; every ICMPv6 type below 128 is an error."""
    icmp = pkt.icmp
    if icmp is None:
        return False
    if pkt.proto == IPPROTO_ICMPV6:
        return icmp.type < 128
    return pkt.proto == IPPROTO_ICMP and icmp.type in ICMP_ERROR_TYPES


def icmp_error_inner_tuple(pkt: Packet) -> ConnTuple | None:
    """The tuple the kernel looks up for an ICMP error: the embedded header's tuple,
    inverted (the embedded packet travelled the other way). None when the embedded header
    is missing or too short, or has no inverse (an embedded error or lone reply type
    without a query counterpart)."""
    icmp = pkt.icmp
    emb = icmp.embedded if icmp is not None else None
    if emb is None:
        return None
    if emb.proto in _PORT_PROTOS and not isinstance(emb.l4, (TcpHeader, UdpHeader)):
        return None
    if emb.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and not isinstance(emb.l4, IcmpHeader):
        return None
    return tuple_of(emb).invert()


def icmp_error_ctinfo(matched: Dir) -> CtInfo:
    """RELATED when the inverted inner tuple is the entry's original tuple, else
    RELATED_REPLY (the error travels in the reply direction)."""
    return CtInfo.RELATED_REPLY if matched is Dir.REPLY else CtInfo.RELATED


def icmp_error_daddr_mismatch(pkt: Packet, ct: "ConntrackEntry", matched: Dir) -> str | None:
    """The log text when the outer destination is not the matched tuple's destination
    (a bogus error towards a third host), else None."""
    ct_daddr = ct.tuple(matched).dst
    if pkt.dst == ct_daddr:
        return None
    if pkt.family == 6:  # %pI6: the full, uncompressed form
        return f"outer daddr {pkt.dst.exploded} != inner {ct_daddr.exploded}"
    return f"outer daddr {pkt.dst} != inner {ct_daddr}"


Lookup = Callable[[ConnTuple], "tuple[ConntrackEntry, Dir] | None"]


def icmp_error_related(pkt: Packet, lookup: Lookup) -> "tuple[ConntrackEntry, CtInfo] | L4Result":
    """nf_conntrack_inet_error: the entry and ctinfo an ICMP error belongs to, or an
    'invalid' result (stats: error)."""
    inner = icmp_error_inner_tuple(pkt)
    if inner is None:
        return invalid(None, count_error=True)
    found = lookup(inner)
    if found is None:
        return invalid(None, count_error=True)
    ct, matched = found
    msg = icmp_error_daddr_mismatch(pkt, ct, matched)
    if msg is not None:
        return invalid(msg, count_error=True)
    return ct, icmp_error_ctinfo(matched)
