"""`-m multiport` (net/netfilter/xt_multiport.c revision 1, libxt_multiport.c).

Up to 15 port slots (XT_MULTI_PORTS); a range `a:b` takes two. One of --sports, --dports
or --ports per match; `!` inverts the whole list. The ports are read from the first four
bytes of the L4 header, so it needs -p tcp/udp/udplite/sctp/dccp (not inverted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...packet import TcpHeader, UdpHeader
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import parse_port

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

XT_MULTI_PORTS = 15
# protocols with ports first in their header (libxt_multiport.c check_proto)
_PORT_PROTOS = {6: "tcp", 17: "udp", 136: "udplite", 132: "sctp", 33: "dccp"}
_FLAG_OPTION = {"src": "--sports", "dst": "--dports", "any": "--ports"}


@register_match
@dataclass(frozen=True)
class MultiportMatch(MatchExt):
    direction: str = "dst"  # "src", "dst" or "any" (XT_MULTIPORT_SOURCE/DESTINATION/EITHER)
    ports: tuple[tuple[int, int], ...] = ()
    inverted: bool = False

    name: ClassVar[str] = "multiport"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--sports", 1, True, ("--source-ports",)),
        OptionSpec("--dports", 1, True, ("--destination-ports",)),
        OptionSpec("--ports", 1, True),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "MultiportMatch":
        proto = _PORT_PROTOS.get(pctx.proto or 0)
        if proto is None or pctx.proto_inverted:
            raise ExtParseError("multiport needs '-p tcp', '-p udp', '-p udplite', '-p sctp' "
                                "or '-p dccp'")
        if not opts:
            raise ExtParseError("multiport: expected --sports, --dports or --ports")
        if len(opts) > 1:
            raise ExtParseError(f'multiport: option "{opts[1].name}" cannot be used together '
                                f'with "{opts[0].name}"')
        o = opts[0]
        direction = {"--sports": "src", "--dports": "dst", "--ports": "any"}.get(o.name)
        if direction is None:
            raise ExtParseError(f"multiport: unknown option {o.name}")
        ports: list[tuple[int, int]] = []
        slots = 0
        for item in o.args[0].split(","):
            if ":" in item:
                lo_s, hi_s = item.split(":", 1)
                lo, hi = parse_port(lo_s, proto), parse_port(hi_s, proto)
                if lo > hi:
                    raise ExtParseError(f"multiport: invalid portrange '{item}' (min > max)")
                slots += 2
            else:
                lo = hi = parse_port(item, proto)
                slots += 1
            ports.append((lo, hi))
        if slots > XT_MULTI_PORTS:
            raise ExtParseError(f"multiport: too many ports specified (at most {XT_MULTI_PORTS}"
                                " slots; a range takes two)")
        return cls(direction, tuple(ports), o.inverted)

    def render(self) -> list[str]:
        items = ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self.ports)
        return (["!"] if self.inverted else []) + [_FLAG_OPTION[self.direction], items]

    def matches(self, ctx: "EvalContext") -> bool:
        pkt = ctx.pkt
        if pkt.is_fragment:
            return False
        l4 = pkt.l4
        if not isinstance(l4, (TcpHeader, UdpHeader)):
            ctx.mark_uncertain(f"multiport on a {pkt.describe().split()[0]} packet: its port "
                               "fields are not modelled")
            return False
        src, dst = l4.sport, l4.dport
        for lo, hi in self.ports:
            if self.direction == "src":
                hit = lo <= src <= hi
            elif self.direction == "dst":
                hit = lo <= dst <= hi
            else:
                hit = lo <= src <= hi or lo <= dst <= hi
            if hit:
                return not self.inverted
        return self.inverted
