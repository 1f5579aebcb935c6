"""`-m quota --quota BYTES` (net/netfilter/xt_quota.c quota_mt): a per-rule byte budget.

A packet matches while the remaining quota covers its length (IP total length), which is
then taken off; the first packet that does not fit empties the quota, so nothing matches
afterwards. `!` inverts. iptables-nft 1.8.9 keeps it as the xt match (nft --debug)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_once, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@dataclass
class QuotaLeft:
    bytes: int


@register_match
@dataclass(frozen=True)
class QuotaMatch(MatchExt):
    quota: int = 0
    inverted: bool = False

    name: ClassVar[str] = "quota"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--quota", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "QuotaMatch":
        check_once("quota", opts)
        if len(opts) != 1 or opts[0].name != "--quota":
            raise ExtParseError('quota: option "--quota" must be specified')
        return cls(parse_uint(opts[0].args[0], "--quota", 0, 2**64 - 1), opts[0].inverted)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--quota", str(self.quota)]

    def matches(self, ctx: "EvalContext") -> bool:
        left = ctx.rule_state(self, lambda: QuotaLeft(self.quota))
        length = ctx.pkt.total_len
        if left.bytes >= length:
            left.bytes -= length
            return not self.inverted
        left.bytes = 0
        return self.inverted
