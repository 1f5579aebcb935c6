"""`-m nfacct --nfacct-name NAME` (net/netfilter/xt_nfacct.c): counts the packet into the
named nfacct object and matches (an object without a quota always matches).

Deviation: the kernel refuses the rule when the object does not exist (created with the
`nfacct` tool); the model creates a missing object on first use instead, in
host.ext_state.nfacct. Quotas are not modelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...host.extstate import NfacctCounter
from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, SaveString, register_match
from ._common import check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

NFACCT_NAME_MAX = 32


@register_match
@dataclass(frozen=True)
class NfacctMatch(MatchExt):
    acct_name: str = ""

    name: ClassVar[str] = "nfacct"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--nfacct-name", 1, False),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "NfacctMatch":
        check_once("nfacct", opts)
        if len(opts) != 1 or opts[0].name != "--nfacct-name":
            raise ExtParseError('nfacct: option "--nfacct-name" must be specified')
        text = opts[0].args[0]
        if not text:
            raise ExtParseError("nfacct: --nfacct-name must not be empty")
        if "\n" in text:
            raise ExtParseError("Newlines not allowed in --nfacct-name")
        return cls(text.encode()[:NFACCT_NAME_MAX - 1].decode(errors="ignore"))

    def render(self) -> list[str]:
        return ["--nfacct-name", SaveString(self.acct_name)]

    def matches(self, ctx: "EvalContext") -> bool:
        c = ctx.host.ext_state.nfacct.get(self.acct_name)
        if c is None:
            c = ctx.host.ext_state.nfacct[self.acct_name] = NfacctCounter(self.acct_name)
        c.packets += 1
        c.bytes += ctx.pkt.total_len
        return True
