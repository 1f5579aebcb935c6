"""Read what the kernel tools print: `conntrack -L/-E/-S` and `iptables-save -c` (pure).

Formats: reference §5.1-5.3 (libnetfilter_conntrack snprintf_default.c field order;
conntrack-tools' `-S` per-CPU lines; iptables-save's `[pkts:bytes]` rule prefix).
"""

from __future__ import annotations

import ipaddress
import re

from ..scenario.outcome import CtEntryView

TUPLE_KEYS = frozenset({"src", "dst", "sport", "dport", "type", "code", "id"})
_DIR_COUNTERS = frozenset({"packets", "bytes"})
_EVENT_TAGS = frozenset({"NEW", "UPDATE", "DESTROY"})
_NOT_FLAGS = _EVENT_TAGS | {"USERSPACE"}
_TS_RE = re.compile(r"^\[\d+\.\d+\]\s*")
TRACE_COMMENT = "conntrace-harness-trace"


def _addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _value(key: str, text: str):
    if key in ("src", "dst"):
        return _addr(text)
    try:
        return int(text)
    except ValueError:
        return text


def parse_ct_line(line: str) -> tuple[str | None, CtEntryView] | None:
    """One `conntrack -L` (plain or `-o extended`) or `conntrack -E` line.

    Returns (event type or None, entry) or None for lines that are not entries (the
    summary line, blanks). A DESTROY event carries no timeout: it reads as -1.
    """
    s = _TS_RE.sub("", line.strip())
    event = None
    m = re.match(r"^\[(NEW|UPDATE|DESTROY)\]\s*", s)
    if m:
        event = m.group(1)
        s = s[m.end():]
    toks = s.split()
    if len(toks) < 3:
        return None
    if toks[0] in ("ipv4", "ipv6") and len(toks) > 4:
        toks = toks[2:]
    proto = toks[0]
    if not toks[1].isdigit():
        return None
    i = 2
    timeout = -1
    if i < len(toks) and toks[i].isdigit():
        timeout = int(toks[i])
        i += 1
    state = None
    if i < len(toks) and "=" not in toks[i] and not toks[i].startswith("["):
        state = toks[i]
        i += 1
    orig: dict = {}
    reply: dict = {}
    flags: list[str] = []
    mark = zone = 0
    phase = 0  # 0 original tuple, 1 reply tuple, 2 after the tuples
    for t in toks[i:]:
        if t.startswith("[") and t.endswith("]"):
            name = t[1:-1]
            if name not in _NOT_FLAGS:
                flags.append(name)
            continue
        key, eq, val = t.partition("=")
        if not eq:
            continue
        if phase == 0 and key == "src" and "src" in orig:
            phase = 1
        elif phase == 1 and key not in TUPLE_KEYS and key not in _DIR_COUNTERS:
            phase = 2
        if phase == 0 and key in TUPLE_KEYS:
            orig[key] = _value(key, val)
        elif phase == 1 and key in TUPLE_KEYS:
            reply[key] = _value(key, val)
        elif key == "mark":
            mark = int(val, 0)
        elif key == "zone":
            zone = int(val)
    if not orig:
        return None
    return event, CtEntryView(proto=proto, state=state, timeout=timeout, orig=orig, reply=reply,
                              flags=flags, mark=mark, zone=zone)


def parse_ct_list(text: str) -> list[CtEntryView]:
    out = []
    for line in text.splitlines():
        r = parse_ct_line(line)
        if r is not None:
            out.append(r[1])
    return out


_EVENT_STRIP = re.compile(r"\s+(?:portid=\d+|progname=\S+)")


def clean_event_line(line: str) -> str | None:
    """A `conntrack -E` line without its timestamp and netlink portid/progname (the harness
    never asks for conntrack ids, so none are printed)."""
    s = _TS_RE.sub("", line.rstrip("\n"))
    if not re.match(r"^\s*\[(NEW|UPDATE|DESTROY)\]", s) or parse_ct_line(s) is None:
        return None
    return _EVENT_STRIP.sub("", s).strip()


def sum_ct_stats(text: str) -> dict[str, int]:
    """`conntrack -S`: per-CPU `key=value` lines summed."""
    total: dict[str, int] = {}
    for line in text.splitlines():
        for tok in line.split():
            k, eq, v = tok.partition("=")
            if eq and k != "cpu" and v.isdigit():
                total[k] = total.get(k, 0) + int(v)
    return total


_COUNT_PREFIX = re.compile(r"^\[(\d+):(\d+)\]\s+")
_COUNT_SUFFIX = re.compile(r"\s-c\s+(\d+)\s+(\d+)\s*$")


def parse_save_counters(text: str, skip_comment: str = TRACE_COMMENT) -> dict[str, tuple[int, int]]:
    """`iptables-save -c` -> {"table/chain/N": (pkts, bytes), "table/chain/policy": ...}.

    N is the 1-based rule number within its chain; rules carrying `skip_comment` (the
    harness' own TRACE rules) are left out and do not take a number.
    """
    out: dict[str, tuple[int, int]] = {}
    table = None
    numbers: dict[str, int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            numbers = {}
        elif line.startswith(":") and table:
            parts = line[1:].split()
            chain, policy = parts[0], parts[1] if len(parts) > 1 else "-"
            numbers.setdefault(chain, 0)
            m = re.search(r"\[(\d+):(\d+)\]", line)
            if policy != "-" and m:
                out[f"{table}/{chain}/policy"] = (int(m.group(1)), int(m.group(2)))
        elif table and (line.startswith("[") or line.startswith("-A ")):
            m = _COUNT_PREFIX.match(line)
            counts = None
            if m:
                counts = (int(m.group(1)), int(m.group(2)))
                line = line[m.end():]
            m2 = _COUNT_SUFFIX.search(line)
            if m2:
                counts = (int(m2.group(1)), int(m2.group(2)))
            words = line.split()
            if len(words) < 2 or words[0] != "-A":
                continue
            if skip_comment and skip_comment in line:
                continue
            chain = words[1]
            numbers[chain] = numbers.get(chain, 0) + 1
            out[f"{table}/{chain}/{numbers[chain]}"] = counts or (0, 0)
    return out


def save_tables(text: str) -> set[str]:
    """The tables an iptables-save / iptables-restore text mentions (`*nat` ...)."""
    return {line.strip()[1:].strip() for line in text.splitlines() if line.strip().startswith("*")}
