"""The namespace plan is pure data: check it without root."""

from __future__ import annotations

from conntrace.kernel.topology import plan_topology
from conntrace.scenario.load import parse_scenario

SC = """
hosts:
  a:
    interfaces:
      eth0: {mac: "02:00:00:00:00:0a", addresses: [10.0.0.1/24, 10.0.0.100/24]}
      lonely: {addresses: [10.7.0.1/24]}
    routes: ["default via 10.0.0.254"]
  b:
    interfaces:
      eth0: {addresses: [10.0.0.2/24]}
      eth1: {mtu: 9000, addresses: [10.1.0.2/24]}
  c:
    interfaces:
      eth0: {addresses: [10.1.0.3/24, "fd00::3/64"]}
  d:
    interfaces:
      eth0: {addresses: [10.1.0.4/24]}
links:
  - [a:eth0, b:eth0]
  - {segment: lan, members: [b:eth1, c:eth0, d:eth0]}
"""


def _plan():
    return plan_topology(parse_scenario(SC, "t.yaml"), "abc123")


def _argvs(cmds):
    return [" ".join(c.argv) for c in cmds]


def test_namespace_names_share_the_run_prefix():
    p = _plan()
    assert p.host_ns == {h: f"ctr-abc123-{h}" for h in "abcd"}
    assert set(p.helper_ns) == {"ctr-abc123.seg-lan", "ctr-abc123.stub"}
    adds = [c for c in _argvs(p.create) if c.startswith("ip netns add ")]
    assert sorted(a.split()[-1] for a in adds) == sorted(p.all_ns)


def test_every_device_is_made_inside_a_namespace():
    for c in _plan().create:
        argv = c.argv
        if "link" in argv and "add" in argv:
            assert argv[:3] == ("ip", "-n", argv[2]) and argv[2].startswith("ctr-abc123")
            if "veth" in argv:
                assert argv[argv.index("netns") + 1].startswith("ctr-abc123")


def test_veth_and_segment_peer_ends():
    p = _plan()
    assert p.peer_end[("a", "eth0")].ns == "ctr-abc123-b"
    assert p.peer_end[("a", "eth0")].mac == p.iface_mac[("b", "eth0")]
    seg = {p.peer_end[(h, i)].ns for h, i in (("b", "eth1"), ("c", "eth0"), ("d", "eth0"))}
    assert seg == {"ctr-abc123.seg-lan"}
    ports = {p.peer_end[(h, i)].ifname for h, i in (("b", "eth1"), ("c", "eth0"), ("d", "eth0"))}
    assert len(ports) == 3
    assert p.peer_end[("a", "lonely")].ns == "ctr-abc123.stub"


def test_addresses_in_order_mac_mtu_and_routes():
    cmds = _argvs(_plan().create)
    i1 = cmds.index("ip -n ctr-abc123-a addr add 10.0.0.1/24 dev eth0")
    i2 = cmds.index("ip -n ctr-abc123-a addr add 10.0.0.100/24 dev eth0")
    assert i1 < i2  # the first is the primary
    assert "ip -n ctr-abc123-a link set dev eth0 address 02:00:00:00:00:0a" in cmds
    assert "ip -n ctr-abc123-b link set dev eth1 mtu 9000" in cmds
    assert "ip -n ctr-abc123-c addr add fd00::3/64 dev eth0 nodad" in cmds
    assert _argvs(_plan().routes) == ["ip -n ctr-abc123-a route replace default via 10.0.0.254"]


def test_ipv6_is_switched_off_only_where_there_is_none():
    off = {c.argv[3] for c in _plan().create if "net.ipv6.conf.all.disable_ipv6=1" in c.argv}
    assert "ctr-abc123-c" not in off
    assert {"ctr-abc123-a", "ctr-abc123-b", "ctr-abc123-d", "ctr-abc123.seg-lan"} <= off
    nodad = {c.argv[3] for c in _plan().create if "net.ipv6.conf.all.accept_dad=0" in c.argv}
    assert nodad == {"ctr-abc123-c"} and _plan().ipv6_ns == ["ctr-abc123-c"]
