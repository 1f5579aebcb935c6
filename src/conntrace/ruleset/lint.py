"""Static checks of a ruleset: what the kernel would refuse, what can never run, and
everything the model does not support. Returns data; `render_lint` makes text of it.

Also home of the jump-graph helpers the parser uses for the kernel's load-time checks
(mark_source_chains / xt_check_target / xt_check_match in net/ipv4/netfilter/ip_tables.c
and net/netfilter/x_tables.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..errors import UnsupportedItem
from .model import BUILTIN_CHAINS, Chain, Rule, Ruleset, RulesetPair, SourceRef, Table
from .targets.standard import JumpTarget

HOOK_ORDER = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


# --------------------------------------------------------------------------------------
# Jump graph
# --------------------------------------------------------------------------------------

def jump_edges(t: Table) -> Iterable[tuple[str, Rule, str]]:
    """(from chain, rule, to chain) for every -j/-g to a user chain."""
    for ch in t.chains.values():
        for r in ch.rules:
            if isinstance(r.target, JumpTarget):
                yield ch.name, r, r.target.chain


def chain_hooks(t: Table) -> dict[str, frozenset[str]]:
    """For every chain, the built-in chains (hooks) it is reached from: the kernel's
    comefrom mask (mark_source_chains). An unreachable user chain gets the empty set."""
    edges: dict[str, set[str]] = {}
    for a, _r, b in jump_edges(t):
        edges.setdefault(a, set()).add(b)
    out: dict[str, set[str]] = {name: set() for name in t.chains}
    for ch in t.chains.values():
        if not ch.builtin:
            continue
        seen, todo = {ch.name}, [ch.name]
        while todo:
            cur = todo.pop()
            out.setdefault(cur, set()).add(ch.name)
            for nxt in edges.get(cur, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
    return {k: frozenset(v) for k, v in out.items()}


def find_loop(t: Table) -> tuple[list[str], Rule] | None:
    """A jump loop reachable from a built-in chain (the kernel refuses those with ELOOP;
    an unreachable loop loads fine), as (chain names around the loop, closing rule)."""
    edges: dict[str, list[tuple[Rule, str]]] = {}
    for a, r, b in jump_edges(t):
        edges.setdefault(a, []).append((r, b))
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(name: str, path: list[str]) -> tuple[list[str], Rule] | None:
        state[name] = 1
        path = path + [name]
        for r, nxt in edges.get(name, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt], r
            if state.get(nxt) is None:
                hit = visit(nxt, path)
                if hit is not None:
                    return hit
        state[name] = 2
        return None

    for ch in t.chains.values():
        if ch.builtin and ch.name not in state:
            hit = visit(ch.name, [])
            if hit is not None:
                return hit
    return None


def _hooks_text(hooks: Iterable[str]) -> str:
    hs = set(hooks)
    return "/".join(h for h in HOOK_ORDER if h in hs) or "-"


def hook_violations(t: Table) -> list[tuple[Chain, Rule, str]]:
    """Rules whose match or target the kernel refuses in a hook that reaches them, as
    (chain, rule, message). Matches may explain themselves (MatchExt.hook_error)."""
    hooks = chain_hooks(t)
    out = []
    for ch in t.chains.values():
        reached = hooks.get(ch.name, frozenset())
        if not reached:
            continue
        for r in ch.rules:
            for e in [*r.matches, r.target]:
                if e is None:
                    continue
                msg = None
                if hasattr(e, "hook_error"):
                    msg = e.hook_error(reached)
                else:
                    valid = getattr(e, "valid_hooks", None)
                    if valid is not None and not reached <= valid:
                        msg = (f"{e.name} target: used from hooks {_hooks_text(reached)}, but "
                               f"only valid from {_hooks_text(valid)}")
                if msg:
                    out.append((ch, r, msg))
    return out


def _is_unconditional(r: Rule) -> bool:
    ip = r.ip
    return (not r.matches and ip.src is None and ip.dst is None and ip.in_iface is None
            and ip.out_iface is None and not ip.proto and ip.fragment is None)


def _is_terminal(r: Rule) -> bool:
    """Whether the rule's target always ends this chain's traversal. A jump does not (the
    chain may return); -g does; a target we do not model is not assumed to."""
    t = r.target
    return t is not None and bool(getattr(t, "terminal", False))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One lint result. severity: "error" (the kernel refuses the ruleset), "warning"
    (never runs / never used), "unsupported" (the model does not implement it)."""

    kind: str  # unused-chain, unreachable-rule, missing-chain, cross-table-jump,
    #            bad-table, bad-hook, loop, unsupported
    severity: str
    family: int
    table: str
    chain: str | None
    message: str
    source: SourceRef | None = None

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        fam = "ip6tables" if self.family == 6 else "iptables"
        chain = f" {self.chain}" if self.chain else ""
        return f"{where}{self.severity}: [{fam} {self.table}{chain}] {self.message}"


@dataclass(frozen=True)
class TableStats:
    family: int
    table: str
    chains: int
    user_chains: int
    rules: int
    rules_per_chain: tuple[tuple[str, int], ...]


@dataclass
class LintReport:
    tables: list[TableStats] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unsupported: list[UnsupportedItem] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def rule_count(self) -> int:
        return sum(t.rules for t in self.tables)


def lint(rs: RulesetPair | Ruleset) -> LintReport:
    report = LintReport()
    pair = rs if isinstance(rs, RulesetPair) else RulesetPair(v4=rs) if rs.family == 4 \
        else RulesetPair(v4=Ruleset(family=4), v6=rs)
    for ruleset in (pair.v4, pair.v6):
        if ruleset is None:
            continue
        for t in ruleset.tables.values():
            _lint_table(ruleset, t, report)
        report.unsupported += ruleset.unsupported
        for t, c, r in ruleset.rules():
            for item in r.unsupported:
                src = SourceRef(item.file, item.line) if item.file else r.source
                detail = f" ({item.detail})" if item.detail else ""
                report.findings.append(Finding(
                    "unsupported", "unsupported", ruleset.family, t.name, c.name,
                    f"{item.kind} {item.name} is not modelled{detail}", src))
    return report


def _lint_table(rs: Ruleset, t: Table, report: LintReport) -> None:
    fam = rs.family
    chains = list(t.chains.values())
    report.tables.append(TableStats(
        fam, t.name, len(chains), sum(1 for c in chains if not c.builtin),
        sum(len(c.rules) for c in chains), tuple((c.name, len(c.rules)) for c in chains)))

    def add(kind: str, sev: str, chain: str | None, msg: str, src: SourceRef | None) -> None:
        report.findings.append(Finding(kind, sev, fam, t.name, chain, msg, src))

    # jumps: missing chains, chains of another table
    referenced: set[str] = set()
    for a, r, b in jump_edges(t):
        referenced.add(b)
        target = t.chains.get(b)
        if target is not None and target.builtin:
            add("missing-chain", "error", a, f"jump to built-in chain {b}", r.source)
        elif target is None:
            other = [n for n, o in rs.tables.items() if n != t.name and b in o.chains]
            if other:
                add("cross-table-jump", "error", a, f"jump to chain {b}, which exists only in "
                    f"table {'/'.join(other)}: a jump cannot leave its table", r.source)
            else:
                add("missing-chain", "error", a, f"jump to chain {b}, which does not exist",
                    r.source)
    for c in chains:
        if not c.builtin and c.name not in referenced:
            add("unused-chain", "warning", c.name,
                f"user chain {c.name} is never jumped to ({len(c.rules)} rule(s) never run)",
                c.source)
    # rules after an unconditional terminal rule
    for c in chains:
        for k, r in enumerate(c.rules):
            if _is_unconditional(r) and _is_terminal(r) and k + 1 < len(c.rules):
                what = "-g " + r.target.chain if isinstance(r.target, JumpTarget) else \
                    getattr(r.target, "name", "?")
                for later in c.rules[k + 1:]:
                    add("unreachable-rule", "warning", c.name,
                        f"rule can never run: rule {k + 1} of {c.name} ({what}, no match) "
                        "ends the chain before it", later.source)
                break
    # what the kernel refuses
    for c in chains:
        for r in c.rules:
            for e in [*r.matches, r.target]:
                tables = getattr(e, "valid_tables", None) if e is not None else None
                if tables is not None and t.name not in tables:
                    kind = "match" if e in r.matches else "target"
                    add("bad-table", "error", c.name,
                        f"{e.name} {kind}: only valid in table {'/'.join(sorted(tables))}, "
                        f"not {t.name}", r.source)
    for c, r, msg in hook_violations(t):
        add("bad-hook", "error", c.name, msg, r.source)
    loop = find_loop(t)
    if loop is not None:
        names, r = loop
        add("loop", "error", names[-2] if len(names) > 1 else None,
            f"chain loop {' -> '.join(names)}: the kernel refuses it", r.source)


def render_lint(report: LintReport) -> str:
    lines = []
    for s in report.tables:
        fam = "ip6tables" if s.family == 6 else "iptables"
        lines.append(f"{fam} {s.table}: {s.chains} chains ({s.user_chains} user), {s.rules} rules")
    order = {"error": 0, "warning": 1, "unsupported": 2}
    for f in sorted(report.findings, key=lambda f: order.get(f.severity, 3)):
        lines.append(str(f))
    n_err = len(report.errors)
    n_warn = sum(1 for f in report.findings if f.severity == "warning")
    lines.append(f"{n_err} error(s), {n_warn} warning(s), {len(report.unsupported)} unsupported")
    return "\n".join(lines) + "\n"


__all__ = ["Finding", "LintReport", "TableStats", "lint", "render_lint", "jump_edges",
           "chain_hooks", "find_loop", "hook_violations", "BUILTIN_CHAINS"]
