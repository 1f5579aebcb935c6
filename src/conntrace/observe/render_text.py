"""Plain-text rendering of packet traces (what `conntrace trace` prints)."""

from __future__ import annotations

from .trace import PacketTrace


def render_trace(trace: PacketTrace, *, all_rules: bool = False, indent: str = "") -> list[str]:
    out = [f"{indent}packet #{trace.packet_id} on {trace.host}"
           + (f" ({trace.label})" if trace.label else "") + f": {trace.packet}"]
    ind = indent + "  "
    for step in trace.steps:
        kind = step.kind
        if kind == "hook":
            out.append(f"{ind}{step.hook}  in={step.in_iface or '-'} out={step.out_iface or '-'}"
                       f"  {step.packet}")
        elif kind == "rule":
            if not step.matched and not all_rules and not step.uncertain:
                continue
            mark = "->" if step.matched else "  "
            where = f"  [{step.source}]" if step.source else ""
            verdict = f"  => {step.verdict}" if step.matched else "  (no match)"
            out.append(f"{ind}  {mark} {step.table}/{step.chain} #{step.index}: {step.text}{verdict}{where}")
            for c in step.changes:
                out.append(f"{ind}       {c['field']}: {c['old']} -> {c['new']}")
            for e in step.effects:
                out.append(f"{ind}       {e}")
            for u in step.uncertain:
                out.append(f"{ind}       UNCERTAIN: {u}")
        elif kind == "policy":
            out.append(f"{ind}  -> {step.table}/{step.chain} policy {step.verdict}")
        elif kind == "return":
            out.append(f"{ind}     {step.table}/{step.chain} returns to {step.to_chain}")
        elif kind == "table":
            pass  # the rule line already shows the verdict
        elif kind == "conntrack":
            parts = [f"conntrack: {step.action}"]
            if step.entry_id is not None:
                parts.append(f"entry #{step.entry_id}")
            if step.ctstate:
                parts.append(f"ctstate {step.ctstate}")
            if step.tcp_state:
                parts.append(step.tcp_state)
            line = f"{ind}  " + ", ".join(parts)
            if step.detail:
                line += f" ({step.detail})"
            out.append(line)
            if step.orig and step.action in ("new", "found", "related"):
                out.append(f"{ind}     orig  {step.orig}")
                out.append(f"{ind}     reply {step.reply}")
        elif kind == "nat":
            line = f"{ind}  nat {step.hook} {step.manip.upper()}: {step.detail}"
            out.append(line)
            if step.action == "rewrite" and step.before and step.after:
                out.append(f"{ind}     {step.before}  =>  {step.after}")
        elif kind == "confirm":
            out.append(f"{ind}  conntrack confirm: {step.result}"
                       + (f" entry #{step.entry_id}" if step.entry_id else "")
                       + (f" ({step.detail})" if step.detail else ""))
        elif kind == "routing":
            bits = [f"routing: {step.decision}"]
            if step.dev:
                bits.append(f"dev {step.dev}")
            if step.gateway:
                bits.append(f"via {step.gateway}")
            if step.src and step.decision in ("output", "reroute"):
                bits.append(f"src {step.src}")
            line = f"{ind}" + " ".join(bits)
            if step.detail:
                line += f" ({step.detail})"
            out.append(line)
        elif kind == "note":
            out.append(f"{ind}note: {step.text}")
    for line in trace.log_lines:
        out.append(f"{ind}kernel log: {line}")
    if trace.fate is not None:
        f = trace.fate
        tail = f" ({f.reason})" if f.reason else ""
        out.append(f"{ind}FATE: {f.result.upper()} at {f.where}{tail}")
        if trace.final_packet and trace.final_packet != trace.packet:
            out.append(f"{ind}      as {trace.final_packet}")
    if trace.uncertain:
        out.append(f"{ind}RESULT UNCERTAIN: this walk met constructs the model does not implement:")
        for u in trace.uncertain:
            out.append(f"{ind}  - {u}")
    return out


_HOOK_SHORT = {"PREROUTING": "PRE", "INPUT": "IN", "FORWARD": "FWD", "OUTPUT": "OUT",
               "POSTROUTING": "POST"}


def path_summary(trace: PacketTrace) -> str:
    """One line: the hooks walked and what conntrack/NAT did, e.g.
    `PRE>FWD>POST ct#1 NEW; DNAT 10.0.1.1:8080 -> 10.0.2.2:80`."""
    hooks = []
    notes = []
    for step in trace.steps:
        if step.kind == "hook":
            hooks.append(_HOOK_SHORT.get(step.hook, step.hook))
        elif step.kind == "routing" and step.decision == "loopback":
            hooks.append("lo")
        elif step.kind == "conntrack" and step.action in ("new", "found", "related", "invalid",
                                                          "untracked"):
            label = step.action if step.action != "found" else (step.ctstate or "found").lower()
            text = f"ct#{step.entry_id} {label}" if step.entry_id else f"ct {label}"
            if text not in notes:
                notes.append(text)
        elif step.kind == "nat" and step.action in ("binding", "null-binding") and "->" in step.detail:
            notes.append(step.detail)
    return ">".join(hooks) + ("  " + "; ".join(notes) if notes else "")
