"""UDP, ICMP, ICMPv6 and generic trackers; the registry (reference §3.2, §3.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from conntrace.conntrack.defs import CtInfo, Dir, Status
from conntrace.conntrack.entry import ConntrackEntry, ConnTuple, tuple_of
from conntrace.conntrack.l4 import L4Result, is_generic_fallback, tracker_for
from conntrace.conntrack.proto_icmp import (icmp_error_ctinfo, icmp_error_inner_tuple,
                                            icmp_error_related, is_icmp_error)
from conntrace.netfilter.hooks import Hook
from conntrace.packet import Packet, UdpHeader, ip
from ctp_driver import CLIENT, SERVER, Flow, env, icmp, tcp, udp

# --- UDP -------------------------------------------------------------------------------------

def _udp_flow(**sysctls):
    flow, res = Flow.open(udp(CLIENT, SERVER, 40003, 6000), **sysctls)
    assert flow is not None
    return flow, res


def test_udp_unreplied_30s_and_every_packet_refreshes():
    flow, res = _udp_flow()
    assert res.timeout == 30 and flow.remaining == 30 and not res.set_assured
    flow.send(udp(CLIENT, SERVER, 40003, 6000), at=10)
    assert flow.remaining == 30 and not flow.ct.seen_reply


def test_udp_reply_within_2s_stays_30s_unassured():
    """[V] one query and one reply: `udp 17 29 ... mark=0` (no ASSURED); two exchanges
    0.2 s apart: still 29 s, no ASSURED."""
    flow, _ = _udp_flow()
    res = flow.send(udp(SERVER, CLIENT, 6000, 40003), at=0.1)
    assert res.timeout == 30 and not res.set_assured
    assert flow.ct.seen_reply  # set by the core only after the tracker ran
    res = flow.send(udp(CLIENT, SERVER, 40003, 6000), at=0.2)
    assert res.timeout == 30 and not res.set_assured and not flow.ct.assured


def test_udp_stream_after_2s_120s_and_assured_once():
    """[V] a second exchange 3 s later: `udp 17 119 ... [ASSURED]`."""
    flow, _ = _udp_flow()
    flow.send(udp(SERVER, CLIENT, 6000, 40003), at=0.1)
    res = flow.send(udp(CLIENT, SERVER, 40003, 6000), at=3.0)
    assert res.timeout == 120 and res.set_assured and res.events == {"ASSURED"}
    res = flow.send(udp(SERVER, CLIENT, 6000, 40003), at=4.0)
    assert res.timeout == 120 and not res.set_assured and not res.events


def test_udp_two_seconds_exactly_is_not_yet_a_stream():
    flow, _ = _udp_flow()
    flow.send(udp(SERVER, CLIENT, 6000, 40003), at=1.0)
    assert flow.send(udp(CLIENT, SERVER, 40003, 6000), at=2.0).timeout == 30
    assert flow.send(udp(CLIENT, SERVER, 40003, 6000), at=2.001).timeout == 120


def test_udp_first_reply_after_2s_refreshes_30_not_assured():
    """SEEN_REPLY is still clear while the first reply is handled."""
    flow, _ = _udp_flow()
    res = flow.send(udp(SERVER, CLIENT, 6000, 40003), at=5)
    assert res.timeout == 30 and not res.set_assured


def test_udp_nat_clash_never_assured():
    flow, _ = _udp_flow()
    flow.ct.status |= Status.NAT_CLASH
    flow.send(udp(SERVER, CLIENT, 6000, 40003), at=0.1)
    res = flow.send(udp(CLIENT, SERVER, 40003, 6000), at=5)
    assert res.timeout == 120 and not res.set_assured and not flow.ct.assured


def test_udp_timeouts_from_sysctls():
    flow, _ = _udp_flow(nf_conntrack_udp_timeout=11, nf_conntrack_udp_timeout_stream=77)
    assert flow.remaining == 11
    flow.send(udp(SERVER, CLIENT, 6000, 40003), at=0.1)
    flow.send(udp(CLIENT, SERVER, 40003, 6000), at=9)
    assert flow.remaining == 77


def test_udp_checksums():
    tr = tracker_for(17)
    bad = udp(CLIENT, SERVER, 1, 2)
    bad.bad_l4_checksum = True
    assert tr.error(bad, env()).log_invalid == "bad checksum"
    assert tr.error(bad, env(hook=Hook.OUTPUT)) is None
    assert tr.error(bad, env(nf_conntrack_checksum=0)) is None
    zero = udp(CLIENT, SERVER, 1, 2, checksum=0)
    zero.bad_l4_checksum = True  # a zero checksum means "none": never verified
    assert tr.error(zero, env()) is None
    short = Packet(ip(CLIENT), ip(SERVER), 17, None)
    assert tr.error(short, env()).log_invalid == "short packet"


def test_udp_entry_without_tracker_state_uses_creation_time():
    o = ConnTuple(ip(CLIENT), ip(SERVER), 17, 1, 2)
    ct = ConntrackEntry(o, o.invert(), status=Status.CONFIRMED | Status.SEEN_REPLY,
                        created=100.0)
    assert tracker_for(17).packet(ct, udp(CLIENT, SERVER, 1, 2), CtInfo.ESTABLISHED,
                                  env(now=101.0)).timeout == 30
    assert tracker_for(17).packet(ct, udp(CLIENT, SERVER, 1, 2), CtInfo.ESTABLISHED,
                                  env(now=102.5)).timeout == 120


# --- ICMP ------------------------------------------------------------------------------------

def test_icmp_echo_entry_30s_refreshed_not_deleted_by_reply():
    """[V] `icmp 1 29 ... type=8 code=0 id=10224 ... type=0 code=0 id=10224`."""
    flow, res = Flow.open(icmp(CLIENT, SERVER, 8, 0, 10224))
    assert res.timeout == 30 and flow.ct.reply_tuple.icmp_type == 0
    res = flow.send(icmp(SERVER, CLIENT, 0, 0, 10224), at=1)
    assert res.verdict == "accept" and res.timeout == 30 and not res.kill
    assert not res.set_assured and flow.ct.seen_reply


@pytest.mark.parametrize("type_", [8, 13, 15, 17])
def test_icmp_queries_create_entries(type_):
    flow, _ = Flow.open(icmp(CLIENT, SERVER, type_, 0, 5))
    assert flow is not None


@pytest.mark.parametrize("type_", [0, 14, 16, 18])
def test_lone_icmp_replies_are_invalid(type_):
    flow, res = Flow.open(icmp(CLIENT, SERVER, type_, 0, 5))
    assert flow is None and res.verdict == "invalid"


def test_icmp_header_errors_count_as_error():
    tr = tracker_for(1)
    res = tr.error(icmp(CLIENT, SERVER, 19), env())
    assert res.log_invalid == "invalid icmp type" and res.count_error
    bad = icmp(CLIENT, SERVER, 8)
    bad.bad_l4_checksum = True
    assert tr.error(bad, env()).log_invalid == "bad hw icmp checksum"
    assert tr.error(bad, env(hook=Hook.OUTPUT)) is None
    assert tr.error(Packet(ip(CLIENT), ip(SERVER), 1, None), env()).log_invalid == "short packet"
    assert tr.error(icmp(CLIENT, SERVER, 18), env()) is None


def _udp_ct():
    o = ConnTuple(ip("10.0.1.2"), ip("10.0.2.2"), 17, 40004, 7000)
    # MASQUERADEd: the reply goes to the router's 10.0.2.1
    r = ConnTuple(ip("10.0.2.2"), ip("10.0.2.1"), 17, 7000, 40004)
    return ConntrackEntry(o, r, status=Status.CONFIRMED)


def _lookup(ct):
    def find(t):
        if t == ct.orig_tuple:
            return ct, Dir.ORIGINAL
        if t == ct.reply_tuple:
            return ct, Dir.REPLY
        return None
    return find


def test_port_unreachable_is_related_reply():
    """[V] an ICMP port-unreachable for a UDP flow matched --ctstate RELATED. The server
    quotes the datagram as it saw it (after SNAT): 10.0.2.1:40004 -> 10.0.2.2:7000."""
    ct = _udp_ct()
    quoted = udp("10.0.2.1", "10.0.2.2", 40004, 7000)
    err = icmp("10.0.2.2", "10.0.2.1", 3, 3, embedded=quoted)
    assert is_icmp_error(err)
    assert icmp_error_inner_tuple(err) == ct.reply_tuple
    assert tracker_for(1).error(err, env()) is None
    got = icmp_error_related(err, _lookup(ct))
    assert got == (ct, CtInfo.RELATED_REPLY)


def test_error_in_original_direction_is_related():
    ct = _udp_ct()
    # the client rejects a reply it got (already un-NATed): 10.0.2.2:7000 -> 10.0.1.2:40004
    quoted = udp("10.0.2.2", "10.0.1.2", 7000, 40004)
    err = icmp("10.0.1.2", "10.0.2.2", 3, 3, embedded=quoted)
    assert icmp_error_related(err, _lookup(ct)) == (ct, CtInfo.RELATED)
    assert icmp_error_ctinfo(Dir.ORIGINAL) is CtInfo.RELATED


def test_error_with_wrong_outer_destination_is_invalid():
    ct = _udp_ct()
    quoted = udp("10.0.2.1", "10.0.2.2", 40004, 7000)
    err = icmp("10.0.2.2", "10.0.9.9", 3, 3, embedded=quoted)
    res = icmp_error_related(err, _lookup(ct))
    assert isinstance(res, L4Result) and res.verdict == "invalid" and res.count_error
    assert res.log_invalid == "outer daddr 10.0.9.9 != inner 10.0.2.1"


def test_error_matching_nothing_is_invalid():
    ct = _udp_ct()
    err = icmp("10.0.2.2", "10.0.2.1", 3, 3, embedded=udp("10.0.2.1", "10.0.2.2", 1, 2))
    res = icmp_error_related(err, _lookup(ct))
    assert isinstance(res, L4Result) and res.verdict == "invalid" and res.count_error
    no_body = icmp("10.0.2.2", "10.0.2.1", 3, 3)
    assert icmp_error_inner_tuple(no_body) is None


def test_error_about_an_echo_request_inverts_the_type():
    echo = icmp("10.0.1.2", "10.0.2.2", 8, 0, 17295)
    err = icmp("10.0.1.1", "10.0.1.2", 11, 0, embedded=echo)
    inner = icmp_error_inner_tuple(err)
    assert inner == ConnTuple(ip("10.0.2.2"), ip("10.0.1.2"), 1, 17295, 0 << 8)
    nested = icmp("10.0.1.1", "10.0.1.2", 3, 1, embedded=icmp("10.0.1.2", "10.0.2.2", 3, 3))
    assert icmp_error_inner_tuple(nested) is None  # errors about errors have no inverse


def test_queries_are_not_errors():
    assert not is_icmp_error(icmp(CLIENT, SERVER, 8))
    assert not is_icmp_error(tcp(CLIENT, SERVER, 1, 2, 0x02))
    assert is_icmp_error(icmp("fd00::1", "fd00::2", 1, proto=58))
    assert not is_icmp_error(icmp("fd00::1", "fd00::2", 128, proto=58))


def test_icmpv6():
    tr = tracker_for(58)
    flow, res = Flow.open(icmp("fd00::1", "fd00::2", 128, 0, 9, proto=58))
    assert flow is not None and flow.remaining == 30
    flow, res = Flow.open(icmp("fd00::1", "fd00::2", 129, 0, 9, proto=58))
    assert flow is None and res.log_invalid == "invalid new with type 129"
    assert tr.error(icmp("fd00::1", "ff02::1", 135, proto=58), env()).verdict == "untracked"
    assert tr.error(icmp("fd00::1", "fd00::2", 137, proto=58), env()) is None


# --- generic and registry --------------------------------------------------------------------

def test_generic_600s_no_state():
    pkt = Packet(ip(CLIENT), ip(SERVER), 50)
    flow, res = Flow.open(pkt)
    assert res.timeout == 600 and flow.state is None
    flow.send(Packet(ip(SERVER), ip(CLIENT), 50), at=100)
    assert flow.remaining == 600 and not flow.ct.assured


@given(st.integers(0, 255))
def test_registry(proto):
    tr = tracker_for(proto)
    expected = {6: "tcp", 17: "udp", 136: "udplite", 1: "icmp", 58: "icmpv6"}.get(proto,
                                                                                "unknown")
    assert tr.name == expected
    assert is_generic_fallback(proto) == (proto in (33, 47, 132))


def test_l4result_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict must be one of"):
        L4Result("maybe")


def test_udplite_uses_udp_logic():
    pkt = Packet(ip(CLIENT), ip(SERVER), 136, UdpHeader(5, 6), payload_len=3)
    flow, res = Flow.open(pkt)
    assert flow is not None and res.timeout == 30
    assert tuple_of(pkt).proto == 136
