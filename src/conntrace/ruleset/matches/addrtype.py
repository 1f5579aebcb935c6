"""`-m addrtype` (net/netfilter/xt_addrtype.c revision 1, addrtype_mt_v1).

The type of an address is inet_dev_addr_type(): the RTN_* class the local routing table
gives it (Host.addr_type). With --limit-iface-in/out only routes through the packet's
input/output device count. Load-time checks (addrtype_mt_checkentry_v1) are kept with
the kernel's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...host.netdev import RouteType
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_hooks, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

# XT_ADDRTYPE_x = 1 << RTN_x, printed in bit order (libxt_addrtype.c rtn_names)
ADDRTYPE_NAMES: tuple[tuple[str, int], ...] = tuple((t.name, 1 << t.value) for t in RouteType)
_BY_NAME = dict(ADDRTYPE_NAMES)


def _types(text: str) -> int:
    out = 0
    for tok in text.split(","):
        bit = _BY_NAME.get(tok.upper())
        if bit is None:
            raise ExtParseError(f'addrtype: bad type "{tok}": expected a comma list of '
                                + ",".join(_BY_NAME))
        out |= bit
    return out


def _names(mask: int) -> str:
    return ",".join(n for n, b in ADDRTYPE_NAMES if mask & b)


@register_match
@dataclass(frozen=True)
class AddrtypeMatch(MatchExt):
    src_types: int = 0  # 0: not given
    src_inv: bool = False
    dst_types: int = 0
    dst_inv: bool = False
    limit_iface: str | None = None  # "in" or "out"

    name: ClassVar[str] = "addrtype"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--src-type", 1, True), OptionSpec("--dst-type", 1, True),
        OptionSpec("--limit-iface-in", 0, False), OptionSpec("--limit-iface-out", 0, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "AddrtypeMatch":
        check_once("addrtype", opts)
        kw: dict = {}
        for o in opts:
            if o.name == "--src-type":
                kw["src_types"], kw["src_inv"] = _types(o.args[0]), o.inverted
            elif o.name == "--dst-type":
                kw["dst_types"], kw["dst_inv"] = _types(o.args[0]), o.inverted
            elif o.name in ("--limit-iface-in", "--limit-iface-out"):
                if "limit_iface" in kw:
                    raise ExtParseError('addrtype: option "--limit-iface-in" cannot be used '
                                        'together with "--limit-iface-out"')
                kw["limit_iface"] = o.name.rsplit("-", 1)[1]
            else:
                raise ExtParseError(f"addrtype: unknown option {o.name}")
        if not kw.get("src_types") and not kw.get("dst_types"):
            raise ExtParseError("addrtype: you must specify --src-type or --dst-type")
        m = cls(**kw)
        if pctx.family == 6:
            both = m.src_types | m.dst_types
            if both & _BY_NAME["BLACKHOLE"]:
                raise ExtParseError("ipv6 BLACKHOLE matching not supported")
            if both >= _BY_NAME["PROHIBIT"]:
                raise ExtParseError("ipv6 PROHIBIT (THROW, NAT ..) matching not supported")
            if both & _BY_NAME["BROADCAST"]:
                raise ExtParseError("ipv6 does not support BROADCAST matching")
        check_hooks(m, pctx)
        return m

    def hook_error(self, hooks: frozenset[str]) -> str | None:
        if self.limit_iface == "out" and hooks & {"PREROUTING", "INPUT"}:
            return "output interface limitation not valid in PREROUTING and INPUT"
        if self.limit_iface == "in" and hooks & {"POSTROUTING", "OUTPUT"}:
            return "input interface limitation not valid in POSTROUTING and OUTPUT"
        return None

    def render(self) -> list[str]:
        out: list[str] = []
        if self.src_types:
            out += (["!"] if self.src_inv else []) + ["--src-type", _names(self.src_types)]
        if self.dst_types:
            out += (["!"] if self.dst_inv else []) + ["--dst-type", _names(self.dst_types)]
        if self.limit_iface:
            out.append(f"--limit-iface-{self.limit_iface}")
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        dev = None
        if self.limit_iface == "in":
            dev = ctx.in_iface
        elif self.limit_iface == "out":
            dev = ctx.out_iface
        if self.src_types:
            t = ctx.host.addr_type(ctx.pkt.src, dev)
            if bool(self.src_types & (1 << t.value)) == self.src_inv:
                return False
        if self.dst_types:
            t = ctx.host.addr_type(ctx.pkt.dst, dev)
            if bool(self.dst_types & (1 << t.value)) == self.dst_inv:
                return False
        return True
