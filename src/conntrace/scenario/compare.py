"""Compare two RunOutcomes (the model's and the kernel's) item by item, under explicit tolerances.

Tolerances (docs/kernel-harness.md):
- Ports the kernel picks at random are replaced by symbols before comparing: a client's
  ephemeral port (a step without `sport`) becomes `eph<step>`, a ping's echo id without
  `icmp_id` becomes `id<step>`, and a port (or echo id) NAT remapped becomes
  `nat<host:flow>` named after the first flow that got it. So tuples compare as "kept vs
  remapped", and two flows sharing one mapping share one symbol.
- Conntrack timeouts agree within |kernel elapsed - model elapsed| + 1 s; event timeouts
  within 1 s. Conntrack ids, portids and timestamps are never compared.
- Known deviations (docs/deviations.md) turn a disagreement into "known-deviation", never
  into an agreement.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .model import Scenario
from .outcome import CtEntryView, RunOutcome

AGREE = "agree"
DISAGREE = "disagree"
KNOWN = "known-deviation"

# conntrack -S counters that say something about behaviour (reference §5.3)
CT_STATS_COMPARED = ("insert_failed", "drop", "early_drop", "invalid", "clash_resolve")
EVENT_TIMEOUT_SLACK = 1


@dataclass(frozen=True)
class Deviation:
    id: str
    area: str  # an item area, or "*"
    match: str  # fnmatch patterns over the item key, separated by ", "
    reason: str
    scenario: str = "*"  # fnmatch pattern over the scenario name

    def covers(self, area: str, key: str, scenario: str = "") -> bool:
        return (self.area in ("*", area) and fnmatch.fnmatchcase(scenario, self.scenario)
                and any(fnmatch.fnmatchcase(key, p.strip()) for p in self.match.split(",")))


@dataclass
class Item:
    area: str  # step | server_saw | conntrack | ct_stats | counters | events
    key: str  # e.g. "step/0/result", "gw/conntrack/tcp 10.0.1.2:eph0 > 10.0.1.1:8080/state"
    status: str
    model: Any
    kernel: Any
    detail: str = ""
    deviation: str | None = None


@dataclass
class Comparison:
    scenario: str
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Items with `status` (AGREE, DISAGREE, KNOWN; "known deviation" is read as KNOWN)."""
        status = status.replace(" ", "-")
        return sum(1 for i in self.items if i.status == status)

    @property
    def ok(self) -> bool:
        """True when nothing disagrees (known deviations allowed)."""
        return self.count(DISAGREE) == 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ deviations

_ROW_RE = re.compile(r"^\|(.+)\|\s*$")


def parse_deviations(text: str, file: str = "deviations.md") -> list[Deviation]:
    """Rows of the first Markdown table whose header is `| id | area | match | reason |`,
    optionally with a `scenario` column after `id`."""
    out: list[Deviation] = []
    columns: list[str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        m = _ROW_RE.match(line.strip())
        if not m:
            if columns:
                break
            continue
        cells = [c.strip() for c in m.group(1).split("|")]
        if columns is None:
            names = [c.lower() for c in cells]
            if names in (["id", "area", "match", "reason"],
                         ["id", "scenario", "area", "match", "reason"]):
                columns = names
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        row = dict(zip(columns, cells))
        if len(cells) != len(columns) or not row["id"] or not row["match"]:
            raise InputError(f"expected a row '| {' | '.join(columns)} |'", file, n)
        patterns = ", ".join(p.strip().strip("`") for p in row["match"].split(","))
        out.append(Deviation(row["id"], row["area"].strip("`") or "*", patterns,
                             row["reason"], row.get("scenario", "*").strip("`") or "*"))
    return out


def load_deviations(path: str | Path) -> list[Deviation]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read deviations: {e.strerror}", str(p)) from None
    return parse_deviations(text, str(p))


# ------------------------------------------------------------------ port symbols

class PortSymbols:
    """Random ports and echo ids of one outcome, replaced by names both sides share."""

    def __init__(self, outcome: RunOutcome, scenario: Scenario):
        self.ports: dict[int, str] = {}
        self.ids: dict[int, str] = {}
        literal_ports, literal_ids = _literals(scenario)
        for so, step in zip(outcome.steps, scenario.steps):
            if so.local_port is None:
                continue
            if step.kind in ("tcp_connect", "udp") and "sport" not in step.args:
                self.ports.setdefault(so.local_port, f"eph{so.index}")
            elif step.kind == "ping" and "icmp_id" not in step.args:
                self.ids.setdefault(so.local_port, f"id{so.index}")
        # NAT remaps: twice, so that a remap seen downstream of another gets its final name
        for _ in range(2):
            for host in sorted(outcome.hosts):
                entries = sorted(outcome.hosts[host].conntrack, key=lambda e: str(self.orig_key(e)))
                for e in entries:
                    self._remap(host, e, literal_ports, literal_ids)

    def _remap(self, host: str, e: CtEntryView, literal_ports: set[int], literal_ids: set[int]) -> None:
        o, r = e.orig, e.reply
        if "sport" in o and "dport" in r and r["dport"] != o["sport"]:
            v = r["dport"]
            if v not in literal_ports and v not in self.ports:
                self.ports[v] = f"nat<{host}:{self.orig_key(e)}>"
        if "id" in o and "id" in r and r["id"] != o["id"]:
            v = r["id"]
            if v not in literal_ids and v not in self.ids:
                self.ids[v] = f"nat<{host}:{self.orig_key(e)}>"

    def port(self, v: Any) -> Any:
        return self.ports.get(v, v) if isinstance(v, int) else v

    def ident(self, v: Any) -> Any:
        return self.ids.get(v, v) if isinstance(v, int) else v

    def tuple_text(self, proto: str, t: dict) -> str:
        if "sport" in t or "dport" in t:
            return f"{proto} {t.get('src')}:{self.port(t.get('sport'))} > {t.get('dst')}:{self.port(t.get('dport'))}"
        if "type" in t:
            return (f"{proto} {t.get('src')} > {t.get('dst')} type={t.get('type')} "
                    f"code={t.get('code')} id={self.ident(t.get('id'))}")
        return f"{proto} {t.get('src')} > {t.get('dst')}"

    def orig_key(self, e: CtEntryView) -> str:
        return self.tuple_text(e.proto, e.orig) + (f" zone={e.zone}" if e.zone else "")


def _literals(sc: Scenario) -> tuple[set[int], set[int]]:
    """Ports and echo ids the scenario itself names: never treated as random."""
    from ..packetspec import parse_packet_spec

    ports: set[int] = set()
    ids: set[int] = set()
    for h in sc.hosts.values():
        ports |= {ln.port for ln in h.listeners}
    for s in sc.steps:
        for k in ("sport", "dport"):
            if isinstance(s.args.get(k), int):
                ports.add(s.args[k])
        if isinstance(s.args.get("icmp_id"), int):
            ids.add(s.args["icmp_id"])
        if s.kind == "packet":
            pkt = parse_packet_spec(s.args["spec"]).packet
            ports |= {p for p in (pkt.sport, pkt.dport) if p is not None}
            if pkt.icmp is not None:
                ids.add(pkt.icmp.id)
    return ports, ids


# ------------------------------------------------------------------ comparison

class _Builder:
    def __init__(self, deviations: list[Deviation], scenario: str):
        self.items: list[Item] = []
        self.deviations = deviations
        self.scenario = scenario

    def add(self, area: str, key: str, model: Any, kernel: Any, same: bool | None = None,
            detail: str = "") -> None:
        agree = (model == kernel) if same is None else same
        status, dev = AGREE, None
        if not agree:
            status = DISAGREE
            for d in self.deviations:
                if d.covers(area, key, self.scenario):
                    status, dev = KNOWN, d.id
                    detail = (detail + "; " if detail else "") + d.reason
                    break
        self.items.append(Item(area, key, status, model, kernel, detail, dev))


def compare(model: RunOutcome, kernel: RunOutcome, scenario: Scenario,
            deviations: list[Deviation] | None = None) -> Comparison:
    """Item-by-item comparison of a model outcome and a kernel outcome of `scenario`."""
    b = _Builder(deviations or [], scenario.name)
    ms, ks = PortSymbols(model, scenario), PortSymbols(kernel, scenario)
    cmp = Comparison(scenario=scenario.name)
    _steps(b, model, kernel, scenario, ms, ks)
    slack = abs(kernel.elapsed - model.elapsed) + 1.0
    cmp.notes.append(f"conntrack timeouts compared within {slack:g} s")
    for host in sorted(set(model.hosts) | set(kernel.hosts) | set(scenario.hosts)):
        mh, kh = model.hosts.get(host), kernel.hosts.get(host)
        _conntrack(b, host, mh.conntrack if mh else [], kh.conntrack if kh else [], ms, ks, slack)
        _ct_stats(b, host, mh.ct_stats if mh else {}, kh.ct_stats if kh else {})
        _counters(b, host, mh.counters if mh else {}, kh.counters if kh else {})
        _events(b, host, mh.events if mh else [], kh.events if kh else [], ms, ks)
    cmp.items = b.items
    return cmp


def _steps(b: _Builder, model: RunOutcome, kernel: RunOutcome, sc: Scenario,
           ms: PortSymbols, ks: PortSymbols) -> None:
    mby = {s.index: s for s in model.steps}
    kby = {s.index: s for s in kernel.steps}
    for i, step in enumerate(sc.steps, 1):  # StepOutcome.index is 1-based
        m, k = mby.get(i), kby.get(i)
        base = f"step/{i}"
        if m is None or k is None:
            b.add("step", f"{base}/result", m.result if m else None, k.result if k else None)
            continue
        b.add("step", f"{base}/result", m.result, k.result)
        if step.kind in ("udp", "ping"):  # datagram counts; TCP has none
            b.add("step", f"{base}/sent", m.sent, k.sent)
            b.add("step", f"{base}/replies", m.replies, k.replies)
        if step.kind in ("tcp_connect", "udp", "ping"):
            b.add("step", f"{base}/local_addr", m.local_addr, k.local_addr)
            mp = ms.ident(m.local_port) if step.kind == "ping" else ms.port(m.local_port)
            kp = ks.ident(k.local_port) if step.kind == "ping" else ks.port(k.local_port)
            b.add("step", f"{base}/local_port", mp, kp)
        b.add("server_saw", f"{base}/server_saw", _saw(m, ms), _saw(k, ks))


def _saw(so, sym: PortSymbols) -> list[str]:
    return sorted(f"{s.host} {s.proto} {s.peer_addr}:{sym.port(s.peer_port)} > "
                  f"{s.local_addr}:{s.local_port}" for s in so.server_saw)


def _entry_fields(e: CtEntryView, sym: PortSymbols) -> dict[str, Any]:
    return {"reply": sym.tuple_text(e.proto, e.reply), "state": e.state,
            "flags": sorted(e.flags), "mark": e.mark}


def _conntrack(b: _Builder, host: str, mlist: list[CtEntryView], klist: list[CtEntryView],
               ms: PortSymbols, ks: PortSymbols, slack: float) -> None:
    mby = {ms.orig_key(e): e for e in mlist}
    kby = {ks.orig_key(e): e for e in klist}
    for key in sorted(set(mby) | set(kby)):
        base = f"{host}/conntrack/{key}"
        m, k = mby.get(key), kby.get(key)
        if m is None or k is None:
            b.add("conntrack", f"{base}/present", m is not None, k is not None,
                  detail=_entry_text(m or k))
            continue
        mf, kf = _entry_fields(m, ms), _entry_fields(k, ks)
        for name in ("reply", "state", "flags", "mark"):
            b.add("conntrack", f"{base}/{name}", mf[name], kf[name])
        b.add("conntrack", f"{base}/timeout", m.timeout, k.timeout,
              same=abs(m.timeout - k.timeout) <= slack, detail=f"tolerance {slack:g} s")


def _entry_text(e: CtEntryView) -> str:
    return f"{e.proto} {e.state or ''} {e.orig} -> {e.reply} {e.flags}".replace("  ", " ")


def _ct_stats(b: _Builder, host: str, m: dict[str, int], k: dict[str, int]) -> None:
    if not m and not k:
        return
    for name in CT_STATS_COMPARED:
        b.add("ct_stats", f"{host}/ct_stats/{name}", m.get(name, 0), k.get(name, 0))


def _counters(b: _Builder, host: str, m: dict, k: dict) -> None:
    for key in sorted(set(m) | set(k), key=_counter_order):
        mv = tuple(m[key]) if key in m else None
        kv = tuple(k[key]) if key in k else None
        if mv is None or kv is None:
            # iptables-nft creates every built-in chain of a restored table; an absent
            # chain and one that counted nothing say the same thing
            present = mv if mv is not None else kv
            b.add("counters", f"{host}/counters/{key}", mv, kv, same=present == (0, 0),
                  detail="absent on one side")
        else:
            b.add("counters", f"{host}/counters/{key}", mv, kv)


def _counter_order(key: str) -> tuple:
    t, c, n = (key.split("/") + ["", "", ""])[:3]
    return (t, c, 0 if n == "policy" else 1, int(n) if n.isdigit() else 0)


def _events(b: _Builder, host: str, mlines: list[str], klines: list[str], ms: PortSymbols,
            ks: PortSymbols) -> None:
    mflows, kflows = _event_flows(mlines, ms), _event_flows(klines, ks)
    for key in sorted(set(mflows) | set(kflows)):
        mv, kv = mflows.get(key, []), kflows.get(key, [])
        same = len(mv) == len(kv) and all(
            a[:-1] == c[:-1] and abs(a[-1] - c[-1]) <= EVENT_TIMEOUT_SLACK for a, c in zip(mv, kv))
        b.add("events", f"{host}/events/{key}", [_ev_text(e) for e in mv],
              [_ev_text(e) for e in kv], same=same)


def _event_flows(lines: list[str], sym: PortSymbols) -> dict[str, list[tuple]]:
    from ..kernel.collect import parse_ct_line

    flows: dict[str, list[tuple]] = {}
    for line in lines:
        r = parse_ct_line(line)
        if r is None or r[0] is None:
            continue
        ev, e = r
        flows.setdefault(sym.orig_key(e), []).append(
            (ev, e.state, tuple(sorted(e.flags)), sym.tuple_text(e.proto, e.reply), e.timeout))
    return flows


def _ev_text(e: tuple) -> str:
    ev, state, flags, reply, timeout = e
    parts = [f"[{ev}]"] + ([str(timeout)] if timeout >= 0 else []) + ([state] if state else [])
    return " ".join(parts + [f"[{f}]" for f in flags] + [f"reply {reply.split(' ', 1)[1]}"])


# ------------------------------------------------------------------ rendering

def render_comparison(c: Comparison, *, show_agree: bool = False, width: int = 38) -> str:
    """Side-by-side text: one line per item (agreements only with show_agree)."""
    lines = [f"scenario {c.scenario}: {c.count(AGREE)} agree, {c.count(DISAGREE)} disagree, "
             f"{c.count(KNOWN)} known deviation(s)"]
    lines += [f"  note: {n}" for n in c.notes]
    shown = [i for i in c.items if show_agree or i.status != AGREE]
    if shown:
        lines.append(f"  {'status':<15} {'item':<60} {'model':<{width}} kernel")
    mark = {AGREE: "agree", DISAGREE: "DISAGREE", KNOWN: "known"}
    for i in shown:
        status = mark[i.status] + (f" {i.deviation}" if i.deviation else "")
        if i.area == "events":
            mcell, kcell = f"{len(i.model or [])} event(s)", f"{len(i.kernel or [])} event(s)"
        else:
            mcell, kcell = _fmt(i.model), _fmt(i.kernel)
        lines.append(f"  {status:<15} {_cut(i.key, 60):<60} {_cut(mcell, width):<{width}} {kcell}")
        if i.area == "events" and i.status != AGREE:
            mv, kv = i.model or [], i.kernel or []
            for n in range(max(len(mv), len(kv))):
                a = mv[n] if n < len(mv) else "-"
                k = kv[n] if n < len(kv) else "-"
                if a == k:
                    lines.append(f"  {'':<15}   both:   {a}")
                else:
                    lines.append(f"  {'':<15}   model:  {a}")
                    lines.append(f"  {'':<15}   kernel: {k}")
        if i.detail and i.status != AGREE:
            lines.append(f"  {'':<15} ({i.detail})")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return f"{v[0]} pkts {v[1]} bytes"
    if isinstance(v, list):
        return "; ".join(str(x) for x in v) or "[]"
    return str(v)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
