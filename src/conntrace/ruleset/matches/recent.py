"""`-m recent` (net/netfilter/xt_recent.c recent_mt, libxt_recent.c).

Lists are per netns and named (host.ext_state.recent[name]), shared by every rule naming
them; time is counted in jiffies of the virtual clock (HZ = 250). Kernel facts kept:
- a list holds at most ip_list_tot = 100 addresses; the least recently updated one is
  dropped for a new one;
- each address keeps a ring of time stamps whose size is the next power of two of the
  largest --hitcount among the rules naming the list (32 without any; ip_pkt_list_tot=0);
- the address is masked with the mask of the rule that created the list;
- --rttl compares the TTL too; a forwarded packet's TTL counts as before forwarding
  (+1 when the packet has an output device and no local socket);
- --update refreshes only when the match result (after `!`) is true;
- --reap drops the least recently updated address of the list if its last stamp is
  older than --seconds.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..ext import ExtParseError, MatchExt, Opt, OptionSpec, ParseContext, register_match
from ._common import (HZ, U32_MAX, addr_text, c_strtoul, check_exclusive, check_once, jiffies,
                      parse_uint)

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

XT_RECENT_NAME_LEN = 200
XT_RECENT_MAX_NSTAMPS = 65536  # 6.x (was 256 before 5.x)
IP_LIST_TOT = 100
_COMMANDS = ("--set", "--rcheck", "--update", "--remove")


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """inet_aton forms (`a.b.c.d`, `a.b.c`, `a.b`, `a`) that iptables' host parser accepts."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    vals = []
    for p in parts:
        got = c_strtoul(p) if p and not p[0].isspace() else None
        if got is None or got[1]:
            return None
        vals.append(got[0])
    limits = {1: (U32_MAX,), 2: (255, 0xFFFFFF), 3: (255, 255, 0xFFFF), 4: (255,) * 4}
    if any(v > lim for v, lim in zip(vals, limits[len(vals)])):
        return None
    n = 0
    for i, v in enumerate(vals[:-1]):
        n |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(n | vals[-1])


def _parse_mask(text: str, family: int):
    if family == 4:
        a = _inet_aton(text)
    else:
        try:
            a = ipaddress.IPv6Address(text)
        except ValueError:
            a = None
    if a is None:
        raise ExtParseError(f"recent: bad --mask '{text}': expected an IPv{family} netmask")
    return a


def _roundup_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _stamp_mask(hit_count: int) -> int:
    return _roundup_pow2(hit_count) - 1 if hit_count else 32 - 1


@dataclass
class RecentEntry:
    addr: object
    ttl: int
    stamps: list[int]
    index: int = 1
    nstamps: int = 1


@dataclass
class RecentTable:
    """struct recent_table. `entries` is the hash list (insertion order, what a lookup
    walks); `lru` the least-recently-updated order (head: the oldest)."""

    name: str
    mask: object
    nstamps_max_mask: int
    entries: dict[int, RecentEntry] = field(default_factory=dict)
    lru: "OrderedDict[int, None]" = field(default_factory=OrderedDict)
    _next: int = 0

    def lookup(self, addr, ttl: int) -> int | None:
        """recent_entry_lookup: ttl 0 on either side matches any TTL."""
        for k, e in self.entries.items():
            if e.addr == addr and (ttl == e.ttl or ttl == 0 or e.ttl == 0):
                return k
        return None

    def update(self, key: int, now: int) -> None:
        """recent_entry_update: one more stamp in the ring, move to the LRU tail."""
        e = self.entries[key]
        e.index &= self.nstamps_max_mask
        e.stamps[e.index] = now
        e.index += 1
        e.nstamps = max(e.nstamps, e.index)
        self.lru.move_to_end(key)

    def add(self, addr, ttl: int, now: int) -> int:
        """recent_entry_init: evict the LRU head when the list is full."""
        if len(self.entries) >= IP_LIST_TOT:
            self.remove(next(iter(self.lru)))
        e = RecentEntry(addr, ttl, [0] * (self.nstamps_max_mask + 1))
        e.stamps[0] = now
        key = self._next
        self._next += 1
        self.entries[key] = e
        self.lru[key] = None
        return key

    def remove(self, key: int) -> None:
        del self.entries[key]
        del self.lru[key]

    def addresses(self) -> list:
        return [e.addr for e in self.entries.values()]


@register_match
@dataclass(frozen=True)
class RecentMatch(MatchExt):
    command: str = "--set"  # --set, --rcheck, --update or --remove
    inverted: bool = False
    list_name: str = "DEFAULT"
    seconds: int = 0
    reap: bool = False
    hitcount: int = 0
    rttl: bool = False
    side: str = "rsource"  # or "rdest"
    mask: object = ipaddress.IPv4Address("255.255.255.255")

    name: ClassVar[str] = "recent"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        *(OptionSpec(c, 0, True) for c in _COMMANDS),
        OptionSpec("--name", 1, False), OptionSpec("--seconds", 1, False),
        OptionSpec("--reap", 0, False), OptionSpec("--hitcount", 1, False),
        OptionSpec("--rttl", 0, False), OptionSpec("--rsource", 0, False),
        OptionSpec("--rdest", 0, False), OptionSpec("--mask", 1, False),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "RecentMatch":
        check_once("recent", opts, allow=("--rsource", "--rdest"))
        check_exclusive("recent", opts, _COMMANDS, ("--set", "--rttl"),
                        ("--remove", "--rttl"))
        kw: dict = {"mask": ipaddress.ip_address("255.255.255.255" if pctx.family == 4
                                                 else "ffff:" * 7 + "ffff")}
        for o in opts:
            n = o.name
            if n in _COMMANDS:
                kw["command"], kw["inverted"] = n, o.inverted
            elif n == "--name":
                name = o.args[0]
                if "\n" in name:
                    raise ExtParseError("recent: newlines not allowed in --name")
                kw["list_name"] = name.encode()[:XT_RECENT_NAME_LEN - 1].decode(errors="ignore")
            elif n == "--seconds":
                kw["seconds"] = parse_uint(o.args[0], "--seconds", 1, U32_MAX)
            elif n == "--reap":
                kw["reap"] = True
            elif n == "--hitcount":
                kw["hitcount"] = parse_uint(o.args[0], "--hitcount", 0, U32_MAX)
            elif n == "--rttl":
                kw["rttl"] = True
            elif n in ("--rsource", "--rdest"):
                kw["side"] = n[2:]  # the last one wins
            elif n == "--mask":
                kw["mask"] = _parse_mask(o.args[0], pctx.family)
            else:
                raise ExtParseError(f"recent: unknown option {n}")
        if "command" not in kw:
            raise ExtParseError("recent: you must specify one of --set, --rcheck, --update or "
                                "--remove")
        if kw.get("reap") and not kw.get("seconds"):
            raise ExtParseError('recent: option "--reap" also requires "--seconds"')
        m = cls(**kw)
        # recent_mt_check refusals (the kernel gives no message: -EINVAL)
        if m.command in ("--set", "--remove") and (m.seconds or m.hitcount or m.reap):
            raise ExtParseError(f"recent: --seconds, --hitcount and --reap only go with "
                                f"--rcheck or --update, not {m.command} (the kernel refuses it)")
        if m.hitcount >= XT_RECENT_MAX_NSTAMPS:
            raise ExtParseError(f"recent: hitcount ({m.hitcount}) is larger than allowed maximum "
                                f"({XT_RECENT_MAX_NSTAMPS - 1})")
        if not m.list_name:
            raise ExtParseError("recent: --name must not be empty (the kernel refuses it)")
        return m

    def render(self) -> list[str]:
        out = (["!"] if self.inverted else []) + [self.command]
        if self.seconds:
            out += ["--seconds", str(self.seconds)]
        if self.reap:
            out.append("--reap")
        if self.hitcount:
            out += ["--hitcount", str(self.hitcount)]
        if self.rttl:
            out.append("--rttl")
        out += ["--name", self.list_name, "--mask", addr_text(self.mask), f"--{self.side}"]
        return out

    # -- evaluation -----------------------------------------------------------------------
    def _table(self, ctx: "EvalContext") -> RecentTable:
        tables = ctx.host.ext_state.recent
        t = tables.get(self.list_name)
        if t is None:
            # created at rule load with the mask of its first rule; the stamp ring fits the
            # largest --hitcount of every rule naming the list
            users = [m for m in _recent_matches(ctx.host) if m.list_name == self.list_name]
            first = users[0] if users else self
            size = max([_stamp_mask(m.hitcount) for m in users + [self]])
            t = tables[self.list_name] = RecentTable(self.list_name, first.mask, size)
        return t

    def matches(self, ctx: "EvalContext") -> bool:
        pkt = ctx.pkt
        t = self._table(ctx)
        now = jiffies(ctx.now)
        addr = pkt.dst if self.side == "rdest" else pkt.src
        ttl = pkt.ttl
        if ctx.out_iface is not None and pkt.meta.sock_uid is None:
            ttl = (ttl + 1) & 0xFF  # the TTL as seen before forwarding
        if addr.version != t.mask.version:
            return self.inverted
        masked = ipaddress.ip_address(int(addr) & int(t.mask))
        ret = self.inverted
        key = t.lookup(masked, ttl if self.rttl else 0)
        if key is None:
            if self.command != "--set":
                return ret
            t.add(masked, ttl, now)
            return not ret
        e = t.entries[key]
        if self.command == "--set":
            ret = not ret
        elif self.command == "--remove":
            t.remove(key)
            return not ret
        else:
            since = now - self.seconds * HZ
            hits = 0
            for i in range(e.nstamps):
                if self.seconds and since > e.stamps[i]:  # time_after(since, stamp)
                    continue
                hits += 1
                if not self.hitcount or hits >= self.hitcount:
                    ret = not ret
                    break
            if self.reap:
                # recent_entry_reap: the LRU head goes if its newest stamp is too old,
                # unless it is the entry about to be updated
                head = next(iter(t.lru))
                updating = self.command == "--update" and ret
                h = t.entries[head]
                if not (head == key and updating) and since > h.stamps[h.index - 1]:
                    t.remove(head)
        if self.command == "--set" or (self.command == "--update" and ret):
            t.update(key, now)
            e.ttl = ttl
        return ret


def _recent_matches(host) -> list[RecentMatch]:
    out = []
    for rs in (getattr(host, "ruleset", None), getattr(host, "ruleset6", None)):
        if rs is None:
            continue
        for _t, _c, r in rs.rules():
            out += [m for m in r.matches if isinstance(m, RecentMatch)]
    return out

