"""Hosts joined by links, a virtual clock and one event queue.

Deterministic by construction: events at the same virtual time run in the order they were
scheduled; one seeded RNG (per host, plus the world's) drives every random choice.
Conntrack timeouts expire on the same clock: before any event at time t, every entry whose
timeout is <= t is destroyed (DESTROY event at its own expiry time).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Callable

from ..host.build import build_host, load_rules_into
from ..host.host import Host
from ..netfilter.effects import GeneratedPacket
from ..netfilter.stack import WalkResult
from ..observe.trace import PacketTrace
from ..packet import Packet, SkbMeta
from ..scenario.model import Scenario, Step
from ..scenario.outcome import ServerSaw
from .sockets import SocketLayer, StepState

MAX_SAW_PER_STEP = 1000  # a step repeated many times keeps a sample, not every sighting
LINK_DELAY = 0.0001  # 100 us per hop: keeps capture timestamps distinct and ordered


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    what: str = field(compare=False, default="")


@dataclass
class Frame:
    """A packet that crossed an interface, as `tcpdump -i IF` would show it."""

    time: float
    host: str
    iface: str
    direction: str  # "out" | "in"
    packet: Packet
    src_mac: str
    dst_mac: str


class World:
    """`record`: keep every trace, frame and conntrack event (for reports and parity). For
    long runs pass record=False and observers: objects with any of on_trace(trace),
    on_frame(frame), on_ct_event(host_name, event); memory then stays bounded by what is
    alive (sockets, conntrack entries), not by what happened."""

    def __init__(self, scenario: Scenario, *, ncpus: int = 2, record: bool = True,
                 observers: list | None = None) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.now = 0.0
        self._queue: list[_Event] = []
        self._seq = itertools.count()
        self._ip_id = itertools.count(1)
        self.hosts: dict[str, Host] = {}
        for i, (name, spec) in enumerate(scenario.hosts.items()):
            self.hosts[name] = build_host(spec, seed=scenario.seed * 1000 + i, ncpus=ncpus)
        self.sockets = {name: SocketLayer(self, name) for name in self.hosts}
        self.record = record
        self.observers = list(observers or [])
        wants_traces = record or any(hasattr(o, "on_trace") for o in self.observers)
        for name, host in self.hosts.items():
            host.stack.tracing = wants_traces
            host.record_ct_events = record
            if host.conntrack is not None:
                host.conntrack.table.record_events = record
            for obs in self.observers:
                if hasattr(obs, "on_ct_event"):
                    host.ct_event_listeners.append(lambda ev, n=name, o=obs: o.on_ct_event(n, ev))
        # (host, iface) -> list of (host, iface) it reaches
        self.links: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for link in scenario.links:
            for end in link.ends:
                self.links[end] = [e for e in link.ends if e != end]
        self.traces: list[PacketTrace] = []
        self.frames: list[Frame] = []
        self.step_states: list[StepState] = []
        self._steps_by_index: dict[int, StepState] = {}
        self.server_seen: list[ServerSaw] = []
        self._current_step: StepState | None = None
        self.log_lines: dict[str, list[str]] = {name: [] for name in self.hosts}

    # -- scheduling ------------------------------------------------------------------------
    def at(self, time: float, action: Callable[[], None], what: str = "") -> None:
        heapq.heappush(self._queue, _Event(time, next(self._seq), action, what))

    def timer(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action, "timer")

    def next_ip_id(self) -> int:
        return next(self._ip_id) & 0xFFFF

    def _expire_until(self, t: float) -> None:
        for host in self.hosts.values():
            if host.conntrack is not None:
                host.conntrack.table.expire(t)

    def run(self, until: float | None = None) -> None:
        for i, step in enumerate(self.scenario.steps, 1):
            self.at(step.at, (lambda s=step, n=i: self._do_step(s, n)), f"step {i}")
        end = until if until is not None else self.scenario.run_until
        while self._queue:
            ev = self._queue[0]
            if end is not None and ev.time > end:
                break
            heapq.heappop(self._queue)
            self._expire_until(ev.time)
            self.now = max(self.now, ev.time)
            ev.action()
        if end is not None:
            self.now = max(self.now, end)
            self._expire_until(end)

    # -- steps -----------------------------------------------------------------------------
    def _do_step(self, step: Step, index: int) -> None:
        a = step.args
        st = StepState(index, step.kind, step.host or "")
        self.step_states.append(st)
        self._steps_by_index[index] = st
        socks = self.sockets.get(step.host or "")
        if step.kind == "tcp_connect":
            st.expected = a.get("count", 1)
            retries = a.get("syn_retries", self.hosts[step.host].sysctls.get_int(
                "net.ipv4.tcp_syn_retries"))
            self._repeat(st.expected, a.get("interval", 0.01), lambda n: socks.tcp_connect(
                st, a["dst"], a["dport"], sport=a.get("sport"), src=a.get("src"),
                uid=a.get("uid", 0), gid=a.get("gid", 0), payload=a.get("payload", 0),
                close=a.get("close", "fin"), hold=a.get("hold", 0.0), syn_retries=retries))
        elif step.kind == "udp":
            st.expected = a.get("count", 1)
            self._repeat(st.expected, a.get("interval", 1.0), lambda n: socks.udp_send(
                st, a["dst"], a["dport"], sport=a.get("sport"), src=a.get("src"),
                uid=a.get("uid", 0), gid=a.get("gid", 0), payload=a.get("payload", 32)))
            st.result = "sent"
        elif step.kind == "ping":
            icmp_id = a.get("icmp_id") or self.rng.randint(1, 65535)
            st.expected = a.get("count", 1)
            self._repeat(st.expected, a.get("interval", 1.0), lambda n: socks.ping(
                st, a["dst"], src=a.get("src"), icmp_id=icmp_id, seq=n + 1,
                payload=a.get("payload", 56), uid=a.get("uid", 0), gid=a.get("gid", 0)))
            st.result = "sent"
        elif step.kind == "packet":
            from ..packetspec import parse_packet_spec

            spec = parse_packet_spec(a["spec"], str(step.where) if step.where else "packet")
            pkt = spec.packet
            pkt.label = step.name or "crafted packet"
            pkt.flow_tag = index
            if a["mode"] == "send":
                self.local_send(step.host, pkt)
            else:
                self.receive(step.host, a["in"], pkt)
            st.result = "done"
        elif step.kind == "replay":
            self._replay(step, st)
        elif step.kind == "conntrack_flush":
            host = self.hosts[step.host]
            if host.conntrack is not None:
                # the netlink port id of the `conntrack -F` process (any non-zero id)
                host.conntrack.table.flush(self.now, portid=4000 + index)
            st.result = "done"
        elif step.kind == "rules":
            load_rules_into(self.hosts[step.host], a["rules"], a["origin"], noflush=a["noflush"],
                            line_offset=a.get("line_offset", 0))
            st.result = "done"
        elif step.kind == "sysctl":
            for k, v in a["set"].items():
                self.hosts[step.host].sysctls.set(k, v)
            st.result = "done"

    def _repeat(self, count: int, interval: float, action: Callable[[int], None], n: int = 0) -> None:
        """Do action(n) now and again every `interval` seconds until it has run `count` times."""
        action(n)
        if n + 1 < count:
            self.timer(interval, lambda: self._repeat(count, interval, action, n + 1))

    def _replay(self, step: Step, st: StepState) -> None:
        from ..observe.pcap import read_capture

        caps = read_capture(step.args["file"])
        if not caps:
            st.result = "done"
            return
        t0 = caps[0].ts_ns
        for cap in caps:
            if cap.packet is None:
                continue
            delay = (cap.ts_ns - t0) / 1e9
            pkt = cap.packet
            self.at(self.now + delay, lambda p=pkt: self.receive(step.host, step.args["in"], p),
                    "replay")
        st.result = "done"

    # -- packets ---------------------------------------------------------------------------
    def local_send(self, host_name: str, pkt: Packet) -> str | None:
        """Send from a local socket; returns what the syscall reports (None, or "EPERM" when
        OUTPUT/POSTROUTING dropped it: ip_local_out's verdict reaches the sender)."""
        host = self.hosts[host_name]
        walk = host.stack.send(pkt, self.now, label=pkt.label)
        res = walk.run()
        self._finish_walk(host_name, res)
        return res.errno

    def receive(self, host_name: str, iface: str, pkt: Packet) -> None:
        host = self.hosts[host_name]
        if self._wants_frames():
            self._frame(Frame(self.now, host_name, iface, "in", pkt.snapshot(),
                              pkt.meta.src_mac or "00:00:00:00:00:00",
                              host.interfaces[iface].mac if iface in host.interfaces else "00:00:00:00:00:00"))
        walk = host.stack.receive(pkt, iface, self.now, label=pkt.label)
        self._finish_walk(host_name, walk.run())

    def icmp_error(self, host_name: str, pkt: Packet, icmp_type: int, code: int, why: str) -> None:
        """The host answers a delivered packet with an ICMP error (closed UDP port...)."""
        from ..ruleset.targets.icmp_send import icmp_error

        host = self.hosts[host_name]
        reply, _reason = icmp_error(host, pkt, icmp_type, code, now=self.now, rng=host.rng,
                                    in_iface=pkt.meta.in_iface, input_route=pkt.meta.in_iface is not None)
        if reply is not None:
            reply.label = f"ICMP {why}"
            self.local_send(host_name, reply)

    def _wants_frames(self) -> bool:
        return self.record or any(hasattr(o, "on_frame") for o in self.observers)

    def _frame(self, frame: Frame) -> None:
        if self.record:
            self.frames.append(frame)
        for obs in self.observers:
            if hasattr(obs, "on_frame"):
                obs.on_frame(frame)

    def server_saw(self, saw: ServerSaw, tag: int | None) -> None:
        """A server accepted a connection or received a datagram; `tag` names the step that
        sent it (packets keep it across hops and NAT)."""
        if self.record:
            self.server_seen.append(saw)
        st = self._steps_by_index.get(tag)
        if st is not None and len(st.server_saw) < MAX_SAW_PER_STEP:
            st.server_saw.append(saw)

    def _finish_walk(self, host_name: str, res: WalkResult) -> None:
        res.trace.time = self.now
        if self.record:
            self.traces.append(res.trace)
            self.log_lines[host_name].extend(res.trace.log_lines)
        for obs in self.observers:
            if hasattr(obs, "on_trace"):
                obs.on_trace(res.trace)
        for out_iface, pkt in res.emitted:
            self._transmit(host_name, out_iface, pkt)
        if res.delivered is not None:
            # socket input runs as its own event (softirq -> socket), never nested in a send
            pkt = res.delivered
            self.at(self.now, lambda: self.sockets[host_name].deliver(pkt), "socket input")
        for g in res.generated:
            self._send_generated(host_name, g, res.trace.packet_id)

    def _send_generated(self, host_name: str, g: GeneratedPacket, parent: int) -> None:
        host = self.hosts[host_name]
        walk = host.stack.send_generated(g, self.now, parent=parent)
        self._finish_walk(host_name, walk.run())

    def _transmit(self, host_name: str, iface: str, pkt: Packet) -> None:
        host = self.hosts[host_name]
        dev = host.interfaces[iface]
        peers = self.links.get((host_name, iface), [])
        nexthop = host.devices.lookup(pkt.dst).gateway or pkt.dst
        target = None
        if len(peers) == 1:
            target = peers[0]
        else:
            for ph, pi in peers:
                pdev = self.hosts[ph].interfaces[pi]
                if any(a.ip == nexthop for a in pdev.addresses):
                    target = (ph, pi)
                    break
        dst_mac = self.hosts[target[0]].interfaces[target[1]].mac if target else "ff:ff:ff:ff:ff:ff"
        if self._wants_frames():
            self._frame(Frame(self.now, host_name, iface, "out", pkt.snapshot(), dev.mac, dst_mac))
        if target is None:
            return  # nobody on the link answers ARP for the next hop: the packet is lost
        wire = _wire_copy(pkt, dev.mac, dst_mac)
        self.at(self.now + LINK_DELAY, lambda: self.receive(target[0], target[1], wire), "link")


def _wire_copy(pkt: Packet, src_mac: str, dst_mac: str) -> Packet:
    """What arrives at the peer: the headers only, with a fresh skb."""
    snap = pkt.snapshot()
    snap.meta = SkbMeta(src_mac=src_mac, dst_mac=dst_mac)
    return snap
