"""TOS, DSCP, TTL, CT/NOTRACK and TRACE: forms, arithmetic, templates, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import CONTINUE
from conntrace.ruleset.ext import TARGETS, ExtParseError, ExtUnsupported, Opt
from conntrace.ruleset.targets.ct import CtTemplate

from .conftest import ctx_for, make_router, parse, pctx, roundtrip, udp

ROUTER = make_router()
MANGLE = dict(table="mangle", chain="PREROUTING")
RAW = dict(table="raw", chain="PREROUTING")
u8 = st.integers(0, 255)


def _pkt(**kw):
    return udp("10.0.1.2", "10.0.2.2", **kw)


def _run(t, pkt, hook=Hook.PREROUTING, table="mangle"):
    ctx = ctx_for(ROUTER, pkt, hook, table)
    assert t.apply(ctx) is CONTINUE
    return ctx


# -- TOS -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,value,mask", [
    ("--set-tos 0x10", 0x10, 0xFF),
    ("--set-tos 16/0x3f", 0x10, 0x3F),
    ("--set-tos Minimize-Delay", 0x10, 0x3F),
    ("--set-tos maximize-throughput", 0x08, 0x3F),
    ("--set-tos Maximize-Reliability", 0x04, 0x3F),
    ("--set-tos Minimize-Cost", 0x02, 0x3F),
    ("--set-tos Normal-Service", 0x00, 0x3F),
    ("--and-tos 0x12", 0x00, 0xED),
    ("--or-tos 0x12", 0x12, 0x12),
    ("--xor-tos 0x12", 0x12, 0x00),
])
def test_tos_forms(tokens, value, mask):
    t = parse("TOS", tokens, **MANGLE)
    assert (t.value, t.mask) == (value, mask)
    assert t.render() == ["--set-tos", f"0x{value:02x}/0x{mask:02x}"]
    roundtrip(t, **MANGLE)


@given(old=u8, value=u8, mask=u8)
def test_tos_arithmetic(old, value, mask):
    p = _pkt(tos=old)
    _run(parse("TOS", ["--set-tos", f"{value}/{mask}"], **MANGLE), p)
    assert p.tos == (old & ~mask & 0xFF) ^ value


def test_symbolic_tos_keeps_precedence_bits():
    p = _pkt(tos=0xE3)
    _run(parse("TOS", "--set-tos Minimize-Delay", **MANGLE), p)
    assert p.tos == 0xD0  # precedence 0xC0 kept, low six bits replaced by 0x10


@pytest.mark.parametrize("tokens,expected", [
    ("--set-tos 0x100", "symbolic name '0x100' is unknown"),
    ("--set-tos Minimize-Delay/0xff", "symbolic name"),
    ("--set-tos 0x10/0x100", "illegal value"),
    ("--set-tos 16x", "illegal value"),
    ("--and-tos 256", "--and-tos: expected a number from 0 to 255"),
    ("", "an action is required"),
])
def test_tos_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("TOS", tokens, **MANGLE)


# -- DSCP ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,dscp", [
    ("--set-dscp 10", 0x0A), ("--set-dscp 0x3f", 0x3F), ("--set-dscp-class EF", 0x2E),
    ("--set-dscp-class af43", 0x26), ("--set-dscp-class CS7", 0x38),
    ("--set-dscp-class BE", 0x00),
    ("--set-dscp-class CS10", 0x08),  # class_to_dscp is a prefix match: CS1
])
def test_dscp_forms(tokens, dscp):
    t = parse("DSCP", tokens, **MANGLE)
    assert t.dscp == dscp and t.render() == ["--set-dscp", f"0x{dscp:02x}"]
    roundtrip(t, **MANGLE)


@given(old=u8, dscp=st.integers(0, 63))
def test_dscp_keeps_ecn_bits(old, dscp):
    p = _pkt(tos=old)
    _run(parse("DSCP", ["--set-dscp", str(dscp)], **MANGLE), p)
    assert p.tos == (old & 0x03) | (dscp << 2)


@pytest.mark.parametrize("tokens,expected", [
    ("--set-dscp 64", "--set-dscp: expected a number from 0 to 63"),
    ("--set-dscp -1", "--set-dscp: expected"),
    ("--set-dscp 1 --set-dscp-class EF", "cannot be used together"),
    ("--set-dscp-class XX", "invalid class 'XX'"),
    ("", "--set-dscp or --set-dscp-class is required"),
])
def test_dscp_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("DSCP", tokens, **MANGLE)


# -- TTL -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,old,new", [
    ("--ttl-set 5", 64, 5), ("--ttl-set 0", 64, 0), ("--ttl-dec 1", 64, 63),
    ("--ttl-dec 10", 3, 0),      # saturates at 0
    ("--ttl-inc 255", 2, 255),   # saturates at 255
    ("--ttl-inc 1", 64, 65),
])
def test_ttl_arithmetic(tokens, old, new):
    t = parse("TTL", tokens, **MANGLE)
    p = _pkt(ttl=old)
    _run(t, p)
    assert p.ttl == new
    assert roundtrip(t, **MANGLE) == tokens


@pytest.mark.parametrize("tokens,expected", [
    ("--ttl-set 256", "--ttl-set: expected a number from 0 to 255"),
    ("--ttl-inc 0", "--ttl-inc: expected a number from 1 to 255"),
    ("--ttl-dec 0", "--ttl-dec: expected a number from 1 to 255"),
    ("--ttl-dec 1 --ttl-inc 1", "cannot be used together"),
    ("", "an action is required"),
])
def test_ttl_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("TTL", tokens, **MANGLE)


# -- table / hook validity (x_tables checkentry data) ---------------------------------------

@pytest.mark.parametrize("name,tokens,table,chain,expected", [
    ("TOS", "--set-tos 1", "filter", "INPUT", "only valid in mangle table, not filter"),
    ("DSCP", "--set-dscp 1", "filter", "INPUT", "only valid in mangle table, not filter"),
    ("TTL", "--ttl-set 1", "filter", "INPUT", "only valid in mangle table, not filter"),
    ("CT", "--notrack", "filter", "INPUT", "only valid in raw table, not filter"),
    ("NOTRACK", "", "mangle", "PREROUTING", "only valid in raw table, not mangle"),
    ("TRACE", "", "filter", "INPUT", "only valid in raw table, not filter"),
    ("REJECT", "", "raw", "PREROUTING", "only valid in filter table, not raw"),
    ("REJECT", "", "mangle", "INPUT", "only valid in filter table, not mangle"),
    ("DNAT", "--to-destination 1.2.3.4", "mangle", "PREROUTING", "only valid in nat table"),
    ("DNAT", "--to-destination 1.2.3.4", "nat", "INPUT",
     "used from hooks INPUT, but only usable from PREROUTING/OUTPUT"),
    ("SNAT", "--to-source 1.2.3.4", "nat", "OUTPUT",
     "used from hooks OUTPUT, but only usable from INPUT/POSTROUTING"),
    ("MASQUERADE", "", "nat", "OUTPUT",
     "used from hooks OUTPUT, but only usable from POSTROUTING"),
    ("REDIRECT", "", "nat", "INPUT", "only usable from PREROUTING/OUTPUT"),
])
def test_table_and_hook_checks(name, tokens, table, chain, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse(name, tokens, table=table, chain=chain)


def test_valid_table_and_hook_data():
    from conntrace.ruleset.ext import TARGETS as T
    assert T["REJECT"].valid_tables == {"filter"}
    assert T["REJECT"].valid_hooks == {"INPUT", "FORWARD", "OUTPUT"}
    assert T["TPROXY"].valid_tables == {"mangle"} and T["TPROXY"].valid_hooks == {"PREROUTING"}
    assert T["NETMAP"].valid_hooks == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}
    assert T["MASQUERADE"].valid_hooks == {"POSTROUTING"}
    for name in ("LOG", "NFLOG", "MARK", "CONNMARK"):
        assert T[name].valid_tables is None and T[name].valid_hooks is None
    # a rule in a user chain is checked when the loader knows the hooks reaching it
    assert parse("DNAT", "--to-destination 1.2.3.4", table="nat", chain="MYCHAIN").range


# -- CT / NOTRACK ---------------------------------------------------------------------------

def test_ct_notrack_marks_untracked_and_does_not_enable_conntrack():
    t = parse("CT", "--notrack", **RAW)
    assert not t.needs_conntrack
    assert parse("CT", "--zone 1", **RAW).needs_conntrack
    p = _pkt()
    _run(t, p, table="raw")
    assert p.meta.untracked and p.meta.ct_template is None


def test_notrack_target_and_first_rule_wins():
    p = _pkt()
    _run(parse("NOTRACK", "", **RAW), p, table="raw")
    assert p.meta.untracked
    q = _pkt()
    _run(parse("CT", "--zone 3", **RAW), q, table="raw")
    _run(parse("CT", "--notrack", **RAW), q, table="raw")  # already has a template: ignored
    assert q.meta.ct_template == CtTemplate(3) and not q.meta.untracked
    r = _pkt()
    r.meta.ct = object()  # looped packet still carrying its conntrack
    _run(parse("NOTRACK", "", **RAW), r, table="raw")
    assert not r.meta.untracked


def test_ct_zone_template_and_zone_mark():
    p = _pkt()
    _run(parse("CT", "--zone 65535", **RAW), p, table="raw")
    assert p.meta.ct_template == CtTemplate(65535, False)
    q = _pkt()
    q.meta.mark = 0x12345
    t = parse("CT", "--zone mark", **RAW)
    _run(t, q, table="raw")
    tmpl = q.meta.ct_template
    assert tmpl.zone == 0x2345 and tmpl.zone_from_mark
    q.meta.mark = 7  # a later raw rule changes the mark: the lookup uses the new one
    assert tmpl.zone_for(q) == 7
    assert t.render() == ["--zone", "mark"]
    roundtrip(t, **RAW)


@pytest.mark.parametrize("tokens,rendered", [
    ("--zone 0", ""), ("--zone-orig 0", ""), ("--notrack --zone 3", "--notrack --zone 3"),
    ("--zone-orig 4 --zone-reply 4", "--zone 4"), ("", ""),
])
def test_ct_render(tokens, rendered):
    t = parse("CT", tokens, **RAW)
    assert " ".join(t.render()) == rendered
    roundtrip(t, **RAW)


@pytest.mark.parametrize("tokens,option", [
    ("--helper ftp", "--helper"), ("--timeout tmo", "--timeout"),
    ("--ctevents new,related", "--ctevents"), ("--expevents new", "--expevents"),
    ("--zone-orig 1", "--zone-orig"), ("--zone-reply mark", "--zone-reply"),
])
def test_ct_unmodelled_options_are_reported(tokens, option):
    with pytest.raises(ExtUnsupported) as e:
        parse("CT", tokens, **RAW)
    assert e.value.option == option


@pytest.mark.parametrize("tokens,expected", [
    ("--zone 65536", "cannot parse '65536' as a zone id"),
    ("--zone x", "cannot parse 'x' as a zone id"),
    ("--ctevents new,bogus", "unknown event type 'bogus'"),
    ("--notrack --notrack", "can only be used once"),
])
def test_ct_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("CT", tokens, **RAW)


def test_trace_sets_nf_trace():
    t = parse("TRACE", "", **RAW)
    p = _pkt()
    assert not p.meta.nf_trace
    _run(t, p, table="raw")
    assert p.meta.nf_trace and t.render() == []
    with pytest.raises(ExtParseError, match="takes no options"):
        TARGETS["TRACE"].parse([Opt("--zone", ("1",))], pctx(4, "raw", "PREROUTING"))


@pytest.mark.parametrize("name,tokens,before,after", [
    # captured on 6.18: mangle PREROUTING rule on a forwarded datagram, tcpdump behind it
    ("TOS", "--set-tos 0x10/0x3f", 0xE3, 0xD0),
    ("TOS", "--set-tos Minimize-Delay", 0xFF, 0xD0),
    ("TOS", "--xor-tos 0x0f", 0xF0, 0xFF),
    ("DSCP", "--set-dscp 0x2e", 0x03, 0xBB),
])
def test_tos_values_seen_on_the_wire(name, tokens, before, after):
    p = _pkt(tos=before)
    _run(parse(name, tokens, **MANGLE), p)
    assert p.tos == after
