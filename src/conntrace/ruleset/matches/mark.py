"""`-m mark` (xt_mark.c mark_mt) and `-m connmark` (xt_connmark.c connmark_mt).

Both test (mark & mask) == value, the value kept as written (not pre-masked: `--mark 7/0`
never matches). iptables-save prints hex, the mask only when it is not 0xffffffff.
connmark reads the conntrack's mark; a packet without a conntrack (invalid, untracked)
never matches, `!` or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import U32_MAX, c_strtoul, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


def parse_mark_mask(text: str, ext: str) -> tuple[int, int]:
    """`value[/mask]`, each a C number (0x.., 0.. octal) up to 0xffffffff."""
    v = c_strtoul(text)
    if v is not None and v[0] <= U32_MAX:
        rest = v[1]
        if rest == "":
            return v[0], U32_MAX
        if rest.startswith("/"):
            m = c_strtoul(rest[1:])
            if m is not None and m[1] == "" and m[0] <= U32_MAX:
                return v[0], m[0]
    raise ExtParseError(f'{ext}: bad value for option "--mark": expected value[/mask] '
                        f"with 32-bit numbers, got '{text}'")


def render_mark_mask(value: int, mask: int) -> str:
    return f"{value:#x}" if mask == U32_MAX else f"{value:#x}/{mask:#x}"


def _one(cls, opts: Sequence[Opt]):
    check_once(cls.name, opts)
    if len(opts) != 1 or opts[0].name != "--mark":
        raise ExtParseError(f'{cls.name}: option "--mark" must be specified')
    o = opts[0]
    value, mask = parse_mark_mask(o.args[0], cls.name)
    return cls(value, mask, o.inverted)


@register_match
@dataclass(frozen=True)
class MarkMatch(MatchExt):
    mark: int = 0
    mask: int = U32_MAX
    inverted: bool = False

    name: ClassVar[str] = "mark"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--mark", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "MarkMatch":
        return _one(cls, opts)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--mark", render_mark_mask(self.mark, self.mask)]

    def matches(self, ctx: "EvalContext") -> bool:
        return ((ctx.pkt.meta.mark & self.mask) == self.mark) != self.inverted


@register_match
@dataclass(frozen=True)
class ConnmarkMatch(MatchExt):
    mark: int = 0
    mask: int = U32_MAX
    inverted: bool = False

    name: ClassVar[str] = "connmark"
    needs_conntrack: ClassVar[bool] = True
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--mark", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "ConnmarkMatch":
        return _one(cls, opts)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--mark", render_mark_mask(self.mark, self.mask)]

    def matches(self, ctx: "EvalContext") -> bool:
        ct = ctx.ct
        if ct is None:
            return False
        return ((ct.mark & self.mask) == self.mark) != self.inverted
