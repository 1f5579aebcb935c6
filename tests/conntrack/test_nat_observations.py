"""The [V] observations of reference §2 and §6, reproduced as scenarios on the model."""

from __future__ import annotations

import textwrap

from conntrace.api import run_scenario
from conntrace.scenario.load import parse_scenario
from conntrace.world.outcome import conntrack_lines, event_lines


def scenario(gw_rules: str, timeline: str, *, client_addrs=("10.0.1.2/24",), gw_extra="",
             gw_sysctls="net.ipv4.ip_forward: 1", seed=3, server_listen=(80, 7777)):
    rules = textwrap.indent(textwrap.dedent(gw_rules).strip(), " " * 6)
    listen = "\n".join(f"      - {{proto: tcp, port: {p}}}" for p in server_listen)
    addrs = ", ".join(client_addrs)
    text = f"""
name: obs
seed: {seed}
hosts:
  client:
    interfaces:
      eth0: {{mac: "02:00:00:00:01:02", addresses: [{addrs}]}}
    routes: ["default via 10.0.1.1"]
  gw:
    interfaces:
      eth0: {{mac: "02:00:00:00:01:01", addresses: [10.0.1.1/24, 10.0.1.100/24]}}
      eth1: {{mac: "02:00:00:00:02:01", addresses: [10.0.2.1/24]}}
    sysctls: {{{gw_sysctls}}}
{gw_extra}    rules: |
{rules}
  server:
    interfaces:
      eth0: {{mac: "02:00:00:00:02:02", addresses: [10.0.2.2/24]}}
    routes: ["default via 10.0.2.1"]
    listen:
{listen}
links:
  - [client:eth0, gw:eth0]
  - [gw:eth1, server:eth0]
timeline:
{textwrap.indent(textwrap.dedent(timeline).strip(), "  ")}
"""
    return run_scenario(parse_scenario(text, "obs.yaml"))


MASQ = """
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
"""


def _reply_dport(line: str) -> int:
    return int(line.split("dport=")[2].split()[0])


def test_null_binding_remaps_a_colliding_local_port():
    # §2.2: the client's flow is MASQUERADEd to 10.0.2.1:46700; the router's own connection
    # from 10.0.2.1:46700 to the same server gets no NAT rule, yet its port is remapped
    rules = MASQ.replace("-A POSTROUTING -o eth1 -j MASQUERADE",
                         "-A POSTROUTING -s 10.0.2.1/32 -j ACCEPT\n-A POSTROUTING -o eth1 -j MASQUERADE")
    world, out = scenario(rules, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:7777, sport: 46700, close: open}
      - at: 1
        tcp_connect: {from: gw, to: 10.0.2.2:7777, src: 10.0.2.1, sport: 46700}
    """)
    assert [s.result for s in out.steps] == ["connected", "connected"]
    lines = conntrack_lines(world, "gw")
    client_line = next(l for l in lines if "src=10.0.1.2" in l)
    gw_line = next(l for l in lines if "src=10.0.2.1 dst=10.0.2.2 sport=46700" in l)
    assert _reply_dport(client_line) == 46700  # kept
    assert _reply_dport(gw_line) != 46700  # the null binding remapped it
    assert out.steps[1].server_saw[0].peer_port == _reply_dport(gw_line)


def test_masquerade_same_source_port_from_two_clients():
    world, out = scenario(MASQ, """
      - at: 0
        tcp_connect: {from: client, src: 10.0.1.2, to: 10.0.2.2:7777, sport: 45000, close: open}
      - at: 1
        tcp_connect: {from: client, src: 10.0.1.3, to: 10.0.2.2:7777, sport: 45000, close: open}
    """, client_addrs=("10.0.1.2/24", "10.0.1.3/24"))
    lines = conntrack_lines(world, "gw")
    first = next(l for l in lines if "src=10.0.1.2" in l)
    second = next(l for l in lines if "src=10.0.1.3" in l)
    assert _reply_dport(first) == 45000
    assert _reply_dport(second) != 45000 and _reply_dport(second) >= 1024
    assert {s.server_saw[0].peer_port for s in out.steps} == {45000, _reply_dport(second)}


def test_redirect_uses_the_primary_address():
    world, out = scenario("""
        *nat
        :PREROUTING ACCEPT [0:0]
        -A PREROUTING -p tcp --dport 9090 -j REDIRECT --to-ports 8082
        COMMIT
    """, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.1.100:9090, sport: 34538}
    """, gw_extra="    listen:\n      - {proto: tcp, port: 8082}\n")
    assert out.steps[0].result == "connected"
    (line,) = conntrack_lines(world, "gw")
    assert ("src=10.0.1.2 dst=10.0.1.100 sport=34538 dport=9090 "
            "src=10.0.1.1 dst=10.0.1.2 sport=8082 dport=34538 [ASSURED]") in line
    assert out.steps[0].server_saw[0].local_addr == "10.0.1.1"


def test_snat_range_exhaustion_and_time_wait_eviction():
    world, out = scenario("""
        *nat
        :POSTROUTING ACCEPT [0:0]
        -A POSTROUTING -o eth1 -p tcp -j SNAT --to-source 10.0.2.1:20000-20001
        COMMIT
    """, """
      - at: 0
        tcp_connect: {from: client, src: 10.0.1.2, to: 10.0.2.2:7777, sport: 46000, hold: 2.5}
      - at: 0.5
        tcp_connect: {from: client, src: 10.0.1.3, to: 10.0.2.2:7777, sport: 46000, hold: 2.5}
      - at: 1
        tcp_connect: {from: client, src: 10.0.1.4, to: 10.0.2.2:7777, sport: 46000}
    """, client_addrs=("10.0.1.2/24", "10.0.1.3/24", "10.0.1.4/24"), seed=11)
    stats = world.hosts["gw"].conntrack.table.stats_total()
    assert stats["insert_failed"] >= 1 and stats["drop"] >= 1
    events = event_lines(world, "gw")
    news = [e for e in events if e.strip().startswith("[NEW]")]
    assert {_reply_dport(e) for e in news[:2]} == {20000, 20001}
    # the third client: refused at confirm (no NEW), then a retransmitted SYN evicts a
    # TIME_WAIT entry and takes its port
    third = [i for i, e in enumerate(events) if e.strip().startswith("[NEW]") and "src=10.0.1.4" in e]
    assert third, events
    before = events[third[0] - 1]
    assert before.strip().startswith("[DESTROY]") and "TIME_WAIT" in before
    assert _reply_dport(before) == _reply_dport(events[third[0]])
    assert out.steps[2].result == "connected"


def test_table_full_drops_new_syns_without_events():
    world, out = scenario(MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 40001, close: open}
      - at: 0.1
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 40002, close: open}
      - at: 0.2
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 40003, close: open}
      - at: 0.3
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 40004, close: open}
      - at: 0.4
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 40005, syn_retries: 1}
    """, gw_sysctls="net.ipv4.ip_forward: 1, net.netfilter.nf_conntrack_max: 4")
    assert [s.result for s in out.steps] == ["connected"] * 4 + ["timeout"]
    stats = world.hosts["gw"].conntrack.table.stats_total()
    assert stats["drop"] == 3 and stats["early_drop"] == 0  # the SYN and 2 retransmissions (3 s)
    assert not any("sport=40005" in e for e in event_lines(world, "gw"))


def test_reopen_from_time_wait_keeps_the_mapping():
    world, out = scenario(MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:7777, sport: 46001}
      - at: 70
        tcp_connect: {from: client, to: 10.0.2.2:7777, sport: 46001}
    """)
    assert [s.result for s in out.steps] == ["connected", "connected"]
    events = [e for e in event_lines(world, "gw")]
    i = next(i for i, e in enumerate(events) if e.strip().startswith("[NEW]") and i > 0)
    assert events[i - 1].strip().startswith("[DESTROY]") and "TIME_WAIT" in events[i - 1]
    assert "SYN_SENT" in events[i] and _reply_dport(events[i]) == 46001
