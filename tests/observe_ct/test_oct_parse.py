"""parse_conntrack_line: reads real lines and inverts format_entry / format_event."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from conntrace.conntrack.defs import Status, TcpState
from conntrace.conntrack.entry import ConntrackEntry, ConnTuple, DirCounters
from conntrace.conntrack.proto_tcp import TcpConntrack
from conntrace.errors import InputError
from conntrace.observe.conntrack_tools import (format_entry, format_event,
                                               parse_conntrack_line)
from conntrace.packet import ip

REF_EXTENDED = ("ipv4     2 tcp      6 114 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=44892 "
                "dport=8080 src=10.0.2.2 dst=10.0.2.1 sport=80 dport=44892 [ASSURED] mark=0 "
                "use=1 id=4037570791")


def test_reference_extended_id_line():
    d = parse_conntrack_line(REF_EXTENDED)
    assert (d["l3"], d["l3num"], d["proto"], d["protonum"]) == ("ipv4", 2, "tcp", 6)
    assert (d["timeout"], d["state"], d["assured"], d["unreplied"]) == (114, "TIME_WAIT",
                                                                          True, False)
    assert d["orig_tuple"] == ConnTuple(ip("10.0.1.2"), ip("10.0.1.1"), 6, 44892, 8080)
    assert d["reply_tuple"] == ConnTuple(ip("10.0.2.2"), ip("10.0.2.1"), 6, 80, 44892)
    assert (d["mark"], d["use"], d["id"], d["zone"]) == (0, 1, 4037570791, None)


def test_icmp_line_keeps_tuple_id_apart_from_conntrack_id():
    d = parse_conntrack_line(
        "ipv4     2 icmp     1 29 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=10224 "
        "src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=10224 mark=0 use=1 id=77")
    assert d["orig_tuple"] == ConnTuple(ip("10.0.1.2"), ip("10.0.2.2"), 1, 10224, 8 << 8)
    assert d["reply_tuple"].icmp_type == 0 and d["id"] == 77 and d["state"] is None


def test_counters_zone_and_proc_line():
    d = parse_conntrack_line(
        "ipv6     10 udp      17 29 src=fd00:0000:0000:0000:0000:0000:0000:0001 "
        "dst=fd00:0000:0000:0000:0000:0000:0000:0002 sport=49168 dport=5353 packets=1 bytes=49 "
        "[UNREPLIED] src=fd00:0000:0000:0000:0000:0000:0000:0002 "
        "dst=fd00:0000:0000:0000:0000:0000:0000:0001 sport=5353 dport=49168 packets=0 bytes=0 "
        "mark=0 zone=0 use=2")
    assert d["orig_tuple"].src == ipaddress.ip_address("fd00::1")
    assert d["orig_counters"] == (1, 49) and d["reply_counters"] == (0, 0)
    assert d["unreplied"] and d["zone"] == 0 and d["use"] == 2


def test_event_lines():
    d = parse_conntrack_line(
        "[1795786932.333896]\t[DESTROY] tcp      6 431999 ESTABLISHED src=10.0.1.2 "
        "dst=10.0.2.2 sport=47000 dport=7777 src=10.0.2.2 dst=10.0.2.1 sport=7777 dport=47000 "
        "[ASSURED] [USERSPACE] portid=10999")
    assert d["event"] == "DESTROY" and d["timestamp"] == pytest.approx(1795786932.333896)
    assert d["timeout"] == 431999 and d["userspace_portid"] == 10999 and d["assured"]
    d = parse_conntrack_line(
        "[DESTROY] tcp      6 SYN_SENT src=10.77.0.1 dst=10.77.0.2 sport=60258 dport=11 "
        "packets=1 bytes=60 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=11 dport=60258 "
        "packets=0 bytes=0")
    assert d["timeout"] is None and d["state"] == "SYN_SENT" and d["orig_counters"] == (1, 60)
    d = parse_conntrack_line("    [NEW] icmp     1 30 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 "
                             "id=17295 [UNREPLIED] src=10.0.2.2 dst=10.0.2.1 type=0 code=0 "
                             "id=17295")
    assert d["event"] == "NEW" and d["mark"] is None and d["id"] is None
    d = parse_conntrack_line("[1795793147.779903]\t[DESTROY] udp      17 29 src=10.77.0.1 "
                             "dst=10.77.0.2 sport=40000 dport=5353 [UNREPLIED] src=10.77.0.2 "
                             "dst=10.77.0.1 sport=5353 dport=40000 [USERSPACE] portid=9266 "
                             "progname=conntrack")
    assert (d["userspace_portid"], d["progname"]) == (9266, "conntrack")


@pytest.mark.parametrize("text,why", [
    ("", "too short"),
    ("hello world", "no protocol name"),
    ("tcp      6 119 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=1 dport=2", "two tuples"),
    ("tcp      6 119 src=10.0.1.300 dst=1.1.1.1 src=1.1.1.1 dst=1.1.1.1", "not an IP address"),
    ("tcp      6 119 src=1.1.1.1 dst=1.1.1.1 sport=x src=1.1.1.1 dst=1.1.1.1", "not a number"),
    ("tcp      6 119 bogus src=1.1.1.1 dst=1.1.1.1 src=1.1.1.1 dst=1.1.1.1", "unexpected token"),
])
def test_bad_lines_give_one_clear_error(text, why):
    with pytest.raises(InputError, match=why) as exc:
        parse_conntrack_line(text)
    assert "expected `conntrack -L" in str(exc.value)


# --- round trip over generated entries --------------------------------------------------

v4 = st.ip_addresses(v=4)
v6 = st.ip_addresses(v=6)
port = st.integers(0, 65535)


@st.composite
def entries(draw):
    family = draw(st.sampled_from([v4, v6]))
    proto = draw(st.sampled_from([6, 17, 1, 50, 47, 136]))
    a, b, c, d_ = (draw(family) for _ in range(4))
    if proto == 1:
        family = v4
        a, b, c, d_ = (draw(v4) for _ in range(4))
        ident, code = draw(port), draw(st.integers(0, 255))
        t = draw(st.sampled_from([8, 13, 15, 17]))
        orig = ConnTuple(a, b, 1, ident, (t << 8) | code)
        reply = ConnTuple(c, d_, 1, ident, ({8: 0, 13: 14, 15: 16, 17: 18}[t] << 8) | code)
    else:
        orig = ConnTuple(a, b, proto, draw(port), draw(port))
        reply = ConnTuple(c, d_, proto, draw(port), draw(port))
    status = Status.CONFIRMED
    for bit in (Status.SEEN_REPLY, Status.ASSURED):
        if draw(st.booleans()):
            status |= bit
    ct = ConntrackEntry(orig, reply, status=status, mark=draw(st.integers(0, 2**32 - 1)),
                        zone=draw(st.integers(0, 65535)), id=draw(st.integers(0, 2**32 - 1)),
                        timeout=1000.0 + draw(st.integers(1, 432000)))
    if proto == 6:
        ct.proto_state = TcpConntrack(state=draw(st.sampled_from(
            [s for s in TcpState if s < TcpState.MAX])))
    ct.counters = (DirCounters(draw(st.integers(0, 2**40)), draw(st.integers(0, 2**50))),
                   DirCounters(draw(st.integers(0, 2**40)), draw(st.integers(0, 2**50))))
    return ct


def _check(d, ct, *, acct):
    assert d["protonum"] == ct.proto
    assert d["orig_tuple"].src == ct.orig_tuple.src and d["reply_tuple"].dst == ct.reply_tuple.dst
    if ct.proto not in (50,):
        assert d["orig_tuple"] == ct.orig_tuple and d["reply_tuple"] == ct.reply_tuple
    assert d["unreplied"] == (not ct.seen_reply)
    assert d["assured"] == ct.assured
    assert d["state"] == (ct.proto_state.state.name if ct.proto == 6 else None)
    if acct:
        assert d["orig_counters"] == (ct.counters[0].packets, ct.counters[0].bytes)
        assert d["reply_counters"] == (ct.counters[1].packets, ct.counters[1].bytes)
    else:
        assert d["orig_counters"] is None


@given(entries(), st.booleans(), st.sampled_from(["default", "extended", "proc"]))
def test_round_trip_listing(ct, acct, fmt):
    d = parse_conntrack_line(format_entry(ct, 1000.0, fmt=fmt, acct=acct, show_id=True))
    _check(d, ct, acct=acct)
    assert d["timeout"] == round(ct.timeout - 1000.0)
    assert d["mark"] == ct.mark
    assert d["zone"] == (ct.zone if (ct.zone or fmt == "proc") else None)
    assert d["id"] == (None if fmt == "proc" else ct.id)
    assert d["l3"] == (None if fmt == "default" else f"ipv{ct.orig_tuple.src.version}")


@given(entries(), st.sampled_from(["NEW", "UPDATE", "DESTROY"]),
       st.floats(1e9, 2e9, allow_nan=False))
def test_round_trip_events(ct, kind, ts):
    d = parse_conntrack_line(format_event(kind, ct, 1000.0, timestamp=ts, acct=True,
                                          with_state=True, userspace_portid=4242))
    _check(d, ct, acct=kind == "DESTROY")
    assert d["event"] == kind and d["userspace_portid"] == 4242
    assert d["timestamp"] == pytest.approx(ts, abs=1e-6)
    assert d["mark"] == (ct.mark or None)
