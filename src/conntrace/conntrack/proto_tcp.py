"""The TCP tracker (net/netfilter/nf_conntrack_proto_tcp.c, Linux 6.12/6.18).

State machine: TCP_CONNTRACKS[dir][flag class][state] below. Window tracking follows
tcp_in_window: per direction td_end (highest seq+len sent), td_maxend (highest right edge the
peer allowed), td_maxwin (largest window seen), td_maxack, td_scale (from the SYN's
window-scale option, used only when both SYNs carry it).

Not modelled: NAT sequence adjustment (seqadj, only set by helpers), SYN proxy, cttimeout
policies (the sysctl timeouts always apply), flow offload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from ..packet import (TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
                      Packet, TcpHeader)
from .defs import CtInfo, Dir, Status, TcpState
from .l4 import L4Result, TrackEnv, invalid

if TYPE_CHECKING:
    from .entry import ConntrackEntry

_U32 = 0xFFFFFFFF


def _u32(x: int) -> int:
    return x & _U32


def before(a: int, b: int) -> bool:
    """Sequence-space a < b (include/net/tcp.h before(): (s32)(a - b) < 0)."""
    return ((a - b) & _U32) >= 0x80000000


def after(a: int, b: int) -> bool:
    return before(b, a)


class TcpIndex(IntEnum):
    """enum tcp_bit_set: the flag class of a segment, the table's middle index."""

    SYN = 0
    SYNACK = 1
    FIN = 2
    ACK = 3
    RST = 4
    NONE = 5


# IP_CT_TCP_FLAG_* (include/uapi/linux/netfilter/nf_conntrack_tcp.h)
FLAG_WINDOW_SCALE = 0x01
FLAG_SACK_PERM = 0x02
FLAG_CLOSE_INIT = 0x04
FLAG_BE_LIBERAL = 0x08
FLAG_DATA_UNACKNOWLEDGED = 0x10
FLAG_MAXACK_SET = 0x20
FLAG_EXP_CHALLENGE_ACK = 0x40
FLAG_SIMULTANEOUS_OPEN = 0x80

TCP_MAX_WSCALE = 14  # include/net/tcp.h
MAXACKWINCONST = 66000  # lower bound of the ACK window, nf_conntrack_proto_tcp.c

# --- the transition table: tcp_conntracks[2][6][TCP_CONNTRACK_MAX] (nf_conntrack_proto_tcp.c)
sNO, sSS, sSR, sES, sFW = (TcpState.NONE, TcpState.SYN_SENT, TcpState.SYN_RECV,
                           TcpState.ESTABLISHED, TcpState.FIN_WAIT)
sCW, sLA, sTW, sCL, sS2 = (TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT,
                           TcpState.CLOSE, TcpState.SYN_SENT2)
sIV, sIG = TcpState.MAX, TcpState.IGNORE

TCP_CONNTRACKS: tuple[tuple[tuple[TcpState, ...], ...], ...] = (
    (  # ORIGINAL      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),  # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
    (  # REPLY         sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),  # syn
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
)

# --- timeouts per state, by sysctl (tcp_timeouts[] and nf_conntrack_standalone.c). NONE uses
# the SYN_SENT value (timeouts[0]); SYN_SENT2 has no sysctl (cttimeout only): 2 minutes.
TCP_TIMEOUT_SYSCTLS: dict[TcpState, str] = {
    TcpState.NONE: "nf_conntrack_tcp_timeout_syn_sent",
    TcpState.SYN_SENT: "nf_conntrack_tcp_timeout_syn_sent",
    TcpState.SYN_RECV: "nf_conntrack_tcp_timeout_syn_recv",
    TcpState.ESTABLISHED: "nf_conntrack_tcp_timeout_established",
    TcpState.FIN_WAIT: "nf_conntrack_tcp_timeout_fin_wait",
    TcpState.CLOSE_WAIT: "nf_conntrack_tcp_timeout_close_wait",
    TcpState.LAST_ACK: "nf_conntrack_tcp_timeout_last_ack",
    TcpState.TIME_WAIT: "nf_conntrack_tcp_timeout_time_wait",
    TcpState.CLOSE: "nf_conntrack_tcp_timeout_close",
    TcpState.RETRANS: "nf_conntrack_tcp_timeout_max_retrans",
    TcpState.UNACK: "nf_conntrack_tcp_timeout_unacknowledged",
}
TCP_FIXED_TIMEOUTS: dict[TcpState, float] = {TcpState.SYN_SENT2: 120.0}

# tcp_valid_flags[]: the only legal combinations once PSH, ECE and CWR are masked out
TCP_VALID_FLAGS = frozenset({
    TCP_SYN, TCP_SYN | TCP_URG, TCP_SYN | TCP_ACK,
    TCP_RST, TCP_RST | TCP_ACK,
    TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK | TCP_URG,
    TCP_ACK, TCP_ACK | TCP_URG,
})

# TCP option kinds
TCPOPT_EOL, TCPOPT_NOP, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_SACK = 0, 1, 3, 4, 5
_TSTAMP_ONLY_PREFIX = bytes((TCPOPT_NOP, TCPOPT_NOP, 8, 10))  # NOP NOP TIMESTAMP(10)


@dataclass(slots=True)
class TcpDirState:
    """struct ip_ct_tcp_state: what conntrack knows about one direction's sender."""

    td_end: int = 0
    td_maxend: int = 0
    td_maxwin: int = 0
    td_maxack: int = 0
    td_scale: int = 0
    flags: int = 0

    def reset(self) -> None:
        """nf_ct_tcp_state_reset: forget the window, keep only BE_LIBERAL."""
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = self.td_scale = 0
        self.flags &= FLAG_BE_LIBERAL


@dataclass(slots=True)
class TcpConntrack:
    """struct ip_ct_tcp (ct.proto_state of a TCP entry)."""

    state: TcpState = TcpState.NONE
    seen: list[TcpDirState] = field(default_factory=lambda: [TcpDirState(), TcpDirState()])
    last_dir: int = 0
    last_index: TcpIndex = TcpIndex.NONE
    retrans: int = 0
    last_seq: int = 0
    last_ack: int = 0
    last_end: int = 0
    last_win: int = 0
    last_wscale: int = 0
    last_flags: int = 0

    @classmethod
    def from_state(cls, state: TcpState | str, *, liberal: bool = False) -> "TcpConntrack":
        """State for an entry made without its packets (a `conntrack -L` dump, a scenario):
        like a ctnetlink-created entry, windows are unknown and each side's first segment
        initialises them; `liberal` also skips window failures, as a mid-stream pickup does."""
        st = TcpState[state] if isinstance(state, str) else TcpState(state)
        if st >= TcpState.MAX:
            raise ValueError(f"not a TCP conntrack state: {st.name}")
        tc = cls(state=st)
        if liberal:
            tc.seen[0].flags = tc.seen[1].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL
        return tc


# --- small pure helpers -------------------------------------------------------------------

def conntrack_index(flags: int) -> TcpIndex:
    """get_conntrack_index: RST > SYN (SYN/ACK with ACK) > FIN > ACK > none."""
    if flags & TCP_RST:
        return TcpIndex.RST
    if flags & TCP_SYN:
        return TcpIndex.SYNACK if flags & TCP_ACK else TcpIndex.SYN
    if flags & TCP_FIN:
        return TcpIndex.FIN
    if flags & TCP_ACK:
        return TcpIndex.ACK
    return TcpIndex.NONE


def flags_valid(flags: int) -> bool:
    return (flags & 0xFF & ~(TCP_ECE | TCP_CWR | TCP_PSH)) in TCP_VALID_FLAGS


def next_state(d: Dir, index: TcpIndex, state: TcpState) -> TcpState:
    return TCP_CONNTRACKS[d][index][state]


def segment_end(tcp: TcpHeader, payload_len: int) -> int:
    """segment_seq_plus_len: SYN and FIN each take one sequence number."""
    return _u32(tcp.seq + payload_len + (1 if tcp.flags & TCP_SYN else 0)
                + (1 if tcp.flags & TCP_FIN else 0))


def _padded_options(options: bytes) -> bytes:
    # the kernel walks doff*4 - 20 bytes: the options rounded up to 32 bits
    return options + bytes(-len(options) % 4)


def _walk_options(opts: bytes):
    """The kind/length walk of tcp_options() and tcp_sack(): (kind, offset, size) of each
    option, stopping at EOL or at a silly or partial option."""
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == TCPOPT_EOL:
            return
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if n - i < 2:
            return
        size = opts[i + 1]
        if size < 2 or size > n - i:
            return
        yield kind, i, size
        i += size


def parse_options(options: bytes) -> tuple[int, int] | None:
    """What tcp_options() learns from a segment: (WINDOW_SCALE|SACK_PERM flags, scale).
    None when the segment has no options (the kernel then keeps the old values)."""
    opts = _padded_options(options)
    if not opts:
        return None
    flags = scale = 0
    for kind, i, size in _walk_options(opts):
        if kind == TCPOPT_SACK_PERM and size == 2:
            flags |= FLAG_SACK_PERM
        elif kind == TCPOPT_WINDOW and size == 3:
            scale = min(opts[i + 2], TCP_MAX_WSCALE)
            flags |= FLAG_WINDOW_SCALE
    return flags, scale


def apply_options(st: TcpDirState, options: bytes) -> None:
    parsed = parse_options(options)
    if parsed is None:
        return
    st.td_scale = parsed[1]
    st.flags = (st.flags & FLAG_BE_LIBERAL) | parsed[0]


def sack_edge(options: bytes, sack: int) -> int:
    """tcp_sack: the highest right edge of the first SACK option, if above `sack`."""
    opts = _padded_options(options)
    if len(opts) == 12 and opts[:4] == _TSTAMP_ONLY_PREFIX:
        return sack
    for kind, i, size in _walk_options(opts):
        if kind == TCPOPT_SACK and size >= 10 and (size - 2) % 8 == 0:
            for b in range(i + 2, i + size, 8):
                right = int.from_bytes(opts[b + 4:b + 8], "big")
                if after(right, sack):
                    sack = right
            return sack
    return sack


def tcp_timeouts(env: TrackEnv) -> dict[TcpState, float]:
    t = {s: float(env.sysctl(name)) for s, name in TCP_TIMEOUT_SYSCTLS.items()}
    t.update(TCP_FIXED_TIMEOUTS)
    return t


# --- window tracking ----------------------------------------------------------------------

def _init_sender(sender: TcpDirState, receiver: TcpDirState, tcp: TcpHeader, end: int,
                 win: int, d: Dir) -> None:
    """tcp_init_sender: a SYN/ACK, or a reply-direction SYN (simultaneous open)."""
    sender.td_end = sender.td_maxend = end
    sender.td_maxwin = win or 1
    apply_options(sender, tcp.options)
    # RFC 1323: scaling is on only if both SYNs carried the option
    if d is Dir.REPLY and not (sender.flags & FLAG_WINDOW_SCALE
                               and receiver.flags & FLAG_WINDOW_SCALE):
        sender.td_scale = receiver.td_scale = 0


def _maxackwindow(sender: TcpDirState) -> int:
    return max(sender.td_maxwin, MAXACKWINCONST)


def tcp_in_window(tc: TcpConntrack, d: Dir, index: TcpIndex, pkt: Packet,
                  env: TrackEnv) -> tuple[str, str | None]:
    """Returns ("accept" | "ignore" | "invalid", log text). Updates the window state only
    on "accept" paths, as the kernel does."""
    tcp = pkt.tcp
    assert tcp is not None
    sender, receiver = tc.seen[d], tc.seen[1 - d]
    syn, has_ack, rst = tcp.has(TCP_SYN), tcp.has(TCP_ACK), tcp.has(TCP_RST)
    seq = tcp.seq
    ack = sack = tcp.ack_seq
    win_raw = win = tcp.window
    end = segment_end(tcp, pkt.payload_len)
    if receiver.flags & FLAG_SACK_PERM:
        sack = sack_edge(tcp.options, sack)

    def judged(action: str, msg: str) -> tuple[str, str | None]:
        # nf_tcp_log_invalid: liberal senders pass silently
        if sender.flags & FLAG_BE_LIBERAL or env.sysctl("nf_conntrack_tcp_be_liberal"):
            return "accept", None
        return action, msg

    if sender.td_maxwin == 0:
        if syn:
            _init_sender(sender, receiver, tcp, end, win, d)
            if not has_ack:
                return "accept", None  # simultaneous open
        else:
            # mid-stream: history lost, take what the packet says
            sender.td_end = end
            swin = _u32(win << sender.td_scale)
            sender.td_maxwin = swin or 1
            sender.td_maxend = _u32(end + sender.td_maxwin)
            if receiver.td_maxwin == 0:
                receiver.td_end = receiver.td_maxend = sack
            elif sack == _u32(receiver.td_end + 1):
                receiver.td_end = _u32(receiver.td_end + 1)  # reply to a keepalive
    elif (syn and after(end, sender.td_end)
          and tc.state in (TcpState.SYN_SENT, TcpState.SYN_RECV)):
        # a new SYN (or SYN/ACK) with higher sequence numbers re-initialises this side
        _init_sender(sender, receiver, tcp, end, win, d)
        if d is Dir.REPLY and not has_ack:
            return "accept", None

    if not has_ack or ((tcp.flags & (TCP_ACK | TCP_RST)) == (TCP_ACK | TCP_RST) and ack == 0):
        ack = sack = receiver.td_end  # no ACK, or a broken RST with ACK 0: pretend it is fine

    if rst and seq == 0 and tc.state == TcpState.SYN_SENT:
        seq = end = sender.td_end  # RST answering a SYN

    if not before(seq, _u32(sender.td_maxend + 1)):
        overshot = _u32(end - sender.td_maxend + 1)
        ack_ok = after(sack, _u32(receiver.td_end - _maxackwindow(sender) - 1))
        in_recv_win = bool(receiver.td_maxwin) and after(
            end, _u32(sender.td_end - receiver.td_maxwin - 1))
        if (in_recv_win and ack_ok and overshot <= receiver.td_maxwin
                and before(sack, _u32(receiver.td_end + 1))):
            # sender overran the window: track the data so the peer's ACK stays valid
            sender.td_end = end
            sender.flags |= FLAG_DATA_UNACKNOWLEDGED
            return judged("ignore", f"{overshot} bytes more than expected")
        return judged("invalid", f"SEQ is over upper bound {_u32(sender.td_maxend + 1)} "
                                 "(over the window of the receiver)")

    if not before(sack, _u32(receiver.td_end + 1)):
        return judged("invalid", f"ACK is over upper bound {_u32(receiver.td_end + 1)} "
                                 "(ACKed data not seen yet)")

    if receiver.td_maxwin and not after(end, _u32(sender.td_end - receiver.td_maxwin - 1)):
        return judged("ignore", "SEQ is under lower bound "
                                f"{_u32(sender.td_end - receiver.td_maxwin - 1)} "
                                "(already ACKed data retransmitted)")
    low_ack = _u32(receiver.td_end - _maxackwindow(sender) - 1)
    if not after(sack, low_ack):
        return judged("ignore", f"ignored ACK under lower bound {low_ack} "
                                "(possible overly delayed)")

    if not syn:
        win = _u32(win << sender.td_scale)

    # update the sender
    swin = _u32(win + (sack - ack))
    if sender.td_maxwin < swin:
        sender.td_maxwin = swin
    if after(end, sender.td_end):
        sender.td_end = end
        sender.flags |= FLAG_DATA_UNACKNOWLEDGED
    if has_ack:
        if not sender.flags & FLAG_MAXACK_SET:
            sender.td_maxack = ack
            sender.flags |= FLAG_MAXACK_SET
        elif after(ack, sender.td_maxack):
            sender.td_maxack = ack

    # update the receiver
    if receiver.td_maxwin != 0 and after(end, sender.td_maxend):
        receiver.td_maxwin = _u32(receiver.td_maxwin + end - sender.td_maxend)
    if after(_u32(sack + win), _u32(receiver.td_maxend - 1)):
        receiver.td_maxend = _u32(sack + win + (1 if win == 0 else 0))
    if ack == receiver.td_end:
        receiver.flags &= ~FLAG_DATA_UNACKNOWLEDGED

    # count retransmissions of the same pure ACK/data segment
    if index == TcpIndex.ACK:
        if (tc.last_dir == d and tc.last_seq == seq and tc.last_ack == ack
                and tc.last_end == end and tc.last_win == win_raw):
            tc.retrans += 1
        else:
            tc.last_dir, tc.last_seq, tc.last_ack = int(d), seq, ack
            tc.last_end, tc.last_win, tc.retrans = end, win_raw, 0
    return "accept", None


# --- the tracker --------------------------------------------------------------------------

_CLOSING = frozenset({TcpState.FIN_WAIT, TcpState.CLOSE_WAIT, TcpState.LAST_ACK,
                      TcpState.TIME_WAIT, TcpState.CLOSE})  # tcp_can_early_drop


def _established(ct: "ConntrackEntry", tc: TcpConntrack) -> bool:
    """nf_conntrack_tcp_established."""
    return tc.state == TcpState.ESTABLISHED and ct.assured


class TcpTracker:
    proto = 6
    name = "tcp"

    def error(self, pkt: Packet, env: TrackEnv) -> L4Result | None:
        tcp = pkt.tcp
        if tcp is None or tcp.header_len > 60:
            return invalid("truncated packet")
        if env.checksum_checked and pkt.bad_l4_checksum:
            return invalid("bad checksum")
        if not flags_valid(tcp.flags):
            return invalid("invalid tcp flag combination")
        return None

    def new(self, ct: "ConntrackEntry", pkt: Packet, env: TrackEnv) -> L4Result | None:
        """tcp_new: only a SYN, or (with nf_conntrack_tcp_loose) a pure ACK, opens an entry."""
        tcp = pkt.tcp
        assert tcp is not None
        state = next_state(Dir.ORIGINAL, conntrack_index(tcp.flags), TcpState.NONE)
        if state == sIV:
            return invalid("invalid new")
        tc = TcpConntrack()
        first = tc.seen[0]
        first.td_end = segment_end(tcp, pkt.payload_len)
        first.td_maxwin = tcp.window or 1
        if state == TcpState.SYN_SENT:
            first.td_maxend = first.td_end
            apply_options(first, tcp.options)
        elif not env.sysctl("nf_conntrack_tcp_loose"):
            return invalid(None)  # pickup disabled: refused without a log line
        else:
            first.td_maxend = _u32(first.td_end + first.td_maxwin)
            # mid-stream pickup: window scaling is unknown, so be liberal both ways
            tc.seen[0].flags = tc.seen[1].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL
        ct.proto_state = tc
        return None

    def packet(self, ct: "ConntrackEntry", pkt: Packet, ctinfo: CtInfo,
               env: TrackEnv) -> L4Result:
        tcp = pkt.tcp
        assert tcp is not None
        tc = ct.proto_state
        if not isinstance(tc, TcpConntrack):
            raise TypeError("TCP entry without TcpConntrack state: call new() first")
        d = ctinfo.direction
        index = conntrack_index(tcp.flags)
        old = tc.state
        new = next_state(d, index, old)
        check_window = True

        if new == TcpState.SYN_SENT and old >= TcpState.TIME_WAIT:
            closed = (tc.seen[0].flags | tc.seen[1].flags) & FLAG_CLOSE_INIT
            if closed or (tc.last_dir == d and tc.last_index == TcpIndex.RST):
                # reopening a closed/aborted connection: kill it and look up again
                if ct.status & Status.DYING:
                    return L4Result("drop")
                return L4Result("repeat")
            new = sIG  # otherwise treated like any ignored SYN

        if new == sIG:
            if (index == TcpIndex.SYNACK and tc.last_index == TcpIndex.SYN
                    and tc.last_dir != d and tcp.ack_seq == tc.last_end):
                # the peer answered a SYN we ignored: both ends agree, re-sync from it
                old, new = TcpState.SYN_SENT, TcpState.SYN_RECV
                peer = tc.seen[tc.last_dir]
                peer.td_end = peer.td_maxend = tc.last_end
                peer.td_maxwin = tc.last_win or 1
                peer.td_scale = tc.last_wscale
                tc.last_flags &= ~FLAG_EXP_CHALLENGE_ACK
                peer.flags = tc.last_flags
                tc.seen[d].reset()
            else:
                return self._ignore(tc, d, index, old, pkt)
        elif new == sIV:
            return invalid(f"packet (index {int(index)}) in dir {int(d)} invalid, "
                           f"state {old.name}")
        elif new == TcpState.TIME_WAIT:
            if (old == TcpState.LAST_ACK and index == TcpIndex.ACK and tc.last_dir != d
                    and tc.last_index == TcpIndex.SYN
                    and tc.last_flags & FLAG_EXP_CHALLENGE_ACK):
                # RFC 5961 challenge ACK to a SYN: it does not ACK the last FIN
                tc.last_flags &= ~FLAG_EXP_CHALLENGE_ACK
                return L4Result("accept", log_invalid="challenge-ack ignored")
        elif new == TcpState.SYN_SENT2:
            tc.last_flags |= FLAG_SIMULTANEOUS_OPEN
        elif new == TcpState.SYN_RECV:
            if (d is Dir.REPLY and index == TcpIndex.ACK
                    and tc.last_flags & FLAG_SIMULTANEOUS_OPEN):
                new = TcpState.ESTABLISHED
        elif new == TcpState.CLOSE and index == TcpIndex.RST:
            verdict = self._check_rst(ct, tc, d, old, tcp, env)
            if isinstance(verdict, L4Result):
                return verdict
            check_window, keep_state = verdict
            if keep_state:
                new = old

        if check_window:
            res, msg = tcp_in_window(tc, d, index, pkt, env)
            if res == "ignore":
                return L4Result("accept", log_invalid=msg)
            if res == "invalid":
                out = invalid(msg)
                out.timeout = self._handle_invalid(ct, tc, d, index, env)
                return out

        return self._in_window(ct, tc, d, index, old, new, tcp, env)

    # -- pieces of nf_conntrack_tcp_packet ------------------------------------------------

    def _ignore(self, tc: TcpConntrack, d: Dir, index: TcpIndex, old: TcpState,
                pkt: Packet) -> L4Result:
        """Annotate an ignored packet so a later answer can re-sync the entry."""
        tcp = pkt.tcp
        assert tcp is not None
        tc.last_index, tc.last_dir = index, int(d)
        tc.last_seq = tcp.seq
        tc.last_end = segment_end(tcp, pkt.payload_len)
        tc.last_win = tcp.window
        if index == TcpIndex.SYN and d is Dir.ORIGINAL:
            parsed = parse_options(tcp.options) or (0, 0)
            tc.last_flags = parsed[0] & (FLAG_WINDOW_SCALE | FLAG_SACK_PERM)
            tc.last_wscale = parsed[1] if parsed[0] & FLAG_WINDOW_SCALE else 0
            if old == TcpState.LAST_ACK:
                tc.last_flags |= FLAG_EXP_CHALLENGE_ACK
        if old == TcpState.SYN_SENT and index == TcpIndex.ACK and d is Dir.REPLY:
            tc.last_ack = tcp.ack_seq  # possible challenge ACK to our SYN
        return L4Result("accept", log_invalid=f"packet (index {int(index)}) in dir {int(d)} "
                                              f"ignored, state {old.name}")

    def _check_rst(self, ct: "ConntrackEntry", tc: TcpConntrack, d: Dir, old: TcpState,
                   tcp: TcpHeader, env: TrackEnv) -> L4Result | tuple[bool, bool]:
        """RST validation. Returns an 'invalid' result, or (check_window, keep_old_state)."""
        if old in _CLOSING:
            return False, False  # closing: the tuple may be reused, skip all checks
        peer = tc.seen[1 - d]
        keep = False
        if peer.flags & FLAG_MAXACK_SET and tc.last_index != TcpIndex.SYN:
            seq = tcp.seq
            if seq == 0 and not _established(ct, tc):
                return True, False  # likely answers a SYN we let through
            if (before(seq, peer.td_maxack)
                    and not env.sysctl("nf_conntrack_tcp_ignore_invalid_rst")):
                return invalid("invalid rst")
            if not _established(ct, tc) or seq == peer.td_maxack:
                return True, False
            if (tc.last_index == TcpIndex.ACK and tc.last_dir == d
                    and seq == tc.last_end):
                return True, False  # RST right after this side's data
            keep = True  # inexact RST: stay ESTABLISHED, allow a challenge ACK
        if (((ct.seen_reply and tc.last_index == TcpIndex.SYN)
             or (not ct.assured and tc.last_index == TcpIndex.ACK))
                and tcp.ack_seq == tc.last_end):
            return False, keep  # RST to a SYN/ACK we let through: skip the window check
        if (old == TcpState.SYN_SENT and tc.last_index == TcpIndex.ACK
                and tc.last_dir == Dir.REPLY and tcp.seq == tc.last_ack):
            return False, keep  # RST after a challenge ACK
        return True, keep

    def _handle_invalid(self, ct: "ConntrackEntry", tc: TcpConntrack, d: Dir,
                        index: TcpIndex, env: TrackEnv) -> float | None:
        """nf_tcp_handle_invalid: an out-of-window FIN/RST answering the other side's
        FIN/RST lowers an ASSURED entry's timeout to UNACK (returns it), else None."""
        if not ct.assured or ct.status & Status.FIXED_TIMEOUT:
            return None
        if index not in (TcpIndex.RST, TcpIndex.FIN):
            return None
        if tc.last_dir != d and tc.last_index in (TcpIndex.FIN, TcpIndex.RST):
            expires = ct.remaining(env.now)
            unack = tcp_timeouts(env)[TcpState.UNACK]
            if expires >= 120 and expires > unack:
                return unack
            return None
        tc.last_index, tc.last_dir = index, int(d)
        return None

    def _in_window(self, ct: "ConntrackEntry", tc: TcpConntrack, d: Dir, index: TcpIndex,
                   old: TcpState, new: TcpState, tcp: TcpHeader, env: TrackEnv) -> L4Result:
        tc.last_index, tc.last_dir = index, int(d)
        tc.state = new
        if old != new and new == TcpState.FIN_WAIT:
            tc.seen[d].flags |= FLAG_CLOSE_INIT

        t = tcp_timeouts(env)
        unack_data = (tc.seen[0].flags | tc.seen[1].flags) & FLAG_DATA_UNACKNOWLEDGED
        if (tc.retrans >= env.sysctl("nf_conntrack_tcp_max_retrans")
                and t[new] > t[TcpState.RETRANS]):
            timeout = t[TcpState.RETRANS]
        elif index == TcpIndex.RST:
            timeout = t[TcpState.CLOSE]
        elif unack_data and t[new] > t[TcpState.UNACK]:
            timeout = t[TcpState.UNACK]
        elif tc.last_win == 0 and t[new] > t[TcpState.RETRANS]:
            timeout = t[TcpState.RETRANS]
        else:
            timeout = t[new]

        res = L4Result("accept")
        if new != old:
            res.events.add("PROTOINFO")
        if not ct.seen_reply:
            if tcp.has(TCP_RST):
                res.kill = True  # only a RST came back: no connection, drop the entry now
                return res
            if index == TcpIndex.SYN and old == TcpState.SYN_SENT:
                return res  # a retransmitted SYN must not keep the entry alive
            if new == TcpState.ESTABLISHED and timeout > t[TcpState.UNACK]:
                timeout = t[TcpState.UNACK]  # picked up mid-stream, not confirmed yet
        elif (not ct.assured and old in (TcpState.SYN_RECV, TcpState.ESTABLISHED)
              and new == TcpState.ESTABLISHED):
            res.set_assured = True
            res.events.add("ASSURED")
        res.timeout = timeout
        return res

    # -- introspection --------------------------------------------------------------------

    def timeout_for(self, ct: "ConntrackEntry", env: TrackEnv) -> float:
        tc = ct.proto_state
        state = tc.state if isinstance(tc, TcpConntrack) else TcpState.NONE
        return tcp_timeouts(env)[state]

    def state_name(self, ct: "ConntrackEntry") -> str | None:
        tc = ct.proto_state
        return tc.state.name if isinstance(tc, TcpConntrack) else TcpState.NONE.name


TCP = TcpTracker()
