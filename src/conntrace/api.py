"""The library's front door: load a host, trace packets, run scenarios. The CLI is a thin
layer over these functions."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import InputError, UnsupportedError
from .host.host import Host
from .host.iproute import parse_route_line
from .host.netdev import Interface
from .netfilter.stack import WalkResult, attach
from .packetspec import PacketSpec, parse_packet_spec


@dataclass
class TraceResult:
    """One packet's walk, plus the walks of packets it caused (REJECT replies...)."""

    walks: list[WalkResult]
    assumptions: list[str] = field(default_factory=list)
    uncertain: bool = False

    @property
    def main(self) -> WalkResult:
        return self.walks[0]


def default_router(local: list[str] = (), ifaces: list[str] = (), routes: list[str] = (),
                   sysctls: dict | None = None, parsed_routes: list = ()) -> Host:
    """The host `conntrace trace` models when given no host description: a router with
    forwarding on, eth0 (in) and eth1 (default route out). Every assumption is recorded."""
    host = Host("router")
    host.sysctls.set("net.ipv4.ip_forward", 1)
    host.assumptions.append("no --host given: modelling a router (net.ipv4.ip_forward=1)")
    by_name: dict[str, list] = {"eth0": [], "eth1": []}
    for spec in ifaces:
        name, _, addrs = spec.partition("=")
        by_name.setdefault(name, [])
        for a in filter(None, addrs.split(",")):
            by_name[name].append(_iface_addr(a, f"--iface {spec}"))
    for spec in local:
        name, sep, addr = spec.rpartition("=")
        if not sep:
            name, addr = "eth0", spec
        by_name.setdefault(name, []).append(_iface_addr(addr, f"--local {spec}"))
    for i, (name, addrs) in enumerate(by_name.items()):
        host.devices.add_interface(Interface(name, mac=f"02:00:00:00:00:{i + 1:02x}",
                                             addresses=addrs))
        shown = ", ".join(str(a) for a in addrs) or "no addresses"
        host.assumptions.append(f"interface {name}: {shown}")
    if routes or parsed_routes:
        for r in routes:
            host.devices.add_route(parse_route_line(r, "--route", None))
            host.assumptions.append(f"route: {r}")
        for route in parsed_routes:
            host.devices.add_route(route)
            host.assumptions.append(f"route: {route.describe()}")
    else:
        host.devices.add_route(parse_route_line("default dev eth1"))
        host.assumptions.append("route: default dev eth1 (packets not for this host leave by eth1)")
    for k, v in (sysctls or {}).items():
        host.sysctls.set(k, v)
    host.assumptions.append("local addresses: only those given with --local/--iface (and 127.0.0.1)")
    attach(host)
    return host


def _iface_addr(text: str, where: str):
    try:
        if "/" not in text:
            text += "/32" if ":" not in text else "/128"
        return ipaddress.ip_interface(text)
    except ValueError:
        raise InputError(f"{where}: expected ADDRESS[/PREFIX], got '{text}'") from None


def install_rules(host: Host, text: str, origin: str, allow_unsupported: bool = False) -> None:
    from .host.build import load_rules_into

    load_rules_into(host, text, origin)
    items = list(host.ruleset.unsupported) if host.ruleset else []
    if items and not allow_unsupported:
        raise UnsupportedError(items)


def trace_packet(host: Host, packet: str | PacketSpec, now: float = 0.0,
                 follow: bool = True, verbose: bool = True) -> TraceResult:
    """Send one packet through `host`. With `in IFACE` it arrives from the wire; without it,
    a packet whose source is local to the host is locally generated; else it arrives on eth0
    when the host has one (the default router), and the assumption is recorded."""
    spec = parse_packet_spec(packet) if isinstance(packet, str) else packet
    pkt = spec.packet
    assumptions = list(host.assumptions)
    stack = host.stack or attach(host)
    stack.verbose_trace = verbose
    if spec.in_iface is not None:
        if spec.in_iface not in host.interfaces:
            raise InputError(f"packet: host has no interface '{spec.in_iface}' "
                             f"(it has: {', '.join(host.interfaces)})")
        walk = stack.receive(pkt, spec.in_iface, now, label="packet")
    elif host.is_local(pkt.src):
        assumptions.append(f"{pkt.src} is local: the packet is sent by a process on this host "
                           "(OUTPUT path)")
        if pkt.meta.sock_uid is None:
            pkt.meta.sock_uid = 0
            pkt.meta.sock_gid = 0
            assumptions.append("sending socket owned by uid 0 / gid 0 (give uid= gid= to change)")
        walk = stack.send(pkt, now, label="packet")
    elif "eth0" in host.interfaces:
        assumptions.append("the packet arrives on eth0 (say 'in IFACE' to change)")
        walk = stack.receive(pkt, "eth0", now, label="packet")
    else:
        raise InputError("packet: say where the packet enters with 'in IFACE', or give a "
                         "source address local to the host")
    first = walk.run()
    walks = [first]
    queue = list(first.generated) if follow else []
    while queue and len(walks) < 16:
        g = queue.pop(0)
        w = stack.send_generated(g, now, parent=first.trace.packet_id).run()
        first.trace.caused.append(w.trace.packet_id)
        walks.append(w)
        queue.extend(w.generated)
    uncertain = any(w.trace.uncertain for w in walks)
    return TraceResult(walks, assumptions, uncertain)


def run_scenario(scenario, until: float | None = None, allow_unsupported: bool = False, *,
                 record: bool = True, observers: list | None = None):
    """Run a scenario (a path or a loaded Scenario) on the model. Returns (world, outcome).
    `record=False` with `observers` streams instead of keeping every trace and event."""
    from .scenario.load import load_scenario
    from .world.outcome import collect_outcome
    from .world.world import World

    sc = load_scenario(scenario) if not hasattr(scenario, "hosts") else scenario
    world = World(sc, record=record, observers=observers)
    if not allow_unsupported:
        items = [i for h in world.hosts.values() if h.ruleset is not None for i in h.ruleset.unsupported]
        if items:
            raise UnsupportedError(items)
    world.run(until)
    return world, collect_outcome(world)
