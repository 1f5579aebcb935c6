"""mark / connmark: value/mask arithmetic, C number syntax, hex save form, no-conntrack."""

import pytest
from hypothesis import given, strategies as st

from conntrace.conntrack.defs import CtInfo
from conntrace.conntrack.entry import ConnTuple, ConntrackEntry
from conntrace.packet import ip
from conntrace.ruleset.ext import ExtParseError

from match_helpers import hit, parse, roundtrip, tcp


@pytest.mark.parametrize("written,saved", [
    ("--mark 1337", "--mark 0x539"),
    ("! --mark 0x4000/0x4000", "! --mark 0x4000/0x4000"),
    ("--mark 0xffffffff/0xffffffff", "--mark 0xffffffff"),
    ("--mark 5/0xffffffff", "--mark 0x5"),
    ("--mark 0", "--mark 0x0"),
    ("--mark 010", "--mark 0x8"),
    ("--mark 7/0", "--mark 0x7/0x0"),
    ("--mark 0x2000000/0x2000000", "--mark 0x2000000/0x2000000"),
])
@pytest.mark.parametrize("name", ["mark", "connmark"])
def test_saved(name, written, saved):
    m = parse(name, written)
    assert " ".join(m.render()) == saved
    roundtrip(m)


@pytest.mark.parametrize("bad", ["0x100000000", "-1", "abc", "1/", "1/x", "08", "", "1/0x1ffffffff"])
def test_bad(bad):
    with pytest.raises(ExtParseError):
        parse("mark", ["--mark", bad])


def test_mark_eval():
    m = parse("mark", "--mark 0x4000/0x4000")
    p = tcp()
    p.meta.mark = 0x4001
    assert hit(m, p)
    p.meta.mark = 0x0001
    assert not hit(m, p)
    assert hit(parse("mark", "! --mark 0x4000/0x4000"), p)
    p.meta.mark = 7
    assert not hit(parse("mark", "--mark 7/0"), p)  # (7 & 0) != 7: never
    assert hit(parse("mark", "! --mark 7/0"), p)


@given(mark=st.integers(0, 2**32 - 1), value=st.integers(0, 2**32 - 1),
       mask=st.integers(0, 2**32 - 1), inv=st.booleans())
def test_mark_property(mark, value, mask, inv):
    m = parse("mark", (["!"] if inv else []) + ["--mark", f"{value}/{mask}"])
    p = tcp()
    p.meta.mark = mark
    assert hit(m, p) == (((mark & mask) == value) != inv)
    assert parse("mark", m.render()) == m


def test_connmark_reads_the_conntrack():
    t = ConnTuple(ip("10.0.1.2"), ip("10.0.2.2"), 6, 1, 2)
    ct = ConntrackEntry(t, t.invert(), mark=0x1337)
    p = tcp()
    p.meta.mark = 0  # the packet mark does not matter
    p.meta.ct, p.meta.ctinfo = ct, CtInfo.ESTABLISHED
    assert hit(parse("connmark", "--mark 0x1337"), p)
    assert hit(parse("connmark", "--mark 0x1/0xff"), tcp()) is False
    assert not hit(parse("connmark", "! --mark 0x1337"), p)
    # no conntrack: never matches, inverted or not
    for opts in ("--mark 0", "! --mark 0", "! --mark 5"):
        bare = tcp()
        assert not hit(parse("connmark", opts), bare)
        bare.meta.untracked = True
        assert not hit(parse("connmark", opts), bare)
