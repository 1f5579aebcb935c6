"""The built-in demo's narrative: traces of the interesting packets, with plain words beside
them. It reads a finished World; it decides nothing about packets itself."""

from __future__ import annotations

from importlib import resources

from .render_text import path_summary, render_trace


def demo_scenario_path() -> str:
    return str(resources.files("conntrace") / "data" / "demo.yaml")


def _first(traces, host, pred):
    for t in traces:
        if t.host == host and pred(t):
            return t
    return None


def _has(t, kind, **kw) -> bool:
    return any(s.kind == kind and all(getattr(s, k, None) == v for k, v in kw.items())
               for s in t.steps)


def demo_lines(world) -> list[str]:
    from ..world.outcome import conntrack_lines, event_lines

    traces = world.traces
    out: list[str] = []

    def say(text: str = "") -> None:
        out.append(text)

    def show(t) -> None:
        for line in render_trace(t):
            out.append("    " + line)

    say("conntrace demo: a client (10.0.1.2) behind a gateway reaches a web server (10.0.2.2)")
    say("through DNAT (10.0.1.1:8080 -> 10.0.2.2:80) and MASQUERADE, then a process on the")
    say("gateway connects to a port the gateway DNATs to itself.")
    say("")
    syn = _first(traces, "gw", lambda t: "[SYN]" in t.packet and ":8080" in t.packet and "10.0.1.2" in t.packet)
    if syn is not None:
        say("1. The first packet of the flow (the client's SYN) as the gateway handles it:")
        show(syn)
        say("")
        say("   In plain words: conntrack saw no entry for this packet, so it created one")
        say("   (unconfirmed, ctstate NEW). Because no DNAT binding existed yet, the nat table's")
        say("   PREROUTING chain ran: the DNAT rule bound the destination 10.0.1.1:8080 to")
        say("   10.0.2.2:80 (the reply tuple changed). filter FORWARD then saw the translated")
        say("   destination. At POSTROUTING the nat chain ran again for the source side and")
        say("   MASQUERADE picked eth1's address. The entry became visible (confirmed) only at")
        say("   the very end of POSTROUTING.")
        say("")
    ack = _first(traces, "gw", lambda t: "[ACK]" in t.packet and "10.0.1.2" in t.packet
                 and t.packet_id != getattr(syn, "packet_id", None))
    if ack is not None:
        say("2. The next packet of the same flow (the client's ACK):")
        show(ack)
        say("")
        say("   The nat table was not consulted at all: the entry already holds both")
        say("   bindings, and every later packet is rewritten from it, in both directions.")
        say("")
    local = _first(traces, "gw", lambda t: ":9999" in t.packet and "[SYN]" in t.packet)
    if local is not None:
        say("3. A process on the gateway connects to 10.0.1.1:9999 (DNAT in nat OUTPUT to the")
        say("   gateway's own port 8081):")
        show(local)
        say("")
        say("   The SYN crossed the stack twice - OUTPUT/POSTROUTING, then back in through lo")
        say("   via PREROUTING/INPUT - but it carried its conntrack entry along: there is one")
        say("   entry, and the nat chains were not run on the second pass.")
        say("")
    say("4. The life of the client's conntrack entry on the gateway (conntrack -E):")
    gw = world.hosts.get("gw")
    if gw is not None and gw.conntrack is not None:
        for ev, line in zip(gw.conntrack.table.events, event_lines(world, "gw")):
            if "44892" in line:
                say(f"    {ev.time:8.4f}s {line}")
    say("")
    say("   SYN_SENT (120 s) when the SYN was confirmed, SYN_RECV (60 s) on the server's")
    say("   SYN/ACK, ESTABLISHED (5 days) and ASSURED on the final ACK of the handshake, then")
    say("   FIN_WAIT, LAST_ACK and TIME_WAIT (120 s) as both sides closed.")
    say("")
    say(f"conntrack -L on the gateway at {world.now:.1f}s:")
    for line in conntrack_lines(world, "gw"):
        say("    " + line)
    say("")
    say("Every packet of the run:")
    for t in traces:
        say(f"    {t.time:8.4f}s {t.host:<7} {t.packet:<52} {t.fate.result:<10} {path_summary(t)}")
    return out
