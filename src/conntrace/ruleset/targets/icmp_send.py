"""ICMP errors the host sends about a packet: net/ipv4/icmp.c __icmp_send, with its rate
limits. REJECT uses it; so can the packet path (TTL exceeded, port unreachable...).

Who gets no error at all: a frame that was a link-layer broadcast/multicast, a packet to a
broadcast/multicast address, a non-first fragment, an ICMP error (or unknown ICMP type),
no route back, and anything over the rate limits. Checked on 6.18 (REJECT in a namespace):
TOS = (tos & 0x1E) | 0xC0, TTL 64, no DF, source = the address toward the sender (or the
packet's own destination when it was for us), the original quoted up to 576 bytes in all,
6 errors in a burst to one peer then one a second.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...host.netdev import RouteType
from ...packet import (ICMP_DEST_UNREACH, IPPROTO_ICMP, IcmpHeader, IPAddress, Packet,
                       SkbMeta)

if TYPE_CHECKING:
    import random

    from ...host.host import Host

ICMP_FRAG_NEEDED = 4
NR_ICMP_TYPES = 18
# icmp_pointers[].error (net/ipv4/icmp.c)
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
IPTOS_TOS_MASK = 0x1E
IPTOS_PREC_INTERNETCONTROL = 0xC0
ICMP_QUOTE_LIMIT = 576  # "return as much as we can without exceeding 576 bytes"
INADDR_DUMMY = ipaddress.IPv4Address("192.0.0.8")
XRLIM_BURST_FACTOR = 6  # inet_peer_xrlim_allow: a peer may get 6 x icmp_ratelimit at once
NEW_PEER_AGE_MS = 60_000  # inet_getpeer: rate_last = jiffies - 60*HZ for a new peer


@dataclass
class IcmpRateState:
    """Per-netns ICMP rate limit state: inet_peer tokens per destination and the global
    icmp_msgs_per_sec bucket (net->ipv4.icmp_global_credit/stamp)."""

    peers: dict = field(default_factory=dict)  # addr -> [tokens_ms, last_ms]
    credit: int = 0
    stamp_ms: float | None = None


def rate_state(host: "Host") -> IcmpRateState:
    st = host.ext_state.icmp_rate
    if st is None:
        st = host.ext_state.icmp_rate = IcmpRateState()
    return st


def _masked(host: "Host", icmp_type: int, code: int) -> bool:
    """icmpv4_mask_allow inverted: True when the type is rate limited."""
    if icmp_type > NR_ICMP_TYPES:
        return False
    if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
        return False
    return bool((1 << icmp_type) & host.sysctls.get_int("net.ipv4.icmp_ratemask"))


def _global_allow(host: "Host", st: IcmpRateState, now_ms: float) -> bool:
    """icmp_global_allow: credit left, or a refill of msgs_per_sec x elapsed (at most one
    second's worth, only after 20 ms) capped at msgs_burst."""
    if st.credit > 0:
        return True
    delta = 1000.0 if st.stamp_ms is None else min(now_ms - st.stamp_ms, 1000.0)
    if delta < 1000.0 / 50:
        return False
    incr = int(host.sysctls.get_int("net.ipv4.icmp_msgs_per_sec") * delta / 1000.0)
    if incr == 0:
        return False
    st.stamp_ms = now_ms
    st.credit = min(st.credit + incr, host.sysctls.get_int("net.ipv4.icmp_msgs_burst"))
    return True


def _peer_allow(host: "Host", st: IcmpRateState, peer: IPAddress, now_ms: float) -> bool:
    """inet_peer_xrlim_allow with timeout = icmp_ratelimit (ms)."""
    timeout = host.sysctls.get_int("net.ipv4.icmp_ratelimit")
    tokens, last = st.peers.get(peer, (0.0, now_ms - NEW_PEER_AGE_MS))
    tokens = min(tokens + (now_ms - last), XRLIM_BURST_FACTOR * timeout)
    allowed = tokens >= timeout
    if allowed:
        tokens -= timeout
    st.peers[peer] = (tokens, now_ms)
    return allowed


def _is_link_broadcast(mac: str | None) -> bool:
    if not mac:
        return False
    try:
        return bool(int(mac.split(":")[0], 16) & 0x01)
    except ValueError:
        return False


def quoted_copy(pkt: Packet) -> Packet:
    """The offending packet as an ICMP error quotes it: headers as they are now, no skb
    metadata."""
    emb = pkt.snapshot()
    emb.meta = SkbMeta()
    emb.label = ""
    return emb


def icmp_error(host: "Host", pkt: Packet, icmp_type: int, code: int, *, now: float,
               rng: "random.Random", in_iface: str | None, input_route: bool,
               info: int = 0) -> tuple[Packet | None, str]:
    """__icmp_send for an IPv4 packet. Returns (the error packet, why) or (None, why not).

    input_route: the packet came in from a device (rt_is_input_route), as opposed to a
    locally generated one. `info` is the MTU for frag-needed."""
    if pkt.family != 4:
        return None, "ICMPv6 errors are not modelled"
    if _is_link_broadcast(pkt.meta.dst_mac):
        return None, "no ICMP error for a link-layer broadcast/multicast frame"
    if host.addr_type(pkt.dst) in (RouteType.BROADCAST, RouteType.MULTICAST):
        return None, "no ICMP error for a packet to a broadcast/multicast address"
    if pkt.is_fragment:
        return None, "no ICMP error for a non-first fragment"
    if icmp_type in ICMP_ERROR_TYPES and pkt.proto == IPPROTO_ICMP:
        inner = pkt.l4
        if not isinstance(inner, IcmpHeader):
            return None, "no ICMP error: the ICMP header of the packet is missing"
        if inner.type > NR_ICMP_TYPES or inner.type in ICMP_ERROR_TYPES:
            return None, "no ICMP error in reply to an ICMP error"
    st = rate_state(host)
    now_ms = now * 1000.0
    limited = _masked(host, icmp_type, code)
    if limited and in_iface != "lo" and not _global_allow(host, st, now_ms):
        return None, "global ICMP rate limit (icmp_msgs_per_sec) reached"
    # source address: the packet's destination when it was for us, else chosen by routing
    saddr: IPAddress | None = None
    if host.addr_type(pkt.dst) is RouteType.LOCAL:
        saddr = pkt.dst
    elif input_route and host.sysctls.get_int("net.ipv4.icmp_errors_use_inbound_ifaddr"):
        saddr = host.devices.select_source(in_iface, pkt.src)
    route = host.devices.lookup(pkt.src)
    if route.type not in (RouteType.UNICAST, RouteType.LOCAL):
        return None, f"no ICMP error: no route back to {pkt.src} ({route.type.name.lower()})"
    if saddr is None:
        saddr = route.src or INADDR_DUMMY
    out_dev = route.dev
    if limited and out_dev != "lo" and not _peer_allow(host, st, pkt.src, now_ms):
        return None, f"ICMP rate limit for {pkt.src} (icmp_ratelimit) reached"
    if limited:
        st.credit -= rng.randrange(3)  # icmp_global_consume: 0-2 credits, 1 on average
    dev = host.interfaces.get(out_dev or "")
    room = min(dev.mtu if dev is not None else ICMP_QUOTE_LIMIT, ICMP_QUOTE_LIMIT) - 20 - 8
    if room <= 20:
        return None, "no ICMP error: the route MTU is too small"
    tos = pkt.tos
    if icmp_type in ICMP_ERROR_TYPES:
        tos = (pkt.tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
    mark = pkt.meta.mark if host.sysctls.get_int("net.ipv4.fwmark_reflect") else 0
    emb = quoted_copy(pkt)
    err = Packet(
        src=saddr, dst=pkt.src, proto=IPPROTO_ICMP,
        l4=IcmpHeader(type=icmp_type, code=code, embedded=emb,
                      quoted_len=min(emb.total_len, room),
                      mtu=info if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED else 0),
        ttl=host.sysctls.get_int("net.ipv4.ip_default_ttl"), tos=tos,
        ip_id=rng.randrange(65536), df=False,  # the ICMP socket does not set DF
        meta=SkbMeta(mark=mark, sock_no_file=True))  # sent through the icmp control socket
    return err, f"ICMP type {icmp_type} code {code} from {saddr} to {pkt.src}"
