"""TRACE: flag the packet for rule tracing (net/netfilter/xt_TRACE.c: skb->nf_trace = 1).

xt_TRACE is registered with .table = "raw", so legacy iptables refuses it elsewhere. Note:
iptables-nft translates -j TRACE to `meta nftrace set 1`, which the kernel accepts in any
table; the model follows xt_TRACE (raw only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, Opt, ParseContext, TargetExt, register_target
from ._common import check_table_hook

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@register_target
@dataclass(frozen=True)
class TraceTarget(TargetExt):
    name: ClassVar[str] = "TRACE"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TraceTarget":
        check_table_hook(cls, pctx)
        if opts:
            raise ExtParseError(f"takes no options (got {opts[0].written or opts[0].name})")
        return cls()

    def render(self) -> list[str]:
        return []

    def apply(self, ctx: "EvalContext") -> Verdict:
        ctx.pkt.meta.nf_trace = True
        return CONTINUE
