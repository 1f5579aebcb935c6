"""Build a `Host` from a host description (a scenario host entry or a --host file)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..scenario.model import HostSpec
from .host import Host, Socket
from .iproute import parse_route_line
from .netdev import Interface


def build_host(spec: HostSpec, seed: int = 0, ncpus: int = 2) -> Host:
    """A host with devices, routes, sysctls, ruleset, ipsets and listening sockets. The
    packet path is attached (host.stack)."""
    from ..netfilter.stack import attach

    host = Host(spec.name, seed=seed)
    for k, v in spec.sysctls.items():
        host.sysctls.set(k, v)
    for i in spec.interfaces:
        host.devices.add_interface(Interface(i.name, mac=i.mac, addresses=list(i.addresses),
                                             mtu=i.mtu))
    for r in spec.routes:
        where = r.where
        route = parse_route_line(r.text, where.file if where else None, where.line if where else None)
        try:
            host.devices.add_route(route)
        except InputError as e:
            raise InputError(e.message, where.file if where else None,
                             where.line if where else None) from None
    if spec.ipsets:
        from ..ruleset.ipset import load_ipset_text

        host.ext_state.ipsets.update(load_ipset_text(spec.ipsets, spec.rules_origin or spec.name))
    if spec.rules:
        load_rules_into(host, spec.rules, spec.rules_origin or f"{spec.name}.rules",
                        line_offset=spec.rules_line_offset)
    for ls in spec.listeners:
        host.sockets.add(Socket(proto=6 if ls.proto == "tcp" else 17, addr=ls.addr,
                                port=ls.port, uid=ls.uid, gid=ls.gid,
                                transparent=ls.transparent, echo=ls.echo, name=f"{ls.proto}/{ls.port}"))
    attach(host, ncpus)
    return host


def load_rules_into(host: Host, text: str, origin: str, *, noflush: bool = False,
                    line_offset: int = 0) -> None:
    """Parse iptables-save/restore text and install it (all or nothing), as
    iptables-restore [--noflush] would. The caller decides about unsupported constructs.
    `line_offset`: the text is embedded in `origin` (a scenario file) starting after that
    line, so rules point at the scenario's own lines."""
    from ..ruleset.iptables_save import parse_rules
    from ..ruleset.model import RulesetPair

    base = None
    if noflush and host.ruleset is not None:
        base = RulesetPair(v4=host.ruleset, v6=host.ruleset6)
    try:
        pair = parse_rules(text, origin, base=base, noflush=noflush)
    except InputError as e:
        if line_offset and e.line is not None:
            raise InputError(e.message, e.file, e.line + line_offset) from None
        raise
    if line_offset:
        _shift_sources(pair, origin, line_offset)
    host.ruleset = pair.v4
    host.ruleset6 = pair.v6
    host.ext_state.reset_rule_state()
    if host.stack is not None:
        host.stack.refresh()


def _shift_sources(pair, origin: str, offset: int) -> None:
    from dataclasses import replace

    for rs in (pair.v4, pair.v6):
        if rs is None:
            continue
        for _t, _c, rule in rs.rules():
            if rule.source is not None and rule.source.file == origin:
                rule.source = replace(rule.source, line=rule.source.line + offset)
        for item in rs.unsupported:  # the same objects the rules list
            if item.file == origin and item.line is not None:
                item.line += offset


def read_text_file(path: str | Path, what: str) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", str(path)) from None
    if b"\0" in data:
        raise InputError(f"binary file (expected {what} as text)", str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"not UTF-8 text (expected {what})", str(path)) from None
