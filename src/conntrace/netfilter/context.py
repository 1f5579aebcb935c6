"""What a match or target sees while a packet is evaluated against one rule."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..packet import Packet
from .hooks import Hook

if TYPE_CHECKING:
    from ..host.host import Host
    from ..ruleset.model import Rule


@dataclass
class EvalContext:
    pkt: Packet
    hook: Hook
    table: str
    host: "Host"
    now: float
    rng: random.Random
    chain: str = ""
    rule: "Rule | None" = None
    # Side effects a rule produced, in order: LOG lines, generated packets (REJECT),
    # NAT bindings... The traversal attaches them to the trace step of the rule.
    effects: list[Any] = field(default_factory=list)
    # Every effect of this packet's walk so far, for the packet path to act on.
    pending_effects: list[Any] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    # Set by the NAT hook while the nat table runs: NAT targets call it to set the binding.
    nat_setup: Callable[..., Any] | None = None
    cpu: int = 0

    # conntrack attachment, as the kernel's nf_ct_get(skb, &ctinfo) returns it
    @property
    def ct(self):
        return self.pkt.meta.ct

    @property
    def ctinfo(self):
        return self.pkt.meta.ctinfo

    @property
    def in_iface(self) -> str | None:
        return self.pkt.meta.in_iface

    @property
    def out_iface(self) -> str | None:
        return self.pkt.meta.out_iface

    def mark_uncertain(self, why: str) -> None:
        where = f" at {self.rule.source}" if self.rule is not None and self.rule.source else ""
        self.uncertain.append(why + where)

    def emit(self, effect: Any) -> None:
        self.effects.append(effect)

    def rule_state(self, ext: Any, factory: Callable[[], Any]) -> Any:
        """Per-rule runtime state (token buckets, nth counters). It lives in the host, keyed
        by the rule instance, so reloading a ruleset starts fresh like the kernel does."""
        return self.host.ext_state.rule_state(self.rule, ext, factory)
