"""Shared fixtures: a small host to evaluate rules against."""

from __future__ import annotations

import ipaddress

import pytest

from conntrace.host.host import Host
from conntrace.host.netdev import Interface


@pytest.fixture
def router() -> Host:
    """eth0 10.0.1.1/24 (+10.0.1.100) toward clients, eth1 10.0.2.1/24 toward servers."""
    h = Host("r")
    h.devices.add_interface(Interface("eth0", mac="02:00:00:00:01:01", addresses=[
        ipaddress.ip_interface("10.0.1.1/24"), ipaddress.ip_interface("10.0.1.100/24")]))
    h.devices.add_interface(Interface("eth1", mac="02:00:00:00:02:01", addresses=[
        ipaddress.ip_interface("10.0.2.1/24")]))
    h.sysctls.set("net.ipv4.ip_forward", 1)
    return h
