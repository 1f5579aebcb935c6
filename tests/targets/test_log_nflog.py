"""LOG and NFLOG options as iptables 1.8.9 reads and saves them; NFLOG's message."""

from __future__ import annotations

import pytest

from conntrace.netfilter.effects import NflogMessage
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import CONTINUE
from conntrace.observe.kernel_log import (XT_LOG_IPOPT, XT_LOG_MACDECODE, XT_LOG_TCPOPT,
                                          XT_LOG_TCPSEQ, XT_LOG_UID)
from conntrace.ruleset.ext import ExtParseError, SaveString
from conntrace.ruleset.writer import quote_token

from .conftest import ctx_for, parse, roundtrip, udp


@pytest.mark.parametrize("level,num", [
    ("emerg", 0), ("panic", 0), ("alert", 1), ("crit", 2), ("error", 3), ("warning", 4),
    ("notice", 5), ("info", 6), ("debug", 7), ("0", 0), ("7", 7), ("0x3", 3)])
def test_log_levels(level, num):
    t = parse("LOG", ["--log-level", level])
    assert t.level == num
    assert t.render() == ([] if num == 4 else ["--log-level", str(num)])
    roundtrip(t)


@pytest.mark.parametrize("level", ["8", "err", "warn", "WARNING", "-1"])
def test_log_bad_levels(level):
    with pytest.raises(ExtParseError, match="unknown level"):
        parse("LOG", ["--log-level", level])


def test_log_flags_render_in_save_order():
    t = parse("LOG", "--log-macdecode --log-uid --log-ip-options --log-tcp-options "
                     "--log-tcp-sequence")
    assert t.logflags == XT_LOG_TCPSEQ | XT_LOG_TCPOPT | XT_LOG_IPOPT | XT_LOG_UID | XT_LOG_MACDECODE
    assert t.render() == ["--log-tcp-sequence", "--log-tcp-options", "--log-ip-options",
                          "--log-uid", "--log-macdecode"]
    roundtrip(t)


def test_log_prefix_is_a_save_string_and_cut_at_29():
    t = parse("LOG", ["--log-prefix", "a b", "--log-level", "alert"])
    tokens = t.render()
    assert isinstance(tokens[1], SaveString)
    assert [quote_token(x) for x in tokens] == ["--log-prefix", '"a b"', "--log-level", "1"]
    assert quote_token(parse("LOG", ["--log-prefix", "abc"]).render()[1]) == "abc"
    assert quote_token(parse("LOG", ["--log-prefix", 'x"y']).render()[1]) == '"x\\"y"'
    long = parse("LOG", ["--log-prefix", "0123456789012345678901234567890"])
    assert long.prefix == "01234567890123456789012345678"  # struct xt_log_info.prefix[30]
    roundtrip(long)


@pytest.mark.parametrize("tokens,expected", [
    (["--log-prefix", ""], "non-empty prefix"),
    (["--log-prefix", "a\nb"], "newlines are not allowed"),
    (["--log-uid", "--log-uid"], "can only be used once"),
])
def test_log_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("LOG", tokens)


@pytest.mark.parametrize("tokens,rendered", [
    ("", ""),
    ("--nflog-group 5 --nflog-prefix pfx --nflog-range 100 --nflog-threshold 3",
     "--nflog-prefix pfx --nflog-group 5 --nflog-threshold 3"),
    ("--nflog-size 100", "--nflog-size 100"),
    ("--nflog-size 0", "--nflog-size 0"),
    ("--nflog-group 0", ""),
    ("--nflog-threshold 0", ""),
    ("--nflog-threshold 1", "--nflog-threshold 1"),
    ("--nflog-group 65535", "--nflog-group 65535"),
])
def test_nflog_forms(tokens, rendered):
    t = parse("NFLOG", tokens)
    assert " ".join(t.render()) == rendered
    roundtrip(t)


@pytest.mark.parametrize("tokens,expected", [
    (["--nflog-group", "65536"], "--nflog-group: expected a number from 0 to 65535"),
    (["--nflog-size", "-1"], "--nflog-size: expected a number"),
    (["--nflog-size", "4294967296"], "--nflog-size: expected a number"),
    (["--nflog-threshold", "65536"], "--nflog-threshold: expected a number"),
    (["--nflog-range", "1", "--nflog-size", "1"], "cannot be used together"),
    (["--nflog-prefix", ""], "non-empty prefix"),
])
def test_nflog_errors(tokens, expected):
    with pytest.raises(ExtParseError, match=expected):
        parse("NFLOG", tokens)


def test_nflog_emits_a_copy_and_continues(router):
    t = parse("NFLOG", ["--nflog-group", "3", "--nflog-prefix", "drop: "])
    p = udp("10.0.1.2", "10.0.2.2")
    ctx = ctx_for(router, p, Hook.INPUT)
    assert t.apply(ctx) is CONTINUE
    (m,) = ctx.effects
    assert isinstance(m, NflogMessage) and (m.group, m.prefix) == (3, "drop: ")
    assert m.packet is not p and m.packet.header_fields() == p.header_fields()
    p.ttl = 1  # later rewrites do not change what was logged
    assert m.packet.ttl == 64
