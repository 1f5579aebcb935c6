"""Shared helpers for the wire/pcap tests: packet strategies and external-tool runners."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

import pytest
from hypothesis import strategies as st

from conntrace.packet import (
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
from conntrace.wire import ICMP_QUOTE_LIMIT, IPV6_EXT_HEADERS

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
ADDR4 = st.builds(ipaddress.IPv4Address, U32)
ADDR6 = st.builds(ipaddress.IPv6Address, st.integers(0, (1 << 128) - 1))


def need_tool(name: str) -> str:
    """Path of an external tool; skip when missing, except under CI=true where it must exist."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install tshark provides it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


def run(*argv: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, f"{argv[0]} failed: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


# tshark: checksums verified, no reassembly, raw sequence numbers, first occurrence of a field
# (the outer header when an ICMP error quotes an inner one).
TSHARK_OPTS = ("-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
               "-o", "ip.check_checksum:TRUE", "-o", "ip.defragment:FALSE",
               "-o", "ipv6.defragment:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
               "-T", "fields", "-E", "occurrence=f", "-E", "separator=|")


def tshark_fields(path: str, fields: list[str]) -> list[dict[str, str]]:
    tshark = need_tool("tshark")
    argv = [tshark, "-n", "-r", path, *TSHARK_OPTS]
    for f in fields:
        argv += ["-e", f]
    out = run(*argv)
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines()]


# ------------------------------------------------------------------------------------------------
# packet strategies


def _options() -> st.SearchStrategy[bytes]:
    return st.binary(max_size=40).map(lambda b: (b + bytes(-len(b) % 4))[:40])


def _frag(family: int) -> st.SearchStrategy[tuple[bool, int, int, bool]]:
    """(mf, frag_offset, ip_id, df)."""
    if family == 4:
        return st.tuples(st.booleans(), st.one_of(st.just(0), st.integers(0, 0x1FFF)), U16, st.booleans())
    return st.one_of(
        st.tuples(st.just(False), st.just(0), st.just(0), st.just(True)),
        st.tuples(st.booleans(), st.integers(1, 0x1FFF), U32, st.just(True)),
        st.tuples(st.just(True), st.just(0), U32, st.just(True)),
    )


@st.composite
def packets(draw, family: int | None = None, *, errors: bool = True, depth: int = 0,
            with_payload: bool = False) -> Packet:
    """Packets whose every field survives the wire (payload None unless with_payload)."""
    fam = draw(st.sampled_from([4, 6])) if family is None else family
    addr = ADDR4 if fam == 4 else ADDR6
    mf, frag_offset, ip_id, df = draw(_frag(fam))
    icmp_proto = IPPROTO_ICMP if fam == 4 else IPPROTO_ICMPV6
    kinds = ["tcp", "udp", "icmp", "other"] + (["icmp_error"] * 2 if errors and depth == 0 else [])
    kind = draw(st.sampled_from(kinds)) if frag_offset == 0 else "nofrag_l4"
    proto: int
    l4 = None
    payload_len = draw(st.integers(0, 1400))
    if kind == "tcp":
        proto = IPPROTO_TCP
        l4 = TcpHeader(draw(U16), draw(U16), flags=draw(U8), seq=draw(U32), ack_seq=draw(U32),
                       window=draw(U16), urgp=draw(U16), options=draw(_options()),
                       res=draw(st.integers(0, 15)))
    elif kind == "udp":
        proto = IPPROTO_UDP
        l4 = UdpHeader(draw(U16), draw(U16), checksum=draw(st.sampled_from([None, 0])))
    elif kind == "icmp":
        proto = icmp_proto
        errs = ICMP_ERROR_TYPES if fam == 4 else ICMPV6_ERROR_TYPES
        l4 = IcmpHeader(draw(U8.filter(lambda t: t not in errs)), draw(U8), id=draw(U16), seq=draw(U16))
    elif kind == "icmp_error":
        proto = icmp_proto
        typ = draw(st.sampled_from(sorted(ICMP_ERROR_TYPES if fam == 4 else ICMPV6_ERROR_TYPES)))
        l4 = IcmpHeader(typ, draw(U8))
        if fam == 4:
            l4.mtu = draw(U16) if typ == 3 else 0
            l4.gateway = draw(ADDR4) if typ == 5 else None
            l4.pointer = draw(U8) if typ == 12 else 0
        else:
            l4.mtu = draw(U32) if typ == 2 else 0
            l4.pointer = draw(U32) if typ == 4 else 0
        l4.embedded = draw(packets(fam, depth=depth + 1, errors=False))
        payload_len = 0
    else:
        ext = set(IPV6_EXT_HEADERS) if fam == 6 else set()
        proto = draw(U8.filter(lambda p: p not in {IPPROTO_TCP, IPPROTO_UDP, icmp_proto} | ext))
    if frag_offset:
        proto = draw(U8.filter(lambda p: fam == 4 or p not in IPV6_EXT_HEADERS))
    pkt = Packet(src=draw(addr), dst=draw(addr), proto=proto, l4=l4, payload_len=payload_len,
                 ttl=draw(U8), tos=draw(U8), ip_id=ip_id, df=df, mf=mf, frag_offset=frag_offset)
    # a checksum can only be judged on a whole datagram, and UDP 0 means "none"
    checkable = l4 is not None and not mf and not (isinstance(l4, UdpHeader) and l4.checksum == 0)
    pkt.bad_l4_checksum = checkable and depth == 0 and draw(st.booleans())
    if with_payload and not (isinstance(l4, IcmpHeader) and l4.embedded is not None):
        pkt.payload = draw(st.binary(min_size=payload_len, max_size=payload_len))
    return pkt


def linux_quote(pkt: Packet) -> int:
    """Bytes of the embedded datagram Linux quotes in an ICMP error (icmp_send/icmp6_send)."""
    return min(pkt.icmp.embedded.total_len, ICMP_QUOTE_LIMIT[pkt.family] - pkt.ip_header_len - 8)
