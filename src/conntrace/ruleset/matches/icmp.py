"""`-m icmp --icmp-type` (ipt icmp_match in net/ipv4/netfilter/ip_tables.c) and
`-m icmp6 --icmpv6-type` (icmp6_match in net/ipv6/netfilter/ip6_tables.c).

A rule holds a type and a code range: a bare type means codes 0-255, `type/code` one
code. For IPv4, type 255 means any type (icmp_type_code_match). Names are iptables' own
tables (libxt_icmp.h, `iptables -p icmp -h` / `ip6tables -p icmpv6 -h`, checked on
v1.8.9): a name may be abbreviated to any unique prefix and is case-insensitive.
iptables-save always prints numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...packet import IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpHeader
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import c_strtoul, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

ANY = 0xFF

# (name, type, code_min, code_max), in iptables' order (libxt_icmp.h icmp_codes)
ICMP_NAMES: tuple[tuple[str, int, int, int], ...] = (
    ("any", 0xFF, 0, 0xFF),
    ("echo-reply", 0, 0, 0xFF),
    ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xFF),
    ("redirect", 5, 0, 0xFF),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xFF),
    ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF),
    ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF),
    ("ttl-exceeded", 11, 0, 0xFF),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xFF),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF),
    ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF),
    ("address-mask-reply", 18, 0, 0xFF),
)

# libip6t_icmp6.c icmpv6_codes
ICMPV6_NAMES: tuple[tuple[str, int, int, int], ...] = (
    ("destination-unreachable", 1, 0, 0xFF),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 0xFF),
    ("time-exceeded", 3, 0, 0xFF),
    ("ttl-exceeded", 3, 0, 0xFF),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 0xFF),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 0xFF),
    ("ping", 128, 0, 0xFF),
    ("echo-reply", 129, 0, 0xFF),
    ("pong", 129, 0, 0xFF),
    ("router-solicitation", 133, 0, 0xFF),
    ("router-advertisement", 134, 0, 0xFF),
    ("neighbour-solicitation", 135, 0, 0xFF),
    ("neighbor-solicitation", 135, 0, 0xFF),
    ("neighbour-advertisement", 136, 0, 0xFF),
    ("neighbor-advertisement", 136, 0, 0xFF),
    ("redirect", 137, 0, 0xFF),
)


def parse_icmp_type(text: str, names, what: str) -> tuple[int, int, int]:
    """`name`, `type` or `type/code` -> (type, code_min, code_max)."""
    if text[:1].isdigit() or text[:1] in " +":
        t_s, slash, c_s = text.partition("/")
        t = c_strtoul(t_s)
        if t is None or t[1] != "" or t[0] > 255:
            raise ExtParseError(f"unknown {what} type '{text}': expected a name, 0-255 or "
                                "TYPE/CODE")
        if not slash:
            return t[0], 0, 0xFF
        c = c_strtoul(c_s)
        if c is None or c[1] != "" or c[0] > 255:
            raise ExtParseError(f"unknown {what} code '{text}': expected a code 0-255")
        return t[0], c[0], c[0]
    low = text.lower()
    hits = [n for n in names if n[0].lower().startswith(low)]
    exact = [n for n in hits if n[0].lower() == low]
    if exact:
        hits = exact
    if not hits:
        raise ExtParseError(f"unknown {what} type '{text}'")
    if len({(h[1], h[2], h[3]) for h in hits}) > 1:
        raise ExtParseError(f"ambiguous {what} type '{text}': "
                            + " or ".join(h[0] for h in hits))
    return hits[0][1], hits[0][2], hits[0][3]


def _render_type(t: int, cmin: int, cmax: int) -> str:
    # libipt_icmp.c icmp_save: a code range other than 0-255 prints its minimum
    if (cmin, cmax) == (0, 0xFF):
        return str(t)
    return f"{t}/{cmin}"


def _single(opts: Sequence[Opt], ext: str, opt: str) -> Opt:
    check_once(ext, opts)
    for o in opts:
        if o.name != opt:
            raise ExtParseError(f"{ext}: unknown option {o.name}")
    if not opts:
        raise ExtParseError(f'{ext}: option "{opt}" must be specified')
    return opts[0]


@register_match
@dataclass(frozen=True)
class IcmpMatch(MatchExt):
    type: int = ANY
    code_min: int = 0
    code_max: int = 0xFF
    inverted: bool = False

    name: ClassVar[str] = "icmp"
    families: ClassVar[frozenset[int]] = frozenset({4})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--icmp-type", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "IcmpMatch":
        if pctx.proto != IPPROTO_ICMP or pctx.proto_inverted:
            # xt_check_match: .proto = IPPROTO_ICMP and no inverted -p
            raise ExtParseError("icmp match: only valid for protocol 1: expected -p icmp")
        o = _single(opts, "icmp", "--icmp-type")
        t, cmin, cmax = parse_icmp_type(o.args[0], ICMP_NAMES, "ICMP")
        if t == ANY:  # type 255 matches every packet whatever the codes say
            cmin, cmax = 0, 0xFF
        return cls(t, cmin, cmax, o.inverted)

    def render(self) -> list[str]:
        out = ["!"] if self.inverted else []
        if self.type == ANY:
            return out + ["--icmp-type", "any"]
        return out + ["--icmp-type", _render_type(self.type, self.code_min, self.code_max)]

    def matches(self, ctx: "EvalContext") -> bool:
        pkt = ctx.pkt
        if pkt.is_fragment:
            return False
        ic = pkt.icmp
        if not isinstance(ic, IcmpHeader):
            ctx.mark_uncertain("icmp match on a packet without an ICMP header")
            return False
        hit = self.type == ANY or (
            ic.type == self.type and self.code_min <= ic.code <= self.code_max)
        return hit != self.inverted


@register_match
@dataclass(frozen=True)
class Icmp6Match(MatchExt):
    """Parsed and evaluated like the kernel's icmp6_match; IPv6 packets are simulated later."""

    type: int = 0
    code_min: int = 0
    code_max: int = 0xFF
    inverted: bool = False

    name: ClassVar[str] = "icmp6"
    families: ClassVar[frozenset[int]] = frozenset({6})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--icmpv6-type", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "Icmp6Match":
        if pctx.proto != IPPROTO_ICMPV6 or pctx.proto_inverted:
            raise ExtParseError("icmp6 match: only valid for protocol 58: expected -p ipv6-icmp")
        o = _single(opts, "icmp6", "--icmpv6-type")
        t, cmin, cmax = parse_icmp_type(o.args[0], ICMPV6_NAMES, "ICMPv6")
        return cls(t, cmin, cmax, o.inverted)

    def render(self) -> list[str]:
        out = ["!"] if self.inverted else []
        return out + ["--icmpv6-type", _render_type(self.type, self.code_min, self.code_max)]

    def matches(self, ctx: "EvalContext") -> bool:
        pkt = ctx.pkt
        if pkt.is_fragment:
            return False
        ic = pkt.icmp
        if not isinstance(ic, IcmpHeader):
            ctx.mark_uncertain("icmp6 match on a packet without an ICMPv6 header")
            return False
        hit = ic.type == self.type and self.code_min <= ic.code <= self.code_max
        return hit != self.inverted
