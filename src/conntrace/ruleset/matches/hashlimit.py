"""`-m hashlimit` (net/netfilter/xt_hashlimit.c revision 3, libxt_hashlimit.c).

One token bucket per hash key (the packet's srcip/dstip masked to --hashlimit-srcmask/
dstmask, and srcport/dstport, as --hashlimit-mode selects), in a table named by
--hashlimit-name shared by every rule using that name (host.ext_state.hashlimit). The
table keeps the settings of the rule that created it (htable_create copies the config).

Packet mode, the kernel's integer credit arithmetic in jiffies (HZ = 250):
  avg  = 1000000 * unit_seconds / N                     (iptables, XT_HASHLIMIT_SCALE_v2)
  CPJ  = the power of two below 2^64 / (HZ * 86400)     (CREDITS_PER_JIFFY)
  cost = avg * (HZ * CPJ / 1000000), credit_cap = cost * burst
A new entry starts with credit_cap; each jiffy adds CPJ up to the cap; a packet passes
when credit >= cost and takes cost. --hashlimit-upto matches the packets that pass,
--hashlimit-above (or `!`) the ones that do not.

Byte mode (`--hashlimit-upto 1kb/s`) and --hashlimit-rate-match are parsed and rendered
but not modelled. The table size limits (--hashlimit-htable-size/-max) are parsed but
never reached by the model.

Entries idle for --hashlimit-htable-expire ms (default: the rate's unit, e.g. 60000 for
N/min) are removed by a garbage collector that runs every --hashlimit-htable-gcinterval ms
(default 1000) at a phase we do not know: an entry is surely gone one gc interval after it
expired; in between, the model keeps it and flags the result uncertain when a fresh
entry (full burst) would hold more credit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec, ParseContext,
                   register_match)
from ._common import (HZ, U32_MAX, c_atoi, c_strtoul, check_exclusive, check_once, jiffies,
                      parse_rate, parse_uint, pick_unit)

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

SCALE = 1_000_000  # XT_HASHLIMIT_SCALE_v2
BURST_DEFAULT = 5
BURST_MAX = 1_000_000
GC_INTERVAL_DEFAULT = 1000  # ms
NAME_MAX = 255
BYTE_SHIFT = 4  # XT_HASHLIMIT_BYTE_SHIFT


def _pow2_below(x: int) -> int:
    return 1 << (x.bit_length() - 1)


CREDITS_PER_JIFFY = _pow2_below(0xFFFFFFFFFFFFFFFF // (HZ * 60 * 60 * 24))


def user2credits(user: int) -> int:
    """user2credits (revision 3): avoids overflow by dividing the constants first."""
    if SCALE >= HZ * CREDITS_PER_JIFFY:
        return user // (SCALE // (HZ * CREDITS_PER_JIFFY))
    return (user * ((HZ * CREDITS_PER_JIFFY) // SCALE)) & 0xFFFFFFFFFFFFFFFF


_MODE_ORDER = ("srcip", "srcport", "dstip", "dstport")  # print_mode order


def _cost_to_bytes(cost: int) -> int:
    r = U32_MAX // cost if cost else U32_MAX
    return (r - 1) << BYTE_SHIFT


def _bytes_to_cost(b: int) -> int:
    return U32_MAX // ((b >> BYTE_SHIFT) + 1)


_UNITS = (("m", 1024 * 1024), ("k", 1024), ("", 1))


def _render_bytes(avg: int) -> str:
    r = _cost_to_bytes(avg)
    for name, thresh in _UNITS[:-1]:
        if r >= thresh and _bytes_to_cost(r & ~(thresh - 1)) == avg:
            return f"{r // thresh}{name}b/s"
    return f"{r}b/s"


def _render_burst_bytes(avg: int, burst: int) -> str:
    r = _cost_to_bytes(avg) * burst
    for name, thresh in _UNITS[:-1]:
        if r >= thresh:
            return f"{r // thresh}{name}b"
    return f"{r}b"


def _parse_bytes(text: str) -> int | None:
    """parse_bytes: `N[k|m]b/s` -> cost, None when the text is not a byte rate."""
    i = text.find("b/s")
    if i <= 0:
        return None
    r = c_atoi(text)
    if r <= 0:
        return None
    factor = {"m": 1024 * 1024, "k": 1024}.get(text[i - 1], 1)
    cost = _bytes_to_cost(r * factor)
    if cost == 0:
        raise ExtParseError(f"hashlimit: rate too high '{text}'")
    return cost


@dataclass
class _Entry:
    credit: int
    cap: int
    cost: int
    prev: int  # jiffies
    expires: int  # jiffies


@dataclass
class HashlimitTable:
    """struct xt_hashlimit_htable: the settings it was created with and its entries."""

    cfg: "HashlimitMatch"
    entries: dict = field(default_factory=dict)


@register_match
@dataclass(frozen=True)
class HashlimitMatch(MatchExt):
    htable_name: str = ""
    avg: int = 0  # packet mode: SCALE * unit_seconds / N; byte mode: the cost
    above: bool = False  # XT_HASHLIMIT_INVERT
    burst: int = BURST_DEFAULT
    mode: frozenset[str] = frozenset()
    srcmask: int = 32
    dstmask: int = 32
    size: int = 0
    max: int = 0
    gc_interval: int = GC_INTERVAL_DEFAULT
    expire: int = 1000
    bytes_mode: bool = False
    rate_match: bool = False
    rate_interval: int = 0
    family: int = 4

    name: ClassVar[str] = "hashlimit"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--hashlimit-upto", 1, True, ("--hashlimit",)),
        OptionSpec("--hashlimit-above", 1, True),
        OptionSpec("--hashlimit-burst", 1, False),
        OptionSpec("--hashlimit-mode", 1, False),
        OptionSpec("--hashlimit-name", 1, False),
        OptionSpec("--hashlimit-srcmask", 1, False),
        OptionSpec("--hashlimit-dstmask", 1, False),
        OptionSpec("--hashlimit-htable-size", 1, False),
        OptionSpec("--hashlimit-htable-max", 1, False),
        OptionSpec("--hashlimit-htable-gcinterval", 1, False),
        OptionSpec("--hashlimit-htable-expire", 1, False),
        OptionSpec("--hashlimit-rate-match", 0, False),
        OptionSpec("--hashlimit-rate-interval", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "HashlimitMatch":
        check_once("hashlimit", opts)
        check_exclusive("hashlimit", opts, ("--hashlimit-upto", "--hashlimit-above"))
        plen = 32 if pctx.family == 4 else 128
        kw: dict = {"srcmask": plen, "dstmask": plen, "family": pctx.family}
        unit = 1  # seconds of the rate's unit as written: the default expire
        burst_text = None
        have_rate = have_expire = False
        for o in opts:
            n, arg = o.name, (o.args[0] if o.args else "")
            if n in ("--hashlimit-upto", "--hashlimit-above"):
                have_rate = True
                kw["above"] = (n == "--hashlimit-above") != o.inverted
                cost = _parse_bytes(arg)
                if cost is not None:
                    kw.update(avg=cost, bytes_mode=True)
                    unit = 15  # XT_HASHLIMIT_BYTE_EXPIRE
                else:
                    kw["avg"], unit = parse_rate(arg, SCALE, "hashlimit")
            elif n == "--hashlimit-burst":
                burst_text = arg
            elif n == "--hashlimit-mode":
                modes = set()
                for tok in arg.replace("|", ",").split(","):
                    if not tok:
                        continue
                    if tok not in _MODE_ORDER:
                        raise ExtParseError(f'hashlimit: bad value for "--hashlimit-mode": '
                                            f'"{arg}": expected srcip,srcport,dstip,dstport')
                    modes.add(tok)
                kw["mode"] = frozenset(modes)
            elif n == "--hashlimit-name":
                if not arg or arg in (".", "..") or "/" in arg:
                    raise ExtParseError(f"hashlimit: bad --hashlimit-name '{arg}' (it names "
                                        "a /proc file)")
                kw["htable_name"] = arg.encode()[:NAME_MAX - 1].decode(errors="ignore")
            elif n in ("--hashlimit-srcmask", "--hashlimit-dstmask"):
                kw[n[12:]] = parse_uint(arg, n, 0, 255)
                if kw[n[12:]] > plen:  # hashlimit_mt_check_common
                    raise ExtParseError(f"hashlimit: {n} {arg} is longer than {plen} bits (the "
                                        "kernel refuses it)")
            elif n == "--hashlimit-htable-size":
                kw["size"] = parse_uint(arg, n)
            elif n == "--hashlimit-htable-max":
                kw["max"] = parse_uint(arg, n)
            elif n == "--hashlimit-htable-gcinterval":
                kw["gc_interval"] = parse_uint(arg, n)
            elif n == "--hashlimit-htable-expire":
                kw["expire"] = parse_uint(arg, n)
                have_expire = True
            elif n == "--hashlimit-rate-match":
                kw["rate_match"] = True
            elif n == "--hashlimit-rate-interval":
                iv = c_atoi(arg)
                if iv <= 0:
                    raise ExtParseError(f'hashlimit: bad value for "--hashlimit-rate-interval": '
                                        f'"{arg}"')
                kw["rate_interval"] = iv
            else:
                raise ExtParseError(f"hashlimit: unknown option {n}")
        if "htable_name" not in kw:
            raise ExtParseError('hashlimit: option "--hashlimit-name" must be specified')
        if not have_rate:
            raise ExtParseError("hashlimit: you have to specify --hashlimit-upto or "
                                "--hashlimit-above")
        if not have_expire:
            kw["expire"] = unit * 1000
        if kw.get("bytes_mode"):
            kw["burst"] = 0
            if burst_text is not None:
                kw["burst"] = _parse_byte_burst(burst_text, kw["avg"])
                if not have_expire:
                    kw["expire"] = 60 * 1000  # XT_HASHLIMIT_BYTE_EXPIRE_BURST
        elif burst_text is not None:
            b = c_strtoul(burst_text)
            if b is None or b[1] != "" or not 1 <= b[0] <= BURST_MAX:
                raise ExtParseError('hashlimit: bad value for option "--hashlimit-burst", or '
                                    f"out of range (1-{BURST_MAX})")
            kw["burst"] = b[0]
        if kw.get("rate_match") and not kw.get("bytes_mode"):
            kw["avg"] //= unit
        if kw.get("rate_match") and not kw.get("rate_interval"):
            kw["rate_interval"] = 1 if kw.get("bytes_mode") else unit
        # hashlimit_mt_check_common
        if kw.get("gc_interval", GC_INTERVAL_DEFAULT) == 0 or kw["expire"] == 0:
            raise ExtParseError("hashlimit: --hashlimit-htable-gcinterval and "
                                "--hashlimit-htable-expire must not be 0 (the kernel refuses it)")
        m = cls(**kw)
        if m.bytes_mode or m.rate_match:
            raise ExtUnsupported("--hashlimit-rate-match" if m.rate_match else
                                 ("--hashlimit-above" if m.above else "--hashlimit-upto"),
                                 "hashlimit byte rates and rate-match are not modelled")
        if not m.bytes_mode and user2credits(m.avg * m.burst) < user2credits(m.avg):
            raise ExtParseError(f"hashlimit: overflow, try lower: {m.avg}/{m.burst}")
        return m

    def render(self) -> list[str]:
        out = ["--hashlimit-above" if self.above else "--hashlimit-upto"]
        if self.bytes_mode:
            out.append(_render_bytes(self.avg))
            quantum = 15 * 1000
            if self.burst:
                out += ["--hashlimit-burst", _render_burst_bytes(self.avg, self.burst)]
                quantum = 60 * 1000
        else:
            rate, unit_name, secs = pick_unit(self.avg, SCALE)
            out += [f"{rate}/{unit_name}", "--hashlimit-burst", str(self.burst)]
            quantum = secs * 1000
        if self.mode:
            out += ["--hashlimit-mode", ",".join(m for m in _MODE_ORDER if m in self.mode)]
        out += ["--hashlimit-name", self.htable_name]
        if self.size:
            out += ["--hashlimit-htable-size", str(self.size)]
        if self.max:
            out += ["--hashlimit-htable-max", str(self.max)]
        if self.gc_interval != GC_INTERVAL_DEFAULT:
            out += ["--hashlimit-htable-gcinterval", str(self.gc_interval)]
        if self.expire != quantum:
            out += ["--hashlimit-htable-expire", str(self.expire)]
        plen = 32 if self.family == 4 else 128
        if self.srcmask != plen:
            out += ["--hashlimit-srcmask", str(self.srcmask)]
        if self.dstmask != plen:
            out += ["--hashlimit-dstmask", str(self.dstmask)]
        if self.rate_match:
            out.append("--hashlimit-rate-match")
            if self.rate_interval != 1:
                out += ["--hashlimit-rate-interval", str(self.rate_interval)]
        return out

    # -- evaluation -----------------------------------------------------------------------
    def _key(self, cfg: "HashlimitMatch", ctx: "EvalContext"):
        """hashlimit_init_dst with the table's mode and masks."""
        pkt = ctx.pkt
        src = dst = None
        if "srcip" in cfg.mode:
            src = _masked(pkt.src, cfg.srcmask)
        if "dstip" in cfg.mode:
            dst = _masked(pkt.dst, cfg.dstmask)
        sport = dport = 0
        if cfg.mode & {"srcport", "dstport"}:
            # proto_ports_offset: TCP, UDP, DCCP, ESP, SCTP, UDPLITE and AH carry the ports
            # (or SPI) the kernel reads; any other protocol hashes ports 0
            if pkt.proto in (6, 17, 33, 50, 51, 132, 136):
                if pkt.is_fragment or pkt.sport is None:
                    return None
                sport, dport = pkt.sport, pkt.dport
        return (src, dst, sport if "srcport" in cfg.mode else 0,
                dport if "dstport" in cfg.mode else 0)

    def matches(self, ctx: "EvalContext") -> bool:
        now = jiffies(ctx.now)
        tables = ctx.host.ext_state.hashlimit
        tkey = (self.family, self.htable_name)
        table = tables.get(tkey)
        if table is None:
            table = tables[tkey] = HashlimitTable(self)
        cfg = table.cfg
        key = self._key(cfg, ctx)
        if key is None:
            ctx.mark_uncertain("hashlimit: the port bytes this packet would hash are not "
                               "modelled (fragment or header without ports)")
            return False
        gc_step = max(1, (cfg.gc_interval * HZ + 999) // 1000)
        _collect(table, now, gc_step)
        expires = now + (cfg.expire * HZ + 999) // 1000  # msecs_to_jiffies rounds up
        ent = table.entries.get(key)
        if ent is not None and ent.expires <= now:
            # expired but maybe not collected yet: the garbage collector runs every
            # gc_interval at a phase the model does not know
            if _recalc(ent, now).credit < ent.cap:  # a fresh entry would start full
                ctx.mark_uncertain(
                    f"hashlimit {self.htable_name}: the entry expired "
                    f"{(now - ent.expires) / HZ:.3f}s ago; if the garbage collector (every "
                    f"{cfg.gc_interval} ms) already removed it, the bucket restarts full; "
                    "assumed not yet")
        if ent is None:
            if cfg.max and len(table.entries) >= cfg.max:
                ctx.mark_uncertain("hashlimit: table full (the kernel drops the packet)")
                return False
            ent = table.entries[key] = _Entry(*_initial(cfg), now, expires)
        else:
            ent.expires = expires
            _recalc(ent, now)
        if ent.credit >= ent.cost:
            ent.credit -= ent.cost
            return not self.above
        return self.above


def _initial(cfg: HashlimitMatch) -> tuple[int, int, int]:
    """rateinfo_init (packet mode): (credit, credit_cap, cost)."""
    cap = user2credits(cfg.avg * cfg.burst)
    return cap, cap, user2credits(cfg.avg)


def _recalc(ent: _Entry, now: int) -> _Entry:
    """rateinfo_recalc (packet mode): CPJ credits per elapsed jiffy, up to the cap."""
    delta = now - ent.prev
    if delta:
        ent.prev = now
        ent.credit = min(ent.credit + delta * CREDITS_PER_JIFFY, ent.cap)
    return ent


def _collect(table: HashlimitTable, now: int, step: int) -> None:
    """htable_gc: an entry idle past its expiry for a whole gc interval has surely met a
    collector run; drop those."""
    for k in [k for k, e in table.entries.items() if e.expires + step <= now]:
        del table.entries[k]


def _masked(addr, plen: int):
    bits = addr.max_prefixlen
    if plen >= bits:
        return addr
    return ipaddress.ip_address(int(addr) & (((1 << plen) - 1) << (bits - plen)))


def _parse_byte_burst(text: str, cost: int) -> int:
    """parse_burst + the byte-mode fcheck: burst in bytes -> number of `cost` chunks."""
    b = c_strtoul(text)
    if b is None:
        raise ExtParseError('hashlimit: bad value for option "--hashlimit-burst"')
    v, rest = b
    v *= {"m": 1024 * 1024, "k": 1024}.get(rest[:1], 1)
    per = _cost_to_bytes(cost)
    if v < per:
        raise ExtParseError(f"hashlimit: burst cannot be smaller than {per}b")
    n = v // per
    if v % per:
        n += 1
    return n
