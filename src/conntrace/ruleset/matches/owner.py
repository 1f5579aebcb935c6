"""`-m owner` (net/netfilter/xt_owner.c owner_mt): the local socket that sent the packet.

Allowed only in OUTPUT and POSTROUTING. The socket comes from pkt.meta.sock_uid/gid/
sock_supplementary_gids (sock_uid None: no local socket, e.g. a forwarded packet). Without
a socket the kernel returns (match ^ invert) == 0: the rule matches exactly when every
option it has is inverted (`! --uid-owner 0` matches forwarded packets). A kernel control
socket (RSTs for closed ports, ICMP errors and echo replies: pkt.meta.sock_no_file) is a
socket without a file: `--socket-exists` matches, uid/gid options only when inverted. With a socket,
`! --socket-exists` fails; uid tests the fsuid; gid tests the fsgid and, with
--suppl-groups, the supplementary groups.

User and group names are resolved by iptables from the host's /etc/passwd and /etc/group;
only `root` (0) is universal, other names are reported as not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec, ParseContext,
                   register_match)
from ._common import U32_MAX, c_strtoul, check_hooks, check_once

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

_UNIVERSAL_NAMES = {"root": 0}


def _range(text: str, opt: str) -> tuple[int, int]:
    """owner_parse_range: `a`, `a-b` or `a:b`; -1 (4294967295) is not a valid id."""
    if text in _UNIVERSAL_NAMES:
        v = _UNIVERSAL_NAMES[text]
        return v, v
    got = c_strtoul(text)
    if got is None or got[0] > U32_MAX - 1:
        if got is None and not text[:1].isdigit():
            kind = "user" if opt == "--uid-owner" else "group"
            raise ExtUnsupported(opt, f"{kind} name '{text}' is resolved from the host's "
                                 f"{'/etc/passwd' if kind == 'user' else '/etc/group'}, which "
                                 "the model does not have; write the number")
        raise ExtParseError(f'owner: bad value for "{opt}": "{text}"')
    lo, rest = got
    hi = lo
    if rest[:1] in ("-", ":"):
        got2 = c_strtoul(rest[1:])
        if got2 is None or got2[0] > U32_MAX - 1:
            raise ExtParseError(f'owner: bad value for "{opt}": "{text}"')
        hi, rest = got2
    if rest:
        raise ExtParseError(f'owner: bad value for "{opt}": "{text}"')
    if hi < lo:  # owner_check: -EINVAL
        raise ExtParseError(f"owner: {opt} range {lo}-{hi} is reversed (the kernel refuses it)")
    return lo, hi


def _render_range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


@register_match
@dataclass(frozen=True)
class OwnerMatch(MatchExt):
    uid: tuple[int, int] | None = None
    uid_inv: bool = False
    gid: tuple[int, int] | None = None
    gid_inv: bool = False
    socket_exists: bool = False
    socket_inv: bool = False
    suppl_groups: bool = False

    name: ClassVar[str] = "owner"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"OUTPUT", "POSTROUTING"})
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--uid-owner", 1, True), OptionSpec("--gid-owner", 1, True),
        OptionSpec("--socket-exists", 0, True), OptionSpec("--suppl-groups", 0, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "OwnerMatch":
        check_once("owner", opts)
        kw: dict = {}
        unmodelled: ExtUnsupported | None = None
        for o in opts:
            if o.name in ("--uid-owner", "--gid-owner"):
                key = o.name[2:5]
                try:
                    kw[key] = _range(o.args[0], o.name)
                except ExtUnsupported as e:  # report it once every value is checked
                    unmodelled = unmodelled or e
                    kw[key] = (0, 0)
                kw[f"{key}_inv"] = o.inverted
            elif o.name == "--socket-exists":
                kw["socket_exists"], kw["socket_inv"] = True, o.inverted
            elif o.name == "--suppl-groups":
                if "gid" not in kw:
                    raise ExtParseError('owner: bad value for "--suppl-groups": you need to '
                                        "use --gid-owner first")
                kw["suppl_groups"] = True
            else:
                raise ExtParseError(f"owner: unknown option {o.name}")
        if not kw:
            raise ExtParseError("owner: expected --uid-owner, --gid-owner or --socket-exists")
        m = cls(**kw)
        check_hooks(m, pctx)
        if unmodelled is not None:
            raise unmodelled
        return m

    def render(self) -> list[str]:
        out: list[str] = []
        if self.socket_exists:
            out += (["!"] if self.socket_inv else []) + ["--socket-exists"]
        if self.uid is not None:
            out += (["!"] if self.uid_inv else []) + ["--uid-owner", _render_range(self.uid)]
        if self.gid is not None:
            out += (["!"] if self.gid_inv else []) + ["--gid-owner", _render_range(self.gid)]
        if self.suppl_groups:
            out.append("--suppl-groups")
        return out

    def matches(self, ctx: "EvalContext") -> bool:
        meta = ctx.pkt.meta
        if meta.sock_uid is None:
            given = [self.uid is not None, self.gid is not None, self.socket_exists]
            inverted = [self.uid_inv, self.gid_inv, self.socket_inv]
            if meta.sock_no_file:  # a socket without a file: only uid/gid must be inverted
                if self.socket_exists and self.socket_inv:
                    return False
                given, inverted = given[:2], inverted[:2]
            return all(inv for g, inv in zip(given, inverted) if g)
        if self.socket_exists and self.socket_inv:
            return False
        if self.uid is not None:
            hit = self.uid[0] <= meta.sock_uid <= self.uid[1]
            if hit == self.uid_inv:
                return False
        if self.gid is not None:
            if meta.sock_gid is None:
                ctx.mark_uncertain("owner --gid-owner: the sending socket has no gid set")
                return False
            hit = self.gid[0] <= meta.sock_gid <= self.gid[1]
            if not hit and self.suppl_groups:
                hit = any(self.gid[0] <= g <= self.gid[1] for g in meta.sock_supplementary_gids)
            if hit == self.gid_inv:
                return False
        return True
