"""Helpers to write small scenarios inline."""

from __future__ import annotations

import textwrap

import pytest

from conntrace.api import run_scenario
from conntrace.scenario.load import parse_scenario

ROUTER_HOSTS = """
hosts:
  client:
    interfaces:
      eth0: {mac: "02:00:00:00:01:02", addresses: [10.0.1.2/24]}
    routes: ["default via 10.0.1.1"]
  gw:
    interfaces:
      eth0: {mac: "02:00:00:00:01:01", addresses: [10.0.1.1/24]}
      eth1: {mac: "02:00:00:00:02:01", addresses: [10.0.2.1/24]}
    sysctls: {net.ipv4.ip_forward: 1}
    rules: |
%(rules)s
  server:
    interfaces:
      eth0: {mac: "02:00:00:00:02:02", addresses: [10.0.2.2/24]}
    routes: ["default via 10.0.2.1"]
    listen:
      - {proto: tcp, port: 80}
      - {proto: udp, port: 53}
links:
  - [client:eth0, gw:eth0]
  - [gw:eth1, server:eth0]
"""


def scenario_text(rules: str, timeline: str, extra_top: str = "") -> str:
    rules_block = textwrap.indent(textwrap.dedent(rules).strip() + "\n", " " * 6)
    body = ROUTER_HOSTS % {"rules": rules_block.rstrip("\n")}
    return f"name: t\nseed: 1\n{extra_top}{body}timeline:\n{textwrap.indent(textwrap.dedent(timeline).strip(), '  ')}\n"


@pytest.fixture
def run():
    def _run(rules: str, timeline: str, until: float | None = None, extra_top: str = ""):
        sc = parse_scenario(scenario_text(rules, timeline, extra_top), "t.yaml")
        return run_scenario(sc, until)
    return _run
