"""What running a scenario produced, in one shape for the model and for the real kernel.

`world/` (the model) and `kernel/` (network namespaces) both return a `RunOutcome`;
`conntrace verify` diffs two of them (scenario/compare.py) under explicit tolerances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ServerSaw:
    """One connection or datagram as the receiving socket saw it (getpeername/recvfrom)."""

    host: str
    proto: str  # "tcp" | "udp"
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int


@dataclass
class StepOutcome:
    index: int  # 1-based position in the timeline (sorted by `at`), as "step 1" in reports
    kind: str
    host: str | None
    # tcp_connect: "connected" | "refused" | "timeout" | "unreachable"
    # udp / ping: "reply" (every datagram answered) | "partial" | "no-reply" | "unreachable"
    # packet / replay / rules / sysctl / conntrack_flush: "done"
    result: str
    replies: int = 0  # udp/ping: answers received
    sent: int = 0
    # the client's socket address after connect/sendto (getsockname); for ping, local_port
    # holds the ICMP echo identifier (conntrack's "port" for ICMP)
    local_addr: str | None = None
    local_port: int | None = None
    server_saw: list[ServerSaw] = field(default_factory=list)
    detail: str = ""


@dataclass
class CtEntryView:
    """A conntrack entry normalised for comparison (ids and exact timestamps left out)."""

    proto: str
    state: str | None  # TCP state name
    timeout: int  # seconds remaining when collected
    orig: dict[str, Any]  # src dst sport dport (or type code id)
    reply: dict[str, Any]
    flags: list[str]  # "UNREPLIED", "ASSURED"
    mark: int = 0
    zone: int = 0

    def key(self) -> tuple:
        o = self.orig
        return (self.proto, o.get("src"), o.get("dst"), o.get("sport"), o.get("dport"),
                o.get("type"), o.get("id"))


@dataclass
class HostOutcome:
    conntrack: list[CtEntryView] = field(default_factory=list)
    # conntrack -S summed over CPUs: found invalid insert insert_failed drop early_drop ...
    ct_stats: dict[str, int] = field(default_factory=dict)
    # iptables-save -c counters: "table/chain/N" (1-based rule number) or "table/chain/policy"
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    # conntrack -E lines without timestamps and ids
    events: list[str] = field(default_factory=list)
    # interface -> capture file written during the run (tcpdump / our pcap writer)
    captures: dict[str, str] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    # the kernel's own rule trace (`xtables-monitor --trace`) or the model's trace, as text
    trace_lines: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    scenario: str
    source: str  # "model" | "kernel"
    steps: list[StepOutcome] = field(default_factory=list)
    hosts: dict[str, HostOutcome] = field(default_factory=dict)
    elapsed: float = 0.0  # virtual seconds (model) or real seconds (kernel)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
