"""The trace model: what happened to one packet, step by step, as plain data.

The engine appends these records; renderers (text, JSON, xtables-monitor style, HTML later)
and the "why" explainer read them. Every record has a `kind` for JSON consumers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any


@dataclass
class HookEnter:
    hook: str
    in_iface: str | None
    out_iface: str | None
    packet: str  # Packet.describe() at hook entry
    kind: str = "hook"


@dataclass
class RuleEval:
    table: str
    chain: str
    index: int  # 1-based position in the chain, like `iptables -L --line-numbers`
    text: str  # the rule as iptables-save renders it
    source: str | None  # FILE:LINE where it was written
    matched: bool
    verdict: str | None = None  # the target's verdict when matched ("CONTINUE", "ACCEPT", "JUMP X")
    changes: list[dict[str, Any]] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    kind: str = "rule"


@dataclass
class PolicyEval:
    table: str
    chain: str
    verdict: str
    kind: str = "policy"


@dataclass
class ChainReturn:
    table: str
    chain: str  # the chain that returned (end reached or RETURN)
    to_chain: str | None
    kind: str = "return"


@dataclass
class TableVerdict:
    hook: str
    table: str
    verdict: str
    kind: str = "table"


@dataclass
class ConntrackStep:
    action: str  # "new", "found", "invalid", "untracked", "skipped", "off", "repeat", "related"
    entry_id: int | None = None
    ctinfo: str | None = None
    ctstate: str | None = None  # as -m conntrack --ctstate sees it
    tcp_state: str | None = None
    orig: str | None = None
    reply: str | None = None
    detail: str = ""
    kind: str = "conntrack"


@dataclass
class NatStep:
    hook: str
    manip: str  # "src" | "dst"
    action: str  # "chain" (nat table consulted), "binding", "null-binding", "rewrite", "none"
    detail: str = ""
    before: str | None = None
    after: str | None = None
    kind: str = "nat"


@dataclass
class ConfirmStep:
    entry_id: int | None
    result: str  # "inserted", "already-confirmed", "clash-merged", "clash-reply-only", "dropped"
    detail: str = ""
    kind: str = "confirm"


@dataclass
class RoutingStep:
    decision: str  # "local", "forward", "output", "broadcast", "unreachable", "blackhole",
    #                "forwarding-disabled", "reroute"
    dev: str | None = None
    gateway: str | None = None
    src: str | None = None
    detail: str = ""
    kind: str = "routing"


@dataclass
class NoteStep:
    text: str
    kind: str = "note"


@dataclass
class Fate:
    """How the packet's walk ended on this host."""

    result: str  # "delivered", "sent", "forwarded", "dropped", "rejected", "stolen", "queued",
    #              "looped", "no-route"
    where: str = ""  # e.g. "filter/FORWARD rule 3 (rules.txt:12)" or "INPUT -> socket 10.0.2.2:80"
    reason: str = ""
    out_iface: str | None = None
    kind: str = "fate"


@dataclass
class PacketTrace:
    packet_id: int
    host: str
    label: str
    packet: str  # describe() of the packet as it entered
    cpu: int = 0
    time: float = 0.0
    steps: list[Any] = field(default_factory=list)
    fate: Fate | None = None
    uncertain: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    final_packet: str | None = None
    # packets this one caused (REJECT replies), by packet id
    caused: list[int] = field(default_factory=list)
    parent: int | None = None

    def add(self, step: Any) -> None:
        self.steps.append(step)

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self)


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
