"""The standard target: ACCEPT/DROP/RETURN/QUEUE verdicts and jumps to user chains."""

import pytest

from conntrace.netfilter.verdict import VerdictKind
from conntrace.ruleset import ext
from conntrace.ruleset.ext import ExtParseError, Opt, ParseContext
from conntrace.ruleset.targets.standard import (AcceptTarget, DropTarget, JumpTarget,
                                                QueueTarget, ReturnTarget)

PCTX = ParseContext(family=4, table="filter", chain="INPUT", proto=None)


@pytest.mark.parametrize("name,cls,kind,terminal", [
    ("ACCEPT", AcceptTarget, VerdictKind.ACCEPT, True),
    ("DROP", DropTarget, VerdictKind.DROP, True),
    ("RETURN", ReturnTarget, VerdictKind.RETURN, True),
    ("QUEUE", QueueTarget, VerdictKind.QUEUE, True),
])
def test_verdicts(name, cls, kind, terminal):
    ext.load_all()
    assert ext.TARGETS[name] is cls
    t = cls.parse([], PCTX)
    assert t == cls() and t.render() == []
    assert t.apply(None).kind is kind
    assert t.terminal is terminal
    with pytest.raises(ExtParseError):
        cls.parse([Opt("--foo", ("1",))], PCTX)


def test_drop_not_in_nat():
    assert "nat" not in DropTarget.valid_tables
    assert AcceptTarget.valid_tables is None


def test_jump_and_goto():
    j, g = JumpTarget("web"), JumpTarget("web", goto=True)
    assert j.render() == ["-j", "web"] and g.render() == ["-g", "web"]
    assert (j.apply(None).kind, j.apply(None).chain) == (VerdictKind.JUMP, "web")
    assert (g.apply(None).kind, g.apply(None).chain) == (VerdictKind.GOTO, "web")
    assert not j.terminal and g.terminal
    assert j != g and j == JumpTarget("web", False)
    assert "<jump>" not in ext.TARGETS
