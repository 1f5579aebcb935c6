"""Broken capture files: one clear InputError naming the file, where, and what was expected."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conntrace.errors import InputError
from conntrace.packet import Packet, UdpHeader, ip
from conntrace.observe.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapngInterface,
    PcapngWriter,
    PcapWriter,
    parse_capture,
    pcap_file_header,
    pcap_record,
    pcapng_interface_block,
    pcapng_packet_block,
    pcapng_section_header,
    read_capture,
)
from conntrace.wire import encode_ether, encode_ip

PKT = Packet(ip("10.0.1.2"), ip("10.0.2.2"), 17, UdpHeader(40004, 7000), payload_len=5)
FRAME = encode_ether(PKT, "02:00:00:00:00:01", "02:00:00:00:00:02")


def _error(tmp_path, blob: bytes, name: str = "bad.cap") -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(InputError) as ei:
        read_capture(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    return msg[len(str(path)) + 2:]


def _pcap(n: int = 2, byteorder: str = "<", nano: bool = False) -> bytes:
    blob = pcap_file_header(LINKTYPE_ETHERNET, byteorder=byteorder, nanosecond=nano)
    for i in range(n):
        blob += pcap_record(i * 1000, FRAME, byteorder=byteorder, nanosecond=nano)
    return blob


def _pcapng(*blocks: bytes, byteorder: str = "<") -> bytes:
    return pcapng_section_header(byteorder) + b"".join(blocks)


IFACE = PcapngInterface(LINKTYPE_ETHERNET, "eth0", tsresol=9)


def _epb(iface_id: int = 0, ts: int = 5, frame: bytes = FRAME, byteorder: str = "<") -> bytes:
    return pcapng_packet_block(iface_id, IFACE, ts, frame, byteorder=byteorder)


def _block(btype: int, body: bytes, byteorder: str = "<") -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(byteorder + "II", btype, n) + body + struct.pack(byteorder + "I", n)


# ------------------------------------------------------------------------------------------------
# classic pcap


def test_missing_and_empty_files(tmp_path) -> None:
    with pytest.raises(InputError, match=r"nope\.pcap: cannot read capture: No such file"):
        read_capture(tmp_path / "nope.pcap")
    assert _error(tmp_path, b"") == "not a capture file: 0 bytes, expected a pcap or pcapng header"


def test_bad_magic(tmp_path) -> None:
    msg = _error(tmp_path, b"GIF89a" + bytes(40))
    assert msg.startswith("file header at byte offset 0: unknown magic 0x47494638: expected a pcap file")


def test_truncated_file_header(tmp_path) -> None:
    assert _error(tmp_path, _pcap(0)[:20]) == (
        "file header at byte offset 0: truncated pcap file header: 20 bytes, expected 24")


def test_bad_version(tmp_path) -> None:
    blob = bytearray(_pcap(1))
    blob[4:6] = struct.pack("<H", 3)
    assert "pcap version 3.4: expected 2.4" in _error(tmp_path, bytes(blob))


def test_truncated_record_header(tmp_path) -> None:
    blob = _pcap(2)
    second = 24 + 16 + len(FRAME)
    assert _error(tmp_path, blob[:second + 10]) == (
        f"record 2 at byte offset {second}: truncated record header: 10 bytes left, expected 16")


def test_truncated_record_data(tmp_path) -> None:
    blob = _pcap(2)
    second = 24 + 16 + len(FRAME)
    assert _error(tmp_path, blob[:-1]) == (
        f"record 2 at byte offset {second}: truncated packet data: {len(FRAME)} bytes expected, "
        f"{len(FRAME) - 1} left in the file")


def test_absurd_record_length(tmp_path) -> None:
    blob = bytearray(_pcap(1, byteorder=">"))
    blob[24 + 8:24 + 12] = struct.pack(">I", 0x7FFFFFFF)
    assert "record 1 at byte offset 24: captured length 2147483647 exceeds the snaplen 262144" in \
        _error(tmp_path, bytes(blob))


@pytest.mark.parametrize("nano", [False, True])
def test_fraction_out_of_range(tmp_path, nano) -> None:
    blob = bytearray(_pcap(1, nano=nano))
    limit = 10**9 if nano else 10**6
    blob[24 + 4:24 + 8] = struct.pack("<I", limit)
    unit = "nanoseconds" if nano else "microseconds"
    assert _error(tmp_path, bytes(blob)) == (
        f"record 1 at byte offset 24: {unit} field {limit} out of range: expected below {limit}")


@pytest.mark.parametrize("byteorder", "<>")
@pytest.mark.parametrize("nano", [False, True])
def test_both_byte_orders_and_resolutions(byteorder, nano) -> None:
    caps = parse_capture(_pcap(3, byteorder, nano))
    assert [c.ts_ns for c in caps] == [0, 1000, 2000]
    assert [c.index for c in caps] == [1, 2, 3]
    assert all(c.data == FRAME and c.packet is not None for c in caps)


def test_writer_refuses_bad_timestamps(tmp_path) -> None:
    with PcapWriter(tmp_path / "x.pcap") as w:
        with pytest.raises(InputError, match="expected a non-negative integer of nanoseconds"):
            w.write(-1, FRAME)
        with pytest.raises(InputError, match="past 2106"):
            w.write(2**32 * 10**9, FRAME)
        w.write(3, FRAME)
    assert len(read_capture(tmp_path / "x.pcap")) == 1


def test_writer_snaplen_cuts_and_keeps_orig_len(tmp_path) -> None:
    with PcapWriter(tmp_path / "s.pcap", linktype=LINKTYPE_RAW, snaplen=30) as w:
        w.write(0, encode_ip(PKT))
    [cap] = read_capture(tmp_path / "s.pcap")
    assert len(cap.data) == 30 and cap.orig_len == 33 and cap.truncated
    assert cap.packet is not None and cap.packet.udp.dport == 7000 and cap.packet.payload is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_truncation_is_one_clear_error(data) -> None:
    blob = data.draw(st.sampled_from([_pcap(3), _pcap(2, ">", True), _pcapng(
        pcapng_interface_block(IFACE), _epb(), _block(0x0BAD, b"custom"), _epb(ts=9))]))
    cut = data.draw(st.integers(4, len(blob) - 1))  # below 4 bytes: test_missing_and_empty_files
    try:
        caps = parse_capture(blob[:cut], "cut.pcap")
    except InputError as e:
        msg = str(e)
        assert msg.startswith("cut.pcap: ") and "byte offset" in msg and "expected" in msg
    else:
        # only a cut exactly between records parses, and then drops nothing it claims to have
        assert all(c.data == FRAME for c in caps)


# ------------------------------------------------------------------------------------------------
# pcapng


def test_pcapng_needs_a_section_header_first(tmp_path) -> None:
    blob = pcapng_section_header() + pcapng_interface_block(IFACE)
    # a file that starts with an IDB is not recognised as pcapng at all
    assert "unknown magic 0x01000000" in _error(tmp_path, pcapng_interface_block(IFACE) + blob)


def test_bad_byte_order_magic(tmp_path) -> None:
    blob = bytearray(_pcapng(pcapng_interface_block(IFACE)))
    blob[8:12] = b"\x01\x02\x03\x04"
    assert _error(tmp_path, bytes(blob)) == (
        "block 1 at byte offset 0: bad byte-order magic 01020304: expected 1a2b3c4d in either byte order")


def test_bad_block_lengths(tmp_path) -> None:
    idb = pcapng_interface_block(IFACE)
    shb_len = len(pcapng_section_header())
    odd = bytearray(_pcapng(idb))
    odd[shb_len + 4:shb_len + 8] = struct.pack("<I", len(idb) + 2)
    assert _error(tmp_path, bytes(odd)) == (
        f"block 2 at byte offset {shb_len}: bad block length {len(idb) + 2}: "
        "expected a multiple of 4, at least 12")
    long = bytearray(_pcapng(idb))
    long[shb_len + 4:shb_len + 8] = struct.pack("<I", len(idb) + 400)
    assert _error(tmp_path, bytes(long)) == (
        f"block 2 at byte offset {shb_len}: truncated block: {len(idb) + 400} bytes expected, only "
        f"{len(idb)} left in the file")
    trailer = bytearray(_pcapng(idb))
    trailer[-4:] = struct.pack("<I", len(idb) + 4)
    assert _error(tmp_path, bytes(trailer)) == (
        f"block 2 at byte offset {shb_len}: trailing block length {len(idb) + 4}: expected "
        f"{len(idb)}, as the leading one")
    assert "truncated block header: 8 bytes left" in _error(tmp_path, _pcapng(idb, b"\x06\0\0\0\0\0\0\0"))


def test_bad_version_pcapng(tmp_path) -> None:
    blob = bytearray(_pcapng())
    blob[12:14] = struct.pack("<H", 2)
    assert "pcapng version 2.0: expected 1.x" in _error(tmp_path, bytes(blob))


def test_packet_on_undeclared_interface(tmp_path) -> None:
    blob = _pcapng(pcapng_interface_block(IFACE), _epb(iface_id=1))
    off = len(_pcapng(pcapng_interface_block(IFACE)))
    assert _error(tmp_path, blob) == (
        f"block 3 at byte offset {off}: packet on interface 1, but the section describes only "
        "1 interface(s): expected its Interface Description Block first")


def test_captured_length_past_block(tmp_path) -> None:
    epb = bytearray(_epb())
    epb[8 + 12:8 + 16] = struct.pack("<I", 4000)
    off = len(_pcapng(pcapng_interface_block(IFACE)))
    assert _error(tmp_path, _pcapng(pcapng_interface_block(IFACE), bytes(epb))) == (
        f"block 3 at byte offset {off}: captured length 4000 runs past the end of the block: "
        f"expected at most {len(FRAME) + (-len(FRAME) % 4)}")


def test_option_overrun(tmp_path) -> None:
    body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + struct.pack("<HH", 2, 200) + b"eth0"
    msg = _error(tmp_path, _pcapng(_block(1, body)))
    assert "option 2 of 200 bytes at block offset 16 runs past the end of the block" in msg
    bad_res = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 2) + b"\x09\x09" + bytes(2)
    assert "if_tsresol option of 2 bytes: expected 1" in _error(tmp_path, _pcapng(_block(1, bad_res)))


def test_unknown_blocks_and_options_are_skipped() -> None:
    idb_body = (struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0)
                + struct.pack("<HH", 3, 5) + b"hello" + bytes(3)  # if_description
                + struct.pack("<HH", 2, 4) + b"wan0"
                + struct.pack("<HH", 9, 1) + b"\x09" + bytes(3)
                + struct.pack("<HH", 0x8001, 3) + b"xyz" + bytes(1)  # a custom option
                + struct.pack("<HH", 0, 0))
    epb_opts = struct.pack("<HH", 1, 7) + b"comment" + bytes(1) + struct.pack("<HH", 0, 0)
    epb = _epb(ts=123_456_789_012)
    epb_len = len(epb) + len(epb_opts)
    epb = struct.pack("<II", 6, epb_len) + epb[8:-4] + epb_opts + struct.pack("<I", epb_len)
    blob = _pcapng(
        _block(0x0BAD, b"custom block"),  # custom
        _block(1, idb_body),
        _block(4, struct.pack("<HH", 1, 4) + ip("10.0.0.1").packed + b"host" + struct.pack("<HH", 0, 0)),  # NRB
        epb,
        _block(5, struct.pack("<III", 0, 0, 0)),  # ISB
        _block(0x40000BAD, b"another custom"),
        _block(0x0000000A, b"secrets"),  # DSB
    )
    [cap] = parse_capture(blob)
    assert (cap.ifname, cap.ts_ns, cap.data, cap.index) == ("wan0", 123_456_789_012, FRAME, 1)


def test_several_sections_with_both_byte_orders() -> None:
    le = _pcapng(pcapng_interface_block(IFACE), _epb(ts=1))
    other = PcapngInterface(LINKTYPE_RAW, "tun0", tsresol=6)
    be = (pcapng_section_header(">") + pcapng_interface_block(other, ">")
          + pcapng_packet_block(0, other, 2000, encode_ip(PKT), byteorder=">"))
    caps = parse_capture(le + be + le)
    assert [(c.ifname, c.linktype, c.ts_ns, c.interface) for c in caps] == [
        ("eth0", 1, 1, 0), ("tun0", 101, 2000, 0), ("eth0", 1, 1, 0)]
    assert [c.index for c in caps] == [1, 2, 3]
    # interfaces do not carry over from one section to the next
    with pytest.raises(InputError, match="block 5 at byte offset .*: packet on interface 0, but the "
                       "section describes only 0 interface"):
        parse_capture(le + pcapng_section_header() + _epb())


def test_simple_packet_block_and_obsolete_packet_block() -> None:
    iface = PcapngInterface(LINKTYPE_ETHERNET, "eth0", snaplen=44)  # headers and 2 payload bytes
    spb = _block(3, struct.pack("<I", len(FRAME)) + FRAME[:44])
    pb = _block(2, struct.pack("<HHIIII", 0, 0, 0, 7_000_000, len(FRAME), len(FRAME)) + FRAME)
    caps = parse_capture(_pcapng(pcapng_interface_block(iface), spb, pb))
    assert caps[0].ts_ns is None and caps[0].data == FRAME[:44] and caps[0].orig_len == len(FRAME)
    assert caps[0].packet is not None and caps[0].packet.payload is None  # cut by the snaplen
    assert caps[1].ts_ns == 7_000_000_000 and caps[1].data == FRAME and caps[1].packet.udp.sport == 40004
    with pytest.raises(InputError, match="Simple Packet Block before any Interface Description Block"):
        parse_capture(_pcapng(spb))


@pytest.mark.parametrize("tsresol,units,ns", [
    (6, 1_500_000, 1_500_000_000),
    (9, 7, 7),
    (12, 123_456, 123),  # picoseconds floor to nanoseconds
    (0, 3, 3_000_000_000),
    (0x80 | 10, 1024, 1_000_000_000),  # 2^-10 s units
    (0x80 | 30, 1, 0),
    (0x80 | 1, 3, 1_500_000_000),
])
def test_timestamp_resolutions(tsresol, units, ns) -> None:
    iface_body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 1) + bytes([tsresol, 0, 0, 0])
    epb = _block(6, struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(FRAME), len(FRAME)) + FRAME)
    [cap] = parse_capture(_pcapng(_block(1, iface_body), epb))
    assert cap.ts_ns == ns


def test_tsoffset_is_added() -> None:
    iface = PcapngInterface(LINKTYPE_ETHERNET, "eth0", tsresol=9, tsoffset=1_000)
    buf = _pcapng(pcapng_interface_block(iface), pcapng_packet_block(0, iface, 1_000 * 10**9 + 5, FRAME))
    [cap] = parse_capture(buf)
    assert cap.ts_ns == 1_000 * 10**9 + 5
    # the block itself holds only the 5 ns after the offset
    raw_units = struct.unpack_from("<II", pcapng_packet_block(0, iface, 1_000 * 10**9 + 5, FRAME), 12)
    assert raw_units == (0, 5)


def test_pcapng_writer_refuses_unknown_interface(tmp_path) -> None:
    with PcapngWriter(tmp_path / "w.pcapng") as w:
        w.add_interface(IFACE)
        with pytest.raises(InputError, match="interface 1: expected one of the 1 added"):
            w.write(1, 0, FRAME)
