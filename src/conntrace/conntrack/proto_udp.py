"""The UDP and UDP-Lite trackers (net/netfilter/nf_conntrack_proto_udp.c, Linux 6.12/6.18).

- Unreplied entries live nf_conntrack_udp_timeout (30 s); every packet refreshes.
- Once SEEN_REPLY is set (by the core, after the first reply was handled), a packet more than
  2 s after the entry was created refreshes to nf_conntrack_udp_timeout_stream (120 s) and
  sets ASSURED; earlier packets still refresh to 30 s and do not assure.
- NAT_CLASH entries (clash resolution) are refreshed but never become ASSURED.
- Header errors (error()): no complete header ("short packet"), or a bad checksum in
  PREROUTING when nf_conntrack_checksum=1. A zero checksum means "none" and is never checked.
  The kernel's "truncated/malformed packet" (length field vs. packet) cannot occur in the
  model: packets have no separate UDP length field.
UDP-Lite uses the same logic and the UDP timeouts; its checksum-coverage checks are not
modelled (the model has no coverage field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..packet import Packet, UdpHeader
from .defs import CtInfo, Status
from .l4 import L4Result, TrackEnv, invalid

if TYPE_CHECKING:
    from .entry import ConntrackEntry

UDP_TIMEOUT_SYSCTL = "nf_conntrack_udp_timeout"
UDP_STREAM_TIMEOUT_SYSCTL = "nf_conntrack_udp_timeout_stream"
# ct->proto.udp.stream_ts = jiffies + 2 * HZ when the unconfirmed entry sees its packet
UDP_STREAM_DELAY = 2.0


@dataclass
class UdpConntrack:
    """struct nf_ct_udp."""

    stream_ts: float  # after this instant a replied flow counts as a stream


class UdpTracker:
    def __init__(self, proto: int, name: str):
        self.proto = proto
        self.name = name

    def new(self, ct: "ConntrackEntry", pkt: Packet, env: TrackEnv) -> L4Result | None:
        return None

    def error(self, pkt: Packet, env: TrackEnv) -> L4Result | None:
        udp = pkt.l4
        if not isinstance(udp, UdpHeader):
            return invalid("short packet")
        if udp.checksum == 0:
            return None  # no checksum: nothing to verify
        if env.checksum_checked and pkt.bad_l4_checksum:
            return invalid("bad checksum")
        return None

    def packet(self, ct: "ConntrackEntry", pkt: Packet, ctinfo: CtInfo,
               env: TrackEnv) -> L4Result:
        if not ct.confirmed or not isinstance(ct.proto_state, UdpConntrack):
            if not ct.confirmed:
                ct.proto_state = UdpConntrack(stream_ts=env.now + UDP_STREAM_DELAY)
            else:  # an entry built without the tracker: fall back to its creation time
                ct.proto_state = UdpConntrack(stream_ts=ct.created + UDP_STREAM_DELAY)
        if not ct.seen_reply:
            return L4Result("accept", timeout=float(env.sysctl(UDP_TIMEOUT_SYSCTL)))
        stream = env.now > ct.proto_state.stream_ts  # time_after(jiffies, stream_ts)
        if not stream:
            return L4Result("accept", timeout=float(env.sysctl(UDP_TIMEOUT_SYSCTL)))
        res = L4Result("accept", timeout=float(env.sysctl(UDP_STREAM_TIMEOUT_SYSCTL)))
        if not ct.assured and not (ct.status & Status.NAT_CLASH):
            res.set_assured = True
            res.events.add("ASSURED")
        return res

    def timeout_for(self, ct: "ConntrackEntry", env: TrackEnv) -> float:
        name = UDP_STREAM_TIMEOUT_SYSCTL if ct.assured else UDP_TIMEOUT_SYSCTL
        return float(env.sysctl(name))

    def state_name(self, ct: "ConntrackEntry") -> str | None:
        return None


UDP = UdpTracker(17, "udp")
UDPLITE = UdpTracker(136, "udplite")
