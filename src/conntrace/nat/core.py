"""NAT: bindings on the first packet, null bindings, the unique-tuple search, and rewriting
packets in both directions (net/netfilter/nf_nat_core.c, nf_nat_proto.c, nf_nat_masquerade.c,
nf_nat_redirect.c, xt_NETMAP.c). Conntrack does not know NAT exists: NAT keeps its own
state in `ct.nat` and in the bysource index, and hooks the table's free path.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..conntrack.core import allow_clash
from ..conntrack.defs import CtInfo, Dir, Status, TcpState
from ..conntrack.entry import ConnTuple, ConntrackEntry
from ..netfilter.hooks import NAT_MANIP_BY_HOOK, Hook
from ..netfilter.verdict import ACCEPT, DROP, Verdict
from ..observe.trace import NatStep
from ..packet import IPPROTO_ICMP, IPPROTO_ICMPV6, IcmpHeader, Packet, TcpHeader, UdpHeader
from .jhash import jhash2_addr, reciprocal_scale
from .range import Manip, NatRange, NatRequest

if TYPE_CHECKING:
    from ..conntrack.core import Conntrack
    from ..host.host import Host
    from ..observe.trace import PacketTrace

NF_NAT_MAX_ATTEMPTS = 128
NF_NAT_HARDER_THRESH = NF_NAT_MAX_ATTEMPTS // 4
_PORT_PROTOS = frozenset({6, 17, 136, 132, 33})


@dataclass
class NatExt:
    """struct nf_conn_nat: the output ifindex MASQUERADE used (0: none)."""

    masq_index: int = 0


def _manip_of(hook: Hook) -> Manip:
    return Manip.SRC if NAT_MANIP_BY_HOOK[hook] == "src" else Manip.DST


class NatEngine:
    def __init__(self, host: "Host", conntrack: "Conntrack") -> None:
        self.host = host
        self.ct = conntrack
        # bysource: original (zone, proto, src, sport) -> entries that have a SRC binding
        self.bysource: dict[tuple, list[ConntrackEntry]] = {}
        conntrack.table.free_hooks.append(self._on_free)
        self.now = 0.0
        self.cpu = 0

    # -- bysource --------------------------------------------------------------------------
    @staticmethod
    def _src_key(ct: ConntrackEntry) -> tuple:
        t = ct.orig_tuple
        return (ct.zone, t.proto, t.src, t.sport)

    def _on_free(self, ct: ConntrackEntry) -> None:
        if ct.status & Status.SRC_NAT_DONE:
            lst = self.bysource.get(self._src_key(ct))
            if lst and ct in lst:
                lst.remove(ct)
                if not lst:
                    del self.bysource[self._src_key(ct)]

    # -- the hook --------------------------------------------------------------------------
    def nat_hook(self, pkt: Packet, hook: Hook, now: float, cpu: int,
                 trace: "PacketTrace | None",
                 run_chain: Callable[[Callable[[NatRequest], Verdict]], Verdict]) -> Verdict:
        """nf_nat_inet_fn. `run_chain(setup)` runs the nat table's chain for this hook with
        NAT targets calling `setup(request)`; it returns the table verdict."""
        self.now, self.cpu = now, cpu
        ct, ctinfo = pkt.meta.ct, pkt.meta.ctinfo
        manip = _manip_of(hook)
        if ct is None:
            if trace is not None:
                trace.add(NatStep(hook.value, manip.value, "none",
                                  "no conntrack (untracked, invalid or conntrack off): never NATed"))
            return ACCEPT
        ctinfo = CtInfo(ctinfo)
        if ct.nat is None:
            if ct.confirmed:
                # "NAT module was loaded late": a confirmed entry cannot get NAT any more
                if trace is not None:
                    trace.add(NatStep(hook.value, manip.value, "none",
                                      f"entry #{ct.id} was confirmed before NAT existed: no NAT"))
                return ACCEPT
            ct.nat = NatExt()
        if ctinfo in (CtInfo.RELATED, CtInfo.RELATED_REPLY) and pkt.proto == IPPROTO_ICMP \
                and pkt.icmp is not None and pkt.icmp.is_error:
            before = pkt.describe()
            if not self.icmp_reply_translation(pkt, ct, ctinfo, hook):
                if trace is not None:
                    trace.add(NatStep(hook.value, manip.value, "drop", "ICMP error translation failed"))
                return DROP
            if trace is not None and pkt.describe() != before:
                trace.add(NatStep(hook.value, manip.value, "rewrite",
                                  "ICMP error: outer and embedded headers translated",
                                  before, pkt.describe()))
            return ACCEPT
        done_bit = Status.SRC_NAT_DONE if manip is Manip.SRC else Status.DST_NAT_DONE
        if ctinfo in (CtInfo.NEW, CtInfo.RELATED, CtInfo.RELATED_REPLY):
            if not ct.status & done_bit:
                if trace is not None:
                    trace.add(NatStep(hook.value, manip.value, "chain",
                                      f"first packet without a {manip.value.upper()} binding: "
                                      "the nat table is consulted"))

                def setup(req: NatRequest) -> Verdict:
                    return self.target_setup(pkt, ct, req, hook, trace)

                verdict = run_chain(setup)
                if verdict is not ACCEPT and verdict.kind.value != "ACCEPT":
                    return verdict
                if not ct.status & done_bit:
                    v = self.null_binding(ct, manip, trace, hook)
                    if v is not ACCEPT:
                        return v
            elif self._oif_changed(hook, ctinfo, ct, pkt):
                return self._oif_kill(ct, hook, trace)
        elif self._oif_changed(hook, ctinfo, ct, pkt):
            return self._oif_kill(ct, hook, trace)
        return self.nat_packet(pkt, ct, ctinfo, hook, trace)

    def _oif_changed(self, hook: Hook, ctinfo: CtInfo, ct: ConntrackEntry, pkt: Packet) -> bool:
        nat = ct.nat
        if not nat or not nat.masq_index or hook is not Hook.POSTROUTING:
            return False
        if ctinfo.direction is not Dir.ORIGINAL:
            return False
        out = self.host.interfaces.get(pkt.meta.out_iface or "")
        return out is not None and out.ifindex != nat.masq_index

    def _oif_kill(self, ct, hook, trace) -> Verdict:
        self.ct.kill(ct, self.now, self.cpu)
        if trace is not None:
            trace.add(NatStep(hook.value, "src", "drop",
                              "MASQUERADEd flow now leaves by another interface: entry killed, "
                              "packet dropped (nf_nat_oif_changed)"))
        return DROP

    # -- targets ---------------------------------------------------------------------------
    def target_setup(self, pkt: Packet, ct: ConntrackEntry, req: NatRequest, hook: Hook,
                     trace) -> Verdict:
        """What DNAT/SNAT/MASQUERADE/REDIRECT/NETMAP do before nf_nat_setup_info."""
        rng = req.range
        manip = req.manip
        if req.kind == "MASQUERADE":
            if ct.orig_tuple.src == ipaddress.ip_address("0.0.0.0"):
                return ACCEPT
            out = pkt.meta.out_iface
            route = self.host.devices.lookup(pkt.dst)
            nexthop = route.gateway or pkt.dst
            newsrc = self.host.devices.select_source(out, nexthop)
            if newsrc is None:
                if trace is not None:
                    trace.add(NatStep(hook.value, "src", "drop", f"{out} ate my IP address"))
                return DROP
            dev = self.host.interfaces.get(out or "")
            if ct.nat is not None and dev is not None:
                ct.nat.masq_index = dev.ifindex
            rng = NatRange(newsrc, newsrc, rng.min_port, rng.max_port, rng.random,
                           rng.random_fully, rng.persistent)
        elif req.kind == "REDIRECT":
            if hook is Hook.OUTPUT:
                newdst = ipaddress.ip_address("127.0.0.1")
            else:
                dev = self.host.interfaces.get(pkt.meta.in_iface or "")
                newdst = dev.primary_v4 if dev is not None else None
                if newdst is None:
                    if trace is not None:
                        trace.add(NatStep(hook.value, "dst", "drop",
                                          "REDIRECT: the input interface has no IPv4 address"))
                    return DROP
            rng = NatRange(newdst, newdst, rng.min_port, rng.max_port, rng.random,
                           rng.random_fully, rng.persistent)
        elif req.kind == "NETMAP":
            net = req.netmap_prefix
            mask = int(net.netmask)
            base = pkt.dst if manip is Manip.DST else pkt.src
            new_ip = ipaddress.ip_address((int(base) & ~mask & 0xFFFFFFFF) | (int(net.network_address) & mask))
            rng = NatRange(new_ip, new_ip, rng.min_port, rng.max_port, rng.random,
                           rng.random_fully, rng.persistent)
        return self.setup_info(ct, rng, manip, trace, hook, req.kind)

    # -- nf_nat_setup_info -----------------------------------------------------------------
    def setup_info(self, ct: ConntrackEntry, rng: NatRange, manip: Manip, trace=None,
                   hook: Hook | None = None, why: str = "") -> Verdict:
        if ct.confirmed:
            return ACCEPT
        done_bit = Status.SRC_NAT_DONE if manip is Manip.SRC else Status.DST_NAT_DONE
        if ct.status & done_bit:
            return DROP
        curr = ct.reply_tuple.invert()
        new = self.get_unique_tuple(curr, rng, ct, manip)
        if new != curr:
            ct.reply_tuple = new.invert()
            ct.status |= Status.SRC_NAT if manip is Manip.SRC else Status.DST_NAT
        if manip is Manip.SRC:
            self.bysource.setdefault(self._src_key(ct), []).append(ct)
        ct.status |= done_bit
        if trace is not None and hook is not None:
            label = "null-binding" if why == "null" else "binding"
            side = "source" if manip is Manip.SRC else "destination"
            if new == curr:
                text = f"{why or 'NAT'}: {side} kept" if why != "null" else \
                    f"no NAT rule: null {side} binding, tuple kept"
            else:
                old_ep = _endpoint(curr, manip)
                new_ep = _endpoint(new, manip)
                text = (f"{why}: {side} {old_ep} -> {new_ep}" if why != "null" else
                        f"no NAT rule, but the tuple was taken: null binding remapped {side} "
                        f"{old_ep} -> {new_ep}")
            trace.add(NatStep(hook.value, manip.value, label, text, str(curr), str(new)))
        return ACCEPT

    def null_binding(self, ct: ConntrackEntry, manip: Manip, trace=None, hook=None) -> Verdict:
        """__nf_nat_alloc_null_binding: a range of just the current address, no ports."""
        ip = ct.reply_tuple.dst if manip is Manip.SRC else ct.reply_tuple.src
        return self.setup_info(ct, NatRange(ip, ip), manip, trace, hook, "null")

    # -- the unique tuple search -----------------------------------------------------------
    def _taken(self, tup: ConnTuple, ignored: ConntrackEntry) -> bool:
        """nf_conntrack_tuple_taken."""
        hit = self.ct.table.find(ignored.zone, tup, self.now)
        if hit is None or hit[0] is ignored:
            return False
        if hit[0].orig_tuple == ignored.orig_tuple:
            return False  # same flow on two CPUs: left to clash resolution at confirm
        self.ct.table.stat(self.cpu, "found")
        return True

    def _used(self, tup: ConnTuple, ct: ConntrackEntry) -> bool:
        inv = tup.invert()
        return inv is not None and self._taken(inv, ct)

    def _used_new(self, tup: ConnTuple, ignored: ConntrackEntry) -> bool:
        """nf_nat_used_tuple_new: the reverse-direction race exception for clash protocols."""
        if not self._used(tup, ignored):
            return False
        if not allow_clash(ignored.proto):
            return True
        hit = self.ct.table.peek(ignored.zone, tup)
        if hit is None:
            inv = tup.invert()
            hit = self.ct.table.peek(ignored.zone, inv) if inv is not None else None
            if hit is None:
                return False
        other = hit[0]
        if other.status & (Status.SRC_NAT | Status.DST_NAT | Status.SEQ_ADJUST):
            return True
        return other.orig_tuple != ignored.reply_tuple

    def _used_harder(self, tup: ConnTuple, ct: ConntrackEntry, attempts_left: int) -> bool:
        """nf_nat_used_tuple_harder: in the last attempts, a new TCP SYN may evict a
        SNATed entry in TIME_WAIT (or later) whose sequence numbers it has passed."""
        reply = tup.invert()
        tcp_state = getattr(ct.proto_state, "state", None)
        if (attempts_left > NF_NAT_HARDER_THRESH or tup.proto != 6
                or tcp_state != TcpState.SYN_SENT):
            return self._taken(reply, ct)
        hit = self.ct.table.find(ct.zone, reply, self.now)
        if hit is None:
            return False
        old, d = hit
        if d is Dir.ORIGINAL or old is ct:
            return True
        if not _may_kill(old):
            return True
        if not _seq_has_advanced(old, ct):
            return True
        return not self.ct.kill(old, self.now, self.cpu)

    def get_unique_tuple(self, orig: ConnTuple, rng: NatRange, ct: ConntrackEntry,
                         manip: Manip) -> ConnTuple:
        random_all = rng.random or rng.random_fully
        if manip is Manip.SRC and not random_all:
            if _in_range(orig, rng):
                if not self._used_new(orig, ct):
                    return orig
            else:
                found = self._find_appropriate_src(ct, orig, rng)
                if found is not None and not self._used(found, ct):
                    return found
        tup = self._find_best_ips(ct, orig, rng, manip)
        if not random_all:
            if rng.proto_specified:
                if (rng.base_port is None and _l4_in_range(tup, manip, rng)
                        and (rng.min_port == rng.max_port or not self._used(tup, ct))):
                    return tup
            elif not self._used(tup, ct):
                return tup
        return self._l4_unique_tuple(tup, rng, manip, ct)

    def _find_appropriate_src(self, ct, orig: ConnTuple, rng: NatRange) -> ConnTuple | None:
        key = (ct.zone, orig.proto, orig.src, orig.sport)
        for other in reversed(self.bysource.get(key, [])):  # hlist_add_head: newest first
            if other is ct:
                continue
            mapped = other.reply_tuple.invert()
            if mapped is None:
                continue
            result = ConnTuple(mapped.src, orig.dst, orig.proto, mapped.sport, orig.dport)
            if _in_range(result, rng):
                return result
        return None

    def _find_best_ips(self, ct, tup: ConnTuple, rng: NatRange, manip: Manip) -> ConnTuple:
        if not rng.map_ips:
            return tup
        if rng.min_addr == rng.max_addr:
            chosen = rng.min_addr
        elif tup.src.version == 4:
            seed = 0 if rng.persistent else (_le32(tup.dst) ^ ct.zone)
            j = jhash2_addr(tup.src, seed)
            lo, hi = int(rng.min_addr), int(rng.max_addr)
            chosen = ipaddress.ip_address(lo + reciprocal_scale(j, hi - lo + 1))
        else:
            lo, hi = int(rng.min_addr), int(rng.max_addr)
            j = jhash2_addr(tup.src, 0 if rng.persistent else ct.zone)
            chosen = ipaddress.ip_address(lo + reciprocal_scale(j, min(hi - lo + 1, 2**32 - 1)))
        return tup.with_src(chosen) if manip is Manip.SRC else tup.with_dst(chosen)

    def _l4_unique_tuple(self, tup: ConnTuple, rng: NatRange, manip: Manip,
                         ct: ConntrackEntry) -> ConnTuple:
        """nf_nat_l4proto_unique_tuple."""
        rand = self.host.rng
        icmp = tup.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6)
        if icmp:
            key_is_src = True
            if rng.proto_specified:
                lo, size = rng.min_port, rng.max_port - rng.min_port + 1
            else:
                lo, size = 0, 65536
        elif tup.proto in _PORT_PROTOS:
            key_is_src = manip is Manip.SRC
            if not rng.proto_specified:
                if manip is Manip.DST:
                    return tup  # a destination port is never changed without a range
                port = tup.sport
                if port < 1024:
                    lo, size = (1, 511) if port < 512 else (600, 1023 - 600 + 1)
                else:
                    lo, size = 1024, 65535 - 1024 + 1
            else:
                a, b = sorted((rng.min_port, rng.max_port))
                lo, size = a, b - a + 1
        else:
            return tup
        cur = tup.sport if key_is_src else tup.dport
        if rng.base_port is not None:
            off = (cur - rng.base_port) & 0xFFFF
        elif rng.random or rng.random_fully or manip is not Manip.DST:
            off = rand.getrandbits(16)
        else:
            off = 0
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        while True:
            for i in range(attempts):
                port = lo + (off % size)
                off = (off + 1) & 0xFFFF
                cand = ConnTuple(tup.src, tup.dst, tup.proto, port, tup.dport) if key_is_src \
                    else ConnTuple(tup.src, tup.dst, tup.proto, tup.sport, port)
                if not self._used_harder(cand, ct, attempts - i):
                    return cand
            if attempts >= size or attempts < 16:
                return cand  # every probe was taken: confirm will drop or resolve it
            attempts //= 2
            off = rand.getrandbits(16)

    # -- rewriting packets -----------------------------------------------------------------
    def nat_packet(self, pkt: Packet, ct: ConntrackEntry, ctinfo: CtInfo, hook: Hook,
                   trace) -> Verdict:
        """nf_nat_packet: rewrite from the entry's tuples in either direction."""
        manip = _manip_of(hook)
        d = ctinfo.direction
        bit = Status.SRC_NAT if manip is Manip.SRC else Status.DST_NAT
        if d is Dir.REPLY:
            bit = Status.DST_NAT if bit is Status.SRC_NAT else Status.SRC_NAT
        if not ct.status & bit:
            return ACCEPT
        target = ct.tuple(d.flip()).invert()
        before = pkt.describe()
        _manip_pkt(pkt, target, manip)
        if trace is not None and pkt.describe() != before:
            what = "source" if manip is Manip.SRC else "destination"
            why = "as bound on the first packet" if d is Dir.ORIGINAL else "un-NAT of a reply"
            trace.add(NatStep(hook.value, manip.value, "rewrite", f"{what} rewritten {why}",
                              before, pkt.describe()))
        return ACCEPT

    def icmp_reply_translation(self, pkt: Packet, ct: ConntrackEntry, ctinfo: CtInfo,
                               hook: Hook) -> bool:
        """nf_nat_icmp_reply_translation: embedded header first, then the outer one."""
        icmp = pkt.icmp
        manip = _manip_of(hook)
        d = ctinfo.direction
        if icmp.type == 5 and ct.status & (Status.SRC_NAT | Status.DST_NAT):
            return False  # redirects of NATed flows are dropped
        bit = Status.SRC_NAT if manip is Manip.SRC else Status.DST_NAT
        if d is Dir.REPLY:
            bit = Status.DST_NAT if bit is Status.SRC_NAT else Status.SRC_NAT
        if not ct.status & bit:
            return True
        other = ct.tuple(d.flip())
        inner_manip = Manip.DST if manip is Manip.SRC else Manip.SRC
        if icmp.embedded is not None:
            _manip_pkt(icmp.embedded, other, inner_manip)
        target = other.invert()
        if target is None:  # ICMP query tuples always invert; other protocols too
            return False
        target = ConnTuple(target.src, target.dst, IPPROTO_ICMP, target.sport, target.dport)
        _manip_pkt(pkt, target, manip, addresses_only=True)
        return True


def _manip_pkt(pkt: Packet, target: ConnTuple, manip: Manip, addresses_only: bool = False) -> None:
    """nf_nat_ipv4_manip_pkt: addresses and the L4 part of one side."""
    if manip is Manip.SRC:
        pkt.src = target.src
    else:
        pkt.dst = target.dst
    if addresses_only or pkt.is_fragment:
        return
    l4 = pkt.l4
    if isinstance(l4, (TcpHeader, UdpHeader)) and target.proto == pkt.proto:
        if manip is Manip.SRC:
            l4.sport = target.sport
        else:
            l4.dport = target.dport
    elif isinstance(l4, IcmpHeader) and not l4.is_error and target.is_icmp:
        l4.id = target.sport  # icmp_manip_pkt: the id, whatever the manip type


def _in_range(t: ConnTuple, rng: NatRange) -> bool:
    if rng.map_ips and not (int(rng.min_addr) <= int(t.src) <= int(rng.max_addr)):
        return False
    if not rng.proto_specified:
        return True
    return _l4_in_range(t, Manip.SRC, rng)


def _l4_in_range(t: ConnTuple, manip: Manip, rng: NatRange) -> bool:
    if t.is_icmp:
        return rng.min_port <= t.sport <= rng.max_port
    if t.proto in _PORT_PROTOS or t.proto == 47:
        port = t.sport if manip is Manip.SRC else t.dport
        return rng.min_port <= port <= rng.max_port
    return True


def _may_kill(ct: ConntrackEntry) -> bool:
    """nf_nat_may_kill: TIME_WAIT or later, SNATed, not fixed-timeout, not dying."""
    state = getattr(ct.proto_state, "state", None)
    if state is None or state < TcpState.TIME_WAIT:
        return False
    if ct.status & (Status.FIXED_TIMEOUT | Status.DYING):
        return False
    return bool(ct.status & Status.SRC_NAT)


def _seq_has_advanced(old: ConntrackEntry, new: ConntrackEntry) -> bool:
    try:
        old_end = old.proto_state.seen[0].td_end
        new_end = new.proto_state.seen[0].td_end
    except (AttributeError, IndexError, TypeError):
        return False
    diff = (new_end - old_end) & 0xFFFFFFFF
    return diff != 0 and diff < 0x80000000


def _le32(addr) -> int:
    """A __be32 address read as a host (little-endian) u32, as jhash sees it on x86."""
    return int.from_bytes(addr.packed[-4:], "little")


def _endpoint(t: ConnTuple, manip: Manip) -> str:
    if manip is Manip.SRC:
        return f"{t.src}:{t.sport}" if t.has_ports else (f"{t.src} id {t.sport}" if t.is_icmp else str(t.src))
    return f"{t.dst}:{t.dport}" if t.has_ports else str(t.dst)
