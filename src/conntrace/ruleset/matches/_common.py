"""Helpers shared by the match extensions: libxtables-style number, port, address and
rate parsing, and the small checks every parse does (no option twice, built-in hooks).

Number parsing follows C `strtoul(s, &end, 0)` as libxtables uses it (xtables_strtoul):
leading blanks skipped, `0x` hex, leading `0` octal, the whole string must be consumed.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

from ..ext import ExtParseError, Opt, ParseContext
from ..model import BUILTIN_CHAINS
from ._services import SERVICES_TCP, SERVICES_UDP

U32_MAX = 0xFFFFFFFF
HOOK_ORDER = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

# CONFIG_HZ of the reference kernel (6.18.44, /proc/config.gz): jiffies tick 250 times a
# second. hashlimit and recent count time in jiffies.
HZ = 250


def jiffies(now: float) -> int:
    """The virtual clock as a jiffies counter (jiffy 0 at t=0)."""
    return int(now * HZ)


# -- numbers ------------------------------------------------------------------------------
def c_strtoul(text: str) -> tuple[int, str] | None:
    """strtoul(text, &end, 0): (value, rest of the string), or None if no digits."""
    s = text.lstrip(" \t\n\r\f\v")
    if s.startswith("+"):
        s = s[1:]
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        digits, base, s = "0123456789abcdefABCDEF", 16, s[2:]
    elif s.startswith("0"):
        digits, base = "01234567", 8
    else:
        digits, base = "0123456789", 10
    n = 0
    while n < len(s) and s[n] in digits:
        n += 1
    if n == 0:
        return None
    return int(s[:n], base), s[n:]


def parse_uint(text: str, what: str, lo: int = 0, hi: int = U32_MAX) -> int:
    """A whole-string unsigned number in [lo, hi] (xtables_strtoui), else ExtParseError."""
    got = c_strtoul(text)
    if got is None or got[1] != "" or not lo <= got[0] <= hi:
        raise ExtParseError(f"{what}: expected a number {lo}-{hi}, got '{text}'")
    return got[0]


def parse_decimal(text: str, what: str, lo: int = 0, hi: int = U32_MAX) -> int:
    """A plain decimal number (for values iptables reads with atoi/strtoul base 10)."""
    t = text.strip()
    if not t.isdigit() or not lo <= int(t) <= hi:
        raise ExtParseError(f"{what}: expected a number {lo}-{hi}, got '{text}'")
    return int(t)


# -- ports --------------------------------------------------------------------------------
def parse_port(text: str, proto: str | None = None) -> int:
    """xtables_parse_port: a number 0-65535 (strtoul base 0) or a service name."""
    got = c_strtoul(text)
    if got is not None and got[1] == "" and got[0] <= 0xFFFF:
        return got[0]
    tables = {"tcp": (SERVICES_TCP,), "udp": (SERVICES_UDP,)}.get(
        proto or "", (SERVICES_TCP, SERVICES_UDP))
    for t in tables:
        if text in t:
            return t[text]
    raise ExtParseError(f"invalid port/service '{text}': expected a port 0-65535 or a "
                        "service name")


def parse_port_range(text: str, proto: str | None = None, check_order: bool = True
                     ) -> tuple[int, int]:
    """`a`, `a:b`, `:b` (0:b), `a:` (a:65535), `:` (0:65535) - xtables_parse_port_range."""
    if ":" not in text:
        p = parse_port(text, proto)
        return p, p
    lo_s, hi_s = text.split(":", 1)
    lo = parse_port(lo_s, proto) if lo_s else 0
    hi = parse_port(hi_s, proto) if hi_s else 0xFFFF
    if check_order and lo > hi:
        raise ExtParseError(f"invalid portrange (min > max) '{text}'")
    return lo, hi


def render_port_range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


# -- addresses ----------------------------------------------------------------------------
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_addr(text: str, family: int, what: str):
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise ExtParseError(f"{what}: expected an IPv{family} address, got '{text}'") from None
    if a.version != family:
        raise ExtParseError(f"{what}: expected an IPv{family} address, got '{text}'")
    return a


def parse_mask(text: str, family: int, what: str) -> int:
    """A prefix length, or (IPv4) a contiguous dotted netmask; returns the prefix length."""
    bits = 32 if family == 4 else 128
    if text.isdigit():
        n = int(text)
        if n > bits:
            raise ExtParseError(f"{what}: expected a prefix length 0-{bits}, got '{text}'")
        return n
    try:
        m = int(ipaddress.ip_address(text))
    except ValueError:
        raise ExtParseError(f"{what}: expected a netmask or prefix length, got '{text}'") from None
    n = bin(m).count("1")
    if m != ((1 << bits) - 1) ^ ((1 << (bits - n)) - 1):
        # iptables accepts it but iptables-save cannot print it back: refuse loudly
        raise ExtParseError(f"{what}: non-contiguous netmask '{text}' is not supported")
    return n


def parse_addr_mask(text: str, family: int, what: str) -> tuple[object, int]:
    """`addr[/mask]` as written (the address is kept unmasked, as the kernel stores it)."""
    a, _, m = text.partition("/")
    addr = parse_addr(a, family, what)
    plen = parse_mask(m, family, what) if m else (32 if family == 4 else 128)
    return addr, plen


def masked_equal(a, b, plen: int) -> bool:
    """((a ^ b) & mask) == 0 for a prefix-length mask (conntrack_addrcmp)."""
    if a.version != b.version:
        return False
    bits = a.max_prefixlen
    if plen == 0:
        return True
    return (int(a) ^ int(b)) >> (bits - plen) == 0


def addr_text(addr) -> str:
    """An address as iptables prints it (glibc inet_ntop: ::ffff:1.2.3.4 stays dotted)."""
    if addr.version == 6:
        from ..writer import inet6_ntop

        return inet6_ntop(addr)
    return str(addr)


def render_addr_mask(addr, plen: int) -> str:
    return addr_text(addr) if plen == addr.max_prefixlen else f"{addr_text(addr)}/{plen}"


# -- option bookkeeping -------------------------------------------------------------------
def check_once(ext: str, opts: Sequence[Opt], allow: Iterable[str] = ()) -> None:
    """iptables refuses most options twice in one match instance."""
    seen: set[str] = set()
    allowed = set(allow)
    for o in opts:
        if o.name in seen and o.name not in allowed:
            raise ExtParseError(f'{ext}: option "{o.name}" can only be used once')
        seen.add(o.name)


def check_exclusive(ext: str, opts: Sequence[Opt], *groups: tuple[str, ...]) -> None:
    names = [o.name for o in opts]
    for group in groups:
        used = [n for n in group if n in names]
        if len(used) > 1:
            raise ExtParseError(f'{ext}: option "{used[0]}" cannot be used together with '
                                f'"{used[1]}"')


def builtin_hooks(pctx: ParseContext) -> frozenset[str] | None:
    """The hook of the rule's chain when it is a built-in chain, else None (a user chain's
    hooks are known only once the whole table is loaded)."""
    if pctx.chain in BUILTIN_CHAINS.get(pctx.table, ()):
        return frozenset({pctx.chain})
    return None


def check_hooks(ext, pctx: ParseContext) -> None:
    hooks = builtin_hooks(pctx)
    if hooks is not None:
        err = ext.hook_error(hooks)
        if err:
            raise ExtParseError(err)


def require_proto(ext: str, pctx: ParseContext, proto: int, allow_inverted: bool = False) -> None:
    """xt_check_match: `.proto` set means `-p PROTO` must be given (and not inverted)."""
    if pctx.proto != proto or (pctx.proto_inverted and not allow_inverted):
        if pctx.proto_inverted and pctx.proto == proto and not allow_inverted:
            raise ExtParseError(f"{ext} match: only valid for protocol {proto} "
                                "(not with an inverted -p)")
        raise ExtParseError(f"{ext} match: only valid for protocol {proto}; "
                            f"expected -p {proto}")


def flags_from_names(text: str, table: dict[str, int], what: str, upper: bool = True) -> int:
    """A comma-separated list of names (case-insensitive) OR-ed together."""
    out = 0
    for tok in text.split(","):
        key = tok.upper() if upper else tok
        if key not in table:
            raise ExtParseError(f'{what}: bad value "{tok}", expected one of '
                                + ",".join(table))
        out |= table[key]
    return out


def names_of(value: int, table: Sequence[tuple[str, int]]) -> str:
    return ",".join(n for n, bit in table if value & bit)


# -- rates (limit, hashlimit) ---------------------------------------------------------------
# (name printed, seconds) from the longest unit down (libxt_limit.c rates[])
RATE_UNITS: tuple[tuple[str, int], ...] = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))
_UNIT_WORDS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))


def c_atoi(text: str) -> int:
    """C atoi/atoll: leading blanks, optional sign, digits; anything after is ignored."""
    s = text.lstrip()
    sign = -1 if s.startswith("-") else 1
    if s[:1] in "+-":
        s = s[1:]
    n = 0
    while n < len(s) and s[n].isdigit():
        n += 1
    return sign * int(s[:n]) if n else 0


def parse_rate(text: str, scale: int, what: str) -> tuple[int, int]:
    """libxt_limit/libxt_hashlimit parse_rate: `N[/second|minute|hour|day]` (any prefix of
    the unit word, case-insensitive) -> (avg = scale * unit_seconds / N, unit_seconds)."""
    num, slash, unit = text.partition("/")
    mult = 1
    if slash:
        for word, secs in _UNIT_WORDS:
            if unit and word.startswith(unit.lower()):
                mult = secs
                break
        else:
            raise ExtParseError(f"bad rate '{text}': expected N/second, N/minute, N/hour or N/day")
    r = c_atoi(num)
    if r <= 0:
        raise ExtParseError(f"bad rate '{text}': expected a positive number of packets")
    avg = scale * mult // r
    if avg == 0:
        raise ExtParseError(f"{what}: rate too fast '{text}'")
    return avg, mult


def pick_unit(avg: int, scale: int) -> tuple[int, str, int]:
    """print_rate (libxt_limit/libxt_hashlimit) and add_nft_limit: the longest unit that
    still expresses avg well. Returns (rate per unit, unit name, unit seconds)."""
    mults = [(name, secs * scale, secs) for name, secs in RATE_UNITS]
    i = 1
    while i < len(mults):
        m = mults[i][1]
        if avg > m or m // avg < m % avg:
            break
        i += 1
    name, m, secs = mults[i - 1]
    return m // avg, name, secs
