"""The standard target: built-in verdicts and jumps to user chains (xt_standard_target).

ACCEPT, DROP, QUEUE and RETURN are not extensions in the kernel but verdict codes of the
standard target (include/uapi/linux/netfilter.h, XT_RETURN in x_tables.h); iptables finds
them by name like any target. `-j CHAIN` / `-g CHAIN` is the same target with a jump
offset and, for -g, the IPT_F_GOTO flag on the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, Opt, ParseContext, TargetExt, register_target
from ...netfilter.verdict import ACCEPT, DROP, RETURN, Verdict, VerdictKind

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


class _Verdict(TargetExt):
    """A standard verdict: no options, renders as just `-j NAME`."""

    verdict: ClassVar[Verdict]

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "_Verdict":
        if opts:
            raise ExtParseError(f"{cls.name} takes no options (got {opts[0].written or opts[0].name})")
        return cls()

    def render(self) -> list[str]:
        return []

    def apply(self, ctx: "EvalContext") -> Verdict:
        return self.verdict


@register_target
@dataclass(frozen=True)
class AcceptTarget(_Verdict):
    name: ClassVar[str] = "ACCEPT"
    terminal: ClassVar[bool] = True
    verdict: ClassVar[Verdict] = ACCEPT


@register_target
@dataclass(frozen=True)
class DropTarget(_Verdict):
    name: ClassVar[str] = "DROP"
    terminal: ClassVar[bool] = True
    verdict: ClassVar[Verdict] = DROP
    # iptables refuses DROP in the nat table in userspace (xshared.c do_parse)
    valid_tables: ClassVar[frozenset[str] | None] = frozenset(
        {"raw", "mangle", "filter", "security"})


@register_target
@dataclass(frozen=True)
class ReturnTarget(_Verdict):
    name: ClassVar[str] = "RETURN"
    # Ends the current chain: rules after an unconditional RETURN are unreachable.
    terminal: ClassVar[bool] = True
    verdict: ClassVar[Verdict] = RETURN


@register_target
@dataclass(frozen=True)
class QueueTarget(_Verdict):
    """The old `-j QUEUE` (NF_QUEUE to queue 0). Userspace is not modelled: with no
    listener the kernel drops the packet (nf_queue without bypass)."""

    name: ClassVar[str] = "QUEUE"
    terminal: ClassVar[bool] = True
    verdict: ClassVar[Verdict] = Verdict(VerdictKind.QUEUE, reason="queue 0 (userspace not modelled)")


@dataclass(frozen=True)
class JumpTarget(TargetExt):
    """`-j CHAIN` (goto=False) or `-g CHAIN` (goto=True) to a user-defined chain.

    Built by the parser once the chain name is known to be a chain; never looked up by name
    in TARGETS. A jump is not terminal (the chain may RETURN); a goto effectively is for the
    calling chain, since a RETURN from the target chain skips it."""

    chain: str
    goto: bool = False
    name: ClassVar[str] = "<jump>"

    @property
    def terminal(self) -> bool:  # type: ignore[override]
        return self.goto

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "JumpTarget":  # pragma: no cover
        raise ExtParseError("a jump is built from -j/-g CHAIN, not parsed from options")

    def render(self) -> list[str]:
        return ["-g" if self.goto else "-j", self.chain]

    def apply(self, ctx: "EvalContext") -> Verdict:
        return Verdict(VerdictKind.GOTO if self.goto else VerdictKind.JUMP, chain=self.chain)


STANDARD_VERDICTS = ("ACCEPT", "DROP", "QUEUE", "RETURN")
