"""NFLOG: pass the packet to nfnetlink_log group N (net/netfilter/xt_NFLOG.c); the rule
traversal continues. Emits an NflogMessage with a copy of the packet.

iptables-nft translates NFLOG to nft's `log group`: `--nflog-range` (which never worked) is
accepted and dropped, the prefix is kept whole and threshold 0 is the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.effects import NflogMessage
from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, SaveString, TargetExt, register_target
from ._common import U32_MAX, arg, check_exclusive, check_plain, check_table_hook, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


@register_target
@dataclass(frozen=True)
class NflogTarget(TargetExt):
    group: int = 0
    prefix: str = ""
    size: int | None = None  # --nflog-size (XT_NFLOG_F_COPY_LEN); None: whole packet
    threshold: int = 0

    name: ClassVar[str] = "NFLOG"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--nflog-group"), OptionSpec("--nflog-prefix"), OptionSpec("--nflog-range"),
        OptionSpec("--nflog-size"), OptionSpec("--nflog-threshold"))

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "NflogTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, ("--nflog-range", "--nflog-size"))
        group, prefix, size, threshold = 0, "", None, 0
        for o in opts:
            a = arg(o)
            if o.name == "--nflog-group":
                group = parse_uint(a, "--nflog-group", 0, 0xFFFF)
            elif o.name == "--nflog-prefix":
                if a == "":
                    raise ExtParseError("--nflog-prefix: expected a non-empty prefix")
                if "\n" in a:
                    raise ExtParseError("--nflog-prefix: newlines are not allowed")
                prefix = a
            elif o.name == "--nflog-range":
                parse_uint(a, "--nflog-range", 0, U32_MAX)  # validated, then ignored
            elif o.name == "--nflog-size":
                size = parse_uint(a, "--nflog-size", 0, U32_MAX)
            else:
                threshold = parse_uint(a, "--nflog-threshold", 0, 0xFFFF)
        return cls(group, prefix, size, threshold)

    def render(self) -> list[str]:
        out: list[str] = []
        if self.prefix:
            out += ["--nflog-prefix", SaveString(self.prefix)]
        if self.group:
            out += ["--nflog-group", str(self.group)]
        if self.size is not None:
            out += ["--nflog-size", str(self.size)]
        if self.threshold:
            out += ["--nflog-threshold", str(self.threshold)]
        return out

    def apply(self, ctx: "EvalContext") -> Verdict:
        ctx.emit(NflogMessage(self.group, self.prefix, ctx.pkt.snapshot()))
        return CONTINUE
