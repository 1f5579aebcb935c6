"""Run a scenario on the real kernel: namespaces, rules, agents, timeline, collection.

`run_on_kernel(scenario, workdir=...)` builds the topology of `topology.plan_topology`,
loads rules and ipsets, starts one agent per host, drives the timeline at real time =
virtual time from a common start, collects what the kernel did into a `RunOutcome`, and
deletes everything it created, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..host.sysctl import DEFAULT_SYSCTLS
from ..scenario.model import Scenario, Step
from ..scenario.outcome import HostOutcome, RunOutcome, StepOutcome
from .agentproc import Agent
from .collect import (TRACE_COMMENT, clean_event_line, parse_ct_list, parse_save_counters,
                      save_tables, sum_ct_stats)
from .procs import HarnessError, ProcessTable, cleanup_stale, new_run_id, run_cmd, wait_until
from .steps import PreparedStep, attribute_sightings, prepare_step, retarget
from .topology import Plan, plan_topology

SETTLE = 0.5  # seconds after the last step before the tables are read (packets in flight)
OBSERVER_START = 0.3  # conntrack -E / xtables-monitor have no "ready" line: give them this

# Sysctls whose value a child namespace inherits from the machine rather than from the
# kernel's defaults; they cannot be set inside a namespace (reference §6).
_GLOBAL_SYSCTLS = {"net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_buckets",
                   "net.netfilter.nf_log_all_netns"}


def run_on_kernel(scenario: Scenario, *, workdir: Path, trace: bool = False, capture: bool = True,
                  timeout: float | None = None) -> RunOutcome:
    """Run `scenario` in fresh network namespaces and return what the kernel did."""
    return KernelRun(scenario, workdir=Path(workdir), trace=trace, capture=capture,
                     timeout=timeout).run()


def check_requirements(need: tuple[str, ...] = ()) -> None:
    """Raise HarnessError unless we are root with `ip netns` and the tools in `need`."""
    if os.geteuid() != 0:
        raise HarnessError("the kernel harness needs root (network namespaces, iptables)")
    for tool in ("ip", "setpriv", "sysctl", "iptables", "iptables-restore", "iptables-save",
                 "conntrack") + need:
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} is not installed (needed by the kernel harness)")
    run_cmd(["ip", "netns", "list"], what="ip netns", timeout=10)


@dataclass
class _Pending:
    index: int
    step: Step
    agent: Agent
    rid: int
    t_sent: float


class KernelRun:
    def __init__(self, scenario: Scenario, *, workdir: Path, trace: bool = False,
                 capture: bool = True, timeout: float | None = None):
        self.sc = scenario
        self.workdir = workdir
        self.trace = trace
        self.capture = capture
        self.timeout = timeout
        self.notes: list[str] = []
        self.run_id: str | None = None
        self.plan: Plan | None = None
        self.procs: ProcessTable | None = None
        self.agents: dict[str, Agent] = {}  # by namespace
        self.created_ns: list[str] = []
        self.observers: dict[str, list[tuple[str, object, Path]]] = {}  # host -> [(kind, proc, file)]
        self.user_tables: dict[str, set[str]] = {h: set() for h in scenario.hosts}
        self.prepared: list[PreparedStep] = []
        self.deadline = 0.0
        self.t0 = 0.0
        self._windows: dict[int, tuple[float, float]] = {}  # step -> agent's (start, end)

    # ------------------------------------------------------------ top level

    def run(self) -> RunOutcome:
        need = (("tcpdump",) if self.capture else ()) + (("xtables-monitor",) if self.trace else ())
        if any(h.ipsets for h in self.sc.hosts.values()):
            need += ("ipset",)
        check_requirements(need)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepared = [prepare_step(self.sc, s) for s in self.sc.steps]
        self.notes += [n for p in self.prepared for n in p.notes]
        self.deadline = time.monotonic() + (self.timeout or self._default_timeout())
        cleanup_stale()
        self.run_id = new_run_id()
        self.procs = ProcessTable(self.run_id)
        try:
            self.plan = plan_topology(self.sc, self.run_id)
            self._create()
            self._wait_ipv6_ready()
            self._start_agents()
            self._sysctls()
            for cmd in self.plan.routes:
                run_cmd(list(cmd.argv), what=cmd.what)
            self._ipsets_and_rules()
            self._listeners()
            self._start_observers()
            outcome = self._drive()
            self._collect(outcome)
            outcome.notes = self.notes + outcome.notes
            return outcome
        finally:
            self._teardown()

    def _default_timeout(self) -> float:
        end = max([s.at + p.max_duration for s, p in zip(self.sc.steps, self.prepared)] + [0.0])
        end = max(end, self.sc.run_until or 0.0)
        return 60.0 + end * 1.5

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise HarnessError(f"kernel run of '{self.sc.name}' exceeded its time limit")
        return left

    def ns(self, host: str) -> str:
        return self.plan.host_ns[host]

    def _exec(self, host: str, argv: list[str], what: str, input: str | None = None,
              check: bool = True, timeout: float = 15.0):
        return run_cmd(["ip", "netns", "exec", self.ns(host)] + argv, input=input, what=what,
                       check=check, timeout=min(timeout, max(self._left(), 1.0)))

    # ------------------------------------------------------------ setup

    def _create(self) -> None:
        for cmd in self.plan.create:
            self._left()
            run_cmd(list(cmd.argv), what=cmd.what)
            if cmd.argv[:3] == ("ip", "netns", "add"):
                self.created_ns.append(cmd.argv[3])

    def _wait_ipv6_ready(self) -> None:
        """IPv6 answers neighbour solicitations only once addrconf has seen the link come up
        (its link-local address appears then); until that a first packet waits 1 s for ND."""
        for name, h in self.sc.hosts.items():
            ns = self.ns(name)
            if ns not in self.plan.ipv6_ns:
                continue
            ifaces = [i.name for i in h.interfaces if i.name != "lo"]

            def ready() -> bool:
                out = run_cmd(["ip", "-n", ns, "-6", "-o", "addr", "show"], what="ip addr").stdout
                linked = {l.split()[1] for l in out.splitlines() if " fe80:" in l}
                return "tentative" not in out and all(i in linked for i in ifaces)

            if not wait_until(ready, min(5.0, self._left()), step=0.05):
                self.notes.append(f"{name}: IPv6 was not ready when traffic started")

    def _agent_namespaces(self) -> list[str]:
        want = list(self.plan.host_ns.values())
        for s in self.sc.steps:
            if s.kind in ("packet", "replay") and s.args.get("mode", "inject") == "inject":
                ns = self._inject_source(s.host, s.args["in"])[0]
                if ns not in want:
                    want.append(ns)
        return want

    def _inject_source(self, host: str, iface: str) -> tuple[str, str, str, str]:
        """(namespace, device, source MAC, destination MAC) to make a frame arrive on host:iface."""
        if iface == "lo":
            return self.ns(host), "lo", "00:00:00:00:00:00", "00:00:00:00:00:00"
        peer = self.plan.peer_end[(host, iface)]
        return peer.ns, peer.ifname, peer.mac, self.plan.iface_mac[(host, iface)]

    def _start_agents(self) -> None:
        labels = {ns: h for h, ns in self.plan.host_ns.items()}
        for ns in self._agent_namespaces():
            self.agents[ns] = Agent(ns, self.procs, labels.get(ns, ns))
        for ns, agent in self.agents.items():
            r = agent.call("hello", timeout=min(15.0, self._left()))
            if not r.get("ok"):
                raise HarnessError(f"agent in {ns} failed to start: {r.get('error')}")

    def _agent(self, host: str) -> Agent:
        return self.agents[self.ns(host)]

    def _sysctls(self) -> None:
        keys = [k for k in DEFAULT_SYSCTLS if k not in _GLOBAL_SYSCTLS]
        for name, h in self.sc.hosts.items():
            agent = self._agent(name)
            current = agent.call("sysctl_get", keys=keys)["values"]
            # Make the namespace start from the defaults the model assumes.
            for k in keys:
                want = " ".join(str(DEFAULT_SYSCTLS[k]).split())
                if current.get(k) is not None and current[k] != want and k not in h.sysctls:
                    r = agent.call("sysctl_set", key=k, value=DEFAULT_SYSCTLS[k])
                    if not r.get("ok"):
                        self.notes.append(f"{name}: {k} is {current[k]} in a new namespace, "
                                          f"the model assumes {want}: {r.get('error')}")
            for k, v in h.sysctls.items():
                if k in _GLOBAL_SYSCTLS:
                    raise HarnessError(f"{name}: sysctl {k} is global, not per namespace; the "
                                       "harness does not change the root namespace")
                r = agent.call("sysctl_set", key=k, value=v)
                if not r.get("ok"):
                    raise HarnessError(f"{name}: {r.get('error')}")

    def _ipsets_and_rules(self) -> None:
        for name, h in self.sc.hosts.items():
            if h.ipsets:
                self._exec(name, ["ipset", "restore"], f"{name}: ipset restore", input=h.ipsets)
            if h.rules:
                self._exec(name, ["iptables-restore"], f"{name}: iptables-restore of "
                           f"{h.rules_origin or 'rules'}", input=_restore_text(h.rules))
                self.user_tables[name] |= save_tables(h.rules)
            if self.trace:
                self._ensure_trace_rules(name)
            if h.rules and any(t in h.rules for t in ("-j LOG", "-j NFLOG", "-j ULOG")):
                self.notes.append(f"{name}: LOG lines are not collected on the kernel (a child "
                                  "namespace logs only with nf_log_all_netns=1 in the root "
                                  "namespace, which the harness never changes)")

    def _ensure_trace_rules(self, host: str) -> None:
        for chain in ("PREROUTING", "OUTPUT"):
            rule = [chain, "-m", "comment", "--comment", TRACE_COMMENT, "-j", "TRACE"]
            cp = self._exec(host, ["iptables", "-t", "raw", "-C"] + rule, "trace check", check=False)
            if cp.returncode != 0:
                self._exec(host, ["iptables", "-t", "raw", "-I", chain, "1"] + rule[1:],
                           f"{host}: adding the TRACE rule to raw {chain}")

    def _listeners(self) -> None:
        for name, h in self.sc.hosts.items():
            has_v6 = any(a.version == 6 for i in h.interfaces for a in i.addresses)
            for ln in h.listeners:
                fams = [ln.addr.version] if ln.addr is not None else ([4, 6] if has_v6 else [4])
                for fam in fams:
                    r = self._agent(name).call(
                        "listen", proto=ln.proto, port=ln.port,
                        addr=str(ln.addr) if ln.addr is not None else None, uid=ln.uid,
                        gid=ln.gid, echo=ln.echo, transparent=ln.transparent, family=fam)
                    if not r.get("ok"):
                        where = f" ({ln.where})" if ln.where else ""
                        raise HarnessError(f"{name}: cannot listen on {ln.proto} port {ln.port}"
                                           f"{where}: {r.get('error')}")

    def _start_observers(self) -> None:
        for name, h in self.sc.hosts.items():
            obs = self.observers.setdefault(name, [])
            ev_file = self.workdir / f"{name}.conntrack-events"
            obs.append(("events", self._spawn_to_file(name, ["conntrack", "-E"], ev_file,
                                                      "conntrack -E"), ev_file))
            if self.trace:
                tr_file = self.workdir / f"{name}.trace"
                obs.append(("trace", self._spawn_to_file(name, ["xtables-monitor", "--trace"],
                                                         tr_file, "xtables-monitor"), tr_file))
            if self.capture:
                for i in h.interfaces:
                    pcap = self.workdir / f"{name}-{i.name}.pcap"
                    err = self.workdir / f"{name}-{i.name}.tcpdump.log"
                    with open(err, "wb") as ef:
                        p = self.procs.spawn(["ip", "netns", "exec", self.ns(name), "tcpdump",
                                              "-i", i.name, "-p", "-n", "-U", "-s", "0", "-w",
                                              str(pcap)], label=f"tcpdump {name}:{i.name}",
                                             stdout=subprocess.DEVNULL, stderr=ef)
                    obs.append((f"capture:{i.name}", p, pcap))
                    if not wait_until(lambda: b"listening on" in _read(err) or p.poll() is not None,
                                      min(10.0, self._left())) or p.poll() is not None:
                        raise HarnessError(f"tcpdump on {name}:{i.name} did not start: "
                                           f"{_read(err).decode(errors='replace').strip()[-200:]}")
        time.sleep(OBSERVER_START)

    def _spawn_to_file(self, host: str, argv: list[str], path: Path, label: str):
        with open(path, "wb") as f:
            return self.procs.spawn(["ip", "netns", "exec", self.ns(host)] + argv,
                                    label=f"{label} {host}", stdout=f,
                                    stderr=subprocess.DEVNULL)

    # ------------------------------------------------------------ the timeline

    def _drive(self) -> RunOutcome:
        out = RunOutcome(scenario=self.sc.name, source="kernel")
        out.steps = [StepOutcome(index=i + 1, kind=s.kind, host=s.host, result="pending")
                     for i, s in enumerate(self.sc.steps)]
        pending: list[_Pending] = []
        self.t0 = time.monotonic() + 0.05
        for i, (s, prep) in enumerate(zip(self.sc.steps, self.prepared)):
            delay = self.t0 + s.at - time.monotonic()
            if delay > 0:
                if delay > self._left():
                    raise HarnessError(f"step {i + 1} at {s.at} s lies beyond the time limit")
                time.sleep(delay)
            if prep.op is not None:
                agent, args = self._op_target(s, prep)
                rid = agent.send(prep.op, **args)
                pending.append(_Pending(i, s, agent, rid, time.monotonic()))
            else:
                out.steps[i] = self._admin_step(i, s)
        for p in pending:
            left = max(0.0, p.t_sent + self.prepared[p.index].max_duration - time.monotonic())
            reply = p.agent.wait(p.rid, min(left, self._left()))
            if reply is None:
                raise HarnessError(f"step {p.index + 1} ({p.step.kind}) got no answer from the "
                                   f"agent of {p.agent.label} in time")
            out.steps[p.index] = self._step_outcome(p.index, p.step, reply)
        if self.sc.run_until is not None:
            delay = self.t0 + self.sc.run_until - time.monotonic()
            if delay > self._left():
                raise HarnessError(f"run_until {self.sc.run_until} s lies beyond the time limit")
            if delay > 0:
                time.sleep(delay)
        time.sleep(SETTLE)
        out.elapsed = round(time.monotonic() - self.t0, 3)
        return out

    def _op_target(self, s: Step, prep: PreparedStep) -> tuple[Agent, dict]:
        if prep.op != "inject":
            return self._agent(s.host), prep.args
        ns, dev, src_mac, dst_mac = self._inject_source(s.host, prep.args["iface"])
        if "packet" in prep.args:
            from ..wire import encode_ether

            pkt = prep.args["packet"]
            frame = encode_ether(pkt, pkt.meta.src_mac or src_mac, dst_mac)
            frames = [(0.0, frame.hex())]
        else:
            frames = [(t, retarget(raw, dst_mac).hex()) for t, raw in prep.args["raw_frames"]]
        return self.agents[ns], {"iface": dev, "frames": frames}

    def _admin_step(self, i: int, s: Step) -> StepOutcome:
        so = StepOutcome(index=i + 1, kind=s.kind, host=s.host, result="done")
        try:
            if s.kind == "conntrack_flush":
                self._exec(s.host, ["conntrack", "-F"], f"{s.host}: conntrack -F")
            elif s.kind == "rules":
                argv = ["iptables-restore"] + (["--noflush"] if s.args.get("noflush") else [])
                self._exec(s.host, argv, f"{s.host}: iptables-restore of {s.args.get('origin')}",
                           input=_restore_text(s.args["rules"]))
                self.user_tables[s.host] |= save_tables(s.args["rules"])
                if self.trace:
                    self._ensure_trace_rules(s.host)
            elif s.kind == "sysctl":
                for k, v in s.args["set"].items():
                    if k in _GLOBAL_SYSCTLS:
                        raise HarnessError(f"sysctl {k} is global, not per namespace")
                    r = self._agent(s.host).call("sysctl_set", key=k, value=v)
                    if not r.get("ok"):
                        raise HarnessError(r.get("error"))
        except HarnessError as e:
            so.result, so.detail = "error", str(e)
        return so

    def _step_outcome(self, i: int, s: Step, reply: dict) -> StepOutcome:
        so = StepOutcome(index=i + 1, kind=s.kind, host=s.host, result=reply.get("result", "error"),
                         replies=reply.get("replies", 0), sent=reply.get("sent", 0),
                         local_addr=reply.get("local_addr"), local_port=reply.get("local_port"),
                         detail=reply.get("detail", "") or "")
        if not reply.get("ok"):
            so.result, so.detail = "error", reply.get("error", "agent error")
        self._windows[i] = (reply.get("t_start", 0.0), reply.get("t_end", 0.0))
        return so

    # ------------------------------------------------------------ collection

    def _collect(self, out: RunOutcome) -> None:
        for name in self.sc.hosts:
            ho = HostOutcome()
            cp = self._exec(name, ["conntrack", "-L", "-o", "extended"], f"{name}: conntrack -L")
            try:
                ho.conntrack = parse_ct_list(cp.stdout)
            except InputError as e:
                raise HarnessError(f"{name}: {e}") from None
            cp = self._exec(name, ["conntrack", "-S"], f"{name}: conntrack -S")
            ho.ct_stats = sum_ct_stats(cp.stdout)
            cp = self._exec(name, ["iptables-save", "-c"], f"{name}: iptables-save -c")
            ho.counters = parse_save_counters(cp.stdout)
            if self.trace and "raw" not in self.user_tables[name]:
                ho.counters = {k: v for k, v in ho.counters.items() if not k.startswith("raw/")}
            out.hosts[name] = ho
        sightings = {name: self._agent(name).call("seen")["seen"] for name in self.sc.hosts}
        attribute_sightings(self.sc, out, self._windows, sightings)
        self._stop_observers(out)

    def _stop_observers(self, out: RunOutcome) -> None:
        for name, obs in self.observers.items():
            ho = out.hosts[name]
            for kind, proc, path in obs:
                self.procs.stop(proc, sig=signal.SIGINT, timeout=3.0)
                if kind == "events":
                    ho.events = [l for l in (clean_event_line(x) for x in _lines(path)) if l]
                elif kind == "trace":
                    # leave out the harness' own TRACE rule (and its raw chains if it made them)
                    own_raw = "raw" not in self.user_tables[name]
                    ho.trace_lines = [x.rstrip() for x in _lines(path) if x.strip()
                                      and TRACE_COMMENT not in x
                                      and not (own_raw and " raw:" in x)]
                else:
                    ho.captures[kind.split(":", 1)[1]] = str(path)

    # ------------------------------------------------------------ teardown

    def _teardown(self) -> None:
        for agent in list(self.agents.values()):
            try:
                agent.quit(timeout=2.0)
            except Exception:  # teardown must go on
                pass
        if self.procs is not None:
            self.procs.stop_all()
        for ns in reversed(self.created_ns):
            run_cmd(["ip", "netns", "delete", ns], what=f"deleting {ns}", check=False, timeout=15)
        if self.procs is not None:
            self.procs.close()


def _restore_text(rules: str) -> str:
    return rules if rules.endswith("\n") else rules + "\n"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _lines(path: Path) -> list[str]:
    return _read(path).decode(errors="replace").splitlines()


