"""Helpers for target tests: options from tokens, packets, evaluation contexts."""

from __future__ import annotations

import ipaddress
import random
from typing import Sequence

from conntrace.host.host import Host
from conntrace.netfilter.context import EvalContext
from conntrace.netfilter.hooks import Hook
from conntrace.packet import IcmpHeader, Packet, TcpHeader, UdpHeader, ip
from conntrace.ruleset import ext
from conntrace.ruleset.ext import Opt, ParseContext

ext.load_all()


def opts_from(cls, tokens: Sequence[str]) -> list[Opt]:
    """Tokens after `-j NAME` -> the Opt list the parser hands to `cls.parse`."""
    out: list[Opt] = []
    toks = list(tokens)
    i = 0
    while i < len(toks):
        t = toks[i]
        i += 1
        spec = cls.option_spec(t)
        assert spec is not None, f"{cls.name} has no option {t}"
        args = tuple(toks[i:i + spec.nargs])
        i += spec.nargs
        out.append(Opt(spec.name, args, False, t))
    return out


def pctx(family: int = 4, table: str = "filter", chain: str = "INPUT",
         proto: int | None = None, proto_inv: bool = False) -> ParseContext:
    return ParseContext(family, table, chain, proto, proto_inv)


def parse(name: str, tokens: Sequence[str] | str = (), **kw):
    cls = ext.TARGETS[name]
    if isinstance(tokens, str):
        tokens = tokens.split()
    return cls.parse(opts_from(cls, tokens), pctx(**kw))


def roundtrip(t, **kw) -> str:
    """parse(render(t)) == t; returns the rendered text."""
    again = parse(t.name, [str(x) for x in t.render()], **kw)
    assert again == t
    return " ".join(t.render())


def ctx_for(host: Host, pkt: Packet, hook: Hook = Hook.INPUT, table: str = "filter",
            now: float = 1000.0, seed: int = 1, nat_setup=None) -> EvalContext:
    return EvalContext(pkt=pkt, hook=hook, table=table, host=host, now=now,
                       rng=random.Random(seed), chain=hook.value, nat_setup=nat_setup)


def tcp(src: str, dst: str, sport: int = 40000, dport: int = 80, flags: int = 0x02,
        seq: int = 1000, ack: int = 0, payload: int = 0, **kw) -> Packet:
    return Packet(ip(src), ip(dst), 6, TcpHeader(sport, dport, flags=flags, seq=seq,
                                                ack_seq=ack), payload_len=payload, **kw)


def udp(src: str, dst: str, sport: int = 40000, dport: int = 7000, payload: int = 5,
        **kw) -> Packet:
    return Packet(ip(src), ip(dst), 17, UdpHeader(sport, dport), payload_len=payload, **kw)


def icmp(src: str, dst: str, type_: int = 8, code: int = 0, ident: int = 1, seq: int = 1,
         payload: int = 56, **kw) -> Packet:
    return Packet(ip(src), ip(dst), 1, IcmpHeader(type_, code, id=ident, seq=seq),
                  payload_len=payload, **kw)


def make_router() -> Host:
    """The tests/conftest.py router, for tests that cannot use a fixture (hypothesis)."""
    from conntrace.host.netdev import Interface
    h = Host("r")
    h.devices.add_interface(Interface("eth0", mac="02:00:00:00:01:01", addresses=[
        ipaddress.ip_interface("10.0.1.1/24"), ipaddress.ip_interface("10.0.1.100/24")]))
    h.devices.add_interface(Interface("eth1", mac="02:00:00:00:02:01", addresses=[
        ipaddress.ip_interface("10.0.2.1/24")]))
    h.sysctls.set("net.ipv4.ip_forward", 1)
    return h


def net(text: str):
    return ipaddress.ip_network(text)
