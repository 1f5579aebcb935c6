"""Turn a finished World into a RunOutcome, through the same text the kernel tools print.

Entries, events and counters are rendered with our conntrack-tools / iptables-save writers
and read back with the parsers the kernel harness uses, so model and kernel outcomes are
normalised by one piece of code.
"""

from __future__ import annotations

from ..conntrack.defs import Status
from ..kernel.collect import clean_event_line, parse_ct_line, parse_save_counters
from ..observe.conntrack_tools import format_ct_event, format_entry
from ..ruleset.writer import to_save
from ..scenario.outcome import HostOutcome, RunOutcome, StepOutcome
from .world import World


def conntrack_lines(world: World, host_name: str, fmt: str = "default") -> list[str]:
    """`conntrack -L` (or `-o extended|save`, /proc with fmt="proc") for one host at the
    world's current time (NAT_CLASH entries are hidden, as in the kernel's dump)."""
    host = world.hosts[host_name]
    if host.conntrack is None:
        return []
    acct = bool(host.sysctls.get_int("net.netfilter.nf_conntrack_acct"))
    return [format_entry(e, world.now, fmt=fmt, acct=acct) for e in host.conntrack.table.entries()
            if not e.status & Status.NAT_CLASH]


def event_lines(world: World, host_name: str, timestamps: bool = False) -> list[str]:
    host = world.hosts[host_name]
    if host.conntrack is None:
        return []
    return [format_ct_event(ev, timestamps=timestamps) for ev in host.conntrack.table.events]


def collect_outcome(world: World) -> RunOutcome:
    out = RunOutcome(scenario=world.scenario.name, source="model", elapsed=world.now)
    for st in world.step_states:
        out.steps.append(StepOutcome(
            index=st.index, kind=st.kind, host=st.host, result=_result(st), replies=st.replies,
            sent=st.sent, local_addr=st.local_addr, local_port=st.local_port,
            server_saw=list(st.server_saw), detail=st.detail))
    for name, host in world.hosts.items():
        ho = HostOutcome()
        for line in conntrack_lines(world, name):
            parsed = parse_ct_line(line)
            if parsed is not None:
                ho.conntrack.append(parsed[1])
        if host.conntrack is not None:
            ho.ct_stats = host.conntrack.table.stats_total()
            ho.events = [c for c in (clean_event_line(l) for l in event_lines(world, name)) if c]
        if host.ruleset is not None:
            ho.counters = parse_save_counters(to_save(host.ruleset, counters=True))
        ho.log_lines = list(world.log_lines[name])
        out.hosts[name] = ho
    return out


def _result(st) -> str:
    if st.kind in ("udp", "ping"):
        # judged against the datagrams asked for (`count`), as the harness does: a send that
        # OUTPUT dropped (EPERM) is a datagram not answered
        if st.replies >= st.expected:
            return "reply"
        if st.replies:
            return "partial"
        return "unreachable" if st.result == "unreachable" else "no-reply"
    if st.kind == "tcp_connect":
        if st.expected > 1:
            done = sum(st.results.values())
            if st.results.get("connected", 0) == st.expected:
                return "connected"
            counts = ", ".join(f"{n} {r}" for r, n in sorted(st.results.items()))
            pending = st.expected - done
            st.detail = counts + (f", {pending} pending" if pending else "")
            return "partial"
        if st.result == "pending":
            return "timeout"
    return st.result
