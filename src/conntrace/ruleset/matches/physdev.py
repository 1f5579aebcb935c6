"""`-m physdev` (net/netfilter/xt_physdev.c): the bridge ports a bridged packet used.

Bridges are not modelled: every option is parsed, checked like the kernel does, and the
match is reported as not modelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec, ParseContext,
                   register_match)
from ._common import check_hooks, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

IFNAMSIZ = 16
_ORDER = ("--physdev-is-in", "--physdev-in", "--physdev-is-out", "--physdev-out",
          "--physdev-is-bridged")


@register_match
@dataclass(frozen=True)
class PhysdevMatch(MatchExt):
    opts: tuple[tuple[str, str | None, bool], ...] = ()  # (option, device or None, inverted)

    name: ClassVar[str] = "physdev"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--physdev-in", 1, True), OptionSpec("--physdev-out", 1, True),
        OptionSpec("--physdev-is-in", 0, True), OptionSpec("--physdev-is-out", 0, True),
        OptionSpec("--physdev-is-bridged", 0, True),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "PhysdevMatch":
        check_once("physdev", opts)
        got = {}
        for o in opts:
            if o.name not in _ORDER:
                raise ExtParseError(f"physdev: unknown option {o.name}")
            dev = o.args[0] if o.args else None
            if dev is not None and not 0 < len(dev) < IFNAMSIZ:
                raise ExtParseError(f"physdev: bad interface name '{dev}'")
            got[o.name] = (o.name, dev, o.inverted)
        if not got:
            raise ExtParseError("PHYSDEV: no physdev option specified")
        m = cls(tuple(got[n] for n in _ORDER if n in got))
        check_hooks(m, pctx)
        raise ExtUnsupported(m.opts[0][0], "bridges are not modelled")

    def hook_error(self, hooks: frozenset[str]) -> str | None:
        names = {n: inv for n, _d, inv in self.opts}
        bridged = "--physdev-is-bridged" in names and not names["--physdev-is-bridged"]
        if (("--physdev-out" in names or "--physdev-is-out" in names) and not bridged
                and "OUTPUT" in hooks):
            return ("--physdev-out and --physdev-is-out only supported in the FORWARD and "
                    "POSTROUTING chains with bridged traffic")
        return None

    def render(self) -> list[str]:
        out: list[str] = []
        for n, dev, inv in self.opts:
            out += (["!"] if inv else []) + [n] + ([dev] if dev is not None else [])
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        ctx.mark_uncertain("physdev match: bridges are not modelled")
        return False
