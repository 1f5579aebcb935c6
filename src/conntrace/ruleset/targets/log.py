"""LOG: write the packet to the kernel log and go on (net/netfilter/xt_LOG.c, the line itself
in observe/kernel_log.py). Emits a LogLine; never ends the traversal.

The kernel writes a line in a child network namespace only when the init namespace has
net.netfilter.nf_log_all_netns=1; the model treats its host as the namespace the user
looks at and always emits the line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...host.netdev import RouteType
from ...netfilter.effects import LogLine
from ...netfilter.hooks import Hook
from ...netfilter.verdict import CONTINUE, Verdict
from ...observe.kernel_log import (XT_LOG_IPOPT, XT_LOG_MACDECODE, XT_LOG_TCPOPT, XT_LOG_TCPSEQ,
                                   XT_LOG_UID, format_log_line)
from ...packet import Packet
from ..ext import ExtParseError, Opt, OptionSpec, ParseContext, SaveString, TargetExt, register_target
from ._common import arg, check_plain, check_table_hook, parse_uint

if TYPE_CHECKING:
    from ...host.host import Host
    from ...netfilter.context import EvalContext

# xtopt_parse_sysloglevel (libxtables/xtoptions.c): names are case-sensitive
LOG_LEVELS = {"alert": 1, "crit": 2, "debug": 7, "emerg": 0, "error": 3, "info": 6,
              "notice": 5, "panic": 0, "warning": 4}
LOG_DEFAULT_LEVEL = 4
PREFIX_MAX = 29  # struct xt_log_info.prefix[30]: longer prefixes are cut, not refused

# option -> flag, in the order iptables-save prints them
FLAG_OPTIONS = (("--log-tcp-sequence", XT_LOG_TCPSEQ), ("--log-tcp-options", XT_LOG_TCPOPT),
                ("--log-ip-options", XT_LOG_IPOPT), ("--log-uid", XT_LOG_UID),
                ("--log-macdecode", XT_LOG_MACDECODE))

# The devices nf_hook_state carries at each hook: LOCAL_OUT gets no input device; ip_output
# passes skb->dev as the input device of POSTROUTING, i.e. the device a forwarded packet
# came in on (none for a local one), so a forwarded packet logs IN=, OUT= and MAC= there.
HOOK_DEVICES = {
    Hook.PREROUTING: (True, False), Hook.INPUT: (True, False), Hook.FORWARD: (True, True),
    Hook.OUTPUT: (False, True), Hook.POSTROUTING: (True, True),
}


def hook_devices(ctx: "EvalContext") -> tuple[str | None, str | None]:
    has_in, has_out = HOOK_DEVICES[ctx.hook]
    return (ctx.in_iface if has_in else None), (ctx.out_iface if has_out else None)


def frame_dst_mac(pkt: Packet, host: "Host", in_iface: str | None) -> str | None:
    """The destination MAC of the frame that brought `pkt` in, when the packet does not
    carry one: broadcast/multicast for such addresses, else the input device's own MAC."""
    if pkt.meta.dst_mac is not None or not in_iface:
        return pkt.meta.dst_mac
    dst = pkt.dst
    if dst.version == 4:
        if dst == ipaddress.IPv4Address("255.255.255.255") or \
                host.addr_type(dst) is RouteType.BROADCAST:
            return "ff:ff:ff:ff:ff:ff"
        if dst.is_multicast:
            low = int(dst) & 0x7FFFFF
            return "01:00:5e:" + ":".join(f"{(low >> s) & 0xFF:02x}" for s in (16, 8, 0))
    elif dst.is_multicast:
        return "33:33:" + ":".join(f"{b:02x}" for b in dst.packed[-4:])
    dev = host.interfaces.get(in_iface)
    return dev.mac if dev is not None else None


def socket_ids(pkt: Packet) -> tuple[int, int] | None:
    """(fsuid, fsgid) of the packet's full socket: the sender of a local packet, or the
    socket TPROXY assigned."""
    meta = pkt.meta
    if meta.sock_uid is not None:
        return meta.sock_uid, meta.sock_gid if meta.sock_gid is not None else 0
    sk = meta.tproxy_sock
    if sk is not None and hasattr(sk, "uid"):
        return sk.uid, sk.gid
    return None


@register_target
@dataclass(frozen=True)
class LogTarget(TargetExt):
    prefix: str = ""
    level: int = LOG_DEFAULT_LEVEL
    logflags: int = 0

    name: ClassVar[str] = "LOG"
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--log-level"), OptionSpec("--log-prefix"),
        *(OptionSpec(n, nargs=0) for n, _ in FLAG_OPTIONS))

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "LogTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        prefix, level, flags = "", LOG_DEFAULT_LEVEL, 0
        flag_of = dict(FLAG_OPTIONS)
        for o in opts:
            a = arg(o)
            if o.name == "--log-level":
                if a in LOG_LEVELS:
                    level = LOG_LEVELS[a]
                else:
                    try:
                        level = parse_uint(a, "--log-level", 0, 7)
                    except ExtParseError:
                        raise ExtParseError(
                            f"--log-level: unknown level '{a}' (expected 0-7 or one of "
                            f"{', '.join(sorted(LOG_LEVELS))})") from None
            elif o.name == "--log-prefix":
                if a == "":
                    raise ExtParseError("--log-prefix: expected a non-empty prefix")
                if "\n" in a:
                    raise ExtParseError("--log-prefix: newlines are not allowed")
                prefix = a[:PREFIX_MAX]
            else:
                flags |= flag_of[o.name]
        return cls(prefix, level, flags)

    def render(self) -> list[str]:
        out: list[str] = []
        if self.prefix:
            out += ["--log-prefix", SaveString(self.prefix)]
        if self.level != LOG_DEFAULT_LEVEL:
            out += ["--log-level", str(self.level)]
        out += [name for name, bit in FLAG_OPTIONS if self.logflags & bit]
        return out

    def apply(self, ctx: "EvalContext") -> Verdict:
        pkt = ctx.pkt
        in_dev, out_dev = hook_devices(ctx)
        text = format_log_line(
            pkt, prefix=self.prefix, in_iface=in_dev, out_iface=out_dev,
            logflags=self.logflags, dst_mac=frame_dst_mac(pkt, ctx.host, in_dev),
            sock_ids=socket_ids(pkt))
        ctx.emit(LogLine(text, level=self.level, source="LOG"))
        return CONTINUE
