"""Option parsing shared by the target extensions: libxtables number, mark/mask and port
syntax (libxtables/xtables.c, xtoptions.c) and the kernel's table/hook checks
(x_tables.c xt_check_target), with the same wording in errors. Messages do not repeat the
extension's name: the parser puts "NAME target: " in front."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from ..ext import ExtParseError, Opt, ParseContext, TargetExt

U32_MAX = 0xFFFFFFFF
HOOK_ORDER = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

# strtoumax(s, &end, 0): 0x-hex, 0-octal or decimal prefix
_NUM = re.compile(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def strtoul_prefix(text: str) -> tuple[int, str] | None:
    """The number at the start of `text` and the rest, as strtoumax(base 0) reads it; None
    when no digits start the text. A leading minus is refused like xtables_strtoul does."""
    if text.lstrip().startswith("-"):
        return None
    m = _NUM.match(text)
    if m is None:
        return None
    digits = m.group(1)
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return value, text[m.end():]


def parse_uint(text: str, what: str, lo: int = 0, hi: int = U32_MAX) -> int:
    """A whole-string unsigned number (decimal, 0x-hex or 0-octal) in [lo, hi]."""
    got = strtoul_prefix(text)
    if got is None or got[1] != "" or not lo <= got[0] <= hi:
        raise ExtParseError(f"{what}: expected a number from {lo} to {hi}, got '{text}'")
    return got[0]


def parse_mark_mask(text: str, what: str) -> tuple[int, int]:
    """`value[/mask]` (xtables_parse_mark_mask); a missing mask is 0xffffffff."""
    value_text, sep, mask_text = text.partition("/")
    got = strtoul_prefix(value_text)
    if got is None or got[1] != "" or got[0] > U32_MAX or (sep and mask_text == ""):
        raise ExtParseError(f"{what}: expected value[/mask] with 32-bit numbers, got '{text}'")
    if not sep:
        return got[0], U32_MAX
    mask = strtoul_prefix(mask_text)
    if mask is None or mask[1] != "" or mask[0] > U32_MAX:
        raise ExtParseError(f"{what}: expected value[/mask] with 32-bit numbers, got '{text}'")
    return got[0], mask[0]


def check_plain(ext: str, opts: Sequence[Opt]) -> None:
    """Target options cannot be inverted and, like every xtables option without
    XTOPT_MULTI, can be given only once."""
    seen: set[str] = set()
    for o in opts:
        if o.inverted:
            raise ExtParseError(f"option '{o.written or o.name}' cannot be inverted")
        if o.name in seen:
            raise ExtParseError(f"option '{o.written or o.name}' can only be used once")
        seen.add(o.name)


def check_exclusive(ext: str, opts: Sequence[Opt], names: Iterable[str]) -> None:
    """At most one option of the group (xt_option_entry.excl)."""
    group = set(names)
    used = [o for o in opts if o.name in group]
    if len(used) > 1:
        raise ExtParseError(f"option '{used[0].name}' cannot be used together with "
                            f"'{used[1].name}'")


def arg(opt: Opt) -> str:
    return opt.args[0] if opt.args else ""


def check_table_hook(cls, pctx: ParseContext) -> None:
    """xt_check_target: the target's .table and .hooks, with the kernel's own messages
    ("only valid in filter table, not raw"). A user chain's hooks are only
    known once the ruleset is loaded; `hook_error` covers that case."""
    tables = cls.valid_tables
    if tables is not None and pctx.table not in tables:
        only = "/".join(sorted(tables))
        raise ExtParseError(f"only valid in {only} table, not {pctx.table}")
    if pctx.chain in HOOK_ORDER:
        msg = hook_error(cls, frozenset({pctx.chain}))
        if msg:
            raise ExtParseError(msg.split(" target: ", 1)[1])


def hook_error(cls, hooks: frozenset[str]) -> str | None:
    """The kernel's refusal when the target is reachable from `hooks` (built-in chains)."""
    valid = cls.valid_hooks
    if valid is None or hooks <= valid:
        return None
    used = "/".join(h for h in HOOK_ORDER if h in hooks)
    allowed = "/".join(h for h in HOOK_ORDER if h in valid)
    return f"{cls.name} target: used from hooks {used}, but only usable from {allowed}"


def addr_text(addr) -> str:
    """An address as iptables-save prints it (glibc inet_ntop: ::ffff:a.b.c.d for IPv6)."""
    if addr.version == 4:
        return str(addr)
    from ..writer import inet6_ntop  # lazy: the writer imports the targets package

    return inet6_ntop(addr)


class OptionlessTarget(TargetExt):
    """A target that takes no options (NOTRACK, TRACE): parse checks only where it may be
    used; it renders as just `-j NAME`."""

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext):
        check_table_hook(cls, pctx)
        if opts:
            raise ExtParseError(f"takes no options (got {opts[0].written or opts[0].name})")
        return cls()

    def render(self) -> list[str]:
        return []
