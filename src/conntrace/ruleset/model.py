"""The ruleset data model: tables of chains of rules, as iptables-save describes them.

Rules are parsed once into these objects; evaluation lives in the extensions
(`ruleset/matches`, `ruleset/targets`) and the traversal in `netfilter/`.
Per-rule runtime state (limit buckets, nth counters) is kept outside the model so a
ruleset can be shared, compared and round-tripped as plain data.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from ..errors import UnsupportedItem

if TYPE_CHECKING:
    from .ext import MatchExt, TargetExt

# Built-in chains per table (net/ipv4/netfilter/iptable_*.c valid_hooks)
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLE_NAMES = tuple(BUILTIN_CHAINS)


@dataclass(frozen=True)
class SourceRef:
    """Where a rule (or chain, or policy) was written: traces and errors point here."""

    file: str
    line: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Counters:
    packets: int = 0
    bytes: int = 0

    def add(self, length: int) -> None:
        self.packets += 1
        self.bytes += length

    def __str__(self) -> str:
        return f"[{self.packets}:{self.bytes}]"


@dataclass(frozen=True)
class IfaceMatch:
    """`-i`/`-o` value: exact name, or a prefix when written with a trailing `+`."""

    name: str
    inverted: bool = False

    @property
    def wildcard(self) -> bool:
        return self.name.endswith("+")

    def matches(self, iface: str | None) -> bool:
        # An absent device (e.g. -o in PREROUTING) compares as the empty name, like the kernel.
        dev = iface or ""
        if self.wildcard:
            hit = dev.startswith(self.name[:-1])
        else:
            hit = dev == self.name
        return hit != self.inverted


@dataclass(frozen=True)
class AddrMatch:
    """`-s`/`-d` value: a network, possibly inverted. Several comma-separated values make
    several rules in iptables, so one rule holds exactly one network."""

    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    inverted: bool = False

    def matches(self, addr) -> bool:
        return (addr in self.net) != self.inverted


@dataclass(frozen=True)
class IpHeaderMatch:
    """The part of every rule that is not an extension: -s -d -i -o -p -f (struct ipt_ip)."""

    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    in_iface: IfaceMatch | None = None
    out_iface: IfaceMatch | None = None
    proto: int | None = None  # None or 0: any protocol
    proto_inverted: bool = False
    proto_name: str | None = None  # as written (tcp/6), kept for rendering
    fragment: bool | None = None  # True: -f, False: ! -f, None: not given


@dataclass
class Rule:
    ip: IpHeaderMatch
    matches: list["MatchExt"]
    target: "TargetExt | None"
    counters: Counters = field(default_factory=Counters)
    source: SourceRef | None = None
    # unsupported constructs found in this rule (a rule with any is "uncertain")
    unsupported: list[UnsupportedItem] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return not self.unsupported

    def same_rule(self, other: "Rule") -> bool:
        """Equality of what the rule does (used by -D by specification and round-trip tests)."""
        return (self.ip == other.ip and self.matches == other.matches
                and self.target == other.target)


@dataclass
class Chain:
    name: str
    builtin: bool
    policy: str | None = None  # ACCEPT/DROP for built-in chains, None for user chains
    policy_counters: Counters = field(default_factory=Counters)
    rules: list[Rule] = field(default_factory=list)
    source: SourceRef | None = None
    # iptables-nft: a built-in chain exists (has a hook, counts its policy) only once it is
    # declared, given a rule or a policy; the parser clears this for the others
    hooked: bool = True


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    source: SourceRef | None = None

    @classmethod
    def new(cls, name: str, source: SourceRef | None = None) -> "Table":
        t = cls(name=name, source=source)
        for c in BUILTIN_CHAINS[name]:
            t.chains[c] = Chain(name=c, builtin=True, policy="ACCEPT")
        return t

    def chain(self, name: str) -> Chain | None:
        return self.chains.get(name)


@dataclass
class Ruleset:
    family: int = 4  # 4: iptables, 6: ip6tables
    tables: dict[str, Table] = field(default_factory=dict)
    # everything unsupported, in file order (also attached to the rules themselves)
    unsupported: list[UnsupportedItem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def ensure_table(self, name: str, source: SourceRef | None = None) -> Table:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = Table.new(name, source)
        return t

    def rules(self) -> Iterator[tuple[Table, Chain, Rule]]:
        for t in self.tables.values():
            for c in t.chains.values():
                for r in c.rules:
                    yield t, c, r

    @property
    def rule_count(self) -> int:
        return sum(1 for _ in self.rules())


@dataclass
class RulesetPair:
    """What one iptables-save/restore input can hold: an IPv4 and an IPv6 ruleset."""

    v4: Ruleset
    v6: Ruleset | None = None
    # Remarks about the input that are not errors ("FILE:LINE: bare command line skipped")
    notes: list[str] = field(default_factory=list)
