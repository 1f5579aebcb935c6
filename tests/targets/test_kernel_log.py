"""observe.kernel_log.format_log_line against the literal kernel lines of reference §5.4
(captured on 6.18) and the field rules of nf_log_syslog.c."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.host.host import Host
from conntrace.host.netdev import Interface
from conntrace.netfilter.effects import LogLine
from conntrace.netfilter.hooks import Hook
from conntrace.netfilter.verdict import CONTINUE
from conntrace.observe.kernel_log import (NF_LOG_DEFAULT_MASK, XT_LOG_MACDECODE, XT_LOG_TCPOPT,
                                          XT_LOG_TCPSEQ, XT_LOG_UID, format_log_line)
from conntrace.packet import (LINUX_SYN_OPTIONS, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, IcmpHeader,
                              Packet, SkbMeta, TcpHeader, UdpHeader, ip)

from .conftest import ctx_for, parse

FWD_NEW = ("FWD-NEW: IN=r0 OUT=r1 MAC=22:67:ff:45:9a:3c:42:b3:62:5d:48:0a:08:00 SRC=10.0.1.2 "
           "DST=10.0.2.2 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=16430 DF PROTO=TCP SPT=44892 "
           "DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0")
OUT_ICMP = ("OUT-ICMP: IN= OUT=c0 SRC=10.0.1.2 DST=10.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 "
            "ID=3491 DF PROTO=ICMP TYPE=8 CODE=0 ID=17169 SEQ=1 UID=0 GID=0")
FWD_REL = ("FWD-REL: IN=r1 OUT=r0 MAC=32:02:74:69:9a:52:3a:16:12:84:7e:db:08:00 SRC=10.0.2.2 "
           "DST=10.0.1.2 LEN=61 TOS=0x00 PREC=0xC0 TTL=63 ID=26307 PROTO=ICMP TYPE=3 CODE=3 "
           "[SRC=10.0.1.2 DST=10.0.2.2 LEN=33 TOS=0x00 PREC=0x00 TTL=63 ID=23386 DF PROTO=UDP "
           "SPT=40004 DPT=7000 LEN=13 ]")
CT_INVALID = ("nf_ct_proto_6: invalid tcp flag combination IN=r0 OUT= "
              "MAC=22:67:ff:45:9a:3c:42:b3:62:5d:48:0a:08:00 SRC=10.0.1.2 DST=10.0.2.2 LEN=40 "
              "TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=48000 DPT=7777 SEQ=1000 ACK=0 "
              "WINDOW=8192 RES=0x00 SYN FIN URGP=0")
LEGACY_TRACE = ("TRACE: raw:PREROUTING:policy:2 IN=l2 OUT= "
                "MAC=fe:d1:7c:63:2b:b6:d2:5a:81:ec:78:e4:08:00 SRC=10.9.0.1 DST=10.9.0.2 LEN=84 "
                "TOS=0x00 PREC=0x00 TTL=64 ID=39961 DF PROTO=ICMP TYPE=8 CODE=0 ID=12956 SEQ=1")


def syn_fwd_new() -> Packet:
    return Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6,
                  TcpHeader(44892, 80, flags=TCP_SYN, seq=12345, window=64240,
                            options=LINUX_SYN_OPTIONS),
                  ttl=63, ip_id=16430, df=True,
                  meta=SkbMeta(in_iface="r0", out_iface="r1", src_mac="42:b3:62:5d:48:0a",
                               dst_mac="22:67:ff:45:9a:3c"))


def echo_out() -> Packet:
    return Packet(ip("10.0.1.2"), ip("10.0.2.2"), 1, IcmpHeader(8, 0, id=17169, seq=1),
                  payload_len=56, ttl=64, ip_id=3491, df=True,
                  meta=SkbMeta(out_iface="c0", sock_uid=0, sock_gid=0))


def port_unreach_fwd() -> Packet:
    quoted = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(40004, 7000), payload_len=5,
                    ttl=63, ip_id=23386, df=True)
    return Packet(ip("10.0.2.2"), ip("10.0.1.2"), 1, IcmpHeader(3, 3, embedded=quoted),
                  ttl=63, tos=0xC0, ip_id=26307, df=False,
                  meta=SkbMeta(in_iface="r1", out_iface="r0", src_mac="3a:16:12:84:7e:db",
                               dst_mac="32:02:74:69:9a:52"))


def test_fwd_new_line_byte_for_byte():
    p = syn_fwd_new()
    assert format_log_line(p, prefix="FWD-NEW: ", in_iface="r0", out_iface="r1") == FWD_NEW


def test_out_icmp_line_with_uid_gid():
    line = format_log_line(echo_out(), prefix="OUT-ICMP: ", out_iface="c0", logflags=XT_LOG_UID,
                           sock_ids=(0, 0))
    assert line == OUT_ICMP
    # without --log-uid the owner is not printed
    assert format_log_line(echo_out(), prefix="OUT-ICMP: ", out_iface="c0",
                           sock_ids=(0, 0)).endswith("ID=17169 SEQ=1")


def test_fwd_rel_line_with_quoted_header_and_prec_c0():
    assert format_log_line(port_unreach_fwd(), prefix="FWD-REL: ", in_iface="r1",
                           out_iface="r0") == FWD_REL


def test_conntrack_invalid_line_uses_default_flags():
    p = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6,
               TcpHeader(48000, 7777, flags=TCP_SYN | TCP_FIN, seq=1000, window=8192),
               ttl=64, ip_id=1, df=False,
               meta=SkbMeta(src_mac="42:b3:62:5d:48:0a", dst_mac="22:67:ff:45:9a:3c"))
    line = format_log_line(p, prefix="nf_ct_proto_6: invalid tcp flag combination ",
                           in_iface="r0", logflags=NF_LOG_DEFAULT_MASK)
    assert line == CT_INVALID


def test_conntrack_window_line_tail():
    p = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6,
               TcpHeader(48001, 7777, flags=TCP_ACK | TCP_PSH, seq=621174006,
                         ack_seq=3773661635, window=502), payload_len=4, ttl=64, ip_id=7)
    line = format_log_line(p, prefix="nf_ct_proto_6: SEQ is over upper bound 571239544 (over "
                           "the window of the receiver) ", in_iface="r0",
                           logflags=NF_LOG_DEFAULT_MASK, src_mac="42:b3:62:5d:48:0a",
                           dst_mac="22:67:ff:45:9a:3c")
    assert " LEN=44 " in line
    assert line.endswith("PROTO=TCP SPT=48001 DPT=7777 SEQ=621174006 ACK=3773661635 "
                         "WINDOW=502 RES=0x00 ACK PSH URGP=0")


def test_legacy_trace_line():
    p = Packet(ip("10.9.0.1"), ip("10.9.0.2"), 1, IcmpHeader(8, 0, id=12956, seq=1),
               payload_len=56, ttl=64, ip_id=39961, df=True,
               meta=SkbMeta(src_mac="d2:5a:81:ec:78:e4", dst_mac="fe:d1:7c:63:2b:b6"))
    assert format_log_line(p, prefix="TRACE: raw:PREROUTING:policy:2 ", in_iface="l2",
                           logflags=NF_LOG_DEFAULT_MASK) == LEGACY_TRACE


def test_tcp_sequence_and_options_flags():
    line = format_log_line(syn_fwd_new(), prefix="FWD-NEW: ", in_iface="r0", out_iface="r1",
                           logflags=XT_LOG_TCPSEQ | XT_LOG_TCPOPT)
    assert line == FWD_NEW.replace("DPT=80 WINDOW", "DPT=80 SEQ=12345 ACK=0 WINDOW") + \
        " OPT (020405B40402080A000000000000000001030307)"
    # options that are not a multiple of 4 bytes are padded to the header length (doff)
    p = syn_fwd_new()
    p.l4.options = bytes.fromhex("020405b4")[:3]
    assert format_log_line(p, logflags=XT_LOG_TCPOPT).endswith("URGP=0 OPT (02040500)")


def test_flags_order_res_and_ae_bit():
    p = Packet(ip("1.1.1.1"), ip("2.2.2.2"), 6,
               TcpHeader(1, 2, flags=0xFF, window=5, urgp=7, res=0b1011))
    line = format_log_line(p)
    # TCP_RESERVED_BITS = 0x0E000000 >> 22: the three bits above AE show as RES
    assert "RES=0x28 AE CWR ECE URG ACK PSH RST SYN FIN URGP=7" in line


def test_mark_fragment_and_more_fragments():
    p = Packet(ip("1.1.1.1"), ip("2.2.2.2"), 17, None, payload_len=100, frag_offset=185,
               mf=True, df=False, ip_id=9, meta=SkbMeta(mark=0x1F))
    line = format_log_line(p)
    # a non-first fragment has no UDP header: PROTO only, then MARK
    assert line.endswith("ID=9 MF FRAG:185 PROTO=UDP MARK=0x1f")
    assert "DF" not in line


def test_tos_and_prec_split():
    p = Packet(ip("1.1.1.1"), ip("2.2.2.2"), 47, None, payload_len=10, tos=0xFF)
    assert "TOS=0x1E PREC=0xE0" in format_log_line(p)
    assert format_log_line(p).endswith("PROTO=47")


def test_incomplete_quoted_tcp_header():
    quoted = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6, TcpHeader(1234, 80), ttl=60, ip_id=5)
    err = Packet(ip("10.0.2.9"), ip("10.0.1.2"), 1,
                 IcmpHeader(11, 0, embedded=quoted, quoted_len=28), ttl=250, ip_id=6, df=False)
    line = format_log_line(err, in_iface="r1", src_mac="00:00:00:00:00:01",
                           dst_mac="00:00:00:00:00:02")
    # RFC 792 routers quote 8 bytes of the TCP header: the kernel says INCOMPLETE
    assert line.endswith("TYPE=11 CODE=0 [SRC=10.0.1.2 DST=10.0.2.2 LEN=40 TOS=0x00 PREC=0x00 "
                         "TTL=60 ID=5 DF PROTO=TCP INCOMPLETE [8 bytes] ]")
    assert " LEN=56 " in line


def test_frag_needed_mtu_and_no_second_level():
    inner_err = Packet(ip("3.3.3.3"), ip("4.4.4.4"), 1, IcmpHeader(8, 0, id=3, seq=4),
                       payload_len=8)
    err = Packet(ip("5.5.5.5"), ip("3.3.3.3"), 1, IcmpHeader(3, 4, embedded=inner_err, mtu=1400))
    line = format_log_line(err)
    assert line.endswith("PROTO=ICMP TYPE=8 CODE=0 ID=3 SEQ=4 ] MTU=1400")


def test_incomplete_icmp_error_without_quote():
    err = Packet(ip("5.5.5.5"), ip("3.3.3.3"), 1, IcmpHeader(3, 1), payload_len=4)
    assert format_log_line(err).endswith("TYPE=3 CODE=1 INCOMPLETE [12 bytes]")


def test_mac_variants():
    p = syn_fwd_new()
    assert "MACSRC=42:b3:62:5d:48:0a MACDST=22:67:ff:45:9a:3c MACPROTO=0800 SRC=" in \
        format_log_line(p, in_iface="r0", logflags=XT_LOG_MACDECODE)
    assert " MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=" in \
        format_log_line(p, in_iface="lo", logflags=XT_LOG_MACDECODE)
    p.meta.src_mac = None
    # an unknown source MAC is shown as unknown, never invented
    assert "MAC=22:67:ff:45:9a:3c:??:??:??:??:??:??:08:00 " in format_log_line(p, in_iface="r0")
    # no input device (OUTPUT, POSTROUTING): no MAC at all
    assert "MAC" not in format_log_line(p, out_iface="r1")


def test_ipv6_line_layout():
    p = Packet(ip("2001:db8::1"), ip("2001:db8::2"), 17, UdpHeader(5353, 53), payload_len=12,
               ttl=64, tos=0x10)
    line = format_log_line(p, prefix="V6: ", out_iface="e0")
    assert line == ("V6: IN= OUT=e0 SRC=2001:0db8:0000:0000:0000:0000:0000:0001 "
                    "DST=2001:0db8:0000:0000:0000:0000:0000:0002 LEN=60 TC=16 HOPLIMIT=64 "
                    "FLOWLBL=0 PROTO=UDP SPT=5353 DPT=53 LEN=20")


def _host() -> Host:
    h = Host("r")
    h.devices.add_interface(Interface("r0", mac="22:67:ff:45:9a:3c",
                                      addresses=[ipaddress.ip_interface("10.0.1.1/24")]))
    h.devices.add_interface(Interface("r1", mac="32:02:74:69:9a:52",
                                      addresses=[ipaddress.ip_interface("10.0.2.1/24")]))
    return h


def test_log_target_forward_emits_the_line_and_continues():
    host = _host()
    p = syn_fwd_new()
    p.meta.dst_mac = None  # the frame was for r0: the target fills in r0's MAC
    t = parse("LOG", ["--log-prefix", "FWD-NEW: "], chain="FORWARD")
    ctx = ctx_for(host, p, Hook.FORWARD)
    assert t.apply(ctx) is CONTINUE
    (e,) = ctx.effects
    assert isinstance(e, LogLine) and e.text == FWD_NEW and e.level == 4 and e.source == "LOG"


@pytest.mark.parametrize("hook,want", [
    (Hook.PREROUTING, "IN=r0 OUT= MAC="), (Hook.INPUT, "IN=r0 OUT= MAC="),
    (Hook.FORWARD, "IN=r0 OUT=r1 MAC="), (Hook.OUTPUT, "IN= OUT=r1 SRC="),
    # ip_output hands skb->dev (the input device of a forwarded packet) to POSTROUTING
    (Hook.POSTROUTING, "IN=r0 OUT=r1 MAC=")])
def test_log_target_devices_per_hook(hook, want):
    t = parse("LOG", ["--log-level", "debug"], chain="FORWARD")
    ctx = ctx_for(_host(), syn_fwd_new(), hook)
    t.apply(ctx)
    assert ctx.effects[0].text.startswith(want)
    assert ctx.effects[0].level == 7


def test_log_target_local_packet_in_postrouting_has_no_input_device():
    p = syn_fwd_new()
    p.meta.in_iface = None
    ctx = ctx_for(_host(), p, Hook.POSTROUTING)
    parse("LOG", "", chain="FORWARD").apply(ctx)
    assert ctx.effects[0].text.startswith("IN= OUT=r1 SRC=")


def test_log_target_broadcast_frame_mac_and_tproxy_uid():
    host = _host()
    p = Packet(ip("10.0.1.2"), ip("10.0.1.255"), 17, UdpHeader(68, 67), payload_len=10,
               meta=SkbMeta(in_iface="r0", src_mac="42:b3:62:5d:48:0a"))
    t = parse("LOG", ["--log-uid"])
    ctx = ctx_for(host, p, Hook.INPUT)
    t.apply(ctx)
    assert "MAC=ff:ff:ff:ff:ff:ff:42:b3:62:5d:48:0a:08:00 " in ctx.effects[0].text
    assert "UID=" not in ctx.effects[0].text  # a received packet has no socket

    class Sock:
        uid, gid = 1337, 1338
    p.meta.tproxy_sock = Sock()
    ctx = ctx_for(host, p, Hook.INPUT)
    t.apply(ctx)
    assert ctx.effects[0].text.endswith("LEN=18 UID=1337 GID=1338")
