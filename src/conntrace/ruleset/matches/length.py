"""`-m length --length a[:b]` (xt_length.c): the IPv4 total length (IPv6: payload length
plus the 40-byte header)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_once, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@register_match
@dataclass(frozen=True)
class LengthMatch(MatchExt):
    min: int = 0
    max: int = 0xFFFF
    inverted: bool = False

    name: ClassVar[str] = "length"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--length", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "LengthMatch":
        check_once("length", opts)
        if len(opts) != 1 or opts[0].name != "--length":
            raise ExtParseError('length: option "--length" must be specified')
        text = opts[0].args[0]
        lo_s, colon, hi_s = text.partition(":")
        lo = parse_uint(lo_s, "--length", 0, 0xFFFF) if lo_s else 0
        hi = (parse_uint(hi_s, "--length", 0, 0xFFFF) if hi_s else 0xFFFF) if colon else lo
        # a reversed range is accepted and never matches
        return cls(lo, hi, opts[0].inverted)

    def render(self) -> list[str]:
        v = str(self.min) if self.min == self.max else f"{self.min}:{self.max}"
        return (["!"] if self.inverted else []) + ["--length", v]

    def matches(self, ctx: "EvalContext") -> bool:
        return (self.min <= ctx.pkt.total_len <= self.max) != self.inverted
