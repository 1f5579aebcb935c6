"""The per-protocol tracker interface (struct nf_conntrack_l4proto) and the registry.

Kernel: net/netfilter/nf_conntrack_core.c (nf_conntrack_in, resolve_normal_ct,
nf_conntrack_handle_packet), include/net/netfilter/nf_conntrack_l4proto.h.

How the core drives a tracker for one packet (mirrors nf_conntrack_in):

1. ``tracker_for(pkt.proto).error(pkt, env)`` before any lookup. A result means the packet
   gets no conntrack (ctstate INVALID). Count ``error`` in the stats when
   ``result.count_error`` (the ICMP/ICMPv6 path, nf_conntrack_handle_icmp), else ``invalid``.
   A verdict ``"untracked"`` (ICMPv6 neighbour discovery/MLD) means: attach IP_CT_UNTRACKED.
   For an ICMP(v6) *error* message that passed error(), the core does the RELATED lookup
   with the helpers of proto_icmp (``icmp_error_related``) and skips steps 2-4.
2. Lookup; on a miss the core allocates the entry (orig tuple + inverted reply tuple) and
   calls ``new(ct, pkt, env)``. A non-None result: the entry is freed (never seen, no events)
   and the packet is INVALID. ``new`` may initialise ``ct.proto_state``.
3. ``result = packet(ct, pkt, ctinfo, env)`` and the core applies it:
   - ``"accept"``: the packet keeps ct/ctinfo. Then, in this order: ``timeout`` (a refresh:
     confirmed -> ct.timeout = now + timeout, unconfirmed -> ct.timeout = timeout; skipped
     when ct has FIXED_TIMEOUT), ``set_assured`` (Status.ASSURED), ``events`` into ct.ecache,
     and finally ``kill`` (nf_ct_kill: DESTROY event, the entry leaves the table; the packet
     still carries it).
   - ``"invalid"``: the packet continues without a conntrack (-NF_ACCEPT), ``invalid``++.
     ``timeout`` may still be set (TCP lowers an ASSURED entry's timeout on an out-of-window
     FIN/RST, nf_tcp_handle_invalid): apply it the same way.
   - ``"drop"``: NF_DROP; ``invalid``++ and ``drop``++.
   - ``"repeat"``: -NF_REPEAT: the tracker asks to kill this entry (the core calls nf_ct_kill,
     DESTROY event) and to redo the lookup, which creates a fresh entry (TCP reopen from
     TIME_WAIT/CLOSE). The tracker returns "drop" instead when the entry is already DYING.
   ``log_invalid`` is the text nf_conntrack_log_invalid would log (``nf_ct_proto_<N>: <text>``)
   whatever the verdict: some IGNOREd TCP packets are accepted and still logged.
4. After an accepted ESTABLISHED_REPLY packet the core sets SEEN_REPLY (+ "REPLY" event).
   Trackers read ``ct.seen_reply`` as the kernel does: it is still clear while the first
   reply is being processed.

Known simplification: the kernel runs the header checks inside the tracker's packet
callback, after init_conntrack allocated the entry, so a malformed first packet can still
trigger the table-full drop or early_drop. Here error() runs before allocation.

Trackers never touch the table; they read and write only ``ct.proto_state`` (and read ct's
status, tuples and timeout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..host.sysctl import Sysctls
from ..netfilter.hooks import Hook
from ..packet import Packet
from .defs import CtInfo

if TYPE_CHECKING:
    from .entry import ConntrackEntry

VERDICTS = frozenset({"accept", "invalid", "drop", "repeat", "untracked"})


@dataclass
class TrackEnv:
    """What a tracker may read besides the entry and the packet."""

    now: float  # virtual clock, seconds
    sysctls: Sysctls
    hook: Hook  # PREROUTING or OUTPUT: checksums are checked only in PREROUTING

    def sysctl(self, name: str) -> int:
        return self.sysctls.get_int("net.netfilter." + name)

    @property
    def checksum_checked(self) -> bool:
        """nf_conntrack_checksum=1 and the packet is in PREROUTING (local output is trusted)."""
        return self.hook is Hook.PREROUTING and bool(self.sysctl("nf_conntrack_checksum"))


@dataclass
class L4Result:
    verdict: str  # "accept" | "invalid" | "drop" | "repeat" | "untracked" (see module doc)
    timeout: float | None = None  # refresh to now + timeout; None: leave the timer alone
    kill: bool = False  # nf_ct_kill after accepting
    set_assured: bool = False
    events: set[str] = field(default_factory=set)  # "PROTOINFO", "ASSURED", ...
    log_invalid: str | None = None  # the nf_conntrack_log_invalid message, if any
    count_error: bool = False  # stats: count `error` (ICMP error path) instead of `invalid`

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"L4Result verdict must be one of {sorted(VERDICTS)}, "
                             f"got {self.verdict!r}")


def invalid(log: str | None = None, *, count_error: bool = False) -> L4Result:
    return L4Result("invalid", log_invalid=log, count_error=count_error)


class L4Tracker(Protocol):
    proto: int
    name: str  # the kernel's l4proto name ("tcp", "udp", "icmp", "unknown", ...)

    def new(self, ct: "ConntrackEntry", pkt: Packet, env: TrackEnv) -> L4Result | None:
        """For the packet that creates an entry, before packet(). None: the entry may be
        created; an 'invalid' L4Result: it may not."""
        ...

    def packet(self, ct: "ConntrackEntry", pkt: Packet, ctinfo: CtInfo,
               env: TrackEnv) -> L4Result: ...

    def error(self, pkt: Packet, env: TrackEnv) -> L4Result | None:
        """Header checks done before lookup. An 'invalid' result, or None if fine."""
        ...

    def timeout_for(self, ct: "ConntrackEntry", env: TrackEnv) -> float:
        """The timeout of the entry's current state, without caps."""
        ...

    def state_name(self, ct: "ConntrackEntry") -> str | None:
        """The protocol state conntrack prints (TCP only), else None."""
        ...


# Protocols Linux 6.18 tracks with a dedicated tracker that this model replaces with the
# generic one (nf_conntrack_proto_{sctp,gre,dccp}.c). Callers should report the deviation.
KERNEL_ONLY_TRACKERS = {132: "sctp", 47: "gre", 33: "dccp"}


_REGISTRY: dict[int, L4Tracker] = {}


def tracker_for(proto: int) -> L4Tracker:
    """The tracker for an IP protocol number; the generic tracker for anything else."""
    if not _REGISTRY:
        # imported here: the tracker modules import this one
        from . import proto_generic, proto_icmp, proto_tcp, proto_udp

        _REGISTRY.update({
            6: proto_tcp.TCP,
            17: proto_udp.UDP,
            136: proto_udp.UDPLITE,
            1: proto_icmp.ICMP,
            58: proto_icmp.ICMPV6,
            -1: proto_generic.GENERIC,
        })
    return _REGISTRY.get(proto, _REGISTRY[-1])


def is_generic_fallback(proto: int) -> bool:
    """True when the kernel has a real tracker for `proto` and the model uses generic."""
    return proto in KERNEL_ONLY_TRACKERS
