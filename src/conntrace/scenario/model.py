"""The scenario data model: hosts, links and a traffic timeline (docs/scenario.md).

The same objects drive the model (`world/`) and the real kernel (`kernel/`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..packet import IPAddress


@dataclass(frozen=True)
class Where:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class IfaceSpec:
    name: str
    mac: str
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    mtu: int = 1500


@dataclass
class RouteSpec:
    """One `ip route` line, e.g. `default via 10.0.1.1`, `10.9.0.0/16 via 10.0.2.3 dev eth1`,
    `blackhole 10.66.0.0/16`."""

    text: str
    where: Where | None = None


@dataclass
class ListenerSpec:
    """A socket a server process has open. TCP: accepts, then echoes what it receives when
    `echo` is true, and closes when the peer closes. UDP: replies to each datagram when `echo`."""

    proto: str  # "tcp" | "udp"
    port: int
    addr: IPAddress | None = None  # None: all addresses
    uid: int = 0
    gid: int = 0
    echo: bool = True
    transparent: bool = False  # IP_TRANSPARENT (TPROXY targets)
    where: Where | None = None


@dataclass
class HostSpec:
    name: str
    interfaces: list[IfaceSpec] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)
    sysctls: dict[str, Any] = field(default_factory=dict)
    rules: str | None = None  # iptables-save / iptables-restore text
    rules_origin: str = ""  # the file the rules came from (the scenario or a rules_file)
    rules_line_offset: int = 0  # inline rules: their first line is this many lines into origin
    ipsets: str | None = None  # `ipset save` text
    listeners: list[ListenerSpec] = field(default_factory=list)
    where: Where | None = None


@dataclass
class LinkSpec:
    """`veth`: exactly two ends. `segment`: an L2 segment (a bridge) joining several ends."""

    kind: str
    ends: list[tuple[str, str]]  # (host, interface)
    name: str = ""
    where: Where | None = None


@dataclass
class Step:
    """One timeline entry. `kind` is one of STEP_KINDS; `args` holds its typed arguments."""

    at: float
    kind: str
    host: str | None
    args: dict[str, Any]
    where: Where | None = None
    name: str = ""  # label for reports ("step 3: tcp_connect client -> 10.0.1.1:8080")

    def label(self, index: int) -> str:
        return self.name or f"#{index} {self.kind}"


# What each step kind means, for the docs and the loader.
STEP_KINDS = {
    "tcp_connect": "full handshake from `from` to `to` (ip:port); optional `payload` bytes; "
                   "close by `fin`, `rst` or leave `open`; fixed `sport` or from ip_local_port_range",
    "udp": "send `count` datagrams of `payload` bytes from `from` to `to`; the server's UDP "
           "listener answers each when it echoes",
    "ping": "ICMP echo requests from `from` to `to`",
    "packet": "one crafted packet (the `conntrace trace` packet syntax) sent by `from`, or "
              "injected on `host`'s interface `in` as if it came off the wire",
    "replay": "replay a pcap/pcapng at `host`'s interface `in`, with its timestamps",
    "conntrack_flush": "conntrack -F on `host`",
    "rules": "load `rules` text on `host` (iptables-restore, with `noflush`)",
    "sysctl": "set sysctls on `host`",
}


@dataclass
class Scenario:
    name: str
    file: str
    seed: int = 0
    description: str = ""
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    links: list[LinkSpec] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    # virtual seconds to keep running after the last step (timeouts, retransmissions)
    run_until: float | None = None
