"""TOS and DSCP: rewrite the IPv4 TOS / IPv6 traffic class byte (net/netfilter/xt_DSCP.c).

TOS:  tos = (tos & ~mask) ^ value            (tos_tg, revision 1; iptables-save prints
                                              every form as --set-tos value/mask)
DSCP: tos = (tos & 0x03) | (dscp << 2)        (dscp_tg keeps the two ECN bits)
Both are mangle-only (.table = "mangle").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import arg, check_exclusive, check_plain, check_table_hook, parse_uint, strtoul_prefix

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

# extensions/tos_values.c: a symbolic --set-tos zeroes only the low 6 bits (mask 0x3f)
TOS_SYMBOLS = {
    "minimize-delay": 0x10, "maximize-throughput": 0x08, "maximize-reliability": 0x04,
    "minimize-cost": 0x02, "normal-service": 0x00,
}
TOS_SYMBOL_MASK = 0x3F

# extensions/dscp_helper.c ds_classes[], in table order (the lookup is a prefix match)
DSCP_CLASSES = (
    ("CS0", 0x00), ("CS1", 0x08), ("CS2", 0x10), ("CS3", 0x18), ("CS4", 0x20),
    ("CS5", 0x28), ("CS6", 0x30), ("CS7", 0x38), ("BE", 0x00),
    ("AF11", 0x0A), ("AF12", 0x0C), ("AF13", 0x0E), ("AF21", 0x12), ("AF22", 0x14),
    ("AF23", 0x16), ("AF31", 0x1A), ("AF32", 0x1C), ("AF33", 0x1E), ("AF41", 0x22),
    ("AF42", 0x24), ("AF43", 0x26), ("EF", 0x2E),
)
DSCP_MAX = 0x3F
ECN_MASK = 0x03

_TOS_OPS = ("--set-tos", "--and-tos", "--or-tos", "--xor-tos")


def parse_tos_value_mask(text: str) -> tuple[int, int]:
    """`value[/mask]` (8-bit numbers; no mask means 0xff) or a symbolic name (mask 0x3f),
    as xtopt_parse_tosmask reads --set-tos."""
    got = strtoul_prefix(text)
    if got is not None and got[0] <= 0xFF:
        value, rest = got
        mask = 0xFF
        if rest.startswith("/"):
            m = strtoul_prefix(rest[1:])
            if m is None or m[0] > 0xFF:
                raise ExtParseError(f"--set-tos: illegal value '{text}' (expected value[/mask] "
                                    "with 8-bit numbers)")
            mask, rest = m
        if rest:
            raise ExtParseError(f"--set-tos: illegal value '{text}' (expected value[/mask] "
                                "with 8-bit numbers)")
        return value, mask
    sym = TOS_SYMBOLS.get(text.lower())
    if sym is None:
        names = ", ".join(("Minimize-Delay", "Maximize-Throughput", "Maximize-Reliability",
                           "Minimize-Cost", "Normal-Service"))
        raise ExtParseError(f"--set-tos: symbolic name '{text}' is unknown (expected "
                            f"value[/mask] or one of {names})")
    return sym, TOS_SYMBOL_MASK


def dscp_from_class(text: str) -> int:
    """class_to_dscp: the first class whose name starts the text, case-insensitively."""
    up = text.upper()
    for cls_name, value in DSCP_CLASSES:
        if up.startswith(cls_name):
            return value
    raise ExtParseError(f"--set-dscp-class: invalid class '{text}' (expected CS0-CS7, "
                        "AF11-AF43, EF or BE)")


@register_target
@dataclass(frozen=True)
class TosTarget(TargetExt):
    value: int
    mask: int = 0xFF

    name: ClassVar[str] = "TOS"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    options: ClassVar[tuple[OptionSpec, ...]] = tuple(OptionSpec(n) for n in _TOS_OPS)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TosTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, _TOS_OPS)
        if not opts:
            raise ExtParseError("an action is required (--set-tos, --and-tos, --or-tos "
                                "or --xor-tos)")
        o = opts[0]
        if o.name == "--set-tos":
            return cls(*parse_tos_value_mask(arg(o)))
        bits = parse_uint(arg(o), f"{o.name}", 0, 0xFF)
        if o.name == "--and-tos":
            return cls(0, ~bits & 0xFF)
        if o.name == "--or-tos":
            return cls(bits, bits)
        return cls(bits, 0)

    def render(self) -> list[str]:
        return ["--set-tos", f"0x{self.value:02x}/0x{self.mask:02x}"]

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        pkt.tos = ((pkt.tos & ~self.mask) ^ self.value) & 0xFF
        return CONTINUE


@register_target
@dataclass(frozen=True)
class DscpTarget(TargetExt):
    dscp: int

    name: ClassVar[str] = "DSCP"
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--set-dscp"),
                                                 OptionSpec("--set-dscp-class"))

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "DscpTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, ("--set-dscp", "--set-dscp-class"))
        if not opts:
            raise ExtParseError("--set-dscp or --set-dscp-class is required")
        o = opts[0]
        if o.name == "--set-dscp":
            return cls(parse_uint(arg(o), "--set-dscp", 0, DSCP_MAX))
        return cls(dscp_from_class(arg(o)))

    def render(self) -> list[str]:
        return ["--set-dscp", f"0x{self.dscp:02x}"]

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        pkt.tos = (pkt.tos & ECN_MASK) | (self.dscp << 2)
        return CONTINUE
