"""kernel.steps: step preparation, frames for injection, attribution of server sightings."""

from __future__ import annotations

import pytest

from conntrace.kernel.steps import (attribute_sightings, ether_frame, prepare_step, retarget,
                                    syn_give_up)
from conntrace.observe.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW
from conntrace.scenario.load import parse_scenario
from conntrace.scenario.outcome import RunOutcome, StepOutcome

SC = parse_scenario("""
hosts:
  c:
    interfaces: {eth0: {addresses: [10.0.1.2/24]}}
    sysctls: {net.ipv4.tcp_syn_retries: 2}
  s:
    interfaces: {eth0: {addresses: [10.0.1.9/24]}}
    listen: [{proto: udp, port: 53}, {proto: tcp, port: 80}]
links: [[c:eth0, s:eth0]]
timeline:
  - {at: 0, udp: {from: c, to: 10.0.1.9:53, count: 3, interval: 0.5}}
  - {at: 0, udp: {from: c, to: 10.0.1.9:53}}
  - {at: 0, tcp_connect: {from: c, to: 10.0.1.9:80, hold: 2}}
  - {at: 0, packet: {from: c, spec: "udp 10.0.1.2:4000 > 10.0.1.9:53 len=4 uid=1000 mark=7 out eth0"}}
  - {at: 0, packet: {host: s, in: eth0, spec: "tcp 10.0.1.7:1 > 10.0.1.9:80 syn mark=3"}}
  - {at: 0, conntrack_flush: s}
""", "t.yaml")


def test_syn_give_up_matches_what_the_kernel_did():
    # Linux 6.18, tcp_syn_linear_timeouts=4: measured 3 s, 7 s and 19 s
    assert [syn_give_up(n) for n in (1, 2, 3)] == [3.0, 7.0, 19.0]
    assert syn_give_up(6) == 131.0
    assert syn_give_up(6, linear=0) == 127.0  # the classic doubling, for comparison


def test_client_steps_carry_their_arguments_and_bounds():
    udp = prepare_step(SC, SC.steps[0])
    assert udp.op == "udp" and udp.args == {"dst": "10.0.1.9", "dport": 53, "count": 3,
                                            "interval": 0.5}
    assert udp.max_duration == pytest.approx(1.0 + 1.0 + 2.0)
    tcp = prepare_step(SC, SC.steps[2])
    # the host's tcp_syn_retries (2) bounds connect(): 7 s + 3 s margin
    assert tcp.args["connect_cap"] == 10.0 and tcp.args["hold"] == 2
    assert tcp.max_duration == pytest.approx(10.0 + 1.0 + 2 + 2.0)


def test_crafted_packets():
    sent = prepare_step(SC, SC.steps[3])
    assert sent.op == "send_ip"
    assert (sent.args["uid"], sent.args["mark"], sent.args["oif"], sent.args["dst"]) == (
        1000, 7, "eth0", "10.0.1.9")
    data = bytes.fromhex(sent.args["data"])
    assert data[0] == 0x45 and data[9] == 17 and len(data) == 20 + 8 + 4
    inj = prepare_step(SC, SC.steps[4])
    assert inj.op == "inject" and inj.args["iface"] == "eth0"
    assert any("mark=" in n for n in inj.notes)
    assert prepare_step(SC, SC.steps[5]).op is None


def test_ether_frames_for_replay():
    ip = bytes.fromhex("4500001c000100004011") + bytes(18)
    f = ether_frame(LINKTYPE_RAW, ip)
    assert f[:12] == bytes(12) and f[12:14] == b"\x08\x00" and f[14:] == ip
    sll = bytes(16) + ip
    f = ether_frame(LINKTYPE_LINUX_SLL, sll, "02:00:00:00:00:07")
    assert f[6:12] == bytes.fromhex("020000000007") and f[14:] == ip
    assert ether_frame(LINKTYPE_ETHERNET, b"short") is None
    assert ether_frame(147, ip) is None
    uni = bytes.fromhex("020000000001") + bytes.fromhex("020000000002") + b"\x08\x00" + ip
    assert retarget(uni, "02:aa:bb:cc:dd:ee")[:6] == bytes.fromhex("02aabbccddee")
    bcast = b"\xff" * 6 + uni[6:]
    assert retarget(bcast, "02:aa:bb:cc:dd:ee") == bcast


def _outcome() -> RunOutcome:
    steps = [StepOutcome(i + 1, s.kind, s.host, "done") for i, s in enumerate(SC.steps)]
    steps[0].local_addr, steps[0].local_port = "10.0.1.2", 40001
    steps[1].local_addr, steps[1].local_port = "10.0.1.2", 40002
    steps[2].local_addr, steps[2].local_port = "10.0.1.2", 40003
    return RunOutcome("t", "kernel", steps)


def _ev(t, proto, peer, pport, lport):
    return {"t": t, "proto": proto, "local_addr": "10.0.1.9", "local_port": lport,
            "peer_addr": peer, "peer_port": pport}


def test_sightings_go_to_the_step_whose_client_port_they_carry():
    out = _outcome()
    windows = {0: (10.0, 12.0), 1: (10.0, 11.0), 2: (10.0, 13.0), 3: (10.0, 10.01)}
    seen = {"s": [_ev(10.1, "udp", "10.0.1.2", 40002, 53), _ev(10.6, "udp", "10.0.1.2", 40001, 53),
                  _ev(10.05, "udp", "10.0.1.2", 4000, 53), _ev(10.2, "tcp", "10.0.1.2", 40003, 80),
                  _ev(50.0, "udp", "10.0.1.2", 40001, 53)]}
    attribute_sightings(SC, out, windows, seen)
    assert [x.peer_port for x in out.steps[0].server_saw] == [40001]
    assert [x.peer_port for x in out.steps[1].server_saw] == [40002]
    assert [x.peer_port for x in out.steps[2].server_saw] == [40003]
    assert [x.peer_port for x in out.steps[3].server_saw] == [4000]  # the crafted datagram
    assert len(out.notes) == 1 and "no step accounts for" in out.notes[0]


def test_a_nated_sighting_falls_back_on_time_and_destination():
    out = _outcome()
    windows = {0: (10.0, 10.5), 2: (10.0, 13.0)}
    # SNAT changed address and port: only the window and the destination port say udp step 1
    attribute_sightings(SC, out, windows, {"s": [_ev(10.2, "udp", "192.0.2.1", 61000, 53)]})
    assert [x.peer_addr for x in out.steps[0].server_saw] == ["192.0.2.1"]
