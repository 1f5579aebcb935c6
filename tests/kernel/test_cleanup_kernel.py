"""The harness leaves nothing behind: namespaces, processes, run files (root + ip netns)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conntrace.kernel import HarnessError, run_on_kernel
from conntrace.kernel.agentproc import AGENT_SCRIPT
from conntrace.kernel.procs import RUN_DIR, cleanup_stale, list_netns, new_run_id, run_is_live
from conntrace.scenario.load import parse_scenario

pytestmark = pytest.mark.kernel

TWO_HOSTS = """
hosts:
  a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b:
    interfaces: {eth0: {addresses: [10.0.0.2/24]}}
    rules: "*filter\\n-A INPUT -p tcp --dport 81 -j DROP\\n-A INPUT -m conntrack --ctstate NEW -j ACCEPT\\nCOMMIT\\n"
    listen: [{proto: tcp, port: 80}]
links: [[a:eth0, b:eth0]]
"""


def _procs_matching(text: str) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                out.add(int(d.name))
    return out


def _live_runs() -> tuple[set[str], set[int]]:
    """Run ids and recorded PIDs of harness runs still going (other tests, other users)."""
    rids, pids = set(), set()
    for f in RUN_DIR.glob("*.json") if RUN_DIR.is_dir() else []:
        if run_is_live(f.stem):
            rids.add(f.stem)
            try:
                pids |= {pid for pid, _ in json.loads(f.read_text()).get("procs", [])}
            except (OSError, ValueError):
                pass
    return rids, pids


def _snapshot() -> tuple[set[str], set[int], set[int], set[str]]:
    return ({n for n in list_netns() if n.startswith("ctr-")}, _procs_matching(str(AGENT_SCRIPT)),
            _procs_matching("conntrack -E"), {p.name for p in RUN_DIR.glob("*.json")}
            if RUN_DIR.is_dir() else set())


def _leftovers(before) -> list[str]:
    ns, agents, events, runs = _snapshot()
    rids, pids = _live_runs()
    out = [f"namespace {n}" for n in ns - before[0] if n[4:10] not in rids]
    out += [f"agent {p}" for p in agents - before[1] if p not in pids]
    out += [f"conntrack -E {p}" for p in events - before[2] if p not in pids]
    out += [f"run file {r}" for r in runs - before[3] if r[:-5] not in rids]
    return out


def _assert_nothing_left(before, workdir: Path) -> None:
    # other harness runs may be going on at the same time: what they own is not ours
    left = _leftovers(before)
    for _ in range(5):
        if not left:
            break
        time.sleep(0.2)
        left = _leftovers(before)
    assert not left, f"left behind: {left}"
    assert not _procs_matching(str(workdir)), "a tcpdump writing into the workdir is still running"


def test_a_run_leaves_nothing_behind(tmp_path):
    before = _snapshot()
    sc = parse_scenario(TWO_HOSTS + """
timeline:
  - {at: 0, tcp_connect: {from: a, to: 10.0.0.2:80, payload: 3, close: open}}
  - {at: 0, udp: {from: a, to: 10.0.0.2:9}}
""", "t.yaml")
    out = run_on_kernel(sc, workdir=tmp_path, trace=True, timeout=30)
    assert out.steps[0].result == "connected"
    _assert_nothing_left(before, tmp_path)


def test_setup_error_is_one_clear_line_and_cleans_up(tmp_path):
    before = _snapshot()
    sc = parse_scenario("""
hosts:
  a:
    interfaces: {eth0: {addresses: [10.0.0.1/24]}}
    rules: "*filter\\n-A INPUT -m nosuchmatch -j ACCEPT\\nCOMMIT\\n"
  b: {interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links: [[a:eth0, b:eth0]]
""", "bad.yaml")
    with pytest.raises(HarnessError) as e:
        run_on_kernel(sc, workdir=tmp_path, timeout=30)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("a: iptables-restore") and "nosuchmatch" in msg
    _assert_nothing_left(before, tmp_path)


def test_time_limit_stops_a_run_and_cleans_up(tmp_path):
    before = _snapshot()
    # a SYN into DROP with the default 6 retries would take 131 s; the limit is 4 s
    sc = parse_scenario(TWO_HOSTS + """
timeline:
  - {at: 0, tcp_connect: {from: a, to: 10.0.0.2:81}}
""", "slow.yaml")
    t = time.monotonic()
    with pytest.raises(HarnessError) as e:
        run_on_kernel(sc, workdir=tmp_path, timeout=4)
    assert time.monotonic() - t < 15
    assert "in time" in str(e.value) or "time limit" in str(e.value)
    _assert_nothing_left(before, tmp_path)


def test_a_step_beyond_the_limit_is_refused_early(tmp_path):
    before = _snapshot()
    sc = parse_scenario(TWO_HOSTS + "timeline:\n  - {at: 50, conntrack_flush: b}\n", "late.yaml")
    t = time.monotonic()
    with pytest.raises(HarnessError, match="beyond the time limit"):
        run_on_kernel(sc, workdir=tmp_path, timeout=5)
    assert time.monotonic() - t < 10
    _assert_nothing_left(before, tmp_path)


def test_crashed_run_is_cleaned_but_a_live_one_is_not():
    dead = subprocess.Popen(["true"])
    dead.wait()
    rid = new_run_id()
    ns = f"ctr-{rid}-x"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
    live_rid = new_run_id()
    live_ns = f"ctr-{live_rid}-y"
    subprocess.run(["ip", "netns", "add", live_ns], check=True, timeout=10)
    me = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / f"{rid}.json").write_text(json.dumps(
        {"owner": dead.pid, "owner_cmd": "true", "procs": [[sleeper.pid, f"ip netns exec {ns} sleep 300"]]}))
    (RUN_DIR / f"{live_rid}.json").write_text(json.dumps(
        {"owner": os.getpid(), "owner_cmd": me, "procs": []}))
    try:
        time.sleep(0.2)
        removed = cleanup_stale()
        assert ns in removed and live_ns not in removed
        assert sleeper.wait(5) != 0  # killed by PID
        names = list_netns()
        assert ns not in names and live_ns in names
        assert not (RUN_DIR / f"{rid}.json").exists() and (RUN_DIR / f"{live_rid}.json").exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        for n in (ns, live_ns):
            subprocess.run(["ip", "netns", "delete", n], timeout=10, capture_output=True)
        for r in (rid, live_rid):
            (RUN_DIR / f"{r}.json").unlink(missing_ok=True)
