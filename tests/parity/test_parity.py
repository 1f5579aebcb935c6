"""Model == kernel for every parity scenario (see conftest.py for the report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conntrace.api import run_scenario
from conntrace.kernel.verify import verify
from conntrace.scenario.compare import render_comparison

from .conftest import record

HERE = Path(__file__).parent / "scenarios"
SCENARIOS = sorted(HERE.glob("*/*.yaml"))


def _model(sc, until=None):
    return run_scenario(sc, until)[1]


@pytest.mark.kernel
@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.name}/{p.stem}" for p in SCENARIOS])
def test_model_matches_kernel(path: Path, tmp_path: Path) -> None:
    comparison, _model_out, _kernel_out = verify(path, _model, workdir=tmp_path)
    record(path.parent.name, path.stem, comparison)
    assert comparison.ok, "\n" + render_comparison(comparison)


def test_suite_is_big_enough() -> None:
    # issue 5: at least 80 scenarios, over every area
    assert len(SCENARIOS) >= 80, f"only {len(SCENARIOS)} parity scenarios"
