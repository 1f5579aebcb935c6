"""Runtime state that matches and targets keep in a network namespace.

Named objects (ipsets, `recent` lists, nfacct counters) are per-netns and survive ruleset
reloads, as in the kernel; per-rule state (limit buckets, nth counters) does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class NfacctCounter:
    name: str
    packets: int = 0
    bytes: int = 0


@dataclass
class ExtState:
    ipsets: dict[str, Any] = field(default_factory=dict)  # name -> ruleset.ipset.IpSet
    recent: dict[str, Any] = field(default_factory=dict)  # list name -> recent table
    nfacct: dict[str, NfacctCounter] = field(default_factory=dict)
    # hashlimit tables by (family, --hashlimit-name): shared by every rule naming them
    hashlimit: dict[Any, Any] = field(default_factory=dict)
    # ICMP error rate limiting (inet_peer tokens, global credit): targets/icmp_send.py
    icmp_rate: Any = None
    _rule_state: dict[tuple[int, int], tuple[Any, Any, Any]] = field(default_factory=dict)

    def rule_state(self, rule: Any, ext: Any, factory: Callable[[], Any]) -> Any:
        key = (id(rule), id(ext))
        hit = self._rule_state.get(key)
        if hit is None or hit[0] is not rule or hit[1] is not ext:
            # keep rule and ext alive so their ids cannot be reused by other objects
            hit = (rule, ext, factory())
            self._rule_state[key] = hit
        return hit[2]

    def reset_rule_state(self) -> None:
        self._rule_state.clear()
