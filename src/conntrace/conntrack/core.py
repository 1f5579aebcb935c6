"""The conntrack hook functions: nf_conntrack_in and nf_confirm (nf_conntrack_core.c).

`conntrack_in` runs at -200 in PREROUTING and OUTPUT: it finds or creates the entry, runs
the L4 tracker and attaches (entry, ctinfo) to the packet. A new entry stays unconfirmed
(only on the packet) until `confirm` at the last hook of POSTROUTING/INPUT inserts it,
resolving clashes with entries confirmed meanwhile by other CPUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..netfilter.hooks import Hook
from ..netfilter.verdict import ACCEPT, DROP, Verdict
from ..observe.trace import ConfirmStep, ConntrackStep
from ..packet import IPPROTO_ICMP, IPPROTO_ICMPV6, Packet
from .defs import CTSTATE_OF_CTINFO, ConntrackEventType, CtInfo, Dir, Status
from .entry import ConntrackEntry, tuple_of
from .l4 import L4Result, TrackEnv, tracker_for
from .proto_icmp import icmp_error_related
from .table import ConntrackTable, CtEvent, snapshot

if TYPE_CHECKING:
    from ..host.host import Host
    from ..observe.trace import PacketTrace

# Protocols whose clashes at confirm may be resolved (l4proto->allow_clash, 6.12/6.18):
# UDP, UDP-Lite, GRE and the generic tracker. TCP, SCTP, DCCP and ICMP(v6) never are.
ALLOW_CLASH = frozenset({17, 136, 47})
NO_CLASH = frozenset({6, 132, 33, 1, 58})
NAT_CLASH_TIMEOUT = 1.0  # nf_ct_resolve_clash_harder: "go away real soon"


def allow_clash(proto: int) -> bool:
    """Protocols without a dedicated tracker use the generic one, which allows clashes."""
    return proto in ALLOW_CLASH or proto not in NO_CLASH


def ctstate_name(pkt: Packet) -> str:
    """The state `-m conntrack --ctstate` sees for the packet (for traces)."""
    if pkt.meta.untracked:
        return "UNTRACKED"
    if pkt.meta.ct is None:
        return "INVALID"
    return CTSTATE_OF_CTINFO[CtInfo(pkt.meta.ctinfo)].name


def nf_conntrack_attach(reply: Packet, ct: ConntrackEntry, ctinfo) -> None:
    """The REJECT reply carries the triggering packet's entry, in the other direction,
    as RELATED (nf_conntrack_attach in nf_conntrack_core.c)."""
    info = CtInfo(ctinfo)
    reply.meta.ct = ct
    reply.meta.ctinfo = CtInfo.RELATED_REPLY if info.direction is Dir.ORIGINAL else CtInfo.RELATED


class Conntrack:
    """Conntrack for one host (netns). Owns the table; NAT plugs in via the table's hooks."""

    def __init__(self, host: "Host", ncpus: int = 2) -> None:
        self.host = host
        sc = host.sysctls
        self.table = ConntrackTable(
            max_entries=sc.get_int("net.netfilter.nf_conntrack_max"),
            buckets=sc.get_int("net.netfilter.nf_conntrack_buckets"),
            ncpus=ncpus, hash_seed=host.rng.getrandbits(32))
        self.table.record_events = host.record_ct_events
        self.table.listeners = host.ct_event_listeners  # the host's list, shared
        self.log_lines: list[str] = []

    # -- helpers ---------------------------------------------------------------------------
    def _env(self, hook: Hook, now: float) -> TrackEnv:
        return TrackEnv(now=now, sysctls=self.host.sysctls, hook=hook)

    def _refresh(self, ct: ConntrackEntry, timeout: float, now: float) -> None:
        """__nf_ct_refresh_acct: relative while unconfirmed, absolute once confirmed."""
        if ct.status & Status.FIXED_TIMEOUT:
            return
        if ct.confirmed:
            new = now + timeout
            if new != ct.timeout:
                ct.timeout = new
                self.table.timeout_changed(ct)
        else:
            ct.timeout = timeout

    def _log_invalid(self, pkt: Packet, proto: int, text: str | None) -> None:
        if text and self.host.sysctls.get_int("net.netfilter.nf_conntrack_log_invalid"):
            self.log_lines.append(f"nf_ct_proto_{proto}: {text}")

    def kill(self, ct: ConntrackEntry, now: float, cpu: int = 0) -> bool:
        """nf_ct_kill: a confirmed entry leaves the table now (DESTROY event); an
        unconfirmed one is only marked DYING (it is freed with its packet)."""
        if ct.confirmed:
            return self.table.destroy(ct, now, cpu=cpu)
        ct.status |= Status.DYING
        return True

    # -- nf_conntrack_in -------------------------------------------------------------------
    def conntrack_in(self, pkt: Packet, hook: Hook, now: float, cpu: int,
                     trace: "PacketTrace | None") -> Verdict:
        meta = pkt.meta
        if meta.ct is not None or meta.untracked:
            # already tracked (looped through lo, or attached by REJECT) or NOTRACK
            if trace is not None:
                why = "untracked (raw NOTRACK)" if meta.untracked else \
                    "packet already carries its conntrack (looped or attached)"
                trace.add(ConntrackStep("skipped", getattr(meta.ct, "id", None),
                                        _ctinfo_name(meta.ctinfo), ctstate_name(pkt),
                                        detail=why))
            return ACCEPT
        zone = getattr(meta.ct_template, "zone", 0) or 0
        env = self._env(hook, now)
        tracker = tracker_for(pkt.proto)
        err = tracker.error(pkt, env)
        if err is not None:
            if err.verdict == "untracked":
                meta.untracked = True
                self._trace(trace, "untracked", pkt, detail="the tracker does not track this")
                return ACCEPT
            self.table.stat(cpu, "error" if err.count_error else "invalid")
            self._log_invalid(pkt, pkt.proto, err.log_invalid)
            self._trace(trace, "invalid", pkt, detail=err.log_invalid or "header check failed")
            return ACCEPT
        if pkt.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and pkt.icmp is not None and pkt.icmp.is_error:
            return self._icmp_error(pkt, zone, now, cpu, trace)
        repeats = 0
        while True:
            found = self._resolve(pkt, zone, hook, now, cpu, trace)
            if found is None:
                return DROP  # table full
            ct, ctinfo, created = found
            if ct is None:
                return ACCEPT  # invalid: no tuple/entry
            if created:
                refused = tracker.new(ct, pkt, env)
                if refused is not None:
                    self.table.free(ct)
                    self.table.stat(cpu, "invalid")
                    self._log_invalid(pkt, pkt.proto, refused.log_invalid)
                    self._trace(trace, "invalid", pkt, detail=refused.log_invalid or
                                "the tracker refused to start a connection with this packet")
                    return ACCEPT
            meta.ct, meta.ctinfo = ct, ctinfo
            res = tracker.packet(ct, pkt, ctinfo, env)
            if res.verdict == "accept":
                self._apply(ct, res, now, cpu)
                if ctinfo is CtInfo.ESTABLISHED_REPLY and not ct.seen_reply:
                    ct.status |= Status.SEEN_REPLY
                    ct.ecache.add("REPLY")
                self._account(ct, ctinfo, pkt)
                self._log_invalid(pkt, pkt.proto, res.log_invalid)
                self._trace(trace, "new" if created else "found", pkt,
                            detail="" if not res.kill else "the tracker killed the entry")
                return ACCEPT
            # invalid / drop / repeat: the packet leaves without the entry
            meta.ct = meta.ctinfo = None
            if created and res.verdict != "repeat":
                self.table.free(ct)
            if res.verdict == "repeat" and repeats < 2:
                repeats += 1
                self.kill(ct, now, cpu)
                if trace is not None:
                    trace.add(ConntrackStep("repeat", ct.id, detail=(
                        "reopen: the old entry is killed and the lookup repeated")))
                continue
            if res.timeout is not None:
                self._refresh(ct, res.timeout, now)
            self.table.stat(cpu, "invalid")
            self._log_invalid(pkt, pkt.proto, res.log_invalid)
            if res.verdict == "drop":
                self.table.stat(cpu, "drop")
                self._trace(trace, "invalid", pkt, detail=(res.log_invalid or "") + " (dropped by conntrack)")
                return DROP
            self._trace(trace, "invalid", pkt, detail=res.log_invalid or "rejected by the tracker")
            return ACCEPT

    def _apply(self, ct: ConntrackEntry, res: L4Result, now: float, cpu: int) -> None:
        if res.timeout is not None:
            self._refresh(ct, res.timeout, now)
        if res.set_assured:
            ct.status |= Status.ASSURED
        if res.events:
            ct.ecache |= res.events
        if res.kill:
            self.kill(ct, now, cpu)

    def _account(self, ct: ConntrackEntry, ctinfo: CtInfo, pkt: Packet) -> None:
        c = ct.counters[int(ctinfo.direction)]
        c.packets += 1
        c.bytes += pkt.total_len

    def _resolve(self, pkt: Packet, zone: int, hook: Hook, now: float, cpu: int, trace):
        """resolve_normal_ct + init_conntrack. Returns None for NF_DROP (table full),
        (None, None, False) when no entry can exist, else (ct, ctinfo, created)."""
        tup = tuple_of(pkt)
        hit = self.table.find(zone, tup, now)
        if hit is not None:
            ct, d = hit
            if d is Dir.REPLY:
                return ct, CtInfo.ESTABLISHED_REPLY, False
            if ct.seen_reply:
                return ct, CtInfo.ESTABLISHED, False
            if ct.status & Status.EXPECTED:
                return ct, CtInfo.RELATED, False
            return ct, CtInfo.NEW, False
        reply = tup.invert()
        if reply is None:
            self.table.stat(cpu, "invalid")
            self._trace(trace, "invalid", pkt, detail="no entry can start with this packet "
                        "(its tuple has no inverse, e.g. a lone ICMP echo reply)")
            return None, None, False
        # __nf_conntrack_alloc: the count includes unconfirmed entries
        self.table.count += 1
        if self.table.max_entries and self.table.count > self.table.max_entries:
            if not self.table.early_drop(zone, tup, now, cpu):
                self.table.count -= 1
                self.table.stat(cpu, "drop")
                self.log_lines.append("nf_conntrack: nf_conntrack: table full in netns, "
                                      "dropping packet")
                self._trace(trace, "drop", pkt, detail="table full (nf_conntrack_max) and "
                            "early_drop found nothing to evict: packet dropped")
                return None
        ct = ConntrackEntry(orig_tuple=tup, reply_tuple=reply, zone=zone, created=now, cpu=cpu)
        return ct, CtInfo.NEW, True

    def _icmp_error(self, pkt: Packet, zone: int, now: float, cpu: int, trace) -> Verdict:
        """nf_conntrack_inet_error: an ICMP error is RELATED to the entry its embedded
        packet belongs to, if the outer destination matches that direction's destination."""
        found = icmp_error_related(pkt, lambda tup: self.table.find(zone, tup, now))
        if isinstance(found, L4Result):
            self.table.stat(cpu, "error")
            self._log_invalid(pkt, pkt.proto, found.log_invalid)
            self._trace(trace, "invalid", pkt, detail=found.log_invalid or
                        "ICMP error for no known connection")
            return ACCEPT
        pkt.meta.ct, pkt.meta.ctinfo = found
        self._trace(trace, "related", pkt, detail="ICMP error about this connection")
        return ACCEPT

    # -- nf_confirm ------------------------------------------------------------------------
    def confirm(self, pkt: Packet, now: float, cpu: int, trace: "PacketTrace | None") -> Verdict:
        ct, ctinfo = pkt.meta.ct, pkt.meta.ctinfo
        if ct is None:
            return ACCEPT
        verdict = ACCEPT
        if not ct.confirmed:
            if CtInfo(ctinfo).direction is not Dir.ORIGINAL:
                return ACCEPT  # REJECT's attached replies never confirm
            verdict = self._confirm_new(pkt, ct, now, cpu, trace)
            ct = pkt.meta.ct
        if verdict is ACCEPT and ct is not None and ct.has_events and ct.confirmed:
            self.deliver_events(ct, now, cpu)
        return verdict

    def _confirm_new(self, pkt: Packet, ct: ConntrackEntry, now: float, cpu: int, trace) -> Verdict:
        if ct.status & Status.DYING:
            self.table.stat(cpu, "insert_failed")
            self._free_unconfirmed(pkt, ct)
            if trace is not None:
                trace.add(ConfirmStep(ct.id, "dropped", "the entry died before confirm"))
            return DROP
        clash = self.table.clash(ct)
        if clash is None:
            ct.status |= Status.CONFIRMED
            ct.timeout = now + ct.timeout
            self.table.insert(ct)
            ct.ecache.add("RELATED" if ct.status & Status.EXPECTED else "NEW")
            if trace is not None:
                trace.add(ConfirmStep(ct.id, "inserted", f"timeout {ct.timeout - now:g}s"))
            return ACCEPT
        return self._resolve_clash(pkt, ct, clash, now, cpu, trace)

    def _resolve_clash(self, pkt, loser: ConntrackEntry, clash, now, cpu, trace) -> Verdict:
        """nf_ct_resolve_clash / __nf_ct_resolve_clash / nf_ct_resolve_clash_harder."""
        winner, _wdir, _which = clash
        if allow_clash(loser.proto):
            merged = self._merge(pkt, loser, winner, cpu)
            if merged:
                if trace is not None:
                    trace.add(ConfirmStep(winner.id, "clash-merged",
                                          f"entry #{loser.id} lost a race to #{winner.id}: the "
                                          "packet now uses the winner (clash_resolve)"))
                return ACCEPT
            hit = self.table.peek(loser.zone, loser.reply_tuple)
            if hit is not None:
                if self._merge(pkt, loser, hit[0], cpu):
                    if trace is not None:
                        trace.add(ConfirmStep(hit[0].id, "clash-merged", "reply tuple clash "
                                              "with an identical flow (clash_resolve)"))
                    return ACCEPT
            else:
                loser.timeout = now + NAT_CLASH_TIMEOUT
                loser.status |= Status.FIXED_TIMEOUT | Status.NAT_CLASH | Status.CONFIRMED
                self.table.insert_reply_only(loser)
                self.table.stat(cpu, "clash_resolve")
                if trace is not None:
                    trace.add(ConfirmStep(loser.id, "clash-reply-only",
                                          "original tuple taken by another CPU's entry: "
                                          "inserted under its reply tuple only, 1 s, NAT_CLASH"))
                return ACCEPT
        self.table.stat(cpu, "drop")
        self.table.stat(cpu, "insert_failed")
        self._free_unconfirmed(pkt, loser)
        if trace is not None:
            trace.add(ConfirmStep(loser.id, "dropped",
                                  f"a tuple of this new entry is already in the table (#{winner.id}); "
                                  "this protocol's clashes are not resolved: insert_failed, drop"))
        return DROP

    def _merge(self, pkt, loser: ConntrackEntry, winner: ConntrackEntry, cpu: int) -> bool:
        if winner.status & Status.DYING:
            return False
        nat_done = Status.SRC_NAT_DONE | Status.DST_NAT_DONE
        same = (winner.orig_tuple == loser.orig_tuple and winner.reply_tuple == loser.reply_tuple)
        if (winner.status & nat_done) and not same:
            return False
        for d in (0, 1):
            winner.counters[d].packets += loser.counters[d].packets
            winner.counters[d].bytes += loser.counters[d].bytes
        self._free_unconfirmed(pkt, loser)
        pkt.meta.ct = winner
        self.table.stat(cpu, "clash_resolve")
        return True

    def _free_unconfirmed(self, pkt: Packet, ct: ConntrackEntry) -> None:
        self.table.free(ct)
        if pkt.meta.ct is ct:
            pkt.meta.ct = pkt.meta.ctinfo = None

    def release(self, pkt: Packet) -> None:
        """The packet is freed (dropped, delivered): an unconfirmed entry goes with it."""
        ct = pkt.meta.ct
        if ct is not None and not ct.confirmed and not (ct.status & Status.DYING):
            self.table.free(ct)

    # -- events ----------------------------------------------------------------------------
    def deliver_events(self, ct: ConntrackEntry, now: float, cpu: int = 0) -> None:
        """nf_ct_deliver_cached_events: one NEW or UPDATE message for the cached bits."""
        bits = frozenset(ct.ecache)
        ct.ecache = None
        if not ct.confirmed or ct.status & Status.DYING:
            return  # killed on the way (e.g. RST before any reply): nothing after DESTROY
        if ct.status & Status.NAT_CLASH:
            return  # hidden entries are not reported
        if not (self.table.record_events or self.table.listeners):
            return  # nobody listens (nf_conntrack_events=2: no event without a listener)
        kind = ConntrackEventType.NEW if ("NEW" in bits or "RELATED" in bits) else ConntrackEventType.UPDATE
        with_state = kind is ConntrackEventType.NEW or "PROTOINFO" in bits
        remaining = ct.timeout - now
        self.table.emit(CtEvent(kind, now, snapshot(ct), bits, with_state,
                                         timeout=int(remaining) if remaining > 0 else 0, cpu=cpu))

    def _trace(self, trace, action: str, pkt: Packet, detail: str = "") -> None:
        if trace is None:
            return
        ct = pkt.meta.ct
        tstate = None
        if ct is not None:
            tstate = tracker_for(ct.proto).state_name(ct)
        trace.add(ConntrackStep(action, getattr(ct, "id", None), _ctinfo_name(pkt.meta.ctinfo),
                                ctstate_name(pkt), tstate,
                                str(ct.orig_tuple) if ct is not None else None,
                                str(ct.reply_tuple) if ct is not None else None, detail))


def _ctinfo_name(ctinfo) -> str | None:
    if ctinfo is None:
        return None
    return CtInfo(ctinfo).name
