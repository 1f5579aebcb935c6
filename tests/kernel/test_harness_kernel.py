"""The harness on the real kernel: what each scenario must show (root + ip netns)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from conntrace.kernel import run_on_kernel
from conntrace.kernel.testing import require_kernel
from conntrace.observe.pcap import read_capture
from conntrace.scenario.load import load_scenario, parse_scenario

pytestmark = pytest.mark.kernel
HERE = Path(__file__).parent
EXAMPLES = sorted((HERE.parents[1] / "examples").glob("*.yaml"))


def run(tmp_path_factory, name: str, **kw):
    require_kernel()
    sc = load_scenario(HERE / "scenarios" / name)
    return sc, run_on_kernel(sc, workdir=tmp_path_factory.mktemp(name.split(".")[0]),
                             timeout=60, **kw)


def entry(host_outcome, proto: str, **orig):
    found = [e for e in host_outcome.conntrack if e.proto == proto
             and all(e.orig.get(k) == v for k, v in orig.items())]
    assert len(found) <= 1
    return found[0] if found else None


# ------------------------------------------------------------------ filter.yaml

@pytest.fixture(scope="module")
def filt(tmp_path_factory):
    return run(tmp_path_factory, "filter.yaml")


def test_filter_drop_times_out_after_three_syns(filt):
    _, out = filt
    s = out.steps[0]
    assert (s.result, s.detail) == ("timeout", "ETIMEDOUT")
    # 6.18: tcp_syn_linear_timeouts=4 -> SYNs at 0, 1, 2 s and connect() fails at 3 s
    assert out.hosts["b"].counters["filter/INPUT/1"] == (3, 180)
    assert out.elapsed >= 3.0


def test_reject_gives_refused(filt):
    _, out = filt
    assert out.steps[1].result == "refused" and out.steps[1].detail == "ECONNREFUSED"
    assert out.steps[2].result == "refused"  # --reject-with tcp-reset
    assert out.hosts["b"].counters["filter/INPUT/2"] == (1, 60)
    assert out.hosts["b"].counters["filter/INPUT/3"] == (1, 60)


def test_dropped_and_rejected_syns_leave_no_entry(filt):
    _, out = filt
    b = out.hosts["b"]
    for port in (81, 82, 84):
        assert entry(b, "tcp", dport=port) is None
        assert not any(f"dport={port} " in e for e in b.events)


def test_tcp_echo_and_what_the_server_saw(filt):
    _, out = filt
    s = out.steps[3]
    assert (s.result, s.detail) == ("connected", "echo 20/20 bytes")
    assert s.local_addr == "10.0.0.1" and 32768 <= s.local_port <= 60999
    assert [(x.host, x.proto, x.peer_addr, x.peer_port, x.local_addr, x.local_port)
            for x in s.server_saw] == [("b", "tcp", "10.0.0.1", s.local_port, "10.0.0.2", 80)]
    e = entry(out.hosts["b"], "tcp", sport=s.local_port, dport=80)
    assert e.state == "TIME_WAIT" and e.flags == ["ASSURED"] and 110 <= e.timeout <= 120
    states = [l.split()[4] for l in out.hosts["b"].events if f"sport={s.local_port} " in l]
    assert states[:3] == ["SYN_SENT", "SYN_RECV", "ESTABLISHED"] and states[-1] == "TIME_WAIT"


def test_udp_echo_and_closed_port(filt):
    _, out = filt
    s = out.steps[4]
    assert (s.result, s.sent, s.replies) == ("reply", 3, 3)
    assert len(s.server_saw) == 3
    assert {(x.peer_addr, x.peer_port, x.local_port) for x in s.server_saw} == {
        ("10.0.0.1", s.local_port, 53)}
    e = entry(out.hosts["b"], "udp", sport=s.local_port, dport=53)
    # replied within 2 s of creation: 30 s and never ASSURED (reference §3.2)
    assert e.flags == [] and 25 <= e.timeout <= 30
    closed = out.steps[5]
    assert (closed.result, closed.sent, closed.replies) == ("unreachable", 1, 0)
    assert "ECONNREFUSED" in closed.detail and closed.server_saw == []


def test_ping(filt):
    _, out = filt
    s = out.steps[6]
    assert (s.result, s.sent, s.replies, s.local_port) == ("reply", 2, 2, 4242)
    e = entry(out.hosts["b"], "icmp", id=4242)
    assert e.orig["type"] == 8 and e.reply["type"] == 0 and e.reply["id"] == 4242


def test_rejected_ping_is_unreachable_and_rst_close(filt):
    _, out = filt
    s = out.steps[7]
    assert (s.result, s.sent, s.replies, s.local_port) == ("unreachable", 1, 0, 4243)
    assert s.detail == "icmp-unreachable/10"  # host prohibited
    assert out.hosts["b"].counters["filter/INPUT/4"] == (1, 100)
    assert entry(out.hosts["b"], "icmp", id=4243) is None  # rejected before confirm
    rst = out.steps[8]
    assert rst.result == "connected" and rst.local_port == 45000
    e = entry(out.hosts["b"], "tcp", sport=45000)
    assert e.state == "CLOSE" and e.timeout <= 10


def test_socket_owners_follow_the_scenario(filt):
    _, out = filt
    # client OUTPUT --uid-owner 1001: the uid-1001 connection's packets, nothing else
    pkts, _ = out.hosts["a"].counters["filter/OUTPUT/1"]
    assert 4 <= pkts <= 8
    # server OUTPUT -p udp --uid-owner 1000: the three echoes of the uid-1000 listener
    assert out.hosts["b"].counters["filter/OUTPUT/1"] == (3, 3 * 36)


def test_host_without_conntrack_rules_has_an_empty_table(filt):
    _, out = filt
    a = out.hosts["a"]
    assert a.conntrack == [] and a.events == []
    assert a.ct_stats["invalid"] == 0


def test_counters_and_stats_shape(filt):
    _, out = filt
    b = out.hosts["b"]
    assert set(b.counters) >= {"filter/INPUT/policy", "filter/INPUT/5", "filter/OUTPUT/1"}
    assert {"insert_failed", "drop", "early_drop", "invalid", "clash_resolve"} <= set(b.ct_stats)


# ------------------------------------------------------------------ nat.yaml

@pytest.fixture(scope="module")
def nat(tmp_path_factory):
    return run(tmp_path_factory, "nat.yaml", trace=True)


def test_dnat_server_saw_the_client(nat):
    _, out = nat
    s = out.steps[0]
    assert s.result == "connected" and s.local_port == 41000
    assert [(x.peer_addr, x.peer_port, x.local_addr, x.local_port) for x in s.server_saw] == [
        ("10.0.1.2", 41000, "10.0.2.2", 80)]
    e = entry(out.hosts["gw"], "tcp", sport=41000)
    assert e.orig["dst"] == "10.0.1.1" and e.orig["dport"] == 8080
    assert (e.reply["src"], e.reply["sport"], e.reply["dst"], e.reply["dport"]) == (
        "10.0.2.2", 80, "10.0.1.2", 41000)


def test_masquerade_server_saw_the_gateway(nat):
    _, out = nat
    s = out.steps[1]
    assert s.result == "connected"
    assert [(x.peer_addr, x.local_port) for x in s.server_saw] == [("10.0.2.1", 80)]
    e = entry(out.hosts["gw"], "tcp", sport=s.local_port)
    assert e.reply["dst"] == "10.0.2.1" and e.orig["dport"] == 8081
    assert e.state == "ESTABLISHED"  # close: open keeps it up while the tables are read
    assert e.reply["dport"] == s.server_saw[0].peer_port


def test_udp_dnat_echo(nat):
    _, out = nat
    s = out.steps[2]
    assert (s.result, s.replies) == ("reply", 2)
    assert {(x.peer_addr, x.local_port) for x in s.server_saw} == {("10.0.1.2", 5353)}
    e = entry(out.hosts["gw"], "udp", sport=s.local_port)
    assert e.reply["sport"] == 5353 and e.reply["src"] == "10.0.2.2"


def test_nat_counters_count_first_packets(nat):
    _, out = nat
    c = out.hosts["gw"].counters
    assert c["nat/PREROUTING/1"] == (1, 60) and c["nat/PREROUTING/2"] == (1, 60)
    assert c["nat/PREROUTING/3"] == (1, 48)  # one UDP flow, 20-byte payload
    assert c["nat/POSTROUTING/1"] == (1, 60)
    assert not any(k.startswith("raw/") for k in c)  # the harness' TRACE rules stay hidden


def test_trace_lines_show_the_kernel_walk(nat):
    _, out = nat
    lines = out.hosts["gw"].trace_lines
    assert any("nat:PREROUTING:rule:" in l and "--dport 8080 -j DNAT" in l for l in lines)
    assert any("nat:POSTROUTING:rule:" in l and "MASQUERADE" in l for l in lines)
    assert not any("conntrace-harness-trace" in l or " raw:" in l for l in lines)


def test_captures_hold_the_traffic(nat):
    _, out = nat
    caps = out.hosts["client"].captures
    assert set(caps) == {"eth0"}
    pkts = [c.packet for c in read_capture(caps["eth0"]) if c.packet is not None]
    syns = [p for p in pkts if p.tcp is not None and p.tcp.flags & 0x02 and not p.tcp.flags & 0x10]
    assert {(str(p.dst), p.dport) for p in syns} == {("10.0.1.1", 8080), ("10.0.1.1", 8081)}
    server = [c.packet for c in read_capture(out.hosts["server"].captures["eth0"]) if c.packet]
    assert any(p.src == ipaddress.ip_address("10.0.2.1") and p.dport == 80 for p in server)


# ------------------------------------------------------------------ lan.yaml

@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    return run(tmp_path_factory, "lan.yaml")


def test_crafted_packets_sent_and_injected(lan):
    _, out = lan
    assert [s.result for s in out.steps[:3]] == ["done"] * 3
    assert [s.sent for s in (out.steps[0], out.steps[1], out.steps[2])] == [1, 1, 1]
    ev = out.hosts["b"].events
    assert any(l.startswith("[NEW] udp") and "src=10.0.0.1 dst=10.0.0.2 sport=4000 dport=53" in l
               for l in ev)
    # the SYN injected on eth0 (from the segment's bridge) and the datagram on the link-less
    # interface (from the stub namespace) both reached b's conntrack
    assert any(l.startswith("[NEW] tcp") and "src=10.0.0.7" in l for l in ev)
    assert any(l.startswith("[NEW] udp") and "src=10.9.0.7 dst=10.9.0.1 sport=5000" in l for l in ev)
    # the server saw the crafted datagrams, attributed to their steps
    assert [(x.peer_addr, x.peer_port) for x in out.steps[0].server_saw] == [("10.0.0.1", 4000)]
    assert [(x.peer_addr, x.peer_port) for x in out.steps[2].server_saw] == [("10.9.0.7", 5000)]


def test_mid_run_sysctl_flush_and_rules(lan):
    _, out = lan
    b = out.hosts["b"]
    assert [s.result for s in out.steps[3:7]] == ["done"] * 4
    # tcp_loose=0: the lone ACK is INVALID, dropped by the INVALID rule, no entry
    assert not any("src=10.0.0.8" in l for l in b.events)
    assert b.ct_stats["invalid"] >= 1
    destroyed = [l for l in b.events if l.startswith("[DESTROY]")]
    # the SYN to closed port 9 was answered by a RST: the entry dies at once (reference §3.1)
    rst = [l for l in destroyed if "src=10.0.0.7" in l]
    assert len(rst) == 1 and " CLOSE " in rst[0] and "[USERSPACE]" not in rst[0]
    # conntrack -F removed the two UDP entries
    flushed = [l for l in destroyed if l.endswith("[USERSPACE]")]
    assert sorted(l.split()[1] for l in flushed) == ["udp", "udp"]
    # the rule inserted at 0.7 s is rule 1 now and dropped c's datagram
    assert b.counters["filter/INPUT/1"] == (1, 33)
    assert b.counters["filter/INPUT/2"][0] >= 1  # the INVALID rule
    assert out.steps[7].result == "no-reply"
    # c's datagram was dropped in INPUT before confirm: its entry never existed (§1.3)
    assert b.conntrack == [] and not any("src=10.0.0.3" in l for l in b.events)


# ------------------------------------------------------------------ IPv6 sockets

def test_ipv6_addresses_and_sockets(tmp_path):
    require_kernel()
    sc = parse_scenario("""
hosts:
  a: {interfaces: {eth0: {addresses: ["fd00::1/64"]}}}
  b:
    interfaces: {eth0: {addresses: ["fd00::2/64"]}}
    listen: [{proto: tcp, port: 80}, {proto: udp, port: 53}]
links: [[a:eth0, b:eth0]]
timeline:
  - {at: 0, tcp_connect: {from: a, to: "[fd00::2]:80", payload: 5}}
  - {at: 0, udp: {from: a, to: "[fd00::2]:53", payload: 5}}
""", str(tmp_path / "v6.yaml"))
    out = run_on_kernel(sc, workdir=tmp_path, capture=False, timeout=30)
    assert [s.result for s in out.steps] == ["connected", "reply"]
    assert out.steps[0].server_saw[0].peer_addr == "fd00::1"
    assert out.notes == []


# ------------------------------------------------------------------ replay

def test_replay_of_a_capture(tmp_path):
    require_kernel()
    from conntrace.observe.pcap import PcapWriter
    from conntrace.packetspec import parse_packet_spec
    from conntrace.wire import encode_ether

    pcap = tmp_path / "in.pcap"
    with PcapWriter(pcap) as w:
        for n, t in enumerate((0, 200_000_000)):
            pkt = parse_packet_spec(f"udp 10.0.0.9:{6000 + n} > 10.0.0.2:7 len=10").packet
            w.write(1_700_000_000_000_000_000 + t, encode_ether(pkt, "02:00:00:00:00:09",
                                                                "ff:ee:dd:cc:bb:aa"))
    sc = parse_scenario(f"""
hosts:
  a: {{interfaces: {{eth0: {{addresses: [10.0.0.1/24]}}}}}}
  b:
    interfaces: {{eth0: {{addresses: [10.0.0.2/24]}}}}
    rules: "*raw\\n-A PREROUTING -p udp -j ACCEPT\\nCOMMIT\\n*filter\\n-A INPUT -m conntrack --ctstate NEW -j ACCEPT\\nCOMMIT\\n"
links: [[a:eth0, b:eth0]]
timeline:
  - {{at: 0, replay: {{host: b, in: eth0, file: {pcap}}}}}
""", str(tmp_path / "replay.yaml"))
    out = run_on_kernel(sc, workdir=tmp_path / "w", capture=False, timeout=30)
    assert (out.steps[0].result, out.steps[0].sent) == ("done", 2)
    sports = sorted(e.orig["sport"] for e in out.hosts["b"].conntrack if e.proto == "udp")
    assert sports == [6000, 6001]
    assert out.hosts["b"].counters["raw/PREROUTING/1"] == (2, 76)


# ------------------------------------------------------------------ examples

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_run(path, tmp_path):
    require_kernel()
    sc = load_scenario(path)
    out = run_on_kernel(sc, workdir=tmp_path, timeout=120)
    assert out.source == "kernel" and len(out.steps) == len(sc.steps)
    assert all(s.result not in ("pending", "error") for s in out.steps), [s.detail for s in out.steps]
    assert set(out.hosts) == set(sc.hosts)


def test_dnat_masquerade_example():
    require_kernel()
    sc = load_scenario(HERE.parents[1] / "examples" / "dnat-masquerade.yaml")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = run_on_kernel(sc, workdir=Path(d), timeout=60)
    first = out.steps[0]
    assert first.result == "connected" and first.detail == "echo 100/100 bytes"
    assert [(x.peer_addr, x.peer_port) for x in first.server_saw] == [("10.0.2.1", 44892)]
    gw = out.hosts["gw"]
    e = entry(gw, "tcp", sport=44892)
    assert (e.state, e.flags, e.reply["src"], e.reply["dst"]) == ("TIME_WAIT", ["ASSURED"],
                                                                  "10.0.2.2", "10.0.2.1")
    # the gateway's own connection: DNAT in nat OUTPUT, then MASQUERADE
    own = out.steps[1]
    e2 = entry(gw, "tcp", sport=own.local_port)
    assert e2.orig["src"] == "10.0.1.1" and e2.reply["dst"] == "10.0.2.1"
    assert gw.counters["nat/PREROUTING/1"] == (1, 60) and gw.counters["nat/OUTPUT/1"] == (1, 60)
    assert gw.counters["filter/FORWARD/2"] == (1, 60)  # one NEW SYN forwarded
