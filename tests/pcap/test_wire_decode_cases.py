"""Decoding edge cases: malformed bytes, unmodelled headers, ICMP quoting, cut captures."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conntrace.errors import InputError
from conntrace.packet import (
    LINUX_ACK_OPTIONS,
    TCP_ACK,
    TCP_PSH,
    IcmpHeader,
    Packet,
    TcpHeader,
    UdpHeader,
    ip,
)
from conntrace.wire import (
    NotIPError,
    UnmodelledError,
    WireError,
    decode_ether,
    decode_ip,
    decode_sll,
    decode_sll2,
    encode_ether,
    encode_ip,
    inet_checksum,
)
from pcaptest_support import packets

UDP = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(40004, 7000), payload_len=5, ttl=63,
             ip_id=23386)
TCP6 = Packet(ip("fd00::1"), ip("fd00::2"), 6, TcpHeader(40000, 443, flags=TCP_ACK | TCP_PSH,
              options=LINUX_ACK_OPTIONS), payload_len=100)


def _fix_ipv4_checksum(b: bytearray) -> bytes:
    ihl = (b[0] & 0x0F) * 4
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", inet_checksum(bytes(b[:ihl])))
    return bytes(b)


def _err(data: bytes, **kw) -> str:
    with pytest.raises(WireError) as ei:
        decode_ip(data, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and isinstance(ei.value, InputError)
    return msg


# ------------------------------------------------------------------------------------------------
# malformed IP


def test_empty_and_bad_version() -> None:
    assert "expected an IPv4 or IPv6 header" in _err(b"")
    bad = bytearray(encode_ip(UDP))
    bad[0] = 0x55
    assert "bad IP version 5: expected 4 or 6" in _err(bytes(bad))


def test_truncated_ipv4_header() -> None:
    assert "truncated IPv4 header: 19 bytes, expected at least 20" in _err(encode_ip(UDP)[:19])
    assert "truncated IPv6 header: 39 bytes, expected at least 40" in _err(encode_ip(TCP6)[:39])


def test_bad_ihl() -> None:
    b = bytearray(encode_ip(UDP))
    b[0] = 0x44
    assert "bad IPv4 IHL 4 (16-byte header): expected at least 5" in _err(bytes(b))


def test_ipv4_options_are_refused_loudly() -> None:
    # a router-alert option (IGMP uses it): well-formed, but Packet has no field for it
    wire = encode_ip(UDP)
    b = bytearray(wire[:20] + bytes.fromhex("94040000") + wire[20:])
    b[0] = 0x46
    b[2:4] = struct.pack("!H", len(b))
    with pytest.raises(UnmodelledError, match=r"IPv4 options \(4 bytes\) are not modelled"):
        decode_ip(_fix_ipv4_checksum(b))


def test_length_mismatch_and_trailing_padding() -> None:
    wire = encode_ip(UDP)
    msg = _err(wire[:-1])
    assert "length mismatch: the IP header says 33 bytes but only 32 are present" in msg
    # link-layer padding after the datagram is dropped, as ip_rcv_core's trim does
    assert decode_ip(wire + bytes(13), keep_payload=False) == UDP
    b = bytearray(wire)
    b[2:4] = struct.pack("!H", 19)
    assert "bad IPv4 total length 19" in _err(_fix_ipv4_checksum(b))


def test_bad_ipv4_header_checksum() -> None:
    b = bytearray(encode_ip(UDP))
    good = struct.unpack("!H", b[10:12])[0]
    b[10:12] = struct.pack("!H", good ^ 0x8000)
    msg = _err(bytes(b))
    assert f"bad IPv4 header checksum 0x{good ^ 0x8000:04x} (expected 0x{good:04x})" in msg


def test_udp_length_disagreeing_with_ip_length() -> None:
    b = bytearray(encode_ip(UDP))
    b[24:26] = struct.pack("!H", 14)
    assert "UDP length 14 disagrees with the IP payload length 13: expected 8..13" in _err(bytes(b))
    b[24:26] = struct.pack("!H", 7)
    assert "UDP length 7 disagrees" in _err(bytes(b))
    # shorter than the IP payload: Linux accepts it, Packet cannot say it
    b[24:26] = struct.pack("!H", 12)
    with pytest.raises(UnmodelledError, match="1 bytes after the UDP datagram"):
        decode_ip(bytes(b))


def test_bad_tcp_data_offset() -> None:
    b = bytearray(encode_ip(TCP6))
    b[40 + 12] = 0x40
    assert "bad TCP data offset 4 (16-byte header): expected at least 5" in _err(bytes(b))
    b[40 + 12] = 0xF0  # 60 bytes of header
    short = Packet(ip("fd00::1"), ip("fd00::2"), 6, TcpHeader(1, 2))
    s = bytearray(encode_ip(short))
    s[52] = 0xF0
    assert "TCP data offset 15 (60-byte header) exceeds the 20-byte IP payload" in _err(bytes(s))


def test_ip_payload_too_short_for_l4() -> None:
    p = Packet(ip("10.0.0.1"), ip("10.0.0.2"), 6, None, payload_len=10)
    assert "IP payload of 10 bytes is too short for a 20-byte TCP header" in _err(encode_ip(p))


def test_ipv6_extension_headers_are_refused_loudly() -> None:
    wire = bytearray(encode_ip(TCP6))
    hbh = bytes([6, 0]) + bytes.fromhex("050200000100")  # next=TCP, router alert + pad
    b = bytearray(wire[:40] + hbh + wire[40:])
    b[6] = 0
    b[4:6] = struct.pack("!H", len(b) - 40)
    with pytest.raises(UnmodelledError, match=r"hop-by-hop options extension header \(next header 0\)"):
        decode_ip(bytes(b))


def test_ipv6_fragment_header() -> None:
    frag = Packet(ip("fd00::1"), ip("fd00::2"), 17, None, payload_len=64, mf=True, frag_offset=10,
                  ip_id=0xDEADBEEF)
    wire = encode_ip(frag)
    assert wire[6] == 44 and wire[40] == 17 and wire[44:48] == bytes.fromhex("deadbeef")
    assert len(wire) == frag.total_len == 40 + 8 + 64
    assert decode_ip(wire, keep_payload=False) == frag
    atomic = bytearray(wire)
    atomic[42:44] = b"\0\0"
    with pytest.raises(UnmodelledError, match="atomic fragment"):
        decode_ip(bytes(atomic))


def test_encode_refuses_what_the_wire_cannot_hold() -> None:
    with pytest.raises(WireError, match=r"sport=70000 does not fit the wire: expected 0\.\.65535"):
        encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(70000, 1)))
    with pytest.raises(WireError, match="non-first fragment"):
        encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, UdpHeader(1, 1), frag_offset=3))
    with pytest.raises(WireError, match="payload has 3 bytes but payload_len is 4"):
        encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 47, payload_len=4, payload=b"abc"))
    with pytest.raises(WireError, match="different IP versions"):
        encode_ip(Packet(ip("10.0.0.1"), ip("::1"), 47))
    with pytest.raises(WireError, match="expected proto=6"):
        encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 17, TcpHeader(1, 2)))
    with pytest.raises(WireError, match="TCP options are 44 bytes: expected at most 40"):
        encode_ip(Packet(ip("10.0.0.1"), ip("10.0.0.2"), 6, TcpHeader(1, 2, options=bytes(44))))


@settings(max_examples=300, deadline=None)
@given(packets(), st.data())
def test_any_cut_of_a_datagram_gives_a_clear_error(pkt: Packet, data: st.DataObject) -> None:
    wire = encode_ip(pkt)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(WireError):
        decode_ip(wire[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_never_escapes_as_a_traceback(blob: bytes) -> None:
    for fn in (decode_ip, decode_ether, decode_sll, decode_sll2):
        try:
            fn(blob)
        except InputError as e:
            assert str(e) and "\n" not in str(e)


# ------------------------------------------------------------------------------------------------
# link layers


def test_non_ip_frames() -> None:
    arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    with pytest.raises(NotIPError, match=r"ethertype 0x0806 \(ARP\): not IP"):
        decode_ether(arp)
    llc = bytes(12) + struct.pack("!H", 38) + bytes(38)
    with pytest.raises(NotIPError, match="802.3 frame with length field 38"):
        decode_ether(llc)
    vlan = bytes(12) + bytes.fromhex("8100000a0800") + encode_ip(UDP)
    with pytest.raises(UnmodelledError, match="VLAN-tagged"):
        decode_ether(vlan)
    with pytest.raises(WireError, match="truncated Ethernet header: 13 bytes, expected 14"):
        decode_ether(bytes(13))
    with pytest.raises(WireError, match="truncated Linux cooked \\(SLL\\) header"):
        decode_sll(bytes(15))
    with pytest.raises(WireError, match="truncated Linux cooked \\(SLL2\\) header"):
        decode_sll2(bytes(19))


def test_ethertype_must_match_ip_version() -> None:
    frame = bytearray(encode_ether(UDP, "02:00:00:00:00:01", "02:00:00:00:00:02"))
    frame[12:14] = b"\x86\xdd"
    with pytest.raises(WireError, match="announces IPv6 but the packet is IPv4"):
        decode_ether(bytes(frame))


def test_padded_short_frame() -> None:
    frame = encode_ether(UDP, "02:00:00:00:00:01", "02:00:00:00:00:02", pad=True)
    assert len(frame) == 60
    pkt, _, _ = decode_ether(frame, keep_payload=False)
    pkt.meta.src_mac = pkt.meta.dst_mac = None
    assert pkt == UDP


# ------------------------------------------------------------------------------------------------
# ICMP errors


def _port_unreachable(inner: Packet, **kw) -> Packet:
    return Packet(inner.dst, inner.src, 1 if inner.family == 4 else 58,
                  IcmpHeader(3 if inner.family == 4 else 1, 3 if inner.family == 4 else 4,
                             embedded=inner, **kw), df=False, tos=0xC0)


def test_log_example_len_61() -> None:
    # netfilter-semantics.md: LEN=61 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.1.2 ... LEN=33 ... LEN=13]
    err = _port_unreachable(UDP)
    wire = encode_ip(err)
    assert len(wire) == 61 and struct.unpack("!H", wire[2:4])[0] == 61
    assert struct.unpack("!H", wire[28 + 2:28 + 4])[0] == 33  # the quoted LEN=33
    assert struct.unpack("!H", wire[28 + 20 + 4:28 + 20 + 6])[0] == 13  # the quoted UDP LEN=13
    assert decode_ip(wire, keep_payload=False) == err


def test_linux_quotes_576_bytes_for_ipv4_and_1280_for_ipv6() -> None:
    big4 = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(1, 2), payload_len=1400)
    big6 = Packet(ip("fd00::1"), ip("fd00::2"), 17, UdpHeader(1, 2), payload_len=1400)
    w4 = encode_ip(_port_unreachable(big4))
    w6 = encode_ip(_port_unreachable(big6))
    assert len(w4) == 576 and len(w6) == 1280
    # the quote is the start of the original datagram, checksum and all
    assert w4[28:] == encode_ip(big4)[:548] and w6[48:] == encode_ip(big6)[:1232]
    back = decode_ip(w4)
    assert back.icmp.quoted_len is None and back.icmp.embedded.payload_len == 1400
    assert back.icmp.embedded.payload is None  # not all of it was quoted
    assert not back.bad_l4_checksum and not back.icmp.embedded.bad_l4_checksum


def test_short_quote_from_a_non_linux_router() -> None:
    # RFC 792 routers quote the IP header and 8 bytes: TCP ports and sequence number only.
    inner = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6, TcpHeader(40000, 80, seq=0x01020304,
                   flags=TCP_ACK, options=LINUX_ACK_OPTIONS), payload_len=1000)
    err = Packet(ip("192.0.2.1"), ip("10.0.1.2"), 1, IcmpHeader(11, 0, embedded=inner, quoted_len=28))
    wire = encode_ip(err)
    assert len(wire) == 20 + 8 + 28 == err.total_len
    back = decode_ip(wire)
    emb = back.icmp.embedded
    assert back.icmp.quoted_len == 28
    assert (emb.tcp.sport, emb.tcp.dport, emb.tcp.seq, emb.total_len) == (40000, 80, 0x01020304, 1052)
    assert encode_ip(back) == wire  # what was not quoted is never re-emitted


def test_quote_must_hold_the_inner_ports() -> None:
    inner = encode_ip(UDP)
    icmp = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + inner[:22]
    icmp = icmp[:2] + struct.pack("!H", inet_checksum(icmp)) + icmp[4:]
    outer = bytearray(encode_ip(Packet(ip("10.0.2.2"), ip("10.0.1.2"), 1, None, payload_len=len(icmp))))
    with pytest.raises(WireError, match="in the datagram quoted by the ICMP error: truncated UDP header: "
                       "the ICMP error quotes 2 bytes, expected 4"):
        decode_ip(bytes(outer[:20]) + icmp)


def test_icmp_error_fields() -> None:
    inner = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6, TcpHeader(1, 2), payload_len=1480)
    frag_needed = Packet(ip("10.0.2.1"), ip("10.0.1.2"), 1, IcmpHeader(3, 4, mtu=1400, embedded=inner))
    wire = encode_ip(frag_needed)
    assert wire[24:28] == bytes.fromhex("00000578")
    redirect = Packet(ip("10.0.1.1"), ip("10.0.1.2"), 1,
                      IcmpHeader(5, 1, gateway=ip("10.0.1.254"), embedded=inner))
    assert encode_ip(redirect)[24:28] == ip("10.0.1.254").packed
    inner6 = Packet(ip("fd00::1"), ip("fd00::2"), 6, TcpHeader(1, 2), payload_len=1480)
    ptb = Packet(ip("fd00::fe"), ip("fd00::1"), 58, IcmpHeader(2, 0, mtu=1280, embedded=inner6))
    w6 = encode_ip(ptb)
    assert w6[44:48] == struct.pack("!I", 1280) and len(w6) == 1280
    for p in (frag_needed, redirect, ptb):
        assert decode_ip(encode_ip(p), keep_payload=False) == p


# ------------------------------------------------------------------------------------------------
# captures cut by the snaplen


def test_cut_capture_keeps_headers_drops_payload() -> None:
    wire = encode_ip(TCP6)
    cut = wire[:40 + 32 + 10]
    with pytest.raises(WireError, match="length mismatch"):
        decode_ip(cut)
    back = decode_ip(cut, truncated=True)
    assert back.payload is None and back.payload_len == 100 and back.tcp == TCP6.tcp
    assert not back.bad_l4_checksum  # cannot be judged without the whole segment
    with pytest.raises(WireError, match="truncated TCP header: 32 bytes expected, 30 present"):
        decode_ip(wire[:40 + 30], truncated=True)
