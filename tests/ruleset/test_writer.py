"""iptables-save / iptables -S writers and parse -> write -> parse round trips."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings, strategies as st

from conntrace.ruleset.iptables_save import parse_rules
from conntrace.ruleset.model import (AddrMatch, Chain, Counters, IfaceMatch, IpHeaderMatch,
                                     Rule, Ruleset, Table)
from conntrace.ruleset.targets.standard import (AcceptTarget, DropTarget, JumpTarget,
                                                QueueTarget, ReturnTarget)
from conntrace.ruleset.writer import inet6_ntop, render_rule, to_list_rules, to_save

from ruleset_helpers import XTestMatch, assert_same_ruleset

# Input given to iptables-restore 1.8.9 (nf_tables) in a netns ...
KERNEL_IN = """*filter
:INPUT DROP [0:0]
:zeta - [0:0]
:Alpha - [0:0]
:beta - [0:0]
-A INPUT -p gre -j ACCEPT
-A INPUT -s 10.1/16 -d 1.2.3.4/255.255.255.0 -j zeta
-A INPUT -s 1.1.1.1,2.2.2.2 -d 3.3.3.3 -j Alpha
-A INPUT -i + -j beta
-A INPUT ! -i + -j ACCEPT
-A INPUT -p all -s 0.0.0.0/0 -j ACCEPT
-A INPUT -p ipv6-icmp -j ACCEPT
-A FORWARD -o eth0 -i ppp+ ! -p 6 ! -f -j ACCEPT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
COMMIT
*security
:INPUT ACCEPT [0:0]
COMMIT
"""
# ... and what its iptables-save printed (header/footer comment lines removed)
KERNEL_OUT = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*security
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j ACCEPT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:Alpha - [0:0]
:beta - [0:0]
:zeta - [0:0]
-A INPUT -p gre -j ACCEPT
-A INPUT -s 10.1.0.0/16 -d 1.2.3.0/24 -j zeta
-A INPUT -s 1.1.1.1/32 -d 3.3.3.3/32 -j Alpha
-A INPUT -s 2.2.2.2/32 -d 3.3.3.3/32 -j Alpha
-A INPUT -j beta
-A INPUT ! -i + -j ACCEPT
-A INPUT -j ACCEPT
-A INPUT -p ipv6-icmp -j ACCEPT
-A FORWARD -i ppp+ -o eth0 ! -p tcp ! -f -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""


def test_matches_kernel_iptables_save():
    assert to_save(parse_rules(KERNEL_IN).v4) == KERNEL_OUT


def test_list_rules_like_iptables_S():
    rs = parse_rules(KERNEL_IN).v4
    out = to_list_rules(rs, "filter").splitlines()
    assert out[:6] == ["-P INPUT DROP", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT",
                       "-N Alpha", "-N beta", "-N zeta"]
    assert out[6] == "-A INPUT -p gre -j ACCEPT"
    assert len(out) == 6 + 9
    # a table the ruleset does not hold lists like a fresh one
    assert to_list_rules(Ruleset(), "raw") == "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n"


def test_counters():
    text = "*filter\n:INPUT ACCEPT [3:180]\n[5:300] -A INPUT -j ACCEPT\nCOMMIT\n"
    rs = parse_rules(text).v4
    save = to_save(rs, counters=True)
    assert ":INPUT ACCEPT [3:180]" in save and "[5:300] -A INPUT -j ACCEPT" in save
    assert ":INPUT ACCEPT [0:0]" in to_save(rs) and "[5:300]" not in to_save(rs)
    listing = to_list_rules(rs, "filter", counters=True)
    assert "-P INPUT ACCEPT -c 3 180" in listing
    assert "-A INPUT -c 5 300 -j ACCEPT" in listing  # -c before the target (print_rule4)
    assert_same_ruleset(parse_rules(listing).v4, rs)


def test_quoting(xt):
    rs = parse_rules('*filter\n-A INPUT -m xtest --xtext "a \\"b\\" c" --xval x -j ACCEPT\n'
                     '-A INPUT -m xtest --xtext plain -j ACCEPT\n'
                     '-A INPUT -m nosuch --opt "two words" -j ACCEPT\nCOMMIT\n').v4
    save = to_save(rs)
    assert '-A INPUT -m xtest --xval x --xtext "a \\"b\\" c" -j ACCEPT' in save
    assert "-A INPUT -m xtest --xtext plain -j ACCEPT" in save
    assert '-A INPUT -m nosuch --opt "two words" -j ACCEPT' in save
    assert_same_ruleset(parse_rules(save).v4, rs)


def test_goto_and_unsupported_target_render():
    rs = parse_rules("*filter\n:a - [0:0]\n-A INPUT -g a\n-A INPUT -j ULOG --ulog-nlgroup 2\n"
                     "-A INPUT -j QUEUE\nCOMMIT\n").v4
    lines = to_save(rs).splitlines()
    assert "-A INPUT -g a" in lines and "-A INPUT -j ULOG --ulog-nlgroup 2" in lines
    assert "-A INPUT -j QUEUE" in lines


def test_ipv6_addresses():
    assert inet6_ntop(ipaddress.IPv6Address("::ffff:1.2.3.4")) == "::ffff:1.2.3.4"
    assert inet6_ntop(ipaddress.IPv6Address("::1.2.3.4")) == "::1.2.3.4"
    assert inet6_ntop(ipaddress.IPv6Address("::6")) == "::6"
    assert inet6_ntop(ipaddress.IPv6Address("2001:db8:0:0:1::1")) == "2001:db8::1:0:0:1"
    rs = parse_rules("*filter\n-A INPUT -s 2001:db8::/32 ! -d ::ffff:1.2.3.4 -j ACCEPT\nCOMMIT\n",
                     family=6).v6
    assert "-A INPUT -s 2001:db8::/32 ! -d ::ffff:1.2.3.4/128 -j ACCEPT" in to_save(rs)


# -- hypothesis round trips ---------------------------------------------------------------------

def _nets(version: int):
    bits, cls = (32, ipaddress.IPv4Network) if version == 4 else (128, ipaddress.IPv6Network)
    return st.builds(lambda a, p: cls((a, p), strict=False),
                     st.integers(0, 2**bits - 1), st.integers(0, bits))


def _addr(version: int):
    return st.one_of(st.none(), st.builds(
        lambda n, inv: AddrMatch(n, inv or n.prefixlen == 0), _nets(version), st.booleans()))


_iface_name = st.from_regex(r"[a-z][a-z0-9.]{0,12}\+?", fullmatch=True)
_iface = st.one_of(st.none(), st.builds(IfaceMatch, _iface_name, st.booleans()),
                   st.just(IfaceMatch("+", True)))
_protos = st.sampled_from([None, 1, 2, 6, 17, 47, 50, 51, 58, 132, 135, 136, 200, 255])


@st.composite
def header(draw, version=4):
    proto = draw(_protos)
    return IpHeaderMatch(
        src=draw(_addr(version)), dst=draw(_addr(version)),
        in_iface=draw(_iface), out_iface=draw(_iface),
        proto=proto, proto_inverted=draw(st.booleans()) if proto else False,
        proto_name=None if proto is None else __import__(
            "conntrace.ruleset.iptables_save", fromlist=["x"]).proto_save_name(proto),
        fragment=draw(st.sampled_from([None, True, False])) if version == 4 else None)


_targets = st.sampled_from([None, AcceptTarget(), DropTarget(), ReturnTarget(), QueueTarget(),
                            JumpTarget("u1"), JumpTarget("u2", True)])
_xtest = st.lists(st.builds(XTestMatch, val=st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True)),
                            val_inv=st.booleans(), flag=st.booleans(),
                            text=st.one_of(st.none(), st.text(max_size=8).filter(lambda t: "\0" not in t and "\n" not in t and "\r" not in t)))
                  .map(lambda m: m if m.val is not None or not m.val_inv else XTestMatch(flag=m.flag, text=m.text)),
                  max_size=2)


def _ruleset(rules: list[Rule], version: int) -> Ruleset:
    rs = Ruleset(family=version)
    t = rs.tables["filter"] = Table.new("filter")
    t.chains["FORWARD"].policy = "DROP"
    t.chains["FORWARD"].policy_counters = Counters(9, 99)
    for name in ("u1", "u2"):
        t.chains[name] = Chain(name, builtin=False)
    t.chains["FORWARD"].rules = rules
    return rs


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(header(4), _targets, st.integers(0, 2**40), st.integers(0, 2**50)),
                max_size=6))
def test_header_roundtrip_v4(items):
    rules = [Rule(ip, [], tgt, Counters(p, b)) for ip, tgt, p, b in items]
    rs = _ruleset(rules, 4)
    text = to_save(rs, counters=True)
    back = parse_rules(text, "rt").v4
    assert_same_ruleset(rs, back)
    assert to_save(back, counters=True) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(header(6), _targets), max_size=5))
def test_header_roundtrip_v6(items):
    rs = _ruleset([Rule(ip, [], tgt) for ip, tgt in items], 6)
    text = to_save(rs)
    back = parse_rules(text, "rt", family=6).v6
    assert_same_ruleset(rs, back, counters=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(header(4), _xtest, _targets), max_size=4))
def test_roundtrip_with_matches_and_list_rules(xt_items):
    from conntrace.ruleset import ext
    ext.load_all()
    saved = dict(ext.MATCHES)
    ext.MATCHES["xtest"] = XTestMatch
    try:
        rs = _ruleset([Rule(ip, list(ms), tgt) for ip, ms, tgt in xt_items], 4)
        back = parse_rules(to_save(rs)).v4
        assert_same_ruleset(rs, back, counters=False)
        listed = parse_rules(to_list_rules(rs, "filter")).v4
        assert_same_ruleset(rs, listed, counters=False)
        for r in rs.tables["filter"].chains["FORWARD"].rules:
            line = render_rule("FORWARD", r)
            (again,) = parse_rules(f"*filter\n:u1 - [0:0]\n:u2 - [0:0]\n{line}\nCOMMIT\n").v4 \
                .tables["filter"].chains["FORWARD"].rules
            assert again.same_rule(r)
    finally:
        ext.MATCHES.clear()
        ext.MATCHES.update(saved)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=" \t-!\"'\\abAB:/,.0123456789*#[]sdjgpmi\n", max_size=60))
def test_garbage_never_crashes(text):
    from conntrace.errors import InputError
    for wrapped in (text, f"*filter\n{text}\nCOMMIT\n"):
        try:
            parse_rules(wrapped, "g")
        except InputError as e:
            assert str(e).startswith("g:") or str(e).startswith("g: ")
