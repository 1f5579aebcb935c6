"""`conntrace verify`: run a scenario on the model and on the kernel, and compare."""

from __future__ import annotations

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

ModelRunner = Callable[[Scenario], RunOutcome]


def verify(scenario_path: str | Path, model_runner: ModelRunner, *,
           workdir: str | Path | None = None, deviations_path: str | Path | None = None,
           trace: bool = False, capture: bool = True, timeout: float | None = None,
           kernel_runner: Callable[..., RunOutcome] = run_on_kernel,
           ) -> tuple[Comparison, RunOutcome, RunOutcome]:
    """Load the scenario, run `model_runner(scenario)` and the kernel harness, compare.

    `deviations_path` defaults to docs/deviations.md when it exists; `kernel_runner` is
    there so that a recorded kernel outcome can stand in for a live run.
    """
    sc = load_scenario(scenario_path)
    model_outcome = model_runner(sc)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="conntrace-verify-"))
    kernel_outcome = kernel_runner(sc, workdir=Path(workdir), trace=trace, capture=capture,
                                   timeout=timeout)
    dev_path = Path(deviations_path) if deviations_path else DEFAULT_DEVIATIONS
    deviations = load_deviations(dev_path) if (deviations_path or dev_path.exists()) else []
    return compare(model_outcome, kernel_outcome, sc, deviations), model_outcome, kernel_outcome
