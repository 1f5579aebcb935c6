"""DNAT, SNAT, MASQUERADE, REDIRECT, NETMAP: ranges as libxt_NAT parses them, the request
handed to the NAT engine, and refusals."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.nat.range import Manip, NatRange, NatRequest
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import ACCEPT, DROP
from conntrace.ruleset.ext import ExtParseError, ExtUnsupported

from .conftest import ctx_for, parse, roundtrip, tcp

A = ipaddress.ip_address
PRE = dict(table="nat", chain="PREROUTING", proto=6)
POST = dict(table="nat", chain="POSTROUTING", proto=6)


@pytest.mark.parametrize("text,rng", [
    ("10.0.0.1", NatRange(A("10.0.0.1"), A("10.0.0.1"))),
    ("10.0.0.1:80", NatRange(A("10.0.0.1"), A("10.0.0.1"), 80, 80)),
    ("10.0.0.1-10.0.0.5:80-90", NatRange(A("10.0.0.1"), A("10.0.0.5"), 80, 90)),
    (":8080", NatRange(None, None, 8080, 8080)),
    ("10.0.0.1:1000-2000/3000", NatRange(A("10.0.0.1"), A("10.0.0.1"), 1000, 2000,
                                         base_port=3000)),
    ("1.2.3.4:0x50", NatRange(A("1.2.3.4"), A("1.2.3.4"), 80, 80)),
    ("1.2.3.4:http", NatRange(A("1.2.3.4"), A("1.2.3.4"), 80, 80)),
    ("1.2.3.4:80-80", NatRange(A("1.2.3.4"), A("1.2.3.4"), 80, 80)),
    ("10.0.0.5-10.0.0.1", NatRange(A("10.0.0.5"), A("10.0.0.1"))),  # iptables keeps it
])
def test_dnat_ranges(text, rng):
    t = parse("DNAT", ["--to-destination", text], **PRE)
    assert t.range == rng
    roundtrip(t, **PRE)


def test_dnat_flags_and_order():
    t = parse("DNAT", "--to-destination 10.0.0.1 --persistent --random", **PRE)
    assert t.range.random and t.range.persistent and not t.range.random_fully
    assert t.render() == ["--to-destination", "10.0.0.1", "--random", "--persistent"]
    s = parse("SNAT", "--to-source 10.0.0.1 --random-fully --persistent --random", **POST)
    assert s.render() == ["--to-source", "10.0.0.1", "--random", "--random-fully", "--persistent"]


def test_ipv6_dnat_brackets():
    t = parse("DNAT", ["--to-destination", "[2001:db8::1]:8080"], family=6, **PRE)
    assert t.range == NatRange(A("2001:db8::1"), A("2001:db8::1"), 8080, 8080)
    assert t.render() == ["--to-destination", "[2001:db8::1]:8080"]
    roundtrip(t, family=6, **PRE)
    u = parse("DNAT", ["--to-destination", "2001:db8::1-2001:db8::9"], family=6, **PRE)
    assert u.render() == ["--to-destination", "2001:db8::1-2001:db8::9"]
    # captured from ip6tables-save: glibc's inet_ntop form of a v4-mapped address
    m = parse("DNAT", ["--to-destination", "[::ffff:1.2.3.4]:80"], family=6, **PRE)
    assert m.render() == ["--to-destination", "[::ffff:1.2.3.4]:80"]
    n = parse("NETMAP", ["--to", "2001:db8::7/64"], family=6, table="nat", chain="PREROUTING")
    assert n.render() == ["--to", "2001:db8::/64"]


@pytest.mark.parametrize("name,tokens,kw,expected", [
    ("DNAT", "", PRE, "'--to-destination' must be specified"),
    ("DNAT", "--to-destination 1.2.3.4:80", dict(table="nat", chain="PREROUTING"),
     "need TCP, UDP, SCTP or DCCP with port specification"),
    ("DNAT", "--to-destination 1.2.3.4:90-80", PRE, "port range '90-80' is reversed"),
    ("DNAT", "--to-destination 1.2.3.4:65536", PRE, "port '65536' not valid"),
    ("DNAT", "--to-destination 1.2.3.4:80:90", PRE, "bad IP address '1.2.3.4:80:90'"),
    ("DNAT", "--to-destination 1.2.3.4:10:20", PRE, "bad IP address"),
    ("DNAT", "--to-destination 1.2.3", PRE, "bad IP address '1.2.3'"),
    ("DNAT", "--to-destination 01.2.3.4", PRE, "bad IP address '01.2.3.4'"),
    ("DNAT", "--to-destination foo", PRE, "bad IP address 'foo'"),
    ("DNAT", "--to-destination 1.2.3.4:1000-2000/0", PRE, "port '0' not valid"),
    ("DNAT", "--to-destination 1.2.3.4:1000/3000", PRE, "garbage after port value"),
    ("DNAT", "--to-destination [1.2.3.4]:80", PRE, "invalid address format"),
    ("DNAT", "--to-destination 1.2.3.4 --to-destination 1.2.3.5", PRE, "can only be used once"),
    ("REDIRECT", "--to-ports 10:20", PRE, "invalid port:port syntax"),
    ("REDIRECT", "--to-ports 42-1234/567", PRE, "shifted portmap ranges"),
    ("REDIRECT", "--to-ports ftp-ssh", PRE, "port 'ftp-ssh' not valid"),
    ("MASQUERADE", "--to-ports 1024-65536", POST, "port '65536' not valid"),
    ("MASQUERADE", "--to-ports 1000", dict(table="nat", chain="POSTROUTING"), "need TCP"),
    ("NETMAP", "", PRE, "'--to' must be specified"),
    ("NETMAP", "--to 10.0.0.0/33", PRE, "bad mask '33'"),
    ("NETMAP", "--to host.example", PRE, "bad IP address"),
])
def test_nat_parse_errors(name, tokens, kw, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse(name, tokens, **kw)


def test_ports_with_icmp_or_inverted_tcp_are_accepted_like_iptables():
    # __NAT_parse only looks at the protocol number, not at its inversion; ICMP ids are ports
    assert parse("DNAT", "--to-destination 1.2.3.4:80", table="nat", chain="PREROUTING",
                 proto=1).range.min_port == 80
    assert parse("DNAT", "--to-destination 1.2.3.4:80", table="nat", chain="PREROUTING",
                 proto=6, proto_inv=True).range.min_port == 80


def test_snat_port_offset_is_reported_unsupported():
    with pytest.raises(ExtUnsupported):
        parse("SNAT", "--to-source 1.2.3.4:1000-2000/3000", **POST)


@pytest.mark.parametrize("name,tokens,rendered", [
    ("MASQUERADE", "", ""),
    ("MASQUERADE", "--to-ports 1000-2000 --random", "--to-ports 1000-2000 --random"),
    ("MASQUERADE", "--random-fully --random", "--random --random-fully"),
    ("REDIRECT", "--to-port 15001", "--to-ports 15001"),
    ("REDIRECT", "--to-ports 512-512", "--to-ports 512"),
    ("REDIRECT", "--to-ports ssh", "--to-ports 22"),
    ("REDIRECT", "--random", "--random"),
])
def test_ports_targets_render(name, tokens, rendered):
    kw = POST if name == "MASQUERADE" else PRE
    t = parse(name, tokens, **kw)
    assert " ".join(t.render()) == rendered
    roundtrip(t, **kw)


@pytest.mark.parametrize("text,rendered", [
    ("192.168.21.5/24", "192.168.21.0/24"), ("192.168.21.5", "192.168.21.5/32"),
    ("10.0.0.0/255.255.0.0", "10.0.0.0/16"), ("10.0.0.0/0", "0.0.0.0/0"),
])
def test_netmap_prefix(text, rendered):
    t = parse("NETMAP", ["--to", text], table="nat", chain="PREROUTING")
    assert t.render() == ["--to", rendered]
    roundtrip(t, table="nat", chain="PREROUTING")


def test_netmap_mask_with_holes_is_unsupported():
    with pytest.raises(ExtUnsupported):
        parse("NETMAP", "--to 10.0.0.0/255.0.255.0", table="nat", chain="PREROUTING")


class _Engine:
    """Stands in for the NAT engine: records the request, answers a fixed verdict."""

    def __init__(self, verdict=ACCEPT):
        self.requests: list[NatRequest] = []
        self.verdict = verdict

    def __call__(self, req: NatRequest):
        self.requests.append(req)
        return self.verdict


@pytest.mark.parametrize("name,tokens,hook,kind,manip", [
    ("DNAT", "--to-destination 10.0.2.2:80", Hook.PREROUTING, "DNAT", Manip.DST),
    ("DNAT", "--to-destination 10.0.2.2:80", Hook.OUTPUT, "DNAT", Manip.DST),
    ("SNAT", "--to-source 10.0.2.1", Hook.POSTROUTING, "SNAT", Manip.SRC),
    ("SNAT", "--to-source 10.0.2.1", Hook.INPUT, "SNAT", Manip.SRC),
    ("MASQUERADE", "--to-ports 2000-3000", Hook.POSTROUTING, "MASQUERADE", Manip.SRC),
    ("REDIRECT", "--to-ports 8080", Hook.PREROUTING, "REDIRECT", Manip.DST),
    ("NETMAP", "--to 192.168.0.0/16", Hook.PREROUTING, "NETMAP", Manip.DST),
    ("NETMAP", "--to 192.168.0.0/16", Hook.OUTPUT, "NETMAP", Manip.DST),
    ("NETMAP", "--to 192.168.0.0/16", Hook.POSTROUTING, "NETMAP", Manip.SRC),
    ("NETMAP", "--to 192.168.0.0/16", Hook.INPUT, "NETMAP", Manip.SRC),
])
def test_apply_hands_a_request_to_the_engine(router, name, tokens, hook, kind, manip):
    t = parse(name, tokens, table="nat", chain=hook.value, proto=6)
    engine = _Engine(DROP)
    ctx = ctx_for(router, tcp("10.0.1.2", "10.0.1.1"), hook, "nat", nat_setup=engine)
    assert t.apply(ctx) is DROP  # whatever the engine decides is the verdict
    (req,) = engine.requests
    assert req.kind == kind and req.manip is manip
    if name == "NETMAP":
        assert req.netmap_prefix == ipaddress.ip_network("192.168.0.0/16")
        assert (req.range.min_addr, req.range.max_addr) == (A("192.168.0.0"), A("192.168.255.255"))
    else:
        assert req.range == t.range
    assert t.terminal and t.needs_conntrack


def test_apply_outside_a_nat_hook_is_a_caller_bug(router):
    t = parse("DNAT", "--to-destination 10.0.2.2", **PRE)
    with pytest.raises(RuntimeError, match="outside a NAT hook"):
        t.apply(ctx_for(router, tcp("10.0.1.2", "10.0.1.1"), Hook.PREROUTING, "nat"))
