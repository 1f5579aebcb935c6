"""MARK: rewrite the packet mark (net/netfilter/xt_mark.c mark_tg, revision 2).

Every option is stored as the kernel's (mark, mask) pair, which is also what iptables-save
prints: `--set-xmark mark/mask`; the kernel does skb->mark = (skb->mark & ~mask) ^ mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import U32_MAX, arg, check_exclusive, check_plain, check_table_hook, parse_mark_mask, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

_OPS = ("--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark")


def xmark_from_option(name: str, text: str, ext: str) -> tuple[int, int]:
    """(mark, mask) for one MARK/CONNMARK operation, as libxt_MARK/libxt_CONNMARK fill it:
    --set-mark v/m keeps the bits of v too (mask v|m); and/or/xor take a bare number."""
    what = name
    if name == "--set-xmark":
        return parse_mark_mask(text, what)
    if name == "--set-mark":
        value, mask = parse_mark_mask(text, what)
        return value, value | mask
    value = parse_uint(text, what, 0, U32_MAX)
    if name == "--and-mark":
        return 0, ~value & U32_MAX
    if name == "--or-mark":
        return value, value
    return value, 0  # --xor-mark


@register_target
@dataclass(frozen=True)
class MarkTarget(TargetExt):
    mark: int
    mask: int = U32_MAX

    name: ClassVar[str] = "MARK"
    options: ClassVar[tuple[OptionSpec, ...]] = tuple(OptionSpec(n) for n in _OPS)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "MarkTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, _OPS)
        if not opts:
            raise ExtParseError("one of --set-xmark, --set-mark, --and-mark, --or-mark "
                                "or --xor-mark is required")
        mark, mask = xmark_from_option(opts[0].name, arg(opts[0]), cls.name)
        return cls(mark, mask)

    def render(self) -> list[str]:
        return ["--set-xmark", f"0x{self.mark:x}/0x{self.mask:x}"]

    def apply(self, ctx: "EvalContext") -> Verdict:
        meta = ctx.pkt.meta
        meta.mark = ((meta.mark & ~self.mask) ^ self.mark) & U32_MAX
        return CONTINUE
