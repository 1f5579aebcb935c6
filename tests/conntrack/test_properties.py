"""Property tests over random packet sequences through a NAT gateway."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrace.conntrack.defs import Dir, Status
from conntrace.conntrack.l4 import TrackEnv, tracker_for
from conntrace.host.build import load_rules_into
from conntrace.host.host import Host
from conntrace.host.netdev import Interface
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.stack import attach
from conntrace.packet import (TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Packet, TcpHeader,
                              UdpHeader)

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.2.2:80
-A PREROUTING -d 10.0.1.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.0.2.3:53
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
"""

MAX_TIMEOUT = {  # the largest timeout any state may have (sysctl defaults)
    6: 432000, 17: 120, 1: 30,
}


def gateway() -> Host:
    h = Host("gw", seed=5)
    h.devices.add_interface(Interface("eth0", mac="02:00:00:00:01:01",
                                      addresses=[ipaddress.ip_interface("10.0.1.1/24")]))
    h.devices.add_interface(Interface("eth1", mac="02:00:00:00:02:01",
                                      addresses=[ipaddress.ip_interface("10.0.2.1/24")]))
    h.sysctls.set("net.ipv4.ip_forward", 1)
    attach(h)
    load_rules_into(h, RULES, "prop.rules")
    return h


FLAGS = [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, TCP_RST | TCP_ACK]

event = st.tuples(
    st.floats(min_value=0, max_value=40),  # time advance
    st.integers(0, 3),  # flow
    st.booleans(),  # reply direction?
    st.sampled_from(["tcp", "udp"]),
    st.sampled_from(FLAGS),
    st.sampled_from([("10.0.1.1", 8080), ("10.0.2.2", 80), ("10.0.1.1", 5353), ("10.0.2.3", 53)]),
)


def _orig_packet(flow: int, proto: str, flags: int, dst) -> Packet:
    src = ipaddress.ip_address(f"10.0.1.{10 + flow % 2}")
    sport = 40000 + flow // 2  # two clients share source ports: MASQUERADE must remap
    daddr, dport = ipaddress.ip_address(dst[0]), dst[1]
    l4 = TcpHeader(sport, dport, flags=flags, seq=1000, ack_seq=1) if proto == "tcp" \
        else UdpHeader(sport, dport)
    return Packet(src=src, dst=daddr, proto=6 if proto == "tcp" else 17, l4=l4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=40))
def test_conntrack_and_nat_invariants(events):
    h = gateway()
    now = 0.0
    for advance, flow, reply, proto, flags, dst in events:
        now += advance
        h.conntrack.table.expire(now)
        orig = _orig_packet(flow, proto, flags, dst)
        if not reply:
            res = h.stack.receive(orig, "eth0", now).run()
            out = res.emitted
        else:
            # answer as the server would: from the reply tuple of the flow's entry, if any
            entry = None
            for e in h.conntrack.table.entries():
                if e.orig_tuple.src == orig.src and e.orig_tuple.sport == orig.l4.sport \
                        and e.orig_tuple.proto == orig.proto and e.orig_tuple.dport == orig.l4.dport:
                    entry = e
            if entry is None:
                continue
            r = entry.reply_tuple
            l4 = TcpHeader(r.sport, r.dport, flags=flags, seq=5000, ack_seq=1001) \
                if entry.proto == 6 else UdpHeader(r.sport, r.dport)
            pkt = Packet(src=r.src, dst=r.dst, proto=entry.proto, l4=l4)
            res = h.stack.receive(pkt, "eth1", now).run()
            if res.emitted and res.packet.meta.ct is entry and not entry.status & Status.DYING:
                (iface, sent), = res.emitted
                # reply packets of a NATed flow come back un-NATed
                assert iface == "eth0"
                assert (sent.dst, sent.l4.dport) == (entry.orig_tuple.src, entry.orig_tuple.sport)
                assert (sent.src, sent.l4.sport) == (entry.orig_tuple.dst, entry.orig_tuple.dport)
        _check_table(h, now)


def _check_table(h: Host, now: float) -> None:
    table = h.conntrack.table
    env = TrackEnv(now=now, sysctls=h.sysctls, hook=Hook.PREROUTING)
    for e in table.entries():
        # the table never holds an unconfirmed entry
        assert e.confirmed
        # both tuples map to the entry (NAT_CLASH entries are hashed by reply only)
        hit = table.peek(e.zone, e.reply_tuple)
        assert hit is not None and hit[0] is e and hit[1] is Dir.REPLY
        if not e.status & Status.NAT_CLASH:
            hit = table.peek(e.zone, e.orig_tuple)
            assert hit is not None and hit[0] is e and hit[1] is Dir.ORIGINAL
        # timeouts never exceed the state's limit
        remaining = e.timeout - now
        assert 0 < remaining <= MAX_TIMEOUT[e.proto] + 1e-9
        if e.proto == 6:
            state_limit = tracker_for(6).timeout_for(e, env)
            assert remaining <= max(state_limit, 300) + 1e-9
    # every hashed tuple belongs to a listed entry
    listed = {id(e) for e in table.entries()}
    for _z, _t, e, _d in table.hashed():
        assert id(e) in listed
