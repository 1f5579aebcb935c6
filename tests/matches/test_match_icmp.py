"""icmp / icmp6: names (iptables' table, prefixes, case), numbers, codes, any."""

import pytest

from conntrace.ruleset.ext import ExtParseError
from conntrace.ruleset.matches.icmp import ICMP_NAMES, Icmp6Match

from match_helpers import ctx, hit, icmp, parse, roundtrip, udp

ICMP = {"proto": 1}
ICMP6 = {"proto": 58, "family": 6}


# iptables-save v1.8.9 for `-p icmp --icmp-type X` (every name of `iptables -p icmp -h`)
SAVED = {
    "any": "any", "echo-reply": "0", "pong": "0", "destination-unreachable": "3",
    "network-unreachable": "3/0", "host-unreachable": "3/1", "protocol-unreachable": "3/2",
    "port-unreachable": "3/3", "fragmentation-needed": "3/4", "source-route-failed": "3/5",
    "network-unknown": "3/6", "host-unknown": "3/7", "network-prohibited": "3/9",
    "host-prohibited": "3/10", "TOS-network-unreachable": "3/11",
    "TOS-host-unreachable": "3/12", "communication-prohibited": "3/13",
    "host-precedence-violation": "3/14", "precedence-cutoff": "3/15", "source-quench": "4",
    "redirect": "5", "network-redirect": "5/0", "host-redirect": "5/1",
    "TOS-network-redirect": "5/2", "TOS-host-redirect": "5/3", "echo-request": "8",
    "ping": "8", "router-advertisement": "9", "router-solicitation": "10",
    "time-exceeded": "11", "ttl-exceeded": "11", "ttl-zero-during-transit": "11/0",
    "ttl-zero-during-reassembly": "11/1", "parameter-problem": "12", "ip-header-bad": "12/0",
    "required-option-missing": "12/1", "timestamp-request": "13", "timestamp-reply": "14",
    "address-mask-request": "17", "address-mask-reply": "18",
    # numbers
    "8": "8", "3/3": "3/3", "255": "any", "3/255": "3/255", "42": "42", "0": "0",
    "5/2": "5/2", "0x8": "8", "ECHO-REQUEST": "8", "echo-req": "8",
}


@pytest.mark.parametrize("written,saved", sorted(SAVED.items()))
def test_icmp_saved(written, saved):
    m = parse("icmp", ["--icmp-type", written], **ICMP)
    assert m.render() == ["--icmp-type", saved]
    roundtrip(m, **ICMP)


def test_table_is_complete():
    assert {n for n, *_ in ICMP_NAMES} == {k for k in SAVED if not k[0].isdigit()
                                            and k not in ("ECHO-REQUEST", "echo-req")}


@pytest.mark.parametrize("bad", ["echo", "ttl", "256", "3/256", "3/1/2", "foo", "", "-1"])
def test_icmp_bad(bad):
    with pytest.raises(ExtParseError):
        parse("icmp", ["--icmp-type", bad], **ICMP)


def test_icmp_needs_type_and_proto():
    with pytest.raises(ExtParseError, match="must be specified"):
        parse("icmp", [], **ICMP)
    with pytest.raises(ExtParseError, match="protocol 1"):
        parse("icmp", "--icmp-type 8", proto=6)
    with pytest.raises(ExtParseError, match="protocol 1"):
        parse("icmp", "--icmp-type 8", proto=1, proto_inv=True)


def test_icmp_eval():
    echo = parse("icmp", "--icmp-type echo-request", **ICMP)
    assert hit(echo, icmp(type=8, code=0)) and hit(echo, icmp(type=8, code=7))
    assert not hit(echo, icmp(type=0))
    port = parse("icmp", "--icmp-type port-unreachable", **ICMP)
    assert hit(port, icmp(type=3, code=3)) and not hit(port, icmp(type=3, code=1))
    notport = parse("icmp", "! --icmp-type 3/3", **ICMP)
    assert notport.render() == ["!", "--icmp-type", "3/3"]
    assert hit(notport, icmp(type=3, code=1)) and not hit(notport, icmp(type=3, code=3))
    anyt = parse("icmp", "--icmp-type any", **ICMP)
    assert all(hit(anyt, icmp(type=t, code=c)) for t, c in ((0, 0), (3, 13), (255, 255)))
    assert not hit(parse("icmp", "! --icmp-type any", **ICMP), icmp(type=8))
    # 255/3 is still "any": the kernel tests type 0xFF first
    assert parse("icmp", "--icmp-type 255/3", **ICMP) == anyt


def test_icmp_fragment_and_missing_header():
    anyt = parse("icmp", "--icmp-type any", **ICMP)
    assert not hit(anyt, icmp(frag_offset=8))
    c = ctx(udp())
    assert not anyt.matches(c) and c.uncertain


ICMP6_SAVED = {
    "destination-unreachable": "1", "no-route": "1/0", "communication-prohibited": "1/1",
    "beyond-scope": "1/2", "address-unreachable": "1/3", "port-unreachable": "1/4",
    "failed-policy": "1/5", "reject-route": "1/6", "packet-too-big": "2",
    "time-exceeded": "3", "ttl-exceeded": "3", "ttl-zero-during-transit": "3/0",
    "ttl-zero-during-reassembly": "3/1", "parameter-problem": "4", "bad-header": "4/0",
    "unknown-header-type": "4/1", "unknown-option": "4/2", "echo-request": "128",
    "ping": "128", "echo-reply": "129", "pong": "129", "router-solicitation": "133",
    "router-advertisement": "134", "neighbour-solicitation": "135",
    "neighbor-solicitation": "135", "neighbour-advertisement": "136",
    "neighbor-advertisement": "136", "redirect": "137", "255": "255", "3/7": "3/7",
}


@pytest.mark.parametrize("written,saved", sorted(ICMP6_SAVED.items()))
def test_icmp6_saved(written, saved):
    m = parse("icmp6", ["--icmpv6-type", written], **ICMP6)
    assert m.render() == ["--icmpv6-type", saved]
    roundtrip(m, **ICMP6)


def test_icmp6_eval_and_checks():
    m = parse("icmp6", "! --icmpv6-type 1/2", **ICMP6)
    assert m.render() == ["!", "--icmpv6-type", "1/2"]
    pkt6 = icmp(src="2001:db8::1", dst="2001:db8::2", type=1, code=2)
    assert not hit(m, pkt6)
    assert hit(m, icmp(src="2001:db8::1", dst="2001:db8::2", type=1, code=3))
    # 255 is an ordinary type for ICMPv6
    t255 = parse("icmp6", "--icmpv6-type 255", **ICMP6)
    assert isinstance(t255, Icmp6Match) and not hit(t255, pkt6)
    with pytest.raises(ExtParseError):
        parse("icmp6", [], **ICMP6)
    with pytest.raises(ExtParseError):
        parse("icmp6", "--icmpv6-type 1", proto=1, family=6)
