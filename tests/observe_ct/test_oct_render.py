"""conntrack-tools renderers reproduce real output byte for byte.

REF lines are the literal lines of reference §5.1-§5.3 (and §2); K618 lines were captured
on the 6.18 kernel of this machine with conntrack-tools 1.4.7 in throw-away namespaces."""

from __future__ import annotations

import pytest

from conntrace.conntrack.defs import Status, TcpState
from conntrace.conntrack.entry import ConntrackEntry, ConnTuple, DirCounters
from conntrace.conntrack.proto_tcp import TcpConntrack
from conntrace.errors import InputError
from conntrace.observe.conntrack_tools import (format_entry, format_event, format_proc_stat,
                                               format_stats, format_summary, format_timestamp)
from conntrace.packet import ip

NOW = 1000.0
NAT = Status.SRC_NAT | Status.DST_NAT | Status.SRC_NAT_DONE | Status.DST_NAT_DONE
SNAT = Status.SRC_NAT | Status.SRC_NAT_DONE | Status.DST_NAT_DONE  # DNAT null binding
CONF = Status.CONFIRMED
REPLIED = CONF | Status.SEEN_REPLY
ASSURED = REPLIED | Status.ASSURED


def T(src, dst, proto, a=0, b=0):
    return ConnTuple(ip(src), ip(dst), proto, a, b)


def icmp_t(src, dst, type_, ident, code=0):
    return ConnTuple(ip(src), ip(dst), 1, ident, (type_ << 8) | code)


def ct(orig, reply, *, left, status=CONF, state=None, mark=0, zone=0, id_=1,
       counters=None):
    e = ConntrackEntry(orig, reply, status=status, mark=mark, zone=zone, id=id_,
                       timeout=NOW + left)
    if state is not None:
        e.proto_state = TcpConntrack(state=state)
    if counters:
        e.counters = (DirCounters(*counters[0]), DirCounters(*counters[1]))
    return e


def dnat_tcp(sport, left=119.0, state=TcpState.TIME_WAIT, status=ASSURED | NAT, **kw):
    """10.0.1.2 -> 10.0.1.1:8080, DNAT to 10.0.2.2:80 and MASQUERADE to 10.0.2.1."""
    return ct(T("10.0.1.2", "10.0.1.1", 6, sport, 8080), T("10.0.2.2", "10.0.2.1", 6, 80, sport),
              left=left, status=status, state=state, **kw)


def snat_tcp(left, state, status):
    """10.0.1.2:47000 -> 10.0.2.2:7777, MASQUERADE to 10.0.2.1."""
    return ct(T("10.0.1.2", "10.0.2.2", 6, 47000, 7777), T("10.0.2.2", "10.0.2.1", 6, 7777, 47000),
              left=left, status=status | SNAT, state=state)


# --- §5.1 conntrack -L, -o extended,id, -o save, /proc/net/nf_conntrack --------------------

def test_list_tcp_time_wait():
    assert format_entry(dnat_tcp(44892), NOW) == (
        "tcp      6 119 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=44892 dport=8080 "
        "src=10.0.2.2 dst=10.0.2.1 sport=80 dport=44892 [ASSURED] mark=0 use=1")


def test_list_udp_unreplied():
    e = ct(T("10.0.1.2", "10.0.2.2", 17, 40003, 6000), T("10.0.2.2", "10.0.2.1", 17, 6000, 40003),
           left=28.4, status=CONF | SNAT)
    assert format_entry(e, NOW) == (
        "udp      17 28 src=10.0.1.2 dst=10.0.2.2 sport=40003 dport=6000 [UNREPLIED] "
        "src=10.0.2.2 dst=10.0.2.1 sport=6000 dport=40003 mark=0 use=1")


def test_summary_lines():
    assert format_summary(1) == ("conntrack v1.4.7 (conntrack-tools): "
                                 "1 flow entries have been shown.")
    assert format_summary(4, "events") == ("conntrack v1.4.7 (conntrack-tools): "
                                           "4 flow events have been shown.")
    assert format_summary(0, "flush") == ("conntrack v1.4.7 (conntrack-tools): "
                                          "connection tracking table has been emptied.")  # K618
    with pytest.raises(InputError, match="summary kind must be one of"):
        format_summary(1, "bogus")


def test_extended_with_id():
    e = dnat_tcp(44892, left=114.7, id_=4037570791)
    assert format_entry(e, NOW, fmt="extended", show_id=True) == (
        "ipv4     2 tcp      6 114 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=44892 dport=8080 "
        "src=10.0.2.2 dst=10.0.2.1 sport=80 dport=44892 [ASSURED] mark=0 use=1 id=4037570791")


def test_save():
    assert format_entry(dnat_tcp(46500), NOW, fmt="save") == (
        "-A -t 119 -u SEEN_REPLY,ASSURED -s 10.0.1.2 -d 10.0.1.1 -g 10.0.2.2 -n 10.0.2.1 "
        "-p tcp --sport 46500 --dport 8080 --reply-port-src 80 --reply-port-dst 46500 "
        "--state TIME_WAIT")


def test_proc():
    assert format_entry(dnat_tcp(44892, left=114.2), NOW, fmt="proc") == (
        "ipv4     2 tcp      6 114 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=44892 dport=8080 "
        "src=10.0.2.2 dst=10.0.2.1 sport=80 dport=44892 [ASSURED] mark=0 zone=0 use=2")


@pytest.mark.parametrize("orig,reply,line", [
    (T("10.0.2.1", "10.0.2.2", 6, 46700, 7777), T("10.0.2.2", "10.0.2.1", 6, 7777, 17979),
     "tcp      6 119 TIME_WAIT src=10.0.2.1 dst=10.0.2.2 sport=46700 dport=7777 "
     "src=10.0.2.2 dst=10.0.2.1 sport=7777 dport=17979 [ASSURED] mark=0 use=1"),  # §2.2
    (T("10.0.1.2", "10.0.1.100", 6, 34538, 9090), T("10.0.1.1", "10.0.1.2", 6, 8082, 34538),
     "tcp      6 119 TIME_WAIT src=10.0.1.2 dst=10.0.1.100 sport=34538 dport=9090 "
     "src=10.0.1.1 dst=10.0.1.2 sport=8082 dport=34538 [ASSURED] mark=0 use=1"),  # §2.4
    (T("10.0.1.1", "10.0.1.1", 6, 49576, 9999), T("10.0.1.1", "10.0.1.1", 6, 8081, 49576),
     "tcp      6 119 TIME_WAIT src=10.0.1.1 dst=10.0.1.1 sport=49576 dport=9999 "
     "src=10.0.1.1 dst=10.0.1.1 sport=8081 dport=49576 [ASSURED] mark=0 use=1"),  # §2.7
])
def test_reference_nat_entries(orig, reply, line):
    assert format_entry(ct(orig, reply, left=119.5, status=ASSURED | NAT,
                           state=TcpState.TIME_WAIT), NOW) == line


def test_icmp_entry():
    e = ct(icmp_t("10.0.1.2", "10.0.2.2", 8, 10224), icmp_t("10.0.2.2", "10.0.2.1", 0, 10224),
           left=29.9, status=REPLIED | SNAT)
    assert format_entry(e, NOW) == (
        "icmp     1 29 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=10224 "
        "src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=10224 mark=0 use=1")  # §3.3
    assert format_entry(e, NOW, fmt="save") == (
        "-A -t 29 -u SEEN_REPLY -s 10.0.1.2 -d 10.0.2.2 -r 10.0.2.2 -n 10.0.2.1 -p icmp "
        "--icmp-type 8 --icmp-code 0 --icmp-id 10224")


# --- K618: lines captured on this machine's 6.18 kernel ------------------------------------

def _k_udp(dport, **kw):
    return ct(T("10.77.0.1", "10.77.0.2", 17, 40001, dport),
              T("10.77.0.2", "10.77.0.1", 17, dport, 40001), **kw)


def test_k618_unset_status_save():
    e = ct(T("10.77.0.1", "10.77.0.2", 17, 40000, 5353),
           T("10.77.0.2", "10.77.0.1", 17, 5353, 40000), left=29.5,
           status=CONF | Status.SRC_NAT_DONE | Status.DST_NAT_DONE)
    assert format_entry(e, NOW, fmt="save") == (
        "-A -t 29 -u UNSET -s 10.77.0.1 -d 10.77.0.2 -r 10.77.0.2 -q 10.77.0.1 -p udp "
        "--sport 40000 --dport 5353 --reply-port-src 5353 --reply-port-dst 40000")


def test_k618_zone_and_counters():
    e = _k_udp(6000, left=29.8, zone=5, counters=((1, 29), (0, 0)))
    assert format_entry(e, NOW, acct=True) == (
        "udp      17 29 src=10.77.0.1 dst=10.77.0.2 sport=40001 dport=6000 packets=1 bytes=29 "
        "[UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=6000 dport=40001 packets=0 bytes=0 "
        "mark=0 zone=5 use=1")
    assert format_entry(e, NOW, fmt="save") == (
        "-A -t 29 -u UNSET -w 5 -s 10.77.0.1 -d 10.77.0.2 -r 10.77.0.2 -q 10.77.0.1 -p udp "
        "--sport 40001 --dport 6000 --reply-port-src 6000 --reply-port-dst 40001")
    e.timeout = NOW + 30
    assert format_event("NEW", e, NOW) == (
        "    [NEW] udp      17 30 src=10.77.0.1 dst=10.77.0.2 sport=40001 dport=6000 "
        "[UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=6000 dport=40001 zone=5")


def test_k618_mark():
    e = _k_udp(6001, left=29.8, mark=7, counters=((1, 29), (0, 0)))
    assert format_entry(e, NOW, fmt="proc", acct=True) == (
        "ipv4     2 udp      17 29 src=10.77.0.1 dst=10.77.0.2 sport=40001 dport=6001 packets=1 "
        "bytes=29 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=6001 dport=40001 packets=0 "
        "bytes=0 mark=7 zone=0 use=2")
    e.timeout = NOW + 30
    assert format_event("NEW", e, NOW).endswith("sport=6001 dport=40001 mark=7")
    e.mark = 0
    assert format_event("UPDATE", e, NOW, mark_event=True).endswith("dport=40001 mark=0")


def test_k618_ipv6():
    e = ct(T("fd00::1", "fd00::2", 17, 49168, 5353), T("fd00::2", "fd00::1", 17, 5353, 49168),
           left=29.1, counters=((1, 49), (0, 0)))
    assert format_entry(e, NOW, fmt="proc", acct=True) == (
        "ipv6     10 udp      17 29 src=fd00:0000:0000:0000:0000:0000:0000:0001 "
        "dst=fd00:0000:0000:0000:0000:0000:0000:0002 sport=49168 dport=5353 packets=1 bytes=49 "
        "[UNREPLIED] src=fd00:0000:0000:0000:0000:0000:0000:0002 "
        "dst=fd00:0000:0000:0000:0000:0000:0000:0001 sport=5353 dport=49168 packets=0 bytes=0 "
        "mark=0 zone=0 use=2")
    assert format_entry(e, NOW, acct=True) == (
        "udp      17 29 src=fd00::1 dst=fd00::2 sport=49168 dport=5353 packets=1 bytes=49 "
        "[UNREPLIED] src=fd00::2 dst=fd00::1 sport=5353 dport=49168 packets=0 bytes=0 "
        "mark=0 use=1")
    assert format_entry(e, NOW, fmt="save") == (
        "-A -t 29 -u UNSET -s fd00::1 -d fd00::2 -r fd00::2 -q fd00::1 -p udp --sport 49168 "
        "--dport 5353 --reply-port-src 5353 --reply-port-dst 49168")


def test_k618_destroy_events():
    expired = ct(T("10.77.0.1", "10.77.0.2", 6, 60258, 11), T("10.77.0.2", "10.77.0.1", 6, 11, 60258),
                 left=-1.5, state=TcpState.SYN_SENT, counters=((1, 60), (0, 0)))
    assert format_event("DESTROY", expired, NOW, with_state=False, acct=True) == (
        "[DESTROY] tcp      6 SYN_SENT src=10.77.0.1 dst=10.77.0.2 sport=60258 dport=11 "
        "packets=1 bytes=60 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=11 dport=60258 "
        "packets=0 bytes=0")
    rst_killed = ct(T("10.77.0.1", "10.77.0.2", 6, 57476, 9), T("10.77.0.2", "10.77.0.1", 6, 9, 57476),
                    left=120, state=TcpState.CLOSE)
    assert format_event("DESTROY", rst_killed, NOW, timestamp=1795793147.05872) == (
        "[1795793147.058720]\t[DESTROY] tcp      6 120 CLOSE src=10.77.0.1 dst=10.77.0.2 "
        "sport=57476 dport=9 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=9 dport=57476")
    flushed = ct(T("10.77.0.1", "10.77.0.2", 17, 40000, 5353),
                 T("10.77.0.2", "10.77.0.1", 17, 5353, 40000), left=29.4)
    assert format_event("DESTROY", flushed, NOW, timestamp=1795793147.779903,
                        userspace_portid=9266, progname="conntrack") == (
        "[1795793147.779903]\t[DESTROY] udp      17 29 src=10.77.0.1 dst=10.77.0.2 sport=40000 "
        "dport=5353 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=5353 dport=40000 "
        "[USERSPACE] portid=9266 progname=conntrack")


# --- §5.2 conntrack -E -------------------------------------------------------------------

def test_events_icmp():
    e = ct(icmp_t("10.0.1.2", "10.0.2.2", 8, 17295), icmp_t("10.0.2.2", "10.0.2.1", 0, 17295),
           left=30, status=CONF | SNAT)
    assert format_event("NEW", e, NOW) == (
        "    [NEW] icmp     1 30 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=17295 [UNREPLIED] "
        "src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=17295")
    e.status |= Status.SEEN_REPLY
    assert format_event("UPDATE", e, NOW) == (
        " [UPDATE] icmp     1 30 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=17295 "
        "src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=17295")


def test_events_tcp_handshake_with_timestamps():
    tail = ("src=10.0.1.2 dst=10.0.1.1 sport=44892 dport=8080 {u}src=10.0.2.2 dst=10.0.2.1 "
            "sport=80 dport=44892")
    e = dnat_tcp(44892, left=120, state=TcpState.SYN_SENT, status=CONF | NAT)
    assert format_event("NEW", e, NOW, timestamp=1795786737.395581) == (
        "[1795786737.395581]\t    [NEW] tcp      6 120 SYN_SENT " + tail.format(u="[UNREPLIED] "))
    e = dnat_tcp(44892, left=60, state=TcpState.SYN_RECV, status=REPLIED | NAT)
    assert format_event("UPDATE", e, NOW, timestamp=1795786737.395627) == (
        "[1795786737.395627]\t [UPDATE] tcp      6 60 SYN_RECV " + tail.format(u=""))
    e = dnat_tcp(44892, left=432000, state=TcpState.ESTABLISHED, status=ASSURED | NAT)
    assert format_event("UPDATE", e, NOW, timestamp=1795786737.395632) == (
        "[1795786737.395632]\t [UPDATE] tcp      6 432000 ESTABLISHED " + tail.format(u="")
        + " [ASSURED]")


def test_event_update_without_state_change_omits_state():
    e = snat_tcp(300, TcpState.ESTABLISHED, REPLIED)
    assert format_event("UPDATE", e, NOW, timestamp=1795786934.428724, with_state=False) == (
        "[1795786934.428724]\t [UPDATE] tcp      6 300 src=10.0.1.2 dst=10.0.2.2 sport=47000 "
        "dport=7777 src=10.0.2.2 dst=10.0.2.1 sport=7777 dport=47000")


def test_event_timeout_destroy_has_no_timeout():
    e = ct(T("10.0.1.2", "10.0.2.2", 17, 40005, 5353), T("10.0.2.2", "10.0.2.1", 17, 5353, 40005),
           left=0, status=REPLIED | SNAT)
    assert format_event("DESTROY", e, NOW, timestamp=1795786917.41778) == (
        "[1795786917.417780]\t[DESTROY] udp      17 src=10.0.1.2 dst=10.0.2.2 sport=40005 "
        "dport=5353 src=10.0.2.2 dst=10.0.2.1 sport=5353 dport=40005")


def test_event_userspace_destroy():
    e = snat_tcp(431999.6, TcpState.ESTABLISHED, ASSURED)
    assert format_event("DESTROY", e, NOW, timestamp=1795786932.333896,
                        userspace_portid=10999) == (
        "[1795786932.333896]\t[DESTROY] tcp      6 431999 ESTABLISHED src=10.0.1.2 "
        "dst=10.0.2.2 sport=47000 dport=7777 src=10.0.2.2 dst=10.0.2.1 sport=7777 dport=47000 "
        "[ASSURED] [USERSPACE] portid=10999")


def test_event_save_and_extended_and_id():
    e = snat_tcp(300, TcpState.ESTABLISHED, ASSURED)
    e.id = 42
    assert format_event("UPDATE", e, NOW, fmt="save").startswith("-U -t 300 -u SEEN_REPLY,")
    assert format_event("DESTROY", e, NOW, fmt="save").startswith("-D ")
    assert format_event("NEW", e, NOW, extended=True, show_id=True).startswith(
        "    [NEW] ipv4     2 tcp      6 300 ESTABLISHED ")
    assert format_event("NEW", e, NOW, show_id=True).endswith("[ASSURED] id=42")
    with pytest.raises(InputError, match="event kind must be one of"):
        format_event("GONE", e, NOW)


def test_timestamp_prefix():
    assert format_timestamp(1795786737.395581) == "[1795786737.395581]\t"
    assert format_timestamp(12.000001) == "[00000012.000001]\t"
    assert format_timestamp(5.9999999) == "[00000006.000000]\t"


# --- §5.3 conntrack -S and /proc/net/stat/nf_conntrack -----------------------------------

def test_stats_lines():
    """The reference shows the lines without their final blank; conntrack prints one after
    every counter (checked on 6.18: `chaintoolong=0 $` under cat -A)."""
    out = format_stats([
        dict(invalid=5, insert_failed=2, drop=7, clash_resolve=1295),
        dict(found=2, invalid=2, insert_failed=1, drop=4, clash_resolve=1208),
    ])
    assert out.split("\n") == [
        "cpu=0   \tfound=0 invalid=5 insert=0 insert_failed=2 drop=7 early_drop=0 error=0 "
        "search_restart=0 clash_resolve=1295 chaintoolong=0 ",
        "cpu=1   \tfound=2 invalid=2 insert=0 insert_failed=1 drop=4 early_drop=0 error=0 "
        "search_restart=0 clash_resolve=1208 chaintoolong=0 ",
    ]
    with pytest.raises(InputError, match="unknown conntrack -S counter"):
        format_stats([{"searched": 1}])


def test_proc_stat():
    assert format_proc_stat(1, [{}]).split("\n") == [
        "entries  clashres found new invalid ignore delete chainlength insert insert_failed "
        "drop early_drop icmp_error  expect_new expect_create expect_delete search_restart",
        "00000001  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000",
    ]
    row = format_proc_stat(300, [dict(clash_resolve=1295, invalid=5, drop=7, error=1,
                                      search_restart=2)]).split("\n")[1]
    assert row == ("0000012c  0000050f 00000000 00000000 00000005 00000000 00000000 00000000 "
                   "00000000 00000000 00000007 00000000 00000001  00000000 00000000 00000000 "
                   "00000002")


def test_bad_format_name():
    with pytest.raises(InputError, match="default, extended, save, proc"):
        format_entry(dnat_tcp(1), NOW, fmt="xml")


def test_generic_and_gre_and_offload():
    esp = ct(T("10.0.0.1", "10.0.0.2", 50), T("10.0.0.2", "10.0.0.1", 50), left=599.5)
    assert format_entry(esp, NOW) == ("unknown  50 599 src=10.0.0.1 dst=10.0.0.2 [UNREPLIED] "
                                      "src=10.0.0.2 dst=10.0.0.1 mark=0 use=1")
    assert format_entry(esp, NOW, fmt="save").endswith("-q 10.0.0.1 -p 50")
    gre = ct(T("10.0.0.1", "10.0.0.2", 47), T("10.0.0.2", "10.0.0.1", 47), left=29.5)
    assert "src=10.0.0.1 dst=10.0.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED]" in format_entry(gre, NOW)
    off = dnat_tcp(1, status=ASSURED | NAT | Status.OFFLOAD)
    assert "[OFFLOAD] mark=0" in format_entry(off, NOW)
    proc = format_entry(off, NOW, fmt="proc")
    assert proc.startswith("ipv4     2 tcp      6 src=") and "[OFFLOAD]" in proc
