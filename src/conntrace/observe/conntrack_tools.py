"""conntrack-tools 1.4.7 output, byte for byte, rendered from model entries.

Formats and their sources (facts checked against a 6.18 kernel, reference §5.1-5.3):
- ``conntrack -L`` / ``-o extended`` / ``-o id``: libnetfilter_conntrack snprintf_default.c
  fed with what ctnetlink dumps (mark always, use, zone only when non-zero).
- ``conntrack -L -o save``: conntrack.c ct_save_snprintf.
- ``/proc/net/nf_conntrack``: ct_seq_show in net/netfilter/nf_conntrack_standalone.c
  (zone= always, IPv6 addresses uncompressed, use=2 while the reader holds the entry).
- ``conntrack -E``: the same snprintf with ctnetlink's event attributes (no use=, mark only
  when non-zero, state only with a PROTOINFO event or on DESTROY, no timeout on a DESTROY
  whose entry already expired, counters only on DESTROY).
- ``conntrack -S`` and ``/proc/net/stat/nf_conntrack``: conntrack.c nfct_stats_cb and
  ct_cpu_seq_show.
Every function returns text without a trailing newline; multi-line results join with "\\n".
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import TYPE_CHECKING, Any, Iterable

from ..conntrack.defs import Status, TcpState
from ..conntrack.entry import ConnTuple
from ..errors import InputError

if TYPE_CHECKING:
    from ..conntrack.entry import ConntrackEntry

CONNTRACK_VERSION = "1.4.7"

# l3proto2str / proto2str (libnetfilter_conntrack src/conntrack/snprintf.c); the kernel's
# l3proto_name / l4proto_name (nf_conntrack_standalone.c) agree on these names.
L3_NAME = {4: ("ipv4", 2), 6: ("ipv6", 10)}
PROTO_NAME = {6: "tcp", 17: "udp", 136: "udplite", 1: "icmp", 58: "icmpv6", 132: "sctp",
              47: "gre", 33: "dccp"}
_PORT_PROTOS = frozenset({6, 17, 136, 132, 33})
_ICMP_PROTOS = frozenset({1, 58})
_GRE = 47

EVENT_KINDS = ("NEW", "UPDATE", "DESTROY")

# conntrack.c exit_msg[]: the summary printed on stderr
SUMMARY_TEXT = {
    "list": "{n} flow entries have been shown.",
    "events": "{n} flow events have been shown.",
    "create": "{n} flow entries have been created.",
    "update": "{n} flow entries have been updated.",
    "delete": "{n} flow entries have been deleted.",
    "flush": "connection tracking table has been emptied.",
}

# conntrack_status_map[] of -o save: only these bits have names, printed in bit order
SAVE_STATUS_NAMES = ((Status.EXPECTED, "EXPECTED"), (Status.SEEN_REPLY, "SEEN_REPLY"),
                     (Status.ASSURED, "ASSURED"), (Status.FIXED_TIMEOUT, "FIXED_TIMEOUT"))

# the per-CPU counters ctnetlink sends, in CTA_STATS_* order (nfct_stats_cb prints them so)
STATS_FIELDS = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
                "search_restart", "clash_resolve", "chaintoolong")
# /proc/net/stat/nf_conntrack columns after `entries` (ct_cpu_seq_show); None: always 0
PROC_STAT_HEADER = ("entries  clashres found new invalid ignore delete chainlength insert "
                    "insert_failed drop early_drop icmp_error  expect_new expect_create "
                    "expect_delete search_restart")
PROC_STAT_COLUMNS = ("clash_resolve", "found", None, "invalid", None, None, "chaintoolong",
                     "insert", "insert_failed", "drop", "early_drop", "error")
PROC_STAT_EXPECT_COLUMNS = ("expect_new", "expect_create", "expect_delete", "search_restart")
PROC_STAT_KEYS = frozenset(c for c in PROC_STAT_COLUMNS + PROC_STAT_EXPECT_COLUMNS if c)


# --- pieces --------------------------------------------------------------------------------

def proto_name(proto: int) -> str:
    return PROTO_NAME.get(proto, "unknown")


def remaining_seconds(ct: "ConntrackEntry", now: float) -> int:
    """The TIMEOUT column: whole seconds left (nf_ct_expires / HZ). The model's clock is a
    float, so round to the millisecond before truncating to avoid 119.99999 -> 119."""
    return max(0, math.floor(round(ct.remaining(now), 3)))


def _state_name(ct: "ConntrackEntry") -> str | None:
    if ct.proto != 6:
        return None
    st = getattr(ct.proto_state, "state", TcpState.NONE)
    return TcpState(st).name if TcpState(st) < TcpState.MAX else TcpState.NONE.name


def _addr(a: ipaddress.IPv4Address | ipaddress.IPv6Address, proc: bool) -> str:
    # the kernel prints %pI6 (full form); inet_ntop in conntrack-tools compresses
    return a.exploded if proc and a.version == 6 else str(a)


def tuple_text(t: ConnTuple, *, proc: bool = False) -> str:
    """One direction: `src=... dst=... sport=... dport=...` (ICMP: type/code/id)."""
    parts = [f"src={_addr(t.src, proc)}", f"dst={_addr(t.dst, proc)}"]
    if t.proto in _PORT_PROTOS:
        parts += [f"sport={t.sport}", f"dport={t.dport}"]
    elif t.proto in _ICMP_PROTOS:
        parts += [f"type={t.icmp_type}", f"code={t.icmp_code}", f"id={t.icmp_id}"]
    elif t.proto == _GRE:
        parts += [f"srckey=0x{t.sport:x}", f"dstkey=0x{t.dport:x}"]
    return " ".join(parts)


def _counters(ct: "ConntrackEntry", d: int) -> str:
    c = ct.counters[d]
    return f"packets={c.packets} bytes={c.bytes}"


def _status_flag(ct: "ConntrackEntry") -> str | None:
    if ct.status & Status.HW_OFFLOAD:
        return "[HW_OFFLOAD]"
    if ct.status & Status.OFFLOAD:
        return "[OFFLOAD]"
    if ct.status & Status.ASSURED:
        return "[ASSURED]"
    return None


def _family(ct: "ConntrackEntry") -> int:
    return ct.orig_tuple.src.version


def _head(ct: "ConntrackEntry", *, extended: bool) -> list[str]:
    out = []
    if extended:
        name, num = L3_NAME[_family(ct)]
        out.append(f"{name:<8} {num}")
    out.append(f"{proto_name(ct.proto):<8} {ct.proto}")
    return out


def _both_tuples(ct: "ConntrackEntry", *, acct: bool, proc: bool = False) -> list[str]:
    out = [tuple_text(ct.orig_tuple, proc=proc)]
    if acct:
        out.append(_counters(ct, 0))
    if not ct.status & Status.SEEN_REPLY:
        out.append("[UNREPLIED]")
    out.append(tuple_text(ct.reply_tuple, proc=proc))
    if acct:
        out.append(_counters(ct, 1))
    flag = _status_flag(ct)
    if flag:
        out.append(flag)
    return out


# --- conntrack -L and /proc/net/nf_conntrack -------------------------------------------------

def format_entry(ct: "ConntrackEntry", now: float, *, fmt: str = "default", acct: bool = False,
                 show_id: bool = False) -> str:
    """One line of `conntrack -L` (fmt "default"), `-o extended`, `-o save`, or of
    /proc/net/nf_conntrack ("proc"). `acct`: nf_conntrack_acct was on (packets=/bytes=);
    `show_id`: `-o id` (default/extended only)."""
    if fmt == "save":
        return _format_save(ct, now)
    if fmt == "proc":
        return _format_proc(ct, now, acct=acct)
    if fmt not in ("default", "extended"):
        raise InputError(f"conntrack output format must be one of default, extended, save, "
                         f"proc; got {fmt!r}")
    out = _head(ct, extended=fmt == "extended")
    out.append(str(remaining_seconds(ct, now)))
    state = _state_name(ct)
    if state:
        out.append(state)
    out += _both_tuples(ct, acct=acct)
    out.append(f"mark={ct.mark}")
    if ct.zone:
        out.append(f"zone={ct.zone}")
    out.append("use=1")
    if show_id:
        out.append(f"id={ct.id}")
    return " ".join(out)


def _format_proc(ct: "ConntrackEntry", now: float, *, acct: bool) -> str:
    out = _head(ct, extended=True)
    offloaded = bool(ct.status & Status.OFFLOAD)
    if not offloaded:
        out.append(str(remaining_seconds(ct, now)))
        state = _state_name(ct)
        if state:
            out.append(state)
    out += _both_tuples(ct, acct=acct, proc=True)
    out += [f"mark={ct.mark}", f"zone={ct.zone}", "use=2"]
    return " ".join(out)


def _format_save(ct: "ConntrackEntry", now: float, kind: str = "NEW") -> str:
    out = [{"NEW": "-A", "UPDATE": "-U", "DESTROY": "-D"}[kind],
           "-t", str(remaining_seconds(ct, now))]
    names = [n for bit, n in SAVE_STATUS_NAMES if ct.status & bit]
    out += ["-u", ",".join(names) if names else "UNSET"]
    if ct.zone:
        out += ["-w", str(ct.zone)]
    o, r = ct.orig_tuple, ct.reply_tuple
    # -g/-n name the NAT addresses when a binding exists and changed them (getobjopt_is_*)
    dnat = bool(ct.status & Status.DST_NAT_DONE) and r.src != o.dst
    snat = bool(ct.status & Status.SRC_NAT_DONE) and r.dst != o.src
    out += ["-s", str(o.src), "-d", str(o.dst), "-g" if dnat else "-r", str(r.src),
            "-n" if snat else "-q", str(r.dst)]
    if ct.proto in PROTO_NAME:
        out += ["-p", PROTO_NAME[ct.proto]]
        if ct.proto in _PORT_PROTOS:
            out += ["--sport", str(o.sport), "--dport", str(o.dport),
                    "--reply-port-src", str(r.sport), "--reply-port-dst", str(r.dport)]
            if ct.proto == 6:
                out += ["--state", _state_name(ct) or "NONE"]
        elif ct.proto in _ICMP_PROTOS:
            p = "--icmpv6" if ct.proto == 58 else "--icmp"
            out += [f"{p}-type", str(o.icmp_type), f"{p}-code", str(o.icmp_code),
                    f"{p}-id", str(o.icmp_id)]
        elif ct.proto == _GRE:
            out += ["--srckey", str(o.sport), "--dstkey", str(o.dport),
                    "--reply-key-src", str(r.sport), "--reply-key-dst", str(r.dport)]
    else:
        out += ["-p", str(ct.proto)]
    return " ".join(out)


def format_summary(count: int, what: str = "list") -> str:
    """The stderr line conntrack prints when done."""
    if what not in SUMMARY_TEXT:
        raise InputError(f"summary kind must be one of {', '.join(SUMMARY_TEXT)}; got {what!r}")
    return f"conntrack v{CONNTRACK_VERSION} (conntrack-tools): " + SUMMARY_TEXT[what].format(
        n=count)


# --- conntrack -E ----------------------------------------------------------------------------

def format_timestamp(ts: float) -> str:
    """`-o timestamp` prefix: `[sec.usec]` and a tab ("[%-.8ld.%-.6ld]\\t")."""
    us = round(ts * 1_000_000)
    sec, usec = divmod(us, 1_000_000)
    return f"[{sec:08d}.{usec:06d}]\t"


def format_event(kind: str, ct: "ConntrackEntry", now: float, *, timestamp: float | None = None,
                 with_state: bool = True, userspace_portid: int | None = None,
                 progname: str | None = None, acct: bool = False, show_id: bool = False,
                 extended: bool = False, mark_event: bool = False, fmt: str = "default") -> str:
    """One `conntrack -E` line. `with_state`: the event carries PROTOINFO (a TCP state
    change; NEW events always do); DESTROY always shows the TCP state. `userspace_portid`:
    the event was caused by a netlink request (e.g. conntrack -F) from that port id.
    `mark_event`: the MARK bit was set (mark= shown even when 0). fmt "save" gives
    `-o save` event lines (-A/-U/-D)."""
    if kind not in EVENT_KINDS:
        raise InputError(f"event kind must be one of NEW, UPDATE, DESTROY; got {kind!r}")
    if fmt == "save":
        line = _format_save(ct, now, kind)
    else:
        out = [f"{'[' + kind + ']':>9}"] + _head(ct, extended=extended)
        secs = remaining_seconds(ct, now)
        if kind != "DESTROY" or secs > 0:
            out.append(str(secs))
        state = _state_name(ct)
        if state and (with_state or kind == "DESTROY"):
            out.append(state)
        out += _both_tuples(ct, acct=acct and kind == "DESTROY")
        if ct.mark or mark_event:
            out.append(f"mark={ct.mark}")
        if ct.zone:
            out.append(f"zone={ct.zone}")
        if show_id:
            out.append(f"id={ct.id}")
        line = " ".join(out)
        if timestamp is not None:
            line = format_timestamp(timestamp) + line
    if userspace_portid:
        line += f" [USERSPACE] portid={userspace_portid}"
        if progname:
            line += f" progname={progname}"
    return line


def format_ct_event(ev, *, timestamps: bool = False) -> str:
    """A recorded conntrack.table.CtEvent as `conntrack -E` prints it."""
    return format_event(ev.type.value, ev.entry, ev.time,
                        timestamp=ev.time if timestamps else None, with_state=ev.with_state,
                        userspace_portid=ev.userspace_portid, mark_event="MARK" in ev.bits)


# --- conntrack -S and /proc/net/stat/nf_conntrack ------------------------------------------

def _check_keys(d: dict, allowed: Iterable[str], what: str) -> None:
    bad = sorted(set(d) - set(allowed))
    if bad:
        raise InputError(f"unknown {what} counter(s) {', '.join(bad)} "
                         f"(expected: {', '.join(sorted(allowed))})")


def format_stats(per_cpu: list[dict[str, int]]) -> str:
    """`conntrack -S`: one line per CPU, each counter followed by a space (as printed)."""
    lines = []
    for cpu, counters in enumerate(per_cpu):
        _check_keys(counters, STATS_FIELDS, "conntrack -S")
        fields = "".join(f"{k}={int(counters.get(k, 0))} " for k in STATS_FIELDS)
        lines.append(f"cpu={cpu:<4}\t{fields}")
    return "\n".join(lines)


def format_proc_stat(count: int, per_cpu: list[dict[str, int]]) -> str:
    """/proc/net/stat/nf_conntrack: header, then one hex row per CPU (entries = the
    namespace's entry count on every row)."""
    lines = [PROC_STAT_HEADER]
    for counters in per_cpu:
        _check_keys(counters, PROC_STAT_KEYS, "/proc/net/stat/nf_conntrack")
        main = [f"{int(counters.get(c, 0)) if c else 0:08x}" for c in PROC_STAT_COLUMNS]
        exp = [f"{int(counters.get(c, 0)):08x}" for c in PROC_STAT_EXPECT_COLUMNS]
        lines.append(f"{count:08x}  " + " ".join(main) + "  " + " ".join(exp))
    return "\n".join(lines)


# --- parsing conntrack -L / -E lines -------------------------------------------------------

_TS_RE = re.compile(r"^\[(\d+)\.(\d{6})\]\t")
_EVENT_RE = re.compile(r"^\s*\[(NEW|UPDATE|DESTROY)\]\s+")
_STATE_NAMES = frozenset(s.name for s in TcpState if s < TcpState.MAX) | frozenset({
    # SCTP and DCCP states conntrack may print (kept so such lines still parse)
    "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "SHUTDOWN_SENT", "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT", "HEARTBEAT_ACKED", "REQUEST", "RESPOND",
    "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE", "INVALID"})
_INT_KEYS = frozenset({"sport", "dport", "type", "code", "id", "packets", "bytes"})
_TOP_INT_KEYS = frozenset({"mark", "secmark", "zone", "use", "id", "zone-orig", "zone-reply",
                           "portid", "delta-time"})


def _parse_error(text: str, why: str) -> InputError:
    return InputError(f"cannot parse conntrack line ({why}): {text.strip()[:200]!r}; expected "
                      "`conntrack -L [-o extended,id]` or `conntrack -E` output")


def parse_conntrack_line(text: str) -> dict[str, Any]:
    """Parse one `conntrack -L` line (default or `-o extended[,id]`), a /proc/net/nf_conntrack
    line, or a `conntrack -E [-o timestamp]` line.

    Returns: l3 ("ipv4"/"ipv6" or None), l3num, proto (name), protonum, timeout (int or None),
    state (or None), orig / reply (dicts: src, dst as ip addresses, plus sport/dport or
    type/code/id or srckey/dstkey), orig_tuple / reply_tuple (ConnTuple), orig_counters /
    reply_counters ((packets, bytes) or None), unreplied, assured, offload (bools), mark,
    secmark, zone, use, id (int or None), event ("NEW"/"UPDATE"/"DESTROY" or None), timestamp
    (float or None), userspace_portid, progname, extra (other key=value pairs)."""
    line = text.rstrip("\n")
    res: dict[str, Any] = {
        "l3": None, "l3num": None, "proto": None, "protonum": None, "timeout": None,
        "state": None, "orig": {}, "reply": {}, "orig_tuple": None, "reply_tuple": None,
        "orig_counters": None, "reply_counters": None, "unreplied": False, "assured": False,
        "offload": None, "mark": None, "secmark": None, "zone": None, "use": None, "id": None,
        "event": None, "timestamp": None, "userspace_portid": None, "progname": None,
        "extra": {},
    }
    m = _TS_RE.match(line)
    if m:
        res["timestamp"] = int(m.group(1)) + int(m.group(2)) / 1_000_000
        line = line[m.end():]
    m = _EVENT_RE.match(line)
    if m:
        res["event"] = m.group(1)
        line = line[m.end():]
    toks = line.split()
    if len(toks) < 2:
        raise _parse_error(text, "too short")
    i = 0
    # an l3 column is there when a protocol *name* follows it ("unknown 50 1" is an l4 one)
    if (toks[0] in ("ipv4", "ipv6", "unknown") and len(toks) > 3 and toks[1].isdigit()
            and toks[2].isalpha() and toks[3].isdigit()):
        res["l3"], res["l3num"] = toks[0], int(toks[1])
        i = 2
    if i + 1 >= len(toks) or not toks[i + 1].isdigit() or "=" in toks[i]:
        raise _parse_error(text, "no protocol name and number")
    res["proto"], res["protonum"] = toks[i], int(toks[i + 1])
    i += 2
    if i < len(toks) and toks[i].isdigit():
        res["timeout"] = int(toks[i])
        i += 1
    if i < len(toks) and toks[i] in _STATE_NAMES:
        res["state"] = toks[i]
        i += 1
    side = None  # "orig" then "reply"
    after_userspace = False
    for tok in toks[i:]:
        if tok.startswith("[") and tok.endswith("]"):
            flag = tok[1:-1]
            if flag == "UNREPLIED":
                res["unreplied"] = True
            elif flag == "ASSURED":
                res["assured"] = True
            elif flag in ("OFFLOAD", "HW_OFFLOAD"):
                res["offload"] = flag
            elif flag == "USERSPACE":
                after_userspace = True
            else:
                res["extra"][flag] = True
            continue
        if "=" not in tok:
            raise _parse_error(text, f"unexpected token {tok!r}")
        key, _, val = tok.partition("=")
        if after_userspace:
            if key == "portid":
                res["userspace_portid"] = _int(val, text)
            elif key == "progname":
                res["progname"] = val
            else:
                res["extra"][key] = val
            continue
        if key == "src":
            if side is None:
                side = "orig"
            elif side == "orig" and "src" in res["orig"]:
                side = "reply"
            res[side]["src"] = _ip(val, text)
            continue
        if side is not None and key in ("dst", "srckey", "dstkey") and key not in res[side]:
            res[side][key] = _ip(val, text) if key == "dst" else int(val, 16)
            continue
        if side is not None and key in _INT_KEYS and key not in res[side] and not (
                key == "id" and res["protonum"] not in _ICMP_PROTOS) and not (
                key in ("packets", "bytes") and res[f"{side}_counters"] is not None):
            if key in ("packets", "bytes"):
                res[side][key] = _int(val, text)
                if "packets" in res[side] and "bytes" in res[side]:
                    res[f"{side}_counters"] = (res[side].pop("packets"),
                                               res[side].pop("bytes"))
                continue
            res[side][key] = _int(val, text)
            continue
        if key in _TOP_INT_KEYS:
            res[key.replace("-", "_") if key != "id" else "id"] = _int(val, text)
        else:
            res["extra"][key] = val
    if "src" not in res["orig"] or "src" not in res["reply"]:
        raise _parse_error(text, "expected two tuples (src= ... src= ...)")
    for side in ("orig", "reply"):
        res[f"{side}_tuple"] = _to_tuple(res[side], res["protonum"], text)
    return res


def _int(val: str, text: str) -> int:
    try:
        return int(val)
    except ValueError:
        raise _parse_error(text, f"{val!r} is not a number") from None


def _ip(val: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(val)
    except ValueError:
        raise _parse_error(text, f"{val!r} is not an IP address") from None


def _to_tuple(d: dict[str, Any], proto: int, text: str) -> ConnTuple:
    if "dst" not in d:
        raise _parse_error(text, "a tuple without dst=")
    if proto in _ICMP_PROTOS:
        return ConnTuple(d["src"], d["dst"], proto, d.get("id", 0),
                         (d.get("type", 0) << 8) | d.get("code", 0))
    if proto == _GRE:
        return ConnTuple(d["src"], d["dst"], proto, d.get("srckey", 0), d.get("dstkey", 0))
    return ConnTuple(d["src"], d["dst"], proto, d.get("sport", 0), d.get("dport", 0))
