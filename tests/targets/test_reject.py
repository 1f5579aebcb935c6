"""REJECT: reject types, the reply packets field by field (as captured on 6.18 with tcpdump in
a namespace), the cases that get no reply, ICMP rate limiting and the verdict."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.conntrack.defs import CtInfo
from conntrace.conntrack.entry import ConnTuple, ConntrackEntry
from conntrace.netfilter.effects import GeneratedPacket, Note
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import DROP
from conntrace.packet import (TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, IcmpHeader, Packet,
                              UdpHeader, ip)
from conntrace.ruleset.ext import ExtParseError

from .conftest import ctx_for, icmp, parse, roundtrip, tcp, udp

FWD = dict(table="filter", chain="FORWARD")


# -- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("written,name,code", [
    ("icmp-net-unreachable", "icmp-net-unreachable", 0), ("net-unreach", "icmp-net-unreachable", 0),
    ("icmp-host-unreachable", "icmp-host-unreachable", 1), ("host-unreach", "icmp-host-unreachable", 1),
    ("icmp-proto-unreachable", "icmp-proto-unreachable", 2),
    ("proto-unreach", "icmp-proto-unreachable", 2),
    ("icmp-port-unreachable", "icmp-port-unreachable", 3), ("port-unreach", "icmp-port-unreachable", 3),
    ("icmp-net-prohibited", "icmp-net-prohibited", 9), ("net-prohib", "icmp-net-prohibited", 9),
    ("icmp-host-prohibited", "icmp-host-prohibited", 10),
    ("host-prohib", "icmp-host-prohibited", 10),
    ("icmp-admin-prohibited", "icmp-admin-prohibited", 13),
    ("admin-prohib", "icmp-admin-prohibited", 13),
    ("tcp-reset", "tcp-reset", None), ("tcp-rst", "tcp-reset", None),
    # REJECT_parse accepts any case-insensitive prefix, first table entry wins
    ("tcp", "tcp-reset", None), ("icmp-h", "icmp-host-unreachable", 1),
    ("ADMIN", "icmp-admin-prohibited", 13), ("", "icmp-net-unreachable", 0),
])
def test_reject_types_and_aliases(written, name, code):
    t = parse("REJECT", ["--reject-with", written], proto=6, **FWD)
    assert t.with_ == name and t.icmp_code == code
    assert t.render() == ["--reject-with", name]
    roundtrip(t, proto=6, **FWD)


def test_default_is_port_unreachable():
    assert parse("REJECT", "", **FWD).with_ == "icmp-port-unreachable"
    assert parse("REJECT", "", family=6, **FWD).with_ == "icmp6-port-unreachable"


@pytest.mark.parametrize("written,name", [
    ("icmp6-no-route", "icmp6-no-route"), ("no-route", "icmp6-no-route"),
    ("adm-prohibited", "icmp6-adm-prohibited"), ("addr-unreach", "icmp6-addr-unreachable"),
    ("port-unreach", "icmp6-port-unreachable"), ("policy-fail", "icmp6-policy-fail"),
    ("reject-route", "icmp6-reject-route"), ("icmp6-not-neighbor", "icmp6-not-neighbor"),
])
def test_ipv6_types(written, name):
    t = parse("REJECT", ["--reject-with", written], family=6, **FWD)
    assert t.with_ == name
    roundtrip(t, family=6, **FWD)


@pytest.mark.parametrize("tokens,kw,expected", [
    ("--reject-with tcp-reset", {}, "only valid with -p tcp"),
    ("--reject-with tcp-reset", dict(proto=6, proto_inv=True), "only valid with -p tcp"),
    ("--reject-with tcp-reset", dict(proto=17), "only valid with -p tcp"),
    ("--reject-with echo-reply", {}, "echo-reply is no longer supported"),
    ("--reject-with icmp6-port-unreachable", {}, "unknown reject type"),
    ("--reject-with port-unreach --reject-with tcp-reset", dict(proto=6), "only be used once"),
])
def test_reject_parse_errors(tokens, kw, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("REJECT", tokens, **FWD, **kw)


# -- ICMP errors -----------------------------------------------------------------------------

def _reject(router, t, pkt, hook=Hook.FORWARD, now=1000.0, seed=1):
    if hook in (Hook.FORWARD, Hook.INPUT):
        pkt.meta.in_iface = pkt.meta.in_iface or "eth0"
    ctx = ctx_for(router, pkt, hook, "filter", now=now, seed=seed)
    assert t.apply(ctx) is DROP
    gen = [e for e in ctx.effects if isinstance(e, GeneratedPacket)]
    return (gen[0] if gen else None), ctx


def test_forwarded_tcp_gets_port_unreachable_like_the_kernel(router):
    # captured: 10.9.1.1 > 10.9.1.2 ICMP port unreachable, tos 0xde (for tos 0xff), ttl 64,
    # flags [none], the original (TTL already decremented) quoted whole
    t = parse("REJECT", "", proto=6, **FWD)
    p = tcp("10.0.1.2", "10.0.2.2", tos=0xFF, ttl=63, ip_id=4321)
    p.l4.options = bytes.fromhex("020405b40402080a000000000000000001030307")
    g, _ = _reject(router, t, p)
    r = g.packet
    assert (str(r.src), str(r.dst), r.proto) == ("10.0.1.1", "10.0.1.2", 1)
    assert r.tos == 0xDE and r.ttl == 64 and not r.df and not r.mf
    assert isinstance(r.l4, IcmpHeader) and (r.l4.type, r.l4.code) == (3, 3)
    emb = r.l4.embedded
    assert (str(emb.src), str(emb.dst), emb.ttl, emb.tos, emb.ip_id) == ("10.0.1.2", "10.0.2.2",
                                                                       63, 0xFF, 4321)
    assert emb.l4.sport == 40000 and emb.l4.seq == 1000 and emb is not p
    assert r.total_len == 88  # 20 + 8 + the 60-byte SYN
    assert g.attach_related and g.related_ct is None and r.meta.mark == 0


@pytest.mark.parametrize("with_,code", [
    ("icmp-net-unreachable", 0), ("icmp-host-unreachable", 1), ("icmp-proto-unreachable", 2),
    ("icmp-port-unreachable", 3), ("icmp-net-prohibited", 9), ("icmp-host-prohibited", 10),
    ("icmp-admin-prohibited", 13)])
def test_each_icmp_type(router, with_, code):
    g, _ = _reject(router, parse("REJECT", ["--reject-with", with_], **FWD),
                   udp("10.0.1.2", "10.0.2.2", tos=0x03))
    assert (g.packet.l4.type, g.packet.l4.code) == (3, code)
    assert g.packet.tos == 0xC2  # captured: tos 0x03 -> 0xc2
    assert g.reason.startswith(f"REJECT --reject-with {with_}")


def test_input_reply_comes_from_the_address_the_packet_was_sent_to(router):
    # captured: UDP to the secondary 10.9.1.100 answered by 10.9.1.100 (host-prohibited)
    t = parse("REJECT", "--reject-with icmp-host-prohibited", table="filter", chain="INPUT")
    g, _ = _reject(router, t, udp("10.0.1.2", "10.0.1.100"), Hook.INPUT)
    assert str(g.packet.src) == "10.0.1.100" and (g.packet.l4.code == 10)
    assert g.packet.total_len == 20 + 8 + 33


def test_output_reject_answers_the_local_sender_over_lo(router):
    # captured: REJECT in OUTPUT -> ICMP 10.9.2.1 > 10.9.2.1 on lo
    t = parse("REJECT", "", table="filter", chain="OUTPUT")
    p = udp("10.0.2.1", "10.0.2.2")
    p.meta.out_iface = "eth1"
    g, _ = _reject(router, t, p, Hook.OUTPUT)
    assert (str(g.packet.src), str(g.packet.dst)) == ("10.0.2.1", "10.0.2.1")


def test_quote_is_cut_at_576_bytes(router):
    g, _ = _reject(router, parse("REJECT", "", **FWD),
                   icmp("10.0.1.2", "10.0.2.2", payload=1000))
    assert g.packet.total_len == 576  # captured: length 576 for a 1028-byte echo request
    assert g.packet.l4.quoted_len == 548


@pytest.mark.parametrize("make,why", [
    (lambda: udp("10.0.1.2", "10.0.1.255"), "broadcast/multicast address"),
    (lambda: udp("10.0.1.2", "224.0.0.251"), "broadcast/multicast address"),
    (lambda: Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, None, payload_len=13, frag_offset=10,
                    df=False), "non-first fragment"),
    (lambda: Packet(ip("10.0.1.2"), ip("10.0.2.2"), 1,
                    IcmpHeader(3, 3, embedded=udp("10.0.2.2", "10.0.1.2"))), "ICMP error"),
    (lambda: Packet(ip("10.0.1.2"), ip("10.0.2.2"), 1, IcmpHeader(42)), "ICMP error"),
    (lambda: udp("10.0.1.2", "10.0.2.2", bad_l4_checksum=True), "bad checksum"),
    (lambda: tcp("10.0.1.2", "10.0.2.2", bad_l4_checksum=True), "bad checksum"),
    (lambda: udp("192.0.2.9", "10.0.2.2"), "no route back"),
])
def test_packets_that_get_no_icmp_error(router, make, why):
    g, ctx = _reject(router, parse("REJECT", "", **FWD), make())
    assert g is None
    assert isinstance(ctx.effects[0], Note) and why in ctx.effects[0].text


def test_link_layer_broadcast_frame_gets_no_error(router):
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.dst_mac = "ff:ff:ff:ff:ff:ff"
    assert _reject(router, parse("REJECT", "", **FWD), p)[0] is None


def test_checksum_exceptions(router):
    t = parse("REJECT", "", **FWD)
    p = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(1, 2, checksum=0), payload_len=4,
               bad_l4_checksum=True)
    assert _reject(router, t, p)[0] is not None  # UDP without a checksum is not verified
    gre = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 47, None, payload_len=24, bad_l4_checksum=True)
    assert _reject(router, t, gre)[0] is not None  # GRE is not verified either


def test_icmp_echo_is_answered_with_an_error(router):
    g, _ = _reject(router, parse("REJECT", "", **FWD), icmp("10.0.1.2", "10.0.2.2"))
    assert g.packet.l4.embedded.l4.type == 8


def test_fwmark_reflect(router):
    t = parse("REJECT", "", **FWD)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.mark = 0x42
    assert _reject(router, t, p)[0].packet.meta.mark == 0
    router.sysctls.set("net.ipv4.fwmark_reflect", 1)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.mark = 0x42
    assert _reject(router, t, p, now=2000)[0].packet.meta.mark == 0x42


def test_icmp_errors_use_inbound_ifaddr(router):
    t = parse("REJECT", "", **FWD)
    # a packet from a host behind eth1 forwarded out eth0 would normally be answered from
    # the address toward the sender (eth1); with the sysctl, from the input device
    p = udp("10.0.2.7", "10.0.1.9")
    p.meta.in_iface = "eth1"
    assert str(_reject(router, t, p)[0].packet.src) == "10.0.2.1"
    router.sysctls.set("net.ipv4.icmp_errors_use_inbound_ifaddr", 1)
    p = udp("10.0.2.7", "10.0.1.9")
    p.meta.in_iface = "eth0"
    assert str(_reject(router, t, p, now=2000)[0].packet.src) == "10.0.1.1"


def test_related_conntrack_is_attached_in_the_other_direction(router):
    a, b = ipaddress.ip_address("10.0.1.2"), ipaddress.ip_address("10.0.2.2")
    ct = ConntrackEntry(ConnTuple(a, b, 17, 40000, 7000), ConnTuple(b, a, 17, 7000, 40000))
    t = parse("REJECT", "", **FWD)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.ct, p.meta.ctinfo = ct, CtInfo.NEW
    g, _ = _reject(router, t, p)
    assert g.related_ct is ct and g.related_ctinfo is CtInfo.RELATED_REPLY
    q = udp("10.0.2.2", "10.0.1.2", sport=7000, dport=40000)
    q.meta.ct, q.meta.ctinfo = ct, CtInfo.ESTABLISHED_REPLY
    g, _ = _reject(router, t, q, now=2000)
    assert g.related_ctinfo is CtInfo.RELATED


# -- rate limits -------------------------------------------------------------------------------

def test_peer_rate_limit_burst_of_six_then_one_per_second(router):
    # captured: 12 datagrams in a burst got 6 errors; at 10/s afterwards about one a second
    t = parse("REJECT", "", **FWD)
    got = [_reject(router, t, udp("10.0.1.2", "10.0.2.2"), now=100 + i * 0.001)[0]
           for i in range(12)]
    assert sum(g is not None for g in got) == 6
    later = [_reject(router, t, udp("10.0.1.2", "10.0.2.2"), now=100.012 + 0.1 * (i + 1))[0]
             for i in range(30)]
    assert sum(g is not None for g in later) == 3
    # another peer has its own bucket
    assert _reject(router, t, udp("10.0.1.3", "10.0.2.2"), now=100.02)[0] is not None
    _, ctx = _reject(router, t, udp("10.0.1.2", "10.0.2.2"), now=103.05)
    assert "rate limit" in ctx.effects[0].text


def test_unmasked_types_and_ratelimit_zero_are_not_limited(router):
    t = parse("REJECT", "", **FWD)
    router.sysctls.set("net.ipv4.icmp_ratelimit", 0)
    assert all(_reject(router, t, udp("10.0.1.2", "10.0.2.2"), now=50)[0] for _ in range(20))
    router.sysctls.set("net.ipv4.icmp_ratelimit", 1000)
    router.sysctls.set("net.ipv4.icmp_ratemask", 0)
    assert all(_reject(router, t, udp("10.0.1.4", "10.0.2.2"), now=60)[0] for _ in range(20))


def test_global_rate_limit(router):
    t = parse("REJECT", "", **FWD)
    got = [_reject(router, t, udp(f"10.0.1.{i + 2}", "10.0.2.2"), now=10.0, seed=i)[0]
           for i in range(120)]
    allowed = sum(g is not None for g in got)
    # a burst of 50 credits, each error costing 0-2 of them: fewer than 120 but more than 25
    assert 25 <= allowed < 120
    assert _reject(router, t, udp("10.0.1.200", "10.0.2.2"), now=11.0)[0] is not None


# -- TCP reset -------------------------------------------------------------------------------

def _rst(router, pkt, hook=Hook.FORWARD):
    t = parse("REJECT", "--reject-with tcp-reset", proto=6, table="filter", chain=hook.value)
    return _reject(router, t, pkt, hook)


def test_rst_for_a_syn(router):
    # captured: SYN seq 1000 -> [R.] seq 0 ack 1001 win 0, tos 0, ttl 64, id 0, DF
    g, _ = _rst(router, tcp("10.0.1.2", "10.0.2.2", flags=TCP_SYN, seq=1000, tos=0xFF))
    r = g.packet
    assert (str(r.src), str(r.dst)) == ("10.0.2.2", "10.0.1.2")
    assert (r.l4.sport, r.l4.dport) == (80, 40000)
    assert r.l4.flags == TCP_RST | TCP_ACK and (r.l4.seq, r.l4.ack_seq) == (0, 1001)
    assert r.l4.window == 0 and r.l4.options == b"" and r.total_len == 40
    assert (r.tos, r.ttl, r.ip_id, r.df) == (0, 64, 0, True)
    assert g.attach_related


def test_rst_for_an_ack_with_payload(router):
    # captured: [P.] seq 5000 ack 777777 len 100 -> [R] seq 777777, no ACK
    g, _ = _rst(router, tcp("10.0.1.2", "10.0.2.2", flags=TCP_PSH | TCP_ACK, seq=5000,
                            ack=777777, payload=100))
    assert g.packet.l4.flags == TCP_RST
    assert (g.packet.l4.seq, g.packet.l4.ack_seq) == (777777, 0)


@pytest.mark.parametrize("flags,seq,payload,ack_seq", [
    (0, 9000, 3, 9003),                      # captured: no flags -> ack 9003
    (TCP_SYN | TCP_FIN, 9000, 3, 9005),      # captured: SYN+FIN -> ack 9005
    (TCP_FIN, 0xFFFFFFFF, 0, 0),             # sequence space wraps
])
def test_rst_ack_number_counts_syn_fin_and_payload(router, flags, seq, payload, ack_seq):
    g, _ = _rst(router, tcp("10.0.1.2", "10.0.1.100", flags=flags, seq=seq, payload=payload),
                Hook.INPUT)
    assert g.packet.l4.flags == TCP_RST | TCP_ACK and g.packet.l4.ack_seq == ack_seq
    assert str(g.packet.src) == "10.0.1.100"


def test_no_rst_cases(router):
    assert _rst(router, tcp("10.0.1.2", "10.0.2.2", flags=TCP_RST))[0] is None
    assert _rst(router, tcp("10.0.1.2", "10.0.2.2", bad_l4_checksum=True))[0] is None
    assert _rst(router, tcp("10.0.1.2", "10.0.1.255"))[0] is None
    frag = tcp("10.0.1.2", "10.0.2.2")
    frag.l4, frag.frag_offset = None, 20
    assert _rst(router, frag)[0] is None
    # a locally generated segment is never checksum-checked
    local = tcp("10.0.2.1", "10.0.2.2", bad_l4_checksum=True)
    assert _rst(router, local, Hook.OUTPUT)[0] is not None


def test_rst_is_not_rate_limited(router):
    # captured: 12 SYNs in a burst, 12 RSTs
    assert all(_rst(router, tcp("10.0.1.2", "10.0.2.2"))[0] for _ in range(12))


def test_ipv6_reject_drops_and_says_it_is_not_modelled(router):
    t = parse("REJECT", "", family=6, **FWD)
    p = Packet(ip("2001:db8::1"), ip("2001:db8::2"), 17, UdpHeader(1, 2), payload_len=4)
    ctx = ctx_for(router, p, Hook.FORWARD)
    assert t.apply(ctx) is DROP
    assert ctx.effects == [] and "IPv6 reply packet is not modelled" in ctx.uncertain[0]
