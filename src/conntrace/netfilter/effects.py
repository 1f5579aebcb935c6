"""Side effects rules produce while a packet is evaluated (attached to the trace step).

Targets call `ctx.emit(effect)`; the packet path and the observers act on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..packet import Packet


@dataclass
class LogLine:
    """A kernel log line from LOG (or conntrack's log_invalid), in dmesg's text."""

    text: str
    level: int = 4
    source: str = "LOG"  # "LOG", "TRACE", "nf_ct_proto_6", ...


@dataclass
class NflogMessage:
    group: int
    prefix: str
    packet: Packet


@dataclass
class GeneratedPacket:
    """A packet the host creates in response (REJECT's ICMP error or TCP reset).

    It is sent as a locally generated packet (OUTPUT path). With `attach_related`, it
    carries the triggering packet's conntrack as RELATED in the other direction, as
    nf_send_reset does with nf_ct_attach (net/ipv4/netfilter/nf_reject_ipv4.c)."""

    packet: Packet
    reason: str
    attach_related: bool = False
    related_ct: Any = None
    related_ctinfo: Any = None


@dataclass
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass
class Note:
    """A remark for the trace (e.g. 'CONNMARK --restore-mark: no conntrack, nothing done')."""

    text: str
    extra: dict = field(default_factory=dict)
