"""The command line: the demo, trace/run/lint output, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conntrace.cli import main

ROOT = Path(__file__).resolve().parents[2]

GOOD_RULES = """*nat
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
-A FORWARD -m conntrack --ctstate NEW -d 10.0.2.2/32 -p tcp --dport 80 -j ACCEPT
COMMIT
"""


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_demo_tells_the_story():
    r = invoke("demo")
    assert r.exit_code == 0
    out = r.output
    assert "nat PREROUTING DST: DNAT: destination 10.0.1.1:8080 -> 10.0.2.2:80" in out
    assert "The nat table was not consulted at all" in out
    # SYN_SENT -> ... -> TIME_WAIT, as conntrack -E prints it
    for state in ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "LAST_ACK", "TIME_WAIT"):
        assert f" {state} src=10.0.1.2" in out
    # the gateway's own connection loops through lo with one entry
    assert "routing: loopback dev lo" in out


def test_trace_text_and_json(tmp_path):
    rules = tmp_path / "gw.rules"
    rules.write_text(GOOD_RULES)
    args = ["trace", "--rules", str(rules), "--local", "eth0=10.0.1.1/24",
            "--iface", "eth1=10.0.2.1/24", "tcp 10.0.1.2:40000 > 10.0.1.1:8080 syn in eth0"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "Assumptions:" in r.output
    assert f"[{rules}:6]" in r.output  # the DNAT rule's file:line
    assert "FATE: FORWARDED at out eth1" in r.output
    assert "as tcp 10.0.2.1:40000 > 10.0.2.2:80 [SYN]" in r.output
    r = invoke(*args, "--json")
    doc = json.loads(r.output)
    (pkt,) = doc["packets"]
    assert pkt["fate"]["result"] == "forwarded"
    kinds = [s["kind"] for s in pkt["steps"]]
    assert kinds.count("confirm") == 1 and "nat" in kinds
    rule_steps = [s for s in pkt["steps"] if s["kind"] == "rule" and s["matched"]]
    assert [(s["table"], s["chain"], s["index"]) for s in rule_steps] == [
        ("nat", "PREROUTING", 1), ("filter", "FORWARD", 1), ("nat", "POSTROUTING", 1)]


def test_trace_reject_follows_the_generated_packet(tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset\nCOMMIT\n")
    r = invoke("trace", "--rules", str(rules), "--local", "10.0.0.1/24",
               "tcp 10.0.0.9:5000 > 10.0.0.1:22 syn in eth0")
    assert r.exit_code == 0, r.output
    assert "FATE: REJECTED at filter/INPUT rule 1" in r.output
    assert "caused by packet" in r.output
    assert "tcp 10.0.0.1:22 > 10.0.0.9:5000 [ACK,RST]" in r.output


@pytest.mark.parametrize("text,expect", [
    ("*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\n", "COMMIT"),  # no COMMIT
    ("*filter\n-A INPUT -p tcp --dportx 22 -j ACCEPT\nCOMMIT\n", "--dportx"),  # unknown option
    ("*filter\n-A INPUT -j NOSUCHCHAIN_\nCOMMIT\n", "NOSUCHCHAIN_"),  # jump to a missing chain
    ("*filter\n-A INPUT -s 10.0.0.300 -j ACCEPT\nCOMMIT\n", "10.0.0.300"),  # malformed rule
])
def test_bad_rules_one_line_exit_2(tmp_path, text, expect):
    f = tmp_path / "bad.rules"
    f.write_text(text)
    for cmd in (["lint", str(f)], ["trace", "--rules", str(f), "udp 1.2.3.4:1 > 5.6.7.8:2"]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 2, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1, r.output
        assert lines[0].startswith(f"conntrace: {f}:") and expect in lines[0]
        assert "Traceback" not in r.output


def test_binary_file_is_refused(tmp_path):
    f = tmp_path / "blob.rules"
    f.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00binary")
    r = CliRunner().invoke(main, ["lint", str(f)])
    assert r.exit_code == 2
    assert r.output.strip().startswith(f"conntrace: {f}") and len(r.output.strip().splitlines()) == 1


def test_bad_scenario_names_file_line_and_key(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("hosts:\n  a:\n    interfaces:\n      eth0: {addresses: [10.0.0.1/24]}\n"
                 "timeline:\n  - at: 1\n    tcp_connect: {from: b, to: 10.0.0.1:80}\n")
    r = CliRunner().invoke(main, ["run", str(f)])
    assert r.exit_code == 2
    assert r.output.strip() == f"conntrace: {f}:7: timeline[0].tcp_connect.from: unknown host 'b' (hosts: a)"


def test_unsupported_refused_unless_allowed(tmp_path):
    f = tmp_path / "u.rules"
    f.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                 "-A INPUT -m physdev --physdev-is-bridged -j DROP\nCOMMIT\n")
    r = CliRunner().invoke(main, ["trace", "--rules", str(f), "--local", "10.0.0.1/24",
                                  "udp 10.0.0.2:1 > 10.0.0.1:53 in eth0"])
    assert r.exit_code == 2
    assert f"unsupported: physdev --physdev-is-bridged at {f}:5" in r.output
    r = CliRunner().invoke(main, ["trace", "--allow-unsupported", "--rules", str(f), "--local",
                                  "10.0.0.1/24", "udp 10.0.0.2:1 > 10.0.0.1:53 in eth0"])
    assert r.exit_code == 0
    assert "RESULT UNCERTAIN" in r.output and "UNCERTAIN:" in r.output


def test_lint_reports(tmp_path):
    f = tmp_path / "l.rules"
    f.write_text("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                 ":unused - [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -p tcp -j DROP\nCOMMIT\n")
    r = invoke("lint", str(f))
    assert r.exit_code == 0
    assert "unused" in r.output
    assert f"{f}:7" in r.output  # the rule after the unconditional ACCEPT is unreachable


def test_run_json_and_pcap_dir(tmp_path):
    r = invoke("run", str(ROOT / "examples" / "dnat-masquerade.yaml"), "--json",
               "--pcap-dir", str(tmp_path / "pcaps"))
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["outcome"]["steps"][0]["result"] == "connected"
    assert any("TIME_WAIT" in line for line in doc["hosts"]["gw"]["conntrack"])
    assert sorted(Path(p).name for p in doc["pcaps"]) == [
        "client-eth0.pcap", "gw-eth0.pcap", "gw-eth1.pcap", "server-eth0.pcap"]
    dpkt = pytest.importorskip("dpkt")
    with open(tmp_path / "pcaps" / "gw-eth1.pcap", "rb") as fh:
        frames = list(dpkt.pcap.Reader(fh))
    first = dpkt.ethernet.Ethernet(frames[0][1])
    # what tcpdump -i eth1 on the gateway shows first: the SYN after DNAT and MASQUERADE
    import ipaddress
    assert str(ipaddress.IPv4Address(first.data.src)) == "10.0.2.1"
    assert str(ipaddress.IPv4Address(first.data.dst)) == "10.0.2.2"
    assert first.data.data.dport == 80 and first.data.data.flags & dpkt.tcp.TH_SYN


def test_trace_with_a_host_file():
    host = ROOT / "examples" / "hosts" / "gw.yaml"
    r = invoke("trace", "--host", str(host), "tcp 10.0.1.2:40000 > 10.0.1.1:8080 syn in eth0")
    assert r.exit_code == 0, r.output
    assert f"[{host}:15]" in r.output  # MASQUERADE, pointed at the host file's own line
    assert "FATE: FORWARDED at out eth1" in r.output
    r = invoke("trace", "--host", str(host), "udp 10.0.1.2:40000 > 10.0.2.2:53 in eth0")
    assert "FATE: DROPPED at filter/FORWARD policy" in r.output


@pytest.mark.parametrize("routes", [
    "default via 10.0.2.254 dev eth1 proto dhcp src 10.0.2.1 metric 100\n"
    "10.0.1.0/24 dev eth0 proto kernel scope link src 10.0.1.1\n"
    "blackhole 10.66.0.0/16\n",
    '[{"dst":"default","gateway":"10.0.2.254","dev":"eth1","protocol":"dhcp","prefsrc":"10.0.2.1",'
    '"metric":100,"flags":[]},{"type":"blackhole","dst":"10.66.0.0/16","flags":[]}]',
])
def test_trace_reads_ip_route_output(tmp_path, routes):
    f = tmp_path / "routes.txt"
    f.write_text(routes)
    base = ["trace", "--local", "eth0=10.0.1.1/24", "--iface", "eth1=10.0.2.1/24",
            "--ip-route", str(f)]
    r = invoke(*base, "udp 10.0.1.2:5000 > 198.51.100.7:53 in eth0")
    assert r.exit_code == 0, r.output
    assert "routing: forward dev eth1 via 10.0.2.254" in r.output
    r = invoke(*base, "udp 10.0.1.2:5000 > 10.66.1.1:53 in eth0")
    assert "FATE: NO-ROUTE" in r.output and "blackhole 10.66.0.0/16" in r.output
