"""The generic tracker for protocols without one (net/netfilter/nf_conntrack_proto_generic.c).

Every packet refreshes the entry to nf_conntrack_generic_timeout (600 s). There is no state,
no header check, and the entry never becomes ASSURED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..packet import Packet
from .defs import CtInfo
from .l4 import L4Result, TrackEnv

if TYPE_CHECKING:
    from .entry import ConntrackEntry

GENERIC_TIMEOUT_SYSCTL = "nf_conntrack_generic_timeout"


class GenericTracker:
    proto = 255  # the kernel's nf_conntrack_l4proto_generic.l4proto
    name = "unknown"

    def new(self, ct: "ConntrackEntry", pkt: Packet, env: TrackEnv) -> L4Result | None:
        return None

    def packet(self, ct: "ConntrackEntry", pkt: Packet, ctinfo: CtInfo,
               env: TrackEnv) -> L4Result:
        return L4Result("accept", timeout=self.timeout_for(ct, env))

    def error(self, pkt: Packet, env: TrackEnv) -> L4Result | None:
        return None

    def timeout_for(self, ct: "ConntrackEntry", env: TrackEnv) -> float:
        return float(env.sysctl(GENERIC_TIMEOUT_SYSCTL))

    def state_name(self, ct: "ConntrackEntry") -> str | None:
        return None


GENERIC = GenericTracker()
