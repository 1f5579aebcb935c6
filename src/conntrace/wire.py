"""Packets on the wire: `Packet` <-> bytes for IPv4/IPv6, Ethernet and Linux cooked captures.

Encoding writes what Linux would put on the wire: correct IPv4 header checksum, TCP/UDP/ICMP
checksums (deliberately wrong when `bad_l4_checksum`), ICMP errors quoting the offending
datagram as far as `Packet.l4_len` says. Decoding is the inverse for every field `Packet`
carries. What `Packet` cannot carry (IPv4 options, IPv6 extension headers other than one
Fragment header, VLAN tags) is refused with `UnmodelledError` instead of being dropped.
Bytes that carry no modelled field are not kept: the IPv6 flow label, the IPv4 reserved
flag, unused ICMP header bytes; re-encoding writes them as zero. A UDP checksum of 0 decodes
as `checksum=0` ("none", not bad) for IPv6 too: conntrack's udp_error() accepts it there.
IPv6 has no DF bit: decoded IPv6 packets say df=True (Linux never fragments forwarded IPv6);
an IPv6 fragment travels with one Fragment header whose identification is `ip_id`.

Format facts: RFC 791/793/768/792 (IPv4, TCP, UDP, ICMP), RFC 8200/4443 (IPv6, ICMPv6),
pcap-linktype(7) for the cooked headers (LINKTYPE_LINUX_SLL / LINKTYPE_LINUX_SLL2).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .errors import InputError
from .packet import (
    ICMP_ERROR_TYPES,
    ICMPV6_ERROR_TYPES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IcmpHeader,
    Packet,
    TcpHeader,
    UdpHeader,
)

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ1 = 0x9100
ETHERTYPE_NAMES = {ETH_P_IP: "IPv4", ETH_P_ARP: "ARP", ETH_P_IPV6: "IPv6", 0x8035: "RARP",
                   0x88CC: "LLDP", 0x8863: "PPPoE discovery", 0x8864: "PPPoE session",
                   0x8847: "MPLS", 0x88E5: "MACsec", 0x888E: "EAPOL"}

# sll_pkttype values (include/uapi/linux/if_packet.h)
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4
# sll_hatype values used here (include/uapi/linux/if_arp.h)
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

# IPv6 next-header values that are extension headers (ipv6_ext_hdr(), net/ipv6/exthdrs_core.c)
NEXTHDR_FRAGMENT = 44
IPV6_EXT_HEADERS = {0: "hop-by-hop options", 43: "routing", 44: "fragment",
                    51: "authentication (AH)", 60: "destination options", 135: "mobility",
                    139: "HIP", 140: "shim6", 253: "experimental", 254: "experimental"}

# Largest ICMP error Linux builds: icmp_send() caps at 576 bytes, icmp6_send() at IPV6_MIN_MTU.
ICMP_QUOTE_LIMIT = {4: 576, 6: 1280}


class WireError(InputError):
    """Bytes that are not a well-formed packet of the expected kind."""


class NotIPError(WireError):
    """A well-formed frame that carries no IP packet (ARP, LLDP, ...)."""


class UnmodelledError(WireError):
    """A well-formed IP packet using something `Packet` cannot represent."""


@dataclass(frozen=True)
class CookedHeader:
    """The Linux cooked-capture pseudo header (what `tcpdump -i any` records)."""

    pkttype: int  # PACKET_HOST, ..., PACKET_OUTGOING
    hatype: int  # ARPHRD_* of the device
    addr: str  # link-layer source address, colon hex ("" when the device has none)
    protocol: int  # ethertype
    ifindex: int | None = None  # SLL2 only


# ----------------------------------------------------------------------------------------------
# checksums


def inet_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 Internet checksum: the one's complement of the one's complement sum."""
    return ~_ones_sum(data, initial) & 0xFFFF


def _ones_sum(data: bytes, initial: int = 0) -> int:
    if len(data) % 2:
        data = data + b"\0"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo_sum(pkt: Packet, upper_len: int, proto: int) -> int:
    if pkt.family == 4:
        pseudo = pkt.src.packed + pkt.dst.packed + struct.pack("!BBH", 0, proto, upper_len)
    else:
        pseudo = pkt.src.packed + pkt.dst.packed + struct.pack("!IxxxB", upper_len, proto)
    return _ones_sum(pseudo)


# ----------------------------------------------------------------------------------------------
# encoding


def _check(name: str, value: int, bits: int) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise WireError(f"{name}={value!r} does not fit the wire: expected 0..{(1 << bits) - 1}")
    return value


def _payload_bytes(pkt: Packet) -> bytes:
    if pkt.payload_len < 0:
        raise WireError(f"payload_len={pkt.payload_len}: expected >= 0")
    if pkt.payload is None:
        return bytes(pkt.payload_len)
    if len(pkt.payload) != pkt.payload_len:
        raise WireError(f"payload has {len(pkt.payload)} bytes but payload_len is {pkt.payload_len}")
    return bytes(pkt.payload)


def _corrupt(csum: int, udp: bool) -> int:
    # Flipping one bit moves the one's complement sum off 0xFFFF, so verification fails;
    # for UDP avoid 0, which means "no checksum" rather than "wrong checksum".
    bad = csum ^ 0x0001
    return csum ^ 0x0002 if udp and bad == 0 else bad


def _l4_bytes(pkt: Packet) -> bytes:
    """The bytes after the IP header(s): L4 header, payload or quoted datagram."""
    l4 = pkt.l4
    if l4 is None:
        return _payload_bytes(pkt)
    if pkt.frag_offset:
        raise WireError(f"a non-first fragment (frag_offset={pkt.frag_offset}) has no L4 header: "
                        "expected l4=None")
    if isinstance(l4, TcpHeader):
        return _tcp_bytes(pkt, l4)
    if isinstance(l4, UdpHeader):
        return _udp_bytes(pkt, l4)
    if isinstance(l4, IcmpHeader):
        return _icmp_bytes(pkt, l4)
    raise WireError(f"unknown L4 header {type(l4).__name__}: expected TCP, UDP or ICMP")


def _tcp_bytes(pkt: Packet, tcp: TcpHeader) -> bytes:
    if pkt.proto != IPPROTO_TCP:
        raise WireError(f"TCP header on a packet with proto={pkt.proto}: expected proto=6")
    opts = bytes(tcp.options)
    if len(opts) > 40:
        raise WireError(f"TCP options are {len(opts)} bytes: expected at most 40")
    opts += bytes(-len(opts) % 4)  # pad with EOL
    doff = (20 + len(opts)) // 4
    head = struct.pack(
        "!HHIIBBHHH", _check("sport", tcp.sport, 16), _check("dport", tcp.dport, 16),
        _check("seq", tcp.seq, 32), _check("ack_seq", tcp.ack_seq, 32),
        doff << 4 | _check("res", tcp.res, 4), _check("flags", tcp.flags, 8),
        _check("window", tcp.window, 16), 0, _check("urgp", tcp.urgp, 16))
    seg = head + opts + _payload_bytes(pkt)
    csum = inet_checksum(seg, _pseudo_sum(pkt, len(seg), IPPROTO_TCP))
    if pkt.bad_l4_checksum:
        csum = _corrupt(csum, udp=False)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def _udp_bytes(pkt: Packet, udp: UdpHeader) -> bytes:
    if pkt.proto != IPPROTO_UDP:
        raise WireError(f"UDP header on a packet with proto={pkt.proto}: expected proto=17")
    payload = _payload_bytes(pkt)
    length = _check("UDP length", 8 + len(payload), 16)
    head = struct.pack("!HHHH", _check("sport", udp.sport, 16), _check("dport", udp.dport, 16),
                       length, 0)
    seg = head + payload
    if udp.checksum is None:
        csum = inet_checksum(seg, _pseudo_sum(pkt, len(seg), IPPROTO_UDP)) or 0xFFFF
        if pkt.bad_l4_checksum:
            csum = _corrupt(csum, udp=True)
    else:
        csum = _check("udp.checksum", udp.checksum, 16)
    return seg[:6] + struct.pack("!H", csum) + seg[8:]


def _icmp_bytes(pkt: Packet, icmp: IcmpHeader) -> bytes:
    v6 = pkt.family == 6
    want = IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP
    if pkt.proto != want:
        raise WireError(f"ICMP header on an IPv{pkt.family} packet with proto={pkt.proto}: "
                        f"expected proto={want}")
    typ, code = _check("icmp type", icmp.type, 8), _check("icmp code", icmp.code, 8)
    if icmp.embedded is not None:
        rest = _icmp_error_rest(icmp, v6)
        quoted = encode_ip(icmp.embedded)
        n = pkt.l4_len - 8
        if n > len(quoted):
            raise WireError(f"quoted_len={n} but the embedded datagram has only {len(quoted)} bytes")
        body = quoted[:n]
    else:
        rest = struct.pack("!HH", _check("icmp id", icmp.id, 16), _check("icmp seq", icmp.seq, 16))
        body = _payload_bytes(pkt)
    msg = struct.pack("!BBH", typ, code, 0) + rest + body
    initial = _pseudo_sum(pkt, len(msg), IPPROTO_ICMPV6) if v6 else 0
    csum = inet_checksum(msg, initial)
    if pkt.bad_l4_checksum:
        csum = _corrupt(csum, udp=False)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def _icmp_error_rest(icmp: IcmpHeader, v6: bool) -> bytes:
    """Bytes 4..7 of an ICMP error header (RFC 792 / RFC 1191 / RFC 4443)."""
    if v6:
        if icmp.type == 2:  # packet too big
            return struct.pack("!I", _check("mtu", icmp.mtu, 32))
        if icmp.type == 4:  # parameter problem
            return struct.pack("!I", _check("pointer", icmp.pointer, 32))
        return bytes(4)
    if icmp.type == 3:  # next-hop MTU of frag-needed lives in the low 16 bits
        return struct.pack("!HH", 0, _check("mtu", icmp.mtu, 16))
    if icmp.type == 5:
        gw = icmp.gateway
        if gw is None:
            return bytes(4)
        if gw.version != 4:
            raise WireError(f"redirect gateway {gw} is not an IPv4 address")
        return gw.packed
    if icmp.type == 12:
        return struct.pack("!Bxxx", _check("pointer", icmp.pointer, 8))
    return bytes(4)


def encode_ip(pkt: Packet) -> bytes:
    """The IP datagram as it would be on the wire (no link-layer header)."""
    if pkt.src.version != pkt.dst.version:
        raise WireError(f"src {pkt.src} and dst {pkt.dst} are of different IP versions")
    _check("proto", pkt.proto, 8)
    _check("ttl", pkt.ttl, 8)
    _check("tos", pkt.tos, 8)
    _check("frag_offset", pkt.frag_offset, 13)
    body = _l4_bytes(pkt)
    if pkt.family == 4:
        total = 20 + len(body)
        if total > 0xFFFF:
            raise WireError(f"IPv4 total length {total} exceeds 65535")
        frag = (0x4000 if pkt.df else 0) | (0x2000 if pkt.mf else 0) | pkt.frag_offset
        head = struct.pack("!BBHHHBBH4s4s", 0x45, pkt.tos, total, _check("ip_id", pkt.ip_id, 16),
                           frag, pkt.ttl, pkt.proto, 0, pkt.src.packed, pkt.dst.packed)
        return head[:10] + struct.pack("!H", inet_checksum(head)) + head[12:] + body
    nexthdr = pkt.proto
    if pkt.mf or pkt.frag_offset:
        fraghdr = struct.pack("!BxHI", pkt.proto, pkt.frag_offset << 3 | int(pkt.mf),
                              _check("ip_id", pkt.ip_id, 32))
        body = fraghdr + body
        nexthdr = NEXTHDR_FRAGMENT
    if len(body) > 0xFFFF:
        raise WireError(f"IPv6 payload length {len(body)} exceeds 65535 (jumbograms not modelled)")
    first = 6 << 28 | pkt.tos << 20
    return struct.pack("!IHBB16s16s", first, len(body), nexthdr, pkt.ttl,
                       pkt.src.packed, pkt.dst.packed) + body


def mac_bytes(mac: str | bytes) -> bytes:
    """'02:00:00:00:01:01' (or 6 raw bytes) -> 6 bytes."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise WireError(f"MAC address of {len(mac)} bytes: expected 6")
        return bytes(mac)
    parts = str(mac).replace("-", ":").split(":")
    try:
        if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise WireError(f"bad MAC address {mac!r}: expected six hex bytes like 02:00:00:00:01:01") from None


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ethertype(pkt: Packet) -> int:
    return ETH_P_IP if pkt.family == 4 else ETH_P_IPV6


def encode_ether(pkt: Packet, src_mac: str | bytes, dst_mac: str | bytes, *, pad: bool = False) -> bytes:
    """An Ethernet II frame (no FCS); `pad` fills it to the 60-byte minimum as a NIC does."""
    frame = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", _ethertype(pkt)) + encode_ip(pkt)
    if pad and len(frame) < 60:
        frame += bytes(60 - len(frame))
    return frame


def _cooked_addr(addr: str | bytes | None) -> bytes:
    if addr is None:
        return b""
    if isinstance(addr, (bytes, bytearray)):
        raw = bytes(addr)
    else:
        raw = mac_bytes(addr) if addr else b""
    if len(raw) > 8:
        raise WireError(f"link-layer address of {len(raw)} bytes: a cooked header holds at most 8")
    return raw


def encode_sll(pkt: Packet, *, pkttype: int = PACKET_HOST, addr: str | bytes | None = None,
               hatype: int = ARPHRD_ETHER) -> bytes:
    """LINKTYPE_LINUX_SLL (113): the 16-byte cooked header, then the IP datagram."""
    raw = _cooked_addr(addr)
    head = struct.pack("!HHH8sH", _check("pkttype", pkttype, 16), _check("hatype", hatype, 16),
                       len(raw), raw, _ethertype(pkt))
    return head + encode_ip(pkt)


def encode_sll2(pkt: Packet, *, ifindex: int, pkttype: int = PACKET_HOST,
                addr: str | bytes | None = None, hatype: int = ARPHRD_ETHER) -> bytes:
    """LINKTYPE_LINUX_SLL2 (276): the 20-byte cooked header, then the IP datagram."""
    raw = _cooked_addr(addr)
    head = struct.pack("!HHIHBB8s", _ethertype(pkt), 0, _check("ifindex", ifindex, 32),
                       _check("hatype", hatype, 16), _check("pkttype", pkttype, 8), len(raw), raw)
    return head + encode_ip(pkt)


# ----------------------------------------------------------------------------------------------
# decoding


@dataclass
class _IPHead:
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: int
    ttl: int
    tos: int
    ip_id: int
    df: bool
    mf: bool
    frag_offset: int
    l4_off: int  # where the L4 header starts
    total: int  # datagram length the header claims


def _ipv4_head(data: bytes, quoted: bool) -> _IPHead:
    if len(data) < 20:
        raise WireError(f"truncated IPv4 header: {len(data)} bytes, expected at least 20")
    ver_ihl, tos, total, ip_id, frag, ttl, proto, _csum = struct.unpack_from("!BBHHHBBH", data)
    ihl = ver_ihl & 0x0F
    if ihl < 5:
        raise WireError(f"bad IPv4 IHL {ihl} ({ihl * 4}-byte header): expected at least 5")
    if len(data) < ihl * 4:
        raise WireError(f"truncated IPv4 header: IHL says {ihl * 4} bytes, only {len(data)} present")
    if ihl > 5:
        raise UnmodelledError(f"IPv4 options ({ihl * 4 - 20} bytes) are not modelled")
    if total < 20:
        raise WireError(f"bad IPv4 total length {total}: shorter than the 20-byte header")
    # Linux drops a bad header checksum in ip_rcv_core(), before any netfilter hook; quoted
    # headers inside ICMP errors are not checked by anyone.
    if not quoted and inet_checksum(data[:20]) != 0:
        expected = inet_checksum(data[:10] + b"\0\0" + data[12:20])
        raise WireError(f"bad IPv4 header checksum 0x{_csum:04x} (expected 0x{expected:04x}); "
                        "Linux drops such a packet before netfilter sees it")
    return _IPHead(ipaddress.IPv4Address(data[12:16]), ipaddress.IPv4Address(data[16:20]), proto,
                   ttl, tos, ip_id, bool(frag & 0x4000), bool(frag & 0x2000), frag & 0x1FFF, 20, total)


def _ipv6_head(data: bytes) -> _IPHead:
    if len(data) < 40:
        raise WireError(f"truncated IPv6 header: {len(data)} bytes, expected at least 40")
    first, plen, nexthdr, hlim = struct.unpack_from("!IHBB", data)
    head = _IPHead(ipaddress.IPv6Address(data[8:24]), ipaddress.IPv6Address(data[24:40]), nexthdr,
                   hlim, (first >> 20) & 0xFF, 0, True, False, 0, 40, 40 + plen)
    if plen == 0 and nexthdr == 0:
        raise UnmodelledError("IPv6 jumbogram (payload length 0 with hop-by-hop) is not modelled")
    if nexthdr == NEXTHDR_FRAGMENT:
        if head.total < 48 or len(data) < 48:
            raise WireError("truncated IPv6 fragment header: expected 8 bytes after the IPv6 header")
        nh, offlg, ident = struct.unpack_from("!BxHI", data, 40)
        head.proto, head.ip_id = nh, ident
        head.frag_offset, head.mf = offlg >> 3, bool(offlg & 1)
        head.l4_off = 48
        if not head.mf and not head.frag_offset:
            raise UnmodelledError("IPv6 atomic fragment (offset 0, no more fragments) is not modelled")
    if head.proto in IPV6_EXT_HEADERS:
        raise UnmodelledError(f"IPv6 {IPV6_EXT_HEADERS[head.proto]} extension header "
                              f"(next header {head.proto}) is not modelled")
    return head


def decode_ip(data: bytes, *, keep_payload: bool = True, truncated: bool = False) -> Packet:
    """Parse an IP datagram. `truncated`: the capture cut it short (snaplen); headers must be
    complete but the payload may be missing (then `payload` is None and checksums unchecked).
    Bytes after the datagram's total length (link padding) are ignored, as Linux trims them."""
    return _decode_ip(bytes(data), keep_payload=keep_payload, cut=truncated, quoted=False)


def _decode_ip(data: bytes, *, keep_payload: bool, cut: bool, quoted: bool) -> Packet:
    if not data:
        raise WireError("empty packet: expected an IPv4 or IPv6 header")
    version = data[0] >> 4
    if version == 4:
        head = _ipv4_head(data, quoted)
    elif version == 6:
        head = _ipv6_head(data)
    else:
        raise WireError(f"bad IP version {version}: expected 4 or 6")
    if head.total < head.l4_off:
        raise WireError(f"IP length {head.total} is shorter than its {head.l4_off}-byte header")
    if head.total > len(data) and not (cut or quoted):
        raise WireError(f"length mismatch: the IP header says {head.total} bytes but only "
                        f"{len(data)} are present")
    pkt = Packet(src=head.src, dst=head.dst, proto=head.proto, ttl=head.ttl, tos=head.tos,
                 ip_id=head.ip_id, df=head.df, mf=head.mf, frag_offset=head.frag_offset)
    present = data[head.l4_off:head.total]  # the real bytes
    want = head.total - head.l4_off  # what the datagram holds
    complete = len(present) == want
    if head.frag_offset:
        _set_payload(pkt, present, want, keep_payload)
        return pkt
    if head.proto == IPPROTO_TCP:
        _decode_tcp(pkt, present, want, cut=cut, quoted=quoted, keep_payload=keep_payload)
    elif head.proto == IPPROTO_UDP:
        _decode_udp(pkt, present, want, cut=cut, quoted=quoted, keep_payload=keep_payload)
    elif head.proto == (IPPROTO_ICMP if version == 4 else IPPROTO_ICMPV6):
        _decode_icmp(pkt, present, want, cut=cut, quoted=quoted, keep_payload=keep_payload)
    else:
        _set_payload(pkt, present, want, keep_payload)
        return pkt
    # A checksum is only checkable over a whole, unfragmented datagram.
    if complete and not pkt.mf:
        pkt.bad_l4_checksum = not _l4_checksum_ok(pkt, present)
    return pkt


def _set_payload(pkt: Packet, present: bytes, length: int, keep: bool) -> None:
    pkt.payload_len = length
    pkt.payload = present if keep and len(present) == length else None


def _need(what: str, present: bytes, n: int, total: int, *, cut: bool, quoted: bool) -> bytes:
    """The first `n` header bytes. Inside an ICMP error only the first 4 are required (the
    ports: all nf_ct_get_tuple reads); the rest may be cut and reads as zero."""
    if total < n:
        raise WireError(f"IP payload of {total} bytes is too short for a {n}-byte {what} header")
    floor = 4 if quoted else n
    if len(present) < floor:
        where = "the ICMP error quotes" if quoted else "the capture holds"
        raise WireError(f"truncated {what} header: {where} {len(present)} bytes, expected {floor}")
    return present[:n] + bytes(max(0, n - len(present)))


def _decode_tcp(pkt: Packet, present: bytes, total: int, *, cut: bool, quoted: bool,
                keep_payload: bool) -> None:
    h = _need("TCP", present, 20, total, cut=cut, quoted=quoted)
    sport, dport, seq, ack, off_res, flags, window, _csum, urgp = struct.unpack("!HHIIBBHHH", h)
    doff = off_res >> 4
    if doff < 5:
        if not (quoted and len(present) <= 12):
            raise WireError(f"bad TCP data offset {doff} ({doff * 4}-byte header): expected at least 5")
        doff = 5  # the offset byte was not quoted
    hlen = doff * 4
    if hlen > total:
        raise WireError(f"TCP data offset {doff} ({hlen}-byte header) exceeds the {total}-byte IP payload")
    if len(present) < hlen and not quoted:
        raise WireError(f"truncated TCP header: {hlen} bytes expected, {len(present)} present")
    options = (present[20:hlen] + bytes(hlen))[:hlen - 20]
    pkt.l4 = TcpHeader(sport=sport, dport=dport, flags=flags, seq=seq, ack_seq=ack, window=window,
                       urgp=urgp, options=options, res=off_res & 0x0F)
    _set_payload(pkt, present[hlen:], total - hlen, keep_payload)


def _decode_udp(pkt: Packet, present: bytes, total: int, *, cut: bool, quoted: bool,
                keep_payload: bool) -> None:
    h = _need("UDP", present, 8, total, cut=cut, quoted=quoted)
    sport, dport, ulen, csum = struct.unpack("!HHHH", h)
    # A first fragment's UDP length covers the whole datagram, a quoted one may be cut.
    if not quoted and not pkt.mf:
        if ulen < 8 or ulen > total:  # what udp_error() calls truncated/malformed
            raise WireError(f"UDP length {ulen} disagrees with the IP payload length {total}: "
                            f"expected 8..{total}")
        if ulen < total:
            raise UnmodelledError(f"{total - ulen} bytes after the UDP datagram inside the IP "
                                  "packet are not modelled")
    pkt.l4 = UdpHeader(sport=sport, dport=dport, checksum=0 if (csum == 0 and len(present) >= 8) else None)
    _set_payload(pkt, present[8:], total - 8, keep_payload)


def _decode_icmp(pkt: Packet, present: bytes, total: int, *, cut: bool, quoted: bool,
                 keep_payload: bool) -> None:
    v6 = pkt.family == 6
    h = _need("ICMPv6" if v6 else "ICMP", present, 8, total, cut=cut, quoted=quoted)
    typ, code, _csum = struct.unpack_from("!BBH", h)
    icmp = IcmpHeader(type=typ, code=code)
    pkt.l4 = icmp
    if typ not in (ICMPV6_ERROR_TYPES if v6 else ICMP_ERROR_TYPES):
        # Linux reads the echo id at this place for every type (icmp_pkt_to_tuple).
        icmp.id, icmp.seq = struct.unpack_from("!HH", h, 4)
        _set_payload(pkt, present[8:], total - 8, keep_payload)
        return
    _icmp_error_fields(icmp, h, v6)
    if total == 8:
        return  # an error quoting nothing
    quote = present[8:]
    quote_len = total - 8
    try:
        emb = _decode_ip(quote, keep_payload=keep_payload, cut=False, quoted=True)
    except UnmodelledError as e:
        raise UnmodelledError(f"in the datagram quoted by the ICMP error: {e.message}") from None
    except WireError as e:
        raise WireError(f"in the datagram quoted by the ICMP error: {e.message}") from None
    if quote_len > emb.total_len:
        raise UnmodelledError(f"the ICMP error carries {quote_len - emb.total_len} bytes after the "
                              "quoted datagram (RFC 4884 extensions?), which are not modelled")
    icmp.embedded = emb
    pkt.payload_len = 0
    linux = min(emb.total_len, ICMP_QUOTE_LIMIT[pkt.family] - pkt.ip_header_len - 8)
    if quote_len != linux:
        icmp.quoted_len = quote_len


def _icmp_error_fields(icmp: IcmpHeader, h: bytes, v6: bool) -> None:
    if v6:
        if icmp.type == 2:
            icmp.mtu = struct.unpack_from("!I", h, 4)[0]
        elif icmp.type == 4:
            icmp.pointer = struct.unpack_from("!I", h, 4)[0]
        return
    if icmp.type == 3:
        icmp.mtu = struct.unpack_from("!H", h, 6)[0]
    elif icmp.type == 5:
        icmp.gateway = ipaddress.IPv4Address(h[4:8])
    elif icmp.type == 12:
        icmp.pointer = h[4]


def _l4_checksum_ok(pkt: Packet, seg: bytes) -> bool:
    if isinstance(pkt.l4, UdpHeader) and pkt.l4.checksum == 0:
        return True  # "no checksum"
    if isinstance(pkt.l4, IcmpHeader) and pkt.family == 4:
        return inet_checksum(seg) == 0
    if isinstance(pkt.l4, (TcpHeader, UdpHeader, IcmpHeader)):
        return inet_checksum(seg, _pseudo_sum(pkt, len(seg), pkt.proto)) == 0
    return True


def decode_ether(frame: bytes, *, keep_payload: bool = True,
                 truncated: bool = False) -> tuple[Packet, str, str]:
    """An Ethernet II frame -> (Packet, src_mac, dst_mac); the MACs also land in pkt.meta."""
    frame = bytes(frame)
    if len(frame) < 14:
        raise WireError(f"truncated Ethernet header: {len(frame)} bytes, expected 14")
    dst, src = mac_str(frame[0:6]), mac_str(frame[6:12])
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    pkt = _decode_l3(ethertype, frame[14:], keep_payload, truncated)
    pkt.meta.src_mac, pkt.meta.dst_mac = src, dst
    return pkt, src, dst


def _decode_l3(ethertype: int, data: bytes, keep_payload: bool, truncated: bool) -> Packet:
    if ethertype in (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1):
        raise UnmodelledError(f"VLAN-tagged frame (ethertype 0x{ethertype:04x}) is not modelled")
    if ethertype not in (ETH_P_IP, ETH_P_IPV6):
        if ethertype < 0x0600:
            raise NotIPError(f"802.3 frame with length field {ethertype}: not IP")
        name = ETHERTYPE_NAMES.get(ethertype, "unknown")
        raise NotIPError(f"ethertype 0x{ethertype:04x} ({name}): not IP")
    pkt = decode_ip(data, keep_payload=keep_payload, truncated=truncated)
    expected = 4 if ethertype == ETH_P_IP else 6
    if pkt.family != expected:
        raise WireError(f"ethertype 0x{ethertype:04x} announces IPv{expected} but the packet is "
                        f"IPv{pkt.family}")
    return pkt


def _cooked_meta(pkt: Packet, cooked: CookedHeader) -> None:
    # The cooked address is the sender's: a MAC only for an Ethernet device, and only
    # meaningful as "the frame that brought the packet in" when it was received.
    if cooked.hatype == ARPHRD_ETHER and len(cooked.addr) == 17 and cooked.pkttype != PACKET_OUTGOING:
        pkt.meta.src_mac = cooked.addr


def decode_sll(frame: bytes, *, keep_payload: bool = True,
               truncated: bool = False) -> tuple[Packet, CookedHeader]:
    """LINKTYPE_LINUX_SLL (113): pkttype(2) hatype(2) addr_len(2) addr(8) protocol(2)."""
    frame = bytes(frame)
    if len(frame) < 16:
        raise WireError(f"truncated Linux cooked (SLL) header: {len(frame)} bytes, expected 16")
    pkttype, hatype, alen, addr, proto = struct.unpack_from("!HHH8sH", frame)
    cooked = CookedHeader(pkttype, hatype, mac_str(addr[:min(alen, 8)]), proto)
    pkt = _decode_l3(proto, frame[16:], keep_payload, truncated)
    _cooked_meta(pkt, cooked)
    return pkt, cooked


def decode_sll2(frame: bytes, *, keep_payload: bool = True,
                truncated: bool = False) -> tuple[Packet, CookedHeader]:
    """LINKTYPE_LINUX_SLL2 (276): protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1)
    addr_len(1) addr(8)."""
    frame = bytes(frame)
    if len(frame) < 20:
        raise WireError(f"truncated Linux cooked (SLL2) header: {len(frame)} bytes, expected 20")
    proto, _res, ifindex, hatype, pkttype, alen, addr = struct.unpack_from("!HHIHBB8s", frame)
    cooked = CookedHeader(pkttype, hatype, mac_str(addr[:min(alen, 8)]), proto, ifindex)
    pkt = _decode_l3(proto, frame[20:], keep_payload, truncated)
    _cooked_meta(pkt, cooked)
    return pkt, cooked
