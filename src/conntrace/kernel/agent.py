"""The per-namespace agent: real sockets inside one network namespace, driven over JSON lines.

Started by the harness as `ip netns exec NS python3 agent.py`; it reads one JSON request per
line on stdin and answers one JSON line per request on stdout ({"id", "ok", ...}). Standard
library only, so it starts fast and does not depend on how conntrace is installed.

Servers record the peer each accepted connection / datagram came from; clients perform the
scenario's tcp_connect / udp / ping steps and send crafted or injected packets. Every wait
is bounded. Socket owners: a thread switches its own credentials with the raw setres*id
system calls (glibc's wrappers would switch every thread), so sockets and their files carry
the scenario's uid/gid, as `-m owner` and `meta skuid` see them.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import random
import select
import socket
import struct
import sys
import threading
import time

ECHO_WAIT = 1.0  # seconds a TCP client waits for its payload to come back
REPLY_WAIT = 1.0  # seconds a UDP/ping client waits for answers after its last send
SERVER_IDLE = 600.0  # a server connection nobody talks on is closed after this

# Linux socket option numbers not all exposed by the socket module.
IP_TRANSPARENT = 19
IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
SO_MARK = 36
TCP_SYNCNT = 7
PR_SET_SECUREBITS = 28
SECBIT_NO_SETUID_FIXUP = 1 << 2

# (setgroups, setresuid, setresgid) per architecture (asm/unistd_64.h, asm-generic/unistd.h)
_SYSCALLS = {
    "x86_64": (116, 117, 119),
    "aarch64": (159, 147, 149),
}

_out_lock = threading.Lock()
_seen_lock = threading.Lock()
_seen: list[dict] = []
_libc = ctypes.CDLL(None, use_errno=True)


def _emit(obj: dict) -> None:
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _keep_caps_across_setuid() -> None:
    """Let threads switch to a non-zero uid without losing CAP_NET_RAW / NET_BIND_SERVICE."""
    if _libc.prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS)")


def _become(uid: int, gid: int) -> None:
    """Switch the calling thread (only) to uid/gid with no supplementary groups."""
    if uid == 0 and gid == 0:
        return
    nums = _SYSCALLS.get(platform.machine())
    if nums is None:
        raise OSError(errno.ENOSYS, f"uid switching not supported on {platform.machine()}")
    sys_setgroups, sys_setresuid, sys_setresgid = nums
    for call, args in ((sys_setgroups, (0, None)), (sys_setresgid, (gid, gid, 0)),
                       (sys_setresuid, (uid, uid, 0))):
        if _libc.syscall(call, *args) != 0:
            raise OSError(ctypes.get_errno(), "switching credentials")


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _record(proto: str, local: tuple, peer: tuple) -> None:
    with _seen_lock:
        _seen.append({"t": time.monotonic(), "proto": proto, "local_addr": local[0],
                      "local_port": local[1], "peer_addr": peer[0], "peer_port": peer[1]})


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e))


# ---------------------------------------------------------------- servers

def _listen(req: dict) -> dict:
    """Open the listening socket now (so bind errors are reported), serve in a thread."""
    ready: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            _become(req.get("uid", 0), req.get("gid", 0))
            fam = socket.AF_INET6 if req.get("family") == 6 else socket.AF_INET
            kind = socket.SOCK_STREAM if req["proto"] == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(fam, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if req.get("transparent"):
                level = socket.IPPROTO_IPV6 if fam == socket.AF_INET6 else socket.IPPROTO_IP
                s.setsockopt(level, IP_TRANSPARENT, 1)
            any_addr = "::" if fam == socket.AF_INET6 else "0.0.0.0"
            s.bind((req.get("addr") or any_addr, req["port"]))
            if kind == socket.SOCK_STREAM:
                s.listen(128)
            else:
                if fam == socket.AF_INET:
                    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        except OSError as e:
            ready["error"] = f"{_errname(e)}: {e.strerror}"
            done.set()
            return
        done.set()
        if kind == socket.SOCK_STREAM:
            _serve_tcp(s, bool(req.get("echo", True)))
        else:
            _serve_udp(s, fam, bool(req.get("echo", True)))

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(5.0):
        return {"ok": False, "error": "listener did not start"}
    if "error" in ready:
        return {"ok": False, "error": ready["error"]}
    return {"ok": True}


def _serve_tcp(s: socket.socket, echo: bool) -> None:
    # accept() creates the connection's file here, with this thread's credentials
    while True:
        try:
            c, peer = s.accept()
        except OSError:
            return
        _record("tcp", c.getsockname()[:2], peer[:2])
        threading.Thread(target=_serve_conn, args=(c, echo), daemon=True).start()


def _serve_conn(c: socket.socket, echo: bool) -> None:
    c.settimeout(SERVER_IDLE)
    try:
        while True:
            data = c.recv(65536)
            if not data:
                break
            if echo:
                c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()


def _serve_udp(s: socket.socket, fam: int, echo: bool) -> None:
    while True:
        try:
            data, anc, _flags, peer = s.recvmsg(65536, 256)
        except OSError:
            return
        local_addr = None
        for level, typ, raw in anc:
            if fam == socket.AF_INET and level == socket.IPPROTO_IP and typ == IP_PKTINFO:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                local_addr = socket.inet_ntop(socket.AF_INET, raw[8:12])
            elif fam == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO:
                local_addr = socket.inet_ntop(socket.AF_INET6, raw[:16])
        local = (local_addr or s.getsockname()[0], s.getsockname()[1])
        _record("udp", local, peer[:2])
        if echo:
            # answer from the address the datagram was sent to, as DNS servers do
            try:
                if fam == socket.AF_INET and local_addr:
                    info = struct.pack("=I4s4s", 0, socket.inet_aton(local_addr), b"\0" * 4)
                    s.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, peer)
                elif fam == socket.AF_INET6 and local_addr:
                    info = socket.inet_pton(socket.AF_INET6, local_addr) + struct.pack("=I", 0)
                    s.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0, peer)
                else:
                    s.sendto(data, peer)
            except OSError as e:
                sys.stderr.write(f"udp echo failed: {_errname(e)}\n")


# ---------------------------------------------------------------- clients

def _bind_client(s: socket.socket, req: dict) -> None:
    src, sport = req.get("src"), req.get("sport")
    if src or sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        any_addr = "::" if s.family == socket.AF_INET6 else "0.0.0.0"
        s.bind((src or any_addr, sport or 0))


_OPEN: list[socket.socket] = []  # close: open keeps the socket until the agent quits


def _tcp_connect(req: dict) -> dict:
    out = {"result": "error", "sent": 0, "replies": 0}
    _become(req.get("uid", 0), req.get("gid", 0))
    s = socket.socket(_family(req["dst"]), socket.SOCK_STREAM)
    keep = False
    try:
        _bind_client(s, req)
        retries = req.get("syn_retries")
        if retries is not None:
            s.setsockopt(socket.IPPROTO_TCP, TCP_SYNCNT, retries)
        s.settimeout(req.get("connect_cap", 140.0))
        out["t_start"] = time.monotonic()
        try:
            s.connect((req["dst"], req["dport"]))
        except OSError as e:
            # socket.timeout is a TimeoutError without errno: our cap, not the kernel's
            out["result"] = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout",
                             errno.EHOSTUNREACH: "unreachable", errno.ENETUNREACH: "unreachable",
                             errno.EHOSTDOWN: "unreachable"}.get(e.errno, "error")
            out["detail"] = _errname(e) if e.errno else "harness cap reached"
            if not e.errno:
                out["result"] = "timeout"
        else:
            out["result"] = "connected"
        try:
            la = s.getsockname()
            if la[1]:
                out["local_addr"], out["local_port"] = la[0], la[1]
        except OSError:
            pass
        if out["result"] != "connected":
            return out
        n = req.get("payload", 0)
        if n:
            got = 0
            try:
                s.sendall(b"\0" * n)
                deadline = time.monotonic() + ECHO_WAIT
                while got < n:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    data = s.recv(65536)
                    if not data:
                        break
                    got += len(data)
            except OSError as e:
                out["detail"] = (_errname(e) if e.errno else "echo wait") + "; "
            # sent/replies count datagrams (udp/ping) only; TCP bytes go to the detail
            out["detail"] = out.get("detail", "") + f"echo {got}/{n} bytes"
        hold = req.get("hold", 0.0)
        if hold:
            time.sleep(hold)
        close = req.get("close", "fin")
        if close == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif close == "open":
            keep = True
            _OPEN.append(s)
        return out
    finally:
        out["t_end"] = time.monotonic()
        if not keep:
            s.close()


def _route_source(dst: str, src: str | None) -> str | None:
    """The address the kernel would pick as source toward dst (a UDP connect sends nothing)."""
    if src:
        return src
    p = socket.socket(_family(dst), socket.SOCK_DGRAM)
    try:
        p.connect((dst, 9))
        return p.getsockname()[0]
    except OSError:
        return None
    finally:
        p.close()


def _udp(req: dict) -> dict:
    out: dict = {"result": "no-reply", "sent": 0, "replies": 0}
    _become(req.get("uid", 0), req.get("gid", 0))
    s = socket.socket(_family(req["dst"]), socket.SOCK_DGRAM)
    errors: list[str] = []
    try:
        out["t_start"] = time.monotonic()
        _bind_client(s, req)
        # connected, like the glibc resolver: ICMP errors are reported, others' replies are not
        s.connect((req["dst"], req["dport"]))
        la = s.getsockname()
        out["local_addr"], out["local_port"] = la[0], la[1]
        count, interval = req.get("count", 1), req.get("interval", 1.0)
        payload = b"\0" * req.get("payload", 0)
        t0 = time.monotonic()
        for i in range(count):
            _recv_until(s, t0 + i * interval, out, errors)
            pending = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if pending:
                errors.append(errno.errorcode.get(pending, str(pending)))
            try:
                s.send(payload)
                out["sent"] += 1
            except OSError as e:
                errors.append(_errname(e))
        end = time.monotonic() + REPLY_WAIT
        while out["replies"] < count and time.monotonic() < end:
            _recv_until(s, min(end, time.monotonic() + 0.05), out, errors)
    except OSError as e:
        errors.append(_errname(e))
    finally:
        s.close()
        out["t_end"] = time.monotonic()
    _summarise(out, req.get("count", 1), errors)
    return out


def _recv_until(s: socket.socket, until: float, out: dict, errors: list[str]) -> None:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return
        try:
            s.recv(65536)
            out["replies"] += 1
        except OSError as e:
            errors.append(_errname(e))


def _summarise(out: dict, count: int, errors: list[str]) -> None:
    if out["replies"] >= count:
        out["result"] = "reply"
    elif out["replies"]:
        out["result"] = "partial"
    elif errors and any(e not in ("EPERM",) for e in errors):
        out["result"] = "unreachable"
    else:
        out["result"] = "no-reply"
    if errors:
        out["detail"] = ",".join(errors)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping(req: dict) -> dict:
    out: dict = {"result": "no-reply", "sent": 0, "replies": 0}
    if _family(req["dst"]) != socket.AF_INET:
        return {"result": "error", "detail": "ping: IPv6 not supported by the harness",
                "sent": 0, "replies": 0}
    _become(req.get("uid", 0), req.get("gid", 0))
    ident = req.get("icmp_id")
    if ident is None:
        ident = random.randint(1, 65535)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    errors: list[str] = []
    answered: set[int] = set()
    try:
        out["t_start"] = time.monotonic()
        if req.get("src"):
            s.bind((req["src"], 0))
        out["local_addr"] = _route_source(req["dst"], req.get("src"))
        out["local_port"] = ident  # the echo identifier plays the port's role in conntrack
        count, interval = req.get("count", 1), req.get("interval", 1.0)
        payload = b"\0" * req.get("payload", 56)
        t0 = time.monotonic()
        for i in range(count):
            _ping_recv(s, t0 + i * interval, ident, answered, errors)
            seq = i + 1
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = _checksum(hdr + payload)
            pkt = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
            try:
                s.sendto(pkt, (req["dst"], 0))
                out["sent"] += 1
            except OSError as e:
                errors.append(_errname(e))
        end = time.monotonic() + REPLY_WAIT
        while len(answered) < count and time.monotonic() < end:
            _ping_recv(s, min(end, time.monotonic() + 0.05), ident, answered, errors)
    except OSError as e:
        errors.append(_errname(e))
    finally:
        s.close()
        out["t_end"] = time.monotonic()
    out["replies"] = len(answered)
    _summarise(out, req.get("count", 1), errors)
    return out


_ICMP_ERRORS = {3: "unreachable", 4: "source-quench", 5: "redirect", 11: "time-exceeded",
                12: "parameter-problem"}


def _ping_recv(s: socket.socket, until: float, ident: int, answered: set[int],
               errors: list[str]) -> None:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return
        data = s.recv(65536)
        ihl = (data[0] & 0x0F) * 4
        icmp = data[ihl:]
        if len(icmp) < 8:
            continue
        typ, code = icmp[0], icmp[1]
        if typ == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            answered.add(struct.unpack("!H", icmp[6:8])[0])
        elif typ in _ICMP_ERRORS and len(icmp) >= 8 + 20 + 8:
            inner = icmp[8:]
            iihl = (inner[0] & 0x0F) * 4
            if inner[9] == 1 and len(inner) >= iihl + 8:
                ie = inner[iihl:]
                if ie[0] == 8 and struct.unpack("!H", ie[4:6])[0] == ident:
                    errors.append(f"icmp-{_ICMP_ERRORS[typ]}/{code}")


# ---------------------------------------------------------------- crafted packets

def _send_ip(req: dict) -> dict:
    data = bytes.fromhex(req["data"])
    fam = socket.AF_INET6 if (data[0] >> 4) == 6 else socket.AF_INET
    _become(req.get("uid", 0), req.get("gid", 0))
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
    t = time.monotonic()
    try:
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, 36, 1)  # IPV6_HDRINCL
        if req.get("mark"):
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, req["mark"])
        if req.get("oif"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, req["oif"].encode())
        s.sendto(data, (req["dst"], 0))
        return {"result": "done", "sent": 1, "t_start": t, "t_end": time.monotonic()}
    except OSError as e:
        return {"result": "done", "sent": 0, "detail": _errname(e), "t_start": t,
                "t_end": time.monotonic()}
    finally:
        s.close()


def _inject(req: dict) -> dict:
    """Frames sent out of `iface` here arrive on the peer end of its link."""
    t = time.monotonic()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sent, errors = 0, []
    try:
        s.bind((req["iface"], 0))
        for offset, hexframe in req["frames"]:
            delay = t + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                s.send(bytes.fromhex(hexframe))
                sent += 1
            except OSError as e:
                errors.append(_errname(e))
    finally:
        s.close()
    out = {"result": "done", "sent": sent, "t_start": t, "t_end": time.monotonic()}
    if errors:
        out["detail"] = ",".join(sorted(set(errors)))
    return out


# ---------------------------------------------------------------- admin

def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _sysctl_set(req: dict) -> dict:
    try:
        with open(_sysctl_path(req["key"]), "w") as f:
            f.write(str(req["value"]))
        return {"ok": True}
    except OSError as e:
        return {"ok": False, "error": f"cannot set {req['key']}: {e.strerror}"}


def _sysctl_get(req: dict) -> dict:
    values = {}
    for k in req["keys"]:
        try:
            with open(_sysctl_path(k)) as f:
                values[k] = " ".join(f.read().split())
        except OSError:
            values[k] = None
    return {"ok": True, "values": values}


def _seen_op(_req: dict) -> dict:
    with _seen_lock:
        return {"ok": True, "seen": list(_seen)}


_ASYNC = {"tcp_connect": _tcp_connect, "udp": _udp, "ping": _ping, "send_ip": _send_ip,
          "inject": _inject}
_SYNC = {"listen": _listen, "sysctl_set": _sysctl_set, "sysctl_get": _sysctl_get,
         "seen": _seen_op}


def _run_async(fn, req: dict) -> None:
    try:
        res = fn(req)
        _emit({"id": req["id"], "ok": True, **res})
    except Exception as e:  # the answer must arrive whatever happens
        _emit({"id": req["id"], "ok": False, "error": f"{type(e).__name__}: {e}"})


def main() -> int:
    _keep_caps_across_setuid()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            _emit({"id": None, "ok": False, "error": f"bad request: {line.strip()[:80]}"})
            continue
        if op == "quit":
            for s in _OPEN:
                s.close()
            _emit({"id": req.get("id"), "ok": True})
            return 0
        if op == "hello":
            _emit({"id": req.get("id"), "ok": True, "pid": os.getpid(), "t": time.monotonic()})
        elif op in _ASYNC:
            threading.Thread(target=_run_async, args=(_ASYNC[op], req), daemon=True).start()
        elif op in _SYNC:
            try:
                res = _SYNC[op](req)
            except Exception as e:
                res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            _emit({"id": req.get("id"), **res})
        else:
            _emit({"id": req.get("id"), "ok": False, "error": f"unknown op '{op}'"})
    return 0  # stdin closed: the harness went away


if __name__ == "__main__":
    sys.exit(main())
