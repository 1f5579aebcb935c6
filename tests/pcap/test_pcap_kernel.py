"""Real Linux traffic captured by tcpdump in our own namespaces: decode and re-encode exactly.

This is where the wire model meets the kernel: ICMP errors built by icmp_send()/icmp6_send()
must quote exactly what Packet.l4_len says (576 / 1280 bytes), and every re-encoded frame must
be byte-identical to what Linux put on the wire.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import time

import pytest

from conntrace.observe.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, read_capture
from conntrace.wire import PACKET_HOST, PACKET_MULTICAST, PACKET_OUTGOING, encode_ether, encode_sll2

pytestmark = pytest.mark.kernel

# Turn off tx checksum offload on a device (SIOCETHTOOL/ETHTOOL_STXCSUM, include/uapi/linux/
# ethtool.h): veth otherwise hands the capture CHECKSUM_PARTIAL packets with unfinished sums.
TX_CSUM_OFF = r"""
import ctypes, fcntl, socket, struct, sys
buf = ctypes.create_string_buffer(struct.pack("II", 0x17, 0))
ifr = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(buf)).ljust(40, b"\0")
fcntl.ioctl(socket.socket(), 0x8946, ifr)
"""

TRAFFIC = r"""
import socket, struct

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

# echo requests through raw sockets (no ping binary needed); the kernel answers them
echo = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + bytes(56)
r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r4.settimeout(2)
r4.sendto(echo[:2] + struct.pack("!H", csum(echo)) + echo[4:], ("10.99.0.2", 0))
r4.recv(2048)
r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
r6.settimeout(2)
r6.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x4242, 1) + bytes(56), ("fd99::2", 0))
r6.recv(2048)
for fam, dst in ((socket.AF_INET, "10.99.0.2"), (socket.AF_INET6, "fd99::2")):
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.sendto(bytes(1000 if fam == socket.AF_INET else 1400), (dst, 9))
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.settimeout(2)
    try:
        t.connect((dst, 9))
    except OSError:
        pass
"""


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_namespaces():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs root, iproute2 and tcpdump to build network namespaces")
    tag = random.randrange(10**6)
    a, b = f"ctx-pcap-a-{tag}", f"ctx-pcap-b-{tag}"
    try:
        _sh("ip", "netns", "add", a)
        _sh("ip", "netns", "add", b)
        _sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, v4, v6 in ((a, "va", "10.99.0.1/24", "fd99::1/64"), (b, "vb", "10.99.0.2/24", "fd99::2/64")):
            _sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
            # flow labels are not modelled: keep them 0 so the frames re-encode byte for byte
            _sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.auto_flowlabels=0")
            _sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            _sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "netns", "exec", ns, "python3", "-c", TX_CSUM_OFF, dev)
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _capture(ns: str, argv: list[str], path: str) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-U", "-n", "-s", "0",
                             "-w", path, *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # tcpdump says "listening on ..." once its socket is bound: only then may traffic start
    deadline, said = time.time() + 10, ""
    while "listening on" not in said and time.time() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        said += os.read(proc.stderr.fileno(), 4096).decode()
    assert "listening on" in said, f"tcpdump did not start: {said!r}"
    time.sleep(0.2)
    return proc


def test_linux_frames_decode_and_reencode_exactly(two_namespaces, tmp_path) -> None:
    a, b = two_namespaces
    eth_path, any_path = str(tmp_path / "vb.pcap"), str(tmp_path / "any.pcap")
    procs = [_capture(b, ["-i", "vb"], eth_path), _capture(b, ["-i", "any", "-y", "LINUX_SLL2"], any_path)]
    try:
        _sh("ip", "netns", "exec", a, "python3", "-c", TRAFFIC)
        time.sleep(0.5)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)

    caps = read_capture(eth_path)
    assert caps and all(c.linktype == LINKTYPE_ETHERNET for c in caps)
    seen = []
    for c in caps:
        if c.packet is None:
            # ARP, and MLD reports behind a hop-by-hop header: refused loudly, not guessed
            assert "ARP" in c.error or "hop-by-hop" in c.error, c.error
            continue
        pkt = c.packet
        assert not pkt.bad_l4_checksum, pkt.describe()
        assert encode_ether(pkt, c.data[6:12], c.data[0:6]) == c.data, pkt.describe()
        assert pkt.total_len == len(c.data) - 14
        seen.append(pkt)

    def find(pred):
        hits = [p for p in seen if pred(p)]
        assert hits, "expected packet not captured"
        return hits[0]

    syn = find(lambda p: p.family == 4 and p.tcp is not None and p.tcp.flags == 0x02)
    assert syn.total_len == 60  # the LEN=60 of a Linux SYN
    find(lambda p: p.family == 6 and p.tcp is not None and p.tcp.flags == 0x14)  # RST,ACK
    find(lambda p: p.family == 4 and p.icmp is not None and p.icmp.type == 0)  # echo reply
    find(lambda p: p.family == 6 and p.icmp is not None and p.icmp.type == 129)
    unreach4 = find(lambda p: p.family == 4 and p.icmp is not None and p.icmp.type == 3)
    unreach6 = find(lambda p: p.family == 6 and p.icmp is not None and p.icmp.type == 1)
    # icmp_send() quotes up to 576 bytes in all, icmp6_send() up to 1280: exactly Packet.l4_len
    assert unreach4.total_len == 576 and unreach4.icmp.quoted_len is None
    assert unreach6.total_len == 1280 and unreach6.icmp.quoted_len is None
    assert unreach4.icmp.embedded.payload_len == 1000 and unreach6.icmp.embedded.payload_len == 1400
    assert unreach4.icmp.embedded.udp.dport == 9 and unreach4.tos == 0xC0

    # the same traffic through `tcpdump -i any -y LINUX_SLL2`: both directions, with pkttype
    every = read_capture(any_path)
    cooked = [c for c in every if c.packet is not None]
    assert cooked and all(c.linktype == LINKTYPE_LINUX_SLL2 for c in cooked), [c.error for c in every]
    kinds = set()
    for c in cooked:
        ck = c.cooked
        assert ck.pkttype in (PACKET_HOST, PACKET_MULTICAST, PACKET_OUTGOING)  # ND is multicast
        kinds.add(ck.pkttype)
        assert encode_sll2(c.packet, ifindex=ck.ifindex, pkttype=ck.pkttype, addr=ck.addr,
                           hatype=ck.hatype) == c.data
        if ck.pkttype != PACKET_OUTGOING:
            assert c.packet.meta.src_mac == ck.addr
    assert {PACKET_HOST, PACKET_OUTGOING} <= kinds
