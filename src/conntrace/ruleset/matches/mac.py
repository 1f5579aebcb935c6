"""`-m mac --mac-source XX:XX:XX:XX:XX:XX` (xt_mac.c mac_mt).

Only PREROUTING, INPUT and FORWARD (the frame's source is known there). A packet that did
not come from an Ethernet device (no source MAC, or loopback) never matches, `!` or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import check_hooks, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


def parse_mac(text: str) -> str:
    """xtables_parse_mac: six hex bytes of one or two digits separated by ':'."""
    parts = text.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ExtParseError(f"invalid MAC address '{text}': expected XX:XX:XX:XX:XX:XX")
    try:
        return ":".join(f"{int(p, 16):02x}" for p in parts)
    except ValueError:
        raise ExtParseError(f"invalid MAC address '{text}': expected XX:XX:XX:XX:XX:XX") from None


@register_match
@dataclass(frozen=True)
class MacMatch(MatchExt):
    mac: str = "00:00:00:00:00:00"
    inverted: bool = False

    name: ClassVar[str] = "mac"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "INPUT", "FORWARD"})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--mac-source", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "MacMatch":
        check_once("mac", opts)
        if len(opts) != 1 or opts[0].name != "--mac-source":
            raise ExtParseError('mac: option "--mac-source" must be specified')
        m = cls(parse_mac(opts[0].args[0]), opts[0].inverted)
        check_hooks(m, pctx)
        return m

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--mac-source", self.mac]

    def matches(self, ctx: "EvalContext") -> bool:
        src = ctx.pkt.meta.src_mac
        if src is None or ctx.in_iface in (None, "lo"):
            return False
        try:
            have = parse_mac(src)
        except ExtParseError:
            ctx.mark_uncertain(f"mac match: packet source MAC '{src}' is not a MAC address")
            return False
        return (have == self.mac) != self.inverted
