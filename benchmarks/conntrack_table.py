"""Conntrack table: bytes per entry and lookups+updates per second at N entries."""

from __future__ import annotations

import gc
import ipaddress
import random
import time
import tracemalloc

from conntrace.conntrack.defs import CtInfo, Status, TcpState
from conntrace.conntrack.entry import ConnTuple, ConntrackEntry, intern_addr
from conntrace.conntrack.proto_tcp import TcpConntrack
from conntrace.conntrack.table import ConntrackTable


def _entry(i: int) -> ConntrackEntry:
    # a MASQUERADEd TCP flow: client 10.x.y.z:port -> server, replies to the NAT address
    # addresses interned as conntrack's tuple_of() does for real packets
    client = intern_addr(ipaddress.IPv4Address(0x0A000000 + (i // 50000)))
    server = intern_addr(ipaddress.IPv4Address(0xC0A80000 + (i % 251)))
    sport = 1024 + i % 50000
    orig = ConnTuple(client, server, 6, sport, 443)
    reply = ConnTuple(server, intern_addr(ipaddress.IPv4Address("192.0.2.1")), 6, 443, sport)
    ct = ConntrackEntry(orig_tuple=orig, reply_tuple=reply, created=0.0,
                        status=Status.CONFIRMED | Status.SEEN_REPLY | Status.ASSURED |
                        Status.SRC_NAT | Status.SRC_NAT_DONE | Status.DST_NAT_DONE)
    ct.proto_state = TcpConntrack.from_state(TcpState.ESTABLISHED)
    ct.timeout = 432000.0
    return ct


def run(n: int = 1_000_000, lookups: int = 300_000) -> dict:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = ConntrackTable(max_entries=0, buckets=262144)
    t0 = time.perf_counter()
    for i in range(n):
        table.insert(_entry(i))
    build = time.perf_counter() - t0
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    entries = table.entries()
    rng = random.Random(1)
    picks = [entries[rng.randrange(n)] for _ in range(lookups)]
    t0 = time.perf_counter()
    now = 10.0
    for ct in picks:
        hit = table.find(0, ct.reply_tuple, now)  # a reply packet's lookup
        e = hit[0]
        e.timeout = now + 432000.0  # the refresh the tracker asks for
        table.timeout_changed(e)
        now += 1e-6
    elapsed = time.perf_counter() - t0
    return {
        "entries": n,
        "bytes_per_entry": round(used / n, 1),
        "goal_bytes_per_entry": 384,
        "insert_per_s": round(n / build),
        "lookup_update_per_s": round(lookups / elapsed),
    }
