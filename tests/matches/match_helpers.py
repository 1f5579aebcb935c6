"""Helpers for match tests: options from tokens, packets, evaluation contexts."""

from __future__ import annotations

import ipaddress
import random
from typing import Sequence

from conntrace.host.host import Host
from conntrace.host.netdev import Interface
from conntrace.netfilter.context import EvalContext
from conntrace.netfilter.hooks import Hook
from conntrace.packet import IcmpHeader, Packet, TcpHeader, UdpHeader, ip
from conntrace.ruleset import ext
from conntrace.ruleset.ext import Opt, ParseContext

ext.load_all()


def opts_from(cls, tokens: Sequence[str]) -> list[Opt]:
    """Tokens after `-m NAME` -> the Opt list the parser hands to `cls.parse`."""
    out: list[Opt] = []
    toks = list(tokens)
    i = 0
    inv = False
    while i < len(toks):
        t = toks[i]
        i += 1
        if t == "!":
            inv = True
            continue
        spec = cls.option_spec(t)
        assert spec is not None, f"{cls.name} has no option {t}"
        args = tuple(toks[i:i + spec.nargs])
        i += spec.nargs
        out.append(Opt(spec.name, args, inv, t))
        inv = False
    return out


def pctx(family: int = 4, table: str = "filter", chain: str = "INPUT",
         proto: int | None = None, proto_inv: bool = False) -> ParseContext:
    return ParseContext(family, table, chain, proto, proto_inv)


def parse(name: str, tokens: Sequence[str] | str, **kw):
    cls = ext.MATCHES[name]
    if isinstance(tokens, str):
        tokens = tokens.split()
    return cls.parse(opts_from(cls, tokens), pctx(**kw))


def roundtrip(m, **kw):
    """parse(render(m)) == m; returns the rendered text."""
    again = parse(m.name, m.render(), **kw)
    assert again == m
    return " ".join(m.render())


def tcp(src="10.0.1.2", dst="10.0.2.2", sport=40000, dport=80, flags=0x02, **kw) -> Packet:
    options = kw.pop("options", b"")
    return Packet(ip(src), ip(dst), 6, TcpHeader(sport, dport, flags, options=options), **kw)


def udp(src="10.0.1.2", dst="10.0.2.2", sport=40000, dport=53, **kw) -> Packet:
    return Packet(ip(src), ip(dst), 17, UdpHeader(sport, dport), **kw)


def icmp(src="10.0.1.2", dst="10.0.2.2", type=8, code=0, **kw) -> Packet:
    return Packet(ip(src), ip(dst), 1, IcmpHeader(type, code), **kw)


def make_host() -> Host:
    h = Host("r")
    h.devices.add_interface(Interface("eth0", mac="02:00:00:00:01:01", addresses=[
        ipaddress.ip_interface("10.0.1.1/24"), ipaddress.ip_interface("10.0.1.100/24")]))
    h.devices.add_interface(Interface("eth1", mac="02:00:00:00:02:01", addresses=[
        ipaddress.ip_interface("10.0.2.1/24")]))
    return h


def ctx(pkt: Packet, host: Host | None = None, hook: Hook = Hook.INPUT, now: float = 0.0,
        seed: int = 0, in_iface: str | None = "eth0", out_iface: str | None = None,
        rng: random.Random | None = None) -> EvalContext:
    if in_iface is not None and pkt.meta.in_iface is None:
        pkt.meta.in_iface = in_iface
    if out_iface is not None and pkt.meta.out_iface is None:
        pkt.meta.out_iface = out_iface
    return EvalContext(pkt=pkt, hook=hook, table="filter", host=host or make_host(),
                       now=now, rng=rng or random.Random(seed))


def hit(m, pkt: Packet, **kw) -> bool:
    return m.matches(ctx(pkt, **kw))
