"""Processes and namespaces the harness owns: bounded commands, PID bookkeeping, cleanup.

Every process the harness starts is recorded (PID and command) in a run file under
RUN_DIR, is stopped by that PID, and gets SIGTERM if the harness dies (setpriv
--pdeathsig). Namespaces are named `ctr-<run id>-...`; a later run deletes the namespaces of
runs whose owner process is gone, and stops the processes those runs recorded.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from ..errors import ConntraceError

NS_PREFIX = "ctr-"
RUN_DIR = Path("/run/conntrace-kernel")
_RUN_ID_RE = re.compile(r"^ctr-([0-9a-f]{6})[-.]")


class HarnessError(ConntraceError):
    """The kernel harness could not set up, run or collect a scenario."""


def run_cmd(argv: list[str], *, input: str | None = None, timeout: float = 15.0,
            what: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """Run a short command with a hard timeout; failures become one clear HarnessError."""
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what or argv[0]}: no answer within {timeout:g} s "
                           f"({' '.join(argv)})") from None
    except FileNotFoundError:
        raise HarnessError(f"{argv[0]} is not installed (needed for {what or 'the harness'})") from None
    if check and cp.returncode != 0:
        msg = [l.strip() for l in (cp.stderr or cp.stdout).splitlines()
               if l.strip() and not l.strip().startswith("Try `")]
        detail = "; ".join(msg[-3:]) if msg else f"exit status {cp.returncode}"
        raise HarnessError(f"{what or ' '.join(argv)}: {detail}")
    return cp


def list_netns() -> list[str]:
    cp = run_cmd(["ip", "netns", "list"], what="ip netns list")
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class ProcessTable:
    """The run file and the processes of one harness run."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.path = RUN_DIR / f"{run_id}.json"
        self.procs: list[tuple[subprocess.Popen, str]] = []
        self._write()

    def _write(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        data = {"owner": os.getpid(), "owner_cmd": _cmdline(os.getpid()),
                "procs": [[p.pid, cmd] for p, cmd in self.procs if p.poll() is None]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def spawn(self, argv: list[str], label: str, **popen_args) -> subprocess.Popen:
        full = ["setpriv", "--pdeathsig", "TERM", "--"] + argv
        try:
            p = subprocess.Popen(full, **popen_args)
        except FileNotFoundError:
            raise HarnessError(f"cannot start {label}: {argv[0]} or setpriv is not installed") from None
        self.procs.append((p, " ".join(argv)))
        self._write()
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(3.0)
                except subprocess.TimeoutExpired:
                    pass
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def stop_all(self) -> None:
        for p, _ in self.procs:
            self.stop(p, timeout=2.0)

    def alive_pids(self) -> list[int]:
        return [p.pid for p, _ in self.procs if p.poll() is None]

    def close(self) -> None:
        self.stop_all()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def new_run_id() -> str:
    taken = {m.group(1) for n in list_netns() if (m := _RUN_ID_RE.match(n))}
    while True:
        rid = secrets.token_hex(3)
        if rid not in taken and not (RUN_DIR / f"{rid}.json").exists():
            return rid


def run_is_live(run_id: str) -> bool:
    try:
        data = json.loads((RUN_DIR / f"{run_id}.json").read_text())
    except (OSError, ValueError):
        return False
    owner = data.get("owner")
    return isinstance(owner, int) and _alive(owner) and _cmdline(owner) == data.get("owner_cmd")


def cleanup_stale() -> list[str]:
    """Delete what crashed runs left behind: their namespaces and recorded processes.

    Runs whose owner process is still alive are left alone (another harness may be running).
    Returns the namespaces deleted.
    """
    removed = []
    stale_runs: set[str] = set()
    for ns in list_netns():
        m = _RUN_ID_RE.match(ns)
        if not m or run_is_live(m.group(1)):
            continue
        stale_runs.add(m.group(1))
    if RUN_DIR.is_dir():
        for f in RUN_DIR.glob("*.json"):
            if not run_is_live(f.stem):
                stale_runs.add(f.stem)
    for rid in stale_runs:
        f = RUN_DIR / f"{rid}.json"
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            data = {}
        for pid, cmd in data.get("procs", []):
            # only a process that still runs the command we recorded is ours
            # (after `ip netns exec` the process runs the tail of the recorded command)
            live_cmd = _cmdline(pid)
            if _alive(pid) and live_cmd and cmd.endswith(live_cmd):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in list_netns():
            if ns.startswith(f"{NS_PREFIX}{rid}-") or ns.startswith(f"{NS_PREFIX}{rid}."):
                run_cmd(["ip", "netns", "delete", ns], what=f"deleting stale namespace {ns}",
                        check=False)
                removed.append(ns)
        try:
            f.unlink()
        except FileNotFoundError:
            pass
    return removed


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
