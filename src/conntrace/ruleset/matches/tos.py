"""`-m tos` (revision 1) and `-m dscp` (net/netfilter/xt_dscp.c tos_mt / dscp_mt).

tos: (TOS byte & mask) == value; a number without mask means mask 0xff, a symbolic name
mask 0x3f (libxt_tos.c, tos_values.c). dscp: TOS >> 2 == value. iptables-save prints
`--tos 0x%02x/0x%02x` and `--dscp 0x%02x` (checked with iptables 1.8.9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import c_strtoul, check_exclusive, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

# tos_values.c (the old RFC 1349 names)
TOS_NAMES = {"minimize-cost": 0x02, "maximize-reliability": 0x04,
             "maximize-throughput": 0x08, "minimize-delay": 0x10, "normal-service": 0x00}
# libxt_dscp_helper.c ds_classes
DSCP_CLASSES = {
    "CS0": 0x00, "CS1": 0x08, "CS2": 0x10, "CS3": 0x18, "CS4": 0x20, "CS5": 0x28,
    "CS6": 0x30, "CS7": 0x38, "BE": 0x00, "AF11": 0x0a, "AF12": 0x0c, "AF13": 0x0e,
    "AF21": 0x12, "AF22": 0x14, "AF23": 0x16, "AF31": 0x1a, "AF32": 0x1c, "AF33": 0x1e,
    "AF41": 0x22, "AF42": 0x24, "AF43": 0x26, "EF": 0x2e,
}


def _parse_tos(text: str) -> tuple[int, int]:
    v = c_strtoul(text)
    if v is not None and v[0] <= 0xFF:
        if v[1] == "":
            return v[0], 0xFF
        if v[1].startswith("/"):
            m = c_strtoul(v[1][1:])
            if m is not None and m[1] == "" and m[0] <= 0xFF:
                return v[0], m[0]
    name = TOS_NAMES.get(text.lower())
    if name is None:
        raise ExtParseError(f'tos: symbolic name "{text}" is unknown: expected value[/mask] '
                            "or " + ", ".join(TOS_NAMES))
    return name, 0x3F


def _tos_byte(ctx: "EvalContext") -> int:
    return ctx.pkt.tos  # IPv6: the traffic class, same field in the model


@register_match
@dataclass(frozen=True)
class TosMatch(MatchExt):
    value: int = 0
    mask: int = 0xFF
    inverted: bool = False

    name: ClassVar[str] = "tos"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--tos", 1, True),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TosMatch":
        check_once("tos", opts)
        if len(opts) != 1 or opts[0].name != "--tos":
            raise ExtParseError('tos: option "--tos" must be specified')
        value, mask = _parse_tos(opts[0].args[0])
        return cls(value, mask, opts[0].inverted)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--tos", f"0x{self.value:02x}/0x{self.mask:02x}"]

    def matches(self, ctx: "EvalContext") -> bool:
        return ((_tos_byte(ctx) & self.mask) == self.value) != self.inverted


@register_match
@dataclass(frozen=True)
class DscpMatch(MatchExt):
    dscp: int = 0
    inverted: bool = False

    name: ClassVar[str] = "dscp"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--dscp", 1, True), OptionSpec("--dscp-class", 1, True),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "DscpMatch":
        check_once("dscp", opts)
        check_exclusive("dscp", opts, ("--dscp", "--dscp-class"))
        if len(opts) != 1:
            raise ExtParseError("dscp: expected --dscp or --dscp-class")
        o = opts[0]
        if o.name == "--dscp":
            v = c_strtoul(o.args[0])
            if v is None or v[1] != "" or v[0] > 63:
                raise ExtParseError('dscp: bad value for option "--dscp", or out of range '
                                    "(0-63)")
            return cls(v[0], o.inverted)
        cls_value = DSCP_CLASSES.get(o.args[0].upper())
        if cls_value is None:
            raise ExtParseError(f"dscp: invalid DSCP class '{o.args[0]}': expected one of "
                                + ", ".join(DSCP_CLASSES))
        return cls(cls_value, o.inverted)

    def render(self) -> list[str]:
        return (["!"] if self.inverted else []) + ["--dscp", f"0x{self.dscp:02x}"]

    def matches(self, ctx: "EvalContext") -> bool:
        return ((_tos_byte(ctx) >> 2) == self.dscp) != self.inverted
