"""`-m iprange --src-range/--dst-range a[-b]` (xt_iprange.c iprange_mt4/6).

A reversed range is accepted (the kernel only logs "will never match")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import addr_text, check_once, parse_addr

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@dataclass(frozen=True)
class AddrRange:
    lo: object
    hi: object
    inverted: bool = False

    def test(self, addr) -> bool:
        inside = addr.version == self.lo.version and int(self.lo) <= int(addr) <= int(self.hi)
        return inside != self.inverted

    def __str__(self) -> str:
        return f"{addr_text(self.lo)}-{addr_text(self.hi)}"


def _range(text: str, family: int, what: str, inverted: bool) -> AddrRange:
    lo_s, dash, hi_s = text.partition("-")
    lo = parse_addr(lo_s, family, what)
    hi = parse_addr(hi_s, family, what) if dash else lo
    return AddrRange(lo, hi, inverted)


@register_match
@dataclass(frozen=True)
class IprangeMatch(MatchExt):
    src: AddrRange | None = None
    dst: AddrRange | None = None

    name: ClassVar[str] = "iprange"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--src-range", 1, True),
        OptionSpec("--dst-range", 1, True),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "IprangeMatch":
        check_once("iprange", opts)
        kw = {}
        for o in opts:
            if o.name not in ("--src-range", "--dst-range"):
                raise ExtParseError(f"iprange: unknown option {o.name}")
            kw[o.name[2:5]] = _range(o.args[0], pctx.family, o.name, o.inverted)
        if not kw:
            raise ExtParseError("iprange: expected --src-range or --dst-range")
        return cls(**kw)

    def render(self) -> list[str]:
        out: list[str] = []
        for opt, r in (("--src-range", self.src), ("--dst-range", self.dst)):
            if r is not None:
                out += (["!"] if r.inverted else []) + [opt, str(r)]
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        if self.src is not None and not self.src.test(ctx.pkt.src):
            return False
        if self.dst is not None and not self.dst.test(ctx.pkt.dst):
            return False
        return True
