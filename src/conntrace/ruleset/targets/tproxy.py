"""TPROXY: hand the packet to a local (transparent) socket without changing its headers
(net/netfilter/xt_TPROXY.c tproxy_tg4/tproxy_tg6_v1, nf_tproxy_ipv4.c).

1. A connected socket for the packet's own 4-tuple wins (the redirection already happened).
2. Else a listener on on-ip (or the input device's primary address, or the packet's
   destination when the device has none) and on-port (or the packet's destination port).
3. The socket must be IP_TRANSPARENT (nf_tproxy_sk_is_transparent), whichever way it was
   found: then the mark is applied, the socket assigned and the verdict is ACCEPT; in every
   other case the packet is dropped. TIME_WAIT sockets are not modelled.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.effects import Note
from ...netfilter.verdict import ACCEPT, DROP, Verdict
from ...packet import IPPROTO_TCP, IPPROTO_UDP, IPAddress, TcpHeader, UdpHeader
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import U32_MAX, addr_text, arg, check_plain, check_table_hook, parse_mark_mask, strtoul_prefix
from ._services import service_port

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext


def _on_port(text: str, pctx: ParseContext) -> int:
    got = strtoul_prefix(text)
    if got is not None and got[1] == "" and got[0] <= 0xFFFF:
        return got[0]
    port = service_port(text, pctx.proto)
    if port is None:
        raise ExtParseError(f"--on-port: expected a port number 0-65535 or a service "
                            f"name, got '{text}'")
    return port


@register_target
@dataclass(frozen=True)
class TproxyTarget(TargetExt):
    port: int  # 0: keep the destination port
    on_ip: IPAddress | None = None  # None: printed as 0.0.0.0 / ::
    mark_value: int = 0
    mark_mask: int = 0
    family: int = 4

    name: ClassVar[str] = "TPROXY"
    terminal: ClassVar[bool] = True
    valid_tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING"})
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--on-port"), OptionSpec("--on-ip"), OptionSpec("--tproxy-mark"))

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "TproxyTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        # tproxy_tg4_check / tproxy_tg6_check
        if pctx.proto not in (IPPROTO_TCP, IPPROTO_UDP) or pctx.proto_inverted:
            raise ExtParseError("can be used only with -p tcp or -p udp")
        port = None
        on_ip = None
        value, mask = 0, 0
        for o in opts:
            a = arg(o)
            if o.name == "--on-port":
                port = _on_port(a, pctx)
            elif o.name == "--on-ip":
                try:
                    on_ip = ipaddress.ip_address(a)
                except ValueError:
                    on_ip = None
                if on_ip is None or on_ip.version != pctx.family:
                    kind = "IPv4" if pctx.family == 4 else "IPv6"
                    raise ExtParseError(f"--on-ip: expected an {kind} address, got '{a}'")
                if int(on_ip) == 0:
                    on_ip = None
            else:
                value, mask = parse_mark_mask(a, "--tproxy-mark")
        if port is None:
            raise ExtParseError("option '--on-port' must be specified")
        return cls(port, on_ip, value, mask, pctx.family)

    def render(self) -> list[str]:
        any_addr = "0.0.0.0" if self.family == 4 else "::"
        return ["--on-port", str(self.port),
                "--on-ip", addr_text(self.on_ip) if self.on_ip is not None else any_addr,
                "--tproxy-mark", f"0x{self.mark_value:x}/0x{self.mark_mask:x}"]

    def _laddr(self, ctx: "EvalContext") -> IPAddress:
        """nf_tproxy_laddr4/6: on-ip, else the input device's primary address, else daddr."""
        if self.on_ip is not None:
            return self.on_ip
        dev = ctx.host.interfaces.get(ctx.in_iface or "")
        if dev is not None:
            for a in dev.addresses:
                if a.version == self.family:
                    return a.ip
        return ctx.pkt.dst

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        l4 = pkt.l4
        if pkt.is_fragment or not isinstance(l4, (TcpHeader, UdpHeader)):
            ctx.emit(Note("TPROXY: no TCP/UDP header (fragment), packet dropped"))
            return DROP
        sockets = ctx.host.sockets
        sk = sockets.lookup_established(pkt.proto, pkt.src, l4.sport, pkt.dst, l4.dport)
        how = "established socket"
        if sk is None:
            laddr, lport = self._laddr(ctx), self.port or l4.dport
            sk = sockets.lookup_listener(pkt.proto, laddr, lport)
            how = f"listener for {laddr}:{lport}"
        if sk is None:
            ctx.emit(Note(f"TPROXY: no {how}, packet dropped"))
            return DROP
        label = f" ({sk.name})" if sk.name else ""
        if not sk.transparent:
            ctx.emit(Note(f"TPROXY: {how}{label} is not IP_TRANSPARENT, packet dropped"))
            return DROP
        pkt.meta.mark = ((pkt.meta.mark & ~self.mark_mask) ^ self.mark_value) & U32_MAX
        pkt.meta.tproxy_sock = sk
        ctx.emit(Note(f"TPROXY: assigned to {how}{label}"))
        return ACCEPT
