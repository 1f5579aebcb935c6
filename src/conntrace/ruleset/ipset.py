"""ipsets from `ipset save` text, and the kernel's membership test the `set` match uses.

Format (ipset save / ipset restore): `create NAME TYPE [options]`, `add NAME ENTRY [options]`,
one per line. Entries follow the set type's dimensions, comma separated: `1.2.3.4`,
`10.0.0.0/8`, `tcp:80` (a port without protocol is TCP), `icmp:echo-request` or `icmp:8/0`,
an interface (`physdev:` prefix for a bridge port), a MAC, or a set name (list:set).

Membership (net/netfilter/ipset/ip_set_hash_*.c, ip_set_bitmap_*.c, ip_set_list_set.c):
- the set's family must be the packet's (hash:mac, bitmap:port and list:set have none);
- the rule must give at least as many src/dst flags as the type has dimensions;
- hash:*net* types try prefixes from the longest; the first entry found decides, and a
  `nomatch` entry means "not in the set";
- ports carry their protocol: ICMP's "port" is type<<8|code, other protocols have port 0;
  bitmap:port counts only TCP and UDP ports;
- list:set asks its members in order.
Timeouts are kept as written; entries expire only when `test(..., now=)` says how many
seconds have passed since the save (the model has no other clock for ipsets).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .model import SourceRef

# ipset lib/icmp.c and lib/icmpv6.c name tables: (name, type, code), first prefix wins.
ICMP_NAMES: tuple[tuple[str, int, int], ...] = (
    ("echo-reply", 0, 0), ("pong", 0, 0), ("network-unreachable", 3, 0),
    ("host-unreachable", 3, 1), ("protocol-unreachable", 3, 2), ("port-unreachable", 3, 3),
    ("fragmentation-needed", 3, 4), ("source-route-failed", 3, 5), ("network-unknown", 3, 6),
    ("host-unknown", 3, 7), ("network-prohibited", 3, 9), ("host-prohibited", 3, 10),
    ("TOS-network-unreachable", 3, 11), ("TOS-host-unreachable", 3, 12),
    ("communication-prohibited", 3, 13), ("host-precedence-violation", 3, 14),
    ("precedence-cutoff", 3, 15), ("source-quench", 4, 0), ("network-redirect", 5, 0),
    ("host-redirect", 5, 1), ("TOS-network-redirect", 5, 2), ("TOS-host-redirect", 5, 3),
    ("echo-request", 8, 0), ("ping", 8, 0), ("router-advertisement", 9, 0),
    ("router-solicitation", 10, 0), ("ttl-zero-during-transit", 11, 0),
    ("ttl-zero-during-reassembly", 11, 1), ("ip-header-bad", 12, 0),
    ("required-option-missing", 12, 1), ("timestamp-request", 13, 0),
    ("timestamp-reply", 14, 0), ("address-mask-request", 17, 0),
    ("address-mask-reply", 18, 0),
)
ICMPV6_NAMES: tuple[tuple[str, int, int], ...] = (
    ("no-route", 1, 0), ("communication-prohibited", 1, 1), ("address-unreachable", 1, 3),
    ("port-unreachable", 1, 4), ("packet-too-big", 2, 0), ("ttl-zero-during-transit", 3, 0),
    ("ttl-zero-during-reassembly", 3, 1), ("bad-header", 4, 0),
    ("unknown-header-type", 4, 1), ("unknown-option", 4, 2), ("echo-request", 128, 0),
    ("ping", 128, 0), ("echo-reply", 129, 0), ("pong", 129, 0),
    ("router-solicitation", 133, 0), ("router-advertisement", 134, 0),
    ("neighbour-solicitation", 135, 0), ("neigbour-solicitation", 135, 0),
    ("neighbour-advertisement", 136, 0), ("neigbour-advertisement", 136, 0),
    ("redirect", 137, 0),
)
# Protocols with ports, as ipset names them (ip_set_getport.c)
_PORT_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}
_ICMP_PROTOS = {"icmp": 1, "icmpv6": 58}

# Dimension kinds of each supported type, in order
SET_TYPES: dict[str, tuple[str, ...]] = {
    "hash:ip": ("ip",),
    "hash:net": ("net",),
    "hash:ip,port": ("ip", "port"),
    "hash:net,port": ("net", "port"),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "hash:net,iface": ("net", "iface"),
    "hash:mac": ("mac",),
    "bitmap:port": ("port",),
    "bitmap:ip": ("ip",),
    "list:set": ("set",),
}
# Types whose entries may carry `nomatch` (the hash types with a net dimension)
_NOMATCH_TYPES = {t for t, dims in SET_TYPES.items() if "net" in dims}
_FAMILYLESS = {"hash:mac", "bitmap:port", "list:set"}
_MAX_EXPAND = 65536  # range/CIDR expansion limit for one `add`
# create options that take a value; the rest are flags (counters, comment, skbinfo...)
_CREATE_VALUE_OPTS = {"family", "hashsize", "maxelem", "timeout", "range", "netmask",
                      "size", "bucketsize", "initval", "markmask"}
_ADD_VALUE_OPTS = {"timeout", "packets", "bytes", "comment", "skbmark", "skbprio",
                   "skbqueue"}


@dataclass
class IpSetEntry:
    """One stored element. `key` holds per dimension: an IP network (ip and net dims; an
    ip is a /32 or /128, or /netmask), (proto, port), an interface name ("physdev:" kept as
    a prefix), a MAC in lower case, or a set name."""

    key: tuple
    nomatch: bool = False
    timeout: int | None = None
    comment: str | None = None
    source: SourceRef | None = None


@dataclass
class IpSet:
    name: str
    type: str
    family: int | None  # 4, 6, or None for family-less types
    options: dict[str, str] = field(default_factory=dict)
    entries: list[IpSetEntry] = field(default_factory=list)
    source: SourceRef | None = None
    # list:set resolves members through the sets loaded with it
    registry: dict[str, "IpSet"] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return SET_TYPES[self.type]

    @property
    def dimension(self) -> int:
        return len(self.dims)

    @property
    def timeout(self) -> int | None:
        t = self.options.get("timeout")
        return int(t) if t is not None else None

    @property
    def netmask(self) -> int | None:
        m = self.options.get("netmask")
        return int(m) if m is not None else None

    def test(self, values: tuple, *, now: float | None = None, return_nomatch: bool = False,
             _depth: int = 0) -> bool:
        """Whether the packet values are in the set (the `set` match).

        `values`: one per --match-set flag, in order: an address (str or ipaddress) for ip/
        net dims, (proto, port) or "tcp:80" for port dims, an interface name for iface dims,
        a MAC string for mac dims. Values beyond the set's dimension are ignored; fewer
        than its dimension never match (ip_set_test). `now`: seconds since the save, to
        expire entries with a timeout; None keeps every entry. `return_nomatch` (xt_set
        --return-nomatch): for types with nomatch entries the answer is reversed, a nomatch
        entry matches and a plain one does not."""
        if self.type == "list:set":
            if _depth > 8:
                return False
            for e in self.entries:
                member = self.registry.get(e.key[0])
                if member is not None and member.test(values, now=now,
                                                      return_nomatch=return_nomatch,
                                                      _depth=_depth + 1):
                    return True
            return False
        hit = self.lookup(values, now=now)
        if hit is None:
            return False
        if return_nomatch and self.type in _NOMATCH_TYPES:
            return hit.nomatch
        return not hit.nomatch

    def lookup(self, values: tuple, *, now: float | None = None) -> "IpSetEntry | None":
        """The entry that decides membership (possibly a nomatch one), or None. Not for
        list:set, whose answer comes from its members."""
        if self.type == "list:set" or len(values) < self.dimension:
            return None
        try:
            vals = tuple(_packet_value(kind, v) for kind, v in zip(self.dims, values))
        except ValueError:
            return None
        for kind, v in zip(self.dims, vals):
            if kind in ("ip", "net") and self.family is not None and v.version != self.family:
                return None
        live = [e for e in self.entries if now is None or not e.timeout or now < e.timeout]
        if self.type == "bitmap:port":
            # ip_set_get_ip_port (ip_set_bitmap_port.c): only TCP and UDP ports count
            if vals[0][0] not in (6, 17):
                return None
            return next((e for e in live if e.key[0][1] == vals[0][1]), None)
        # the longest prefix decides; ip dims are exact (/32, or /netmask when set)
        best: IpSetEntry | None = None
        best_len = -1
        for e in live:
            if not _entry_matches(self.dims, e.key, vals):
                continue
            plen = sum(k.prefixlen for kind, k in zip(self.dims, e.key) if kind == "net")
            if plen > best_len:
                best, best_len = e, plen
        return best


def _entry_matches(dims: tuple[str, ...], key: tuple, vals: tuple) -> bool:
    for kind, k, v in zip(dims, key, vals):
        if kind in ("ip", "net"):
            if v not in k:
                return False
        elif kind == "port":
            if k != v:
                return False
        elif kind == "iface":
            if k != v:
                return False
        elif kind == "mac":
            if k != v:
                return False
    return True


def _packet_value(kind: str, v: Any) -> Any:
    if kind in ("ip", "net"):
        return ipaddress.ip_address(v) if not isinstance(
            v, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else v
    if kind == "port":
        if isinstance(v, tuple):
            return (int(v[0]), int(v[1]))
        if isinstance(v, str):
            return _parse_port(v, 4)
        raise ValueError("a port value is (proto, port) or 'proto:port'")
    if kind == "mac":
        return str(v).lower()
    return str(v)


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

def _icmp_code(text: str, family: int) -> int:
    if "/" in text:
        t, c = text.split("/", 1)
        if not (t.isdigit() and c.isdigit()) or int(t) > 255 or int(c) > 255:
            raise ValueError(f"invalid ICMP type/code '{text}'")
        return (int(t) << 8) | int(c)
    table = ICMP_NAMES if family == 4 else ICMPV6_NAMES
    for name, t, c in table:
        if name.startswith(text) and text:
            return (t << 8) | c
    raise ValueError(f"unknown ICMP type '{text}'")


def _parse_port(text: str, family: int) -> tuple[int, int]:
    """`[proto:]port`: a bare port is TCP; icmp/icmpv6 take a type name or type/code."""
    from .iptables_save import parse_protocol
    if ":" in text:
        pname, port = text.split(":", 1)
        pname = pname.lower()
        if pname in _ICMP_PROTOS:
            return (_ICMP_PROTOS[pname], _icmp_code(port, 4 if pname == "icmp" else 6))
        proto = _PORT_PROTOS.get(pname)
        if proto is None:
            proto = parse_protocol(pname)
            if proto is None:
                raise ValueError(f"unknown protocol '{pname}'")
            if not port.isdigit() or int(port) != 0:
                raise ValueError(f"protocol {pname} has no ports: write {pname}:0")
            return (proto, 0)
    else:
        proto, port = 6, text
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid port '{port}'")
    return (proto, int(port))


def _expand_ports(text: str, family: int) -> list[tuple[int, int]]:
    m = re.fullmatch(r"(?:([^:]+):)?(\d+)-(\d+)", text)
    if m is None:
        return [_parse_port(text, family)]
    head = f"{m.group(1)}:{m.group(2)}" if m.group(1) else m.group(2)
    proto, lo = _parse_port(head, family)
    hi = int(m.group(3))
    if hi < lo or hi > 65535:
        raise ValueError(f"invalid port range '{text}'")
    return [(proto, p) for p in range(lo, hi + 1)]


def _parse_net(text: str, family: int, host_only: bool, netmask: int | None) -> list:
    """An ip dim (host addresses; a CIDR or a-b range expands) or a net dim (a CIDR; a
    range becomes the CIDRs covering it)."""
    cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    bits = 32 if family == 4 else 128
    try:
        if "-" in text:
            lo_s, hi_s = text.split("-", 1)
            lo, hi = cls(lo_s), cls(hi_s)
            if hi < lo:
                raise ValueError
            nets = list(ipaddress.summarize_address_range(lo, hi))
        else:
            nets = [ipaddress.ip_network(text, strict=False)]
            if nets[0].version != family:
                raise ValueError
    except ValueError:
        raise ValueError(f"'{text}' is not an IPv{family} address, network or range") from None
    if not host_only:
        return nets
    plen = netmask if netmask is not None else bits
    out: list = []
    seen = set()
    for n in nets:
        if n.prefixlen >= plen:
            cand = [n.supernet(new_prefix=plen)]
        else:
            if 2 ** (plen - n.prefixlen) > _MAX_EXPAND:
                raise ValueError(f"'{text}' expands to too many elements")
            cand = list(n.subnets(new_prefix=plen))
        for c in cand:
            if c not in seen:
                seen.add(c)
                out.append(c)
    return out


def _parse_entry(s: IpSet, text: str) -> list[tuple]:
    """All keys one `add` line stands for (ranges expanded)."""
    if s.type == "list:set":
        return [(text,)]
    parts = text.split(",")
    if len(parts) != s.dimension:
        raise ValueError(f"{s.type} entries have {s.dimension} part(s), got '{text}'")
    fam = s.family or 4
    per_dim: list[list] = []
    for kind, part in zip(s.dims, parts):
        if kind == "ip":
            if s.type == "bitmap:ip":
                vals = _parse_net(part, 4, True, s.netmask)
                lo, hi = _bitmap_range(s)
                if any(v.network_address < lo or v.broadcast_address > hi for v in vals):
                    raise ValueError(f"'{part}' is outside the range of set {s.name}")
            else:
                vals = _parse_net(part, fam, True, s.netmask)
        elif kind == "net":
            vals = _parse_net(part, fam, False, None)
        elif kind == "port":
            vals = _expand_ports(part, fam)
            if s.type == "bitmap:port":
                lo, hi = _bitmap_port_range(s)
                if any(not lo <= p <= hi for _, p in vals):
                    raise ValueError(f"port '{part}' is outside the range of set {s.name}")
        elif kind == "iface":
            if not part or len(part.removeprefix("physdev:")) >= 16:
                raise ValueError(f"invalid interface name '{part}'")
            vals = [part]
        elif kind == "mac":
            hx = part.lower().split(":")
            if len(hx) != 6 or any(len(h) != 2 or any(c not in "0123456789abcdef" for c in h)
                                   for h in hx):
                raise ValueError(f"invalid MAC address '{part}'")
            vals = [part.lower()]
        else:  # pragma: no cover
            raise ValueError(kind)
        per_dim.append(vals)
    keys: list[tuple] = [()]
    for vals in per_dim:
        keys = [k + (v,) for k in keys for v in vals]
        if len(keys) > _MAX_EXPAND:
            raise ValueError(f"'{text}' expands to too many elements")
    return keys


def _bitmap_range(s: IpSet) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    r = s.options["range"]
    if "-" in r:
        a, b = r.split("-", 1)
        return ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)
    n = ipaddress.IPv4Network(r, strict=False)
    return n.network_address, n.broadcast_address


def _bitmap_port_range(s: IpSet) -> tuple[int, int]:
    a, _, b = s.options["range"].partition("-")
    return int(a), int(b or a)


def _options(words: list[str], value_opts: set[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-exist", "-!"):
            i += 1
            continue
        if w in value_opts:
            if i + 1 >= len(words):
                raise ValueError(f"{what} option '{w}' needs a value")
            out[w] = words[i + 1]
            i += 2
        else:
            out[w] = ""
            i += 1
    return out


def load_ipset_text(text: str, file: str = "<ipset>") -> dict[str, IpSet]:
    """Parse `ipset save` output (also `ipset restore` input with create/add/del)."""
    from .iptables_save import tokenize
    sets: dict[str, IpSet] = {}
    pending_lists: list[tuple[IpSet, str, int]] = []
    for no, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r").strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        words = tokenize(line, file, no)
        cmd = words[0]

        def err(msg: str) -> InputError:
            return InputError(msg, file, no)

        if cmd in ("create", "n", "-N", "--create"):
            if len(words) < 3:
                raise err("expected 'create NAME TYPE [options]'")
            name, typ = words[1], words[2]
            if len(name) >= 32:
                raise err(f"set name '{name}' is too long (31 characters at most)")
            if typ not in SET_TYPES:
                raise err(f"set type '{typ}' is not supported; expected one of "
                          f"{', '.join(SET_TYPES)}")
            if name in sets:
                raise err(f"set {name} already exists")
            try:
                opts = _options(words[3:], _CREATE_VALUE_OPTS, "create")
            except ValueError as e:
                raise err(str(e)) from None
            fam_s = opts.get("family", "inet")
            if fam_s not in ("inet", "inet6"):
                raise err(f"family '{fam_s}': expected inet or inet6")
            family = None if typ in _FAMILYLESS else (4 if fam_s == "inet" else 6)
            if typ == "bitmap:ip" and family == 6:
                raise err("bitmap:ip is IPv4 only")
            if typ.startswith("bitmap:") and "range" not in opts:
                raise err(f"{typ} needs 'range'")
            for key in ("timeout", "hashsize", "maxelem", "size", "netmask"):
                if key in opts and not opts[key].isdigit():
                    raise err(f"option '{key}' needs a number, got '{opts[key]}'")
            try:
                if typ == "bitmap:ip":
                    lo, hi = _bitmap_range(IpSet(name, typ, 4, opts))
                    if hi < lo:
                        raise ValueError
                elif typ == "bitmap:port":
                    lo_p, hi_p = _bitmap_port_range(IpSet(name, typ, None, opts))
                    if hi_p < lo_p or hi_p > 65535:
                        raise ValueError
            except ValueError:
                raise err(f"invalid range '{opts['range']}' for {typ}") from None
            sets[name] = IpSet(name, typ, family, opts, source=SourceRef(file, no, line))
        elif cmd in ("add", "a", "-A", "--add", "del", "d", "-D", "--del"):
            if len(words) < 3:
                raise err(f"expected '{cmd} NAME ENTRY [options]'")
            s = sets.get(words[1])
            if s is None:
                raise err(f"set {words[1]} does not exist (create it first)")
            try:
                opts = _options(words[3:], _ADD_VALUE_OPTS, "add")
                keys = _parse_entry(s, words[2])
            except ValueError as e:
                raise err(f"{s.name}: {e}") from None
            if "nomatch" in opts and s.type not in _NOMATCH_TYPES:
                raise err(f"{s.name}: nomatch is only for types with a net part, not {s.type}")
            timeout = opts.get("timeout")
            if timeout is not None and not timeout.isdigit():
                raise err(f"{s.name}: timeout needs a number, got '{timeout}'")
            if timeout is not None and s.timeout is None:
                raise err(f"{s.name}: the set was created without timeout support")
            if cmd in ("del", "d", "-D", "--del"):
                s.entries = [e for e in s.entries if e.key not in keys]
                continue
            existing = {e.key for e in s.entries}
            for k in keys:
                if k in existing:
                    continue
                s.entries.append(IpSetEntry(
                    k, nomatch="nomatch" in opts,
                    timeout=int(timeout) if timeout is not None else s.timeout,
                    comment=opts.get("comment"), source=SourceRef(file, no, line)))
            if s.type == "list:set":
                pending_lists.append((s, words[2], no))
        else:
            raise InputError(f"unknown ipset command '{cmd}': expected create or add", file, no)
    for s, member, no in pending_lists:
        if member not in sets:
            raise InputError(f"list:set {s.name}: member set {member} does not exist", file, no)
        if sets[member].type == "list:set":
            raise InputError(f"list:set {s.name}: a list:set cannot contain another list:set "
                             f"({member})", file, no)
    for s in sets.values():
        s.registry = sets
    return sets


def packet_values(pkt: Any, flags: tuple[str, ...], dims: tuple[str, ...]) -> tuple | None:
    """The values the kernel extracts for `--match-set NAME flags` (ip_set_get_ip4_port and
    friends): src/dst address, port with protocol (ICMP: type<<8|code; a protocol without
    ports: 0), in/out interface, source/destination MAC. None when a needed part is
    missing (a non-first fragment has no ports), which never matches."""
    out: list[Any] = []
    for kind, flag in zip(dims, flags):
        src = flag == "src"
        if kind in ("ip", "net"):
            out.append(pkt.src if src else pkt.dst)
        elif kind == "port":
            if pkt.is_fragment:
                return None
            icmp = pkt.icmp
            if icmp is not None:
                out.append((pkt.proto, (icmp.type << 8) | icmp.code))
            elif pkt.sport is not None:
                out.append((pkt.proto, pkt.sport if src else pkt.dport))
            else:
                out.append((pkt.proto, 0))
        elif kind == "iface":
            dev = pkt.meta.in_iface if src else pkt.meta.out_iface
            if dev is None:
                return None
            out.append(dev)
        elif kind == "mac":
            mac = pkt.meta.src_mac if src else pkt.meta.dst_mac
            if mac is None:
                return None
            out.append(mac)
    return tuple(out)


def match_packet(ipset: IpSet, pkt: Any, flags: tuple[str, ...], *,
                 now: float | None = None, return_nomatch: bool = False,
                 _depth: int = 0) -> bool:
    """`-m set --match-set NAME flags` for one packet; a list:set asks its members in order
    with the same flags. `now`: seconds since the sets were saved (see IpSet.test)."""
    if ipset.type == "list:set":
        if _depth > 8:
            return False
        return any(match_packet(m, pkt, flags, now=now, return_nomatch=return_nomatch,
                                _depth=_depth + 1)
                   for m in (ipset.registry.get(e.key[0]) for e in ipset.entries)
                   if m is not None)
    if len(flags) < ipset.dimension:
        return False
    if ipset.family is not None and pkt.family != ipset.family:
        return False
    vals = packet_values(pkt, flags, ipset.dims)
    return vals is not None and ipset.test(vals, now=now, return_nomatch=return_nomatch)
