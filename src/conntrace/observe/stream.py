"""Observers that render a scenario run as it happens (bounded memory for long runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .conntrack_tools import format_ct_event
from .render_text import path_summary

HEADER = f"{'time':>10}  {'host':<10} {'packet':<58} {'fate':<22} path"


class RunPrinter:
    """One line per packet walk and per conntrack event, in time order."""

    def __init__(self, emit: Callable[[str], None], events: bool = True,
                 timestamps: bool = False) -> None:
        self.emit = emit
        self.events = events
        self.timestamps = timestamps
        self._header = False

    def _start(self) -> None:
        if not self._header:
            self._header = True
            self.emit(HEADER)

    def on_trace(self, t) -> None:
        self._start()
        f = t.fate
        fate = f"{f.result} {f.out_iface}" if f.out_iface else f.result
        if f.result in ("dropped", "rejected", "no-route"):
            fate = f"{f.result} @ {f.where}"
        self.emit(f"{t.time:10.4f}  {t.host:<10} {t.packet:<58} {fate:<22} {path_summary(t)}")

    def on_ct_event(self, host: str, ev) -> None:
        if not self.events:
            return
        self._start()
        line = format_ct_event(ev, timestamps=self.timestamps)
        self.emit(f"{ev.time:10.4f}  {host:<10} conntrack -E: {line.strip()}")


class CaptureDir:
    """One pcap per interface of what crossed it (as `tcpdump -i IF` would show it)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writers: dict = {}
        self.paths: list[str] = []

    def on_frame(self, f) -> None:
        from ..wire import encode_ether
        from .pcap import PcapWriter

        key = (f.host, f.iface)
        w = self.writers.get(key)
        if w is None:
            path = self.dir / f"{f.host}-{f.iface}.pcap"
            w = self.writers[key] = PcapWriter(path, nanosecond=True)
            self.paths.append(str(path))
        w.write(round(f.time * 1e9), encode_ether(f.packet, f.src_mac, f.dst_mac))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
