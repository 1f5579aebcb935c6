"""`-m policy` (net/netfilter/xt_policy.c policy_mt): the IPsec policy a packet was
decapsulated with (--dir in) or will be encapsulated with (--dir out).

IPsec is not modelled, so no packet ever carries a security path or an xfrm bundle: the
kernel's match_policy_in/out then return -1, and policy_mt answers "true" for
`--pol none` and "false" for `--pol ipsec`, whatever the elements say. Element options
(--strict --reqid --spi --proto --mode --tunnel-src --tunnel-dst --next) are parsed and
reported as not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec, ParseContext,
                   register_match)
from ._common import check_hooks, parse_addr_mask, parse_uint

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

XT_POLICY_MAX_ELEM = 4
_ELEMENT_OPTS = ("--reqid", "--spi", "--proto", "--mode", "--tunnel-src", "--tunnel-dst")


@register_match
@dataclass(frozen=True)
class PolicyMatch(MatchExt):
    direction: str = "in"
    pol: str = "ipsec"  # "none" or "ipsec"
    strict: bool = False
    elements: tuple[tuple[tuple[str, str, bool], ...], ...] = ()  # as written, not modelled

    name: ClassVar[str] = "policy"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--dir", 1, False), OptionSpec("--pol", 1, False),
        OptionSpec("--strict", 0, False), OptionSpec("--next", 0, False),
        *(OptionSpec(n, 1, True, repeatable=True) for n in _ELEMENT_OPTS),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "PolicyMatch":
        kw: dict = {}
        elements: list[list[tuple[str, str, bool]]] = [[]]
        for o in opts:
            n = o.name
            if n in ("--dir", "--pol", "--strict") and n[2:] in kw:
                raise ExtParseError(f'policy: option "{n}" can only be used once')
            if n == "--dir":
                if o.args[0] not in ("in", "out"):
                    raise ExtParseError(f'policy_match: invalid dir "{o.args[0]}": expected in '
                                        "or out")
                kw["dir"] = o.args[0]
            elif n == "--pol":
                if o.args[0] not in ("none", "ipsec"):
                    raise ExtParseError(f'policy match: invalid policy "{o.args[0]}": expected '
                                        "none or ipsec")
                kw["pol"] = o.args[0]
            elif n == "--strict":
                kw["strict"] = True
            elif n == "--next":
                if not elements[-1]:
                    raise ExtParseError("policy match: empty policy element before --next")
                elements.append([])
                if len(elements) > XT_POLICY_MAX_ELEM:
                    raise ExtParseError("policy match: too many policy elements")
            elif n in _ELEMENT_OPTS:
                _check_element(n, o.args[0], pctx.family)
                if any(e[0] == n for e in elements[-1]):
                    raise ExtParseError(f"policy match: double {n} option")
                elements[-1].append((n, o.args[0], o.inverted))
            else:
                raise ExtParseError(f"policy: unknown option {n}")
        if "dir" not in kw:
            raise ExtParseError("policy match: neither --dir in nor --dir out specified")
        elems = tuple(tuple(e) for e in elements if e)
        m = cls(kw["dir"], kw.get("pol", "ipsec"), kw.get("strict", False), elems)
        check_hooks(m, pctx)
        if m.strict or m.elements:
            first = "--strict" if m.strict else m.elements[0][0][0]
            raise ExtUnsupported(first, "IPsec policy elements are not modelled")
        return m

    def hook_error(self, hooks: frozenset[str]) -> str | None:
        if self.direction == "out" and hooks & {"PREROUTING", "INPUT"}:
            return "output policy not valid in PREROUTING and INPUT"
        if self.direction == "in" and hooks & {"POSTROUTING", "OUTPUT"}:
            return "input policy not valid in POSTROUTING and OUTPUT"
        return None

    def render(self) -> list[str]:
        out = ["--dir", self.direction, "--pol", self.pol]
        if self.strict:
            out.append("--strict")
        for i, elem in enumerate(self.elements):
            if i:
                out.append("--next")
            for n, v, inv in elem:
                out += (["!"] if inv else []) + [n, v]
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        # no packet has IPsec state (skb_sec_path / dst->xfrm): match_policy_* return -1
        return self.pol == "none"


def _check_element(opt: str, value: str, family: int) -> None:
    if opt == "--reqid":
        parse_uint(value, opt)
    elif opt == "--spi":
        parse_uint(value, opt)
    elif opt == "--proto":
        if value.lower() not in ("esp", "ah", "ipcomp", "50", "51", "108"):
            raise ExtParseError(f"policy match: protocol '{value}' is not allowed: expected "
                                "esp, ah or ipcomp")
    elif opt == "--mode":
        if value not in ("transport", "tunnel"):
            raise ExtParseError(f"policy match: invalid mode '{value}': expected transport or "
                                "tunnel")
    else:
        parse_addr_mask(value, family, opt)
