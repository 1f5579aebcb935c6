"""CT and NOTRACK: raw-table conntrack templates (net/netfilter/xt_CT.c).

- `--notrack` / NOTRACK: the packet is marked untracked (nf_ct_set(skb, NULL,
  IP_CT_UNTRACKED)); conntrack_in then leaves it alone and it matches --ctstate UNTRACKED.
- `--zone N` / `--zone mark`: a template the conntrack lookup reads (nf_ct_zone_tmpl).
- A packet that already carries a conntrack, a template or the untracked mark is left as it
  is ("Previously seen (loopback)? Ignore." in xt_ct_target / notrack_tg): the first CT
  rule wins.
- `--helper`, `--timeout`, `--ctevents`, `--expevents` and per-direction zones are not
  modelled: parse raises ExtUnsupported so the rule is reported and kept verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from ...netfilter.effects import Note
from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, ExtUnsupported, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import OptionlessTarget, arg, check_plain, check_table_hook, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext
    from ...packet import Packet

ZONE_MASK = 0xFFFF  # NF_CT_DEFAULT_ZONE_MASK: --zone mark uses the low 16 bits of the mark

# libxt_CT.c ct_event_tbl / exp_event_tbl (validated, then reported as unsupported)
CT_EVENTS = ("new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark",
             "natseqinfo", "secmark")
EXP_EVENTS = ("new",)


@dataclass(frozen=True)
class CtTemplate:
    """What `-j CT` attaches for conntrack_in (pkt.meta.ct_template).

    `zone` is the zone id; with `zone_from_mark` it was taken from the packet mark when the
    CT rule ran, and `zone_for(pkt)` re-reads the mark like the kernel does at lookup time."""

    zone: int = 0
    zone_from_mark: bool = False

    def zone_for(self, pkt: "Packet") -> int:
        return pkt.meta.mark & ZONE_MASK if self.zone_from_mark else self.zone


def _already_seen(meta: Any) -> bool:
    return meta.ct is not None or meta.untracked or meta.ct_template is not None


@register_target
@dataclass(frozen=True)
class CtTarget(TargetExt):
    notrack: bool = False
    zone: int = 0
    zone_from_mark: bool = False

    name: ClassVar[str] = "CT"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})
    needs_conntrack: ClassVar[bool] = True
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--notrack", nargs=0), OptionSpec("--helper"), OptionSpec("--timeout"),
        OptionSpec("--ctevents"), OptionSpec("--expevents"), OptionSpec("--zone"),
        OptionSpec("--zone-orig"), OptionSpec("--zone-reply"),
    )

    def __post_init__(self) -> None:
        if self.notrack:
            # xt_ct_tg_check returns before nf_ct_netns_get for --notrack: a ruleset whose
            # only conntrack user is CT --notrack does not switch conntrack on.
            object.__setattr__(self, "needs_conntrack", False)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "CtTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        notrack = False
        zone, from_mark = 0, False
        dirs: set[str] = set()
        unsupported: tuple[str, str] | None = None
        for o in opts:
            a = arg(o)
            if o.name == "--notrack":
                notrack = True
            elif o.name in ("--zone", "--zone-orig", "--zone-reply"):
                if o.name != "--zone":
                    dirs.add(o.name)
                if a.lower() == "mark":
                    from_mark = True  # XT_CT_ZONE_MARK stays set once given
                else:
                    try:
                        zone = parse_uint(a, f"{o.name}", 0, ZONE_MASK)
                    except ExtParseError:
                        raise ExtParseError(f"{o.name}: cannot parse '{a}' as a zone id "
                                            "(expected 0-65535 or 'mark')") from None
            elif o.name in ("--ctevents", "--expevents"):
                table = CT_EVENTS if o.name == "--ctevents" else EXP_EVENTS
                for ev in a.split(","):
                    if ev not in table:
                        raise ExtParseError(f"{o.name}: unknown event type '{ev}' (expected "
                                            f"a comma list of {', '.join(table)})")
                unsupported = unsupported or (o.name, "conntrack event filtering is not modelled")
            elif o.name == "--helper":
                unsupported = unsupported or (o.name, f"conntrack helper '{a}' is not modelled")
            else:  # --timeout
                unsupported = unsupported or (o.name, f"timeout policy '{a}' is not modelled")
        zoned = zone != 0 or from_mark
        if zoned and len(dirs) == 1:
            unsupported = unsupported or (dirs.pop(), "per-direction conntrack zones are not "
                                                      "modelled")
        if unsupported is not None:
            raise ExtUnsupported(*unsupported)
        return cls(notrack, 0 if from_mark else zone, from_mark)

    def render(self) -> list[str]:
        out = ["--notrack"] if self.notrack else []
        if self.zone_from_mark:
            out += ["--zone", "mark"]
        elif self.zone:
            out += ["--zone", str(self.zone)]
        return out

    def apply(self, ctx: "EvalContext") -> Verdict:
        meta = ctx.pkt.meta
        if _already_seen(meta):
            ctx.emit(Note("CT: the packet already has a conntrack, template or NOTRACK; "
                          "left as it is"))
            return CONTINUE
        if self.notrack:
            meta.untracked = True
            return CONTINUE
        zone = meta.mark & ZONE_MASK if self.zone_from_mark else self.zone
        meta.ct_template = CtTemplate(zone, self.zone_from_mark)
        return CONTINUE


@register_target
@dataclass(frozen=True)
class NotrackTarget(OptionlessTarget):
    """The old NOTRACK target: CT --notrack without options (xt_CT.c notrack_tg)."""

    name: ClassVar[str] = "NOTRACK"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})

    def apply(self, ctx: "EvalContext") -> Verdict:
        meta = ctx.pkt.meta
        if not _already_seen(meta):
            meta.untracked = True
        return CONTINUE
