"""Read what the kernel tools print: `conntrack -L/-E/-S` and `iptables-save -c` (pure).

Formats: reference §5.1-5.3 (libnetfilter_conntrack snprintf_default.c field order;
conntrack-tools' `-S` per-CPU lines; iptables-save's `[pkts:bytes]` rule prefix).
"""

from __future__ import annotations

import re

from ..scenario.outcome import CtEntryView

TUPLE_KEYS = frozenset({"src", "dst", "sport", "dport", "type", "code", "id"})
_TS_RE = re.compile(r"^\[\d+\.\d+\]\s*")
TRACE_COMMENT = "conntrace-harness-trace"


def parse_ct_line(line: str) -> tuple[str | None, CtEntryView] | None:
    """One `conntrack -L` (plain or `-o extended`) or `conntrack -E` line.

    Returns (event type or None, entry), or None for a line that is not an entry (blank,
    the summary). A DESTROY event carries no timeout: it reads as -1. The parsing itself
    is observe.conntrack_tools.parse_conntrack_line, shared with the model's renderers.
    """
    from ..errors import InputError
    from ..observe.conntrack_tools import parse_conntrack_line

    if not line.strip():
        return None
    try:
        d = parse_conntrack_line(line)
    except InputError:
        return None
    flags = (["UNREPLIED"] if d["unreplied"] else []) + (["ASSURED"] if d["assured"] else [])
    if d["offload"]:
        flags.append(d["offload"])
    flags += [k for k, v in d["extra"].items() if v is True]
    entry = CtEntryView(proto=d["proto"], state=d["state"],
                        timeout=d["timeout"] if d["timeout"] is not None else -1,
                        orig=_tuple_view(d["orig"]), reply=_tuple_view(d["reply"]), flags=flags,
                        mark=d["mark"] or 0, zone=d["zone"] or 0)
    return d["event"], entry


def _tuple_view(t: dict) -> dict:
    return {k: (str(v) if k in ("src", "dst") else v) for k, v in t.items()
            if k in TUPLE_KEYS or k in ("srckey", "dstkey")}


def parse_ct_list(text: str) -> list[CtEntryView]:
    """`conntrack -L` output; a line that is neither an entry nor the summary is an error."""
    from ..errors import InputError

    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("conntrack v"):
            continue
        r = parse_ct_line(line)
        if r is None:
            raise InputError(f"not a conntrack entry: {line.strip()[:120]}", "conntrack -L", n)
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
