"""comment, iprange, length, ttl, hl, mac."""

import pytest

from conntrace.netfilter.hooks import Hook
from conntrace.ruleset.ext import ExtParseError, SaveString
from conntrace.ruleset.writer import quote_token

from match_helpers import hit, parse, roundtrip, tcp, udp


# -- comment ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,saved", [
    ("hello world", '"hello world"'), ("hello", "hello"), ('a"b', '"a\\"b"'), ("", '""'),
    ("it's", '"it\\\'s"'), ("x\\y", '"x\\\\y"'), ("a.b", '"a.b"'), ("tab\tx", '"tab\tx"'),
    ("ns1/svc1:p80", '"ns1/svc1:p80"'),
])
def test_comment_save_form(text, saved):
    m = parse("comment", ["--comment", text])
    toks = m.render()
    assert toks[0] == "--comment" and isinstance(toks[1], SaveString)
    assert quote_token(toks[1]) == saved  # as iptables-save v1.8.9 printed it
    roundtrip(m)
    assert hit(m, tcp())


def test_comment_is_cut_to_255_bytes():
    m = parse("comment", ["--comment", "0" * 300])
    assert m.comment == "0" * 255
    assert parse("comment", ["--comment", "0" * 255]).comment == "0" * 255
    with pytest.raises(ExtParseError):
        parse("comment", [])


# -- iprange ------------------------------------------------------------------------------
def test_iprange():
    m = parse("iprange", "--src-range 1.2.3.4-1.2.3.10 ! --dst-range 10.0.0.1-10.0.0.1")
    assert " ".join(m.render()) == "--src-range 1.2.3.4-1.2.3.10 ! --dst-range 10.0.0.1-10.0.0.1"
    roundtrip(m)
    assert hit(m, tcp(src="1.2.3.4", dst="10.0.0.2")) and hit(m, tcp(src="1.2.3.10", dst="9.9.9.9"))
    assert not hit(m, tcp(src="1.2.3.11", dst="10.0.0.2"))
    assert not hit(m, tcp(src="1.2.3.5", dst="10.0.0.1"))
    single = parse("iprange", "--src-range 1.2.3.4")
    assert single.render() == ["--src-range", "1.2.3.4-1.2.3.4"]
    rev = parse("iprange", "--src-range 1.2.3.10-1.2.3.4")  # accepted, never matches
    assert rev.render() == ["--src-range", "1.2.3.10-1.2.3.4"]
    assert not hit(rev, tcp(src="1.2.3.5"))
    assert hit(parse("iprange", "! --src-range 1.2.3.10-1.2.3.4"), tcp(src="1.2.3.5"))
    for bad in ("--src-range 1.2.3.4-", "--src-range a-b", "--dst-range 1.2.3.256",
                "--src-range ::1-::2"):
        with pytest.raises(ExtParseError):
            parse("iprange", bad)
    v6 = parse("iprange", "--src-range 2001:db8::1-2001:db8::ff", family=6)
    assert hit(v6, tcp(src="2001:db8::80", dst="2001:db8::1"))


# -- length -------------------------------------------------------------------------------
@pytest.mark.parametrize("written,saved", [
    ("--length 100", "--length 100"), ("! --length 100:200", "! --length 100:200"),
    ("--length :200", "--length 0:200"), ("--length 200:", "--length 200:65535"),
    ("--length 200:100", "--length 200:100"), ("--length 0x40", "--length 64"),
])
def test_length_saved(written, saved):
    m = parse("length", written)
    assert " ".join(m.render()) == saved
    roundtrip(m)


def test_length_eval():
    p = tcp()  # 20 + 20 bytes
    assert p.total_len == 40
    assert hit(parse("length", "--length 40"), p)
    assert hit(parse("length", "--length 0:40"), p) and not hit(parse("length", "--length 41:"), p)
    assert not hit(parse("length", "--length 200:100"), p)
    big = udp(payload_len=1000)
    assert hit(parse("length", "! --length :1000"), big)  # 1028 bytes
    with pytest.raises(ExtParseError):
        parse("length", "--length 65536")


# -- ttl / hl -----------------------------------------------------------------------------
@pytest.mark.parametrize("written,saved", [
    ("--ttl-eq 64", "--ttl-eq 64"), ("! --ttl-eq 64", "! --ttl-eq 64"),
    ("--ttl-gt 0", "--ttl-gt 0"), ("--ttl-lt 255", "--ttl-lt 255"),
])
def test_ttl_saved(written, saved):
    m = parse("ttl", written)
    assert " ".join(m.render()) == saved
    roundtrip(m)


def test_ttl_eval_and_errors():
    p = tcp(ttl=64)
    assert hit(parse("ttl", "--ttl-eq 64"), p) and not hit(parse("ttl", "! --ttl-eq 64"), p)
    assert hit(parse("ttl", "--ttl-gt 63"), p) and not hit(parse("ttl", "--ttl-gt 64"), p)
    assert hit(parse("ttl", "--ttl-lt 65"), p) and not hit(parse("ttl", "--ttl-lt 64"), p)
    for bad in ("--ttl-eq 256", "--ttl-lt 5 --ttl-gt 3", "", "--ttl-eq x"):
        with pytest.raises(ExtParseError):
            parse("ttl", bad)
    h = parse("hl", "! --hl-eq 255", family=6)
    assert h.render() == ["!", "--hl-eq", "255"]
    assert hit(h, tcp(src="::1", dst="::2", ttl=64))


# -- mac ----------------------------------------------------------------------------------
def test_mac():
    m = parse("mac", "--mac-source 00:11:22:AA:bb:cc")
    assert m.render() == ["--mac-source", "00:11:22:aa:bb:cc"]
    inv = parse("mac", "! --mac-source 0:1:2:3:4:5")
    assert inv.render() == ["!", "--mac-source", "00:01:02:03:04:05"]
    roundtrip(inv)
    p = tcp()
    p.meta.src_mac = "00:11:22:aa:bb:cc"
    assert hit(m, p, hook=Hook.PREROUTING) and hit(inv, p)
    p.meta.src_mac = "00:01:02:03:04:05"
    assert not hit(m, p) and not hit(inv, p)
    p.meta.src_mac = "00:01:02:03:04:06"
    assert not hit(m, p) and hit(inv, p)
    # no link-layer source (or loopback): never matches, `!` or not
    assert not hit(m, tcp()) and not hit(inv, tcp())
    lo = tcp()
    lo.meta.src_mac = "00:00:00:00:00:00"
    assert not hit(inv, lo, in_iface="lo")
    for bad in ("00:11:22:33:44", "00:11:22:33:44:gg", "001:1:2:3:4:5"):
        with pytest.raises(ExtParseError):
            parse("mac", ["--mac-source", bad])


def test_mac_hooks():
    with pytest.raises(ExtParseError, match="mac match: used from hooks OUTPUT, but only valid "
                                            "from PREROUTING/INPUT/FORWARD"):
        parse("mac", "--mac-source 00:11:22:33:44:55", chain="OUTPUT")
    # user chains are checked by the loader through hook_error
    m = parse("mac", "--mac-source 00:11:22:33:44:55", chain="mychain")
    assert m.hook_error(frozenset({"FORWARD"})) is None
    assert "POSTROUTING" in m.hook_error(frozenset({"FORWARD", "POSTROUTING"}))
    parse("mac", "--mac-source 00:11:22:33:44:55", table="raw", chain="PREROUTING")
