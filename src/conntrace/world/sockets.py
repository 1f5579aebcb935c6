"""Endpoints that behave like Linux sockets, as far as netfilter can see.

TCP: listeners answer SYN with SYN/ACK and complete the handshake; a closed port answers RST
(tcp_v4_send_reset); connect() retransmits an unanswered SYN after 1, 2, 4 ... s
(TCP_TIMEOUT_INIT, doubled, net.ipv4.tcp_syn_retries); the active closer keeps TIME_WAIT
for 60 s (TCP_TIMEWAIT_LEN). UDP: a bound socket receives, an echo server answers, a closed
port answers ICMP port unreachable (__udp4_lib_rcv). ICMP: echo requests get echo replies
(icmp_echo). Segments look like Linux's: a SYN carries MSS/SACK/TS/wscale options (60 bytes),
later segments carry timestamps (52 bytes), windows are 64240/65160 then scaled.

The socket layer never sees netfilter: it receives the packets the host delivered and sends
packets through the host's OUTPUT path (World.local_send).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..packet import (LINUX_ACK_OPTIONS, LINUX_SYN_OPTIONS, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST,
                      TCP_SYN, IcmpHeader, IPAddress, Packet, SkbMeta, TcpHeader, UdpHeader)

if TYPE_CHECKING:
    from .world import World

TCP_TIMEOUT_INIT = 1.0  # include/net/tcp.h
TCP_TIMEWAIT_LEN = 60.0
TCP_RTO_MAX = 120.0
TCP_SYNACK_RETRIES = 5  # net.ipv4.tcp_synack_retries default (include/net/tcp.h)
TCP_INVALID_RATELIMIT = 0.5  # net.ipv4.tcp_invalid_ratelimit default (HZ/2)
# Unacknowledged data on a sub-ms RTT path, seen on 6.18: a tail loss probe 0.208 s after the
# send (2*srtt + rto_min), the first RTO 0.208 s after that, then the RTO doubles
TCP_RTX_FIRST = 0.208
TCP_RETRIES2 = 15  # net.ipv4.tcp_retries2: give up retransmitting after this many
ECHO_WAIT = 1.0  # kernel/agent.py: a client waits this long for its payload to come back
SYNACK_OPTIONS = LINUX_SYN_OPTIONS
MAX_SEQ = 1 << 32


# icmp_err_convert (net/ipv4/icmp.c): destination-unreachable code -> (errno, fatal)
ICMP_UNREACH_ERR: dict[int, tuple[str, bool]] = {
    0: ("ENETUNREACH", False), 1: ("EHOSTUNREACH", False), 2: ("ENOPROTOOPT", True),
    3: ("ECONNREFUSED", True), 4: ("EMSGSIZE", False), 5: ("EOPNOTSUPP", False),
    6: ("ENETUNREACH", True), 7: ("EHOSTDOWN", True), 8: ("ENONET", True),
    9: ("ENETUNREACH", True), 10: ("EHOSTUNREACH", True), 11: ("ENETUNREACH", False),
    12: ("EHOSTUNREACH", False), 13: ("EHOSTUNREACH", True), 14: ("EHOSTUNREACH", True),
    15: ("EHOSTUNREACH", True),
}
# connect() errno -> step result (kernel/agent.py maps the same way)
CONNECT_RESULT = {"ECONNREFUSED": "refused", "ETIMEDOUT": "timeout", "EHOSTUNREACH": "unreachable",
                  "ENETUNREACH": "unreachable", "EHOSTDOWN": "unreachable"}


def tcp_icmp_errno(icmp_type: int, code: int) -> str | None:
    """tcp_v4_err (net/ipv4/tcp_ipv4.c): the error a SYN_SENT socket dies of, hard or soft;
    None when the ICMP message is ignored (fragmentation needed, source quench, redirect)."""
    if icmp_type == 3:
        return ICMP_UNREACH_ERR[code][0] if code <= 15 and code != 4 else None
    return {11: "EHOSTUNREACH", 12: "EPROTO"}.get(icmp_type)


def udp_icmp_errno(icmp_type: int, code: int) -> str | None:
    """__udp4_lib_err (net/ipv4/udp.c): a connected socket without IP_RECVERR is told hard
    errors only (host/net unreachable and time exceeded are ignored); None otherwise."""
    if icmp_type == 12:
        return "EPROTO"
    if icmp_type == 3:
        if code == 4:
            return "EMSGSIZE"  # path MTU discovery is on by default (IP_PMTUDISC_WANT)
        if code <= 15 and ICMP_UNREACH_ERR[code][1]:
            return ICMP_UNREACH_ERR[code][0]
    return None


@dataclass
class StepState:
    """What a client action learned so far (becomes a StepOutcome)."""

    index: int
    kind: str
    host: str
    result: str = "pending"
    replies: int = 0
    sent: int = 0
    local_addr: str | None = None
    local_port: int | None = None
    detail: str = ""
    server_saw: list = field(default_factory=list)
    expected: int = 1  # connections this step makes (tcp_connect count)
    results: dict = field(default_factory=dict)  # per-connection result -> how many


@dataclass
class TcpConn:
    host: str
    laddr: IPAddress
    lport: int
    raddr: IPAddress
    rport: int
    state: str  # SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT1 FIN_WAIT2 CLOSE_WAIT LAST_ACK TIME_WAIT CLOSED
    iss: int
    snd_nxt: int
    rcv_nxt: int = 0
    uid: int = 0
    gid: int = 0
    server: bool = False
    echo: bool = False
    step: StepState | None = None
    # client plan
    payload: int = 0
    close: str = "fin"
    hold: float = 0.0
    syn_retries: int = 6
    syn_sent: int = 0
    started: float = 0.0
    echoed: int = 0
    listener_name: str = ""
    # server side (request sock): SYN/ACK retransmissions by timer, a generation to re-arm it
    synack_timeouts: int = 0
    synack_gen: int = 0
    last_oow_ack: float | None = None
    # unacknowledged data (one range) and its retransmission timer (a generation re-arms it)
    rtx_seq: int | None = None
    rtx_len: int = 0
    rtx_count: int = 0
    rtx_gen: int = 0

    sock: object = None  # the host.Socket registered for lookups
    tag: int | None = None  # the scenario step this connection belongs to
    result: str | None = None

    def key(self) -> tuple:
        return (self.laddr, self.lport, self.raddr, self.rport)


class SocketLayer:
    """All sockets of one host."""

    def __init__(self, world: "World", host_name: str) -> None:
        self.world = world
        self.host_name = host_name
        self.tcp: dict[tuple, TcpConn] = {}
        self.udp_clients: dict[tuple, StepState] = {}  # (laddr, lport) -> step
        self.ping_clients: dict[int, StepState] = {}  # icmp id -> step

    @property
    def host(self):
        return self.world.hosts[self.host_name]

    # -- helpers ---------------------------------------------------------------------------
    def _add_conn(self, c: TcpConn) -> None:
        from ..host.host import Socket

        self.tcp[c.key()] = c
        c.sock = self.host.sockets.add(Socket(
            proto=6, addr=c.laddr, port=c.lport, uid=c.uid, gid=c.gid, listening=False,
            peer_addr=c.raddr, peer_port=c.rport,
            name=c.listener_name or f"connection to {c.raddr}:{c.rport}"))

    def _drop_conn(self, c: TcpConn) -> None:
        if self.tcp.get(c.key()) is c:
            del self.tcp[c.key()]
        if c.sock is not None:
            self.host.sockets.remove(c.sock)
        c.state = "CLOSED"

    def _tcp_packet(self, c: TcpConn, flags: int, seq: int, ack: int, payload: int = 0,
                    options: bytes | None = None, window: int | None = None) -> Packet:
        if flags & TCP_RST and options is None:
            options, window = b"", 0
        if options is None:
            options = SYNACK_OPTIONS if flags & TCP_SYN else LINUX_ACK_OPTIONS
        if window is None:
            window = (65160 if c.server else 64240) if flags & TCP_SYN else 502
        tcp = TcpHeader(sport=c.lport, dport=c.rport, flags=flags, seq=seq % MAX_SEQ,
                        ack_seq=ack % MAX_SEQ if flags & TCP_ACK else 0, window=window,
                        options=options)
        meta = SkbMeta(sock_uid=c.uid, sock_gid=c.gid)
        return Packet(src=c.laddr, dst=c.raddr, proto=6, l4=tcp, payload_len=payload,
                      ip_id=self.world.next_ip_id(), df=True, meta=meta, flow_tag=c.tag)

    def _send(self, pkt: Packet, label: str) -> None:
        pkt.label = label
        self.world.local_send(self.host_name, pkt)

    def ephemeral_port(self, proto: int, dst: IPAddress, dport: int) -> int:
        lo, hi = self.host.sysctls.port_range()
        used = {k[1] for k in self.tcp} if proto == 6 else {k[1] for k in self.udp_clients}
        for _ in range(hi - lo + 1):
            port = self.world.rng.randint(lo, hi)
            if port not in used:
                return port
        return lo

    def source_for(self, dst: IPAddress) -> IPAddress:
        rt = self.host.devices.lookup(dst)
        return rt.src or ipaddress.ip_address("0.0.0.0")

    # -- TCP client ------------------------------------------------------------------------
    def tcp_connect(self, step: StepState, dst: IPAddress, dport: int, *, sport: int | None,
                    src: IPAddress | None, uid: int, gid: int, payload: int, close: str,
                    hold: float, syn_retries: int) -> None:
        laddr = src or self.source_for(dst)
        lport = sport or self.ephemeral_port(6, dst, dport)
        key = (laddr, lport, dst, dport)
        old = self.tcp.get(key)
        iss = None
        if old is not None and old.state == "TIME_WAIT" and sport:
            # a bound port may take over its own TIME_WAIT 4-tuple (tcp_twsk_unique with
            # twp == NULL, timestamps seen); the new ISN follows the old one by 65537
            iss = (old.snd_nxt + 65535 + 2) % MAX_SEQ
            self._drop_conn(old)
        elif old is not None and old.state != "CLOSED":
            step.result = "error"
            step.detail = f"EADDRNOTAVAIL: {laddr}:{lport} -> {dst}:{dport} is in use ({old.state})"
            return
        c = TcpConn(self.host_name, laddr, lport, dst, dport, "SYN_SENT",
                    iss=self.world.rng.getrandbits(32) if iss is None else iss, snd_nxt=0,
                    uid=uid, gid=gid, step=step,
                    payload=payload, close=close, hold=hold, syn_retries=syn_retries,
                    tag=step.index, started=self.world.now)
        c.snd_nxt = c.iss + 1
        self._add_conn(c)
        step.local_addr, step.local_port = str(laddr), lport
        self._send_syn(c)

    def _send_syn(self, c: TcpConn) -> None:
        c.syn_sent += 1
        self._send(self._tcp_packet(c, TCP_SYN, c.iss, 0), "SYN" if c.syn_sent == 1 else
                   f"SYN retransmission {c.syn_sent - 1}")
        self.world.timer(self._syn_rto(c.syn_sent - 1), lambda: self._syn_timer(c, c.syn_sent))

    def _syn_rto(self, retransmits: int) -> float:
        """The wait after the SYN sent after `retransmits` retransmissions: 1 s while
        retransmits <= net.ipv4.tcp_syn_linear_timeouts, then doubling (tcp_retransmit_timer;
        seen on 6.18: SYNs at 0 1 2 3 4 5 7 11 19 ... s)."""
        linear = self.host.sysctls.get_int("net.ipv4.tcp_syn_linear_timeouts")
        if retransmits <= linear:
            return TCP_TIMEOUT_INIT
        return min(TCP_TIMEOUT_INIT * 2 ** (retransmits - linear), TCP_RTO_MAX)

    @staticmethod
    def _syn_give_up_after(retries: int) -> float:
        """tcp_model_timeout: connect() fails at the first timer at or after this time."""
        thresh = 6  # ilog2(TCP_RTO_MAX / TCP_TIMEOUT_INIT)
        if retries <= thresh:
            return ((2 << retries) - 1) * TCP_TIMEOUT_INIT
        return ((2 << thresh) - 1) * TCP_TIMEOUT_INIT + (retries - thresh) * TCP_RTO_MAX

    def _syn_timer(self, c: TcpConn, attempt: int) -> None:
        if c.state != "SYN_SENT" or c.syn_sent != attempt:
            return
        if self.world.now - c.started >= self._syn_give_up_after(c.syn_retries) - 1e-9:
            self._drop_conn(c)
            self._finish_step(c, "timeout", "no answer to the SYN (connect timed out)")
            return
        self._send_syn(c)

    @staticmethod
    def _finish_step(c: TcpConn, result: str, detail: str = "") -> None:
        """A connection's result is decided once (connected, refused, timeout...); a step
        that makes several connections counts them."""
        if c.step is None or c.result is not None:
            return
        c.result = result
        st = c.step
        st.results[result] = st.results.get(result, 0) + 1
        if st.result == "pending":
            st.result = result
        if detail and not st.detail:
            st.detail = detail

    def _client_established(self, c: TcpConn) -> None:
        self._finish_step(c, "connected")
        if c.payload:
            self._send_data(c, c.payload, f"data {c.payload} bytes")
            if c.step is not None:
                c.step.sent += c.payload
            # the client gives up waiting for the echo after ECHO_WAIT, then holds and closes
            self.world.timer(ECHO_WAIT, lambda: self._echo_wait_over(c))
        else:
            self._schedule_close(c)

    def _echo_wait_over(self, c: TcpConn) -> None:
        if c.echoed < c.payload:
            self._schedule_close(c)

    def _send_data(self, c: TcpConn, n: int, label: str) -> None:
        seq = c.snd_nxt
        self._send(self._tcp_packet(c, TCP_ACK | TCP_PSH, seq, c.rcv_nxt, n), label)
        c.snd_nxt += n
        if c.rtx_seq is None:
            c.rtx_seq, c.rtx_count = seq, 0
        c.rtx_len = c.snd_nxt - c.rtx_seq
        self._arm_rtx(c)

    def _arm_rtx(self, c: TcpConn) -> None:
        c.rtx_gen += 1
        gen = c.rtx_gen
        delay = min(TCP_RTX_FIRST * 2 ** max(c.rtx_count - 1, 0), TCP_RTO_MAX)
        self.world.timer(delay, lambda: self._rtx_timer(c, gen))

    def _rtx_timer(self, c: TcpConn, gen: int) -> None:
        if gen != c.rtx_gen or c.rtx_seq is None or c.state in ("CLOSED", "TIME_WAIT"):
            return
        if c.rtx_count >= TCP_RETRIES2:
            return
        c.rtx_count += 1
        self._send(self._tcp_packet(c, TCP_ACK | TCP_PSH, c.rtx_seq, c.rcv_nxt, c.rtx_len),
                   f"data retransmission {c.rtx_count}")
        self._arm_rtx(c)

    def _schedule_close(self, c: TcpConn) -> None:
        if c.close == "open":
            return
        self.world.timer(max(c.hold, 0.0), lambda: self._active_close(c))

    def _active_close(self, c: TcpConn) -> None:
        if c.state != "ESTABLISHED":
            return
        if c.close == "rst":
            # tcp_send_active_reset goes through tcp_transmit_skb: timestamps, the usual window
            self._send(self._tcp_packet(c, TCP_RST | TCP_ACK, c.snd_nxt, c.rcv_nxt,
                                        options=LINUX_ACK_OPTIONS), "RST (abort)")
            self._drop_conn(c)
            return
        self._send(self._tcp_packet(c, TCP_FIN | TCP_ACK, c.snd_nxt, c.rcv_nxt), "FIN")
        c.snd_nxt += 1
        c.state = "FIN_WAIT1"

    # -- TCP input -------------------------------------------------------------------------
    def tcp_input(self, pkt: Packet) -> None:
        tcp = pkt.tcp
        key = (pkt.dst, tcp.dport, pkt.src, tcp.sport)
        c = self.tcp.get(key)
        if c is None or c.state == "CLOSED":
            self._tcp_no_conn(pkt)
            return
        flags = tcp.flags
        if flags & TCP_RST:
            # a RST also ends TIME_WAIT (tcp_timewait_state_process, RFC 1337 not applied)
            old_state = c.state
            self._drop_conn(c)
            if old_state == "SYN_SENT":
                self._finish_step(c, "refused", "connection refused (RST)")
            elif old_state != "TIME_WAIT":
                self._finish_step(c, "reset", "connection reset by peer")
            return
        if c.state == "SYN_SENT":
            if flags & TCP_SYN and flags & TCP_ACK and tcp.ack_seq == c.snd_nxt % MAX_SEQ:
                c.rcv_nxt = tcp.seq + 1
                c.state = "ESTABLISHED"
                self._send(self._tcp_packet(c, TCP_ACK, c.snd_nxt, c.rcv_nxt), "ACK")
                self._client_established(c)
            return
        if c.state == "SYN_RECV":
            if flags & TCP_ACK and tcp.ack_seq == c.snd_nxt % MAX_SEQ:
                c.state = "ESTABLISHED"
                self._server_saw(c)
            elif flags & TCP_SYN and not flags & TCP_ACK:
                # retransmitted SYN (tcp_check_req): the SYN/ACK again, unless one was resent
                # this way less than tcp_invalid_ratelimit ago; resending re-arms the timer
                last = c.last_oow_ack
                if last is None or self.world.now - last >= TCP_INVALID_RATELIMIT:
                    c.last_oow_ack = self.world.now
                    self._send(self._tcp_packet(c, TCP_SYN | TCP_ACK, c.iss, c.rcv_nxt),
                               "SYN/ACK (again)")
                    self._arm_synack_timer(c)
                return
            else:
                return
        if c.rtx_seq is not None and flags & TCP_ACK and \
                (tcp.ack_seq - (c.rtx_seq + c.rtx_len)) % MAX_SEQ < 1 << 31:
            c.rtx_seq = None  # all data acknowledged
            c.rtx_gen += 1
        seg_len = pkt.payload_len
        end = (tcp.seq + seg_len) % MAX_SEQ
        if seg_len and c.state in ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2") and \
                (c.rcv_nxt - end) % MAX_SEQ < 1 << 31:
            # data already received (a retransmission): an immediate ACK with a D-SACK
            # block for it (tcp_data_queue -> tcp_dsack_set), nothing for the application
            dsack = bytes.fromhex("0101050a") + (tcp.seq % MAX_SEQ).to_bytes(4, "big") + \
                end.to_bytes(4, "big")
            self._send(self._tcp_packet(c, TCP_ACK, c.snd_nxt, c.rcv_nxt,
                                        options=LINUX_ACK_OPTIONS + dsack), "ACK (duplicate data)")
            seg_len = 0
        elif seg_len and c.state in ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"):
            c.rcv_nxt = tcp.seq + seg_len
            # a young connection is in quickack mode: the data is ACKed at once, before the
            # application reads it (and before an echo server answers)
            self._send(self._tcp_packet(c, TCP_ACK, c.snd_nxt, c.rcv_nxt), "ACK")
            if c.server and c.echo:
                self._send_data(c, seg_len, f"echo {seg_len} bytes")
            elif not c.server:
                c.echoed += seg_len
                if c.step is not None:
                    c.step.replies += seg_len
                if c.echoed >= c.payload and c.state == "ESTABLISHED":
                    self._schedule_close(c)
        if flags & TCP_ACK and c.state == "FIN_WAIT1" and tcp.ack_seq == c.snd_nxt % MAX_SEQ:
            c.state = "FIN_WAIT2"
        if flags & TCP_ACK and c.state == "LAST_ACK" and tcp.ack_seq == c.snd_nxt % MAX_SEQ:
            self._drop_conn(c)
            return
        if flags & TCP_FIN:
            c.rcv_nxt = tcp.seq + seg_len + 1
            if c.state == "ESTABLISHED":
                # the application closes at once: ACK and FIN in one segment
                self._send(self._tcp_packet(c, TCP_FIN | TCP_ACK, c.snd_nxt, c.rcv_nxt), "FIN")
                c.snd_nxt += 1
                c.state = "LAST_ACK"
            elif c.state in ("FIN_WAIT1", "FIN_WAIT2"):
                self._send(self._tcp_packet(c, TCP_ACK, c.snd_nxt, c.rcv_nxt), "ACK")
                c.state = "TIME_WAIT"
                self.world.timer(TCP_TIMEWAIT_LEN, lambda: self._tw_done(c))

    def _tw_done(self, c: TcpConn) -> None:
        if self.tcp.get(c.key()) is c and c.state == "TIME_WAIT":
            self._drop_conn(c)

    def _tcp_no_conn(self, pkt: Packet) -> None:
        tcp = pkt.tcp
        flags = tcp.flags
        if flags & TCP_SYN and not flags & (TCP_ACK | TCP_RST):
            lst = self.host.sockets.lookup_listener(6, pkt.dst, tcp.dport)
            if lst is not None:
                c = TcpConn(self.host_name, pkt.dst, tcp.dport, pkt.src, tcp.sport, "SYN_RECV",
                            iss=self.world.rng.getrandbits(32), snd_nxt=0, uid=lst.uid,
                            gid=lst.gid, server=True, echo=lst.echo,
                            listener_name=lst.name, tag=pkt.flow_tag)
                c.snd_nxt = c.iss + 1
                c.rcv_nxt = tcp.seq + 1
                self._add_conn(c)
                self._send(self._tcp_packet(c, TCP_SYN | TCP_ACK, c.iss, c.rcv_nxt), "SYN/ACK")
                self._arm_synack_timer(c)
                return
        if flags & TCP_RST:
            return
        # tcp_v4_send_reset
        if flags & TCP_ACK:
            seq, ack, rflags = tcp.ack_seq, 0, TCP_RST
        else:
            seq = 0
            ack = tcp.seq + pkt.payload_len + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)
            rflags = TCP_RST | TCP_ACK
        rst = Packet(src=pkt.dst, dst=pkt.src, proto=6,
                     l4=TcpHeader(sport=tcp.dport, dport=tcp.sport, flags=rflags, seq=seq,
                                  ack_seq=ack % MAX_SEQ, window=0),
                     ip_id=0, df=True, label="RST (closed port)",
                     meta=SkbMeta(sock_no_file=True))  # tcp_v4_send_reset: the TCP ctl socket
        self.world.local_send(self.host_name, rst)

    def _arm_synack_timer(self, c: TcpConn) -> None:
        """(Re)arm the request's timer: TCP_TIMEOUT_INIT << timeouts so far (reqsk_timeout)."""
        c.synack_gen += 1
        gen = c.synack_gen
        delay = min(TCP_TIMEOUT_INIT * (1 << c.synack_timeouts), TCP_RTO_MAX)
        self.world.timer(delay, lambda: self._synack_timer(c, gen))

    def _synack_timer(self, c: TcpConn, gen: int) -> None:
        """reqsk_timer_handler (net/ipv4/inet_connection_sock.c): an unanswered SYN/ACK is
        resent at 1, 3, 7, 15, 31 s; after tcp_synack_retries timeouts the request goes."""
        if c.state != "SYN_RECV" or gen != c.synack_gen or self.tcp.get(c.key()) is not c:
            return
        if c.synack_timeouts >= TCP_SYNACK_RETRIES:
            self._drop_conn(c)
            return
        self._send(self._tcp_packet(c, TCP_SYN | TCP_ACK, c.iss, c.rcv_nxt),
                   f"SYN/ACK retransmission {c.synack_timeouts + 1}")
        c.synack_timeouts += 1
        self._arm_synack_timer(c)

    def _server_saw(self, c: TcpConn) -> None:
        from ..scenario.outcome import ServerSaw

        self.world.server_saw(ServerSaw(self.host_name, "tcp", str(c.laddr), c.lport,
                                        str(c.raddr), c.rport), c.tag)

    # -- UDP -------------------------------------------------------------------------------
    def udp_send(self, step: StepState, dst: IPAddress, dport: int, *, sport: int | None,
                 src: IPAddress | None, uid: int, gid: int, payload: int) -> None:
        laddr = src or self.source_for(dst)
        if step.local_port is None:
            step.local_port = sport or self.ephemeral_port(17, dst, dport)
            step.local_addr = str(laddr)
            self.udp_clients[(laddr, step.local_port)] = step
        pkt = Packet(src=laddr, dst=dst, proto=17,
                     l4=UdpHeader(sport=step.local_port, dport=dport), payload_len=payload,
                     ip_id=self.world.next_ip_id(), df=True,
                     meta=SkbMeta(sock_uid=uid, sock_gid=gid), label=f"datagram {step.sent + 1}",
                     flow_tag=step.index)
        self._count_sent(step, self.world.local_send(self.host_name, pkt))

    @staticmethod
    def _count_sent(step: StepState, err: str | None) -> None:
        """udp_sendmsg/raw_sendmsg return ip_local_out's error: a datagram dropped in
        OUTPUT/POSTROUTING (DROP, REJECT) fails send() with EPERM and is not sent."""
        if err is None:
            step.sent += 1
        elif err not in step.detail:
            step.detail = f"{step.detail},{err}" if step.detail else err

    def udp_input(self, pkt: Packet) -> None:
        udp = pkt.udp
        client = self.udp_clients.get((pkt.dst, udp.dport))
        if client is not None:
            client.replies += 1
            return
        lst = self.host.sockets.lookup_listener(17, pkt.dst, udp.dport)
        if lst is None:
            if self.host.devices.addr_type(pkt.dst).name in ("BROADCAST", "MULTICAST"):
                return
            self.world.icmp_error(self.host_name, pkt, 3, 3, "port unreachable")
            return
        from ..scenario.outcome import ServerSaw

        self.world.server_saw(ServerSaw(self.host_name, "udp", str(pkt.dst), udp.dport,
                                        str(pkt.src), udp.sport), pkt.flow_tag)
        if lst.echo:
            reply = Packet(src=pkt.dst, dst=pkt.src, proto=17,
                           l4=UdpHeader(sport=udp.dport, dport=udp.sport),
                           payload_len=pkt.payload_len, ip_id=self.world.next_ip_id(), df=True,
                           meta=SkbMeta(sock_uid=lst.uid, sock_gid=lst.gid), label="echo",
                           flow_tag=pkt.flow_tag)
            self.world.local_send(self.host_name, reply)

    # -- ICMP ------------------------------------------------------------------------------
    def ping(self, step: StepState, dst: IPAddress, *, src: IPAddress | None, icmp_id: int,
             seq: int, payload: int, uid: int, gid: int) -> None:
        laddr = src or self.source_for(dst)
        self.ping_clients[icmp_id] = step
        step.local_addr, step.local_port = str(laddr), icmp_id  # local_port: the echo id
        pkt = Packet(src=laddr, dst=dst, proto=1, l4=IcmpHeader(type=8, code=0, id=icmp_id, seq=seq),
                     payload_len=payload, ip_id=self.world.next_ip_id(), df=True,
                     meta=SkbMeta(sock_uid=uid, sock_gid=gid), label=f"echo request {seq}",
                     flow_tag=step.index)
        self._count_sent(step, self.world.local_send(self.host_name, pkt))

    def icmp_input(self, pkt: Packet) -> None:
        icmp = pkt.icmp
        if icmp.type == 8:
            reply = Packet(src=pkt.dst, dst=pkt.src, proto=1,
                           l4=IcmpHeader(type=0, code=0, id=icmp.id, seq=icmp.seq),
                           payload_len=pkt.payload_len, ip_id=self.world.next_ip_id(), df=False,
                           meta=SkbMeta(sock_no_file=True),  # icmp_reply: the icmp socket
                           label="echo reply")
            self.world.local_send(self.host_name, reply)
        elif icmp.type == 13 and pkt.payload_len >= 4:
            # icmp_timestamp (net/ipv4/icmp.c): type 14 with the three 4-byte timestamps
            reply = Packet(src=pkt.dst, dst=pkt.src, proto=1,
                           l4=IcmpHeader(type=14, code=0, id=icmp.id, seq=icmp.seq),
                           payload_len=12, ip_id=self.world.next_ip_id(), df=False,
                           label="timestamp reply")
            self.world.local_send(self.host_name, reply)
        elif icmp.type == 0:
            step = self.ping_clients.get(icmp.id)
            if step is not None:
                step.replies += 1
        elif icmp.is_error and icmp.embedded is not None:
            self._icmp_error_to_socket(pkt)

    def _icmp_error_to_socket(self, pkt: Packet) -> None:
        inner = pkt.icmp.embedded
        icmp = pkt.icmp
        if inner.proto == 6 and inner.tcp is not None:
            c = self.tcp.get((inner.src, inner.tcp.sport, inner.dst, inner.tcp.dport))
            err = tcp_icmp_errno(icmp.type, icmp.code)
            if c is not None and c.state == "SYN_SENT" and err is not None:
                self._drop_conn(c)
                self._finish_step(c, CONNECT_RESULT.get(err, "error"),
                                  f"{err} (ICMP type {icmp.type} code {icmp.code})")
        elif inner.proto == 17 and inner.udp is not None:
            step = self.udp_clients.get((inner.src, inner.udp.sport))
            err = udp_icmp_errno(icmp.type, icmp.code)
            if step is not None and err is not None:
                step.detail = f"ICMP type {icmp.type} code {icmp.code} ({err})"
                step.result = "unreachable"
        elif inner.proto == 1 and inner.icmp is not None:
            # a raw ICMP socket reads the error itself (the harness' ping counts these types)
            step = self.ping_clients.get(inner.icmp.id)
            if step is not None and icmp.type in (3, 4, 5, 11, 12):
                step.result = "unreachable"

    # -- dispatch --------------------------------------------------------------------------
    def deliver(self, pkt: Packet) -> None:
        if pkt.is_fragment:
            return
        if pkt.tcp is not None:
            self.tcp_input(pkt)
        elif pkt.udp is not None:
            self.udp_input(pkt)
        elif pkt.icmp is not None:
            self.icmp_input(pkt)
        elif self.host.devices.addr_type(pkt.dst).name == "LOCAL":
            self.world.icmp_error(self.host_name, pkt, 3, 2, "protocol unreachable")


Callback = Callable[[], None]
