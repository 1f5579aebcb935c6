"""`-m ttl` (net/ipv4/netfilter/ipt_ttl.c) and `-m hl` for IPv6 (ip6t_hl.c).

Exactly one of -eq/-gt/-lt; only -eq can be inverted (`! --ttl-eq` is the kernel's NE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_once, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


def _parse(cls, opts: Sequence[Opt], prefix: str):
    names = (f"--{prefix}-eq", f"--{prefix}-gt", f"--{prefix}-lt")
    check_once(cls.name, opts)
    if len(opts) != 1 or opts[0].name not in names:
        if len(opts) > 1:
            raise ExtParseError(f'{cls.name}: option "{opts[1].name}" cannot be used together '
                                f'with "{opts[0].name}"')
        raise ExtParseError(f"{cls.name}: expected one of " + ", ".join(names))
    o = opts[0]
    value = parse_uint(o.args[0], o.name, 0, 255)
    mode = o.name.rsplit("-", 1)[1]
    if o.inverted:
        mode = "ne"
    return cls(mode, value)


def _render(mode: str, value: int, prefix: str) -> list[str]:
    if mode == "ne":
        return ["!", f"--{prefix}-eq", str(value)]
    return [f"--{prefix}-{mode}", str(value)]


def _test(mode: str, have: int, value: int) -> bool:
    return {"eq": have == value, "ne": have != value, "lt": have < value,
            "gt": have > value}[mode]


@register_match
@dataclass(frozen=True)
class TtlMatch(MatchExt):
    mode: str = "eq"  # eq, ne, lt, gt
    value: int = 0

    name: ClassVar[str] = "ttl"
    families: ClassVar[frozenset[int]] = frozenset({4})
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--ttl-eq", 1, True), OptionSpec("--ttl-gt", 1, False),
        OptionSpec("--ttl-lt", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TtlMatch":
        return _parse(cls, opts, "ttl")

    def render(self) -> list[str]:
        return _render(self.mode, self.value, "ttl")

    def matches(self, ctx: "EvalContext") -> bool:
        return _test(self.mode, ctx.pkt.ttl, self.value)


@register_match
@dataclass(frozen=True)
class HlMatch(MatchExt):
    mode: str = "eq"
    value: int = 0

    name: ClassVar[str] = "hl"
    families: ClassVar[frozenset[int]] = frozenset({6})
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--hl-eq", 1, True), OptionSpec("--hl-gt", 1, False),
        OptionSpec("--hl-lt", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "HlMatch":
        return _parse(cls, opts, "hl")

    def render(self) -> list[str]:
        return _render(self.mode, self.value, "hl")

    def matches(self, ctx: "EvalContext") -> bool:
        return _test(self.mode, ctx.pkt.ttl, self.value)
