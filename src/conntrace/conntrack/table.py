"""The per-netns conntrack hash: confirmed entries under both tuples, expiry, events, stats.

Mirrors net/netfilter/nf_conntrack_core.c: unconfirmed entries live only on their packet
(pkt.meta.ct) and are invisible here until `confirm` inserts them; expired entries are
removed by lookups (nf_ct_gc_expired) and by the GC step, each with a DESTROY event.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .defs import ConntrackEventType, Dir, Status
from .entry import ConnTuple, ConntrackEntry

# `conntrack -S` columns, in the order conntrack-tools prints them
STAT_FIELDS = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
               "search_restart", "clash_resolve", "chaintoolong")
NF_CT_EVICTION_RANGE = 8  # early_drop scans this many buckets (nf_conntrack_core.c)


@dataclass
class CtEvent:
    """One ctnetlink event as `conntrack -E` would print it."""

    type: ConntrackEventType
    time: float
    entry: ConntrackEntry  # a snapshot taken when the event was delivered
    bits: frozenset[str] = frozenset()
    with_state: bool = True  # UPDATE without PROTOINFO omits the TCP state
    timeout: int | None = None  # remaining seconds (None: not printed, e.g. expired)
    userspace_portid: int | None = None
    cpu: int = 0


@dataclass
class CpuStats:
    values: dict[str, int] = field(default_factory=lambda: {k: 0 for k in STAT_FIELDS})

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] += n


def snapshot(entry: ConntrackEntry) -> ConntrackEntry:
    snap = copy.copy(entry)
    snap.proto_state = copy.deepcopy(entry.proto_state)
    snap.counters = copy.deepcopy(entry._counters)
    snap.ecache = None
    return snap


class ConntrackTable:
    def __init__(self, *, max_entries: int = 262144, buckets: int = 262144, ncpus: int = 2,
                 hash_seed: int = 0) -> None:
        self.max_entries = max_entries
        self.buckets = buckets
        self.hash_seed = hash_seed
        # zone -> tuple -> entry; the direction is whichever of the entry's tuples it is
        self._zones: dict[int, dict[ConnTuple, ConntrackEntry]] = {0: {}}
        self._confirmed: dict[int, ConntrackEntry] = {}  # id -> entry, in insertion order
        self.count = 0  # allocated entries, unconfirmed included (cnet->count)
        # (timeout, seq, entry): pushed whenever a confirmed entry's timeout is set; stale
        # items (refreshed or removed entries) are skipped when popped
        self._expiry: list[tuple[float, int, ConntrackEntry]] = []
        self._expiry_seq = itertools.count()
        self.stats = [CpuStats() for _ in range(ncpus)]
        self.events: list[CtEvent] = []
        # keep events in `events` (False for long runs: listeners still see every event)
        self.record_events = True
        self.listeners: list[Callable[[CtEvent], None]] = []
        # called with the entry when it leaves the table or an unconfirmed entry is freed
        # (NAT removes its bysource link here: nf_conntrack_free -> remove_nat_bysrc)
        self.free_hooks: list[Callable[[ConntrackEntry], None]] = []

    def emit(self, ev: CtEvent) -> None:
        """A ctnetlink event: recorded and/or handed to listeners (conntrack -E)."""
        if self.record_events:
            self.events.append(ev)
        for listener in self.listeners:
            listener(ev)

    # -- lookups ---------------------------------------------------------------------------
    def _get(self, zone: int, tup: ConnTuple) -> tuple[ConntrackEntry, Dir] | None:
        hashed = self._zones.get(zone)
        entry = hashed.get(tup) if hashed is not None else None
        if entry is None:
            return None
        return entry, (Dir.ORIGINAL if entry.orig_tuple == tup else Dir.REPLY)

    def find(self, zone: int, tup: ConnTuple, now: float) -> tuple[ConntrackEntry, Dir] | None:
        """__nf_conntrack_find_get: expired entries are destroyed on the way."""
        hit = self._get(zone, tup)
        if hit is None:
            return None
        entry = hit[0]
        if self.is_expired(entry, now):
            self.destroy(entry, now, cpu=0)
            return None
        return hit

    def peek(self, zone: int, tup: ConnTuple) -> tuple[ConntrackEntry, Dir] | None:
        """Lookup without side effects (tests, renderers)."""
        return self._get(zone, tup)

    def hashed(self):
        """Every (zone, tuple, entry, dir) in the hash (tests check its consistency)."""
        for zone, tuples in self._zones.items():
            for tup, entry in tuples.items():
                yield zone, tup, entry, (Dir.ORIGINAL if entry.orig_tuple == tup else Dir.REPLY)

    @staticmethod
    def is_expired(entry: ConntrackEntry, now: float) -> bool:
        # nf_ct_is_expired: (s32)(ct->timeout - nfct_time_stamp) <= 0
        return entry.confirmed and entry.timeout <= now

    def bucket_of(self, zone: int, tup: ConnTuple) -> int:
        """A stable stand-in for hash_conntrack_raw + reciprocal_scale: only its locality
        matters (early_drop looks at 8 consecutive buckets)."""
        return hash((self.hash_seed, zone, tup)) % self.buckets

    def entries(self) -> list[ConntrackEntry]:
        return list(self._confirmed.values())

    def __len__(self) -> int:
        return len(self._confirmed)

    def __iter__(self) -> Iterator[ConntrackEntry]:
        return iter(list(self._confirmed.values()))

    # -- insertion -------------------------------------------------------------------------
    def insert(self, entry: ConntrackEntry) -> None:
        hashed = self._zones.setdefault(entry.zone, {})
        hashed[entry.orig_tuple] = entry
        hashed[entry.reply_tuple] = entry
        self._confirmed[entry.id] = entry
        self.timeout_changed(entry)

    def insert_reply_only(self, entry: ConntrackEntry) -> None:
        """nf_ct_resolve_clash_harder: the original direction is a fake (unhashed) node."""
        self._zones.setdefault(entry.zone, {})[entry.reply_tuple] = entry
        self._confirmed[entry.id] = entry
        self.timeout_changed(entry)

    def timeout_changed(self, entry: ConntrackEntry) -> None:
        """A confirmed entry got a new absolute timeout: remember when to look at it."""
        heapq.heappush(self._expiry, (entry.timeout, next(self._expiry_seq), entry))
        if len(self._expiry) > 64 and len(self._expiry) > 4 * len(self._confirmed):
            self._expiry = [(e.timeout, next(self._expiry_seq), e) for e in self._confirmed.values()]
            heapq.heapify(self._expiry)

    def clash(self, entry: ConntrackEntry) -> tuple[ConntrackEntry, Dir, Dir] | None:
        """The first hashed tuple equal to one of `entry`'s: (winner, winner's dir, which of
        our tuples clashed)."""
        for d in (Dir.ORIGINAL, Dir.REPLY):
            hit = self._get(entry.zone, entry.tuple(d))
            if hit is not None:
                return hit[0], hit[1], d
        return None

    # -- removal ---------------------------------------------------------------------------
    def _unlink(self, entry: ConntrackEntry) -> bool:
        if self._confirmed.pop(entry.id, None) is None:
            return False
        hashed = self._zones.get(entry.zone, {})
        for tup in (entry.orig_tuple, entry.reply_tuple):
            if hashed.get(tup) is entry:
                del hashed[tup]
        return True

    def destroy(self, entry: ConntrackEntry, now: float, *, cpu: int = 0,
                userspace_portid: int | None = None) -> bool:
        """nf_ct_delete: unlink, mark DYING, emit DESTROY, free. Returns False if it was
        already gone."""
        if entry.status & Status.DYING:
            return False
        if not self._unlink(entry):
            return False
        remaining = entry.timeout - now
        entry.status |= Status.DYING
        # ctnetlink_dump_timeout(skip_zero=true): an expired entry prints no timeout
        timeout = int(remaining) if remaining >= 1 else None
        if self.record_events or self.listeners:
            self.emit(CtEvent(ConntrackEventType.DESTROY, now, snapshot(entry),
                                   with_state=True, timeout=timeout,
                                   userspace_portid=userspace_portid, cpu=cpu))
        self.free(entry)
        return True

    def free(self, entry: ConntrackEntry) -> None:
        """nf_conntrack_free: the allocation goes away (confirmed or not)."""
        entry.status |= Status.DYING
        self.count = max(0, self.count - 1)
        for hook in self.free_hooks:
            hook(entry)

    def expire(self, now: float) -> list[ConntrackEntry]:
        """The GC step: destroy every entry whose timeout has passed, oldest first."""
        expired: list[ConntrackEntry] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            t, _seq, e = heapq.heappop(heap)
            if e.timeout != t or self._confirmed.get(e.id) is not e:
                continue  # refreshed since, or already gone
            self._unlink(e)
            e.status |= Status.DYING
            if self.record_events or self.listeners:
                self.emit(CtEvent(ConntrackEventType.DESTROY, e.timeout, snapshot(e),
                                  with_state=True, timeout=None, cpu=0))
            self.free(e)
            expired.append(e)
        return expired

    def flush(self, now: float, portid: int = 0) -> int:
        n = 0
        for e in list(self._confirmed.values()):
            if self.destroy(e, now, userspace_portid=portid):
                n += 1
        return n

    # -- stats -----------------------------------------------------------------------------
    def stat(self, cpu: int, name: str, n: int = 1) -> None:
        self.stats[cpu % len(self.stats)].inc(name, n)

    def stats_total(self) -> dict[str, int]:
        return {k: sum(s.values[k] for s in self.stats) for k in STAT_FIELDS}

    def early_drop(self, zone: int, tup: ConnTuple, now: float, cpu: int) -> bool:
        """early_drop(): scan 8 buckets from the new tuple's bucket and delete the
        non-ASSURED entries of the first bucket that has any."""
        start = self.bucket_of(zone, tup)
        wanted = {(start + i) % self.buckets: i for i in range(NF_CT_EVICTION_RANGE)}
        by_bucket: dict[int, list[ConntrackEntry]] = {}
        for z, t, e, _d in self.hashed():
            b = self.bucket_of(z, t)
            if b in wanted:
                by_bucket.setdefault(wanted[b], []).append(e)
        for i in range(NF_CT_EVICTION_RANGE):
            drops = 0
            for e in by_bucket.get(i, []):
                if self.is_expired(e, now):
                    self.destroy(e, now, cpu=cpu)
                    continue
                if e.status & (Status.ASSURED | Status.DYING) or not e.confirmed:
                    continue
                if self.destroy(e, now, cpu=cpu):
                    drops += 1
            if drops:
                self.stat(cpu, "early_drop", drops)
                return True
        return False
