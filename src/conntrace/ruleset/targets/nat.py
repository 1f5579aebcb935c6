"""The NAT targets: DNAT, SNAT, MASQUERADE, REDIRECT, NETMAP.

They only parse, render and validate here. At run time each builds a `NatRequest` and hands
it to the NAT engine through `ctx.nat_setup`, which completes the range (MASQUERADE's
source, REDIRECT's address, NETMAP's mapping) and returns the verdict.

Syntax: extensions/libxt_NAT.c (parse_to, parse_ports) and libipt_NETMAP.c, iptables 1.8.9;
table and hooks: net/netfilter/xt_nat.c, xt_MASQUERADE.c, xt_REDIRECT.c, xt_NETMAP.c.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...nat.range import Manip, NatRange, NatRequest
from ...netfilter.hooks import NAT_MANIP_BY_HOOK
from ...netfilter.verdict import Verdict
from ...packet import IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP
from ..ext import ExtParseError, ExtUnsupported, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import addr_text, arg, check_plain, check_table_hook, strtoul_prefix
from ._services import service_port

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

IPPROTO_DCCP = 33
# __NAT_parse: a port range needs one of these as -p (inversion is not looked at)
PORT_PROTOS = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_ICMP})
NAT_TABLES = frozenset({"nat"})


class _Ports:
    """A parsed `port[-port[/base]]`."""

    def __init__(self, lo: int, hi: int, base: int | None):
        self.lo, self.hi, self.base = lo, hi, base


def _port_or_service(text: str, lo: int, pctx: ParseContext) -> tuple[int, str]:
    """xtables_strtoui(arg, &end, .., lo, 65535), else a service name for the whole text."""
    got = strtoul_prefix(text)
    if got is not None and lo <= got[0] <= 0xFFFF:
        return got
    port = service_port(text, pctx.proto)
    if port is None:
        raise ExtParseError(f"port '{text}' not valid (expected a number 0-65535 or a service "
                            "name)")
    return port, ""


def parse_ports(text: str, pctx: ParseContext, ext: str) -> _Ports:
    """parse_ports in libxt_NAT.c: `port`, `port-port` or `port-port/base`."""
    if pctx.proto not in PORT_PROTOS:
        raise ExtParseError(f"need TCP, UDP, SCTP or DCCP with port specification "
                            "(add -p tcp or -p udp)")
    lo, rest = _port_or_service(text, 0, pctx)
    if rest == "":
        return _Ports(lo, lo, None)
    if rest.startswith(":"):
        raise ExtParseError(f"invalid port:port syntax in '{text}' - use a dash")
    if not rest.startswith("-"):
        raise ExtParseError(f"garbage after port value: '{rest}'")
    got = strtoul_prefix(rest[1:])
    if got is None or got[0] > 0xFFFF:
        raise ExtParseError(f"port '{rest[1:]}' not valid (expected a number 0-65535)")
    hi, rest = got
    if hi < lo:
        raise ExtParseError(f"port range '{text}' is reversed (expected low-high)")
    if rest == "":
        return _Ports(lo, hi, None)
    if not rest.startswith("/"):
        raise ExtParseError(f"garbage after port range: '{rest}'")
    base, _ = _port_or_service(rest[1:], 1, pctx)  # trailing text is not checked here
    return _Ports(lo, hi, base)


def _addr(text: str, family: int):
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        a = None
    if a is None or a.version != family:
        kind = "IPv4" if family == 4 else "IPv6"
        raise ExtParseError(f"bad IP address '{text}' (expected an {kind} address)")
    return a


def parse_to(text: str, pctx: ParseContext, ext: str) -> tuple[object, object, _Ports | None]:
    """parse_to in libxt_NAT.c: `[ipaddr[-ipaddr]][:port[-port[/base]]]`, IPv6 in brackets
    when a port follows. Returns (min_addr, max_addr, ports); addresses None when absent."""
    start = text
    if "[" in text:
        if pctx.family == 4 or "]" not in text:
            raise ExtParseError(f"invalid address format '{text}'")
        start = text[text.index("[") + 1:text.index("]")]
        after = text[text.index("]") + 1:]
        colon = after.find(":")
        port_text = after[colon + 1:] if colon >= 0 else None
        no_ip = text.startswith("[]")
    else:
        colon = text.find(":")
        if colon >= 0 and ":" in text[colon + 1:]:
            colon = -1  # more than one colon: an IPv6 address, no port
        port_text = text[colon + 1:] if colon >= 0 else None
        if colon >= 0:
            start = text[:colon]
        no_ip = colon == 0
    ports = parse_ports(port_text, pctx, ext) if port_text is not None else None
    if no_ip:
        return None, None, ports
    lo_text, dash, hi_text = start.partition("-")
    lo = _addr(lo_text, pctx.family)
    hi = _addr(hi_text, pctx.family) if dash else lo
    return lo, hi, ports


def _range_text(r: NatRange, family: int) -> str:
    """sprint_range: addresses, then :port[-port][/base]."""
    out = ""
    brackets = family == 6 and r.proto_specified
    if r.min_addr is not None:
        out = addr_text(r.min_addr)
        if r.max_addr is not None and r.max_addr != r.min_addr:
            out += f"-{addr_text(r.max_addr)}"
        if brackets:
            out = f"[{out}]"
    if r.proto_specified:
        out += f":{r.min_port}"
        if r.max_port != r.min_port:
            out += f"-{r.max_port}"
        if r.base_port is not None:
            out += f"/{r.base_port}"
    return out


def _flag_tokens(r: NatRange) -> list[str]:
    out = []
    if r.random:
        out.append("--random")
    if r.random_fully:
        out.append("--random-fully")
    if r.persistent:
        out.append("--persistent")
    return out


def _call_nat(ctx: "EvalContext", req: NatRequest, name: str) -> Verdict:
    if ctx.nat_setup is None:
        raise RuntimeError(f"{name} target applied outside a NAT hook (ctx.nat_setup is None): "
                           "the caller must run the nat table through the NAT engine")
    return ctx.nat_setup(req)


class _NatTarget(TargetExt):
    terminal: ClassVar[bool] = True  # the first NAT target that fires ends the nat chain
    needs_conntrack: ClassVar[bool] = True
    valid_tables: ClassVar[frozenset[str] | None] = NAT_TABLES
    range_option: ClassVar[str] = ""  # "--to-destination", "--to-source" or "--to-ports"
    flag_options: ClassVar[tuple[str, ...]] = ()
    mandatory: ClassVar[bool] = False

    @classmethod
    def _parse_range(cls, opts: Sequence[Opt], pctx: ParseContext) -> NatRange:
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        lo = hi = None
        ports = None
        flags = {o.name for o in opts}
        for o in opts:
            if o.name == cls.range_option:
                if cls.range_option == "--to-ports":
                    ports = parse_ports(arg(o), pctx, cls.name)
                else:
                    lo, hi, ports = parse_to(arg(o), pctx, cls.name)
        if cls.mandatory and cls.range_option not in flags:
            raise ExtParseError(f"option '{cls.range_option}' must be specified")
        if ports is not None and ports.base is not None and cls.name != "DNAT":
            if cls.name == "REDIRECT":
                raise ExtParseError("shifted portmap ranges (port-port/base) are not "
                                    "supported")
            # iptables keeps the offset flag but drops the base (saved as /0)
            raise ExtUnsupported(cls.range_option, "a port offset (/base) is only modelled "
                                                   "for DNAT")
        return NatRange(
            min_addr=lo, max_addr=hi,
            min_port=ports.lo if ports else None, max_port=ports.hi if ports else None,
            random="--random" in flags, random_fully="--random-fully" in flags,
            persistent="--persistent" in flags,
            base_port=ports.base if ports else None)


@dataclass(frozen=True)
class _ToNat(_NatTarget):
    """DNAT and SNAT: `--to-xxx [ip[-ip]][:port[-port]]`."""

    range: NatRange
    family: int = 4

    mandatory: ClassVar[bool] = True
    manip: ClassVar[Manip]

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext):
        return cls(cls._parse_range(opts, pctx), pctx.family)

    def render(self) -> list[str]:
        text = _range_text(self.range, self.family)
        return ([self.range_option, text] if text else []) + _flag_tokens(self.range)

    def apply(self, ctx: "EvalContext") -> Verdict:
        return _call_nat(ctx, NatRequest(self.name, self.manip, self.range), self.name)


@register_target
@dataclass(frozen=True)
class DnatTarget(_ToNat):
    name: ClassVar[str] = "DNAT"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "OUTPUT"})
    range_option: ClassVar[str] = "--to-destination"
    manip: ClassVar[Manip] = Manip.DST
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--to-destination"), OptionSpec("--random", nargs=0),
        OptionSpec("--persistent", nargs=0))


@register_target
@dataclass(frozen=True)
class SnatTarget(_ToNat):
    name: ClassVar[str] = "SNAT"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"INPUT", "POSTROUTING"})
    range_option: ClassVar[str] = "--to-source"
    manip: ClassVar[Manip] = Manip.SRC
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--to-source"), OptionSpec("--random", nargs=0),
        OptionSpec("--random-fully", nargs=0), OptionSpec("--persistent", nargs=0))


@dataclass(frozen=True)
class _PortsNat(_NatTarget):
    """MASQUERADE and REDIRECT: `--to-ports port[-port]`; the address is chosen at run time."""

    range: NatRange = NatRange()

    range_option: ClassVar[str] = "--to-ports"
    manip: ClassVar[Manip]

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext):
        return cls(cls._parse_range(opts, pctx))

    def render(self) -> list[str]:
        text = _range_text(self.range, 4).lstrip(":")
        return (["--to-ports", text] if text else []) + _flag_tokens(self.range)

    def apply(self, ctx: "EvalContext") -> Verdict:
        return _call_nat(ctx, NatRequest(self.name, self.manip, self.range), self.name)


@register_target
@dataclass(frozen=True)
class MasqueradeTarget(_PortsNat):
    name: ClassVar[str] = "MASQUERADE"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"POSTROUTING"})
    manip: ClassVar[Manip] = Manip.SRC
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--to-ports"), OptionSpec("--random", nargs=0),
        OptionSpec("--random-fully", nargs=0))


@register_target
@dataclass(frozen=True)
class RedirectTarget(_PortsNat):
    name: ClassVar[str] = "REDIRECT"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "OUTPUT"})
    manip: ClassVar[Manip] = Manip.DST
    options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("--to-ports", aliases=("--to-port",)), OptionSpec("--random", nargs=0))


def parse_prefix(text: str, family: int, ext: str):
    """XTTYPE_HOSTMASK: `address[/len]` or `address/dotted-mask`; no mask is a host."""
    host, slash, mask = text.partition("/")
    addr = _addr(host, family)
    bits = addr.max_prefixlen
    if slash:
        got = strtoul_prefix(mask)
        if got is not None and got[1] == "" and got[0] <= addr.max_prefixlen:
            bits = got[0]
        else:
            try:
                dotted = ipaddress.ip_address(mask)
            except ValueError:
                dotted = None
            if dotted is None or dotted.version != family:
                raise ExtParseError(f"bad mask '{mask}' (expected a prefix length "
                                    f"0-{addr.max_prefixlen} or a dotted mask)")
            value = int(dotted)
            bits = bin(value).count("1")
            full = (1 << addr.max_prefixlen) - 1
            if value != (full << (addr.max_prefixlen - bits)) & full:
                raise ExtUnsupported("--to", f"a netmask with holes ({mask}) is not modelled")
    return ipaddress.ip_network(f"{addr}/{bits}", strict=False)


@register_target
@dataclass(frozen=True)
class NetmapTarget(_NatTarget):
    """1:1 prefix mapping: the host part is kept, the network part replaced. Destination
    in PREROUTING/OUTPUT, source in POSTROUTING/INPUT (xt_NETMAP.c)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network

    name: ClassVar[str] = "NETMAP"
    valid_hooks: ClassVar[frozenset[str] | None] = frozenset(
        {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"})
    options: ClassVar[tuple[OptionSpec, ...]] = (OptionSpec("--to"),)

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "NetmapTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        if not opts:
            raise ExtParseError("option '--to' must be specified")
        return cls(parse_prefix(arg(opts[0]), pctx.family, "--to"))

    def render(self) -> list[str]:
        return ["--to", f"{addr_text(self.prefix.network_address)}/{self.prefix.prefixlen}"]

    def apply(self, ctx: "EvalContext") -> Verdict:
        manip = Manip(NAT_MANIP_BY_HOOK[ctx.hook])
        rng = NatRange(self.prefix.network_address, self.prefix[-1])
        return _call_nat(ctx, NatRequest("NETMAP", manip, rng, netmap_prefix=self.prefix),
                         self.name)
