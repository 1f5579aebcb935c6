"""The kernel log text of a packet, as net/netfilter/nf_log_syslog.c writes it for the LOG
target, conntrack's nf_conntrack_log_invalid and legacy iptables TRACE.

    <prefix>IN=<in> OUT=<out> [MAC=dst:src:type ]SRC=.. DST=.. LEN=.. TOS=0x.. PREC=0x..
    TTL=.. ID=.. [DF ][MF ][FRAG:n ]PROTO=.. <protocol fields> [UID=.. GID=.. ][MARK=0x.. ]

The kernel fills a buffer in which every field ends with a space and prints it whole; the
text returned here omits that one trailing space, as the lines are shown by dmesg and in
reference §5.4. Fields of bytes the model does not know (a MAC address nobody gave, an SPI)
print as `?`, never as invented values.
"""

from __future__ import annotations

from ..packet import (IPPROTO_AH, IPPROTO_ESP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
                      IPPROTO_UDP, IPPROTO_UDPLITE, IcmpHeader, Packet, TcpHeader, UdpHeader)

# include/uapi/linux/netfilter/xt_LOG.h (also the NF_LOG_* bits of nf_log.h)
XT_LOG_TCPSEQ = 0x01
XT_LOG_TCPOPT = 0x02
XT_LOG_IPOPT = 0x04
XT_LOG_UID = 0x08
XT_LOG_NFLOG = 0x10  # unsupported by the kernel's LOG
XT_LOG_MACDECODE = 0x20
XT_LOG_MASK = 0x2F
# NF_LOG_DEFAULT_MASK: what conntrack's log_invalid and legacy TRACE log with
NF_LOG_DEFAULT_MASK = 0x0F

IPTOS_TOS_MASK = 0x1E
IPTOS_PREC_MASK = 0xE0

# required_len[] of dump_ipv4_packet: bytes after the IP header an ICMP type needs
ICMP_REQUIRED_LEN = {0: 4, 3: 28, 4: 28, 5: 28, 8: 4, 11: 28, 12: 28, 13: 20, 14: 20,
                     17: 12, 18: 12}
NR_ICMP_TYPES = 18
ICMP_ERRORS_DUMPED = (3, 4, 5, 11)  # the ones whose quoted packet is printed in [...]
ICMPV6_ERRORS_DUMPED = (1, 2, 3, 4)
ETHERTYPE = {4: "08:00", 6: "86:dd"}
UNKNOWN_MAC = "??:??:??:??:??:??"


def format_log_line(pkt: Packet, *, prefix: str = "", in_iface: str | None = None,
                    out_iface: str | None = None, logflags: int = 0,
                    src_mac: str | None = None, dst_mac: str | None = None,
                    sock_ids: tuple[int, int] | None = None) -> str:
    """One kernel log line for `pkt`.

    in_iface/out_iface: the hook's devices (None prints empty; MAC= appears only with an
    input device). src_mac/dst_mac default to pkt.meta's; a packet that came in on `lo`
    has an all-zero MAC header. logflags: XT_LOG_* bits. sock_ids: (uid, gid) of the
    packet's full socket, printed with XT_LOG_UID."""
    out: list[str] = [f"{prefix}IN={in_iface or ''} OUT={out_iface or ''} "]
    if in_iface:
        out.append(_mac_header(pkt, in_iface, logflags, src_mac, dst_mac))
    if pkt.family == 4:
        _dump_ipv4(out, pkt, logflags, pkt.l4_len, outer=True, sock_ids=sock_ids)
    else:
        _dump_ipv6(out, pkt, logflags, pkt.l4_len, outer=True, sock_ids=sock_ids)
    return "".join(out).rstrip(" ")


def _mac_header(pkt: Packet, in_iface: str, logflags: int, src: str | None,
                dst: str | None) -> str:
    """dump_mac_header: MAC=dst:src:type (14 bytes), or MACSRC/MACDST/MACPROTO with
    --log-macdecode on an Ethernet device (lo is ARPHRD_LOOPBACK: always MAC=)."""
    ethertype = ETHERTYPE[pkt.family]
    if in_iface == "lo":
        return f"MAC=00:00:00:00:00:00:00:00:00:00:00:00:{ethertype} "
    src = (src or pkt.meta.src_mac or UNKNOWN_MAC).lower()
    dst = (dst or pkt.meta.dst_mac or UNKNOWN_MAC).lower()
    if logflags & XT_LOG_MACDECODE:
        return f"MACSRC={src} MACDST={dst} MACPROTO={ethertype.replace(':', '')} "
    return f"MAC={dst}:{src}:{ethertype} "


def _dump_ipv4(out: list[str], pkt: Packet, logflags: int, avail: int, outer: bool,
               sock_ids: tuple[int, int] | None) -> None:
    """dump_ipv4_packet. `avail`: bytes present after the IP header (less than the L4
    length for a packet quoted in an ICMP error)."""
    out.append(f"SRC={pkt.src} DST={pkt.dst} ")
    out.append(f"LEN={pkt.total_len} TOS=0x{pkt.tos & IPTOS_TOS_MASK:02X} "
               f"PREC=0x{pkt.tos & IPTOS_PREC_MASK:02X} TTL={pkt.ttl} ID={pkt.ip_id} ")
    if pkt.df:
        out.append("DF ")
    if pkt.mf:
        out.append("MF ")
    if pkt.frag_offset:
        out.append(f"FRAG:{pkt.frag_offset} ")
    fragment = pkt.frag_offset != 0
    proto = pkt.proto
    if proto == IPPROTO_TCP:
        if _dump_tcp(out, pkt, fragment, avail, logflags):
            return
    elif proto in (IPPROTO_UDP, IPPROTO_UDPLITE):
        if _dump_udp(out, pkt, fragment, avail):
            return
    elif proto == IPPROTO_ICMP:
        _dump_icmp(out, pkt, fragment, avail, logflags, outer)
    elif proto == IPPROTO_AH:
        if not fragment:  # the kernel prints nothing at all for an AH fragment
            out.append("PROTO=AH ")
            out.append(_spi(pkt, avail, 12, 4))
    elif proto == IPPROTO_ESP:
        out.append("PROTO=ESP ")
        if not fragment:
            out.append(_spi(pkt, avail, 8, 0))
    else:
        out.append(f"PROTO={proto} ")
    if outer:
        _sock_and_mark(out, pkt, logflags, sock_ids)


def _sock_and_mark(out: list[str], pkt: Packet, logflags: int,
                   sock_ids: tuple[int, int] | None) -> None:
    if logflags & XT_LOG_UID and sock_ids is not None:
        out.append(f"UID={sock_ids[0]} GID={sock_ids[1]} ")
    if pkt.meta.mark:
        out.append(f"MARK=0x{pkt.meta.mark:x} ")


def _spi(pkt: Packet, avail: int, need: int, offset: int) -> str:
    if avail < need:
        return f"INCOMPLETE [{avail} bytes] "
    if pkt.payload is not None and len(pkt.payload) >= offset + 4:
        return f"SPI=0x{int.from_bytes(pkt.payload[offset:offset + 4], 'big'):x} "
    return "SPI=? "


def _dump_tcp(out: list[str], pkt: Packet, fragment: bool, avail: int, logflags: int) -> bool:
    """nf_log_dump_tcp_header; True when the dump stops here (truncated header)."""
    out.append("PROTO=TCP ")
    if fragment:
        return False
    th = pkt.l4
    if not isinstance(th, TcpHeader) or avail < 20:
        out.append(f"INCOMPLETE [{avail} bytes] ")
        return True
    out.append(f"SPT={th.sport} DPT={th.dport} ")
    if logflags & XT_LOG_TCPSEQ:
        out.append(f"SEQ={th.seq} ACK={th.ack_seq} ")
    out.append(f"WINDOW={th.window} ")
    # TCP_RESERVED_BITS is 0x0E000000 since the AE flag took the lowest reserved bit
    out.append(f"RES=0x{(th.res & 0x0E) << 2:02x} ")
    if th.res & 0x01:
        out.append("AE ")
    for name, bit in (("CWR", 0x80), ("ECE", 0x40), ("URG", 0x20), ("ACK", 0x10),
                      ("PSH", 0x08), ("RST", 0x04), ("SYN", 0x02), ("FIN", 0x01)):
        if th.flags & bit:
            out.append(f"{name} ")
    out.append(f"URGP={th.urgp} ")
    if logflags & XT_LOG_TCPOPT and th.header_len > 20:
        if avail < th.header_len:
            out.append("OPT (TRUNCATED)")
            return True
        opts = th.options.ljust(th.header_len - 20, b"\x00")
        out.append(f"OPT ({opts.hex().upper()}) ")
    return False


def _dump_udp(out: list[str], pkt: Packet, fragment: bool, avail: int) -> bool:
    out.append("PROTO=UDP " if pkt.proto == IPPROTO_UDP else "PROTO=UDPLITE ")
    if fragment:
        return False
    uh = pkt.l4
    if not isinstance(uh, UdpHeader) or avail < 8:
        out.append(f"INCOMPLETE [{avail} bytes] ")
        return True
    out.append(f"SPT={uh.sport} DPT={uh.dport} LEN={8 + pkt.payload_len} ")
    return False


def _quoted_avail(pkt: Packet) -> int:
    """Bytes of the quoted packet's L4 part an ICMP error carries."""
    emb = pkt.l4.embedded  # type: ignore[union-attr]
    return pkt.l4_len - 8 - emb.ip_header_len


def _dump_icmp(out: list[str], pkt: Packet, fragment: bool, avail: int, logflags: int,
               outer: bool) -> None:
    out.append("PROTO=ICMP ")
    if fragment:
        return
    ic = pkt.l4
    if not isinstance(ic, IcmpHeader) or avail < 8:
        out.append(f"INCOMPLETE [{avail} bytes] ")
        return
    out.append(f"TYPE={ic.type} CODE={ic.code} ")
    need = ICMP_REQUIRED_LEN.get(ic.type, 0) if ic.type <= NR_ICMP_TYPES else 0
    if avail < need:
        out.append(f"INCOMPLETE [{avail} bytes] ")
        return
    if ic.type in (0, 8):
        out.append(f"ID={ic.id} SEQ={ic.seq} ")
    elif ic.type == 12:
        out.append(f"PARAMETER={ic.pointer} ")
    elif ic.type in ICMP_ERRORS_DUMPED:
        if ic.type == 5:
            out.append(f"GATEWAY={ic.gateway if ic.gateway is not None else '?'} ")
        if outer:  # only one level of recursion
            out.append("[")
            if ic.embedded is not None:
                _dump_ipv4(out, ic.embedded, logflags, _quoted_avail(pkt), False, None)
            else:
                out.append("? ")
            out.append("] ")
        if ic.type == 3 and ic.code == 4:
            out.append(f"MTU={ic.mtu} ")


def _dump_ipv6(out: list[str], pkt: Packet, logflags: int, avail: int, outer: bool,
               sock_ids: tuple[int, int] | None) -> None:
    """dump_ipv6_packet for a packet whose only extension header is a Fragment header."""
    out.append(f"SRC={pkt.src.exploded} DST={pkt.dst.exploded} ")
    out.append(f"LEN={pkt.total_len} TC={pkt.tos} HOPLIMIT={pkt.ttl} FLOWLBL=0 ")
    fragment = False
    if pkt.mf or pkt.frag_offset:
        opt = bool(logflags & XT_LOG_IPOPT)
        out.append("OPT ( " if opt else "")
        out.append(f"FRAG:{pkt.frag_offset * 8} ")
        if pkt.mf:
            out.append("INCOMPLETE ")
        out.append(f"ID:{pkt.ip_id:08x} ")
        fragment = pkt.frag_offset != 0
        out.append(") " if opt else "")
    proto = pkt.proto
    if proto == IPPROTO_ESP:
        # an extension header for the IPv6 logger: only shown with --log-ip-options, and
        # nothing (not even UID/MARK) follows it
        if logflags & XT_LOG_IPOPT:
            out.append("OPT ( ESP " + (")" if fragment else _spi(pkt, avail, 8, 0) + ")"))
        return
    if proto == IPPROTO_AH:
        out.append("PROTO=? ")  # the header after AH is not modelled
        return
    if proto == IPPROTO_TCP:
        if _dump_tcp(out, pkt, fragment, avail, logflags):
            return
    elif proto in (IPPROTO_UDP, IPPROTO_UDPLITE):
        if _dump_udp(out, pkt, fragment, avail):
            return
    elif proto == IPPROTO_ICMPV6:
        out.append("PROTO=ICMPv6 ")
        ic = pkt.l4
        if not fragment:
            if not isinstance(ic, IcmpHeader) or avail < 8:
                out.append(f"INCOMPLETE [{avail} bytes] ")
                return
            out.append(f"TYPE={ic.type} CODE={ic.code} ")
            if ic.type in (128, 129):
                out.append(f"ID={ic.id} SEQ={ic.seq} ")
            elif ic.type in ICMPV6_ERRORS_DUMPED:
                if ic.type == 4:
                    out.append(f"POINTER={ic.pointer:08x} ")
                if outer:
                    out.append("[")
                    if ic.embedded is not None:
                        _dump_ipv6(out, ic.embedded, logflags, _quoted_avail(pkt), False, None)
                    else:
                        out.append("? ")
                    out.append("] ")
                if ic.type == 2:
                    out.append(f"MTU={ic.mtu} ")
    else:
        out.append(f"PROTO={proto} ")
    if outer:
        _sock_and_mark(out, pkt, logflags, sock_ids)
