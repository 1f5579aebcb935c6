"""Plan the namespaces, links and addresses of a scenario as a list of `ip` commands (pure).

One namespace per host (`ctr-<run>-<host>`), a veth pair per `veth` link, a bridge in its
own namespace (`ctr-<run>.seg-<name>`) per `segment`, and, for interfaces no link mentions,
a veth whose other end sits in a stub namespace (`ctr-<run>.stub`) so that the interface has
carrier and a peer to inject frames from. Nothing is created in the root namespace: every
device is made directly inside its namespace (`ip -n A link add ... peer ... netns B`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..scenario.model import Scenario
from .procs import NS_PREFIX


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class PeerEnd:
    """Where frames for (host, iface) are sent from: namespace, device and its MAC."""

    ns: str
    ifname: str
    mac: str
    host: str | None  # the peer host, or None for a bridge port / stub end


@dataclass
class Plan:
    run_id: str
    host_ns: dict[str, str]
    helper_ns: list[str]
    create: list[Cmd] = field(default_factory=list)
    routes: list[Cmd] = field(default_factory=list)
    peer_end: dict[tuple[str, str], PeerEnd] = field(default_factory=dict)
    iface_mac: dict[tuple[str, str], str] = field(default_factory=dict)
    ipv6_ns: list[str] = field(default_factory=list)  # namespaces with IPv6 addresses

    @property
    def all_ns(self) -> list[str]:
        return list(self.host_ns.values()) + self.helper_ns


def helper_mac(*parts: str) -> str:
    d = hashlib.sha256("/".join(parts).encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in d[:5])


def _ip(ns: str, *args: str) -> tuple[str, ...]:
    return ("ip", "-n", ns, *args)


def plan_topology(sc: Scenario, run_id: str) -> Plan:
    base = f"{NS_PREFIX}{run_id}"
    host_ns = {h: f"{base}-{h}" for h in sc.hosts}
    seg_ns = {l.name: f"{base}.seg-{l.name}" for l in sc.links if l.kind == "segment"}
    linked = {end for l in sc.links for end in l.ends}
    unlinked = [(h.name, i.name) for h in sc.hosts.values() for i in h.interfaces
                if (h.name, i.name) not in linked and i.name != "lo"]
    stub = f"{base}.stub" if unlinked else None
    helpers = list(seg_ns.values()) + ([stub] if stub else [])
    p = Plan(run_id=run_id, host_ns=host_ns, helper_ns=helpers)
    for h in sc.hosts.values():
        for i in h.interfaces:
            p.iface_mac[(h.name, i.name)] = i.mac
    c = p.create.append
    for ns in p.all_ns:
        c(Cmd(("ip", "netns", "add", ns), f"creating namespace {ns}"))
    for ns in p.all_ns:
        c(Cmd(_ip(ns, "link", "set", "lo", "up"), f"{ns}: lo up"))
    # No IPv6 where the scenario has none: no router solicitations, MLD or ND on the wire.
    for name, h in sc.hosts.items():
        if not any(a.version == 6 for i in h.interfaces for a in i.addresses):
            c(_no_ipv6(host_ns[name]))
        else:
            # no duplicate address detection: addresses usable at once, as in the model
            c(Cmd(("ip", "netns", "exec", host_ns[name], "sysctl", "-q", "-w",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"),
                  f"{host_ns[name]}: no IPv6 DAD"))
            p.ipv6_ns.append(host_ns[name])
    for ns in helpers:
        c(_no_ipv6(ns))
    for seg, ns in seg_ns.items():
        # no IGMP snooping: else br0 joins 224.0.0.106 and its IGMP reports reach the hosts
        c(Cmd(_ip(ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"),
              f"segment {seg}: bridge"))
        c(Cmd(_ip(ns, "link", "set", "br0", "up"), f"segment {seg}: bridge up"))
    port = 0
    for link in sc.links:
        if link.kind == "veth":
            (ha, ia), (hb, ib) = link.ends
            c(Cmd(_ip(host_ns[ha], "link", "add", ia, "type", "veth", "peer", "name", ib,
                      "netns", host_ns[hb]), f"link {ha}:{ia} <-> {hb}:{ib}"))
            p.peer_end[(ha, ia)] = PeerEnd(host_ns[hb], ib, p.iface_mac[(hb, ib)], hb)
            p.peer_end[(hb, ib)] = PeerEnd(host_ns[ha], ia, p.iface_mac[(ha, ia)], ha)
        else:
            bns = seg_ns[link.name]
            for h, i in link.ends:
                pname = f"p{port}"
                port += 1
                mac = helper_mac(run_id, link.name, h, i)
                c(Cmd(_ip(host_ns[h], "link", "add", i, "type", "veth", "peer", "name", pname,
                          "netns", bns), f"segment {link.name}: {h}:{i}"))
                c(Cmd(_ip(bns, "link", "set", pname, "address", mac, "master", "br0", "up"),
                      f"segment {link.name}: port {pname}"))
                p.peer_end[(h, i)] = PeerEnd(bns, pname, mac, None)
    for n, (h, i) in enumerate(unlinked):
        sname = f"s{n}"
        mac = helper_mac(run_id, "stub", h, i)
        c(Cmd(_ip(host_ns[h], "link", "add", i, "type", "veth", "peer", "name", sname,
                  "netns", stub), f"{h}:{i} (no link; peer in the stub namespace)"))
        c(Cmd(_ip(stub, "link", "set", sname, "address", mac, "up"), f"stub end of {h}:{i}"))
        p.peer_end[(h, i)] = PeerEnd(stub, sname, mac, None)
    for name, h in sc.hosts.items():
        ns = host_ns[name]
        for i in h.interfaces:
            if i.name == "lo":
                for a in i.addresses:
                    if str(a) != "127.0.0.1/8":
                        c(Cmd(_ip(ns, "addr", "add", str(a), "dev", "lo"), f"{name}: lo {a}"))
                continue
            if i.mtu != 1500:
                c(Cmd(_ip(ns, "link", "set", "dev", i.name, "mtu", str(i.mtu)),
                      f"{name}:{i.name} mtu"))
            c(Cmd(_ip(ns, "link", "set", "dev", i.name, "address", i.mac), f"{name}:{i.name} mac"))
            # in order: the first address of a subnet is the primary, later ones secondaries
            for a in i.addresses:
                extra = ("nodad",) if a.version == 6 else ()
                c(Cmd(_ip(ns, "addr", "add", str(a), "dev", i.name, *extra),
                      f"{name}:{i.name} address {a}"))
            c(Cmd(_ip(ns, "link", "set", "dev", i.name, "up"), f"{name}:{i.name} up"))
        for r in h.routes:
            words = r.text.split()
            if words[:3] == ["ip", "route", "add"]:
                words = words[3:]
            p.routes.append(Cmd(_ip(ns, "route", "replace", *words),
                                f"{name}: route '{r.text}'" + (f" ({r.where})" if r.where else "")))
    return p


def _no_ipv6(ns: str) -> Cmd:
    return Cmd(("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"),
               f"{ns}: IPv6 off")
