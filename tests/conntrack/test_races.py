"""Two packets of one new flow on two CPUs: both miss the lookup (unconfirmed entries are
invisible), both get NAT bindings, and the second confirm clashes (reference §4.1)."""

from __future__ import annotations

import ipaddress

from conntrace.host.build import load_rules_into
from conntrace.host.host import Host
from conntrace.host.netdev import Interface
from conntrace.netfilter.stack import attach
from conntrace.packet import Packet, TcpHeader, UdpHeader

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p udp --dport 53 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.0.2.2:5353
-A PREROUTING -d 10.0.1.1/32 -p udp --dport 53 -j DNAT --to-destination 10.0.2.3:5353
-A PREROUTING -d 10.0.1.1/32 -p udp --dport 54 -j DNAT --to-destination 10.0.2.2:5353
-A PREROUTING -d 10.0.1.1/32 -p tcp --dport 80 -j DNAT --to-destination 10.0.2.2:80
COMMIT
"""


def gateway() -> Host:
    h = Host("gw", seed=3)
    h.devices.add_interface(Interface("eth0", addresses=[ipaddress.ip_interface("10.0.1.1/24")]))
    h.devices.add_interface(Interface("eth1", addresses=[ipaddress.ip_interface("10.0.2.1/24")]))
    h.sysctls.set("net.ipv4.ip_forward", 1)
    attach(h)
    load_rules_into(h, RULES, "race.rules")
    return h


def _udp(dport: int) -> Packet:
    return Packet(src=ipaddress.ip_address("10.0.1.2"), dst=ipaddress.ip_address("10.0.1.1"),
                  proto=17, l4=UdpHeader(40000, dport), payload_len=20)


def _interleave(h: Host, a: Packet, b: Packet):
    """Run two walks hook callback by hook callback, alternating CPUs 0 and 1."""
    wa = h.stack.receive(a, "eth0", 0.0, cpu=0)
    wb = h.stack.receive(b, "eth0", 0.0, cpu=1)
    live = [wa, wb]
    while live:
        live = [w for w in live if w.step()]
    return wa.result, wb.result


def test_udp_same_mapping_clash_is_merged():
    h = gateway()
    ra, rb = _interleave(h, _udp(54), _udp(54))
    assert ra.fate.result == rb.fate.result == "forwarded"
    stats = h.conntrack.table.stats_total()
    assert stats["clash_resolve"] == 1 and stats["insert_failed"] == 0
    assert len(h.conntrack.table) == 1
    # both packets went through the nat table: they were both NEW and unconfirmed
    rule = h.ruleset.tables["nat"].chains["PREROUTING"].rules[2]
    assert rule.counters.packets == 2
    assert ra.packet.meta.ct is rb.packet.meta.ct  # the loser now uses the winner's entry


def test_udp_different_backends_both_pass_with_nat_clash_entry():
    h = gateway()
    ra, rb = _interleave(h, _udp(53), _udp(53))
    assert {str(ra.packet.dst), str(rb.packet.dst)} == {"10.0.2.2", "10.0.2.3"}
    assert ra.fate.result == rb.fate.result == "forwarded"
    stats = h.conntrack.table.stats_total()
    assert stats["clash_resolve"] == 1 and stats["drop"] == 0
    entries = h.conntrack.table.entries()
    clash = [e for e in entries if e.status & e.status.NAT_CLASH]
    assert len(entries) == 2 and len(clash) == 1
    assert clash[0].timeout == 1.0  # the loser goes away after 1 s
    # each backend's reply is un-NATed by its own entry
    for backend in ("10.0.2.2", "10.0.2.3"):
        reply = Packet(src=ipaddress.ip_address(backend), dst=ipaddress.ip_address("10.0.1.2"),
                       proto=17, l4=UdpHeader(5353, 40000), payload_len=20)
        res = h.stack.receive(reply, "eth1", 0.1).run()
        assert res.fate.result == "forwarded"
        assert (str(res.packet.src), res.packet.l4.sport) == ("10.0.1.1", 53)


def test_tcp_clash_is_dropped_with_insert_failed():
    h = gateway()

    def syn():
        return Packet(src=ipaddress.ip_address("10.0.1.2"), dst=ipaddress.ip_address("10.0.1.1"),
                      proto=6, l4=TcpHeader(40000, 80, seq=1000))

    ra, rb = _interleave(h, syn(), syn())
    fates = sorted([ra.fate.result, rb.fate.result])
    assert fates == ["dropped", "forwarded"]
    stats = h.conntrack.table.stats_total()
    assert stats["insert_failed"] == 1 and stats["drop"] == 1 and stats["clash_resolve"] == 0
    assert len(h.conntrack.table) == 1
