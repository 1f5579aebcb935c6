"""TRACE: flag the packet for rule tracing (net/netfilter/xt_TRACE.c: skb->nf_trace = 1).

xt_TRACE is registered with .table = "raw", so legacy iptables refuses it elsewhere. Note:
iptables-nft translates -j TRACE to `meta nftrace set 1`, which the kernel accepts in any
table; the model follows xt_TRACE (raw only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import register_target
from ._common import OptionlessTarget

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@register_target
@dataclass(frozen=True)
class TraceTarget(OptionlessTarget):
    name: ClassVar[str] = "TRACE"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})

    def apply(self, ctx: "EvalContext") -> Verdict:
        ctx.pkt.meta.nf_trace = True
        return CONTINUE
