"""ipset save parsing and membership. SAVE is real `ipset save` output (ipset 7.17, kernel
6.18, in a netns); the membership answers were checked with `ipset test` there."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.errors import InputError
from conntrace.packet import IcmpHeader, Packet, SkbMeta, TcpHeader, UdpHeader
from conntrace.ruleset.ipset import load_ipset_text, match_packet, packet_values

SAVE = """create a hash:ip family inet hashsize 1024 maxelem 65536 timeout 300 comment bucketsize 12 initval 0x9da8fc74
add a 1.2.3.4 timeout 99 comment "hi there"
add a 5.5.5.2 timeout 300
create n hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc34f51de
add n 10.0.0.0/8
add n 10.1.0.0/16 nomatch
create ipp hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x196e9442
add ipp 1.2.3.4,udp:53
add ipp 1.2.3.6,icmp:echo-request
add ipp 1.2.3.4,tcp:80
create ipi hash:ip,port,ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x10c1a6ee
add ipi 1.1.1.1,tcp:22,2.2.2.2
create ipn hash:ip,port,net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x6ffa3a00
add ipn 1.1.1.1,tcp:22,2.2.0.0/16
create ni hash:net,iface family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x3ad895a1
add ni 10.0.0.0/8,physdev:eth1
add ni 10.0.0.0/8,eth0
create bp bitmap:port range 1-1024
add bp 22
add bp 80
create bi2 bitmap:ip range 10.0.0.0-10.0.0.255 netmask 30
add bi2 10.0.0.8
create six hash:net family inet6 hashsize 2048 maxelem 100 bucketsize 12 initval 0x7e37ad13
add six 2001:db8::/32
create np hash:net,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc0aa8e0f
add np 10.0.0.0/24,tcp:1
create m hash:mac hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
add m 02:00:00:00:00:01
create hn hash:ip family inet hashsize 1024 maxelem 65536 netmask 24 bucketsize 12 initval 0x27546339
add hn 9.9.9.0
create l list:set size 8
add l a
add l n
"""


@pytest.fixture(scope="module")
def sets():
    return load_ipset_text(SAVE, "sets.save")


def test_load(sets):
    assert list(sets) == ["a", "n", "ipp", "ipi", "ipn", "ni", "bp", "bi2", "six", "np", "m",
                          "hn", "l"]
    a = sets["a"]
    assert (a.type, a.family, a.timeout, a.dimension) == ("hash:ip", 4, 300, 1)
    assert [e.timeout for e in a.entries] == [99, 300]
    assert a.entries[0].comment == "hi there"
    assert a.entries[0].source.line == 2 and a.source.file == "sets.save"
    assert sets["six"].family == 6 and sets["bp"].family is None
    assert sets["n"].entries[1].nomatch and not sets["n"].entries[0].nomatch


@pytest.mark.parametrize("name,values,expected", [
    ("a", ("1.2.3.4",), True),
    ("a", (ipaddress.ip_address("1.2.3.5"),), False),
    ("n", ("10.2.2.3",), True),
    ("n", ("10.1.2.3",), False),  # the /16 nomatch entry is more specific
    ("n", ("11.0.0.1",), False),
    ("ipp", ("1.2.3.4", (17, 53)), True),
    ("ipp", ("1.2.3.4", (6, 53)), False),  # ports carry their protocol
    ("ipp", ("1.2.3.4", "tcp:80"), True),
    ("ipp", ("1.2.3.4", "80"), True),  # a bare port is TCP
    ("ipp", ("1.2.3.6", "icmp:ping"), True),
    ("ipp", ("1.2.3.6", (1, 8 << 8)), True),
    ("ipp", ("1.2.3.6", (1, 0)), False),
    ("ipi", ("1.1.1.1", (6, 22), "2.2.2.2"), True),
    ("ipi", ("1.1.1.1", (6, 22), "2.2.2.3"), False),
    ("ipn", ("1.1.1.1", (6, 22), "2.2.9.9"), True),
    ("ipn", ("1.1.1.1", (6, 23), "2.2.9.9"), False),
    ("ni", ("10.9.9.9", "eth0"), True),
    ("ni", ("10.9.9.9", "eth1"), False),  # only as a bridge port (physdev:)
    ("ni", ("10.9.9.9", "physdev:eth1"), True),
    ("bp", ((6, 22),), True),
    ("bp", ((17, 80),), True),
    ("bp", ((6, 23),), False),
    ("bp", ((132, 22),), False),  # bitmap:port: TCP and UDP only
    ("bi2", ("10.0.0.9",), True),  # netmask 30: 10.0.0.8-11
    ("bi2", ("10.0.0.12",), False),
    ("hn", ("9.9.9.200",), True),  # hash:ip netmask 24
    ("six", ("2001:db8::1",), True),
    ("six", ("10.0.0.1",), False),  # family mismatch
    ("np", ("10.0.0.7", (6, 1)), True),
    ("m", ("02:00:00:00:00:01",), True),
    ("m", ("02:00:00:00:00:02",), False),
    ("l", ("5.5.5.2",), True),
    ("l", ("10.3.3.3",), True),
    ("l", ("10.1.3.3",), False),
    ("ipp", ("1.2.3.4",), False),  # fewer flags than dimensions never match
    ("a", ("1.2.3.4", "9.9.9.9"), True),  # extra flags are ignored
])
def test_membership(sets, name, values, expected):
    assert sets[name].test(values) is expected


def test_return_nomatch(sets):
    n = sets["n"]
    assert n.lookup(("10.1.2.3",)).nomatch
    assert n.test(("10.1.2.3",), return_nomatch=True)  # reversed: the nomatch entry matches
    assert not n.test(("10.2.2.3",), return_nomatch=True)
    assert not n.test(("11.0.0.1",), return_nomatch=True)
    assert sets["a"].test(("1.2.3.4",), return_nomatch=True)  # hash:ip has no nomatch
    assert sets["l"].test(("10.1.0.9",), return_nomatch=True)
    assert match_packet(n, _pkt(src=ipaddress.ip_address("10.1.0.1")), ("src",),
                        return_nomatch=True)


def test_timeouts(sets):
    a = sets["a"]
    assert a.test(("1.2.3.4",), now=50)
    assert not a.test(("1.2.3.4",), now=100)  # its timeout was 99 s at save time
    assert a.test(("5.5.5.2",), now=100)


def test_ranges_expand():
    s = load_ipset_text("create h hash:ip\nadd h 5.5.5.0/30\nadd h 7.7.7.7-7.7.7.8\n"
                        "create p hash:ip,port\nadd p 1.1.1.1,udp:10-12\n"
                        "create b bitmap:port range 1-100\nadd b 5-6\n"
                        "create n hash:net\nadd n 10.0.0.0-10.0.0.5\n")
    assert len(s["h"].entries) == 6
    assert [e.key[1] for e in s["p"].entries] == [(17, 10), (17, 11), (17, 12)]
    assert s["b"].test(((6, 6),)) and not s["b"].test(((6, 7),))
    assert s["n"].test(("10.0.0.5",)) and not s["n"].test(("10.0.0.6",))


def _pkt(**kw):
    base = dict(src=ipaddress.ip_address("10.0.0.1"), dst=ipaddress.ip_address("1.2.3.4"),
                proto=17, l4=UdpHeader(40000, 53), meta=SkbMeta(in_iface="eth0"))
    base.update(kw)
    return Packet(**base)


def test_match_packet(sets):
    p = _pkt()
    assert packet_values(p, ("dst", "dst"), ("ip", "port")) == (p.dst, (17, 53))
    assert match_packet(sets["ipp"], p, ("dst", "dst"))
    assert not match_packet(sets["ipp"], p, ("dst", "src"))  # src port 40000
    assert match_packet(sets["ni"], p, ("src", "src"))  # 10.0.0.1 in via eth0
    assert not match_packet(sets["ni"], p, ("src", "dst"))  # no out device yet
    ping = _pkt(dst=ipaddress.ip_address("1.2.3.6"), proto=1, l4=IcmpHeader(8, 0))
    assert match_packet(sets["ipp"], ping, ("dst", "dst"))
    frag = _pkt(frag_offset=10)
    assert not match_packet(sets["ipp"], frag, ("dst", "dst"))  # no ports in a fragment
    assert match_packet(sets["l"], _pkt(src=ipaddress.ip_address("10.7.7.7")), ("src",))
    tcp = _pkt(proto=6, l4=TcpHeader(1234, 22), dst=ipaddress.ip_address("2.2.2.2"),
               src=ipaddress.ip_address("1.1.1.1"))
    assert match_packet(sets["ipi"], tcp, ("src", "dst", "dst"))
    v6 = _pkt(src=ipaddress.ip_address("2001:db8::5"), dst=ipaddress.ip_address("2001:db8::6"))
    assert match_packet(sets["six"], v6, ("src",))
    assert not match_packet(sets["n"], v6, ("src",))


@pytest.mark.parametrize("text,line,msg", [
    ("create x hash:foo\n", 1, "set type 'hash:foo' is not supported"),
    ("create x hash:ip\ncreate x hash:ip\n", 2, "already exists"),
    ("add y 1.2.3.4\n", 1, "set y does not exist"),
    ("create x hash:ip\nadd x 1.2.3.400\n", 2, "not an IPv4 address"),
    ("create x hash:ip family inet6\nadd x 1.2.3.4\n", 2, "not an IPv6 address"),
    ("create x hash:ip,port\nadd x 1.2.3.4\n", 2, "2 part(s)"),
    ("create x hash:ip,port\nadd x 1.2.3.4,tcp:99999\n", 2, "invalid port"),
    ("create x hash:ip,port\nadd x 1.2.3.4,icmp:bogus\n", 2, "unknown ICMP type"),
    ("create x hash:ip\nadd x 1.2.3.4 nomatch\n", 2, "nomatch is only"),
    ("create x hash:ip\nadd x 1.2.3.4 timeout 5\n", 2, "without timeout support"),
    ("create x bitmap:port range 1-10\nadd x 11\n", 2, "outside the range"),
    ("create x bitmap:ip\n", 1, "needs 'range'"),
    ("create x hash:ip family ipx\n", 1, "expected inet or inet6"),
    ("create x hash:mac\nadd x 02:00:00:00:00\n", 2, "invalid MAC"),
    ("create l list:set\nadd l nosuch\n", 2, "does not exist"),
    ("swap a b\n", 1, "unknown ipset command"),
    ("create x hash:ip timeout\n", 1, "needs a value"),
])
def test_errors(text, line, msg):
    with pytest.raises(InputError) as e:
        load_ipset_text(text, "s.txt")
    assert (e.value.file, e.value.line) == ("s.txt", line)
    assert msg in e.value.message
    assert str(e.value).startswith(f"s.txt:{line}: ")


def test_del_and_comments():
    s = load_ipset_text("# saved\n\ncreate x hash:ip\nadd x 1.1.1.1\nadd x 2.2.2.2\ndel x 1.1.1.1\n")
    assert [str(e.key[0]) for e in s["x"].entries] == ["2.2.2.2/32"]
