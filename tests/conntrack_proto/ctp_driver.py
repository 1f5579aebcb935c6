"""A minimal stand-in for the conntrack core, enough to drive one entry through a tracker:
it applies L4Results the way l4.py documents (refresh, ASSURED, events, kill, SEEN_REPLY)."""

from __future__ import annotations

from dataclasses import dataclass, field

from conntrace.conntrack.defs import CtInfo, Dir, Status
from conntrace.conntrack.entry import ConntrackEntry, tuple_of
from conntrace.conntrack.l4 import L4Result, TrackEnv, tracker_for
from conntrace.host.sysctl import Sysctls
from conntrace.netfilter.hooks import Hook
from conntrace.packet import (IcmpHeader, LINUX_ACK_OPTIONS, LINUX_SYN_OPTIONS, Packet,
                              TcpHeader, UdpHeader, ip)

CLIENT, SERVER = "10.0.1.2", "10.0.2.2"


def env(now: float = 0.0, hook: Hook = Hook.PREROUTING, **sysctls: int) -> TrackEnv:
    s = Sysctls({f"net.netfilter.{k}": v for k, v in sysctls.items()})
    return TrackEnv(now, s, hook)


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 0, ack: int = 0,
        win: int = 502, opts: bytes = LINUX_ACK_OPTIONS, data: int = 0) -> Packet:
    return Packet(ip(src), ip(dst), 6, TcpHeader(sport, dport, flags, seq, ack, win,
                                                 options=opts), payload_len=data)


def udp(src: str, dst: str, sport: int, dport: int, checksum: int | None = None) -> Packet:
    return Packet(ip(src), ip(dst), 17, UdpHeader(sport, dport, checksum), payload_len=10)


def icmp(src: str, dst: str, type_: int, code: int = 0, ident: int = 0,
         embedded: Packet | None = None, proto: int = 1) -> Packet:
    return Packet(ip(src), ip(dst), proto, IcmpHeader(type_, code, ident, embedded=embedded))


@dataclass
class Flow:
    """One entry plus the bookkeeping the core does around the tracker."""

    ct: ConntrackEntry
    sysctls: dict = field(default_factory=dict)
    now: float = 0.0
    results: list[L4Result] = field(default_factory=list)
    events: list[set[str]] = field(default_factory=list)
    killed: bool = False

    @classmethod
    def open(cls, pkt: Packet, now: float = 0.0, **sysctls: int) -> tuple["Flow | None", L4Result]:
        """Create the entry for `pkt` (new + packet + confirm). Returns (None, result) if
        the tracker refuses it."""
        t = tuple_of(pkt)
        inv = t.invert()
        assert inv is not None
        ct = ConntrackEntry(t, inv, created=now)
        flow = cls(ct, dict(sysctls), now)
        e = flow.env()
        tr = tracker_for(pkt.proto)
        err = tr.error(pkt, e)
        if err is not None:
            return None, err
        refused = tr.new(ct, pkt, e)
        if refused is not None:
            return None, refused
        res = flow._apply(pkt, CtInfo.NEW)
        if res.verdict != "accept":
            return None, res
        ct.status |= Status.CONFIRMED
        ct.timeout = now + ct.timeout  # confirm: the relative timeout becomes absolute
        return flow, res

    def env(self, hook: Hook = Hook.PREROUTING) -> TrackEnv:
        return env(self.now, hook, **self.sysctls)

    def ctinfo(self, pkt: Packet) -> CtInfo:
        if tuple_of(pkt) == self.ct.reply_tuple:
            return CtInfo.ESTABLISHED_REPLY
        return CtInfo.ESTABLISHED if self.ct.seen_reply else CtInfo.NEW

    def send(self, pkt: Packet, at: float | None = None, hook: Hook = Hook.PREROUTING) -> L4Result:
        if at is not None:
            self.now = at
        tr = tracker_for(pkt.proto)
        err = tr.error(pkt, self.env(hook))
        if err is not None:
            return err
        return self._apply(pkt, self.ctinfo(pkt), hook)

    def _apply(self, pkt: Packet, info: CtInfo, hook: Hook = Hook.PREROUTING) -> L4Result:
        res = tracker_for(pkt.proto).packet(self.ct, pkt, info, self.env(hook))
        self.results.append(res)
        if res.timeout is not None and not self.ct.status & Status.FIXED_TIMEOUT:
            self.ct.timeout = (self.now + res.timeout) if self.ct.confirmed else res.timeout
        if res.verdict == "accept":
            if res.set_assured:
                self.ct.status |= Status.ASSURED
            self.events.append(set(res.events))
            if res.kill:
                self.killed = True
            if info is CtInfo.ESTABLISHED_REPLY and not self.ct.seen_reply:
                self.ct.status |= Status.SEEN_REPLY
        return res

    @property
    def remaining(self) -> float:
        return round(self.ct.remaining(self.now), 6)

    @property
    def state(self) -> str | None:
        return tracker_for(self.ct.proto).state_name(self.ct)


class Tcp:
    """A client/server TCP conversation with real sequence numbers."""

    def __init__(self, cport: int = 40000, sport: int = 80, cisn: int = 1000,
                 sisn: int = 500000):
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = cisn, sisn  # next sequence number each side sends

    def c(self, flags: int, data: int = 0, win: int = 502, opts: bytes = LINUX_ACK_OPTIONS,
          seq: int | None = None, ack: int | None = None) -> Packet:
        p = tcp(CLIENT, SERVER, self.cport, self.sport, flags,
                self.cseq if seq is None else seq, self.sseq if ack is None else ack,
                win, opts, data)
        if seq is None:
            self.cseq += data + bool(flags & 0x02) + bool(flags & 0x01)
        return p

    def s(self, flags: int, data: int = 0, win: int = 509, opts: bytes = LINUX_ACK_OPTIONS,
          seq: int | None = None, ack: int | None = None) -> Packet:
        p = tcp(SERVER, CLIENT, self.sport, self.cport, flags,
                self.sseq if seq is None else seq, self.cseq if ack is None else ack,
                win, opts, data)
        if seq is None:
            self.sseq += data + bool(flags & 0x02) + bool(flags & 0x01)
        return p

    def syn(self) -> Packet:
        return self.c(0x02, win=64240, opts=LINUX_SYN_OPTIONS, ack=0)

    def synack(self) -> Packet:
        return self.s(0x12, win=65160, opts=LINUX_SYN_OPTIONS)


def handshake(**sysctls: int) -> tuple[Flow, Tcp]:
    conv = Tcp()
    flow, res = Flow.open(conv.syn(), **sysctls)
    assert flow is not None, res
    assert flow.send(conv.synack(), at=0.01).verdict == "accept"
    assert flow.send(conv.c(0x10), at=0.02).verdict == "accept"
    return flow, conv


__all__ = ["Flow", "Tcp", "handshake", "env", "tcp", "udp", "icmp", "CLIENT", "SERVER", "Dir"]
