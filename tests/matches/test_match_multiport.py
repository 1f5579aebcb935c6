"""multiport: lists, ranges, the 15-slot limit, directions, `!`."""

import pytest
from hypothesis import given, strategies as st

from conntrace.ruleset.ext import ExtParseError

from match_helpers import ctx, hit, icmp, parse, roundtrip, tcp, udp

TCP = {"proto": 6}


@pytest.mark.parametrize("written,saved", [
    ("--dports 1,2,3:5,ssh", "--dports 1,2,3:5,22"),
    ("! --sports 1,2", "! --sports 1,2"),
    ("--ports 1:2", "--ports 1:2"),
    ("--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"),
    ("--dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15", "--dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15"),
    ("--dports 0,65535", "--dports 0,65535"),
    ("--source-ports 7", "--sports 7"),
    ("--destination-ports 25,137:139,445", "--dports 25,137:139,445"),
])
def test_saved(written, saved):
    m = parse("multiport", written, **TCP)
    assert " ".join(m.render()) == saved
    roundtrip(m, **TCP)


@pytest.mark.parametrize("bad", [
    "--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
    "--dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16",
    "--dports 3:1", "--dports :5", "--dports 5:", "--dports 1,,2", "--dports 65536",
    "--dports 1 --sports 2",
])
def test_bad(bad):
    with pytest.raises(ExtParseError):
        parse("multiport", bad, **TCP)


def test_protocols():
    for proto in (6, 17, 132, 136, 33):
        parse("multiport", "--dports 5", proto=proto)
    for kw in ({"proto": 1}, {}, {"proto": 17, "proto_inv": True}):
        with pytest.raises(ExtParseError, match="multiport needs"):
            parse("multiport", "--dports 5", **kw)


def test_eval_directions():
    d = parse("multiport", "--dports 22,80:90", **TCP)
    assert hit(d, tcp(dport=22)) and hit(d, tcp(dport=85)) and not hit(d, tcp(dport=91))
    assert not hit(d, tcp(sport=22, dport=1))
    s = parse("multiport", "--sports 22", **TCP)
    assert hit(s, tcp(sport=22, dport=1)) and not hit(s, tcp(sport=1, dport=22))
    either = parse("multiport", "--ports 22", proto=17)
    assert hit(either, udp(sport=22, dport=1)) and hit(either, udp(sport=1, dport=22))
    assert not hit(either, udp(sport=1, dport=2))
    inv = parse("multiport", "! --dports 53,15008", **TCP)
    assert not hit(inv, tcp(dport=53)) and hit(inv, tcp(dport=80))
    assert not hit(inv, tcp(dport=80, frag_offset=2))  # fragments never match


@given(ports=st.lists(st.integers(0, 65535), min_size=1, max_size=15), port=st.integers(0, 65535))
def test_list_membership(ports, port):
    m = parse("multiport", ["--dports", ",".join(map(str, ports))], proto=17)
    assert hit(m, udp(dport=port)) == (port in ports)


def test_non_port_packet_is_uncertain():
    m = parse("multiport", "--dports 5", **TCP)
    c = ctx(icmp())
    assert not m.matches(c) and c.uncertain
