"""Pytest helpers for tests that need the real kernel (tests/kernel, the parity suite).

Kernel tests carry `@pytest.mark.kernel`. They skip, with the reason, when we are not root
or `ip netns` does not work; but under `CI=true` as root a skipped kernel test is reported
as a failure, so a broken CI machine cannot pass silently. Wire it up in a conftest.py:

    from conntrace.kernel.testing import kernel_required, pytest_runtest_makereport  # noqa
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache

import pytest

TOOLS = ("ip", "setpriv", "sysctl", "iptables", "iptables-restore", "iptables-save", "conntrack",
         "tcpdump", "xtables-monitor", "ipset")


@lru_cache(maxsize=1)
def kernel_skip_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root (network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"kernel tests need {', '.join(missing)}"
    try:
        cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns list` failed: {e}"
    if cp.returncode != 0:
        return f"`ip netns` is unavailable: {cp.stderr.strip()}"
    return None


def skip_is_failure() -> bool:
    """Under CI=true as root every kernel test must run."""
    return os.environ.get("CI", "").lower() == "true" and os.geteuid() == 0


def require_kernel() -> None:
    reason = kernel_skip_reason()
    if reason is not None:
        if skip_is_failure():
            pytest.fail(f"kernel test cannot run under CI=true as root: {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def kernel_required(request):
    """Autouse: a test marked `kernel` runs only where the kernel harness can."""
    if request.node.get_closest_marker("kernel") is not None:
        require_kernel()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and item.get_closest_marker("kernel") is not None and skip_is_failure():
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"kernel test skipped under CI=true as root (not allowed): {reason}"
