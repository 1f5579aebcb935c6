"""TPROXY: option forms and the socket lookup of tproxy_tg4."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.host.host import Socket
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import ACCEPT, DROP
from conntrace.ruleset.ext import ExtParseError

from .conftest import ctx_for, parse, roundtrip, tcp, udp

A = ipaddress.ip_address
KW = dict(table="mangle", chain="PREROUTING", proto=6)


@pytest.mark.parametrize("tokens,rendered", [
    ("--on-port 15006 --tproxy-mark 1337/0xffffffff",
     "--on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff"),
    ("--on-port 15006 --on-ip 10.0.0.1 --tproxy-mark 0x1",
     "--on-port 15006 --on-ip 10.0.0.1 --tproxy-mark 0x1/0xffffffff"),
    ("--on-port 0", "--on-port 0 --on-ip 0.0.0.0 --tproxy-mark 0x0/0x0"),
    ("--on-port 53 --on-ip 0.0.0.0", "--on-port 53 --on-ip 0.0.0.0 --tproxy-mark 0x0/0x0"),
    ("--on-port domain", "--on-port 53 --on-ip 0.0.0.0 --tproxy-mark 0x0/0x0"),
])
def test_tproxy_forms(tokens, rendered):
    t = parse("TPROXY", tokens, **KW)
    assert " ".join(t.render()) == rendered
    roundtrip(t, **KW)


def test_tproxy_ipv6_renders_any_address():
    t = parse("TPROXY", "--on-port 1", family=6, **KW)
    assert t.render()[3] == "::"
    roundtrip(t, family=6, **KW)
    m = parse("TPROXY", "--on-port 1 --on-ip ::ffff:1.2.3.4", family=6, **KW)
    assert m.render()[3] == "::ffff:1.2.3.4"  # as ip6tables-save printed it


@pytest.mark.parametrize("tokens,kw,expected", [
    ("--on-port 1", dict(table="mangle", chain="PREROUTING"), "only with -p tcp or -p udp"),
    ("--on-port 1", dict(table="mangle", chain="PREROUTING", proto=6, proto_inv=True),
     "only with -p tcp or -p udp"),
    ("--on-port 1", dict(table="mangle", chain="PREROUTING", proto=1), "-p tcp or -p udp"),
    ("--on-ip 1.2.3.4", KW, "'--on-port' must be specified"),
    ("--on-port 65536", KW, "--on-port: expected a port number"),
    ("--on-port 1 --on-ip 2001:db8::1", KW, "--on-ip: expected an IPv4 address"),
    ("--on-port 1 --tproxy-mark x", KW, "--tproxy-mark: expected value"),
    ("--on-port 1", dict(table="mangle", chain="INPUT", proto=6), "only usable from PREROUTING"),
])
def test_tproxy_errors(tokens, kw, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("TPROXY", tokens, **kw)


def _run(router, t, pkt):
    pkt.meta.in_iface = "eth0"
    ctx = ctx_for(router, pkt, Hook.PREROUTING, "mangle")
    return t.apply(ctx), ctx


def test_listener_on_in_device_primary_address(router):
    # no --on-ip: the input device's primary address (10.0.1.1, not the secondary .100)
    lst = router.sockets.add(Socket(6, A("10.0.1.1"), 15006, transparent=True, name="proxy"))
    router.sockets.add(Socket(6, A("10.0.1.100"), 15006, transparent=True, name="other"))
    t = parse("TPROXY", "--on-port 15006 --tproxy-mark 0x1/0x1", **KW)
    p = tcp("10.0.1.2", "93.184.216.34", dport=80)
    p.meta.mark = 0x10
    verdict, ctx = _run(router, t, p)
    assert verdict is ACCEPT
    assert p.meta.tproxy_sock is lst and p.meta.mark == 0x11
    assert str(p.dst) == "93.184.216.34" and p.dport == 80  # headers untouched
    assert "proxy" in ctx.effects[-1].text


def test_wildcard_listener_and_port_zero_keeps_destination_port(router):
    lst = router.sockets.add(Socket(17, None, 53, transparent=True))
    t = parse("TPROXY", "--on-port 0", table="mangle", chain="PREROUTING", proto=17)
    p = udp("10.0.1.2", "8.8.8.8", dport=53)
    assert _run(router, t, p)[0] is ACCEPT and p.meta.tproxy_sock is lst
    assert p.meta.mark == 0  # no --tproxy-mark: mask 0, mark unchanged


def test_non_transparent_socket_drops(router):
    router.sockets.add(Socket(6, A("10.0.1.1"), 15006, transparent=False))
    t = parse("TPROXY", "--on-port 15006", **KW)
    p = tcp("10.0.1.2", "10.0.1.1", dport=15006)  # even for a local destination
    verdict, ctx = _run(router, t, p)
    assert verdict is DROP and p.meta.tproxy_sock is None
    assert "not IP_TRANSPARENT" in ctx.effects[-1].text


def test_no_listener_drops_and_on_ip_is_used(router):
    router.sockets.add(Socket(6, A("10.0.1.1"), 15006, transparent=True))
    t = parse("TPROXY", "--on-port 15006 --on-ip 127.0.0.1", **KW)
    verdict, ctx = _run(router, t, tcp("10.0.1.2", "1.1.1.1"))
    assert verdict is DROP and "127.0.0.1:15006" in ctx.effects[-1].text
    router.sockets.add(Socket(6, A("127.0.0.1"), 15006, transparent=True))
    assert _run(router, t, tcp("10.0.1.2", "1.1.1.1"))[0] is ACCEPT


def test_established_socket_wins(router):
    est = router.sockets.add(Socket(6, A("1.1.1.1"), 443, listening=False, transparent=True,
                                    peer_addr=A("10.0.1.2"), peer_port=40000))
    router.sockets.add(Socket(6, A("10.0.1.1"), 15006, transparent=True))
    t = parse("TPROXY", "--on-port 15006", **KW)
    p = tcp("10.0.1.2", "1.1.1.1", sport=40000, dport=443, flags=0x10)
    assert _run(router, t, p)[0] is ACCEPT and p.meta.tproxy_sock is est
    # the established socket must be transparent too
    est.transparent = False
    q = tcp("10.0.1.2", "1.1.1.1", sport=40000, dport=443, flags=0x10)
    assert _run(router, t, q)[0] is DROP


def test_fragment_is_dropped(router):
    router.sockets.add(Socket(6, None, 15006, transparent=True))
    t = parse("TPROXY", "--on-port 15006", **KW)
    p = tcp("10.0.1.2", "1.1.1.1")
    p.l4, p.frag_offset = None, 10
    assert _run(router, t, p)[0] is DROP
