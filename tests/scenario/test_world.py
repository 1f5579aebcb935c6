"""Scenario runs on the model: traffic kinds, endpoint behaviour, mid-run changes."""

from __future__ import annotations

from conntrace.observe.render_text import path_summary
from conntrace.world.outcome import conntrack_lines, event_lines

DNAT_MASQ = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.2.2:80
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
COMMIT
"""

FORWARD_DROP_TCP81 = """
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -p tcp --dport 81 -j DROP
-A FORWARD -p tcp --dport 82 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp --dport 54 -j REJECT
COMMIT
"""


def test_dnat_masquerade_http_event_sequence(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.1.1:8080, sport: 44892, payload: 100}
    """)
    step = out.steps[0]
    assert step.result == "connected"
    assert [(s.peer_addr, s.peer_port) for s in step.server_saw] == [("10.0.2.1", 44892)]
    events = event_lines(world, "gw")
    heads = [" ".join(e.split()[:4] + e.split()[4:5]) for e in events]
    assert [e.split()[0] for e in events] == ["[NEW]"] + ["[UPDATE]"] * 5
    states = [e.split()[4] for e in events]
    timeouts = [int(e.split()[3]) for e in events]
    assert states == ["SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "LAST_ACK", "TIME_WAIT"], heads
    assert timeouts == [120, 60, 432000, 120, 30, 120]
    assert "[ASSURED]" in events[2] and "[ASSURED]" not in events[1]
    # the nat table ran for the SYN only
    nat_rule = world.hosts["gw"].ruleset.tables["nat"].chains["PREROUTING"].rules[0]
    assert (nat_rule.counters.packets, nat_rule.counters.bytes) == (1, 60)
    (line,) = conntrack_lines(world, "gw")
    assert line.startswith("tcp      6 ")
    assert "TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=44892 dport=8080 src=10.0.2.2 dst=10.0.2.1 sport=80 dport=44892 [ASSURED]" in line


def test_closed_port_rst_kills_entry(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:9, sport: 40000}
    """)
    assert out.steps[0].result == "refused"
    events = event_lines(world, "gw")
    assert events[0].split()[0] == "[NEW]" and "SYN_SENT" in events[0]
    assert events[1].split()[0] == "[DESTROY]" and "CLOSE" in events[1]
    assert conntrack_lines(world, "gw") == []


def test_dropped_syn_retransmits_then_times_out(run):
    world, out = run(FORWARD_DROP_TCP81, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:81, sport: 40001, syn_retries: 2}
    """)
    assert out.steps[0].result == "timeout"
    syns = [t for t in world.traces if t.host == "client" and "[SYN]" in t.packet]
    # 6.18 with tcp_syn_linear_timeouts=4 and TCP_SYNCNT=2: SYNs every second, gives up at 7 s
    assert [round(t.time, 4) for t in syns] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    gw_syns = [t for t in world.traces if t.host == "gw" and "[SYN]" in t.packet]
    assert all(t.fate.result == "dropped" for t in gw_syns)
    # a SYN dropped before confirm leaves no entry and no event
    assert event_lines(world, "gw") == []
    assert conntrack_lines(world, "gw") == []


def test_reject_tcp_reset_and_icmp(run):
    world, out = run(FORWARD_DROP_TCP81, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:82, sport: 40002}
      - at: 1
        udp: {from: client, to: 10.0.2.2:54, sport: 40003}
    """)
    assert out.steps[0].result == "refused"
    assert out.steps[1].result == "unreachable"
    gw_syn = [t for t in world.traces if t.host == "gw" and "[SYN]" in t.packet][0]
    assert gw_syn.fate.result == "rejected"
    rst = [t for t in world.traces if t.host == "client" and "RST" in t.packet]
    assert rst and rst[0].packet == "tcp 10.0.2.2:82 > 10.0.1.2:40002 [ACK,RST]"


def test_udp_echo_and_the_two_second_rule(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        udp: {from: client, to: 10.0.2.2:53, sport: 40005, count: 2, interval: 0.2}
      - at: 10
        udp: {from: client, to: 10.0.2.2:53, sport: 40006, count: 2, interval: 3}
    """, until=13.5)
    assert out.steps[0].result == "reply" and out.steps[0].replies == 2
    lines = {l.split("sport=")[1].split()[0]: l for l in conntrack_lines(world, "gw")}
    quick, slow = lines["40005"], lines["40006"]
    # two exchanges 0.2 s apart: still 30 s, not assured (13.3 s later: 16 left)
    assert "[ASSURED]" not in quick and quick.split()[2] == "16"
    # a second exchange 3 s after creation: 120 s and ASSURED
    assert "[ASSURED]" in slow and int(slow.split()[2]) in (119, 120)


def test_udp_closed_port_icmp_is_related(run):
    rules = DNAT_MASQ.replace("-A FORWARD -m conntrack --ctstate NEW -j ACCEPT",
                              "-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT")
    world, out = run(rules, """
      - at: 0
        udp: {from: client, to: 10.0.2.2:7000, sport: 40004}
    """)
    assert out.steps[0].result == "unreachable"
    icmp = [t for t in world.traces if t.host == "gw" and t.packet.startswith("icmp")]
    assert icmp and icmp[0].fate.result == "forwarded"
    assert " related" in path_summary(icmp[0])
    # the embedded header came back translated to the client's own addresses
    assert "for [udp 10.0.1.2:40004 > 10.0.2.2:7000" in icmp[0].final_packet


def test_ping(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        ping: {from: client, to: 10.0.2.2, count: 2, icmp_id: 17295, interval: 0.5}
    """)
    assert out.steps[0].result == "reply" and out.steps[0].replies == 2
    (line,) = conntrack_lines(world, "gw")
    assert line.startswith("icmp     1 30 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=17295 "
                           "src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=17295 mark=0 use=1")


def test_mid_run_rules_change_and_sysctl(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.1.1:8080, sport: 41000, close: open}
      - at: 1
        rules:
          host: gw
          noflush: true
          rules: |
            *filter
            -I FORWARD 1 -p tcp --dport 80 -j DROP
            COMMIT
      - at: 2
        tcp_connect: {from: client, to: 10.0.1.1:8080, sport: 41001, syn_retries: 1}
      - at: 5
        sysctl: {host: gw, set: {net.ipv4.ip_forward: 0}}
      - at: 6
        ping: {from: client, to: 10.0.2.2}
    """, until=10)
    assert out.steps[0].result == "connected"
    assert out.steps[2].result == "timeout"
    assert out.steps[4].result == "no-reply"
    drop = [t for t in world.traces if t.host == "gw" and t.time >= 6]
    assert drop[0].fate.reason == "forwarding disabled"


def test_crafted_ack_midstream_pickup_loose(run):
    for loose, expect in ((1, "new"), (0, "invalid")):
        world, out = run(DNAT_MASQ, f"""
          - at: 0
            sysctl: {{host: gw, set: {{net.netfilter.nf_conntrack_tcp_loose: {loose}}}}}
          - at: 1
            packet: {{host: gw, in: eth0, spec: "tcp 10.0.1.2:45000 > 10.0.2.99:80 ack seq=1000 ack=2000"}}
        """)
        t = [t for t in world.traces if t.host == "gw"][0]
        ct_steps = [s for s in t.steps if s.kind == "conntrack"]
        assert ct_steps[0].action == expect
        if loose:
            (line,) = conntrack_lines(world, "gw")
            assert "ESTABLISHED" in line and line.split()[2] == "300" and "[UNREPLIED]" in line
        else:
            # conntrack itself does not drop INVALID; the FORWARD policy does
            assert t.fate.result == "dropped" and t.fate.where == "filter/FORWARD policy"
            assert conntrack_lines(world, "gw") == []


def test_flush_then_pickup(run):
    world, out = run(DNAT_MASQ, """
      - at: 0
        tcp_connect: {from: client, to: 10.0.2.2:80, sport: 42000, close: open}
      - at: 1
        conntrack_flush: gw
    """)
    events = event_lines(world, "gw")
    assert any(e.startswith("[DESTROY]") and "[USERSPACE]" in e for e in events)


def test_multi_hop_forwarding_decrements_ttl_per_router():
    from conntrace.api import run_scenario
    from conntrace.scenario.load import parse_scenario

    text = """
name: hops
hosts:
  a:
    interfaces: {eth0: {addresses: [10.1.0.2/24]}}
    routes: ["default via 10.1.0.1"]
  r1:
    interfaces: {eth0: {addresses: [10.1.0.1/24]}, eth1: {addresses: [10.2.0.1/24]}}
    routes: ["10.3.0.0/24 via 10.2.0.2"]
    sysctls: {net.ipv4.ip_forward: 1}
  r2:
    interfaces: {eth0: {addresses: [10.2.0.2/24]}, eth1: {addresses: [10.3.0.1/24]}}
    routes: ["10.1.0.0/24 via 10.2.0.1"]
    sysctls: {net.ipv4.ip_forward: 1}
  b:
    interfaces: {eth0: {addresses: [10.3.0.2/24]}}
    routes: ["default via 10.3.0.1"]
    listen: [{proto: tcp, port: 22}]
links:
  - [a:eth0, r1:eth0]
  - [r1:eth1, r2:eth0]
  - [r2:eth1, b:eth0]
timeline:
  - at: 0
    tcp_connect: {from: a, to: 10.3.0.2:22, payload: 5}
  - at: 1
    packet: {from: a, spec: "udp 10.1.0.2:5000 > 10.3.0.2:9 ttl=2"}
"""
    world, out = run_scenario(parse_scenario(text, "hops.yaml"))
    assert out.steps[0].result == "connected"
    assert out.steps[0].server_saw[0].peer_addr == "10.1.0.2"
    at_r2 = [t for t in world.traces if t.host == "r2" and "[SYN]" in t.packet][0]
    assert at_r2.fate.result == "forwarded"
    at_b = [t for t in world.traces if t.host == "b" and "[SYN]" in t.packet][0]
    assert at_b.fate.result == "delivered"
    # a TTL=2 datagram dies at the second router, which answers time exceeded
    r2 = [t for t in world.traces if t.host == "r2" and t.time >= 1 and "udp" in t.packet][0]
    assert r2.fate.result == "dropped" and r2.fate.reason == "TTL exceeded"
    back = [t for t in world.traces if t.host == "a" and t.time >= 1 and t.packet.startswith("icmp")]
    assert back and "type=11 code=0" in back[0].packet


def test_replay_a_capture(tmp_path, run):
    from conntrace.observe.pcap import PcapWriter
    from conntrace.packetspec import parse_packet_spec
    from conntrace.wire import encode_ether

    cap = tmp_path / "in.pcap"
    with PcapWriter(cap, nanosecond=True) as w:
        for i, spec in enumerate(["tcp 10.0.1.7:33000 > 10.0.1.1:8080 syn",
                                  "udp 10.0.1.7:33001 > 10.0.2.2:53 len=20"]):
            pkt = parse_packet_spec(spec).packet
            w.write(1_000_000_000 + i * 500_000_000, encode_ether(pkt, "02:00:00:00:01:07", "02:00:00:00:01:01"))
    world, out = run(DNAT_MASQ, f"""
      - at: 2
        replay: {{host: gw, in: eth0, file: "{cap}"}}
    """)
    gw = [t for t in world.traces if t.host == "gw"]
    assert [round(t.time, 3) for t in gw[:1]] == [2.0]
    first = gw[0]
    assert first.packet.startswith("tcp 10.0.1.7:33000 > 10.0.1.1:8080")
    assert first.final_packet.startswith("tcp 10.0.2.1:33000 > 10.0.2.2:80")  # DNAT + MASQUERADE
    udp = [t for t in gw if t.packet.startswith("udp")][0]
    assert round(udp.time, 3) == 2.5  # the capture's own spacing


def test_json_schema_matches_the_loader():
    import json
    from pathlib import Path

    from conntrace.scenario import load as L

    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "scenario.schema.json").read_text())
    assert set(schema["properties"]) == set(L.TOP_KEYS)
    host = schema["$defs"]["host"]["properties"]
    assert set(host) == set(L.HOST_KEYS)
    assert set(host["interfaces"]["additionalProperties"]["properties"]) == set(L.IFACE_KEYS)
    assert set(host["listen"]["items"]["properties"]) == set(L.LISTEN_KEYS)
    steps = {next(k for k in s["required"]): s for s in schema["properties"]["timeline"]["items"]["oneOf"]}
    assert set(steps) == set(L.STEP_KINDS)
    for kind, keys in L.STEP_KEYS.items():
        body = steps[kind]["properties"][kind]
        body = next(b for b in body.get("oneOf", [body]) if b.get("type") == "object")
        assert set(body["properties"]) == set(keys), kind


def test_conntrack_starts_mid_flow_and_picks_it_up():
    """Conntrack registers in a netns only when a rule needs it; a connection already in
    progress is then picked up from its next packet (loose pickup, ESTABLISHED, 300 s cap)."""
    from conntrace.api import run_scenario
    from conntrace.scenario.load import parse_scenario

    text = """
name: late-conntrack
hosts:
  client:
    interfaces: {eth0: {addresses: [10.0.1.2/24]}}
  srv:
    interfaces: {eth0: {addresses: [10.0.1.1/24]}}
    listen: [{proto: tcp, port: 80}]
    rules: |
      *filter
      :INPUT ACCEPT [0:0]
      -A INPUT -p tcp --dport 80 -j ACCEPT
      COMMIT
links:
  - [client:eth0, srv:eth0]
timeline:
  - at: 0
    tcp_connect: {from: client, to: 10.0.1.1:80, sport: 45000, close: open}
  - at: 1
    rules:
      host: srv
      noflush: true
      rules: |
        *filter
        -I INPUT 1 -m conntrack --ctstate ESTABLISHED -j ACCEPT
        COMMIT
  - at: 2
    packet: {from: client, spec: "tcp 10.0.1.2:45000 > 10.0.1.1:80 ack seq=5 ack=9"}
"""
    world, out = run_scenario(parse_scenario(text, "late.yaml"))
    srv = world.hosts["srv"]
    assert out.steps[0].result == "connected"
    before = [t for t in world.traces if t.host == "srv" and t.time < 1]
    assert before and not any(s.kind == "conntrack" for t in before for s in t.steps)
    (line,) = conntrack_lines(world, "srv")
    assert "ESTABLISHED src=10.0.1.2 dst=10.0.1.1 sport=45000 dport=80 [UNREPLIED]" in line
    assert int(line.split()[2]) <= 300
    # ...and the picked-up packet is NEW (no reply seen yet), not ESTABLISHED
    rule = srv.ruleset.tables["filter"].chains["INPUT"].rules[0]
    assert rule.counters.packets == 0
    late = [t for t in world.traces if t.host == "srv" and t.time >= 2][0]
    ct = [s for s in late.steps if s.kind == "conntrack"][0]
    assert (ct.action, ct.ctstate, ct.tcp_state) == ("new", "NEW", "ESTABLISHED")
