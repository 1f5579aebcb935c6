"""scenario.compare on hand-made outcomes: tolerances, port symbols, deviations; no root."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conntrace.errors import InputError
from conntrace.scenario.compare import (AGREE, DISAGREE, KNOWN, Deviation, compare,
                                        load_deviations, parse_deviations, render_comparison)
from conntrace.scenario.load import parse_scenario
from conntrace.scenario.outcome import CtEntryView, HostOutcome, RunOutcome, ServerSaw, StepOutcome

SC = parse_scenario("""
hosts:
  client:
    interfaces: {eth0: {addresses: [10.0.1.2/24]}}
    routes: ["default via 10.0.1.1"]
  gw:
    interfaces:
      eth0: {addresses: [10.0.1.1/24]}
      eth1: {addresses: [10.0.2.1/24]}
    sysctls: {net.ipv4.ip_forward: 1}
  server:
    interfaces: {eth0: {addresses: [10.0.2.2/24]}}
    routes: ["default via 10.0.2.1"]
    listen: [{proto: tcp, port: 80}]
links: [[client:eth0, gw:eth0], [gw:eth1, server:eth0]]
timeline:
  - {at: 0, tcp_connect: {from: client, to: 10.0.1.1:8080, sport: 44892}}
  - {at: 1, tcp_connect: {from: client, to: 10.0.1.1:8080}}
  - {at: 2, ping: {from: client, to: 10.0.2.2}}
""", "sc.yaml")


def _tcp(sport: int, mapped: int, state: str = "TIME_WAIT", timeout: int = 119) -> CtEntryView:
    return CtEntryView("tcp", state, timeout,
                       {"src": "10.0.1.2", "dst": "10.0.1.1", "sport": sport, "dport": 8080},
                       {"src": "10.0.2.2", "dst": "10.0.2.1", "sport": 80, "dport": mapped},
                       ["ASSURED"])


def _events(sport: int, mapped: int) -> list[str]:
    o = f"src=10.0.1.2 dst=10.0.1.1 sport={sport} dport=8080"
    r = f"src=10.0.2.2 dst=10.0.2.1 sport=80 dport={mapped}"
    return [f"[NEW] tcp      6 120 SYN_SENT {o} [UNREPLIED] {r}",
            f"[UPDATE] tcp      6 60 SYN_RECV {o} {r}",
            f"[UPDATE] tcp      6 432000 ESTABLISHED {o} {r} [ASSURED]"]


def outcome(source: str, eph: int = 40000, mapped2: int | None = None, echo_id: int = 777,
            elapsed: float = 3.0) -> RunOutcome:
    """The shape of a DNAT+MASQUERADE run; `eph` is step 2's ephemeral port, `mapped2` its
    port after MASQUERADE (None: kept)."""
    m2 = eph if mapped2 is None else mapped2
    steps = [
        StepOutcome(1, "tcp_connect", "client", "connected", local_addr="10.0.1.2",
                    local_port=44892, server_saw=[ServerSaw("server", "tcp", "10.0.2.2", 80,
                                                            "10.0.2.1", 44892)]),
        StepOutcome(2, "tcp_connect", "client", "connected", local_addr="10.0.1.2",
                    local_port=eph, server_saw=[ServerSaw("server", "tcp", "10.0.2.2", 80,
                                                          "10.0.2.1", m2)]),
        StepOutcome(3, "ping", "client", "reply", replies=1, sent=1, local_addr="10.0.1.2",
                    local_port=echo_id),
    ]
    icmp = CtEntryView("icmp", None, 29,
                       {"src": "10.0.1.2", "dst": "10.0.2.2", "type": 8, "code": 0, "id": echo_id},
                       {"src": "10.0.2.2", "dst": "10.0.1.2", "type": 0, "code": 0, "id": echo_id}, [])
    gw = HostOutcome(conntrack=[_tcp(44892, 44892), _tcp(eph, m2), icmp],
                     ct_stats={"drop": 0, "invalid": 0, "found": 3},
                     counters={"nat/PREROUTING/1": (2, 120), "filter/FORWARD/policy": (0, 0)},
                     events=_events(44892, 44892) + _events(eph, m2))
    return RunOutcome("sc", source, steps, {"gw": gw, "client": HostOutcome(),
                                            "server": HostOutcome()}, elapsed=elapsed)


def statuses(c):
    return {i.key: i.status for i in c.items}


def test_identical_outcomes_agree_everywhere():
    c = compare(outcome("model"), outcome("kernel"), SC)
    assert c.ok and c.count(DISAGREE) == 0 and c.count(AGREE) == len(c.items) > 20


def test_random_ports_compare_as_symbols():
    c = compare(outcome("model", eph=40000, echo_id=777), outcome("kernel", eph=51234, echo_id=31337), SC)
    assert c.ok, render_comparison(c)
    keys = statuses(c)
    assert "gw/conntrack/tcp 10.0.1.2:eph2 > 10.0.1.1:8080/reply" in keys
    assert any("id=id3" in k for k in keys)


def test_kept_versus_remapped_disagrees():
    c = compare(outcome("model", eph=40000), outcome("kernel", eph=40000, mapped2=61000), SC)
    bad = [i for i in c.items if i.status == DISAGREE]
    keys = {i.key for i in bad}
    assert "gw/conntrack/tcp 10.0.1.2:eph2 > 10.0.1.1:8080/reply" in keys
    assert "step/2/server_saw" in keys
    reply = next(i for i in bad if i.key.endswith("eph2 > 10.0.1.1:8080/reply"))
    assert reply.model == "tcp 10.0.2.2:80 > 10.0.2.1:eph2"
    assert reply.kernel.startswith("tcp 10.0.2.2:80 > 10.0.2.1:nat<gw:")


def _map(o: RunOutcome, port0: int, port1: int, eph: int = 40000) -> RunOutcome:
    """Flow 0 (sport 44892) MASQUERADEd to port0, flow 1 (ephemeral) to port1."""
    gw = o.hosts["gw"]
    gw.conntrack[0], gw.conntrack[1] = _tcp(44892, port0), _tcp(eph, port1)
    gw.events = _events(44892, port0) + _events(eph, port1)
    o.steps[0].server_saw[0].peer_port = port0
    o.steps[1].server_saw[0].peer_port = port1
    return o


def test_shared_mapping_is_compared():
    shared = _map(outcome("model"), 61000, 61000)
    assert not compare(shared, _map(outcome("kernel"), 62000, 63000), SC).ok
    assert compare(shared, _map(outcome("kernel"), 62000, 62000), SC).ok
    distinct = _map(outcome("model"), 61000, 61001)
    assert compare(distinct, _map(outcome("kernel"), 62000, 63000), SC).ok


def test_timeout_tolerance_follows_elapsed_difference():
    m, k = outcome("model", elapsed=3.0), outcome("kernel", elapsed=5.5)
    k.hosts["gw"].conntrack[0].timeout = 119 - 3  # within |5.5-3|+1 = 3.5
    assert compare(m, k, SC).ok
    k.hosts["gw"].conntrack[0].timeout = 119 - 4
    c = compare(m, k, SC)
    assert statuses(c)["gw/conntrack/tcp 10.0.1.2:44892 > 10.0.1.1:8080/timeout"] == DISAGREE


def test_missing_entry_and_counter_absent_vs_zero():
    m, k = outcome("model"), outcome("kernel")
    del k.hosts["gw"].counters["filter/FORWARD/policy"]  # absent vs (0, 0): same thing
    k.hosts["gw"].counters["filter/INPUT/policy"] = (0, 0)
    assert compare(m, k, SC).ok
    k.hosts["gw"].counters["nat/POSTROUTING/1"] = (1, 60)
    k.hosts["gw"].conntrack.pop(0)
    st_ = statuses(compare(m, k, SC))
    assert st_["gw/counters/nat/POSTROUTING/1"] == DISAGREE
    assert st_["gw/conntrack/tcp 10.0.1.2:44892 > 10.0.1.1:8080/present"] == DISAGREE


def test_events_compare_per_flow_with_one_second_slack():
    m, k = outcome("model"), outcome("kernel")
    k.hosts["gw"].events[0] = k.hosts["gw"].events[0].replace(" 120 ", " 119 ")
    assert compare(m, k, SC).ok
    k.hosts["gw"].events.pop(1)
    c = compare(m, k, SC)
    assert statuses(c)["gw/events/tcp 10.0.1.2:44892 > 10.0.1.1:8080"] == DISAGREE
    assert statuses(c)["gw/events/tcp 10.0.1.2:eph2 > 10.0.1.1:8080"] == AGREE


def test_ct_stats_compared_are_the_behavioural_ones():
    m, k = outcome("model"), outcome("kernel")
    k.hosts["gw"].ct_stats["found"] = 99  # not compared
    assert compare(m, k, SC).ok
    k.hosts["gw"].ct_stats["insert_failed"] = 1
    assert statuses(compare(m, k, SC))["gw/ct_stats/insert_failed"] == DISAGREE


def test_known_deviation_is_never_agreement():
    m, k = outcome("model"), outcome("kernel")
    k.hosts["gw"].counters["nat/PREROUTING/1"] = (3, 180)
    devs = [Deviation("D9", "counters", "*/counters/nat/*", "test reason")]
    c = compare(m, k, SC, devs)
    item = next(i for i in c.items if i.key == "gw/counters/nat/PREROUTING/1")
    assert item.status == KNOWN and item.deviation == "D9" and "test reason" in item.detail
    assert c.ok and c.count(KNOWN) == 1 and c.count("known deviation") == 1
    # a deviation for another area does not apply
    c = compare(m, k, SC, [Deviation("D9", "events", "*", "x")])
    assert not c.ok


def test_render_shows_both_values():
    m, k = outcome("model"), outcome("kernel")
    k.steps[0].result = "timeout"
    text = render_comparison(compare(m, k, SC))
    line = next(l for l in text.splitlines() if "step/1/result" in l)
    assert "DISAGREE" in line and "connected" in line and "timeout" in line
    assert "1 disagree" in text.splitlines()[0]


@settings(max_examples=40, deadline=None)
@given(eph_m=st.integers(32768, 60999), eph_k=st.integers(32768, 60999),
       nat_m=st.one_of(st.none(), st.integers(1024, 65535)),
       id_m=st.integers(1, 65535), id_k=st.integers(1, 65535))
def test_renaming_random_values_never_changes_the_verdict(eph_m, eph_k, nat_m, id_m, id_k):
    literal = {80, 8080, 44892}
    if {eph_m, eph_k, nat_m} & literal or nat_m in (eph_m, eph_k):
        return
    nat_k = None if nat_m is None else (nat_m % 20000) + 1024
    if nat_k in literal or nat_k in (eph_m, eph_k):
        return
    m = outcome("model", eph=eph_m, mapped2=nat_m, echo_id=id_m)
    k = outcome("kernel", eph=eph_k, mapped2=nat_k, echo_id=id_k)
    assert compare(m, k, SC).ok


def test_deviation_table_parsing():
    text = """# Deviations
Some text.

| id | area | match | reason |
|----|------|-------|--------|
| D1 | counters | `*/counters/filter/*` | why one |
| D2 | `*` | `step/*/replies` | why two |

| not | this | table |
"""
    devs = parse_deviations(text)
    assert devs == [Deviation("D1", "counters", "*/counters/filter/*", "why one"),
                    Deviation("D2", "*", "step/*/replies", "why two")]
    with pytest.raises(InputError) as e:
        parse_deviations("| id | area | match | reason |\n|--|--|--|--|\n| D1 | x | | y |\n", "d.md")
    assert "d.md:3" in str(e.value)


def test_deviation_rows_with_a_scenario_column_and_several_patterns():
    devs = parse_deviations("| id | scenario | area | match | reason |\n|---|---|---|---|---|\n"
                            "| R1 | `k8s-*` | counters | `*/KUBE-SEP-*`, `*/KUBE-SVC-*` | random |\n")
    assert devs == [Deviation("R1", "counters", "*/KUBE-SEP-*, */KUBE-SVC-*", "random", "k8s-*")]
    d = devs[0]
    assert d.covers("counters", "node/counters/nat/KUBE-SVC-X/2", "k8s-clusterip")
    assert d.covers("counters", "node/counters/nat/KUBE-SEP-Y/1", "k8s-nodeport")
    assert not d.covers("counters", "node/counters/nat/KUBE-SEP-Y/1", "docker")
    assert not d.covers("counters", "node/counters/filter/FORWARD/1", "k8s-clusterip")
    assert not d.covers("events", "node/counters/nat/KUBE-SVC-X/2", "k8s-clusterip")


def test_event_disagreements_show_each_side():
    m, k = outcome("model"), outcome("kernel")
    k.hosts["gw"].events[1] = k.hosts["gw"].events[1].replace("SYN_RECV", "ESTABLISHED")
    text = render_comparison(compare(m, k, SC))
    assert "model:  [UPDATE] 60 SYN_RECV reply 10.0.2.2:80 > 10.0.2.1:44892" in text
    assert "kernel: [UPDATE] 60 ESTABLISHED reply 10.0.2.2:80 > 10.0.2.1:44892" in text
    assert "both:   [NEW] 120 SYN_SENT [UNREPLIED]" in text


def test_project_deviations_file_parses():
    path = Path(__file__).resolve().parents[2] / "docs" / "deviations.md"
    devs = load_deviations(path)
    ids = [d.id for d in devs]
    assert len(ids) == len(set(ids))
    assert all(d.reason for d in devs)
