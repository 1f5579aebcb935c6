"""`-m set --match-set NAME src,dst[,...]` (net/netfilter/xt_set.c revision 4,
libxt_set.c).

Membership is ruleset/ipset.py's match_packet(ipset, pkt, flags, now=) on the IpSet in
host.ext_state.ipsets[NAME] (family, dimension and per-type rules live there; `now` is
the virtual clock, the sets being loaded at t=0, for entries with a timeout). A set
missing at evaluation time is reported in the trace (the kernel refuses to load a rule
naming a set that does not exist) and the rule does not match.

--return-nomatch and the counter tests (--packets-eq/lt/gt, --bytes-eq/lt/gt) are parsed
and reported as not modelled. `! --update-counters` / `! --update-subcounters` only stop
the set's own counters from moving and do not change the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec, ParseContext,
                   register_match)
from ..ipset import match_packet
from ._common import check_once, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

IPSET_DIM_MAX = 6
IPSET_MAXNAMELEN = 32
_COUNTER_OPTS = ("--packets-eq", "--packets-lt", "--packets-gt",
                 "--bytes-eq", "--bytes-lt", "--bytes-gt")


@register_match
@dataclass(frozen=True)
class SetMatch(MatchExt):
    set_name: str = ""
    dirs: tuple[str, ...] = ("src",)
    inverted: bool = False
    return_nomatch: bool = False
    update_counters: bool = True
    update_subcounters: bool = True
    packets: tuple[str, int, bool] | None = None  # (op, value, inverted)
    bytes: tuple[str, int, bool] | None = None

    name: ClassVar[str] = "set"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--match-set", 2, True, ("--set",)),
        OptionSpec("--return-nomatch", 0, False),
        OptionSpec("--update-counters", 0, True),
        OptionSpec("--update-subcounters", 0, True),
        OptionSpec("--packets-eq", 1, True), OptionSpec("--packets-lt", 1, False),
        OptionSpec("--packets-gt", 1, False),
        OptionSpec("--bytes-eq", 1, True), OptionSpec("--bytes-lt", 1, False),
        OptionSpec("--bytes-gt", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "SetMatch":
        if sum(o.name == "--match-set" for o in opts) > 1:
            raise ExtParseError("--match-set can be specified only once")
        check_once("set", opts)
        kw: dict = {}
        for o in opts:
            n = o.name
            if n == "--match-set":
                name, flags = o.args
                if not name or len(name.encode()) >= IPSET_MAXNAMELEN:
                    raise ExtParseError(f"set: bad set name '{name}' (1-{IPSET_MAXNAMELEN - 1} "
                                        "characters)")
                dirs = tuple(flags.split(","))
                if len(dirs) > IPSET_DIM_MAX:
                    raise ExtParseError(f"Can't be more src/dst options than {IPSET_DIM_MAX}.")
                if any(d not in ("src", "dst") for d in dirs):
                    raise ExtParseError("You must specify (the comma separated list of) 'src' "
                                        "or 'dst'.")
                kw.update(set_name=name, dirs=dirs, inverted=o.inverted)
            elif n == "--return-nomatch":
                kw["return_nomatch"] = True
            elif n == "--update-counters":
                kw["update_counters"] = not o.inverted
            elif n == "--update-subcounters":
                kw["update_subcounters"] = not o.inverted
            elif n in _COUNTER_OPTS:
                what, op = n[2:].split("-")
                if what in kw:
                    raise ExtParseError(f"only one of the --{what}-[eq|lt|gt] is allowed")
                kw[what] = (op, parse_uint(o.args[0], n, 0, 2**64 - 1), o.inverted)
            else:
                raise ExtParseError(f"set: unknown option {n}")
        if "set_name" not in kw:
            raise ExtParseError("You must specify --match-set with set name and flags.")
        m = cls(**kw)
        if m.return_nomatch:
            raise ExtUnsupported("--return-nomatch", "nomatch set elements are not modelled")
        if m.packets or m.bytes:
            raise ExtUnsupported(f"--{'packets' if m.packets else 'bytes'}-"
                                 f"{(m.packets or m.bytes)[0]}", "ipset counters are not modelled")
        return m

    def render(self) -> list[str]:
        out = (["!"] if self.inverted else []) + ["--match-set", self.set_name, ",".join(self.dirs)]
        if self.return_nomatch:
            out.append("--return-nomatch")
        if not self.update_counters:
            out += ["!", "--update-counters"]
        if not self.update_subcounters:
            out += ["!", "--update-subcounters"]
        for what in ("packets", "bytes"):
            c = getattr(self, what)
            if c is not None:
                out += (["!"] if c[2] else []) + [f"--{what}-{c[0]}", str(c[1])]
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        ipset = ctx.host.ext_state.ipsets.get(self.set_name)
        if ipset is None:
            ctx.mark_uncertain(f"ipset '{self.set_name}' does not exist on {ctx.host.name} (the "
                               "kernel refuses to load a rule naming a missing set)")
            return False
        return match_packet(ipset, ctx.pkt, self.dirs, now=ctx.now) != self.inverted
