"""One packet's walk through one host's IPv4 stack, hook by hook.

    from the wire:  PREROUTING -> routing -> INPUT -> local socket
                                          -> FORWARD -> POSTROUTING -> wire
    local output:   routing -> OUTPUT -> (reroute) -> POSTROUTING -> wire, or lo -> PREROUTING ...

A walk is a generator that yields after every hook callback, so a scheduler can interleave
the walks of packets on several CPUs (races at conntrack confirm). `run()` drives it to the
end for the common single-packet case. Engine code only: it returns data and never prints.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from ..conntrack.core import Conntrack, nf_conntrack_attach
from ..host.netdev import RouteType
from ..nat.core import NatEngine
from ..observe.trace import Fate, HookEnter, NoteStep, PacketTrace, RoutingStep
from ..packet import Packet
from .context import EvalContext
from .effects import GeneratedPacket, LogLine
from .hooks import HOOK_CALLBACKS, CallbackKind, Hook, HookCallback
from .traverse import run_table
from .verdict import ACCEPT, Verdict, VerdictKind

if TYPE_CHECKING:
    from ..host.host import Host
    from ..ruleset.model import Ruleset

_ids = iter(range(1, 1 << 62))


@dataclass
class WalkResult:
    trace: PacketTrace
    packet: Packet  # the packet as it ended (rewritten)
    fate: Fate
    emitted: list[tuple[str, Packet]] = field(default_factory=list)  # (out iface, packet)
    delivered: Packet | None = None  # handed to a local socket
    generated: list[GeneratedPacket] = field(default_factory=list)  # REJECT, ICMP errors
    errno: str | None = None  # what a local sender's syscall would report (EPERM...)


def needs_conntrack(rs: "Ruleset | None") -> bool:
    """nf_ct_netns_get: conntrack registers its hooks in a netns when a rule needs it
    (conntrack/state/connmark matches, NAT targets, CONNMARK, CT...). iptables-nft nat chains
    alone do not: an empty nat table (or one with only ACCEPT rules) tracks nothing [V 6.18]."""
    if rs is None:
        return False
    for _t, _c, rule in rs.rules():
        for ext in (*rule.matches, rule.target):
            if ext is not None and getattr(ext, "needs_conntrack", False):
                return True
    return False


class NetfilterStack:
    """The packet path of one host. Created by `attach(host)`."""

    def __init__(self, host: "Host", ncpus: int = 2) -> None:
        self.host = host
        self.ncpus = ncpus
        self.conntrack: Conntrack | None = None
        self.nat: NatEngine | None = None
        self.verbose_trace = True
        self.tracing = True  # record every step of every walk (False: fates only)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the ruleset: switch conntrack/NAT on as the kernel would."""
        rs = self.host.ruleset
        if needs_conntrack(rs) and self.conntrack is None:
            self.conntrack = Conntrack(self.host, self.ncpus)
            self.host.conntrack = self.conntrack
        self.host.conntrack_enabled = self.conntrack is not None and needs_conntrack(rs)
        self.nat_enabled = self.host.conntrack_enabled and rs is not None and "nat" in rs.tables
        if self.nat_enabled and self.nat is None and self.conntrack is not None:
            self.nat = NatEngine(self.host, self.conntrack)

    # -- entry points ----------------------------------------------------------------------
    def receive(self, pkt: Packet, iface: str, now: float, cpu: int = 0,
                label: str = "", parent: int | None = None) -> "PacketWalk":
        """A packet arrives from the wire on `iface`."""
        pkt.meta.in_iface = iface
        pkt.meta.out_iface = None
        return PacketWalk(self, pkt, "wire", now, cpu, label, parent)

    def send(self, pkt: Packet, now: float, cpu: int = 0, label: str = "",
             parent: int | None = None) -> "PacketWalk":
        """A locally generated packet (a socket, or the kernel itself: RST, ICMP errors)."""
        pkt.meta.in_iface = None
        return PacketWalk(self, pkt, "local", now, cpu, label, parent)

    def send_generated(self, g: GeneratedPacket, now: float, cpu: int = 0,
                       parent: int | None = None) -> "PacketWalk":
        """Send a packet the host generated in response (REJECT, ICMP errors)."""
        if g.attach_related and g.related_ct is not None:
            nf_conntrack_attach(g.packet, g.related_ct, g.related_ctinfo)
        return self.send(g.packet, now, cpu, label=g.reason, parent=parent)


class PacketWalk:
    def __init__(self, stack: NetfilterStack, pkt: Packet, origin: str, now: float, cpu: int,
                 label: str, parent: int | None) -> None:
        self.stack = stack
        self.host = stack.host
        self.pkt = pkt
        self.origin = origin
        self.now = now
        self.cpu = cpu
        self.trace = PacketTrace(packet_id=next(_ids), host=self.host.name,
                                 label=label or pkt.label,
                                 packet=pkt.describe() if stack.tracing else "", cpu=cpu,
                                 time=now, parent=parent)
        # the trace the engine writes into (None when the host's stack does not trace:
        # long runs keep only each walk's fate)
        self.tr: PacketTrace | None = self.trace if stack.tracing else None
        self.result: WalkResult | None = None
        self._gen = self._walk()

    def _add(self, step) -> None:
        if self.tr is not None:
            self.tr.add(step)

    # -- driving ---------------------------------------------------------------------------
    def step(self) -> bool:
        """Run the next hook callback. Returns False when the walk has ended."""
        if self.result is not None:
            return False
        try:
            next(self._gen)
            return True
        except StopIteration:
            return False

    def run(self) -> WalkResult:
        while self.step():
            pass
        assert self.result is not None
        return self.result

    # -- the walk --------------------------------------------------------------------------
    def _finish(self, fate: Fate, **kw) -> None:
        self.trace.fate = fate
        if self.tr is not None:
            self.trace.final_packet = self.pkt.describe()
        if fate.result in ("dropped", "rejected", "no-route", "queued") and self.stack.conntrack:
            self.stack.conntrack.release(self.pkt)
        self.result = WalkResult(self.trace, self.pkt, fate, generated=self._generated, **kw)

    def _walk(self) -> Iterator[None]:
        self._generated: list[GeneratedPacket] = []
        if self.origin == "wire":
            yield from self._incoming()
        else:
            yield from self._local_out()

    def _run_hook(self, hook: Hook, after_callback=None):
        """Run every callback of `hook` in priority order, yielding after each one (a CPU
        switch point). Returns the verdict: ACCEPT, or the first one that is not."""
        if self.tr is not None:
            self.tr.add(HookEnter(hook.value, self.pkt.meta.in_iface, self.pkt.meta.out_iface,
                                  self.pkt.describe()))
        for cb in HOOK_CALLBACKS[hook]:
            before = self._route_key() if after_callback is not None else None
            verdict = self._callback(cb, hook)
            yield None
            if verdict.kind is not VerdictKind.ACCEPT:
                return verdict
            if after_callback is not None and not after_callback(cb, before):
                return Verdict(VerdictKind.STOLEN, reason="routing failed")
        return ACCEPT

    def _route_key(self) -> tuple:
        p = self.pkt
        return (p.src, p.dst, p.meta.mark, p.tos)

    def _ctx(self, hook: Hook, table: str) -> EvalContext:
        return EvalContext(pkt=self.pkt, hook=hook, table=table, host=self.host, now=self.now,
                           rng=self.host.rng, cpu=self.cpu)

    def _absorb(self, ctx: EvalContext) -> None:
        for e in ctx.pending_effects:
            if isinstance(e, GeneratedPacket):
                if e.attach_related:
                    e.related_ct = self.pkt.meta.ct
                    e.related_ctinfo = self.pkt.meta.ctinfo
                self._generated.append(e)
            elif isinstance(e, LogLine) and e.text not in self.trace.log_lines:
                self.trace.log_lines.append(e.text)
        for u in ctx.uncertain:
            if u not in self.trace.uncertain:
                self.trace.uncertain.append(u)

    def _callback(self, cb: HookCallback, hook: Hook) -> Verdict:
        host, stack = self.host, self.stack
        ct = stack.conntrack
        if cb.kind is CallbackKind.TABLE:
            rs = host.ruleset
            table = rs.tables.get(cb.table) if rs is not None else None
            if table is None:
                return ACCEPT
            ctx = self._ctx(hook, table.name)
            verdict = run_table(table, ctx, self.tr, stack.verbose_trace)
            self._absorb(ctx)
            return verdict
        if cb.kind is CallbackKind.CONNTRACK_IN:
            if not host.conntrack_enabled or ct is None:
                return ACCEPT
            n = len(ct.log_lines)
            v = ct.conntrack_in(self.pkt, hook, self.now, self.cpu, self.tr)
            self.trace.log_lines.extend(ct.log_lines[n:])
            return v
        if cb.kind is CallbackKind.NAT:
            if not stack.nat_enabled or stack.nat is None:
                return ACCEPT
            rs = host.ruleset
            table = rs.tables.get("nat") if rs is not None else None

            def run_chain(setup):
                if table is None:
                    return ACCEPT
                ctx = self._ctx(hook, "nat")
                ctx.nat_setup = setup
                verdict = run_table(table, ctx, self.tr, stack.verbose_trace)
                self._absorb(ctx)
                return verdict

            return stack.nat.nat_hook(self.pkt, hook, self.now, self.cpu, self.tr, run_chain)
        if cb.kind is CallbackKind.CONFIRM:
            if not host.conntrack_enabled or ct is None:
                return ACCEPT
            return ct.confirm(self.pkt, self.now, self.cpu, self.tr)
        raise AssertionError(cb)

    def _dropped_at(self, verdict: Verdict, hook: Hook) -> Fate:
        """Where the walk ended: the rule or policy that said DROP (REJECT counts as
        "rejected"), or the conntrack/NAT step that dropped it."""
        where, result = hook.value, "dropped"
        for step in reversed(self.trace.steps):
            kind = step.kind
            if kind in ("rule", "policy") and step.verdict in ("DROP", "QUEUE", "STOLEN"):
                if kind == "policy":
                    where = f"{step.table}/{step.chain} policy"
                else:
                    where = f"{step.table}/{step.chain} rule {step.index}" + (
                        f" ({step.source})" if step.source else "")
                    if " -j REJECT" in step.text:
                        result = "rejected"
                break
            if kind in ("confirm", "nat", "conntrack") and \
                    getattr(step, "action", getattr(step, "result", "")) in ("dropped", "drop"):
                where = f"{hook.value} {kind}"
                break
        if verdict.kind is VerdictKind.QUEUE:
            result = "queued"
        return Fate(result, where, verdict.reason)

    # -- from the wire ---------------------------------------------------------------------
    def _incoming(self) -> Iterator[None]:
        pkt = self.pkt
        verdict = yield from self._run_hook(Hook.PREROUTING)
        if verdict.kind is not VerdictKind.ACCEPT:
            self._finish(self._dropped_at(verdict, Hook.PREROUTING))
            return
        decision = self._route_input()
        if decision == "local":
            verdict = yield from self._run_hook(Hook.INPUT)
            if verdict.kind is not VerdictKind.ACCEPT:
                self._finish(self._dropped_at(verdict, Hook.INPUT))
                return
            self._finish(Fate("delivered", self._socket_label()), delivered=pkt)
            return
        if decision != "forward":
            return  # _route_input finished the walk
        verdict = yield from self._run_hook(Hook.FORWARD)
        if verdict.kind is not VerdictKind.ACCEPT:
            self._finish(self._dropped_at(verdict, Hook.FORWARD))
            return
        yield from self._postrouting()

    def _postrouting(self) -> Iterator[None]:
        pkt = self.pkt
        verdict = yield from self._run_hook(Hook.POSTROUTING)
        if verdict.kind is not VerdictKind.ACCEPT:
            # ip_output runs POSTROUTING synchronously: a local sender sees the drop (EPERM)
            self._finish(self._dropped_at(verdict, Hook.POSTROUTING),
                         errno=None if self.origin == "wire" else "EPERM")
            return
        out = pkt.meta.out_iface
        if out == "lo":
            # loopback_xmit: back in through lo, keeping the conntrack attached
            self._add(RoutingStep("loopback", "lo", detail="the packet loops back through lo "
                                       "and comes in again (its conntrack stays attached)"))
            pkt.meta.looped = True
            pkt.meta.in_iface = "lo"
            pkt.meta.out_iface = None
            self.origin = "wire"
            yield from self._incoming()
            return
        self._finish(Fate("forwarded" if self.origin == "wire" else "sent", f"out {out}",
                          out_iface=out), emitted=[(out, pkt)])

    def _route_input(self) -> str:
        """ip_route_input_noref: local delivery, forward, or the end of the walk."""
        pkt, host = self.pkt, self.host
        dev = pkt.meta.in_iface or ""
        if pkt.meta.tproxy_sock is not None:
            self._add(RoutingStep("local", detail="TPROXY assigned a socket; assuming the "
                                       "usual 'ip rule fwmark ... lookup <table with local "
                                       "0.0.0.0/0 dev lo>' policy route delivers it locally"))
            return "local"
        route_localnet = bool(host.sysctls.get_int(f"net.ipv4.conf.{dev}.route_localnet"))
        if dev != "lo" and not route_localnet and (pkt.src.is_loopback or pkt.dst.is_loopback):
            self._add(RoutingStep("martian", detail="loopback address on a non-loopback "
                                       "interface (route_localnet=0): dropped as martian"))
            self._finish(Fate("dropped", "routing", "martian packet"))
            return "end"
        if pkt.src.is_multicast or pkt.src == ipaddress.ip_address("255.255.255.255"):
            self._finish(Fate("dropped", "routing", "martian source"))
            return "end"
        atype = host.devices.addr_type(pkt.dst)
        if atype in (RouteType.LOCAL, RouteType.BROADCAST, RouteType.MULTICAST):
            self._add(RoutingStep("local", detail=f"{pkt.dst} is {atype.name.lower()} on this host"))
            return "local"
        if not host.sysctls.forwarding(dev):
            self._add(RoutingStep("forwarding-disabled", detail=(
                f"{pkt.dst} is not local and forwarding is off on {dev} (net.ipv4.ip_forward=0): "
                "dropped without an ICMP error")))
            self._finish(Fate("dropped", "routing", "forwarding disabled"))
            return "end"
        rt = host.devices.lookup(pkt.dst)
        if rt.type is RouteType.UNICAST:
            if pkt.ttl <= 1:
                self._add(RoutingStep("forward", rt.dev, str(rt.gateway) if rt.gateway else None,
                                           detail="TTL expires here: ICMP time exceeded"))
                self._icmp_error(11, 0)
                self._finish(Fate("dropped", "ip_forward", "TTL exceeded"))
                return "end"
            pkt.ttl -= 1  # ip_forward decrements before the FORWARD hook
            pkt.meta.out_iface = rt.dev
            self._add(RoutingStep("forward", rt.dev, str(rt.gateway) if rt.gateway else None))
            return "forward"
        # no route / unreachable / prohibit / blackhole (ip_error)
        codes = {RouteType.UNREACHABLE: (3, 0 if rt.route is None else 1),
                 RouteType.PROHIBIT: (3, 13), RouteType.BLACKHOLE: None, RouteType.THROW: (3, 0)}
        code = codes.get(rt.type, (3, 1))
        self._add(RoutingStep("no-route" if rt.route is None else rt.type.name.lower(),
                                   detail=f"no route to {pkt.dst}" if rt.route is None else rt.route.describe()))
        if code is not None:
            self._icmp_error(*code)
        self._finish(Fate("no-route", "routing", f"no route to {pkt.dst}"))
        return "end"

    def _socket_label(self) -> str:
        pkt = self.pkt
        if pkt.sport is None:
            return "INPUT -> local delivery"
        socks = self.host.sockets
        s = socks.lookup_established(pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport) or \
            socks.lookup_listener(pkt.proto, pkt.dst, pkt.dport)
        if s is None:
            return f"INPUT -> no socket on {pkt.dst}:{pkt.dport}"
        return f"INPUT -> socket {s.addr or '0.0.0.0'}:{s.port}" + (f" ({s.name})" if s.name else "")

    # -- local output ----------------------------------------------------------------------
    def _route_output(self, why: str = "") -> bool:
        pkt, host = self.pkt, self.host
        rt = host.devices.lookup(pkt.dst)
        if rt.type in (RouteType.LOCAL, RouteType.BROADCAST) or rt.type is RouteType.UNICAST:
            dev = "lo" if rt.type is RouteType.LOCAL else rt.dev
            if pkt.src == ipaddress.ip_address("0.0.0.0") and rt.src is not None:
                pkt.src = rt.src
            # __mkroute_output (net/ipv4/route.c): a loopback source leaves only by lo unless
            # the output device has route_localnet (e.g. 127.0.0.1 DNATed away in OUTPUT)
            if (dev != "lo" and pkt.src.version == 4 and pkt.src.is_loopback
                    and not host.sysctls.get_int(f"net.ipv4.conf.{dev}.route_localnet")):
                self._add(RoutingStep("martian", dev, detail=(
                    f"loopback source {pkt.src} may not leave by {dev} (route_localnet=0)")))
                self._finish(Fate("dropped", "routing", "loopback source on a non-loopback "
                                  "device"), errno="EINVAL")
                return False
            old = pkt.meta.out_iface
            pkt.meta.out_iface = dev
            decision = "reroute" if why else "output"
            if not why or old != dev:
                self._add(RoutingStep(decision, dev, str(rt.gateway) if rt.gateway else None,
                                           str(pkt.src), why))
            return True
        self._add(RoutingStep("no-route", detail=f"no route to {pkt.dst}"))
        self._finish(Fate("no-route", "routing", f"no route to {pkt.dst}"),
                     errno="ENETUNREACH")
        return False

    def _local_out(self) -> Iterator[None]:
        if not self._route_output():
            return
        verdict = yield from self._run_hook(Hook.OUTPUT, self._reroute_if_changed)
        if self.result is not None:
            return  # rerouting failed
        if verdict.kind is not VerdictKind.ACCEPT:
            self._finish(self._dropped_at(verdict, Hook.OUTPUT), errno="EPERM")
            return
        yield from self._postrouting()

    def _reroute_if_changed(self, cb: HookCallback, before: tuple) -> bool:
        """iptable_mangle (saddr, daddr, mark, tos) and nf_nat_ipv4_local_fn (daddr) call
        ip_route_me_harder when OUTPUT changed the packet."""
        after = self._route_key()
        if before == after:
            return True
        if cb.name == "mangle" or (cb.kind is CallbackKind.NAT and before[1] != after[1]):
            return self._route_output(f"{cb.name} OUTPUT changed the packet")
        return True

    # -- ICMP errors the stack itself sends -------------------------------------------------
    def _icmp_error(self, icmp_type: int, code: int) -> None:
        from ..ruleset.targets.icmp_send import icmp_error  # the one ICMP error builder

        reply, why = icmp_error(self.host, self.pkt, icmp_type, code, now=self.now,
                                rng=self.host.rng, in_iface=self.pkt.meta.in_iface,
                                input_route=self.origin == "wire")
        if reply is not None:
            reply.label = f"ICMP type {icmp_type} code {code}"
            self._generated.append(GeneratedPacket(reply, why))
        else:
            self._add(NoteStep(why))


def attach(host: "Host", ncpus: int = 2) -> NetfilterStack:
    stack = NetfilterStack(host, ncpus)
    host.stack = stack
    return stack
