"""MARK and CONNMARK: option forms, mask arithmetic, conntrack mark events, errors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from conntrace.conntrack.entry import ConnTuple, ConntrackEntry
from conntrace.netfilter.effects import Note
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import CONTINUE
from conntrace.ruleset.ext import ExtParseError, ExtUnsupported

from .conftest import ctx_for, make_router, parse, roundtrip, udp

ROUTER = make_router()

u32 = st.integers(0, 0xFFFFFFFF)
MANGLE = dict(table="mangle", chain="PREROUTING")


def _ct(mark: int = 0) -> ConntrackEntry:
    a, b = ipaddress.ip_address("10.0.1.2"), ipaddress.ip_address("10.0.2.2")
    return ConntrackEntry(ConnTuple(a, b, 17, 1, 2), ConnTuple(b, a, 17, 2, 1), mark=mark)


def _apply_mark(router, t, mark: int) -> int:
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.mark = mark
    assert t.apply(ctx_for(router, p, Hook.PREROUTING, "mangle")) is CONTINUE
    return p.meta.mark


@pytest.mark.parametrize("tokens,mark,mask", [
    ("--set-mark 1338", 0x53A, 0xFFFFFFFF),
    ("--set-mark 0x10/0x1", 0x10, 0x11),   # --set-mark keeps its own bits in the mask
    ("--set-xmark 0x10/0x1", 0x10, 0x1),
    ("--and-mark 0xf0", 0, 0xFFFFFF0F),
    ("--or-mark 0x4000", 0x4000, 0x4000),
    ("--xor-mark 0x4000", 0x4000, 0),
    ("--set-mark 010", 8, 0xFFFFFFFF),     # strtoul base 0: octal
])
def test_mark_forms(tokens, mark, mask):
    t = parse("MARK", tokens, **MANGLE)
    assert (t.mark, t.mask) == (mark, mask)
    assert t.render() == ["--set-xmark", f"0x{mark:x}/0x{mask:x}"]
    roundtrip(t, **MANGLE)


@given(old=u32, value=u32, mask=u32)
def test_mark_set_xmark_arithmetic(old, value, mask):
    t = parse("MARK", ["--set-xmark", f"{value:#x}/{mask:#x}"], **MANGLE)
    assert _apply_mark(ROUTER, t, old) == (old & ~mask & 0xFFFFFFFF) ^ value


@given(old=u32, bits=u32)
def test_mark_and_or_xor_mean_what_they_say(old, bits):
    assert _apply_mark(ROUTER, parse("MARK", ["--and-mark", str(bits)], **MANGLE), old) == old & bits
    assert _apply_mark(ROUTER, parse("MARK", ["--or-mark", str(bits)], **MANGLE), old) == old | bits
    assert _apply_mark(ROUTER, parse("MARK", ["--xor-mark", str(bits)], **MANGLE), old) == old ^ bits


@given(old=u32, value=u32, mask=u32)
def test_mark_set_mark_with_mask_sets_value_bits(old, value, mask):
    # --set-mark v/m: bits of m cleared, then v ORed in (mask v|m, value v)
    t = parse("MARK", ["--set-mark", f"{value}/{mask}"], **MANGLE)
    assert _apply_mark(ROUTER, t, old) == (old & ~(mask | value) & 0xFFFFFFFF) | value


@pytest.mark.parametrize("tokens,expected", [
    ("", "one of --set-xmark"),
    ("--set-mark 0x100000000", "--set-mark: expected value[/mask]"),
    ("--set-mark abc", "--set-mark: expected value[/mask]"),
    ("--set-mark -1", "--set-mark: expected value[/mask]"),
    ("--set-mark 1/", "--set-mark: expected value[/mask]"),
    ("--and-mark 1/2", "--and-mark: expected a number from 0 to 4294967295"),
    ("--set-mark 1 --or-mark 2", "cannot be used together"),
    ("--set-mark 1 --set-mark 2", "can only be used once"),
])
def test_mark_parse_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected.replace("[", r"\[")):
        parse("MARK", tokens, **MANGLE)


def test_mark_valid_everywhere():
    from conntrace.ruleset.ext import TARGETS
    cls = TARGETS["MARK"]
    assert cls.valid_tables is None and cls.valid_hooks is None
    assert parse("MARK", "--set-mark 3", table="filter", chain="INPUT").mark == 3


# -- CONNMARK ------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,fields,rendered", [
    ("--save-mark", ("save", 0, 0xFFFFFFFF, 0xFFFFFFFF),
     "--save-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
    ("--restore-mark --mask 0xff", ("restore", 0, 0xFF, 0xFF),
     "--restore-mark --nfmask 0xff --ctmask 0xff"),
    ("--set-mark 0x10/0x1", ("set", 0x10, 0x11, 0xFFFFFFFF), "--set-xmark 0x10/0x11"),
    ("--set-mark 0x10 --mask 0xff", ("set", 0x10, 0xFF, 0xFFFFFFFF), "--set-xmark 0x10/0xff"),
    ("--mask 3 --set-mark 5", ("set", 5, 0xFFFFFFFF, 0xFFFFFFFF), "--set-xmark 0x5/0xffffffff"),
    ("--and-mark 0xf", ("set", 0, 0xFFFFFFF0, 0xFFFFFFFF), "--set-xmark 0x0/0xfffffff0"),
    ("--save-mark --left-shift-mark 2", ("save", 0, 0xFFFFFFFF, 0xFFFFFFFF),
     "--save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 2"),
])
def test_connmark_forms(tokens, fields, rendered):
    t = parse("CONNMARK", tokens, **MANGLE)
    assert (t.mode, t.ctmark, t.ctmask, t.nfmask) == fields
    assert " ".join(t.render()) == rendered
    roundtrip(t, **MANGLE)


@given(ctmark=u32, mark=u32, nfmask=u32, ctmask=u32)
def test_connmark_save_and_restore_arithmetic(ctmark, mark, nfmask, ctmask):
    save = parse("CONNMARK", ["--save-mark", "--nfmask", str(nfmask), "--ctmask", str(ctmask)],
                 **MANGLE)
    ct = _ct(ctmark)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.mark, p.meta.ct = mark, ct
    save.apply(ctx_for(ROUTER, p, Hook.PREROUTING, "mangle"))
    want = (ctmark & ~ctmask & 0xFFFFFFFF) ^ (mark & nfmask)
    assert ct.mark == want
    assert ("MARK" in ct.ecache) == (want != ctmark)
    assert p.meta.mark == mark
    restore = parse("CONNMARK", ["--restore-mark", "--nfmask", str(nfmask), "--ctmask",
                                 str(ctmask)], **MANGLE)
    restore.apply(ctx_for(ROUTER, p, Hook.PREROUTING, "mangle"))
    assert p.meta.mark == (mark & ~nfmask & 0xFFFFFFFF) ^ (want & ctmask)


def test_connmark_set_and_shifts(router):
    ct = _ct(0xF0)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.ct = ct
    parse("CONNMARK", "--set-mark 4 --left-shift-mark 1", **MANGLE).apply(ctx_for(router, p))
    assert ct.mark == 8  # (0xf0 & 0 ^ 4) << 1
    p.meta.mark = 0x30
    parse("CONNMARK", "--save-mark --right-shift-mark 4", **MANGLE).apply(ctx_for(router, p))
    assert ct.mark == 0x3
    parse("CONNMARK", "--restore-mark --left-shift-mark 8 --nfmask 0xff00",
          **MANGLE).apply(ctx_for(router, p))
    assert p.meta.mark == 0x30 & 0xFFFF00FF | 0x300


def test_connmark_unchanged_mark_caches_no_event(router):
    ct = _ct(5)
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.ct = ct
    parse("CONNMARK", "--set-mark 5", **MANGLE).apply(ctx_for(router, p))
    assert ct.mark == 5 and "MARK" not in ct.ecache


def test_connmark_without_conntrack_does_nothing(router):
    p = udp("10.0.1.2", "10.0.2.2")
    p.meta.mark = 7
    ctx = ctx_for(router, p)
    assert parse("CONNMARK", "--restore-mark", **MANGLE).apply(ctx) is CONTINUE
    assert p.meta.mark == 7
    assert isinstance(ctx.effects[0], Note) and "no conntrack" in ctx.effects[0].text


def test_connmark_needs_conntrack():
    assert parse("CONNMARK", "--save-mark", **MANGLE).needs_conntrack


@pytest.mark.parametrize("tokens,expected", [
    ("", "no operation specified"),
    ("--save-mark --restore-mark", "cannot be used together"),
    ("--save-mark --mask 0xf --nfmask 0x3", "cannot be used together"),
    ("--save-mark --ctmask 0x100000000", "--ctmask: expected a number"),
    ("--save-mark --left-shift-mark 33", "--left-shift-mark: expected a number from 0 to 32"),
])
def test_connmark_parse_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("CONNMARK", tokens, **MANGLE)


def test_connmark_shift_32_is_reported_unsupported():
    with pytest.raises(ExtUnsupported) as e:
        parse("CONNMARK", "--save-mark --left-shift-mark 32", **MANGLE)
    assert e.value.option == "--left-shift-mark"
