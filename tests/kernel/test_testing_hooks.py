"""conntrace.kernel.testing: a skipped kernel test fails under CI=true as root, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

from conntrace.kernel.testing import kernel_skip_reason

CONFTEST = "from conntrace.kernel.testing import kernel_required, pytest_runtest_makereport  # noqa\n"
TESTS = """import pytest

@pytest.mark.kernel
def test_kernel_skips():
    pytest.skip("no kernel here")

def test_plain_skips():
    pytest.skip("plain skip")

@pytest.mark.kernel
def test_kernel_runs():
    assert True
"""


def _run(tmp_path, ci: bool) -> str:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    kernel: needs the kernel\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                         str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=120)
    return cp.stdout


def test_skip_becomes_failure_only_for_kernel_tests_under_ci_as_root(tmp_path):
    out = _run(tmp_path, ci=True)
    assert "SKIPPED" in out and "plain skip" in out
    if os.geteuid() == 0:
        assert "FAILED test_inner.py::test_kernel_skips" in out
        assert "not allowed" in out and "no kernel here" in out
        verdict = "PASSED" if kernel_skip_reason() is None else "FAILED"
        assert f"{verdict} test_inner.py::test_kernel_runs" in out
    else:
        assert "FAILED" not in out


def test_without_ci_a_kernel_skip_stays_a_skip(tmp_path):
    out = _run(tmp_path, ci=False)
    assert "FAILED" not in out
    assert "no kernel here" in out
