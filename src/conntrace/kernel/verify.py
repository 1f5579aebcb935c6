"""`conntrace verify`: run a scenario on the model and on the kernel, and compare."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Callable

from ..scenario.compare import Comparison, compare, load_deviations
from ..scenario.load import load_scenario
from ..scenario.model import Scenario
from ..scenario.outcome import RunOutcome
from .runner import run_on_kernel

# docs/deviations.md of the source tree, when conntrace runs from a checkout
DEFAULT_DEVIATIONS = Path(__file__).resolve().parents[3] / "docs" / "deviations.md"

# model_runner(scenario, until): run the model up to virtual time `until` (the kernel run's
# elapsed seconds, so that both tables are read at the same moment). A runner that takes
# only the scenario is accepted too; the comparison then notes that the clocks differ.
ModelRunner = Callable[..., RunOutcome]


def verify(scenario_path: str | Path, model_runner: ModelRunner, *,
           workdir: str | Path | None = None, deviations_path: str | Path | None = None,
           trace: bool = False, capture: bool = True, timeout: float | None = None,
           kernel_runner: Callable[..., RunOutcome] = run_on_kernel,
           ) -> tuple[Comparison, RunOutcome, RunOutcome]:
    """Load the scenario, run it on the kernel, then on the model up to the same time; compare.

    `deviations_path` defaults to docs/deviations.md when it exists; `kernel_runner` is
    there so that a recorded kernel outcome can stand in for a live run.
    """
    sc = load_scenario(scenario_path)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="conntrace-verify-"))
    kernel_outcome = kernel_runner(sc, workdir=Path(workdir), trace=trace, capture=capture,
                                   timeout=timeout)
    model_outcome, same_clock = _run_model(model_runner, sc, kernel_outcome.elapsed)
    dev_path = Path(deviations_path) if deviations_path else DEFAULT_DEVIATIONS
    deviations = load_deviations(dev_path) if (deviations_path or dev_path.exists()) else []
    cmp = compare(model_outcome, kernel_outcome, sc, deviations)
    if not same_clock:
        cmp.notes.append("the model runner takes no `until`: it ran to its own end, so "
                         "entries that expired in between differ")
    return cmp, model_outcome, kernel_outcome


def _run_model(runner: ModelRunner, sc: Scenario, until: float) -> tuple[RunOutcome, bool]:
    try:
        params = inspect.signature(runner).parameters
    except (TypeError, ValueError):
        params = {}
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if "until" in params or len(positional) >= 2 or any(
            p.kind == p.VAR_POSITIONAL for p in params.values()):
        return (runner(sc, until=until) if "until" in params else runner(sc, until)), True
    return runner(sc), False
