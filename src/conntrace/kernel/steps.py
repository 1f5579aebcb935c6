"""Timeline steps for the kernel run, as data (pure): what each agent is asked to do, how long
it may take, and which step a server's sighting belongs to."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import InputError
from ..host.sysctl import DEFAULT_SYSCTLS
from ..packetspec import parse_packet_spec
from ..scenario.model import Scenario, Step
from ..scenario.outcome import RunOutcome, ServerSaw, StepOutcome

AGENT_ECHO_WAIT = 1.0  # agent.ECHO_WAIT: a TCP client waits this long for its echo
AGENT_REPLY_WAIT = 1.0  # agent.REPLY_WAIT: a UDP/ping client waits this long after its last send
ATTRIBUTION_SLACK = 0.3  # a server sighting this long after a step ended still belongs to it
_CLIENT_ARGS = ("sport", "uid", "gid", "payload", "count", "interval", "icmp_id", "hold", "close",
                "syn_retries")


def syn_give_up(retries: int, linear: int = 4) -> float:
    """When connect() gives up on an unanswered SYN (seconds), Linux 6.18.

    The budget is the exponential model, (2^(retries+1) - 1) s with a 1 s initial RTO
    (tcp_model_timeout in net/ipv4/tcp_timer.c); the retransmissions themselves are spaced
    1 s apart `linear`+1 times (net.ipv4.tcp_syn_linear_timeouts, default 4), then double.
    The connection gives up at the first retransmission timer at or past the budget.
    Seen on the kernel: retries 1 -> 3 SYNs, 3 s; 2 -> 6 SYNs, 7 s; 3 -> 8 SYNs, 19 s.
    """
    budget = 2 ** (retries + 1) - 1
    t, rto, n = 0.0, 1.0, 0
    while True:
        t += rto
        if t >= budget:
            return t
        n += 1
        if n > linear:
            rto *= 2


@dataclass
class PreparedStep:
    """What a step needs at run time, computed (and validated) before anything is created.

    `op` is the agent request (None: the harness itself runs the step); `args` its
    arguments, except for "inject", whose frames are built once the topology is known
    (`packet` or `raw_frames` plus `iface`)."""

    op: str | None = None
    args: dict = field(default_factory=dict)
    max_duration: float = 15.0
    notes: list[str] = field(default_factory=list)


def prepare_step(sc: Scenario, s: Step) -> PreparedStep:
    a = s.args
    where = f"{s.where}: " if s.where else ""
    if s.kind in ("tcp_connect", "udp", "ping"):
        args = {"dst": str(a["dst"])}
        if a.get("dport") is not None:
            args["dport"] = a["dport"]
        args.update({k: a[k] for k in _CLIENT_ARGS if a.get(k) is not None})
        if a.get("src") is not None:
            args["src"] = str(a["src"])
        if s.kind == "tcp_connect":
            retries = a.get("syn_retries")
            if retries is None:
                retries = int(sc.hosts[s.host].sysctls.get(
                    "net.ipv4.tcp_syn_retries", DEFAULT_SYSCTLS["net.ipv4.tcp_syn_retries"]))
            args["connect_cap"] = syn_give_up(retries) + 3.0
            dur = args["connect_cap"] + AGENT_ECHO_WAIT + a.get("hold", 0.0)
        else:
            dur = (a.get("count", 1) - 1) * a.get("interval", 1.0) + AGENT_REPLY_WAIT
        return PreparedStep(s.kind, args, dur + 2.0)
    if s.kind == "packet":
        return _prepare_packet(s, where)
    if s.kind == "replay":
        return _prepare_replay(s, where)
    return PreparedStep()


def _prepare_packet(s: Step, where: str) -> PreparedStep:
    from ..wire import encode_ip

    spec = parse_packet_spec(s.args["spec"], where.rstrip(": ") or "packet")
    pkt = spec.packet
    try:
        data = encode_ip(pkt)
    except InputError as e:
        raise InputError(f"{where}cannot build packet '{s.args['spec']}': {e.message}") from None
    if s.args["mode"] == "send":
        args = {"data": data.hex(), "dst": str(pkt.dst)}
        if pkt.meta.sock_uid is not None:
            args["uid"] = pkt.meta.sock_uid
        if pkt.meta.sock_gid is not None:
            args["gid"] = pkt.meta.sock_gid
        if pkt.meta.mark:
            args["mark"] = pkt.meta.mark
        if spec.out_iface:
            args["oif"] = spec.out_iface
        prep = PreparedStep("send_ip", args, 3.0)
        if spec.in_iface:
            prep.notes.append(f"{where}'in {spec.in_iface}' has no meaning for a packet "
                              f"{s.host} sends; the kernel run ignores it")
        return prep
    iface = s.args["in"]
    prep = PreparedStep("inject", {"iface": iface, "packet": pkt}, 3.0)
    if pkt.meta.mark:
        prep.notes.append(f"{where}mark= is not applied on the kernel to a packet arriving "
                          f"on {s.host}:{iface} (a received frame has no mark)")
    return prep


def _prepare_replay(s: Step, where: str) -> PreparedStep:
    from ..observe.pcap import read_capture

    frames: list[tuple[float, bytes]] = []
    notes = []
    t0 = None
    for cp in read_capture(s.args["file"]):
        raw = ether_frame(cp.linktype, cp.data, cp.cooked.addr if cp.cooked else "")
        if raw is None:
            notes.append(f"{where}replay: frame {cp.index} skipped (link type {cp.linktype} "
                         "not replayable)")
            continue
        ts = cp.ts if cp.ts is not None else 0.0
        t0 = ts if t0 is None else t0
        frames.append((max(0.0, ts - t0), raw))
    dur = (frames[-1][0] if frames else 0.0) + 3.0
    return PreparedStep("inject", {"iface": s.args["in"], "raw_frames": frames}, dur, notes)


def ether_frame(linktype: int, data: bytes, cooked_src: str = "") -> bytes | None:
    """A captured frame as an Ethernet frame (destination MAC fixed by `retarget`), or None
    for a link type that cannot be replayed."""
    from ..observe.pcap import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                                LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW)

    if linktype == LINKTYPE_ETHERNET:
        return data if len(data) >= 14 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        ip = data
    elif linktype == LINKTYPE_LINUX_SLL:
        ip = data[16:]
    elif linktype == LINKTYPE_LINUX_SLL2:
        ip = data[20:]
    else:
        return None
    if not ip:
        return None
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    src = cooked_src.replace(":", "")
    src_bytes = bytes.fromhex(src) if len(src) == 12 else bytes(6)
    return bytes(6) + src_bytes + struct.pack("!H", etype) + ip


def retarget(frame: bytes, dst_mac: str) -> bytes:
    """Unicast frames get the receiving interface's MAC, so the host takes them as its own."""
    if frame[0] & 1:  # group address: broadcast/multicast kept
        return frame
    return bytes.fromhex(dst_mac.replace(":", "")) + frame[6:]


# ------------------------------------------------------------------ server sightings

def _proto_fits(s: Step, proto: str) -> bool:
    if s.kind == "tcp_connect":
        return proto == "tcp"
    if s.kind == "udp":
        return proto == "udp"
    return s.kind in ("packet", "replay")


def client_view(s: Step, so: StepOutcome) -> tuple[str | None, int | None, int | None]:
    """(client address, client port, destination port) of a step, as the client sent it."""
    if s.kind == "packet":
        pkt = parse_packet_spec(s.args["spec"]).packet
        return str(pkt.src), pkt.sport, pkt.dport
    return so.local_addr, so.local_port, s.args.get("dport")


def attribute_sightings(sc: Scenario, out: RunOutcome, windows: dict[int, tuple[float, float]],
                        sightings: dict[str, list[dict]]) -> None:
    """Give each connection/datagram a server saw to the client step that caused it.

    Candidates: steps of a fitting protocol whose (start, end) window, from the agent's
    clock, contains the sighting. Best: the client port matches (2), the client address (1),
    the destination port (1); ties go to the step that started last. `windows` and
    `out.steps` are indexed by position in `sc.steps`."""
    for host, seen in sightings.items():
        for ev in seen:
            best, best_score, best_t0 = None, -1, 0.0
            for i, s in enumerate(sc.steps):
                if i not in windows or not _proto_fits(s, ev["proto"]):
                    continue
                t0, t1 = windows[i]
                if not (t0 - 0.05 <= ev["t"] <= t1 + ATTRIBUTION_SLACK):
                    continue
                addr, port, dport = client_view(s, out.steps[i])
                score = ((2 if port is not None and port == ev["peer_port"] else 0)
                         + (1 if addr is not None and addr == ev["peer_addr"] else 0)
                         + (1 if dport is not None and dport == ev["local_port"] else 0))
                if best is None or score > best_score or (score == best_score and t0 >= best_t0):
                    best, best_score, best_t0 = i, score, t0
            saw = ServerSaw(host=host, proto=ev["proto"], local_addr=ev["local_addr"],
                            local_port=ev["local_port"], peer_addr=ev["peer_addr"],
                            peer_port=ev["peer_port"])
            if best is None:
                out.notes.append(f"{host} saw a {ev['proto']} peer {ev['peer_addr']}:"
                                 f"{ev['peer_port']} no step accounts for")
            else:
                out.steps[best].server_saw.append(saw)
