"""set (with ruleset/ipset.py sets), nfacct, policy, physdev."""

import pytest

from conntrace.ruleset.ext import ExtParseError, ExtUnsupported, SaveString
from conntrace.ruleset.ipset import load_ipset_text

from match_helpers import ctx, hit, make_host, parse, roundtrip, tcp, udp

SETS = """create s1 hash:ip family inet
add s1 10.0.1.2
create s2 hash:ip,port family inet
add s2 10.0.2.2,tcp:80
create nets hash:net family inet
add nets 10.0.0.0/8
add nets 10.9.0.0/16 nomatch
create tmp hash:ip family inet timeout 60
add tmp 10.0.1.2 timeout 30
"""


def set_host():
    h = make_host()
    h.ext_state.ipsets.update(load_ipset_text(SETS))
    return h


# -- set ----------------------------------------------------------------------------------
@pytest.mark.parametrize("written,saved", [
    ("--match-set s1 src", "--match-set s1 src"),
    ("! --match-set s1 dst,src", "! --match-set s1 dst,src"),
    ("--match-set s2 src,dst ! --update-counters ! --update-subcounters",
     "--match-set s2 src,dst ! --update-counters ! --update-subcounters"),
    ("--match-set s1 src,dst --update-counters", "--match-set s1 src,dst"),
    ("--match-set s1 src,dst,src,dst,src,dst", "--match-set s1 src,dst,src,dst,src,dst"),
    ("--set s1 src", "--match-set s1 src"),
])
def test_set_saved(written, saved):
    m = parse("set", written)
    assert " ".join(m.render()) == saved
    roundtrip(m)


@pytest.mark.parametrize("bad", [
    "--match-set s1 src,dst,src,dst,src,dst,src", "--match-set s1 foo", "--match-set s1 SRC",
    "--match-set s1 src --match-set s2 dst", "--return-nomatch",
    "--match-set s2 src --packets-eq 5 --packets-gt 2", "--match-set s2 src --bytes-lt x",
    "--match-set " + "x" * 32 + " src",
])
def test_set_bad(bad):
    with pytest.raises(ExtParseError):
        parse("set", bad)


@pytest.mark.parametrize("opts", [
    "--match-set s2 src,dst --return-nomatch", "--match-set s2 src,dst --packets-eq 5",
    "--match-set s2 src,dst ! --bytes-eq 100", "--match-set s2 src,dst --packets-gt 5 --bytes-lt 100",
])
def test_set_unmodelled(opts):
    with pytest.raises(ExtUnsupported):
        parse("set", opts)


def test_set_membership():
    h = set_host()
    src = parse("set", "--match-set s1 src")
    assert hit(src, tcp(src="10.0.1.2"), host=h) and not hit(src, tcp(src="10.0.1.3"), host=h)
    assert not hit(parse("set", "--match-set s1 dst"), tcp(src="10.0.1.2"), host=h)
    assert hit(parse("set", "! --match-set s1 dst"), tcp(src="10.0.1.2"), host=h)
    ipport = parse("set", "--match-set s2 dst,dst")
    assert hit(ipport, tcp(dst="10.0.2.2", dport=80), host=h)
    assert not hit(ipport, tcp(dst="10.0.2.2", dport=81), host=h)
    assert not hit(ipport, udp(dst="10.0.2.2", dport=80), host=h)  # the port is tcp:80
    # too few flags for a two-dimension set never matches
    assert not hit(parse("set", "--match-set s2 dst"), tcp(dst="10.0.2.2", dport=80), host=h)
    nets = parse("set", "--match-set nets src")
    assert hit(nets, udp(src="10.1.2.3"), host=h)
    assert not hit(nets, udp(src="10.9.2.3"), host=h)  # the longer `nomatch` entry wins
    tmp = parse("set", "--match-set tmp src")
    assert hit(tmp, udp(src="10.0.1.2"), host=h, now=10)
    assert not hit(tmp, udp(src="10.0.1.2"), host=h, now=31)  # timed out (loaded at t=0)


def test_missing_set_is_reported():
    m = parse("set", "--match-set whitelist src")
    c = ctx(tcp(), host=make_host())
    assert m.matches(c) is False
    assert any("whitelist" in u and "does not exist" in u for u in c.uncertain)
    c2 = ctx(tcp(), host=make_host())
    assert parse("set", "! --match-set whitelist src").matches(c2) is False and c2.uncertain


# -- nfacct -------------------------------------------------------------------------------
def test_nfacct():
    m = parse("nfacct", "--nfacct-name ct_state_invalid_dropped_pkts")
    assert m.render() == ["--nfacct-name", "ct_state_invalid_dropped_pkts"]
    assert isinstance(m.render()[1], SaveString)
    roundtrip(m)
    h = make_host()
    assert hit(m, tcp(), host=h) and hit(m, udp(payload_len=100), host=h)
    c = h.ext_state.nfacct["ct_state_invalid_dropped_pkts"]
    assert (c.packets, c.bytes) == (2, 40 + 128)
    assert parse("nfacct", ["--nfacct-name", "a" * 40]).acct_name == "a" * 31
    for bad in ([], ["--nfacct-name", ""], ["--nfacct-name", "a\nb"]):
        with pytest.raises(ExtParseError):
            parse("nfacct", bad)


# -- policy -------------------------------------------------------------------------------
@pytest.mark.parametrize("written,saved,chain", [
    ("--dir in --pol ipsec", "--dir in --pol ipsec", "INPUT"),
    ("--dir in", "--dir in --pol ipsec", "INPUT"),
    ("--dir out --pol none", "--dir out --pol none", "OUTPUT"),
])
def test_policy_saved(written, saved, chain):
    m = parse("policy", written, chain=chain)
    assert " ".join(m.render()) == saved
    roundtrip(m, chain=chain)


def test_policy_eval_without_ipsec():
    ipsec = parse("policy", "--dir in --pol ipsec", chain="INPUT")
    none = parse("policy", "--dir in --pol none", chain="INPUT")
    for pkt in (udp(dport=1701), tcp()):
        assert not hit(ipsec, pkt) and hit(none, pkt)


def test_policy_checks():
    for bad, chain in (("--pol none", "INPUT"), ("--dir IN --pol none", "INPUT"),
                       ("--dir in --pol NONE", "INPUT"), ("--dir in --reqid x", "INPUT"),
                       ("--dir in --proto tcp", "INPUT"), ("--dir in --mode bridge", "INPUT")):
        with pytest.raises(ExtParseError):
            parse("policy", bad, chain=chain)
    with pytest.raises(ExtParseError, match="output policy not valid in PREROUTING and INPUT"):
        parse("policy", "--dir out --pol none", chain="INPUT")
    with pytest.raises(ExtParseError, match="input policy not valid in POSTROUTING and OUTPUT"):
        parse("policy", "--dir in --pol none", chain="OUTPUT")
    m = parse("policy", "--dir in --pol none", chain="FORWARD")
    assert m.hook_error(frozenset({"FORWARD", "OUTPUT"})) is not None


@pytest.mark.parametrize("opts", [
    "--dir in --pol ipsec --strict --reqid 1 --spi 0x100 --proto esp --mode tunnel "
    "--tunnel-src 1.2.3.4 --tunnel-dst 5.6.7.8/24 --next --reqid 2",
    "--dir in --pol none --reqid 5", "--dir in --pol ipsec --proto ah",
])
def test_policy_elements_unmodelled(opts):
    with pytest.raises(ExtUnsupported):
        parse("policy", opts, chain="INPUT")


# -- physdev ------------------------------------------------------------------------------
def test_physdev_is_unmodelled():
    for opts in ("--physdev-is-bridged", "--physdev-in eth0+",
                 "--physdev-in eth0 ! --physdev-out eth1 ! --physdev-is-in --physdev-is-out"):
        with pytest.raises(ExtUnsupported) as e:
            parse("physdev", opts, chain="FORWARD")
        assert "bridges" in e.value.detail
    with pytest.raises(ExtParseError, match="no physdev option"):
        parse("physdev", [], chain="FORWARD")
    with pytest.raises(ExtParseError, match="only supported in the FORWARD and POSTROUTING"):
        parse("physdev", "--physdev-out eth0", chain="OUTPUT")
    with pytest.raises(ExtParseError):
        parse("physdev", ["--physdev-in", "a" * 16], chain="FORWARD")
