"""Packet <-> bytes: round trips, lengths, and cross-checks against dpkt's own parser."""

from __future__ import annotations

import ipaddress

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrace.packet import (
    LINUX_SYN_OPTIONS,
    TCP_ACK,
    TCP_SYN,
    IcmpHeader,
    Packet,
    TcpHeader,
    UdpHeader,
    ip,
)
from conntrace.wire import (
    PACKET_HOST,
    PACKET_OUTGOING,
    decode_ether,
    decode_ip,
    decode_sll,
    decode_sll2,
    encode_ether,
    encode_ip,
    encode_sll,
    encode_sll2,
    inet_checksum,
)
from pcaptest_support import linux_quote, packets

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MACS = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


@SETTINGS
@given(packets())
def test_decode_inverts_encode(pkt: Packet) -> None:
    wire = encode_ip(pkt)
    assert decode_ip(wire, keep_payload=False) == pkt


@SETTINGS
@given(packets())
def test_wire_length_is_the_modelled_total_len(pkt: Packet) -> None:
    # Packet.total_len is what LOG prints as LEN= and what the conntrack byte counters add.
    assert len(encode_ip(pkt)) == pkt.total_len


@SETTINGS
@given(packets(with_payload=True))
def test_payload_bytes_survive(pkt: Packet) -> None:
    back = decode_ip(encode_ip(pkt), keep_payload=True)
    if pkt.payload is not None:
        assert back.payload == pkt.payload
    # the embedded datagram of an ICMP error has bytes only when quoted whole
    if back.icmp is not None and back.icmp.embedded is not None:
        emb = back.icmp.embedded
        assert (emb.payload is not None) == (linux_quote(pkt) == pkt.icmp.embedded.total_len)
        emb.payload = None
    assert back == pkt


@SETTINGS
@given(packets(), MACS, MACS)
def test_ether_round_trip(pkt: Packet, src: str, dst: str) -> None:
    frame = encode_ether(pkt, src, dst)
    assert frame[:6] == bytes.fromhex(dst.replace(":", "")) and frame[6:12] == bytes.fromhex(src.replace(":", ""))
    back, s, d = decode_ether(frame, keep_payload=False)
    assert (s, d) == (src, dst)
    assert (back.meta.src_mac, back.meta.dst_mac) == (src, dst)
    back.meta.src_mac = back.meta.dst_mac = None
    assert back == pkt


@SETTINGS
@given(packets(), MACS, st.sampled_from([PACKET_HOST, 1, 2, 3, PACKET_OUTGOING]), st.integers(1, 2**31))
def test_cooked_round_trip(pkt: Packet, mac: str, pkttype: int, ifindex: int) -> None:
    back1, c1 = decode_sll(encode_sll(pkt, pkttype=pkttype, addr=mac), keep_payload=False)
    back2, c2 = decode_sll2(encode_sll2(pkt, ifindex=ifindex, pkttype=pkttype, addr=mac), keep_payload=False)
    for back, cooked in ((back1, c1), (back2, c2)):
        assert cooked.addr == mac and cooked.pkttype == pkttype and cooked.hatype == 1
        # only a received frame tells the model which MAC brought the packet in
        assert back.meta.src_mac == (None if pkttype == PACKET_OUTGOING else mac)
        back.meta.src_mac = None
        assert back == pkt
    assert c1.ifindex is None and c2.ifindex == ifindex


def _dpkt_ip(wire: bytes, family: int):
    return dpkt.ip.IP(wire) if family == 4 else dpkt.ip6.IP6(wire)


@SETTINGS
@given(packets())
def test_dpkt_parses_the_same_headers(pkt: Packet) -> None:
    wire = encode_ip(pkt)
    if pkt.family == 6 and pkt.proto in dpkt.ip6.EXT_HDRS:
        return  # dpkt parses ESP (50) after an IPv6 header as an extension header, and chokes
    d = _dpkt_ip(wire, pkt.family)
    if pkt.family == 4:
        assert (ipaddress.IPv4Address(d.src), ipaddress.IPv4Address(d.dst)) == (pkt.src, pkt.dst)
        assert (d.ttl, d.tos, d.id, d.p, d.len) == (pkt.ttl, pkt.tos, pkt.ip_id, pkt.proto, pkt.total_len)
        # dpkt counts the offset in 8-byte units, like Packet.frag_offset
        assert (bool(d.df), bool(d.mf), d.offset) == (pkt.df, pkt.mf, pkt.frag_offset)
        l4 = d.data
    else:
        assert (ipaddress.IPv6Address(d.src), ipaddress.IPv6Address(d.dst)) == (pkt.src, pkt.dst)
        assert (d.hlim, d.fc, d.plen + 40) == (pkt.ttl, pkt.tos, pkt.total_len)
        if pkt.mf or pkt.frag_offset:
            frag = d.extension_hdrs[44]
            assert (frag.id, frag.frag_off, bool(frag.m_flag)) == (pkt.ip_id, pkt.frag_offset, pkt.mf)
        l4 = d.data
    if pkt.tcp is not None and not pkt.frag_offset:
        t = pkt.tcp
        assert (l4.sport, l4.dport, l4.seq, l4.ack, l4.flags & 0xFF, l4.win, l4.urp) == (
            t.sport, t.dport, t.seq, t.ack_seq, t.flags, t.window, t.urgp)
        assert l4.off * 4 == t.header_len and bytes(l4.opts) == t.options
        assert len(l4.data) == pkt.payload_len
    if pkt.udp is not None and not pkt.frag_offset:
        assert (l4.sport, l4.dport, l4.ulen) == (pkt.udp.sport, pkt.udp.dport, 8 + pkt.payload_len)
        if pkt.udp.checksum == 0:
            assert l4.sum == 0
    if pkt.icmp is not None:
        assert (l4.type, l4.code) == (pkt.icmp.type, pkt.icmp.code)


def _checksum_ok_independently(pkt: Packet, wire: bytes) -> bool:
    """Verify the L4 checksum by summing the segment with a hand-built pseudo header."""
    l4 = wire[pkt.ip_header_len:]
    if pkt.family == 4:
        if pkt.icmp is not None:
            return inet_checksum(l4) == 0
        pseudo = pkt.src.packed + pkt.dst.packed + bytes([0, pkt.proto]) + len(l4).to_bytes(2, "big")
    else:
        pseudo = pkt.src.packed + pkt.dst.packed + len(l4).to_bytes(4, "big") + bytes([0, 0, 0, pkt.proto])
    return inet_checksum(pseudo + l4) == 0


@SETTINGS
@given(packets())
def test_checksums_valid_unless_asked_otherwise(pkt: Packet) -> None:
    wire = encode_ip(pkt)
    if pkt.family == 4:
        assert inet_checksum(wire[:20]) == 0
    if pkt.l4 is None or pkt.mf or (pkt.udp is not None and pkt.udp.checksum == 0):
        return
    assert _checksum_ok_independently(pkt, wire) == (not pkt.bad_l4_checksum)
    if pkt.udp is not None:
        assert wire[pkt.ip_header_len + 6:pkt.ip_header_len + 8] != b"\0\0"  # 0 would mean "none"


def test_dpkt_recomputes_our_checksums() -> None:
    # dpkt fills in a zeroed checksum when packing: it must agree with ours.
    cases = [
        Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6, TcpHeader(40000, 80, options=LINUX_SYN_OPTIONS)),
        Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(53000, 53), payload_len=33),
        Packet(ip("10.0.1.2"), ip("10.0.2.2"), 1, IcmpHeader(8, 0, id=17169, seq=1), payload_len=56),
    ]
    for pkt in cases:
        wire = encode_ip(pkt)
        d = dpkt.ip.IP(wire)
        ours = d.data.sum
        d.data.sum = 0
        d.sum = 0
        if pkt.icmp is not None:
            d.data = dpkt.icmp.ICMP(bytes(d.data))
            d.data.sum = 0
        assert bytes(d) == wire, pkt.describe()
        assert ours != 0


def test_known_linux_syn_bytes() -> None:
    # A SYN as Linux sends it: 60 bytes (LEN=60), DF, options MSS/SACK/TS/NOP/WS.
    pkt = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6,
                 TcpHeader(40000, 80, flags=TCP_SYN, seq=1, options=LINUX_SYN_OPTIONS), ip_id=0x1234)
    wire = encode_ip(pkt)
    assert len(wire) == 60
    assert wire[:4] == bytes.fromhex("4500003c") and wire[6:8] == bytes.fromhex("4000")
    assert wire[32] == 0xA0 and wire[33] == TCP_SYN  # data offset 10 words
    assert wire[40:60] == LINUX_SYN_OPTIONS


def test_tcp_options_are_padded_to_words() -> None:
    pkt = Packet(ip("10.0.0.1"), ip("10.0.0.2"), 6, TcpHeader(1, 2, flags=TCP_ACK, options=b"\x01\x01\x01"))
    back = decode_ip(encode_ip(pkt))
    assert back.tcp.options == b"\x01\x01\x01\x00" and back.tcp.header_len == 24 == pkt.tcp.header_len


def test_udp_zero_checksum_means_none_and_computed_zero_is_ffff() -> None:
    none = Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(1, 2, checksum=0), payload_len=4)
    wire = encode_ip(none)
    assert wire[26:28] == b"\0\0"
    assert decode_ip(wire).udp.checksum == 0 and not decode_ip(wire).bad_l4_checksum
    # search a datagram whose checksum computes to 0: it must go out as 0xffff (RFC 768)
    for sport in range(65536):
        pkt = Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(sport, 2))
        w = encode_ip(pkt)
        if w[26:28] == b"\xff\xff":
            back = decode_ip(w)
            assert back.udp.checksum is None and not back.bad_l4_checksum
            break
    else:
        raise AssertionError("no datagram with a computed checksum of 0 found")


def test_bad_checksum_on_a_checksum_that_would_corrupt_to_zero() -> None:
    # a corrupted UDP checksum must never become 0 ("no checksum", hence valid)
    for sport in range(65536):
        pkt = Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(sport, 2), bad_l4_checksum=True)
        good = encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(sport, 2)))
        if good[26:28] == b"\x00\x01":
            w = encode_ip(pkt)
            assert w[26:28] != b"\0\0"
            assert decode_ip(w).bad_l4_checksum
            break
    else:
        raise AssertionError("no datagram with checksum 0x0001 found")
