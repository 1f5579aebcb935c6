"""REJECT: drop the packet and answer it (net/ipv4/netfilter/ipt_REJECT.c, nf_reject_ipv4.c).

ICMP types go through nf_send_unreach -> icmp_send (targets/icmp_send.py); tcp-reset builds
the RST of nf_send_reset:
- no RST for a non-first fragment, a non-TCP packet, a RST, a bad checksum or a packet to a
  broadcast/multicast address;
- IP: addresses swapped, TOS 0, ID 0, DF, TTL = ip_default_ttl;
- TCP: ports swapped, no options, window 0; if the packet had ACK: seq = its ack_seq and
  only RST; else seq 0, ack_seq = seq + SYN + FIN + payload length and RST|ACK.
Both replies carry the packet's conntrack as RELATED in the other direction (nf_ct_attach,
also done by icmp_glue_bits for ICMP errors). The verdict is always DROP.

IPv6 (ip6t_REJECT) types are parsed; the IPv6 reply packet is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...conntrack.defs import CtInfo
from ...netfilter.effects import GeneratedPacket, Note
from ...netfilter.hooks import Hook
from ...netfilter.verdict import DROP, Verdict
from ...host.netdev import RouteType
from ...packet import (IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Packet,
                       SkbMeta, TcpHeader, UdpHeader)
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import arg, check_plain, check_table_hook
from .icmp_send import icmp_error

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

# reject_table[] of libipt_REJECT.c in index order: (name, alias, ICMP code or None for RST)
REJECT_TYPES_V4 = (
    ("icmp-net-unreachable", "net-unreach", 0),
    ("icmp-host-unreachable", "host-unreach", 1),
    ("icmp-proto-unreachable", "proto-unreach", 2),
    ("icmp-port-unreachable", "port-unreach", 3),
    ("icmp-net-prohibited", "net-prohib", 9),
    ("icmp-host-prohibited", "host-prohib", 10),
    ("tcp-reset", "tcp-rst", None),
    ("icmp-admin-prohibited", "admin-prohib", 13),  # ICMP_PKT_FILTERED
)
# libip6t_REJECT.c reject_table[] (ICMPv6 destination unreachable codes)
REJECT_TYPES_V6 = (
    ("icmp6-no-route", "no-route", 0),
    ("icmp6-adm-prohibited", "adm-prohibited", 1),
    ("icmp6-not-neighbor", "not-neighbor", 2),
    ("icmp6-addr-unreachable", "addr-unreach", 3),
    ("icmp6-port-unreachable", "port-unreach", 4),
    ("tcp-reset", "tcp-reset", None),
    ("icmp6-policy-fail", "policy-fail", 5),
    ("icmp6-reject-route", "reject-route", 6),
)
DEFAULT_TYPE = {4: "icmp-port-unreachable", 6: "icmp6-port-unreachable"}

# nf_reject_verify_csum: protocols whose checksum REJECT does not verify
NO_CSUM_VERIFY = frozenset({47, 50, 51, 132, 136, 33})  # GRE ESP AH SCTP UDPLITE DCCP


def reject_types(family: int):
    return REJECT_TYPES_V4 if family == 4 else REJECT_TYPES_V6


def lookup_reject_type(text: str, family: int) -> str:
    """REJECT_parse: the first entry of which `text` is a case-insensitive prefix of the
    name or the alias (so 'tcp' means tcp-reset)."""
    low = text.lower()
    for name, alias, _ in reject_types(family):
        if name.startswith(low) or alias.startswith(low):
            return name
    names = ", ".join(n for n, _, _ in reject_types(family))
    hint = " (echo-reply is no longer supported)" if "echo-reply".startswith(low) or \
        "echoreply".startswith(low) else ""
    raise ExtParseError(f"--reject-with: unknown reject type '{text}'{hint} (expected "
                        f"one of {names})")


def _bad_checksum(pkt: Packet, hook: Hook) -> bool:
    """A checksum REJECT verifies and finds wrong. Locally generated packets are
    CHECKSUM_PARTIAL and never checked."""
    if not pkt.bad_l4_checksum or hook is Hook.OUTPUT or pkt.proto in NO_CSUM_VERIFY:
        return False
    if pkt.proto == IPPROTO_UDP and isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0:
        return False  # UDP without a checksum
    return True


def tcp_reset_for(ctx: "EvalContext") -> tuple[Packet | None, str]:
    """nf_send_reset: the RST answering ctx.pkt, or (None, why not)."""
    pkt, host = ctx.pkt, ctx.host
    th = pkt.l4
    if pkt.is_fragment or pkt.proto != IPPROTO_TCP or not isinstance(th, TcpHeader):
        return None, "no RST: not a (first) TCP segment"
    if th.flags & TCP_RST:
        return None, "no RST in reply to a RST"
    if _bad_checksum(pkt, ctx.hook):
        return None, "no RST: bad TCP checksum"
    if host.addr_type(pkt.dst) in (RouteType.BROADCAST, RouteType.MULTICAST):
        return None, "no RST for a packet to a broadcast/multicast address"
    if host.devices.lookup(pkt.src).type not in (RouteType.UNICAST, RouteType.LOCAL):
        return None, f"no RST: no route back to {pkt.src}"
    if th.flags & TCP_ACK:
        seq, ack_seq, flags = th.ack_seq, 0, TCP_RST
    else:
        seq = 0
        ack_seq = (th.seq + bool(th.flags & TCP_SYN) + bool(th.flags & TCP_FIN)
                   + pkt.payload_len) & 0xFFFFFFFF
        flags = TCP_RST | TCP_ACK
    mark = pkt.meta.mark if host.sysctls.get_int("net.ipv4.fwmark_reflect") else 0
    rst = Packet(
        src=pkt.dst, dst=pkt.src, proto=IPPROTO_TCP,
        l4=TcpHeader(sport=th.dport, dport=th.sport, flags=flags, seq=seq, ack_seq=ack_seq,
                     window=0),
        ttl=host.sysctls.get_int("net.ipv4.ip_default_ttl"), tos=0, ip_id=0, df=True,
        meta=SkbMeta(mark=mark))
    return rst, f"TCP RST from {rst.src}:{th.dport} to {rst.dst}:{th.sport}"


def related_ctinfo(ctinfo) -> CtInfo | None:
    """nf_conntrack_attach: RELATED in the direction opposite to the packet's."""
    if ctinfo is None:
        return None
    return CtInfo.RELATED_REPLY if not CtInfo(ctinfo).is_reply else CtInfo.RELATED


@register_target
@dataclass(frozen=True)
class RejectTarget(TargetExt):
    with_: str = "icmp-port-unreachable"
    family: int = 4

    name: ClassVar[str] = "REJECT"
    terminal: ClassVar[bool] = True
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"filter"})
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"INPUT", "FORWARD", "OUTPUT"})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--reject-with"),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "RejectTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        with_ = DEFAULT_TYPE[pctx.family]
        if opts:
            with_ = lookup_reject_type(arg(opts[0]), pctx.family)
        if with_ == "tcp-reset" and (pctx.proto != IPPROTO_TCP or pctx.proto_inverted):
            # reject_tg_check: "TCP_RESET invalid for non-tcp"
            raise ExtParseError("--reject-with tcp-reset: only valid with -p tcp")
        return cls(with_, pctx.family)

    def render(self) -> list[str]:
        return ["--reject-with", self.with_]

    @property
    def icmp_code(self) -> int | None:
        for name, _, code in reject_types(self.family):
            if name == self.with_:
                return code
        return None

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        if pkt.family != 4:
            ctx.mark_uncertain(f"REJECT --reject-with {self.with_}: the IPv6 reply packet is "
                               "not modelled (the packet is dropped)")
            return DROP
        if self.with_ == "tcp-reset":
            reply, why = tcp_reset_for(ctx)
        elif pkt.is_fragment:  # nf_send_unreach
            reply, why = None, "no ICMP error for a non-first fragment"
        elif _bad_checksum(pkt, ctx.hook):
            reply, why = None, "no ICMP error: bad checksum"
        else:
            reply, why = icmp_error(ctx.host, pkt, 3, self.icmp_code or 0, now=ctx.now,
                                    rng=ctx.rng, in_iface=ctx.in_iface,
                                    input_route=ctx.hook is not Hook.OUTPUT)
        if reply is None:
            ctx.emit(Note(f"REJECT: {why}"))
            return DROP
        reply.label = f"REJECT {self.with_}"
        ctx.emit(GeneratedPacket(reply, reason=f"REJECT --reject-with {self.with_}: {why}",
                                 attach_related=True, related_ct=ctx.ct,
                                 related_ctinfo=related_ctinfo(ctx.ctinfo) if ctx.ct else None))
        return DROP
