"""The harness side of an agent: start it in a namespace, send requests, wait (bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from .procs import ProcessTable, HarnessError

AGENT_SCRIPT = Path(__file__).with_name("agent.py")


class Agent:
    """One `ip netns exec NS python3 agent.py` process speaking JSON lines."""

    def __init__(self, ns: str, procs: ProcessTable, label: str):
        self.ns = ns
        self.label = label
        self._procs = procs
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition(self._lock)
        self._stderr: list[str] = []
        self.proc = procs.spawn(["ip", "netns", "exec", ns, sys.executable, "-I", "-u",
                                 str(AGENT_SCRIPT)], label=f"agent {label}",
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self._replies[msg.get("id")] = msg
                self._cond.notify_all()
        with self._cond:
            self._replies[-1] = {"ok": False, "error": "agent exited"}
            self._cond.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            if len(self._stderr) < 50:
                self._stderr.append(line.decode(errors="replace").rstrip())

    def send(self, op: str, **args) -> int:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        line = json.dumps({"id": rid, "op": op, **args}) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise HarnessError(f"agent {self.label} is gone{self._why()}") from None
        return rid

    def wait(self, rid: int, timeout: float) -> dict | None:
        """The reply to request `rid`, or None if it did not come within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                if -1 in self._replies:
                    raise HarnessError(f"agent {self.label} exited{self._why()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._replies.pop(rid)

    def call(self, op: str, timeout: float = 10.0, **args) -> dict:
        rid = self.send(op, **args)
        reply = self.wait(rid, timeout)
        if reply is None:
            raise HarnessError(f"agent {self.label} did not answer '{op}' within {timeout:g} s")
        return reply

    def _why(self) -> str:
        return f" ({self._stderr[-1]})" if self._stderr else ""

    def quit(self, timeout: float = 3.0) -> None:
        try:
            rid = self.send("quit")
            self.wait(rid, timeout)
        except HarnessError:
            pass
        self._procs.stop(self.proc, timeout=timeout)
