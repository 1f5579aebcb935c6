"""Our own pcap and pcapng reader and writer (plain `struct`, no libpcap).

Formats: the classic libpcap file (pcap-savefile(5); magic a1b2c3d4 for microseconds,
a1b23c4d for nanoseconds, either byte order) and pcapng (draft-ietf-opsawg-pcapng: SHB of
either byte order, IDB with if_tsresol/if_tsoffset, EPB, SPB and the obsolete PB; every other
block is skipped). Timestamps are kept exact as integer nanoseconds (pcapng resolutions finer
than 1 ns are floored).

`parse_capture(data, name)` is the sans-I/O core; `read_capture(path)` reads a file. A frame
that is not a modelled IP packet still comes back, with `packet=None` and `error` saying why;
a file whose structure is broken raises one `InputError` naming the file, the record or block
number, its byte offset and what was expected.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from ..errors import InputError
from ..packet import Packet
from ..wire import CookedHeader, UnmodelledError, decode_ether, decode_ip, decode_sll, decode_sll2

# Link-layer header types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_NAMES = {LINKTYPE_ETHERNET: "ETHERNET", LINKTYPE_RAW: "RAW", LINKTYPE_LINUX_SLL: "LINUX_SLL",
                  LINKTYPE_IPV4: "IPV4", LINKTYPE_IPV6: "IPV6", LINKTYPE_LINUX_SLL2: "LINUX_SLL2"}

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
# IDB option codes
OPT_ENDOFOPT = 0
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14

# libpcap refuses records larger than this whatever the snaplen says (MAXIMUM_SNAPLEN)
MAX_RECORD = 262144


@dataclass
class CapturedPacket:
    """One captured frame. `ts_ns` is exact (None only for pcapng Simple Packet Blocks)."""

    ts_ns: int | None
    ifname: str | None
    linktype: int
    data: bytes
    packet: Packet | None
    orig_len: int = 0
    index: int = 0  # 1-based frame number, as tshark counts
    interface: int = 0  # pcapng interface id (0 for classic pcap)
    error: str | None = None  # why `packet` is None
    cooked: CookedHeader | None = None  # the SLL/SLL2 pseudo header

    @property
    def ts(self) -> float | None:
        return None if self.ts_ns is None else self.ts_ns / 1e9

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.orig_len


@dataclass
class PcapngInterface:
    linktype: int = LINKTYPE_ETHERNET
    name: str | None = None
    snaplen: int = 0
    tsresol: int = 6  # if_tsresol byte: 10^-6 unless the high bit says 2^-n
    tsoffset: int = 0  # seconds
    options: list[tuple[int, bytes]] = field(default_factory=list)


def decode_frame(linktype: int, data: bytes, *, truncated: bool = False,
                 keep_payload: bool = True) -> tuple[Packet, CookedHeader | None]:
    """Decode one frame of a capture by its link type; raises a WireError subclass."""
    if linktype == LINKTYPE_ETHERNET:
        return decode_ether(data, keep_payload=keep_payload, truncated=truncated)[0], None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        pkt = decode_ip(data, keep_payload=keep_payload, truncated=truncated)
        if linktype != LINKTYPE_RAW and pkt.family != (4 if linktype == LINKTYPE_IPV4 else 6):
            raise UnmodelledError(f"IPv{pkt.family} packet in a {LINKTYPE_NAMES[linktype]} capture")
        return pkt, None
    if linktype == LINKTYPE_LINUX_SLL:
        return decode_sll(data, keep_payload=keep_payload, truncated=truncated)
    if linktype == LINKTYPE_LINUX_SLL2:
        return decode_sll2(data, keep_payload=keep_payload, truncated=truncated)
    raise UnmodelledError(f"link type {linktype} is not decoded (expected one of "
                          f"{', '.join(f'{v} {k}' for k, v in sorted(LINKTYPE_NAMES.items()))})")


def _captured(ts_ns: int | None, ifname: str | None, linktype: int, data: bytes, orig_len: int,
              index: int, interface: int) -> CapturedPacket:
    cp = CapturedPacket(ts_ns, ifname, linktype, data, None, orig_len, index, interface)
    try:
        cp.packet, cp.cooked = decode_frame(linktype, data, truncated=len(data) < orig_len)
    except InputError as e:
        cp.error = e.message
    return cp


class _Fail(Exception):
    """Internal: a structural error at a byte offset, turned into one InputError."""

    def __init__(self, what: str, offset: int, message: str):
        super().__init__(message)
        self.what, self.offset, self.message = what, offset, message


def read_capture(path: str | os.PathLike) -> list[CapturedPacket]:
    """Read a pcap or pcapng file; every structural problem is one InputError naming the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read capture: {e.strerror}", file=name) from None
    return parse_capture(data, name)


def parse_capture(data: bytes, name: str = "<capture>") -> list[CapturedPacket]:
    data = bytes(data)
    if len(data) < 4:
        raise InputError(f"not a capture file: {len(data)} bytes, expected a pcap or pcapng header",
                         file=name)
    try:
        if data[:4] == struct.pack("<I", PCAPNG_SHB):
            return _parse_pcapng(data)
        return _parse_pcap(data)
    except _Fail as e:
        raise InputError(f"{e.what} at byte offset {e.offset}: {e.message}", file=name) from None


# ----------------------------------------------------------------------------------------------
# classic pcap


def _parse_pcap(data: bytes) -> list[CapturedPacket]:
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    for end, magic in (("<", magic_le), (">", magic_be)):
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            break
    else:
        raise _Fail("file header", 0, f"unknown magic 0x{magic_be:08x}: expected a pcap file "
                    "(a1b2c3d4 or a1b23c4d, either byte order) or pcapng (0a0d0d0a)")
    nano = magic == PCAP_MAGIC_NS
    if len(data) < 24:
        raise _Fail("file header", 0, f"truncated pcap file header: {len(data)} bytes, expected 24")
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(end + "HHiIII", data, 4)
    if major != 2:
        raise _Fail("file header", 0, f"pcap version {major}.{minor}: expected 2.4")
    linktype = network & 0xFFFF  # upper bits: FCS-length hints
    limit = max(snaplen, MAX_RECORD)
    frac_max = 1_000_000_000 if nano else 1_000_000
    out: list[CapturedPacket] = []
    off, n = 24, 0
    while off < len(data):
        n += 1
        what = f"record {n}"
        if len(data) - off < 16:
            raise _Fail(what, off, f"truncated record header: {len(data) - off} bytes left, expected 16")
        sec, frac, caplen, origlen = struct.unpack_from(end + "IIII", data, off)
        if frac >= frac_max:
            unit = "nanoseconds" if nano else "microseconds"
            raise _Fail(what, off, f"{unit} field {frac} out of range: expected below {frac_max}")
        if caplen > limit:
            raise _Fail(what, off, f"captured length {caplen} exceeds the snaplen {snaplen}: "
                        "expected a record length (corrupt file?)")
        if len(data) - off - 16 < caplen:
            raise _Fail(what, off, f"truncated packet data: {caplen} bytes expected, "
                        f"{len(data) - off - 16} left in the file")
        frame = data[off + 16:off + 16 + caplen]
        ts_ns = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        out.append(_captured(ts_ns, None, linktype, frame, origlen, n, 0))
        off += 16 + caplen
    return out


# ----------------------------------------------------------------------------------------------
# pcapng


def _tsresol_ns(units: int, tsresol: int) -> int:
    """Timestamp units -> integer nanoseconds (floored when finer than 1 ns)."""
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        return (units * 1_000_000_000) >> exp
    if exp <= 9:
        return units * 10 ** (9 - exp)
    return units // 10 ** (exp - 9)


def _options(body: bytes, start: int, end: str, what: str, base: int) -> list[tuple[int, bytes]]:
    """Parse an options area: code(2) length(2) value padded to 4, ended by opt_endofopt."""
    opts: list[tuple[int, bytes]] = []
    off = start
    while off < len(body):
        if len(body) - off < 4:
            raise _Fail(what, base, f"truncated option header at block offset {off + 8}: "
                        f"{len(body) - off} bytes left, expected 4")
        code, length = struct.unpack_from(end + "HH", body, off)
        if code == OPT_ENDOFOPT:
            break
        padded = length + (-length % 4)
        if off + 4 + padded > len(body):
            raise _Fail(what, base, f"option {code} of {length} bytes at block offset {off + 8} "
                        f"runs past the end of the block: expected at most {len(body) - off - 4}")
        opts.append((code, body[off + 4:off + 4 + length]))
        off += 4 + padded
    return opts


def _interface(body: bytes, end: str, what: str, base: int) -> PcapngInterface:
    if len(body) < 8:
        raise _Fail(what, base, f"Interface Description Block body of {len(body)} bytes: expected at least 8")
    linktype, _res, snaplen = struct.unpack_from(end + "HHI", body)
    iface = PcapngInterface(linktype=linktype, snaplen=snaplen)
    iface.options = _options(body, 8, end, what, base)
    for code, value in iface.options:
        if code == IF_NAME:
            iface.name = value.rstrip(b"\0").decode("utf-8", "replace")
        elif code == IF_TSRESOL:
            if len(value) != 1:
                raise _Fail(what, base, f"if_tsresol option of {len(value)} bytes: expected 1")
            iface.tsresol = value[0]
            if (iface.tsresol & 0x7F) > (63 if iface.tsresol & 0x80 else 19):
                raise _Fail(what, base, f"if_tsresol 0x{iface.tsresol:02x}: resolution out of range")
        elif code == IF_TSOFFSET:
            if len(value) != 8:
                raise _Fail(what, base, f"if_tsoffset option of {len(value)} bytes: expected 8")
            iface.tsoffset = struct.unpack(end + "q", value)[0]
    return iface


def _parse_pcapng(data: bytes) -> list[CapturedPacket]:
    out: list[CapturedPacket] = []
    ifaces: list[PcapngInterface] = []
    end = "<"
    off, n, frames = 0, 0, 0
    while off < len(data):
        n += 1
        what = f"block {n}"
        if len(data) - off < 12:
            raise _Fail(what, off, f"truncated block header: {len(data) - off} bytes left, expected "
                        "at least 12")
        if data[off:off + 4] == struct.pack("<I", PCAPNG_SHB):
            if len(data) - off < 28:
                raise _Fail(what, off, "truncated Section Header Block: expected at least 28 bytes")
            bom = data[off + 8:off + 12]
            if bom == struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC):
                end = "<"
            elif bom == struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC):
                end = ">"
            else:
                raise _Fail(what, off, f"bad byte-order magic {bom.hex()}: expected 1a2b3c4d "
                            "in either byte order")
            ifaces = []  # interfaces are per section
        elif n == 1:
            raise _Fail(what, off, "expected a Section Header Block first")
        btype, blen = struct.unpack_from(end + "II", data, off)
        if blen < 12 or blen % 4:
            raise _Fail(what, off, f"bad block length {blen}: expected a multiple of 4, at least 12")
        if off + blen > len(data):
            raise _Fail(what, off, f"truncated block: {blen} bytes expected, only {len(data) - off} "
                        "left in the file")
        trailer = struct.unpack_from(end + "I", data, off + blen - 4)[0]
        if trailer != blen:
            raise _Fail(what, off, f"trailing block length {trailer}: expected {blen}, as the leading one")
        body = data[off + 8:off + blen - 4]
        if btype == PCAPNG_SHB:
            if blen < 28:
                raise _Fail(what, off, f"Section Header Block of {blen} bytes: expected at least 28")
            major, minor = struct.unpack_from(end + "HH", body, 4)
            if major != 1:
                raise _Fail(what, off, f"pcapng version {major}.{minor}: expected 1.x")
            _options(body, 16, end, what, off)
        elif btype == PCAPNG_IDB:
            ifaces.append(_interface(body, end, what, off))
        elif btype in (PCAPNG_EPB, PCAPNG_PB):
            fixed = 20  # both: interface, timestamp (2x4), captured and original length
            kind = "Enhanced Packet Block" if btype == PCAPNG_EPB else "Packet Block"
            if len(body) < fixed:
                raise _Fail(what, off, f"{kind} body of {len(body)} bytes: expected at least {fixed}")
            if btype == PCAPNG_EPB:
                iid, tsh, tsl, caplen, origlen = struct.unpack_from(end + "IIIII", body)
            else:  # the obsolete PB: a 16-bit interface id and a drops counter
                iid, _drops, tsh, tsl, caplen, origlen = struct.unpack_from(end + "HHIIII", body)
            if iid >= len(ifaces):
                raise _Fail(what, off, f"packet on interface {iid}, but the section describes only "
                            f"{len(ifaces)} interface(s): expected its Interface Description Block first")
            if fixed + caplen + (-caplen % 4) > len(body):
                raise _Fail(what, off, f"captured length {caplen} runs past the end of the block: "
                            f"expected at most {len(body) - fixed}")
            _options(body, fixed + caplen + (-caplen % 4), end, what, off)
            iface = ifaces[iid]
            ts_ns = _tsresol_ns(tsh << 32 | tsl, iface.tsresol) + iface.tsoffset * 1_000_000_000
            frames += 1
            out.append(_captured(ts_ns, iface.name, iface.linktype, body[fixed:fixed + caplen],
                                 origlen, frames, iid))
        elif btype == PCAPNG_SPB:
            if not ifaces:
                raise _Fail(what, off, "Simple Packet Block before any Interface Description Block")
            if len(body) < 4:
                raise _Fail(what, off, "Simple Packet Block without its original length field")
            origlen = struct.unpack_from(end + "I", body)[0]
            iface = ifaces[0]
            caplen = min(origlen, len(body) - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            frames += 1
            out.append(_captured(None, iface.name, iface.linktype, body[4:4 + caplen],
                                 origlen, frames, 0))
        # every other block type (NRB, ISB, DSB, custom, ...) is skipped whole
        off += blen
    return out


# ----------------------------------------------------------------------------------------------
# writers


def _split_ts(ts_ns: int, per_second: int) -> tuple[int, int]:
    if not isinstance(ts_ns, int) or ts_ns < 0:
        raise InputError(f"timestamp {ts_ns!r}: expected a non-negative integer of nanoseconds")
    sec, frac_ns = divmod(ts_ns, 1_000_000_000)
    if sec >= 1 << 32:
        raise InputError(f"timestamp {ts_ns} ns is past 2106, which classic pcap cannot hold")
    return sec, frac_ns * per_second // 1_000_000_000


def pcap_file_header(linktype: int = LINKTYPE_ETHERNET, *, nanosecond: bool = False,
                     snaplen: int = MAX_RECORD, byteorder: str = "<") -> bytes:
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, frame: bytes, *, orig_len: int | None = None, nanosecond: bool = False,
                snaplen: int = MAX_RECORD, byteorder: str = "<") -> bytes:
    """One record; a frame longer than `snaplen` is cut, its original length kept."""
    sec, frac = _split_ts(ts_ns, 1_000_000_000 if nanosecond else 1_000_000)
    data = bytes(frame)[:snaplen]
    orig = len(frame) if orig_len is None else orig_len
    return struct.pack(byteorder + "IIII", sec, frac, len(data), orig) + data


class PcapWriter:
    """Write a classic pcap file: `with PcapWriter(path) as w: w.write(ts_ns, frame)`.
    Microsecond files floor the nanoseconds; `nanosecond=True` keeps them."""

    def __init__(self, path: str | os.PathLike | BinaryIO, linktype: int = LINKTYPE_ETHERNET,
                 nanosecond: bool = False, snaplen: int = MAX_RECORD, byteorder: str = "<"):
        if byteorder not in ("<", ">"):
            raise InputError(f"byteorder {byteorder!r}: expected '<' or '>'")
        self.linktype, self.nanosecond, self.snaplen, self.byteorder = linktype, nanosecond, snaplen, byteorder
        self._own = not hasattr(path, "write")
        self._f: BinaryIO = open(os.fspath(path), "wb") if self._own else path  # type: ignore[arg-type]
        self._f.write(pcap_file_header(linktype, nanosecond=nanosecond, snaplen=snaplen,
                                       byteorder=byteorder))

    def write(self, ts_ns: int, frame: bytes, orig_len: int | None = None) -> None:
        self._f.write(pcap_record(ts_ns, frame, orig_len=orig_len, nanosecond=self.nanosecond,
                                  snaplen=self.snaplen, byteorder=self.byteorder))

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _block(end: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    blen = len(body) + 12
    return struct.pack(end + "II", btype, blen) + body + struct.pack(end + "I", blen)


def _option(end: str, code: int, value: bytes) -> bytes:
    return struct.pack(end + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def pcapng_section_header(byteorder: str = "<") -> bytes:
    return _block(byteorder, PCAPNG_SHB, struct.pack(byteorder + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1))


def pcapng_interface_block(iface: PcapngInterface, byteorder: str = "<") -> bytes:
    opts = b""
    if iface.name is not None:
        opts += _option(byteorder, IF_NAME, iface.name.encode("utf-8"))
    if iface.tsresol != 6:
        opts += _option(byteorder, IF_TSRESOL, bytes([iface.tsresol]))
    if iface.tsoffset:
        opts += _option(byteorder, IF_TSOFFSET, struct.pack(byteorder + "q", iface.tsoffset))
    if opts:
        opts += _option(byteorder, OPT_ENDOFOPT, b"")
    return _block(byteorder, PCAPNG_IDB,
                  struct.pack(byteorder + "HHI", iface.linktype, 0, iface.snaplen) + opts)


def pcapng_packet_block(iface_id: int, iface: PcapngInterface, ts_ns: int, frame: bytes,
                        orig_len: int | None = None, byteorder: str = "<") -> bytes:
    if not isinstance(ts_ns, int) or ts_ns < iface.tsoffset * 1_000_000_000:
        raise InputError(f"timestamp {ts_ns!r}: expected an integer of nanoseconds not before "
                         "the interface's if_tsoffset")
    rel = ts_ns - iface.tsoffset * 1_000_000_000
    exp = iface.tsresol & 0x7F
    units = (rel << exp) // 1_000_000_000 if iface.tsresol & 0x80 else rel * 10 ** exp // 1_000_000_000
    if units >= 1 << 64:
        raise InputError(f"timestamp {ts_ns} ns does not fit 64 bits at if_tsresol {iface.tsresol}")
    data = bytes(frame)[:iface.snaplen] if iface.snaplen else bytes(frame)
    orig = len(frame) if orig_len is None else orig_len
    body = struct.pack(byteorder + "IIIII", iface_id, units >> 32, units & 0xFFFFFFFF, len(data), orig) + data
    return _block(byteorder, PCAPNG_EPB, body)


class PcapngWriter:
    """Write a pcapng file with one section: add interfaces first, then packets."""

    def __init__(self, path: str | os.PathLike | BinaryIO, byteorder: str = "<"):
        if byteorder not in ("<", ">"):
            raise InputError(f"byteorder {byteorder!r}: expected '<' or '>'")
        self.byteorder = byteorder
        self.interfaces: list[PcapngInterface] = []
        self._own = not hasattr(path, "write")
        self._f: BinaryIO = open(os.fspath(path), "wb") if self._own else path  # type: ignore[arg-type]
        self._f.write(pcapng_section_header(byteorder))

    def add_interface(self, iface: PcapngInterface) -> int:
        self.interfaces.append(iface)
        self._f.write(pcapng_interface_block(iface, self.byteorder))
        return len(self.interfaces) - 1

    def write(self, iface_id: int, ts_ns: int, frame: bytes, orig_len: int | None = None) -> None:
        if not 0 <= iface_id < len(self.interfaces):
            raise InputError(f"interface {iface_id}: expected one of the {len(self.interfaces)} "
                             "added with add_interface()")
        self._f.write(pcapng_packet_block(iface_id, self.interfaces[iface_id], ts_ns, frame,
                                          orig_len, self.byteorder))

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> "PcapngWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pcapng(path: str | os.PathLike, interfaces: Iterable[PcapngInterface],
                 records: Iterable[tuple[int, int, bytes]], byteorder: str = "<") -> None:
    """Write `records` of (interface id, ts_ns, frame) to a one-section pcapng file."""
    with PcapngWriter(path, byteorder) as w:
        for iface in interfaces:
            w.add_interface(iface)
        for iface_id, ts_ns, frame in records:
            w.write(iface_id, ts_ns, frame)
