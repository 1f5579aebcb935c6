"""Our pcap/pcapng files against tshark and dpkt, and their files against our reader."""

from __future__ import annotations

import io
import ipaddress
import struct
from decimal import Decimal

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrace.packet import IcmpHeader, Packet, TcpHeader, UdpHeader, ip
from conntrace.observe.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    CapturedPacket,
    PcapngInterface,
    PcapWriter,
    read_capture,
    write_pcapng,
)
from conntrace.wire import PACKET_OUTGOING, encode_ether, encode_ip, encode_sll, encode_sll2
from pcaptest_support import need_tool, packets, run, tshark_fields

SRC_MAC, DST_MAC = "02:00:00:00:01:02", "02:00:00:00:01:01"
IFINDEX = 7
LINKTYPES = [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2]

FIELDS = [
    "frame.time_epoch", "frame.len", "frame.cap_len",
    "ip.src", "ip.dst", "ip.ttl", "ip.id", "ip.dsfield", "ip.flags.df", "ip.flags.mf",
    "ip.frag_offset", "ip.proto", "ip.len", "ip.checksum.status",
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.tclass", "ipv6.plen", "ipv6.nxt",
    "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident", "ipv6.fraghdr.nxt",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
    "tcp.window_size_value", "tcp.urgent_pointer", "tcp.hdr_len", "tcp.checksum.status",
    "udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status",
    "icmp.type", "icmp.code", "icmp.checksum.status",
    "icmpv6.type", "icmpv6.code", "icmpv6.checksum.status",
    "eth.src", "eth.dst", "sll.pkttype", "sll.ifindex", "sll.src.eth",
]
# tshark's checksum status values (epan/proto.h: PROTO_CHECKSUM_E_*)
BAD, GOOD, NOT_PRESENT, ILLEGAL = "0", "1", "3", "4"


def frame_for(pkt: Packet, linktype: int, outgoing: bool = False) -> bytes:
    pkttype = PACKET_OUTGOING if outgoing else 0
    if linktype == LINKTYPE_ETHERNET:
        return encode_ether(pkt, SRC_MAC, DST_MAC)
    if linktype == LINKTYPE_RAW:
        return encode_ip(pkt)
    if linktype == LINKTYPE_LINUX_SLL:
        return encode_sll(pkt, pkttype=pkttype, addr=SRC_MAC)
    return encode_sll2(pkt, ifindex=IFINDEX, pkttype=pkttype, addr=SRC_MAC)


def expected_fields(pkt: Packet, linktype: int, outgoing: bool) -> dict[str, str]:
    """What tshark must report for the frame we wrote for `pkt`."""
    e: dict[str, str] = {}
    if linktype == LINKTYPE_ETHERNET:
        e.update({"eth.src": SRC_MAC, "eth.dst": DST_MAC})
    elif linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        e.update({"sll.pkttype": "4" if outgoing else "0", "sll.src.eth": SRC_MAC})
        if linktype == LINKTYPE_LINUX_SLL2:
            e["sll.ifindex"] = str(IFINDEX)
    if pkt.family == 4:
        e.update({"ip.src": str(pkt.src), "ip.dst": str(pkt.dst), "ip.ttl": str(pkt.ttl),
                  "ip.id": f"0x{pkt.ip_id:04x}", "ip.dsfield": f"0x{pkt.tos:02x}",
                  "ip.flags.df": str(int(pkt.df)), "ip.flags.mf": str(int(pkt.mf)),
                  "ip.frag_offset": str(pkt.frag_offset), "ip.proto": str(pkt.proto),
                  "ip.len": str(pkt.total_len), "ip.checksum.status": GOOD})
    else:
        e.update({"ipv6.src": str(pkt.src), "ipv6.dst": str(pkt.dst), "ipv6.hlim": str(pkt.ttl),
                  "ipv6.tclass": f"0x{pkt.tos:08x}", "ipv6.plen": str(pkt.total_len - 40)})
        if pkt.mf or pkt.frag_offset:
            e.update({"ipv6.nxt": "44", "ipv6.fraghdr.nxt": str(pkt.proto),
                      "ipv6.fraghdr.offset": str(pkt.frag_offset),
                      "ipv6.fraghdr.more": str(int(pkt.mf)), "ipv6.fraghdr.ident": f"0x{pkt.ip_id:08x}"})
        else:
            e["ipv6.nxt"] = str(pkt.proto)
    if pkt.mf or pkt.frag_offset:
        return e  # tshark (no reassembly) may or may not dissect a fragment's L4
    status = BAD if pkt.bad_l4_checksum else GOOD
    if pkt.tcp is not None:
        t = pkt.tcp
        e.update({"tcp.srcport": str(t.sport), "tcp.dstport": str(t.dport), "tcp.seq_raw": str(t.seq),
                  "tcp.ack_raw": str(t.ack_seq), "tcp.flags": f"0x{t.res << 8 | t.flags:04x}",
                  "tcp.window_size_value": str(t.window), "tcp.urgent_pointer": str(t.urgp),
                  "tcp.hdr_len": str(t.header_len), "tcp.checksum.status": status})
    elif pkt.udp is not None:
        u = pkt.udp
        e.update({"udp.srcport": str(u.sport), "udp.dstport": str(u.dport),
                  "udp.length": str(8 + pkt.payload_len),
                  "udp.checksum.status": status})
        if u.checksum == 0:
            # RFC 8200 forbids a zero UDP checksum over IPv6; conntrack's udp_error() still
            # lets it through as "no checksum" (nf_conntrack_proto_udp.c), hence no bad flag.
            e["udp.checksum.status"] = NOT_PRESENT if pkt.family == 4 else ILLEGAL
    elif pkt.icmp is not None:
        pre = "icmp" if pkt.family == 4 else "icmpv6"
        e.update({f"{pre}.type": str(pkt.icmp.type), f"{pre}.code": str(pkt.icmp.code),
                  f"{pre}.checksum.status": status})
    return e


ADDRESS_FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst")


def normalized(row: dict[str, str]) -> dict[str, str]:
    """tshark writes some IPv6 addresses in the mixed form (::0.1.0.0): compare values."""
    return {k: str(ipaddress.ip_address(v)) if k in ADDRESS_FIELDS and v else v for k, v in row.items()}


def ts_ns_of(text: str) -> int:
    return int(Decimal(text) * 1_000_000_000)


def tshark_sees_ppp(frame: bytes, linktype: int) -> bool:
    # Wireshark's packet-raw.c takes a raw-IP frame with ff 03 at byte 1 (here: TOS 0xff and
    # a total length of 0x03xx) for PPP in HDLC framing; the frame itself is right.
    return linktype == LINKTYPE_RAW and frame[1:3] == b"\xff\x03"


def assert_tshark_agrees(path: str, pkts: list[Packet], stamps: list[int], linktype: int,
                         outgoing: list[bool]) -> None:
    rows = [normalized(r) for r in tshark_fields(path, FIELDS)]
    assert len(rows) == len(pkts)
    for i, (row, pkt) in enumerate(zip(rows, pkts)):
        if tshark_sees_ppp(encode_ip(pkt), linktype):
            continue
        want = expected_fields(pkt, linktype, outgoing[i])
        got = {k: row[k] for k in want}
        assert got == want, f"frame {i + 1}: {pkt.describe()}"
        assert ts_ns_of(row["frame.time_epoch"]) == stamps[i]


# ------------------------------------------------------------------------------------------------
# files we write, read by tshark and dpkt


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(packets(), min_size=1, max_size=25), st.sampled_from(LINKTYPES), st.booleans(),
       st.sampled_from("<>"), st.data())
def test_our_pcap_in_tshark_and_dpkt(tmp_path, pkts, linktype, nano, byteorder, data) -> None:
    need_tool("tshark")
    base = data.draw(st.integers(0, 2**32 - 10**4)) * 10**9
    gaps = data.draw(st.lists(st.integers(0, 10**12), min_size=len(pkts), max_size=len(pkts)))
    stamps = [base + sum(gaps[:i + 1]) % (10**4 * 10**9) for i in range(len(pkts))]
    outgoing = data.draw(st.lists(st.booleans(), min_size=len(pkts), max_size=len(pkts)))
    frames = [frame_for(p, linktype, o) for p, o in zip(pkts, outgoing)]
    path = str(tmp_path / "ours.pcap")
    with PcapWriter(path, linktype=linktype, nanosecond=nano, byteorder=byteorder) as w:
        for ts, frame in zip(stamps, frames):
            w.write(ts, frame)
    kept = stamps if nano else [ts // 1000 * 1000 for ts in stamps]  # microsecond files floor

    assert_tshark_agrees(path, pkts, kept, linktype, outgoing)

    with open(path, "rb") as f:
        got = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    assert [buf for _, buf in got] == frames
    assert all(abs(float(ts) - k / 1e9) < 1e-6 for (ts, _), k in zip(got, kept))

    ours = read_capture(path)
    assert [c.data for c in ours] == frames and [c.ts_ns for c in ours] == kept
    assert all(c.linktype == linktype and c.error is None for c in ours)
    assert [strip_link_meta(c) for c in ours] == pkts


def strip_link_meta(cp: CapturedPacket) -> Packet:
    pkt = cp.packet
    assert pkt is not None, cp.error
    pkt = pkt.snapshot()
    pkt.meta.src_mac = pkt.meta.dst_mac = None
    pkt.payload = None
    if pkt.icmp is not None and pkt.icmp.embedded is not None:
        pkt.icmp.embedded.payload = None
    return pkt


# pcapng: several interfaces, resolutions, offsets, both byte orders
IFACES = [
    PcapngInterface(LINKTYPE_ETHERNET, "eth0", tsresol=9),
    PcapngInterface(LINKTYPE_LINUX_SLL2, "any", tsresol=6),
    PcapngInterface(LINKTYPE_RAW, "tun0", tsresol=0x80 | 20, tsoffset=1_600_000_000),
    PcapngInterface(LINKTYPE_LINUX_SLL, None, tsresol=3),
]
# the finest step each interface can hold, in ns (2^-20 s is exact on multiples of 1953125 ns)
STEP = [1, 1000, 1953125, 1_000_000]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), packets()), min_size=1, max_size=20), st.sampled_from("<>"),
       st.data())
def test_our_pcapng_in_tshark(tmp_path, recs, byteorder, data) -> None:
    need_tool("tshark")
    stamps = [1_600_000_000 * 10**9 + data.draw(st.integers(0, 10**17)) // STEP[i] * STEP[i]
              for i, _ in recs]
    records = [(i, ts, frame_for(p, IFACES[i].linktype)) for (i, p), ts in zip(recs, stamps)]
    path = str(tmp_path / "ours.pcapng")
    write_pcapng(path, IFACES, records, byteorder=byteorder)

    rows = [normalized(r) for r in tshark_fields(path, FIELDS + ["frame.interface_id", "frame.interface_name"])]
    for row, (i, pkt), ts in zip(rows, recs, stamps):
        want = expected_fields(pkt, IFACES[i].linktype, False)
        if not tshark_sees_ppp(encode_ip(pkt), IFACES[i].linktype):
            assert {k: row[k] for k in want} == want
        assert ts_ns_of(row["frame.time_epoch"]) == ts
        assert row["frame.interface_id"] == str(i)
        assert row["frame.interface_name"] == (IFACES[i].name or "unknown")  # tshark says so
    ours = read_capture(path)
    assert [(c.interface, c.ifname, c.linktype, c.ts_ns, c.data) for c in ours] == [
        (i, IFACES[i].name, IFACES[i].linktype, ts, frame) for i, ts, frame in records]
    assert [strip_link_meta(c) for c in ours] == [p for _, p in recs]


# ------------------------------------------------------------------------------------------------
# files others write, read by us

SAMPLE = [
    Packet(ip("10.0.1.2"), ip("10.0.2.2"), 6, TcpHeader(40000, 80), ip_id=1),
    Packet(ip("10.0.2.2"), ip("10.0.1.2"), 6, TcpHeader(80, 40000, flags=0x12, seq=7, ack_seq=1)),
    Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(5353, 53), payload_len=40, bad_l4_checksum=True),
    Packet(ip("fd00::1"), ip("fd00::2"), 58, IcmpHeader(128, 0, id=9, seq=1), payload_len=56),
    Packet(ip("10.0.2.2"), ip("10.0.1.2"), 1, IcmpHeader(3, 3, embedded=Packet(
        ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(40004, 7000), payload_len=900)), df=False),
    Packet(ip("fd00::1"), ip("fd00::2"), 17, None, payload_len=300, frag_offset=181, ip_id=5),
]
SAMPLE_TS = [1_700_000_000_123_456_789 + i * 1_000_000_007 for i in range(len(SAMPLE))]


def _write_sample(path: str, linktype: int = LINKTYPE_ETHERNET, nano: bool = True) -> list[bytes]:
    frames = [frame_for(p, linktype) for p in SAMPLE]
    with PcapWriter(path, linktype=linktype, nanosecond=nano) as w:
        for ts, f in zip(SAMPLE_TS, frames):
            w.write(ts, f)
    return frames


def _tshark_stamps(path: str) -> list[int]:
    return [ts_ns_of(r["frame.time_epoch"]) for r in tshark_fields(path, ["frame.time_epoch"])]


def _assert_sample(caps: list[CapturedPacket], frames: list[bytes], stamps: list[int]) -> None:
    assert [c.data for c in caps] == frames
    assert [c.ts_ns for c in caps] == stamps
    assert [strip_link_meta(c) for c in caps] == SAMPLE


@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "pcap"])
def test_editcap_conversions(tmp_path, fmt) -> None:
    editcap = need_tool("editcap")
    src, dst = str(tmp_path / "src.pcap"), str(tmp_path / f"out.{fmt}")
    frames = _write_sample(src)
    run(editcap, "-F", fmt, src, dst)
    stamps = _tshark_stamps(dst)
    if fmt != "pcap":
        assert stamps == SAMPLE_TS
    else:
        assert all(0 <= a - b < 1000 for a, b in zip(SAMPLE_TS, stamps))
    _assert_sample(read_capture(dst), frames, stamps)


def test_tshark_rewrites_pcapng(tmp_path) -> None:
    tshark = need_tool("tshark")
    src, dst = str(tmp_path / "src.pcap"), str(tmp_path / "out.pcapng")
    frames = _write_sample(src, LINKTYPE_LINUX_SLL2)
    run(tshark, "-r", src, "-F", "pcapng", "-w", dst)
    caps = read_capture(dst)
    assert all(c.linktype == LINKTYPE_LINUX_SLL2 for c in caps)
    _assert_sample(caps, frames, SAMPLE_TS)


def test_editcap_snaplen_cut(tmp_path) -> None:
    editcap = need_tool("editcap")
    src, dst = str(tmp_path / "src.pcap"), str(tmp_path / "cut.pcapng")
    frames = _write_sample(src)
    run(editcap, "-s", "100", src, dst)
    caps = read_capture(dst)
    rows = tshark_fields(dst, ["frame.len", "frame.cap_len"])
    for c, f, row, pkt in zip(caps, frames, rows, SAMPLE):
        assert c.data == f[:100] and c.orig_len == len(f) == int(row["frame.len"])
        assert len(c.data) == int(row["frame.cap_len"])
        assert c.packet is not None, c.error
        if c.truncated:
            # headers intact, payload bytes unknown, checksums unjudged
            assert c.packet.payload is None and not c.packet.bad_l4_checksum
            assert (c.packet.src, c.packet.dst, c.packet.sport, c.packet.dport, c.packet.total_len) == (
                pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.total_len)
        else:
            assert strip_link_meta(c) == pkt


def test_mergecap_gives_several_interfaces(tmp_path) -> None:
    mergecap = need_tool("mergecap")
    paths, frames = [], {}
    for lt in (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL):
        p = str(tmp_path / f"lt{lt}.pcap")
        frames[lt] = _write_sample(p, lt)
        paths.append(p)
    out = str(tmp_path / "merged.pcapng")
    run(mergecap, "-F", "pcapng", "-w", out, *paths)
    caps = read_capture(out)
    assert len(caps) == 3 * len(SAMPLE)
    assert sorted({(c.interface, c.linktype) for c in caps}) == [
        (0, LINKTYPE_ETHERNET), (1, LINKTYPE_RAW), (2, LINKTYPE_LINUX_SLL)]
    assert [c.ts_ns for c in caps] == sorted(c.ts_ns for c in caps) == _tshark_stamps(out)
    for lt in frames:
        mine = [c for c in caps if c.linktype == lt]
        _assert_sample(mine, frames[lt], SAMPLE_TS)


@pytest.mark.parametrize("pcapng", [True, False])
def test_text2pcap(tmp_path, pcapng) -> None:
    text2pcap = need_tool("text2pcap")
    lines = []
    for ts, p in zip(SAMPLE_TS, SAMPLE):
        lines.append(f"{ts // 10**9}.{ts % 10**9:09d}")
        raw = encode_ip(p)
        for off in range(0, len(raw), 16):
            lines.append(f"{off:06x}  " + " ".join(f"{b:02x}" for b in raw[off:off + 16]))
        lines.append("")
    txt = tmp_path / "dump.txt"
    txt.write_text("\n".join(lines) + "\n")
    out = str(tmp_path / ("t.pcapng" if pcapng else "t.pcap"))
    fmt = ["-N", "wan0"] if pcapng else ["-F", "pcap"]
    run(text2pcap, "-q", "-t", "%s.%f", "-l", "101", *fmt, str(txt), out)
    caps = read_capture(out)
    stamps = SAMPLE_TS if pcapng else [t // 1000 * 1000 for t in SAMPLE_TS]
    assert _tshark_stamps(out) == stamps
    _assert_sample(caps, [encode_ip(p) for p in SAMPLE], stamps)
    assert {c.ifname for c in caps} == ({"wan0"} if pcapng else {None})


def test_dpkt_written_pcap(tmp_path) -> None:
    path = str(tmp_path / "dpkt.pcap")
    frames = [frame_for(p, LINKTYPE_ETHERNET) for p in SAMPLE]
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, nano=True)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + i * 0.25)
    _assert_sample(read_capture(path), frames, _tshark_stamps(path))
    assert [c.ts_ns for c in read_capture(path)] == [1_700_000_000 * 10**9 + i * 250_000_000
                                                       for i in range(len(frames))]


def test_dpkt_written_pcapng_with_options_and_interfaces(tmp_path) -> None:
    pn = dpkt.pcapng
    idbs = [
        pn.InterfaceDescriptionBlockLE(linktype=LINKTYPE_ETHERNET, snaplen=0, opts=[
            pn.PcapngOptionLE(code=2, data=b"eth0"), pn.PcapngOptionLE(code=9, data=b"\x09"),
            pn.PcapngOptionLE(code=3, data=b"uplink description"), pn.PcapngOptionLE(code=0)]),
        pn.InterfaceDescriptionBlockLE(linktype=LINKTYPE_RAW, snaplen=0, opts=[
            pn.PcapngOptionLE(code=2, data=b"tun0"), pn.PcapngOptionLE(code=0)]),
    ]
    path = str(tmp_path / "dpkt.pcapng")
    frames, expect = [], []
    with open(path, "wb") as f:
        w = pn.Writer(f, idb=idbs)
        for k, (p, ts) in enumerate(zip(SAMPLE, SAMPLE_TS)):
            iface = k % 2
            fr = frame_for(p, LINKTYPE_ETHERNET if iface == 0 else LINKTYPE_RAW)
            units = ts if iface == 0 else ts // 1000  # if_tsresol 9 vs the default 6
            epb = pn.EnhancedPacketBlockLE(iface_id=iface, ts_high=units >> 32, ts_low=units & 0xFFFFFFFF,
                                           caplen=len(fr), pkt_len=len(fr), pkt_data=fr, opts=[
                                               pn.PcapngOptionLE(code=1, data=b"a comment"),
                                               pn.PcapngOptionLE(code=0)])
            w.writepkt(epb)
            frames.append(fr)
            expect.append((iface, "eth0" if iface == 0 else "tun0", ts if iface == 0 else ts // 1000 * 1000))
    caps = read_capture(path)
    assert [(c.interface, c.ifname, c.ts_ns) for c in caps] == expect
    assert _tshark_stamps(path) == [e[2] for e in expect]
    _assert_sample(caps, frames, [e[2] for e in expect])


def test_dpkt_reads_our_pcapng_big_endian() -> None:
    buf = io.BytesIO()
    records = [(0, ts, frame_for(p, LINKTYPE_ETHERNET)) for p, ts in zip(SAMPLE, SAMPLE_TS)]
    from conntrace.observe.pcap import PcapngWriter
    w = PcapngWriter(buf, byteorder=">")
    w.add_interface(PcapngInterface(LINKTYPE_ETHERNET, "eth0", tsresol=9))
    for i, ts, fr in records:
        w.write(i, ts, fr)
    w.close()
    buf.seek(0)
    got = [bytes(b) for _, b in dpkt.pcapng.Reader(buf)]
    assert got == [fr for _, _, fr in records]
    assert buf.getvalue()[8:12] == struct.pack(">I", 0x1A2B3C4D)


def test_microsecond_writer_floors(tmp_path) -> None:
    path = str(tmp_path / "us.pcap")
    with PcapWriter(path) as w:
        w.write(1_999_999_999, encode_ether(SAMPLE[0], SRC_MAC, DST_MAC))
    assert read_capture(path)[0].ts_ns == 1_999_999_000
    raw = open(path, "rb").read()
    assert struct.unpack_from("<II", raw, 24) == (1, 999_999)


def test_unknown_linktype_is_reported_not_guessed(tmp_path) -> None:
    path = str(tmp_path / "null.pcap")
    with PcapWriter(path, linktype=0) as w:  # LINKTYPE_NULL (BSD loopback)
        w.write(0, b"\x02\0\0\0" + encode_ip(SAMPLE[0]))
    [cap] = read_capture(path)
    assert cap.packet is None and "link type 0 is not decoded" in cap.error


def test_non_ip_frames_come_back_with_a_reason(tmp_path) -> None:
    path = str(tmp_path / "arp.pcap")
    arp = bytes.fromhex("ffffffffffff0200000001020806") + bytes(28)
    with PcapWriter(path) as w:
        w.write(0, arp)
        w.write(1, encode_ether(SAMPLE[0], SRC_MAC, DST_MAC))
    a, b = read_capture(path)
    assert a.packet is None and a.error == "ethertype 0x0806 (ARP): not IP"
    assert b.packet is not None and b.index == 2 and str(b.packet.src) == "10.0.1.2"
    assert b.packet.meta.src_mac == SRC_MAC


def test_tshark_missing_is_a_skip_or_ci_failure(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but tshark is not installed"):
        need_tool("tshark")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        need_tool("tshark")
