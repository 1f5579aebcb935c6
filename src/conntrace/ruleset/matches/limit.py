"""`-m limit --limit N/unit --limit-burst B`.

iptables-nft 1.8.9 does not load xt_limit: it translates the match into the native nft
`limit` expression (net/netfilter/nft_limit.c; seen with `nft --debug=netlink`), so that is
the arithmetic modelled here:
- iptables first computes xt_rateinfo.avg = 10000 * unit_seconds / N (integer), then picks
  the largest unit whose rate is still exact (nft.c add_nft_limit) and hands nft
  rate = unit_scale / avg per unit (`--limit 9999/sec` becomes 10000/second);
- nft_limit keeps a bucket of nanoseconds: cost = unit_ns / rate per packet, capacity
  cost * burst, starting full; time refills it 1:1. A packet passes when the bucket holds
  at least `cost`. Burst 0 is the kernel's default 5.
So 3/second burst 5 passes 5 packets at once, then one every 333333333 ns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_once, parse_rate, parse_uint, pick_unit

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

XT_LIMIT_SCALE = 10000
XT_LIMIT_BURST = 5
NFT_LIMIT_PKT_BURST_DEFAULT = 5
NSEC_PER_SEC = 1_000_000_000


@dataclass
class NftBucket:
    tokens: int
    last: int  # ns


@register_match
@dataclass(frozen=True)
class LimitMatch(MatchExt):
    rate: int = 3  # packets per `unit` seconds, as nft holds it
    unit: int = 3600
    burst: int = XT_LIMIT_BURST

    name: ClassVar[str] = "limit"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--limit", 1, False), OptionSpec("--limit-burst", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "LimitMatch":
        check_once("limit", opts)
        avg = XT_LIMIT_SCALE * 3600 // 3  # default 3/hour
        burst = XT_LIMIT_BURST
        for o in opts:
            if o.name == "--limit":
                avg, _ = parse_rate(o.args[0], XT_LIMIT_SCALE, "limit")
            elif o.name == "--limit-burst":
                burst = parse_uint(o.args[0], "--limit-burst", 0, 10000)
            else:
                raise ExtParseError(f"limit: unknown option {o.name}")
        rate, _name, unit = pick_unit(avg, XT_LIMIT_SCALE)
        return cls(rate, unit, burst or NFT_LIMIT_PKT_BURST_DEFAULT)

    def render(self) -> list[str]:
        # iptables-save converts back: avg = 10000 * unit / rate, then print_rate
        avg = XT_LIMIT_SCALE * self.unit // self.rate
        rate, unit_name, _ = pick_unit(avg, XT_LIMIT_SCALE)
        out = ["--limit", f"{rate}/{unit_name}"]
        if self.burst != XT_LIMIT_BURST:
            out += ["--limit-burst", str(self.burst)]
        return out

    @property
    def cost(self) -> int:
        return self.unit * NSEC_PER_SEC // self.rate

    def matches(self, ctx: "EvalContext") -> bool:
        now = round(ctx.now * NSEC_PER_SEC)
        cap = self.cost * self.burst
        st = ctx.rule_state(self, lambda: NftBucket(cap, now))
        tokens = min(st.tokens + now - st.last, cap)
        st.last = now
        if tokens >= self.cost:
            st.tokens = tokens - self.cost
            return True
        st.tokens = tokens
        return False
