"""Write a Ruleset back as iptables-save text or as an `iptables -S` listing.

Canonical order, as iptables-nft 1.8.9 prints it (iptables/xtables-save.c, xshared.c
save_rule_details, nft-ipv4.c):
- tables: mangle, security, raw, filter, nat (the nft_table_type order; iptables-legacy
  lists them in module registration order, which is not stable);
- chains: built-in chains in hook order, then user chains sorted by name (strcmp);
- rule: `-s -d -i -o -p -f`, then each match as `-m NAME opts`, then `-j`/`-g`;
  addresses always `addr/len` (a non-CIDR IPv4 mask as a dotted mask), inversions as `! -x`.
"""

from __future__ import annotations

import ipaddress

from .ext import MatchExt, SaveString, TargetExt, UnsupportedMatch, UnsupportedTarget
from .model import BUILTIN_CHAINS, AddrMatch, Chain, IpHeaderMatch, Rule, Ruleset, Table
from .targets.standard import JumpTarget

SAVE_TABLE_ORDER = ("mangle", "security", "raw", "filter", "nat")

# xtables_save_string: these characters need no quotes
_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value: str) -> str:
    """xtables_save_string (libxtables/xtables.c): bare if [A-Za-z0-9_-]+, else double
    quoted with `"`, `\\` and `'` escaped by a backslash."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    out = ['"']
    for c in value:
        if c in "\"\\'":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def quote_token(tok: str) -> str:
    """A token as it must be written to read back as one word: SaveString values as
    iptables-save prints them, anything else quoted only when the tokenizer needs it."""
    if isinstance(tok, SaveString):
        return save_string(tok)
    if tok and not any(c in " \t\n\"" for c in tok):
        return tok
    return '"' + tok.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inet6_ntop(addr: ipaddress.IPv6Address) -> str:
    """glibc inet_ntop: like Python's compressed form, but with the embedded IPv4 dotted
    quad for IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) addresses."""
    words = [(int(addr) >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    v4 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if words[:6] == [0] * 6 and words[6] != 0:
        return f"::{v4}"
    if words[:5] == [0] * 5 and words[5] == 0xFFFF:
        return f"::ffff:{v4}"
    return addr.compressed


def _addr(a: AddrMatch) -> str:
    net = a.net
    if net.version == 6:
        return f"{inet6_ntop(net.network_address)}/{net.prefixlen}"
    return f"{net.network_address}/{net.prefixlen}"


def header_tokens(ip: IpHeaderMatch) -> list[str]:
    out: list[str] = []
    for letter, a in (("s", ip.src), ("d", ip.dst)):
        if a is not None:
            out += (["!"] if a.inverted else []) + [f"-{letter}", _addr(a)]
    for letter, i in (("i", ip.in_iface), ("o", ip.out_iface)):
        if i is not None and (i.name != "+" or i.inverted):
            out += (["!"] if i.inverted else []) + [f"-{letter}", i.name]
    if ip.proto:
        from .iptables_save import proto_save_name
        out += (["!"] if ip.proto_inverted else []) + ["-p", proto_save_name(ip.proto)]
    if ip.fragment is not None:
        out += ([] if ip.fragment else ["!"]) + ["-f"]
    return out


def match_tokens(m: MatchExt) -> list[str]:
    if isinstance(m, UnsupportedMatch):
        if m.name_.startswith("-"):  # a header option we keep verbatim (non-CIDR mask)
            return list(m.tokens)
        return ["-m", m.name_, *m.tokens]
    return ["-m", m.name, *m.render()]


def target_tokens(t: TargetExt | None) -> list[str]:
    if t is None:
        return []
    if isinstance(t, JumpTarget):
        return t.render()
    if isinstance(t, UnsupportedTarget):
        return ["-j", t.name_, *t.tokens]
    return ["-j", t.name, *t.render()]


def rule_tokens(rule: Rule, list_counters: bool = False) -> list[str]:
    """The words after `-A CHAIN`, in iptables-save order; `iptables -S -v` puts
    `-c packets bytes` between the matches and the target (print_rule4)."""
    out = header_tokens(rule.ip)
    for m in rule.matches:
        out += match_tokens(m)
    if list_counters:
        out += ["-c", str(rule.counters.packets), str(rule.counters.bytes)]
    return out + target_tokens(rule.target)


def render_rule(chain: str, rule: Rule, counters: bool = False,
                list_counters: bool = False) -> str:
    """One `-A CHAIN ...` line: with `counters`, iptables-save -c's `[p:b] ` prefix; with
    `list_counters`, iptables -S -v's `-c p b`."""
    words = ["-A", chain, *rule_tokens(rule, list_counters)]
    text = " ".join(quote_token(w) for w in words)
    if counters:
        return f"[{rule.counters.packets}:{rule.counters.bytes}] {text}"
    return text


def chain_order(table: Table) -> list[Chain]:
    builtins = [table.chains[c] for c in BUILTIN_CHAINS.get(table.name, ())
                if c in table.chains]
    users = sorted((c for c in table.chains.values() if not c.builtin), key=lambda c: c.name)
    extra = [c for c in table.chains.values() if c.builtin and c not in builtins]
    return builtins + extra + users


def table_order(rs: Ruleset) -> list[Table]:
    known = [rs.tables[n] for n in SAVE_TABLE_ORDER if n in rs.tables]
    return known + [t for n, t in rs.tables.items() if n not in SAVE_TABLE_ORDER]


def to_save(rs: Ruleset, counters: bool = False) -> str:
    """iptables-save text for every table (`iptables-save`, or `iptables-save -c` when
    counters). Without counters the policy counters print as [0:0] like iptables-nft."""
    lines: list[str] = []
    for t in table_order(rs):
        lines.append(f"*{t.name}")
        chains = chain_order(t)
        for c in chains:
            if c.builtin:
                pc = c.policy_counters if counters else None
                cnt = f"[{pc.packets}:{pc.bytes}]" if pc is not None else "[0:0]"
                lines.append(f":{c.name} {c.policy or 'ACCEPT'} {cnt}")
            else:
                lines.append(f":{c.name} - [0:0]")
        for c in chains:
            for r in c.rules:
                lines.append(render_rule(c.name, r, counters))
        lines.append("COMMIT")
    return "\n".join(lines) + ("\n" if lines else "")


def to_list_rules(rs: Ruleset, table: str = "filter", counters: bool = False) -> str:
    """`iptables -t TABLE -S` (with `-v`, counters as `-c p b`). A table the ruleset does
    not hold lists as the kernel shows a fresh one: built-in chains with policy ACCEPT."""
    t = rs.tables.get(table) or Table.new(table)
    lines: list[str] = []
    chains = chain_order(t)
    for c in chains:
        if c.builtin:
            extra = f" -c {c.policy_counters.packets} {c.policy_counters.bytes}" if counters else ""
            lines.append(f"-P {c.name} {c.policy or 'ACCEPT'}{extra}")
        else:
            lines.append(f"-N {c.name}")
    for c in chains:
        for r in c.rules:
            lines.append(render_rule(c.name, r, list_counters=counters))
    return "\n".join(lines) + "\n"
