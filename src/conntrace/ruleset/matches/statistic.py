"""`-m statistic` (net/netfilter/xt_statistic.c statistic_mt, libxt_statistic.c).

random: iptables stores lround(p * 2^31); a packet matches when
(get_random_u32() & 0x7FFFFFFF) < that value, drawn here from ctx.rng. iptables-save
prints the stored value back as %.11f of value / 2^31 (0.1 -> 0.10000000009).
nth: iptables stores every-1 and starts the per-rule counter at (every-1) - packet; each
evaluated packet moves it on (wrapping from every-1 to 0) and matches when it reaches 0,
so `--every N --packet P` matches the (P+1)-th, (P+1+N)-th ... packet the rule sees.
`!` (on --probability or --every) inverts the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import U32_MAX, check_exclusive, check_once, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

PROB_SCALE = 0x80000000


@dataclass
class NthCounter:
    count: int


@register_match
@dataclass(frozen=True)
class StatisticMatch(MatchExt):
    mode: str = "random"
    probability: int = 0  # lround(p * 2^31)
    every: int = 1  # as written (the kernel keeps every-1)
    packet: int = 0
    inverted: bool = False

    name: ClassVar[str] = "statistic"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--mode", 1, False), OptionSpec("--probability", 1, True),
        OptionSpec("--every", 1, True), OptionSpec("--packet", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "StatisticMatch":
        check_once("statistic", opts)
        check_exclusive("statistic", opts, ("--probability", "--every"),
                        ("--probability", "--packet"))
        given = {o.name: o for o in opts}
        if "--mode" not in given:
            raise ExtParseError('statistic: option "--mode" must be specified')
        mode = given["--mode"].args[0]
        if mode not in ("random", "nth"):
            raise ExtParseError(f"statistic: bad mode '{mode}': expected random or nth")
        inverted = any(o.inverted for o in opts)
        if mode == "random":
            o = given.get("--probability")
            if o is None:
                raise ExtParseError("--probability must be specified when using random mode")
            try:
                p = float(o.args[0])
            except ValueError:
                p = math.nan
            if not 0.0 <= p <= 1.0:
                raise ExtParseError('statistic: bad value for option "--probability", or out '
                                    "of range (0-1)")
            return cls("random", math.floor(PROB_SCALE * p + 0.5), inverted=inverted)
        if "--every" not in given or "--packet" not in given:
            raise ExtParseError("--every and --packet must be specified when using nth mode")
        every = parse_uint(given["--every"].args[0], "--every", 1, U32_MAX)
        packet = parse_uint(given["--packet"].args[0], "--packet", 0, U32_MAX)
        if packet > every - 1:
            raise ExtParseError("the --packet p must be 0 <= p <= n-1")
        return cls("nth", every=every, packet=packet, inverted=inverted)

    def render(self) -> list[str]:
        inv = ["!"] if self.inverted else []
        if self.mode == "random":
            return ["--mode", "random", *inv, "--probability",
                    f"{self.probability / PROB_SCALE:.11f}"]
        return ["--mode", "nth", *inv, "--every", str(self.every), "--packet", str(self.packet)]

    def matches(self, ctx: "EvalContext") -> bool:
        if self.mode == "random":
            hit = (ctx.rng.getrandbits(32) & 0x7FFFFFFF) < self.probability
            return hit != self.inverted
        last = self.every - 1
        st = ctx.rule_state(self, lambda: NthCounter(last - self.packet))
        st.count = 0 if st.count == last else st.count + 1
        return (st.count == 0) != self.inverted
