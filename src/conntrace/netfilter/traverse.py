"""Chain traversal of one table for one hook: the semantics of ipt_do_table
(net/ipv4/netfilter/ip_tables.c).

- Rules are tried in order; the first non-matching match ends the rule (short-circuit), so
  stateful matches after it do not advance.
- A matching rule's counters are bumped before its target runs.
- A non-terminating target (CONTINUE) goes on with the next rule; a jump pushes a return
  point; a goto does not; RETURN (or the end of a user chain) pops; RETURN or the end of a
  built-in chain applies its policy.
- ACCEPT ends this table for this hook; DROP/QUEUE/STOLEN end the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..observe.trace import ChainReturn, PolicyEval, RuleEval, TableVerdict
from ..packet import Packet
from .verdict import ACCEPT, DROP, Verdict, VerdictKind

if TYPE_CHECKING:
    from ..observe.trace import PacketTrace
    from ..ruleset.model import IpHeaderMatch, Rule, Table
    from .context import EvalContext

# XT_MAX_JUMP-style guard: iptables refuses loops at load time; this catches model bugs.
MAX_JUMP_DEPTH = 256


class TraversalError(RuntimeError):
    pass


def ip_header_matches(ip: "IpHeaderMatch", pkt: Packet) -> bool:
    """ip_packet_match: addresses, devices, protocol, fragment flag."""
    if ip.src is not None and not ip.src.matches(pkt.src):
        return False
    if ip.dst is not None and not ip.dst.matches(pkt.dst):
        return False
    if ip.in_iface is not None and not ip.in_iface.matches(pkt.meta.in_iface):
        return False
    if ip.out_iface is not None and not ip.out_iface.matches(pkt.meta.out_iface):
        return False
    if ip.proto:
        if (pkt.proto == ip.proto) == ip.proto_inverted:
            return False
    if ip.fragment is not None:
        if pkt.is_fragment != ip.fragment:
            return False
    return True


def rule_text(table: str, chain: str, rule: "Rule") -> str:
    """The rule as iptables-save would print it (falls back to the text as written)."""
    try:
        from ..ruleset.writer import render_rule

        return render_rule(chain, rule)
    except Exception:  # the writer refuses something odd: show what the user wrote
        return rule.source.text if rule.source else f"-A {chain} ..."


def run_table(table: "Table", ctx: "EvalContext", trace: "PacketTrace | None",
              verbose: bool = True) -> Verdict:
    """Run the built-in chain of `ctx.hook` in `table`. Returns ACCEPT, DROP, QUEUE or STOLEN."""
    hook_chain = ctx.hook.value
    builtin = table.chains.get(hook_chain)
    if builtin is None or not builtin.hooked:  # iptables-nft: a chain never created has no hook
        return ACCEPT
    pkt = ctx.pkt
    length = pkt.total_len
    stack: list[tuple[str, int]] = []
    chain_name = hook_chain
    rules = builtin.rules
    i = 0
    ctx.table = table.name
    while True:
        if i >= len(rules):
            if stack:
                ret_chain, i = stack.pop()
                if trace is not None:
                    trace.add(ChainReturn(table.name, chain_name, ret_chain))
                chain_name = ret_chain
                rules = table.chains[chain_name].rules
                continue
            return _policy(table, builtin, length, trace, ctx)
        rule = rules[i]
        ctx.chain = chain_name
        ctx.rule = rule
        n_uncertain = len(ctx.uncertain)
        matched = ip_header_matches(rule.ip, pkt) and all(m.matches(ctx) for m in rule.matches)
        new_uncertain = ctx.uncertain[n_uncertain:]
        if not matched:
            if trace is not None and (verbose or new_uncertain):
                trace.add(RuleEval(table.name, chain_name, i + 1, rule_text(table.name, chain_name, rule),
                                   str(rule.source) if rule.source else None, False,
                                   uncertain=list(new_uncertain)))
            i += 1
            continue
        rule.counters.add(length)
        if rule.target is None:
            if trace is not None:
                trace.add(RuleEval(table.name, chain_name, i + 1, rule_text(table.name, chain_name, rule),
                                   str(rule.source) if rule.source else None, True, "CONTINUE",
                                   uncertain=list(new_uncertain)))
            i += 1
            continue
        before = pkt.header_fields()
        ctx.effects = []
        record = None
        if trace is not None:
            # recorded before the target runs, so what the target records (NAT bindings)
            # follows the rule in the trace
            record = RuleEval(table.name, chain_name, i + 1, rule_text(table.name, chain_name, rule),
                              str(rule.source) if rule.source else None, True)
            trace.add(record)
        verdict = rule.target.apply(ctx)
        if record is not None:
            after = pkt.header_fields()
            record.verdict = str(verdict)
            record.changes = [{"field": k, "old": before.get(k), "new": after.get(k)}
                              for k in after if before.get(k) != after.get(k)]
            record.effects = [_effect_text(e) for e in ctx.effects]
            record.uncertain = list(ctx.uncertain[n_uncertain:])
        _collect_effects(ctx, trace)
        k = verdict.kind
        if k is VerdictKind.CONTINUE:
            i += 1
        elif k is VerdictKind.JUMP or k is VerdictKind.GOTO:
            target_chain = table.chains.get(verdict.chain or "")
            if target_chain is None:
                raise TraversalError(f"jump to missing chain {verdict.chain} in {table.name}")
            if k is VerdictKind.JUMP:
                if len(stack) >= MAX_JUMP_DEPTH:
                    raise TraversalError(f"jump depth over {MAX_JUMP_DEPTH} in {table.name}")
                stack.append((chain_name, i + 1))
            chain_name = target_chain.name
            rules = target_chain.rules
            i = 0
        elif k is VerdictKind.RETURN:
            if stack:
                ret_chain, i = stack.pop()
                if trace is not None:
                    trace.add(ChainReturn(table.name, chain_name, ret_chain))
                chain_name = ret_chain
                rules = table.chains[chain_name].rules
            else:
                return _policy(table, builtin, length, trace, ctx)
        else:
            if trace is not None:
                trace.add(TableVerdict(ctx.hook.value, table.name, k.value))
            return verdict


def _policy(table, builtin, length: int, trace, ctx) -> Verdict:
    builtin.policy_counters.add(length)
    verdict = DROP if builtin.policy == "DROP" else ACCEPT
    if trace is not None:
        trace.add(PolicyEval(table.name, builtin.name, verdict.kind.value))
    return verdict


def _effect_text(e) -> str:
    text = getattr(e, "text", None)
    if text:
        return text
    reason = getattr(e, "reason", None)
    if reason:
        return reason
    return type(e).__name__


def _collect_effects(ctx, trace) -> None:
    """Keep effects the packet path must act on (generated packets, log lines)."""
    ctx.pending_effects.extend(ctx.effects)
    if trace is not None:
        for e in ctx.effects:
            if type(e).__name__ == "LogLine":
                trace.log_lines.append(e.text)
