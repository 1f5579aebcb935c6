"""The one-line packet syntax used by `conntrace trace` and scenario `packet` steps.

    tcp 10.1.2.3:40000 > 10.96.0.10:80 syn in eth0
    tcp 10.0.1.2:40000 > 10.0.2.2:80 ack seq=1001 ack=2002 len=100 ttl=5
    udp 10.0.1.2:5353 > 10.0.2.2:53 len=32 out eth1 uid=1000
    icmp 10.0.1.2 > 10.0.2.2 echo-request icmp-id=7 icmp-seq=1
    icmp 10.0.2.2 > 10.0.1.2 port-unreachable for udp 10.0.1.2:40000 > 10.0.2.2:7000
    47 10.0.0.1 > 10.0.0.2

Words after the addresses: TCP flags (syn ack fin rst psh urg ece cwr, or flags=SA),
seq= ack= win= ttl= tos= id= (IP id) df nodf len= (payload bytes) mark= frag= mf badsum,
ICMP type names or type= code= icmp-id= icmp-seq=, `in IF` / `out IF`, mac=SRC_MAC,
uid= gid= (owner of the sending socket). A TCP packet with no flag given is a SYN.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .errors import InputError
from .ruleset.matches.icmp import ICMP_NAMES as _ICMP_TABLE
from .ruleset.matches.icmp import ICMPV6_NAMES as _ICMPV6_TABLE
from .packet import (LINUX_ACK_OPTIONS, LINUX_SYN_OPTIONS, PROTO_BY_NAME, TCP_ACK,
                     TCP_FLAG_BY_NAME, TCP_SYN, IcmpHeader, Packet, SkbMeta, TcpHeader, UdpHeader)

def _icmp_names(table) -> dict[str, tuple[int, int]]:
    """name -> (type, code) from the icmp match's table of iptables names (`any` left out)."""
    return {name: (t, cmin) for name, t, cmin, _cmax in table if name != "any"}


# the names iptables' --icmp-type / --icmpv6-type accept, plus `echo` for convenience
ICMP_NAMES: dict[str, tuple[int, int]] = {**_icmp_names(_ICMP_TABLE), "echo": (8, 0)}
ICMPV6_NAMES: dict[str, tuple[int, int]] = _icmp_names(_ICMPV6_TABLE)

_FLAG_LETTERS = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK", "U": "URG",
                 "E": "ECE", "C": "CWR"}


@dataclass
class PacketSpec:
    packet: Packet
    in_iface: str | None = None
    out_iface: str | None = None


def parse_addr_port(text: str, want_port: bool, where: str) -> tuple[ipaddress._BaseAddress, int | None]:
    port: int | None = None
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InputError(f"{where}: expected [IPv6]:port, got '{text}'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"{where}: expected [IPv6]:port, got '{text}'")
            port = _int(rest[1:], 0, 65535, "port", where)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _int(p, 0, 65535, "port", where)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise InputError(f"{where}: expected an IP address, got '{host}'") from None
    if want_port and port is None:
        raise InputError(f"{where}: expected ADDRESS:PORT, got '{text}'")
    if not want_port and port is not None:
        raise InputError(f"{where}: this protocol has no ports, got '{text}'")
    return addr, port


def _int(text: str, lo: int, hi: int, what: str, where: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise InputError(f"{where}: expected a number for {what}, got '{text}'") from None
    if not lo <= v <= hi:
        raise InputError(f"{where}: {what} must be in {lo}..{hi}, got {v}")
    return v


def parse_packet_spec(text: str, where: str = "packet") -> PacketSpec:
    words = text.split()
    if "for" in words:
        i = words.index("for")
        outer, inner = words[:i], words[i + 1:]
    else:
        outer, inner = words, None
    if len(outer) < 4 or outer[2] != ">":
        raise InputError(f"{where}: expected 'PROTO SRC > DST [options]', got '{text}'")
    proto_word = outer[0].lower()
    if proto_word in PROTO_BY_NAME:
        proto = PROTO_BY_NAME[proto_word]
    else:
        proto = _int(proto_word, 1, 255, "protocol", where)
    has_ports = proto in (6, 17, 132, 136)
    src, sport = parse_addr_port(outer[1], has_ports, where)
    dst, dport = parse_addr_port(outer[3], has_ports, where)
    if src.version != dst.version:
        raise InputError(f"{where}: source and destination are of different IP versions")
    pkt = Packet(src=src, dst=dst, proto=proto, meta=SkbMeta())
    spec = PacketSpec(packet=pkt)
    flags = 0
    flags_given = False
    tcp_kw: dict[str, int] = {}
    icmp_type: tuple[int, int] | None = None
    icmp_kw: dict[str, int] = {}
    rest = outer[4:]
    i = 0
    while i < len(rest):
        w = rest[i]
        lw = w.lower()
        key, eq, val = w.partition("=")
        key = key.lower()
        if lw in ("in", "out"):
            if i + 1 >= len(rest):
                raise InputError(f"{where}: '{w}' needs an interface name")
            if lw == "in":
                spec.in_iface = rest[i + 1]
            else:
                spec.out_iface = rest[i + 1]
            i += 2
            continue
        if proto == 6 and lw.upper() in TCP_FLAG_BY_NAME:
            flags |= TCP_FLAG_BY_NAME[lw.upper()]
            flags_given = True
        elif proto == 6 and key == "flags" and eq:
            flags_given = True
            for part in val.replace(",", " ").split():
                if part.upper() in TCP_FLAG_BY_NAME:
                    flags |= TCP_FLAG_BY_NAME[part.upper()]
                else:
                    for ch in part.upper():
                        if ch not in _FLAG_LETTERS:
                            raise InputError(f"{where}: unknown TCP flag '{ch}' in '{w}'")
                        flags |= TCP_FLAG_BY_NAME[_FLAG_LETTERS[ch]]
        elif proto == 6 and key in ("seq", "ack", "win", "urgp") and eq:
            tcp_kw[key] = _int(val, 0, 2**32 - 1, key, where)
        elif proto in (1, 58) and not eq and lw in (ICMP_NAMES if proto == 1 else ICMPV6_NAMES):
            icmp_type = (ICMP_NAMES if proto == 1 else ICMPV6_NAMES)[lw]
        elif proto in (1, 58) and key in ("type", "code") and eq:
            t, c = icmp_type or (8, 0)
            v = _int(val, 0, 255, key, where)
            icmp_type = (v, c) if key == "type" else (t, v)
        elif proto in (1, 58) and key in ("icmp-id", "icmp-seq") and eq:
            icmp_kw[key] = _int(val, 0, 65535, key, where)
        elif key == "ttl" and eq:
            pkt.ttl = _int(val, 0, 255, "ttl", where)
        elif key == "tos" and eq:
            pkt.tos = _int(val, 0, 255, "tos", where)
        elif key == "id" and eq:
            pkt.ip_id = _int(val, 0, 65535, "id", where)
        elif key in ("len", "payload") and eq:
            pkt.payload_len = _int(val, 0, 65000, "payload length", where)
        elif key == "mark" and eq:
            pkt.meta.mark = _int(val, 0, 2**32 - 1, "mark", where)
        elif key == "frag" and eq:
            pkt.frag_offset = _int(val, 0, 8191, "fragment offset", where)
        elif key == "uid" and eq:
            pkt.meta.sock_uid = _int(val, 0, 2**32 - 2, "uid", where)
        elif key == "gid" and eq:
            pkt.meta.sock_gid = _int(val, 0, 2**32 - 2, "gid", where)
        elif key == "mac" and eq:
            pkt.meta.src_mac = val.lower()
        elif lw == "df":
            pkt.df = True
        elif lw == "nodf":
            pkt.df = False
        elif lw == "mf":
            pkt.mf = True
        elif lw in ("badsum", "bad-checksum"):
            pkt.bad_l4_checksum = True
        else:
            raise InputError(f"{where}: unknown packet option '{w}' (see `conntrace trace --help`)")
        i += 1
    if proto == 6:
        if not flags_given:
            flags = TCP_SYN
        opts = LINUX_SYN_OPTIONS if flags & TCP_SYN else (LINUX_ACK_OPTIONS if flags & TCP_ACK else b"")
        pkt.l4 = TcpHeader(sport=sport or 0, dport=dport or 0, flags=flags,
                           seq=tcp_kw.get("seq", 0), ack_seq=tcp_kw.get("ack", 0),
                           window=tcp_kw.get("win", 64240), urgp=tcp_kw.get("urgp", 0),
                           options=opts)
    elif proto == 17:
        pkt.l4 = UdpHeader(sport=sport or 0, dport=dport or 0)
    elif proto in (1, 58):
        t, c = icmp_type or ((8, 0) if proto == 1 else (128, 0))
        pkt.l4 = IcmpHeader(type=t, code=c, id=icmp_kw.get("icmp-id", 0),
                            seq=icmp_kw.get("icmp-seq", 0))
        if inner is not None:
            inner_spec = parse_packet_spec(" ".join(inner), where + " (embedded)")
            pkt.l4.embedded = inner_spec.packet
        if pkt.l4.is_error and pkt.l4.embedded is None:
            raise InputError(f"{where}: an ICMP error needs the packet it reports: "
                             "add 'for PROTO SRC > DST ...'")
        if not pkt.l4.is_error and pkt.payload_len == 0 and t in (0, 8):
            pkt.payload_len = 56  # ping's default
        if pkt.l4.is_error:
            pkt.df = False
    elif inner is not None:
        raise InputError(f"{where}: 'for' is only valid for ICMP errors")
    if pkt.frag_offset:
        pkt.l4 = None
    return spec
