"""The packet path on one host: table order per hook, chain semantics, policies, counters."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.api import trace_packet
from conntrace.host.build import load_rules_into
from conntrace.host.host import Host
from conntrace.host.netdev import Interface
from conntrace.netfilter.stack import attach


def make_router(rules: str, forward: int = 1) -> Host:
    h = Host("r")
    h.devices.add_interface(Interface("eth0", mac="02:00:00:00:01:01",
                                      addresses=[ipaddress.ip_interface("10.0.1.1/24")]))
    h.devices.add_interface(Interface("eth1", mac="02:00:00:00:02:01",
                                      addresses=[ipaddress.ip_interface("10.0.2.1/24")]))
    h.sysctls.set("net.ipv4.ip_forward", forward)
    attach(h)
    load_rules_into(h, rules, "test.rules")
    return h


def matched(result, all_walks=False):
    walks = result.walks if all_walks else [result.main]
    return [(s.table, s.chain, s.index) for w in walks for s in w.trace.steps
            if s.kind == "rule" and s.matched]


# one counting rule (no target) in every built-in chain of every table
ALL_CHAINS = {
    "raw": ["PREROUTING", "OUTPUT"],
    "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    "filter": ["INPUT", "FORWARD", "OUTPUT"],
    "security": ["INPUT", "FORWARD", "OUTPUT"],
}


def counting_ruleset() -> str:
    out = []
    for table, chains in ALL_CHAINS.items():
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in chains]
        out += [f"-A {c}" for c in chains]
        if table == "filter":  # nat chains alone do not switch conntrack on (iptables-nft)
            out.append("-A INPUT -m conntrack --ctstate UNTRACKED")
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def test_table_order_forwarded_packet():
    h = make_router(counting_ruleset())
    r = trace_packet(h, "udp 10.0.1.2:5000 > 10.0.2.2:53 in eth0")
    assert [(t, c) for t, c, _ in matched(r)] == [
        ("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"),
        ("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
        ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"),
    ]
    assert r.main.fate.result == "forwarded"
    assert r.main.fate.out_iface == "eth1"
    assert r.main.packet.ttl == 63  # ip_forward decrements before FORWARD


def test_table_order_local_delivery():
    h = make_router(counting_ruleset())
    r = trace_packet(h, "udp 10.0.1.2:5000 > 10.0.1.1:53 in eth0")
    assert [(t, c) for t, c, _ in matched(r)] == [
        ("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"),
        ("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"), ("nat", "INPUT"),
    ]
    assert r.main.fate.result == "delivered"


def test_table_order_local_output_and_loopback():
    h = make_router(counting_ruleset())
    r = trace_packet(h, "udp 10.0.1.1:5000 > 10.0.2.9:53")
    assert [(t, c) for t, c, _ in matched(r)] == [
        ("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
        ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"),
    ]
    assert r.main.fate.result == "sent"
    # to a local address: out through lo, in again; nat is not consulted on the second pass
    h = make_router(counting_ruleset())
    r = trace_packet(h, "udp 10.0.1.1:5000 > 10.0.1.1:53")
    order = [(t, c) for t, c, _ in matched(r)]
    assert order == [
        ("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
        ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"),
        ("raw", "PREROUTING"), ("mangle", "PREROUTING"),
        ("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"),
    ]
    assert r.main.fate.result == "delivered"
    entries = h.conntrack.table.entries()
    assert len(entries) == 1  # one entry for both passes


JUMPS = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:C - [0:0]
:G - [0:0]
-A FORWARD -s 10.0.1.9 -g G
-A FORWARD -j A
-A FORWARD -p udp -j ACCEPT
-A A -j B
-A A -p tcp -j ACCEPT
-A B -p tcp --dport 22 -j RETURN
-A B -p tcp -g C
-A B -j DROP
-A C -p tcp --dport 80 -j DROP
-A G -p tcp --dport 9999 -j ACCEPT
COMMIT
"""


def test_jump_return_goto():
    h = make_router(JUMPS)
    # RETURN in B goes back to A, whose next rule accepts tcp
    r = trace_packet(h, "tcp 10.0.1.2:1000 > 10.0.2.2:22 syn in eth0")
    assert matched(r) == [("filter", "FORWARD", 2), ("filter", "A", 1), ("filter", "B", 1),
                          ("filter", "A", 2)]
    assert r.main.fate.result == "forwarded"
    # B goes to C: falling off C returns where B would have returned (A rule 2), not into B
    r = trace_packet(h, "tcp 10.0.1.2:1001 > 10.0.2.2:443 syn in eth0")
    assert matched(r) == [("filter", "FORWARD", 2), ("filter", "A", 1), ("filter", "B", 2),
                          ("filter", "A", 2)]
    assert r.main.fate.result == "forwarded"
    # goto from a built-in chain: falling off G applies FORWARD's policy (nothing to return to)
    r = trace_packet(h, "tcp 10.0.1.9:1004 > 10.0.2.2:443 syn in eth0")
    assert matched(r) == [("filter", "FORWARD", 1)]
    steps = [s for s in r.main.trace.steps if s.kind in ("return", "policy")]
    assert steps[-1].kind == "policy" and steps[-1].chain == "FORWARD" and steps[-1].verdict == "DROP"
    assert r.main.fate.result == "dropped"
    assert "policy" in r.main.fate.where
    # goto C where C drops
    r = trace_packet(h, "tcp 10.0.1.2:1002 > 10.0.2.2:80 syn in eth0")
    assert matched(r)[-1] == ("filter", "C", 1)
    assert r.main.fate.result == "dropped" and "filter/C rule 1" in r.main.fate.where
    # udp: B's DROP ends everything; FORWARD rule 3 is never reached
    r = trace_packet(h, "udp 10.0.1.2:1003 > 10.0.2.2:53 in eth0")
    assert matched(r)[-1] == ("filter", "B", 3)
    assert r.main.fate.result == "dropped"


def test_counters_like_the_kernel():
    h = make_router(JUMPS)
    trace_packet(h, "tcp 10.0.1.2:1000 > 10.0.2.2:22 syn in eth0")  # 60 bytes, accepted
    trace_packet(h, "tcp 10.0.1.9:1001 > 10.0.2.2:443 syn in eth0")  # goto G, policy DROP
    f = h.ruleset.tables["filter"]
    fwd = f.chains["FORWARD"]
    assert (fwd.rules[0].counters.packets, fwd.rules[0].counters.bytes) == (1, 60)
    assert (fwd.rules[1].counters.packets, fwd.rules[1].counters.bytes) == (1, 60)
    assert f.chains["B"].rules[0].counters.packets == 1
    assert f.chains["B"].rules[1].counters.packets == 0
    assert f.chains["C"].rules[0].counters.packets == 0
    assert (fwd.policy_counters.packets, fwd.policy_counters.bytes) == (1, 60)
    assert f.chains["INPUT"].policy_counters.packets == 0


def test_return_in_builtin_chain_applies_policy():
    h = make_router("""*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -j RETURN
-A INPUT -j ACCEPT
COMMIT
""")
    r = trace_packet(h, "udp 10.0.1.2:5000 > 10.0.1.1:53 in eth0")
    assert r.main.fate.result == "dropped"
    assert h.ruleset.tables["filter"].chains["INPUT"].policy_counters.packets == 1


def test_forwarding_disabled_and_no_route():
    h = make_router("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
                    forward=0)
    r = trace_packet(h, "udp 10.0.1.2:5000 > 10.0.2.2:53 in eth0")
    assert r.main.fate.result == "dropped" and r.main.fate.reason == "forwarding disabled"
    assert len(r.walks) == 1  # no ICMP error when forwarding is off
    h = make_router("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    r = trace_packet(h, "udp 10.0.1.2:5000 > 192.0.2.9:53 in eth0")
    assert r.main.fate.result == "no-route"


def test_filter_only_ruleset_does_not_start_conntrack():
    h = make_router("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                    "-A FORWARD -p udp -j ACCEPT\nCOMMIT\n")
    r = trace_packet(h, "udp 10.0.1.2:5000 > 10.0.2.2:53 in eth0")
    assert r.main.fate.result == "forwarded"
    assert h.conntrack is None
    assert not any(s.kind == "conntrack" for s in r.main.trace.steps)
