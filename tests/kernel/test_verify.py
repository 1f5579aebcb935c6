"""kernel.verify: order of runs, the model's `until`, deviations; and kernel-vs-kernel parity."""

from __future__ import annotations

from pathlib import Path

import pytest

from conntrace.kernel import run_on_kernel
from conntrace.kernel.testing import require_kernel
from conntrace.kernel.verify import verify
from conntrace.scenario.compare import DISAGREE, KNOWN, render_comparison
from conntrace.scenario.outcome import HostOutcome, RunOutcome, StepOutcome

HERE = Path(__file__).parent
NAT = HERE / "scenarios" / "nat.yaml"


def _canned(source: str, result: str = "connected", elapsed: float = 2.5) -> RunOutcome:
    steps = [StepOutcome(1, "tcp_connect", "client", result, local_addr="10.0.1.2", local_port=41000),
             StepOutcome(2, "tcp_connect", "client", "connected", local_addr="10.0.1.2",
                         local_port=50000),
             StepOutcome(3, "udp", "client", "reply", replies=2, sent=2, local_addr="10.0.1.2",
                         local_port=50001)]
    hosts = {h: HostOutcome() for h in ("client", "gw", "server")}
    hosts["gw"].counters = {"nat/PREROUTING/1": (1, 60)}
    return RunOutcome("dnat-and-masquerade", source, steps, hosts, elapsed=elapsed)


def test_kernel_first_then_model_up_to_the_same_time(tmp_path):
    calls = []

    def kernel_runner(sc, **kw):
        calls.append(("kernel", kw["workdir"], kw["trace"]))
        return _canned("kernel", elapsed=2.5)

    def model_runner(sc, until):
        calls.append(("model", until))
        return _canned("model", elapsed=until)

    c, m, k = verify(NAT, model_runner, workdir=tmp_path, trace=True, kernel_runner=kernel_runner)
    assert calls == [("kernel", tmp_path, True), ("model", 2.5)]
    assert (m.source, k.source) == ("model", "kernel") and c.ok
    assert "within 1 s" in c.notes[0]


def test_a_model_runner_without_until_is_noted_and_deviations_apply(tmp_path):
    dev = tmp_path / "dev.md"
    dev.write_text("| id | area | match | reason |\n|---|---|---|---|\n"
                   "| X1 | step | `step/1/result` | test deviation |\n")
    c, _, _ = verify(NAT, lambda sc: _canned("model", result="timeout", elapsed=0.0),
                     deviations_path=dev, workdir=tmp_path,
                     kernel_runner=lambda sc, **kw: _canned("kernel"))
    item = next(i for i in c.items if i.key == "step/1/result")
    assert (item.status, item.deviation, item.model, item.kernel) == (KNOWN, "X1", "timeout",
                                                                       "connected")
    assert any("takes no `until`" in n for n in c.notes)
    c, _, _ = verify(NAT, lambda sc: _canned("model", result="timeout"), workdir=tmp_path,
                     kernel_runner=lambda sc, **kw: _canned("kernel"))
    assert next(i for i in c.items if i.key == "step/1/result").status == DISAGREE


@pytest.mark.kernel
def test_the_kernel_agrees_with_itself(tmp_path):
    """Two kernel runs differ only in random ports: the comparison must see no difference."""
    require_kernel()
    first = {}

    def kernel_as_model(sc, until):
        first["out"] = run_on_kernel(sc, workdir=tmp_path / "first", timeout=60)
        return first["out"]

    c, m, k = verify(NAT, kernel_as_model, workdir=tmp_path / "second", timeout=60)
    assert c.ok and c.count(KNOWN) == 0, render_comparison(c)
    # the ephemeral ports really were different numbers, compared as symbols
    assert m.steps[1].local_port != k.steps[1].local_port or m.steps[2].local_port != k.steps[2].local_port
    keys = {i.key for i in c.items}
    assert "gw/conntrack/tcp 10.0.1.2:eph2 > 10.0.1.1:8081/reply" in keys
