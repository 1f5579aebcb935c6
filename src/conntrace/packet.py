"""The packet model: IP header, one L4 header, and the skb metadata netfilter sees.

A `Packet` is mutable on purpose: NAT, MARK, TTL and friends rewrite it in place as it walks
the hooks, exactly as the kernel rewrites the skb. Traces take `snapshot()` copies.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# IP protocol numbers (include/uapi/linux/in.h)
IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136

# /etc/protocols names iptables accepts for -p (the subset real rulesets use)
PROTO_BY_NAME: dict[str, int] = {
    "all": 0,
    "icmp": IPPROTO_ICMP,
    "igmp": IPPROTO_IGMP,
    "tcp": IPPROTO_TCP,
    "udp": IPPROTO_UDP,
    "gre": IPPROTO_GRE,
    "esp": IPPROTO_ESP,
    "ah": IPPROTO_AH,
    "icmpv6": IPPROTO_ICMPV6,
    "ipv6-icmp": IPPROTO_ICMPV6,
    "sctp": IPPROTO_SCTP,
    "udplite": IPPROTO_UDPLITE,
    "ipv6": 41,
    "ipip": 4,
    "ospf": 89,
    "vrrp": 112,
    "pim": 103,
    "mh": 135,
}
PROTO_NAME: dict[int, str] = {
    0: "all", 1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah",
    58: "ipv6-icmp", 132: "sctp", 136: "udplite", 41: "ipv6", 4: "ipip", 89: "ospf",
    112: "vrrp", 103: "pim", 135: "mh",
}

# TCP flag bits (include/net/tcp.h order: FIN is bit 0)
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80
TCP_FLAG_BY_NAME = {
    "FIN": TCP_FIN, "SYN": TCP_SYN, "RST": TCP_RST, "PSH": TCP_PSH,
    "ACK": TCP_ACK, "URG": TCP_URG, "ECE": TCP_ECE, "CWR": TCP_CWR,
}
# The order the kernel's LOG target prints flags in (nf_log_syslog.c)
TCP_FLAGS_LOG_ORDER = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")

# Options of a Linux SYN: MSS 1460, SACK_PERM, timestamps, NOP, window scale 7 -> 20 bytes,
# which is why a real SYN is LEN=60 in LOG lines and traces.
LINUX_SYN_OPTIONS = bytes.fromhex("020405b40402080a000000000000000001030307")
# Options of a Linux data/ACK segment with timestamps: NOP NOP TS -> 12 bytes (LEN=52).
LINUX_ACK_OPTIONS = bytes.fromhex("0101080a0000000000000000")

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
ICMP_INFO_REQUEST = 15
ICMP_INFO_REPLY = 16
ICMP_ADDRESS = 17
ICMP_ADDRESSREPLY = 18
# icmp_is_err() in include/linux/icmp.h
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMPV6_ERROR_TYPES = frozenset({1, 2, 3, 4})


@dataclass
class TcpHeader:
    sport: int
    dport: int
    flags: int = TCP_SYN
    seq: int = 0
    ack_seq: int = 0
    window: int = 64240
    urgp: int = 0
    options: bytes = b""
    res: int = 0  # the 4 reserved bits, printed as RES= by LOG

    @property
    def header_len(self) -> int:
        return 20 + ((len(self.options) + 3) // 4) * 4

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


@dataclass
class UdpHeader:
    sport: int
    dport: int
    checksum: int | None = None  # None: computed/valid; 0: "no checksum" (allowed for UDP over IPv4)

    header_len = 8


@dataclass
class IcmpHeader:
    type: int
    code: int = 0
    id: int = 0  # echo/timestamp/info/address-mask identifier
    seq: int = 0
    # ICMP errors carry the offending packet's IP header + at least 8 bytes of L4 header.
    embedded: "Packet | None" = None
    gateway: IPAddress | None = None  # redirects
    mtu: int = 0  # frag needed
    pointer: int = 0  # parameter problem: offset of the offending byte
    # Bytes of the embedded datagram actually quoted; None: as Linux quotes (see Packet.l4_len).
    quoted_len: int | None = None

    header_len = 8

    @property
    def is_error(self) -> bool:
        return self.type in ICMP_ERROR_TYPES


@dataclass
class SkbMeta:
    """What travels with the skb besides headers: marks, devices, conntrack, socket."""

    mark: int = 0
    priority: int = 0
    in_iface: str | None = None
    out_iface: str | None = None
    # Source MAC/destination MAC of the frame that brought the packet in (LOG prints MAC=).
    src_mac: str | None = None
    dst_mac: str | None = None
    # conntrack attachment: the entry and the ctinfo (set by conntrack, never by rules)
    ct: Any = None
    ctinfo: Any = None
    untracked: bool = False
    # template set by the raw table's CT target (zone, notrack, ...): consumed by conntrack_in
    ct_template: Any = None
    # the sending socket of locally generated packets (owner match, REDIRECT from OUTPUT)
    sock_uid: int | None = None
    sock_gid: int | None = None
    sock_supplementary_gids: tuple[int, ...] = ()
    sock_pid: int | None = None
    # sent by a kernel control socket (tcp_v4_send_reset's, icmp_send's): a socket without a
    # file, which `-m owner` tells apart from no socket at all (xt_owner.c)
    sock_no_file: bool = False
    # TPROXY / socket match: a socket assigned by mangle PREROUTING
    tproxy_sock: Any = None
    nf_trace: bool = False
    # Looped back through lo: the packet keeps its conntrack (nf_conntrack_in skips it)
    looped: bool = False
    secmark: int = 0


@dataclass
class Packet:
    src: IPAddress
    dst: IPAddress
    proto: int
    l4: TcpHeader | UdpHeader | IcmpHeader | None = None
    payload_len: int = 0
    ttl: int = 64
    tos: int = 0
    ip_id: int = 0
    df: bool = True
    mf: bool = False
    frag_offset: int = 0  # in 8-byte units; non-zero means a non-first fragment
    bad_l4_checksum: bool = False
    meta: SkbMeta = field(default_factory=SkbMeta)
    # A short human label used by traces ("SYN", "reply", "reject for #3", ...)
    label: str = ""
    # Which scenario step sent it (kept across hops and NAT): lets the model say exactly
    # which client step a server's connection came from.
    flow_tag: int | None = None
    # The payload bytes when known (a decoded capture); None means payload_len zero bytes.
    payload: bytes | None = None

    @property
    def family(self) -> int:
        return 4 if self.src.version == 4 else 6

    @property
    def is_fragment(self) -> bool:
        """Non-first fragment (what `-f` matches): it has no L4 header."""
        return self.frag_offset != 0

    @property
    def ip_header_len(self) -> int:
        if self.family == 4:
            return 20
        # An IPv6 fragment carries an 8-byte Fragment extension header.
        return 48 if (self.mf or self.frag_offset) else 40

    @property
    def l4_len(self) -> int:
        if self.l4 is None:
            return self.payload_len
        if isinstance(self.l4, IcmpHeader) and self.l4.embedded is not None:
            emb = self.l4.embedded
            if self.l4.quoted_len is not None:
                return 8 + self.l4.quoted_len
            # Linux quotes the IP header and as much of the datagram as fits: 576 bytes in all
            # for IPv4 (icmp_send), IPV6_MIN_MTU=1280 for IPv6 (icmp6_send).
            limit = 576 if self.family == 4 else 1280
            return 8 + min(emb.total_len, limit - self.ip_header_len - 8)
        return self.l4.header_len + self.payload_len

    @property
    def total_len(self) -> int:
        return self.ip_header_len + self.l4_len

    @property
    def sport(self) -> int | None:
        return self.l4.sport if isinstance(self.l4, (TcpHeader, UdpHeader)) else None

    @property
    def dport(self) -> int | None:
        return self.l4.dport if isinstance(self.l4, (TcpHeader, UdpHeader)) else None

    @property
    def tcp(self) -> TcpHeader | None:
        return self.l4 if isinstance(self.l4, TcpHeader) else None

    @property
    def udp(self) -> UdpHeader | None:
        return self.l4 if isinstance(self.l4, UdpHeader) else None

    @property
    def icmp(self) -> IcmpHeader | None:
        return self.l4 if isinstance(self.l4, IcmpHeader) else None

    def snapshot(self) -> "Packet":
        """A copy of the headers and metadata (the conntrack object is shared, not copied).
        Headers are small flat dataclasses, so shallow copies per level are a deep copy."""
        snap = copy.copy(self)
        snap.meta = copy.copy(self.meta)
        if self.l4 is not None:
            snap.l4 = copy.copy(self.l4)
            if isinstance(snap.l4, IcmpHeader) and snap.l4.embedded is not None:
                snap.l4.embedded = snap.l4.embedded.snapshot()
        return snap

    def header_fields(self) -> dict[str, Any]:
        """Flat view of the fields rules can change; traces diff two of these."""
        d: dict[str, Any] = {
            "src": str(self.src), "dst": str(self.dst), "ttl": self.ttl, "tos": self.tos,
            "mark": self.meta.mark,
        }
        if isinstance(self.l4, (TcpHeader, UdpHeader)):
            d["sport"] = self.l4.sport
            d["dport"] = self.l4.dport
        if isinstance(self.l4, IcmpHeader):
            d["icmp_id"] = self.l4.id
        return d

    def describe(self) -> str:
        """One-line human description, e.g. `tcp 10.0.1.2:40000 > 10.0.2.2:80 [SYN]`."""
        name = PROTO_NAME.get(self.proto, str(self.proto))
        if isinstance(self.l4, TcpHeader):
            flags = ",".join(n for n in ("SYN", "ACK", "FIN", "RST", "PSH", "URG")
                             if self.l4.flags & TCP_FLAG_BY_NAME[n])
            return f"tcp {_hp(self.src, self.l4.sport)} > {_hp(self.dst, self.l4.dport)} [{flags or 'none'}]"
        if isinstance(self.l4, UdpHeader):
            return f"udp {_hp(self.src, self.l4.sport)} > {_hp(self.dst, self.l4.dport)} len={self.payload_len}"
        if isinstance(self.l4, IcmpHeader):
            extra = f" id={self.l4.id} seq={self.l4.seq}" if not self.l4.is_error else ""
            emb = f" for [{self.l4.embedded.describe()}]" if self.l4.embedded is not None else ""
            return f"icmp {self.src} > {self.dst} type={self.l4.type} code={self.l4.code}{extra}{emb}"
        return f"{name} {self.src} > {self.dst}"


def _hp(addr: IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def ip(text: str | IPAddress) -> IPAddress:
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return text
    return ipaddress.ip_address(text)
