"""TCP tracker behaviour over whole conversations (reference §3.1, nf_conntrack_proto_tcp.c)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from conntrace.conntrack.defs import Status, TcpState
from conntrace.conntrack.l4 import tracker_for
from conntrace.conntrack.proto_tcp import (FLAG_BE_LIBERAL, FLAG_SACK_PERM, FLAG_WINDOW_SCALE,
                                           TcpConntrack, after, before, flags_valid,
                                           parse_options, sack_edge)
from conntrace.netfilter.hooks import Hook
from conntrace.packet import (LINUX_SYN_OPTIONS, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH,
                              TCP_RST, TCP_SYN, TCP_URG)
from ctp_driver import CLIENT, SERVER, Flow, Tcp, env, handshake, tcp

FA, PA = TCP_FIN | TCP_ACK, TCP_PSH | TCP_ACK


def test_handshake_states_timeouts_events():
    """[V] [NEW] SYN_SENT 120 -> SYN_RECV 60 -> ESTABLISHED 432000 [ASSURED]."""
    conv = Tcp()
    flow, res = Flow.open(conv.syn())
    assert (flow.state, flow.remaining, res.events) == ("SYN_SENT", 120, {"PROTOINFO"})
    res = flow.send(conv.synack(), at=0.5)
    assert (flow.state, flow.remaining, res.events) == ("SYN_RECV", 60, {"PROTOINFO"})
    assert not flow.ct.assured and flow.ct.seen_reply
    res = flow.send(conv.c(TCP_ACK), at=0.6)
    assert (flow.state, flow.remaining) == ("ESTABLISHED", 432000)
    assert res.set_assured and res.events == {"PROTOINFO", "ASSURED"}
    assert flow.ct.assured


def test_normal_close_fin_wait_last_ack_time_wait():
    """[V] ESTABLISHED -> FIN_WAIT 120 -> LAST_ACK 30 -> TIME_WAIT 120."""
    flow, conv = handshake()
    flow.send(conv.c(PA, data=100), at=1)
    flow.send(conv.s(PA, data=300), at=1.1)
    flow.send(conv.c(TCP_ACK), at=1.2)
    assert (flow.state, flow.remaining) == ("ESTABLISHED", 432000)
    res = flow.send(conv.c(FA), at=2)
    assert (flow.state, flow.remaining, res.events) == ("FIN_WAIT", 120, {"PROTOINFO"})
    res = flow.send(conv.s(FA), at=2.1)
    assert (flow.state, flow.remaining, res.events) == ("LAST_ACK", 30, {"PROTOINFO"})
    res = flow.send(conv.c(TCP_ACK), at=2.2)
    assert (flow.state, flow.remaining, res.events) == ("TIME_WAIT", 120, {"PROTOINFO"})
    assert all(r.verdict == "accept" and not r.log_invalid for r in flow.results)


def test_close_variant_via_close_wait():
    """[V] FIN_WAIT -> CLOSE_WAIT 60 -> LAST_ACK 30 -> TIME_WAIT 120."""
    flow, conv = handshake()
    flow.send(conv.c(FA), at=1)
    assert flow.state == "FIN_WAIT"
    flow.send(conv.s(TCP_ACK), at=1.1)
    assert (flow.state, flow.remaining) == ("CLOSE_WAIT", 60)
    flow.send(conv.s(FA), at=5)
    assert (flow.state, flow.remaining) == ("LAST_ACK", 30)
    flow.send(conv.c(TCP_ACK), at=5.1)
    assert (flow.state, flow.remaining) == ("TIME_WAIT", 120)


def test_timeouts_follow_sysctls():
    flow, conv = handshake(nf_conntrack_tcp_timeout_established=7200,
                           nf_conntrack_tcp_timeout_fin_wait=33)
    assert flow.remaining == 7200
    flow.send(conv.c(FA), at=1)
    assert flow.remaining == 33


def test_rst_before_reply_kills_entry():
    """[V] SYN to a closed port: [NEW] SYN_SENT then at once [DESTROY] ... CLOSE."""
    conv = Tcp()
    flow, _ = Flow.open(conv.syn())
    res = flow.send(conv.s(TCP_RST | TCP_ACK, seq=0), at=0.001)
    assert res.verdict == "accept" and res.kill and res.timeout is None
    assert flow.state == "CLOSE" and res.events == {"PROTOINFO"}
    assert flow.remaining == 120 - 0.001  # not refreshed: the DESTROY event shows 119/120


def test_syn_retransmit_does_not_refresh():
    conv = Tcp()
    flow, _ = Flow.open(conv.syn())
    res = flow.send(conv.c(TCP_SYN, win=64240, opts=LINUX_SYN_OPTIONS, ack=0,
                           seq=conv.cseq - 1), at=1.0)
    assert res.verdict == "accept" and res.timeout is None and not res.events
    assert flow.state == "SYN_SENT" and flow.remaining == 119
    flow.send(conv.c(TCP_SYN, win=64240, opts=LINUX_SYN_OPTIONS, ack=0, seq=conv.cseq - 1),
              at=3.0)
    assert flow.remaining == 117


def test_pickup_with_loose_marks_liberal_and_caps_at_unack():
    """[V] after conntrack -F: [NEW] 300 ESTABLISHED [UNREPLIED], [UPDATE] 300,
    [UPDATE] 432000 [ASSURED]."""
    conv = Tcp(cisn=7_000_000, sisn=9_000_000)
    flow, res = Flow.open(conv.c(TCP_ACK))
    assert (flow.state, flow.remaining, flow.ct.seen_reply) == ("ESTABLISHED", 300, False)
    tc = flow.ct.proto_state
    for side in tc.seen:
        assert side.flags & FLAG_BE_LIBERAL and side.flags & FLAG_SACK_PERM
    res = flow.send(conv.s(TCP_ACK), at=0.1)
    assert (flow.remaining, res.set_assured) == (300, False)
    res = flow.send(conv.c(TCP_ACK), at=0.2)
    assert (flow.state, flow.remaining, res.set_assured) == ("ESTABLISHED", 432000, True)


def test_pickup_refused_with_loose_0_without_log():
    conv = Tcp()
    flow, res = Flow.open(conv.c(TCP_ACK), nf_conntrack_tcp_loose=0)
    assert flow is None and res.verdict == "invalid" and res.log_invalid is None


def test_only_ack_packets_pick_up():
    for flags in (FA, TCP_RST, TCP_RST | TCP_ACK, TCP_SYN | TCP_ACK):
        flow, res = Flow.open(tcp(CLIENT, SERVER, 1, 2, flags, seq=5, ack=6))
        assert flow is None and res.verdict == "invalid" and res.log_invalid == "invalid new"


def test_reopen_from_time_wait_repeats():
    """[V] a new SYN on a TIME_WAIT entry: [DESTROY] TIME_WAIT then [NEW] SYN_SENT."""
    flow, conv = handshake()
    flow.send(conv.c(FA), at=1)
    flow.send(conv.s(FA), at=1.1)
    flow.send(conv.c(TCP_ACK), at=1.2)
    assert flow.state == "TIME_WAIT"
    conv.cseq += 100_000
    res = flow.send(conv.syn(), at=5)
    assert res.verdict == "repeat"
    new_flow, res = Flow.open(conv.syn(), now=5)
    assert new_flow is not None and new_flow.state == "SYN_SENT"


def test_syn_on_established_is_ignored_then_resynced():
    """§4.3: a new SYN hits an old ESTABLISHED entry: sIG, kept with the old entry; the
    server's SYN/ACK answering it re-syncs the entry to SYN_RECV."""
    flow, conv = handshake()
    new = Tcp(cisn=77_000_000, sisn=88_000_000)
    res = flow.send(new.syn(), at=10)
    assert res.verdict == "accept" and res.timeout is None
    assert res.log_invalid == "packet (index 0) in dir 0 ignored, state ESTABLISHED"
    assert flow.state == "ESTABLISHED"
    res = flow.send(new.synack(), at=10.1)
    assert res.verdict == "accept" and flow.state == "SYN_RECV" and flow.remaining == 60
    res = flow.send(new.c(TCP_ACK), at=10.2)
    assert flow.state == "ESTABLISHED" and flow.remaining == 432000


def test_simultaneous_open():
    conv = Tcp()
    flow, _ = Flow.open(conv.syn())
    res = flow.send(conv.s(TCP_SYN, win=65160, opts=LINUX_SYN_OPTIONS, ack=0), at=0.1)
    # still unreplied and the old state was SYN_SENT: like a retransmitted SYN, no refresh
    assert (flow.state, flow.remaining, res.timeout) == ("SYN_SENT2", 119.9, None)
    flow.send(conv.c(TCP_SYN | TCP_ACK, win=64240, opts=LINUX_SYN_OPTIONS,
                     seq=conv.cseq - 1), at=0.2)
    assert flow.state == "SYN_RECV"
    flow.send(conv.s(TCP_ACK), at=0.3)
    assert flow.state == "ESTABLISHED"


# --- window tracking -------------------------------------------------------------------------

def test_seq_over_upper_bound_is_invalid():
    """The client may send up to what the server's SYN/ACK allowed: ack 1001 + window 65160
    (SYN windows are never scaled) = 66161, so the bound printed is 66162. A segment that
    overshoots by more than the server's largest window is INVALID."""
    flow, conv = handshake()
    res = flow.send(conv.c(PA, data=100, seq=1001 + 10_000_000), at=1)
    assert res.verdict == "invalid"
    assert res.log_invalid == "SEQ is over upper bound 66162 (over the window of the receiver)"
    assert flow.state == "ESTABLISHED"


def test_small_overshoot_is_ignored_and_tracked():
    """Overshooting by less than the receiver's window: IGNOREd ("bytes more than expected"),
    but td_end moves so the peer's ACK of that data stays valid."""
    flow, conv = handshake()
    res = flow.send(conv.c(PA, data=100, seq=1001 + 100_000), at=1)
    assert res.verdict == "accept" and res.timeout is None
    assert res.log_invalid == "34941 bytes more than expected"  # 101101 - 66161 + 1
    assert flow.ct.proto_state.seen[0].td_end == 101101
    assert flow.send(conv.s(TCP_ACK, ack=101101), at=1.1).verdict == "accept"


def test_ack_over_upper_bound_is_invalid():
    """The server has sent up to 500001 (ISN 500000 + SYN): ACKing more is invalid."""
    flow, conv = handshake()
    res = flow.send(conv.c(TCP_ACK, ack=500001 + 50_000), at=1)
    assert res.verdict == "invalid"
    assert res.log_invalid == "ACK is over upper bound 500002 (ACKed data not seen yet)"


def test_seq_under_lower_bound_is_ignored():
    """Client td_end 1001, server max window 65160: data ending at or before
    1001 - 65160 - 1 (mod 2**32) is old, IGNOREd: accepted, no state update, no refresh."""
    flow, conv = handshake()
    before_state = flow.ct.timeout
    res = flow.send(conv.c(PA, data=10, seq=(1001 - 70_000) % 2**32), at=1)
    assert res.verdict == "accept" and res.timeout is None
    assert res.log_invalid == ("SEQ is under lower bound 4294903136 "
                               "(already ACKed data retransmitted)")
    assert flow.ct.timeout == before_state and flow.state == "ESTABLISHED"


def test_be_liberal_accepts_out_of_window():
    flow, conv = handshake(nf_conntrack_tcp_be_liberal=1)
    res = flow.send(conv.c(PA, data=100, seq=1001 + 100_000), at=1)
    assert res.verdict == "accept" and res.log_invalid is None


def test_unacknowledged_data_caps_timeout_until_acked():
    flow, conv = handshake()
    flow.send(conv.c(PA, data=100), at=1)
    assert flow.remaining == 300  # nf_conntrack_tcp_timeout_unacknowledged
    flow.send(conv.s(TCP_ACK), at=1.1)
    assert flow.remaining == 432000


def test_retransmissions_cap_at_max_retrans_timeout():
    flow, conv = handshake(nf_conntrack_tcp_timeout_max_retrans=100)
    seg = conv.c(PA, data=100)
    flow.send(seg, at=1)
    got = [flow.send(seg, at=t) and flow.remaining for t in (2, 3, 4)]
    assert got == [300, 300, 100]  # the third retransmission reaches max_retrans=3
    assert flow.ct.proto_state.retrans == 3


def test_out_of_window_rst_after_fin_lowers_assured_timeout():
    """nf_tcp_handle_invalid: an invalid FIN then an invalid RST from the other side."""
    flow, conv = handshake()
    far = 1001 + 10_000_000
    res = flow.send(conv.c(FA, seq=far), at=1)
    assert res.verdict == "invalid" and res.timeout is None
    res = flow.send(conv.s(TCP_RST, seq=500001 + 10_000_000), at=2)
    assert res.verdict == "invalid" and res.timeout == 300
    assert flow.remaining == 300


# --- RST handling ----------------------------------------------------------------------------

def test_exact_rst_closes_with_close_timeout():
    flow, conv = handshake()
    res = flow.send(conv.c(TCP_RST), at=1)
    assert res.verdict == "accept" and not res.kill
    assert (flow.state, flow.remaining) == ("CLOSE", 10)


def test_inexact_rst_keeps_established_for_challenge_ack():
    """Checked on 6.18 with crafted segments: an in-window RST whose seq is not exactly
    the next one leaves `tcp 6 9 ESTABLISHED` (CLOSE timeout, state kept); the server's
    challenge ACK then gives `tcp 6 299 ESTABLISHED`: the RST's sequence number counts as
    unacknowledged data, so the UNACK cap applies."""
    flow, conv = handshake()
    res = flow.send(conv.c(TCP_RST, seq=conv.cseq + 10), at=1)
    assert res.verdict == "accept" and flow.state == "ESTABLISHED"
    assert flow.remaining == 10  # RST index: the CLOSE timeout applies
    res = flow.send(conv.s(TCP_ACK), at=1.001)  # challenge ACK
    assert res.verdict == "accept" and flow.state == "ESTABLISHED"
    assert flow.remaining == 300


def test_rst_below_peer_maxack_is_invalid_unless_ignored():
    flow, conv = handshake()
    res = flow.send(conv.c(TCP_RST, seq=conv.cseq - 5), at=1)
    assert res.verdict == "invalid" and res.log_invalid == "invalid rst"
    flow.sysctls["nf_conntrack_tcp_ignore_invalid_rst"] = 1
    assert flow.send(conv.c(TCP_RST, seq=conv.cseq - 5), at=2).verdict == "accept"


# --- header checks ---------------------------------------------------------------------------

def test_invalid_flag_combinations():
    tr = tracker_for(6)
    for flags in (TCP_SYN | TCP_FIN, TCP_FIN, 0, TCP_SYN | TCP_RST, TCP_FIN | TCP_RST):
        res = tr.error(tcp(CLIENT, SERVER, 1, 2, flags), env())
        assert res.verdict == "invalid" and res.log_invalid == "invalid tcp flag combination"
    for flags in (TCP_SYN | TCP_ECE | TCP_CWR, PA, TCP_FIN | TCP_ACK | TCP_URG, TCP_RST):
        assert tr.error(tcp(CLIENT, SERVER, 1, 2, flags), env()) is None


@given(st.integers(0, 255))
def test_flags_valid_matches_reference_list(flags):
    core = flags & ~(TCP_PSH | TCP_ECE | TCP_CWR)
    names = {n for n, b in (("SYN", TCP_SYN), ("ACK", TCP_ACK), ("RST", TCP_RST),
                            ("FIN", TCP_FIN), ("URG", TCP_URG)) if core & b}
    legal = [{"SYN"}, {"SYN", "URG"}, {"SYN", "ACK"}, {"RST"}, {"RST", "ACK"},
             {"FIN", "ACK"}, {"FIN", "ACK", "URG"}, {"ACK"}, {"ACK", "URG"}]
    assert flags_valid(flags) == (names in legal)


def test_checksum_checked_only_in_prerouting_and_with_sysctl():
    tr = tracker_for(6)
    pkt = tcp(CLIENT, SERVER, 1, 2, TCP_SYN)
    pkt.bad_l4_checksum = True
    assert tr.error(pkt, env()).log_invalid == "bad checksum"
    assert tr.error(pkt, env(hook=Hook.OUTPUT)) is None
    assert tr.error(pkt, env(nf_conntrack_checksum=0)) is None


def test_truncated_header():
    pkt = tcp(CLIENT, SERVER, 1, 2, TCP_SYN)
    pkt.l4 = None
    assert tracker_for(6).error(pkt, env()).log_invalid == "truncated packet"


# --- options and sequence arithmetic ---------------------------------------------------------

def test_linux_syn_options():
    assert parse_options(LINUX_SYN_OPTIONS) == (FLAG_WINDOW_SCALE | FLAG_SACK_PERM, 7)
    assert parse_options(b"") is None
    assert parse_options(bytes([3, 3, 15, 0])) == (FLAG_WINDOW_SCALE, 14)  # RFC 1323 cap
    assert parse_options(bytes([3, 9, 7, 0])) == (0, 0)  # option longer than the header


def test_window_scale_needs_both_syns():
    conv = Tcp()
    flow, _ = Flow.open(conv.syn())
    flow.send(conv.s(TCP_SYN | TCP_ACK, win=65160, opts=b""), at=0.1)
    assert [s.td_scale for s in flow.ct.proto_state.seen] == [0, 0]


def test_sack_right_edge():
    block = (1000).to_bytes(4, "big") + (5000).to_bytes(4, "big")
    opts = bytes([1, 1, 5, 10]) + block
    assert sack_edge(opts, 100) == 5000
    assert sack_edge(opts, 6000) == 6000


@given(st.binary(max_size=40))
def test_parse_options_total(data):
    parsed = parse_options(data)
    if parsed is not None:
        flags, scale = parsed
        assert 0 <= scale <= 14 and flags & ~(FLAG_WINDOW_SCALE | FLAG_SACK_PERM) == 0


@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_before_after_wrap(a, n):
    b = (a + n) % 2**32
    assert before(a, b) and after(b, a) and not before(b, a)


def test_state_name_and_timeout_for():
    flow, conv = handshake()
    tr = tracker_for(6)
    assert tr.state_name(flow.ct) == "ESTABLISHED"
    assert tr.timeout_for(flow.ct, env()) == 432000
    flow.ct.status &= ~Status.ASSURED
    assert tr.timeout_for(flow.ct, env(nf_conntrack_tcp_timeout_established=99)) == 99
    assert flow.ct.proto_state.state == TcpState.ESTABLISHED


# --- robustness ------------------------------------------------------------------------------

_VALID = sorted({f for f in range(64) if flags_valid(f)})


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(_VALID),
                          st.integers(-70_000, 70_000), st.integers(-70_000, 70_000),
                          st.integers(0, 1500), st.integers(0, 65535)), max_size=25))
def test_random_segments_keep_tracker_consistent(segments):
    """Whatever arrives, verdicts stay in the documented set, INVALID and IGNOREd segments
    never change the state, and accepted ones land on a real state with a sane timeout."""
    flow, conv = handshake()
    t = 1.0
    for from_client, flags, dseq, dack, data, win in segments:
        t += 0.01
        side = conv.c if from_client else conv.s
        base_seq = conv.cseq if from_client else conv.sseq
        base_ack = conv.sseq if from_client else conv.cseq
        pkt = side(flags, data=data, win=win, seq=(base_seq + dseq) % 2**32,
                   ack=(base_ack + dack) % 2**32)
        before_state = flow.ct.proto_state.state
        res = flow.send(pkt, at=t)
        assert res.verdict in ("accept", "invalid", "repeat", "drop")
        state = flow.ct.proto_state.state
        assert state < TcpState.MAX
        if res.verdict != "accept" or (res.log_invalid or "").endswith(
                f"ignored, state {before_state.name}"):
            assert state == before_state
        if res.timeout is not None:
            assert 0 < res.timeout <= 432000
        if res.verdict == "repeat":
            break


def test_from_state():
    tc = TcpConntrack.from_state("TIME_WAIT", liberal=True)
    assert tc.state == TcpState.TIME_WAIT and tc.seen[1].flags & FLAG_BE_LIBERAL
    assert TcpConntrack.from_state(TcpState.CLOSE).seen[0].flags == 0
    with pytest.raises(ValueError, match="not a TCP conntrack state"):
        TcpConntrack.from_state(TcpState.IGNORE)
