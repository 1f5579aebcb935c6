"""TTL: set, decrement or increment the IPv4 TTL (net/netfilter/xt_HL.c ttl_tg).

The result saturates at 0 and 255; the rule is mangle-only (.table = "mangle")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import arg, check_exclusive, check_plain, check_table_hook, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

_OPS = ("--ttl-set", "--ttl-dec", "--ttl-inc")
_MODES = ("set", "dec", "inc")


@register_target
@dataclass(frozen=True)
class TtlTarget(TargetExt):
    mode: str  # "set", "dec" or "inc"
    value: int

    name: ClassVar[str] = "TTL"
    families: ClassVar[frozenset[int]] = frozenset({4})  # IPv6 has HL
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    options: ClassVar[tuple[OptionSpec, ...]] = tuple(OptionSpec(n) for n in _OPS)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"TTL mode must be one of {_MODES}")

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TtlTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, _OPS)
        if not opts:
            raise ExtParseError("an action is required (--ttl-set, --ttl-dec or --ttl-inc)")
        o = opts[0]
        mode = o.name[len("--ttl-"):]
        # libipt_TTL: set takes 0-255, dec/inc 1-255
        value = parse_uint(arg(o), f"{o.name}", 0 if mode == "set" else 1, 255)
        return cls(mode, value)

    def render(self) -> list[str]:
        return [f"--ttl-{self.mode}", str(self.value)]

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        if self.mode == "set":
            pkt.ttl = self.value
        elif self.mode == "inc":
            pkt.ttl = min(255, pkt.ttl + self.value)
        else:
            pkt.ttl = max(0, pkt.ttl - self.value)
        return CONTINUE
