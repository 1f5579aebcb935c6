"""tos, dscp, quota (forms checked with iptables-save 1.8.9)."""

import pytest

from conntrace.ruleset.ext import ExtParseError

from match_helpers import ctx, hit, make_host, parse, roundtrip, tcp, udp


@pytest.mark.parametrize("name,written,saved", [
    ("tos", "--tos 0x10", "--tos 0x10/0xff"),
    ("tos", "--tos Minimize-Delay", "--tos 0x10/0x3f"),
    ("tos", "! --tos 0x10/0xff", "! --tos 0x10/0xff"),
    ("tos", "--tos Normal-Service", "--tos 0x00/0x3f"),
    ("tos", "--tos 16", "--tos 0x10/0xff"),
    ("tos", "--tos minimize-cost", "--tos 0x02/0x3f"),
    ("dscp", "--dscp 46", "--dscp 0x2e"),
    ("dscp", "! --dscp 0x0a", "! --dscp 0x0a"),
    ("dscp", "--dscp-class EF", "--dscp 0x2e"),
    ("dscp", "--dscp-class af41", "--dscp 0x22"),
    ("quota", "--quota 1000", "--quota 1000"),
    ("quota", "! --quota 1000", "! --quota 1000"),
])
def test_saved(name, written, saved):
    m = parse(name, written)
    assert " ".join(m.render()) == saved
    roundtrip(m)


@pytest.mark.parametrize("name,bad", [
    ("tos", "--tos 0x100"), ("tos", "--tos Fastest"), ("dscp", "--dscp 64"),
    ("dscp", "--dscp 1 --dscp-class EF"), ("dscp", "--dscp-class AF44"), ("quota", "--quota -1"),
])
def test_bad(name, bad):
    with pytest.raises(ExtParseError):
        parse(name, bad)


def test_tos_dscp_eval():
    p = tcp(tos=0xB8)  # DSCP EF (46), ECN 0
    assert hit(parse("dscp", "--dscp-class EF"), p)
    assert not hit(parse("dscp", "! --dscp 46"), p)
    assert not hit(parse("tos", "--tos 0x10"), p)
    assert hit(parse("tos", "--tos 0x38/0x3f"), p)  # 0xb8 & 0x3f
    assert not hit(parse("tos", "--tos 0x18/0x3f"), p)
    low = tcp(tos=0x10)
    assert hit(parse("tos", "--tos Minimize-Delay"), low)
    assert hit(parse("tos", "--tos Minimize-Delay"), tcp(tos=0x50))  # 0x50 & 0x3f = 0x10
    assert not hit(parse("tos", "--tos 0x10"), tcp(tos=0x50))  # mask 0xff


def test_quota_is_a_byte_budget():
    m = parse("quota", "--quota 100")
    host = make_host()
    seq = [m.matches(ctx(udp(payload_len=n), host=host)) for n in (12, 12, 40, 1, 0)]
    # 40 + 40 = 80 bytes used, 20 left: a 68-byte packet empties it, then even 28 fails
    assert seq == [True, True, False, False, False]
    inv = parse("quota", "! --quota 50")
    assert [inv.matches(ctx(udp(), host=host)) for _ in range(3)] == [False, True, True]
