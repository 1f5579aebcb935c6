"""Fixtures for the ruleset tests."""

from __future__ import annotations

import pytest

from conntrace.ruleset import ext
from ruleset_helpers import XHookMatch, XTestMatch, XTestTarget


@pytest.fixture
def xt():
    """Register the test-only extensions for one test."""
    ext.load_all()
    saved = (dict(ext.MATCHES), dict(ext.TARGETS))
    ext.MATCHES["xtest"] = XTestMatch
    ext.MATCHES["xhook"] = XHookMatch
    ext.TARGETS["XTEST"] = XTestTarget
    yield
    ext.MATCHES.clear()
    ext.MATCHES.update(saved[0])
    ext.TARGETS.clear()
    ext.TARGETS.update(saved[1])
