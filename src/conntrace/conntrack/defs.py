"""Conntrack constants as the kernel defines them.

include/uapi/linux/netfilter/nf_conntrack_common.h (ctinfo, status bits),
include/uapi/linux/netfilter/nf_conntrack_tcp.h (TCP states).
"""

from __future__ import annotations

from enum import Enum, IntEnum, IntFlag


class CtInfo(IntEnum):
    """enum ip_conntrack_info."""

    ESTABLISHED = 0
    RELATED = 1
    NEW = 2
    ESTABLISHED_REPLY = 3
    RELATED_REPLY = 4

    @property
    def is_reply(self) -> bool:
        return self >= CtInfo.ESTABLISHED_REPLY

    @property
    def direction(self) -> "Dir":
        return Dir.REPLY if self.is_reply else Dir.ORIGINAL


class Dir(IntEnum):
    ORIGINAL = 0
    REPLY = 1

    def flip(self) -> "Dir":
        return Dir(1 - self)


class Status(IntFlag):
    """enum ip_conntrack_status."""

    EXPECTED = 1 << 0
    SEEN_REPLY = 1 << 1
    ASSURED = 1 << 2
    CONFIRMED = 1 << 3
    SRC_NAT = 1 << 4
    DST_NAT = 1 << 5
    SEQ_ADJUST = 1 << 6
    SRC_NAT_DONE = 1 << 7
    DST_NAT_DONE = 1 << 8
    DYING = 1 << 9
    FIXED_TIMEOUT = 1 << 10
    TEMPLATE = 1 << 11
    NAT_CLASH = 1 << 12  # was UNTRACKED
    HELPER = 1 << 13
    OFFLOAD = 1 << 14
    HW_OFFLOAD = 1 << 15


# Names `--ctstatus` accepts (xt_conntrack / libxt_conntrack.c)
CTSTATUS_BY_NAME = {
    "NONE": Status(0),
    "EXPECTED": Status.EXPECTED,
    "SEEN_REPLY": Status.SEEN_REPLY,
    "ASSURED": Status.ASSURED,
    "CONFIRMED": Status.CONFIRMED,
}


class CtState(IntFlag):
    """The bits `-m conntrack --ctstate` / `-m state --state` test (xt_conntrack.c):
    XT_CONNTRACK_STATE_BIT(ctinfo) = 1 << (ctinfo % IP_CT_IS_REPLY + 1), INVALID = 1 << 0.
    The virtual SNAT/DNAT states exist only for -m conntrack."""

    INVALID = 1 << 0
    ESTABLISHED = 1 << 1
    RELATED = 1 << 2
    NEW = 1 << 3
    UNTRACKED = 1 << 4
    SNAT = 1 << 5
    DNAT = 1 << 6


CTSTATE_BY_NAME = {s.name: s for s in CtState}

# XT_CONNTRACK_STATE_BIT(ctinfo) = 1 << (ctinfo % IP_CT_IS_REPLY + 1): replies fold onto
# their original-direction state (include/uapi/linux/netfilter/xt_conntrack.h)
CTSTATE_OF_CTINFO = {
    CtInfo.ESTABLISHED: CtState.ESTABLISHED, CtInfo.ESTABLISHED_REPLY: CtState.ESTABLISHED,
    CtInfo.RELATED: CtState.RELATED, CtInfo.RELATED_REPLY: CtState.RELATED,
    CtInfo.NEW: CtState.NEW,
}


class TcpState(IntEnum):
    """enum tcp_conntrack (the order matters: it indexes the transition table)."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9
    # pseudo-states of the transition table
    MAX = 10
    IGNORE = 11
    INVALID = 12
    RETRANS = 13  # timeout slot only
    UNACK = 14  # timeout slot only


class ConntrackEventType(Enum):
    NEW = "NEW"
    UPDATE = "UPDATE"
    DESTROY = "DESTROY"
