"""Kernel tests: skipped without root / `ip netns`, but a skip fails under CI=true as root."""

from conntrace.kernel.testing import kernel_required, pytest_runtest_makereport  # noqa: F401
