"""`conntrace run` on a scenario with many short TCP flows: time and peak memory.

Expired conntrack entries and closed sockets are collected as the clock advances, so memory
is bounded by the flows alive at once (rate x TIME_WAIT), not by the number of flows."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from conntrace.scenario.load import load_scenario
from conntrace.world.outcome import collect_outcome
from conntrace.world.world import World

HERE = Path(__file__).parent


def run(flows: int = 100_000, interval: float = 0.01) -> dict:
    sc = load_scenario(HERE / "short_flows.yaml")
    step = sc.steps[0]
    step.args["count"] = flows
    step.args["interval"] = interval
    t0 = time.perf_counter()
    world = World(sc, record=False)
    peak_entries = 0

    class Probe:
        def on_ct_event(self, host, ev):
            nonlocal peak_entries
            table = world.hosts["server"].conntrack.table
            peak_entries = max(peak_entries, len(table))

    world.observers.append(Probe())
    for name, host in world.hosts.items():
        host.ct_event_listeners.append(lambda ev, n=name: world.observers[-1].on_ct_event(n, ev))
    world.run()
    elapsed = time.perf_counter() - t0
    out = collect_outcome(world)
    st = out.steps[0]
    return {
        "flows": flows,
        "virtual_seconds": round(world.now, 1),
        "wall_seconds": round(elapsed, 1),
        "flows_per_s": round(flows / elapsed),
        "result": st.result,
        "peak_conntrack_entries": peak_entries,
        "final_conntrack_entries": len(world.hosts["server"].conntrack.table),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
