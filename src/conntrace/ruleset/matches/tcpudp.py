"""`-m tcp` and `-m udp` (net/netfilter/xt_tcpudp.c; libxt_tcp.c / libxt_udp.c).

iptables-nft 1.8.9 turns ports and flags into native nft payload expressions
(`nft --debug=netlink`, verified in a netns), which fixes two corner cases:
- a full port range (`--dport 0:65535`, `! --dport :`) emits nothing, so it is no test at
  all, inverted or not (iptables-save prints nothing either);
- `--tcp-flags NONE x` (an empty mask) emits nothing: no flag test.
A match with no test left matches every packet of the protocol, fragments included;
once a test exists a non-first fragment never matches (it has no L4 header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...packet import IPPROTO_TCP, IPPROTO_UDP, TcpHeader, UdpHeader
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import parse_port_range, parse_uint, render_port_range

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

FULL = (0, 0xFFFF)

# Flag names iptables 1.8.9 accepts for --tcp-flags (libxt_tcp.c tcp_flag_names), in the
# order it prints them; ECE/CWR are not accepted.
TCP_FLAG_NAMES: tuple[tuple[str, int], ...] = (
    ("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20),
)
_FLAG_BY_NAME = {**dict(TCP_FLAG_NAMES), "ALL": 0x3F, "NONE": 0x00}
SYN_MASK = 0x17  # --syn: FIN,SYN,RST,ACK SYN


def _parse_flags(text: str) -> int:
    out = 0
    for tok in text.split(","):
        bit = _FLAG_BY_NAME.get(tok.upper())
        if bit is None:
            raise ExtParseError(f"unknown TCP flag '{tok}': expected FIN, SYN, RST, PSH, ACK, "
                                "URG, ALL or NONE")
        out |= bit
    return out


def _render_flags(value: int) -> str:
    return ",".join(n for n, b in TCP_FLAG_NAMES if value & b) or "NONE"


def _ports_from(opt: Opt, proto: str, seen: set[str]) -> tuple[tuple[int, int], bool]:
    if opt.name in seen:
        raise ExtParseError(f"only one '{opt.name}' allowed")
    seen.add(opt.name)
    rng = parse_port_range(opt.args[0], proto)
    if rng == FULL:  # no nft expression is emitted for it
        return FULL, False
    return rng, opt.inverted


def _port_ok(rng: tuple[int, int], inv: bool, port: int) -> bool:
    return rng == FULL or ((rng[0] <= port <= rng[1]) != inv)


def _render_ports(out: list[str], sport, sinv, dport, dinv) -> None:
    if sport != FULL:
        out += (["!"] if sinv else []) + ["--sport", render_port_range(*sport)]
    if dport != FULL:
        out += (["!"] if dinv else []) + ["--dport", render_port_range(*dport)]


def _require(pctx: ParseContext, proto: int, label: str) -> None:
    # iptables-nft accepts `! -p tcp -m tcp` (the port test then reads any L4 header).
    if pctx.proto != proto:
        raise ExtParseError(f"{label} match requires '-p {label.lower()}'")


def _foreign_ports(ctx: "EvalContext", label: str):
    """With `! -p tcp -m tcp` the nft payload test reads the ports of whatever L4 header
    the packet has; we can do that for UDP/TCP headers only."""
    if ctx.pkt.is_fragment:
        return None
    l4 = ctx.pkt.l4
    if isinstance(l4, (TcpHeader, UdpHeader)):
        return l4.sport, l4.dport
    ctx.mark_uncertain(f"{label} match on a {ctx.pkt.describe().split()[0]} packet: the bytes "
                       "it reads are not modelled")
    return None


@register_match
@dataclass(frozen=True)
class TcpMatch(MatchExt):
    sport: tuple[int, int] = FULL
    sport_inv: bool = False
    dport: tuple[int, int] = FULL
    dport_inv: bool = False
    flags_mask: int = 0
    flags_cmp: int = 0
    flags_inv: bool = False
    option: int = 0  # 0: no --tcp-option
    option_inv: bool = False

    name: ClassVar[str] = "tcp"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--sport", 1, True, ("--source-port",)),
        OptionSpec("--dport", 1, True, ("--destination-port",)),
        OptionSpec("--tcp-flags", 2, True),
        OptionSpec("--syn", 0, True),
        OptionSpec("--tcp-option", 1, True),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TcpMatch":
        _require(pctx, IPPROTO_TCP, "TCP")
        kw: dict = {}
        seen: set[str] = set()
        for o in opts:
            if o.name == "--sport":
                kw["sport"], kw["sport_inv"] = _ports_from(o, "tcp", seen)
            elif o.name == "--dport":
                kw["dport"], kw["dport_inv"] = _ports_from(o, "tcp", seen)
            elif o.name in ("--tcp-flags", "--syn"):
                if "flags" in seen:
                    raise ExtParseError("only one of '--syn' or '--tcp-flags' allowed")
                seen.add("flags")
                if o.name == "--syn":
                    mask, cmp = SYN_MASK, 0x02
                else:
                    mask, cmp = _parse_flags(o.args[0]), _parse_flags(o.args[1])
                if mask:  # an empty mask emits no nft expression
                    kw.update(flags_mask=mask, flags_cmp=cmp, flags_inv=o.inverted)
            elif o.name == "--tcp-option":
                if "opt" in seen:
                    raise ExtParseError("only one '--tcp-option' allowed")
                seen.add("opt")
                kw["option"] = parse_uint(o.args[0], "--tcp-option", 1, 255)
                kw["option_inv"] = o.inverted
            else:
                raise ExtParseError(f"tcp: unknown option {o.name}")
        return cls(**kw)

    def render(self) -> list[str]:
        out: list[str] = []
        _render_ports(out, self.sport, self.sport_inv, self.dport, self.dport_inv)
        if self.option:
            out += (["!"] if self.option_inv else []) + ["--tcp-option", str(self.option)]
        if self.flags_mask:
            out += (["!"] if self.flags_inv else []) + [
                "--tcp-flags", _render_flags(self.flags_mask), _render_flags(self.flags_cmp)]
        return out

    @property
    def has_test(self) -> bool:
        return (self.sport != FULL or self.dport != FULL or bool(self.flags_mask)
                or bool(self.option))

    def matches(self, ctx: "EvalContext") -> bool:
        if not self.has_test:
            return True
        pkt = ctx.pkt
        if pkt.is_fragment:
            return False
        th = pkt.tcp
        if th is None:
            if pkt.proto == IPPROTO_TCP:
                ctx.mark_uncertain("tcp match: TCP packet without a TCP header (the kernel "
                                   "drops it as malformed)")
                return False
            if self.flags_mask or self.option:
                ctx.mark_uncertain("tcp flags/options read from a non-TCP header are not modelled")
                return False
            ports = _foreign_ports(ctx, "tcp")
            if ports is None:
                return False
            return (_port_ok(self.sport, self.sport_inv, ports[0])
                    and _port_ok(self.dport, self.dport_inv, ports[1]))
        if not _port_ok(self.sport, self.sport_inv, th.sport):
            return False
        if not _port_ok(self.dport, self.dport_inv, th.dport):
            return False
        if self.flags_mask and ((th.flags & self.flags_mask) == self.flags_cmp) == self.flags_inv:
            return False
        if self.option and tcp_has_option(th.options, self.option) == self.option_inv:
            return False
        return True


def tcp_has_option(options: bytes, kind: int) -> bool:
    """tcp_find_option (xt_tcpudp.c): walk kind/length pairs; kinds 0 and 1 are one byte."""
    i = 0
    while i < len(options):
        if options[i] == kind:
            return True
        if options[i] < 2:
            i += 1
        else:
            step = options[i + 1] if i + 1 < len(options) else 1
            i += step or 1
    return False


@register_match
@dataclass(frozen=True)
class UdpMatch(MatchExt):
    sport: tuple[int, int] = FULL
    sport_inv: bool = False
    dport: tuple[int, int] = FULL
    dport_inv: bool = False

    name: ClassVar[str] = "udp"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--sport", 1, True, ("--source-port",)),
        OptionSpec("--dport", 1, True, ("--destination-port",)),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "UdpMatch":
        _require(pctx, IPPROTO_UDP, "UDP")
        kw: dict = {}
        seen: set[str] = set()
        for o in opts:
            if o.name == "--sport":
                kw["sport"], kw["sport_inv"] = _ports_from(o, "udp", seen)
            elif o.name == "--dport":
                kw["dport"], kw["dport_inv"] = _ports_from(o, "udp", seen)
            else:
                raise ExtParseError(f"udp: unknown option {o.name}")
        return cls(**kw)

    def render(self) -> list[str]:
        out: list[str] = []
        _render_ports(out, self.sport, self.sport_inv, self.dport, self.dport_inv)
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        if self.sport == FULL and self.dport == FULL:
            return True
        pkt = ctx.pkt
        if pkt.is_fragment:
            return False
        uh = pkt.udp
        if uh is None:
            if pkt.proto == IPPROTO_UDP:
                ctx.mark_uncertain("udp match: UDP packet without a UDP header")
                return False
            ports = _foreign_ports(ctx, "udp")
            if ports is None:
                return False
            sport, dport = ports
        else:
            sport, dport = uh.sport, uh.dport
        return (_port_ok(self.sport, self.sport_inv, sport)
                and _port_ok(self.dport, self.dport_inv, dport))
