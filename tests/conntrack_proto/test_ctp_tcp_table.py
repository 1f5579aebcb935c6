"""Every cell of both TCP transition tables, driven through TcpTracker.packet().

The expected grids are the tables of reference §3.1 (6.12 nf_conntrack_proto_tcp.c), written
out independently of the module's data."""

from __future__ import annotations

import pytest

from conntrace.conntrack.defs import CtInfo, Dir, Status, TcpState
from conntrace.conntrack.entry import ConntrackEntry, ConnTuple
from conntrace.conntrack.proto_tcp import (FLAG_BE_LIBERAL, FLAG_CLOSE_INIT, TCP_CONNTRACKS,
                                           TcpConntrack, TcpIndex, TcpTracker)
from conntrace.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, ip
from ctp_driver import env, tcp

COLS = ["NO", "SS", "SR", "ES", "FW", "CW", "LA", "TW", "CL", "S2"]
ORIGINAL = """
syn    SS SS IG IG IG IG IG SS SS S2
synack IV IV SR IV IV IV IV IV IV SR
fin    IV IV FW FW LA LA LA TW CL IV
ack    ES IV ES ES CW CW TW TW CL IV
rst    IV CL CL CL CL CL CL CL CL CL
none   IV IV IV IV IV IV IV IV IV IV
"""
REPLY = """
syn    IV S2 IV IV IV IV IV SS IV S2
synack IV SR IG IG IG IG IG IG IG SR
fin    IV IV FW FW LA LA LA TW CL IV
ack    IV IG SR ES CW CW TW TW CL IG
rst    IV CL CL CL CL CL CL CL CL CL
none   IV IV IV IV IV IV IV IV IV IV
"""
ABBREV = {"NO": TcpState.NONE, "SS": TcpState.SYN_SENT, "SR": TcpState.SYN_RECV,
          "ES": TcpState.ESTABLISHED, "FW": TcpState.FIN_WAIT, "CW": TcpState.CLOSE_WAIT,
          "LA": TcpState.LAST_ACK, "TW": TcpState.TIME_WAIT, "CL": TcpState.CLOSE,
          "S2": TcpState.SYN_SENT2, "IV": TcpState.MAX, "IG": TcpState.IGNORE}
FLAGS = {"syn": TCP_SYN, "synack": TCP_SYN | TCP_ACK, "fin": TCP_FIN | TCP_ACK,
         "ack": TCP_ACK, "rst": TCP_RST | TCP_ACK, "none": 0}
# "fin" is FIN|ACK and "rst" RST|ACK: the flag class, not the raw flags, picks the row.
INDEX = {"syn": TcpIndex.SYN, "synack": TcpIndex.SYNACK, "fin": TcpIndex.FIN,
         "ack": TcpIndex.ACK, "rst": TcpIndex.RST, "none": TcpIndex.NONE}


def _cells():
    for d, grid in ((Dir.ORIGINAL, ORIGINAL), (Dir.REPLY, REPLY)):
        for row in grid.strip().splitlines():
            name, *vals = row.split()
            for col, val in zip(COLS, vals, strict=True):
                yield d, name, ABBREV[col], ABBREV[val]


CELLS = list(_cells())


def test_grid_has_every_cell():
    assert len(CELLS) == 2 * 6 * 10


@pytest.mark.parametrize("d,row,state,expected", CELLS,
                         ids=[f"{d.name}-{r}-{s.name}" for d, r, s, _ in CELLS])
def test_table_data(d, row, state, expected):
    assert TCP_CONNTRACKS[d][INDEX[row]][state] == expected


def _entry(state: TcpState) -> ConntrackEntry:
    o = ConnTuple(ip("10.0.1.2"), ip("10.0.2.2"), 6, 40000, 80)
    ct = ConntrackEntry(o, o.invert(), status=Status.CONFIRMED | Status.SEEN_REPLY,
                        timeout=1000.0)
    tc = TcpConntrack(state=state)
    # liberal both ways: the window check accepts everything, so only the table decides
    tc.seen[0].flags = tc.seen[1].flags = FLAG_BE_LIBERAL
    ct.proto_state = tc
    return ct


@pytest.mark.parametrize("d,row,state,expected", CELLS,
                         ids=[f"{d.name}-{r}-{s.name}" for d, r, s, _ in CELLS])
def test_table_cell_through_tracker(d, row, state, expected):
    """Each cell drives packet(): sIV -> invalid, sIG -> accepted without a state change,
    a state -> that state. A SYN_SENT cell from TIME_WAIT/CLOSE of a flow that neither saw a
    FIN nor a RST from the same side falls through to IGNORE (tcp_packet); the reopen
    itself is test_syn_reopens_closed_flow."""
    ct = _entry(state)
    if expected == TcpState.SYN_SENT and state >= TcpState.TIME_WAIT:
        expected = TcpState.IGNORE
    if d is Dir.ORIGINAL:
        pkt = tcp("10.0.1.2", "10.0.2.2", 40000, 80, FLAGS[row], seq=1000, ack=2000)
        info = CtInfo.ESTABLISHED
    else:
        pkt = tcp("10.0.2.2", "10.0.1.2", 80, 40000, FLAGS[row], seq=2000, ack=1000)
        info = CtInfo.ESTABLISHED_REPLY
    e = env(now=10.0)
    tr = TcpTracker()
    if row == "none":  # no flags: error() refuses it before the table is consulted
        assert tr.error(pkt, e).log_invalid == "invalid tcp flag combination"
    res = tr.packet(ct, pkt, info, e)
    if expected == TcpState.MAX:
        assert res.verdict == "invalid"
        assert res.log_invalid == (f"packet (index {int(INDEX[row])}) in dir {int(d)} invalid, "
                                   f"state {state.name}")
        assert ct.proto_state.state == state
    elif expected == TcpState.IGNORE:
        assert res.verdict == "accept" and res.timeout is None
        assert res.log_invalid == (f"packet (index {int(INDEX[row])}) in dir {int(d)} ignored, "
                                   f"state {state.name}")
        assert ct.proto_state.state == state
    else:
        assert res.verdict == "accept", res
        assert ct.proto_state.state == expected
        assert ("PROTOINFO" in res.events) == (expected != state)


REOPEN_CELLS = [(d, s) for d, r, s, e in CELLS
                if r == "syn" and e == TcpState.SYN_SENT and s >= TcpState.TIME_WAIT]


def test_reopen_cells():
    assert REOPEN_CELLS == [(Dir.ORIGINAL, TcpState.TIME_WAIT), (Dir.ORIGINAL, TcpState.CLOSE),
                            (Dir.REPLY, TcpState.TIME_WAIT)]


@pytest.mark.parametrize("d,state", REOPEN_CELLS)
def test_syn_reopens_closed_flow(d, state):
    """SYN cells that land on SYN_SENT from TIME_WAIT/CLOSE: a flow that saw a FIN is
    killed and looked up again (-NF_REPEAT)."""
    ct = _entry(state)
    ct.proto_state.seen[0].flags |= FLAG_CLOSE_INIT
    src, dst, sp, dp = ("10.0.1.2", "10.0.2.2", 40000, 80) if d is Dir.ORIGINAL else \
        ("10.0.2.2", "10.0.1.2", 80, 40000)
    info = CtInfo.ESTABLISHED if d is Dir.ORIGINAL else CtInfo.ESTABLISHED_REPLY
    res = TcpTracker().packet(ct, tcp(src, dst, sp, dp, TCP_SYN, seq=7), info, env())
    assert res.verdict == "repeat"
    ct.status |= Status.DYING  # nf_ct_kill already in progress: NF_DROP instead
    assert TcpTracker().packet(ct, tcp(src, dst, sp, dp, TCP_SYN, seq=7), info,
                               env()).verdict == "drop"
