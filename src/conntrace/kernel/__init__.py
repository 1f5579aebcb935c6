"""The kernel harness: run a scenario on the real Linux kernel in network namespaces.

`run_on_kernel(scenario, workdir=...) -> RunOutcome` (runner.py); `verify(...)` (verify.py)
runs the model and the kernel and compares them (scenario/compare.py).
"""

from __future__ import annotations

from .procs import HarnessError


def run_on_kernel(scenario, *, workdir, trace: bool = False, capture: bool = True,
                  timeout: float | None = None):
    """Run `scenario` in fresh network namespaces; see runner.run_on_kernel."""
    from .runner import run_on_kernel as _run

    return _run(scenario, workdir=workdir, trace=trace, capture=capture, timeout=timeout)


__all__ = ["HarnessError", "run_on_kernel"]
