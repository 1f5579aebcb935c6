"""Test-only extensions (names iptables does not use) and ruleset comparison helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from conntrace.ruleset import ext
from conntrace.ruleset.ext import (ExtParseError, ExtUnsupported, MatchExt, Opt, OptionSpec,
                                   ParseContext, SaveString, TargetExt)
from conntrace.ruleset.model import Ruleset


@dataclass(frozen=True)
class XTestMatch(MatchExt):
    """`-m xtest [!] --xval V --xflag --xpair A B --xtext T`; --xunmodelled is known but
    not modelled; `--xval bad` is refused."""

    val: str | None = None
    val_inv: bool = False
    flag: bool = False
    pair: tuple[str, ...] | None = None
    text: str | None = None

    name: ClassVar[str] = "xtest"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--xval", 1, invertible=True, aliases=("--xvalue-alias",)),
        OptionSpec("--xflag", 0),
        OptionSpec("--xpair", 2),
        OptionSpec("--xtext", 1),
        OptionSpec("--xunmodelled", 1),
    )

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "XTestMatch":
        kw: dict = {}
        for o in opts:
            if o.name == "--xunmodelled":
                raise ExtUnsupported("--xunmodelled", "test option")
            if o.name == "--xval":
                if o.args[0] == "bad":
                    raise ExtParseError("--xval: expected a good value, got 'bad'")
                kw["val"], kw["val_inv"] = o.args[0], o.inverted
            elif o.name == "--xflag":
                kw["flag"] = True
            elif o.name == "--xpair":
                kw["pair"] = o.args
            elif o.name == "--xtext":
                kw["text"] = o.args[0]
        return cls(**kw)

    def render(self) -> list[str]:
        out: list[str] = []
        if self.val is not None:
            out += (["!"] if self.val_inv else []) + ["--xval", self.val]
        if self.flag:
            out.append("--xflag")
        if self.pair is not None:
            out += ["--xpair", *self.pair]
        if self.text is not None:
            out += ["--xtext", SaveString(self.text)]
        return out

    def matches(self, ctx) -> bool:  # pragma: no cover - not evaluated here
        return True


@dataclass(frozen=True)
class XHookMatch(MatchExt):
    """A match the kernel would only allow from OUTPUT."""

    name: ClassVar[str] = "xhook"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"OUTPUT"})

    @classmethod
    def parse(cls, opts, pctx):
        return cls()

    def render(self) -> list[str]:
        return []

    def matches(self, ctx) -> bool:  # pragma: no cover
        return True


@dataclass(frozen=True)
class XTestTarget(TargetExt):
    """`-j XTEST [--xto V]`: terminal, only in mangle PREROUTING."""

    to: str | None = None

    name: ClassVar[str] = "XTEST"
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--xto-destination", 1),)
    terminal: ClassVar[bool] = True
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING"})

    @classmethod
    def parse(cls, opts, pctx):
        return cls(opts[0].args[0] if opts else None)

    def render(self) -> list[str]:
        return ["--xto-destination", self.to] if self.to else []

    def apply(self, ctx):  # pragma: no cover
        raise NotImplementedError


def assert_same_ruleset(a: Ruleset, b: Ruleset, counters: bool = True) -> None:
    """Equal model: tables, chains, policies, counters, rules (Rule.same_rule)."""
    assert sorted(a.tables) == sorted(b.tables)
    for name, ta in a.tables.items():
        tb = b.tables[name]
        assert sorted(ta.chains) == sorted(tb.chains), name
        for cname, ca in ta.chains.items():
            cb = tb.chains[cname]
            assert (ca.builtin, ca.policy) == (cb.builtin, cb.policy), cname
            if counters:
                assert ca.policy_counters == cb.policy_counters, cname
            assert len(ca.rules) == len(cb.rules), cname
            for ra, rb in zip(ca.rules, cb.rules):
                assert ra.same_rule(rb), (ra, rb)
                if counters:
                    assert ra.counters == rb.counters
                assert [(i.kind, i.name) for i in ra.unsupported] == \
                    [(i.kind, i.name) for i in rb.unsupported]
