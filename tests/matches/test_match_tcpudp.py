"""tcp / udp matches: ports, ranges, flags, options, fragments, canonical save forms."""

import pytest
from hypothesis import given, strategies as st

from conntrace.ruleset.ext import ExtParseError
from conntrace.ruleset.matches.tcpudp import TcpMatch, tcp_has_option

from match_helpers import ctx, hit, parse, roundtrip, tcp, udp

TCP = {"proto": 6}
UDP = {"proto": 17}


# Canonical forms seen with iptables-save v1.8.9 (nf_tables) for the input on the left
@pytest.mark.parametrize("written,saved", [
    ("--dport 80", "--dport 80"),
    ("--sport 1:1024", "--sport 1:1024"),
    ("--sport :1024", "--sport 0:1024"),
    ("--sport 1024:", "--sport 1024:65535"),
    ("--sport 0:0", "--sport 0"),
    ("--dport 5:5", "--dport 5"),
    ("--dport ssh", "--dport 22"),
    ("--dport http:https", "--dport 80:443"),
    ("--dport 0x50", "--dport 80"),
    ("--syn", "--tcp-flags FIN,SYN,RST,ACK SYN"),
    ("! --syn", "! --tcp-flags FIN,SYN,RST,ACK SYN"),
    ("--tcp-flags ALL NONE", "--tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE"),
    ("--tcp-flags ALL ALL", "--tcp-flags FIN,SYN,RST,PSH,ACK,URG FIN,SYN,RST,PSH,ACK,URG"),
    ("--tcp-flags syn,ack syn", "--tcp-flags SYN,ACK SYN"),
    ("--tcp-flags SYN,SYN SYN", "--tcp-flags SYN SYN"),
    ("--tcp-flags SYN ACK", "--tcp-flags SYN ACK"),
    ("--tcp-flags SYN,ALL NONE", "--tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE"),
    ("--tcp-option 2", "--tcp-option 2"),
    ("! --tcp-option 255", "! --tcp-option 255"),
    ("--source-port 7 --destination-port 8", "--sport 7 --dport 8"),
    ("--dport 5 --sport 6 ! --tcp-flags SYN,ACK SYN ! --tcp-option 5",
     "--sport 6 --dport 5 ! --tcp-option 5 ! --tcp-flags SYN,ACK SYN"),
    ("! --dport 80", "! --dport 80"),
    # nft emits nothing for these: no test left, nothing printed
    ("! --dport 0:65535", ""),
    ("--dport :", ""),
    ("--tcp-flags NONE SYN", ""),
])
def test_tcp_canonical(written, saved):
    m = parse("tcp", written, **TCP)
    assert " ".join(m.render()) == saved
    assert roundtrip(m, **TCP) == saved


@pytest.mark.parametrize("written", [
    "--dport 65536", "--dport 080", "--sport 5:3", "--dport nosuchservice", "--dport -1",
    "--tcp-option 0", "--tcp-option 256", "--tcp-flags ECE SYN", "--tcp-flags SYN FOO",
    "--syn --tcp-flags SYN SYN", "--sport 1 --sport 2", "--dport 1:2:3",
])
def test_tcp_bad_values(written):
    with pytest.raises(ExtParseError):
        parse("tcp", written, **TCP)


def test_tcp_needs_proto_tcp():
    with pytest.raises(ExtParseError, match="requires '-p tcp'"):
        parse("tcp", "--dport 80", proto=17)
    with pytest.raises(ExtParseError):
        parse("tcp", "--dport 80")
    with pytest.raises(ExtParseError, match="requires '-p udp'"):
        parse("udp", "--dport 80", proto=6)
    # iptables-nft accepts `! -p tcp -m tcp` (checked on 1.8.9)
    assert parse("tcp", "--dport 80", proto=6, proto_inv=True).dport == (80, 80)


def test_port_edges():
    m = parse("tcp", "--dport 0", **TCP)
    assert hit(m, tcp(dport=0)) and not hit(m, tcp(dport=1))
    m = parse("tcp", "--dport 65535", **TCP)
    assert hit(m, tcp(dport=65535)) and not hit(m, tcp(dport=65534))
    m = parse("tcp", "--sport :1023", **TCP)
    assert hit(m, tcp(sport=0)) and hit(m, tcp(sport=1023)) and not hit(m, tcp(sport=1024))
    m = parse("tcp", "! --sport 1024:", **TCP)
    assert hit(m, tcp(sport=1023)) and not hit(m, tcp(sport=1024)) and not hit(m, tcp(sport=65535))


@given(lo=st.integers(0, 65535), hi=st.integers(0, 65535), port=st.integers(0, 65535),
       inv=st.booleans())
def test_tcp_port_range_property(lo, hi, port, inv):
    if lo > hi:
        lo, hi = hi, lo
    m = parse("tcp", (["!"] if inv else []) + ["--dport", f"{lo}:{hi}"], **TCP)
    expect = True if (lo, hi) == (0, 65535) else ((lo <= port <= hi) != inv)
    assert hit(m, tcp(dport=port)) == expect
    assert parse("tcp", m.render(), **TCP) == m


def test_syn_flags():
    m = parse("tcp", "--syn", **TCP)
    assert hit(m, tcp(flags=0x02))
    assert hit(m, tcp(flags=0x02 | 0x08 | 0x20))  # PSH/URG are outside the mask
    assert not hit(m, tcp(flags=0x12))  # SYN/ACK
    assert not hit(m, tcp(flags=0x10))
    assert not hit(m, tcp(flags=0x03))  # SYN+FIN
    inv = parse("tcp", "! --syn", **TCP)
    assert hit(inv, tcp(flags=0x12)) and not hit(inv, tcp(flags=0x02))


def test_tcp_flags_all_none_is_null_scan():
    m = parse("tcp", "--tcp-flags ALL NONE", **TCP)
    assert hit(m, tcp(flags=0))
    assert hit(m, tcp(flags=0x40 | 0x80))  # ECE/CWR are outside ALL (0x3f)
    assert not hit(m, tcp(flags=0x01))


def test_empty_mask_means_no_test():
    m = parse("tcp", "--tcp-flags NONE SYN", **TCP)
    assert hit(m, tcp(flags=0x10))
    assert hit(m, tcp(flags=0x10, frag_offset=5))  # no test at all: fragments too


def test_fragments_never_match_a_port_test():
    m = parse("tcp", "--dport 80", **TCP)
    assert not hit(m, tcp(dport=80, frag_offset=10))
    inv = parse("tcp", "! --dport 80", **TCP)
    assert not hit(inv, tcp(dport=81, frag_offset=10))
    u = parse("udp", "! --dport 53", **UDP)
    assert not hit(u, udp(dport=54, frag_offset=3))


def test_tcp_option_walk():
    syn = bytes.fromhex("020405b40402080a000000000000000001030307")  # MSS SACKP TS NOP WS
    assert tcp_has_option(syn, 2) and tcp_has_option(syn, 4) and tcp_has_option(syn, 8)
    assert tcp_has_option(syn, 1) and tcp_has_option(syn, 3)
    assert not tcp_has_option(syn, 5)
    assert tcp_has_option(b"\x00\x00\x05", 5)  # one-byte kinds 0/1 are stepped over
    assert tcp_has_option(b"\x03\x00\x05", 5)  # a zero length steps one byte
    assert not tcp_has_option(b"\x03\x03\x05", 5)  # a byte inside an option is skipped
    m = parse("tcp", "--tcp-option 3", **TCP)
    assert hit(m, tcp(options=syn)) and not hit(m, tcp(options=b""))
    inv = parse("tcp", "! --tcp-option 3", **TCP)
    assert not hit(inv, tcp(options=syn)) and hit(inv, tcp(options=b""))


def test_udp():
    m = parse("udp", "--sport 10:20 --dport 53", **UDP)
    assert " ".join(m.render()) == "--sport 10:20 --dport 53"
    assert hit(m, udp(sport=15, dport=53))
    assert not hit(m, udp(sport=21, dport=53)) and not hit(m, udp(sport=15, dport=54))
    assert parse("udp", "--dport domain", **UDP).dport == (53, 53)
    roundtrip(m, **UDP)


def test_proto_inverted_tcp_reads_udp_ports():
    """`! -p tcp -m tcp --dport 80` is `meta l4proto != tcp th dport 80` in nft."""
    m = parse("tcp", "--dport 80", proto=6, proto_inv=True)
    assert hit(m, udp(dport=80)) and not hit(m, udp(dport=81))
    c = ctx(udp(dport=80))
    f = parse("tcp", "--syn", proto=6, proto_inv=True)
    assert f.matches(c) is False and c.uncertain


def test_no_test_matches_everything():
    assert TcpMatch() == parse("tcp", "", **TCP)
    assert hit(TcpMatch(), tcp(frag_offset=1))
