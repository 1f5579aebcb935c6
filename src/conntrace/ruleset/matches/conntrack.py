"""`-m conntrack` (net/netfilter/xt_conntrack.c conntrack_mt, revision 3) and `-m state`
(iptables 1.8.9 implements `state` as conntrack revision 1 with only a state mask,
libxt_conntrack.c; the kernel runs the same conntrack_mt).

The state bit of a packet (conntrack_mt):
- a conntrack attached: the bit of its ctinfo (NEW, ESTABLISHED, RELATED; replies fold onto
  the same bits); with --ctstate, SNAT/DNAT are added when IPS_SRC_NAT/IPS_DST_NAT are set;
- no conntrack but marked untracked (CT --notrack): UNTRACKED;
- no conntrack at all: INVALID.
Without a conntrack the match returns "the state test passed" when --ctstate is given and
false otherwise: every other option needs an entry, inverted or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...conntrack.defs import CTSTATE_BY_NAME, CTSTATE_OF_CTINFO, CtInfo, CtState, Dir, Status
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import (U32_MAX, check_once, masked_equal, parse_addr_mask, parse_port_range,
                      parse_uint, render_addr_mask, render_port_range)

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

# Print order of states and status bits (libxt_conntrack.c print_state / print_status)
CTSTATE_ORDER: tuple[tuple[str, CtState], ...] = (
    ("INVALID", CtState.INVALID), ("NEW", CtState.NEW), ("RELATED", CtState.RELATED),
    ("ESTABLISHED", CtState.ESTABLISHED), ("UNTRACKED", CtState.UNTRACKED),
    ("SNAT", CtState.SNAT), ("DNAT", CtState.DNAT),
)
CTSTATUS_ORDER: tuple[tuple[str, int], ...] = (
    ("EXPECTED", int(Status.EXPECTED)), ("SEEN_REPLY", int(Status.SEEN_REPLY)),
    ("ASSURED", int(Status.ASSURED)), ("CONFIRMED", int(Status.CONFIRMED)),
)
_STATUS_BY_NAME = {"NONE": 0, **dict(CTSTATUS_ORDER)}

def packet_ctstate(ctx: "EvalContext", with_nat: bool) -> CtState:
    """The state bits conntrack_mt computes for the packet in `ctx`."""
    ct = ctx.ct
    if ct is not None:
        if ctx.ctinfo is None:
            ctx.mark_uncertain("conntrack attached without a ctinfo: state unknown")
            return CtState(0)
        bits = CTSTATE_OF_CTINFO[CtInfo(ctx.ctinfo)]
        if with_nat:
            if ct.status & Status.SRC_NAT:
                bits |= CtState.SNAT
            if ct.status & Status.DST_NAT:
                bits |= CtState.DNAT
        return bits
    if ctx.pkt.meta.untracked:
        return CtState.UNTRACKED
    return CtState.INVALID


def _parse_states(text: str, allowed: tuple[str, ...], what: str) -> CtState:
    out = CtState(0)
    for tok in text.split(","):
        key = tok.upper()
        if key not in allowed:
            raise ExtParseError(f'bad {what} "{tok}": expected a comma list of '
                                + ",".join(allowed))
        out |= CTSTATE_BY_NAME[key]
    return out


def _render_states(mask: CtState) -> str:
    return ",".join(n for n, b in CTSTATE_ORDER if mask & b)


def _parse_proto(text: str) -> int:
    """xtables_parse_protocol, the same names and numbers as -p."""
    from ..iptables_save import parse_protocol  # the parser's protocol table (no cycle at import)

    proto = parse_protocol(text)
    if proto is None:
        raise ExtParseError(f"--ctproto: unknown protocol '{text}'")
    return proto


@dataclass(frozen=True)
class _Addr:
    addr: object
    plen: int
    inverted: bool


@dataclass(frozen=True)
class _Ports:
    lo: int
    hi: int
    inverted: bool


_ADDR_OPTS = ("--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst")
_PORT_OPTS = ("--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport", "--ctrepldstport")


@register_match
@dataclass(frozen=True)
class ConntrackMatch(MatchExt):
    state: CtState | None = None
    state_inv: bool = False
    proto: int | None = None
    proto_inv: bool = False
    origsrc: _Addr | None = None
    origdst: _Addr | None = None
    replsrc: _Addr | None = None
    repldst: _Addr | None = None
    origsrcport: _Ports | None = None
    origdstport: _Ports | None = None
    replsrcport: _Ports | None = None
    repldstport: _Ports | None = None
    status: int | None = None
    status_inv: bool = False
    expire: tuple[int, int] | None = None
    expire_inv: bool = False
    direction: Dir | None = None

    name: ClassVar[str] = "conntrack"
    needs_conntrack: ClassVar[bool] = True
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--ctstate", 1, True),
        OptionSpec("--ctproto", 1, True),
        *(OptionSpec(n, 1, True) for n in _ADDR_OPTS),
        *(OptionSpec(n, 1, True) for n in _PORT_OPTS),
        OptionSpec("--ctstatus", 1, True),
        OptionSpec("--ctexpire", 1, True),
        OptionSpec("--ctdir", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "ConntrackMatch":
        check_once("conntrack", opts)
        kw: dict = {}
        for o in opts:
            arg = o.args[0]
            n = o.name
            if n == "--ctstate":
                kw["state"] = _parse_states(arg, tuple(CTSTATE_BY_NAME), "ctstate")
                kw["state_inv"] = o.inverted
            elif n == "--ctproto":
                kw["proto"], kw["proto_inv"] = _parse_proto(arg), o.inverted
            elif n in _ADDR_OPTS:
                addr, plen = parse_addr_mask(arg, pctx.family, n)
                kw[n[4:]] = _Addr(addr, plen, o.inverted)
            elif n in _PORT_OPTS:
                # libxt_conntrack conntrack_ps_ports: no min <= max check (8:7 never matches)
                lo, hi = parse_port_range(arg, None, check_order=False)
                kw[n[4:]] = _Ports(lo, hi, o.inverted)
            elif n == "--ctstatus":
                status = 0
                for tok in arg.split(","):
                    bit = _STATUS_BY_NAME.get(tok.upper())
                    if bit is None:
                        raise ExtParseError(f'bad ctstatus "{tok}": expected a comma list of '
                                            "NONE,EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED")
                    status |= bit
                kw["status"], kw["status_inv"] = status, o.inverted
            elif n == "--ctexpire":
                lo_s, colon, hi_s = arg.partition(":")
                lo = parse_uint(lo_s, "--ctexpire", 0, U32_MAX)
                hi = parse_uint(hi_s, "--ctexpire", 0, U32_MAX) if colon else lo
                kw["expire"], kw["expire_inv"] = (lo, hi), o.inverted
            elif n == "--ctdir":
                d = {"ORIGINAL": Dir.ORIGINAL, "REPLY": Dir.REPLY}.get(arg.upper())
                if d is None:
                    raise ExtParseError(f'bad ctdir "{arg}": expected ORIGINAL or REPLY')
                kw["direction"] = d
            else:
                raise ExtParseError(f"conntrack: unknown option {n}")
        if not kw:
            raise ExtParseError("conntrack: expected at least one option")
        return cls(**kw)

    def render(self) -> list[str]:
        out: list[str] = []

        def inv(flag: bool) -> None:
            if flag:
                out.append("!")

        if self.state is not None:
            inv(self.state_inv)
            out += ["--ctstate", _render_states(self.state)]
        if self.proto is not None:
            inv(self.proto_inv)
            out += ["--ctproto", str(self.proto)]
        for n in _ADDR_OPTS:
            a = getattr(self, n[4:])
            if a is not None:
                inv(a.inverted)
                out += [n, render_addr_mask(a.addr, a.plen)]
        for n in _PORT_OPTS:
            p = getattr(self, n[4:])
            if p is not None:
                inv(p.inverted)
                out += [n, render_port_range(p.lo, p.hi)]
        if self.status is not None:
            inv(self.status_inv)
            out += ["--ctstatus",
                    ",".join(nm for nm, b in CTSTATUS_ORDER if self.status & b) or "NONE"]
        if self.expire is not None:
            inv(self.expire_inv)
            lo, hi = self.expire
            out += ["--ctexpire", str(lo) if lo == hi else f"{lo}:{hi}"]
        if self.direction is not None:
            out += ["--ctdir", self.direction.name]
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        if self.state is not None:
            bits = packet_ctstate(ctx, with_nat=True)
            if bool(self.state & bits) == self.state_inv:
                return False
        ct = ctx.ct
        if ct is None:
            return self.state is not None
        if self.direction is not None:
            if ctx.ctinfo is None:
                ctx.mark_uncertain("conntrack attached without a ctinfo: direction unknown")
                return False
            if CtInfo(ctx.ctinfo).direction is not self.direction:
                return False
        for n, d, side in (("origsrc", Dir.ORIGINAL, "src"), ("origdst", Dir.ORIGINAL, "dst"),
                           ("replsrc", Dir.REPLY, "src"), ("repldst", Dir.REPLY, "dst")):
            a = getattr(self, n)
            if a is not None:
                have = getattr(ct.tuple(d), side)
                if masked_equal(have, a.addr, a.plen) == a.inverted:
                    return False
        if self.proto is not None and (ct.proto == self.proto) == self.proto_inv:
            return False
        for n, d, side in (("origsrcport", Dir.ORIGINAL, "sport"),
                           ("origdstport", Dir.ORIGINAL, "dport"),
                           ("replsrcport", Dir.REPLY, "sport"),
                           ("repldstport", Dir.REPLY, "dport")):
            p = getattr(self, n)
            if p is not None:
                # tuple->src.u.all / dst.u.all: the port, or for ICMP the id / type<<8|code
                # (ConnTuple keeps them the same way)
                have = getattr(ct.tuple(d), side)
                if (p.lo <= have <= p.hi) == p.inverted:
                    return False
        if self.status is not None and bool(int(ct.status) & self.status) == self.status_inv:
            return False
        if self.expire is not None:
            # nf_ct_expires(ct) / HZ in whole seconds. An unconfirmed entry (the first
            # packet, before confirm) keeps a relative timeout that nf_ct_expires compares
            # with the jiffies clock: it reads 0 (seen on the 6.18 kernel: NEW -> 0).
            left = int(ct.remaining(ctx.now)) if ct.confirmed else 0
            if (self.expire[0] <= left <= self.expire[1]) == self.expire_inv:
                return False
        return True


@register_match
@dataclass(frozen=True)
class StateMatch(MatchExt):
    state: CtState = CtState(0)
    inverted: bool = False

    name: ClassVar[str] = "state"
    needs_conntrack: ClassVar[bool] = True
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--state", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "StateMatch":
        check_once("state", opts)
        if not opts or opts[0].name != "--state":
            raise ExtParseError('state: option "--state" must be specified')
        o = opts[0]
        mask = _parse_states(o.args[0], ("INVALID", "NEW", "RELATED", "ESTABLISHED",
                                         "UNTRACKED"), "state")
        return cls(mask, o.inverted)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--state", _render_states(self.state)]

    def matches(self, ctx: "EvalContext") -> bool:
        return bool(self.state & packet_ctstate(ctx, with_nat=False)) != self.inverted
