"""Netfilter hooks and the callbacks registered on each, in priority order.

Priorities: include/uapi/linux/netfilter_ipv4.h (enum nf_ip_hook_priorities).
Which table sits on which hook: net/ipv4/netfilter/iptable_{raw,mangle,nat,filter,security}.c.
Conntrack in/confirm: net/netfilter/nf_conntrack_proto.c; NAT: net/netfilter/nf_nat_proto.c.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Hook(Enum):
    PREROUTING = "PREROUTING"
    INPUT = "INPUT"
    FORWARD = "FORWARD"
    OUTPUT = "OUTPUT"
    POSTROUTING = "POSTROUTING"

    def __str__(self) -> str:
        return self.value


# enum nf_ip_hook_priorities
NF_IP_PRI_RAW_BEFORE_DEFRAG = -450
NF_IP_PRI_CONNTRACK_DEFRAG = -400
NF_IP_PRI_RAW = -300
NF_IP_PRI_SELINUX_FIRST = -225
NF_IP_PRI_CONNTRACK = -200
NF_IP_PRI_MANGLE = -150
NF_IP_PRI_NAT_DST = -100
NF_IP_PRI_FILTER = 0
NF_IP_PRI_SECURITY = 50
NF_IP_PRI_NAT_SRC = 100
NF_IP_PRI_SELINUX_LAST = 225
NF_IP_PRI_CONNTRACK_CONFIRM = 2**31 - 1


class CallbackKind(Enum):
    TABLE = "table"  # run an iptables table's built-in chain for this hook
    CONNTRACK_IN = "conntrack_in"  # nf_conntrack_in: find or create the entry, run the L4 tracker
    NAT = "nat"  # nf_nat_inet_fn: run the nat chain for a first packet, then apply the binding
    CONFIRM = "confirm"  # nf_confirm: insert an unconfirmed entry into the hash


@dataclass(frozen=True)
class HookCallback:
    priority: int
    kind: CallbackKind
    table: str | None = None  # for TABLE and NAT callbacks

    @property
    def name(self) -> str:
        if self.kind is CallbackKind.TABLE:
            return self.table or ""
        if self.kind is CallbackKind.NAT:
            return "nat"
        return self.kind.value


def _t(prio: int, table: str) -> HookCallback:
    return HookCallback(prio, CallbackKind.TABLE, table)


_CT_IN = HookCallback(NF_IP_PRI_CONNTRACK, CallbackKind.CONNTRACK_IN)
_CONFIRM = HookCallback(NF_IP_PRI_CONNTRACK_CONFIRM, CallbackKind.CONFIRM)
_NAT_DST = HookCallback(NF_IP_PRI_NAT_DST, CallbackKind.NAT, "nat")
_NAT_SRC = HookCallback(NF_IP_PRI_NAT_SRC, CallbackKind.NAT, "nat")

# Every IPv4 callback per hook, sorted by priority (reference §1.2). Defrag and SELinux are
# not modelled: we have no fragments to reassemble and no LSM.
HOOK_CALLBACKS: dict[Hook, tuple[HookCallback, ...]] = {
    Hook.PREROUTING: (
        _t(NF_IP_PRI_RAW, "raw"), _CT_IN, _t(NF_IP_PRI_MANGLE, "mangle"), _NAT_DST,
    ),
    Hook.INPUT: (
        _t(NF_IP_PRI_MANGLE, "mangle"), _t(NF_IP_PRI_FILTER, "filter"),
        _t(NF_IP_PRI_SECURITY, "security"), _NAT_SRC, _CONFIRM,
    ),
    Hook.FORWARD: (
        _t(NF_IP_PRI_MANGLE, "mangle"), _t(NF_IP_PRI_FILTER, "filter"),
        _t(NF_IP_PRI_SECURITY, "security"),
    ),
    Hook.OUTPUT: (
        _t(NF_IP_PRI_RAW, "raw"), _CT_IN, _t(NF_IP_PRI_MANGLE, "mangle"), _NAT_DST,
        _t(NF_IP_PRI_FILTER, "filter"), _t(NF_IP_PRI_SECURITY, "security"),
    ),
    Hook.POSTROUTING: (
        _t(NF_IP_PRI_MANGLE, "mangle"), _NAT_SRC, _CONFIRM,
    ),
}

# NAT manip type per hook (nf_nat_inet_fn: HOOK2MANIP)
NAT_MANIP_BY_HOOK = {
    Hook.PREROUTING: "dst", Hook.OUTPUT: "dst",
    Hook.POSTROUTING: "src", Hook.INPUT: "src",
}

for _hook, _cbs in HOOK_CALLBACKS.items():
    assert list(_cbs) == sorted(_cbs, key=lambda c: c.priority), _hook
