"""lint: statistics, unused chains, unreachable rules, what the kernel refuses, unsupported."""

from __future__ import annotations

from conntrace.ruleset.iptables_save import parse_rules
from conntrace.ruleset.lint import chain_hooks, find_loop, lint, render_lint
from conntrace.ruleset.model import Chain, Rule, IpHeaderMatch, Ruleset, Table
from conntrace.ruleset.targets.standard import DropTarget, JumpTarget

from ruleset_helpers import XHookMatch, XTestTarget

TEXT = """*filter
:INPUT DROP [0:0]
:used - [0:0]
:unused - [0:0]
:gone - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -j used
-A INPUT -s 10.0.0.0/8 -j ACCEPT
-A used -p tcp -j RETURN
-A used -j RETURN
-A used -j ACCEPT
-A unused -j DROP
-A FORWARD -g gone
-A FORWARD -j ACCEPT
-A OUTPUT -j ULOG
COMMIT
*nat
-A POSTROUTING -o eth0 -j ACCEPT
COMMIT
"""


def test_report():
    rep = lint(parse_rules(TEXT, "t.rules"))
    stats = {(s.family, s.table): s for s in rep.tables}
    f = stats[(4, "filter")]
    assert (f.chains, f.user_chains, f.rules) == (6, 3, 10)
    assert dict(f.rules_per_chain)["used"] == 3
    assert rep.rule_count == 11
    unused = rep.of_kind("unused-chain")
    assert [x.chain for x in unused] == ["unused"]
    assert unused[0].source.line == 4 and unused[0].severity == "warning"
    unreachable = rep.of_kind("unreachable-rule")
    # after `-j RETURN` with no match in `used`, and after `-g gone` in FORWARD
    assert sorted((x.chain, x.source.line) for x in unreachable) == [("FORWARD", 14), ("used", 11)]
    # `-p tcp -j RETURN` and `-j used` (a jump) end nothing
    uns = rep.of_kind("unsupported")
    assert [(x.table, x.chain, x.source.line) for x in uns] == [("filter", "OUTPUT", 15)]
    assert "target ULOG is not modelled" in uns[0].message
    assert [str(i) for i in rep.unsupported] == ["unsupported: ULOG at t.rules:15"]
    assert rep.errors == []
    text = render_lint(rep)
    assert "iptables filter: 6 chains (3 user), 10 rules" in text
    assert "t.rules:11: warning: [iptables filter used] rule can never run" in text
    assert text.rstrip().endswith("0 error(s), 3 warning(s), 1 unsupported")


def test_kernel_refusals_in_a_built_ruleset(xt):
    # rulesets built in code can hold what the parser would refuse; lint names it
    rs = Ruleset()
    f = rs.tables["filter"] = Table.new("filter")
    m = rs.tables["mangle"] = Table.new("mangle")
    n = rs.tables["nat"] = Table.new("nat")
    m.chains["side"] = Chain("side", builtin=False)
    f.chains["u"] = Chain("u", builtin=False)
    f.chains["INPUT"].rules = [Rule(IpHeaderMatch(), [], JumpTarget("side")),
                               Rule(IpHeaderMatch(), [], JumpTarget("nowhere")),
                               Rule(IpHeaderMatch(), [], XTestTarget()),
                               Rule(IpHeaderMatch(), [], JumpTarget("u"))]
    f.chains["u"].rules = [Rule(IpHeaderMatch(), [XHookMatch()], JumpTarget("u"))]
    m.chains["OUTPUT"].rules = [Rule(IpHeaderMatch(), [], JumpTarget("side"))]
    m.chains["side"].rules = [Rule(IpHeaderMatch(), [], XTestTarget())]
    n.chains["PREROUTING"].rules = [Rule(IpHeaderMatch(), [], DropTarget())]
    rep = lint(rs)
    kinds = sorted((x.kind, x.table, x.chain) for x in rep.errors)
    assert kinds == [
        ("bad-hook", "filter", "INPUT"),  # XTEST reached from INPUT
        ("bad-hook", "filter", "u"),  # xhook reached from INPUT
        ("bad-hook", "mangle", "side"),  # XTEST reached from OUTPUT
        ("bad-table", "filter", "INPUT"),  # XTEST outside mangle
        ("bad-table", "nat", "PREROUTING"),  # DROP in nat
        ("cross-table-jump", "filter", "INPUT"),
        ("loop", "filter", "u"),
        ("missing-chain", "filter", "INPUT"),
    ]
    assert "xhook match: used from hooks INPUT, but only valid from OUTPUT" in \
        [x.message for x in rep.of_kind("bad-hook")]
    assert all(x.severity == "error" for x in rep.errors)


def test_chain_hooks_and_loops():
    rs = parse_rules("*filter\n:a - [0:0]\n:b - [0:0]\n:c - [0:0]\n-A INPUT -j a\n"
                     "-A OUTPUT -j b\n-A a -j b\n-A c -j a\nCOMMIT\n").v4
    hooks = chain_hooks(rs.tables["filter"])
    assert hooks["a"] == {"INPUT"} and hooks["b"] == {"INPUT", "OUTPUT"}
    assert hooks["c"] == frozenset() and hooks["FORWARD"] == {"FORWARD"}
    assert find_loop(rs.tables["filter"]) is None


def test_clean_ruleset_and_v6_only():
    p = parse_rules("*filter\n-A INPUT -s ::1 -j ACCEPT\nCOMMIT\n")
    rep = lint(p)
    assert [(s.family, s.table, s.rules) for s in rep.tables] == [(6, "filter", 1)]
    assert rep.findings == [] and rep.errors == []
    assert lint(p.v6).tables == rep.tables
