"""`-m comment --comment TEXT` (xt_comment.c): always matches.

The kernel keeps 256 bytes with the terminating NUL, so iptables stores at most 255 bytes
of the text (longer comments are cut silently, seen with iptables 1.8.9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, SaveString, register_match
from ._common import check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

XT_MAX_COMMENT_LEN = 256


@register_match
@dataclass(frozen=True)
class CommentMatch(MatchExt):
    comment: str = ""

    name: ClassVar[str] = "comment"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--comment", 1, False),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "CommentMatch":
        check_once("comment", opts)
        if len(opts) != 1 or opts[0].name != "--comment":
            raise ExtParseError('comment: option "--comment" must be specified')
        raw = opts[0].args[0].encode()[:XT_MAX_COMMENT_LEN - 1]
        return cls(raw.decode(errors="ignore"))

    def render(self) -> list[str]:
        return ["--comment", SaveString(self.comment)]

    def matches(self, ctx: "EvalContext") -> bool:
        return True
