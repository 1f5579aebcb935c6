"""Load a scenario YAML file into `scenario.model` objects, validating as we go."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ..errors import InputError
from ..packetspec import parse_addr_port, parse_packet_spec
from .model import (STEP_KINDS, HostSpec, IfaceSpec, LinkSpec, ListenerSpec, RouteSpec, Scenario,
                    Step, Where)
from .yamlsrc import Node, load_yaml

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
_IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")

TOP_KEYS = frozenset({"name", "description", "seed", "hosts", "links", "timeline", "run_until"})
HOST_KEYS = frozenset({"interfaces", "routes", "sysctls", "rules", "rules_file", "ipsets",
                       "ipsets_file", "listen"})
IFACE_KEYS = frozenset({"mac", "addresses", "mtu"})
LISTEN_KEYS = frozenset({"proto", "port", "addr", "uid", "gid", "echo", "transparent"})
STEP_COMMON = frozenset({"at", "name"})
STEP_KEYS = {
    "tcp_connect": frozenset({"from", "to", "sport", "src", "uid", "gid", "payload", "close",
                              "hold", "syn_retries", "count", "interval"}),
    "udp": frozenset({"from", "to", "sport", "src", "uid", "gid", "payload", "count", "interval"}),
    "ping": frozenset({"from", "to", "src", "count", "interval", "icmp_id", "payload", "uid", "gid"}),
    "packet": frozenset({"from", "host", "in", "spec"}),
    "replay": frozenset({"host", "in", "file"}),
    "conntrack_flush": frozenset({"host"}),
    "rules": frozenset({"host", "rules", "rules_file", "noflush"}),
    "sysctl": frozenset({"host", "set"}),
}


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file (expected a YAML scenario)", str(path)) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", str(path)) from None
    return parse_scenario(text, str(path), base_dir=p.parent)


def parse_scenario(text: str, file: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    root = load_yaml(text, file)
    root.check_keys(TOP_KEYS, required=("hosts",))
    base_dir = base_dir or Path(".")
    sc = Scenario(name=root.get("name").as_str() if root.get("name") else Path(file).stem,
                  file=file)
    if root.get("description"):
        sc.description = root.get("description").as_str()
    if root.get("seed") is not None:
        sc.seed = root.get("seed").as_int(0, 2**63)
    if root.get("run_until") is not None:
        sc.run_until = root.get("run_until").as_float()
    for name, hnode in root.get("hosts").as_map().items():
        if not _NAME_RE.match(name):
            raise hnode.error(f"host name '{name}' must be a short identifier (letters, digits, - _)")
        sc.hosts[name] = _host(name, hnode, base_dir)
    if root.get("links") is not None:
        for lnode in root.get("links").as_seq():
            sc.links.append(_link(lnode, sc))
    if root.get("timeline") is not None:
        for snode in root.get("timeline").as_seq():
            sc.steps.append(_step(snode, sc, base_dir))
    sc.steps.sort(key=lambda s: s.at)  # stable: same-time steps keep file order
    return sc


def _where(n: Node) -> Where:
    return Where(n.file, n.line)


def _read_side_file(node: Node, base_dir: Path) -> tuple[str, str]:
    rel = node.as_str()
    fp = (base_dir / rel) if not Path(rel).is_absolute() else Path(rel)
    try:
        return fp.read_text(encoding="utf-8"), str(fp)
    except (OSError, UnicodeDecodeError) as e:
        raise node.error(f"cannot read '{rel}': {getattr(e, 'strerror', None) or e}") from None


def _host(name: str, node: Node, base_dir: Path) -> HostSpec:
    if node.value is None:
        node.value = {}
    node.check_keys(HOST_KEYS)
    h = HostSpec(name=name, where=_where(node))
    ifs = node.get("interfaces")
    if ifs is not None:
        for ifname, inode in ifs.as_map().items():
            if not _IFNAME_RE.match(ifname):
                raise inode.error(f"interface name '{ifname}' is not valid (max 15 characters)")
            if inode.value is None:
                inode.value = {}
            inode.check_keys(IFACE_KEYS)
            mac = inode.get("mac").as_str() if inode.get("mac") else _auto_mac(name, ifname)
            if not _MAC_RE.match(mac):
                raise inode.get("mac").error(f"expected a MAC address like 02:00:00:00:00:01, got '{mac}'")
            addrs = []
            if inode.get("addresses") is not None:
                for an in inode.get("addresses").as_seq():
                    try:
                        a = ipaddress.ip_interface(an.as_str())
                    except ValueError:
                        raise an.error(f"expected ADDRESS/PREFIX, got '{an.value}'") from None
                    if "/" not in an.as_str():
                        raise an.error(f"give the prefix length, e.g. {an.value}/24")
                    addrs.append(a)
            mtu = inode.get("mtu").as_int(68, 65535) if inode.get("mtu") else 1500
            h.interfaces.append(IfaceSpec(ifname, mac.lower(), addrs, mtu))
    if node.get("routes") is not None:
        for rn in node.get("routes").as_seq():
            from ..host.iproute import parse_route_line  # local import: host layer
            parse_route_line(rn.as_str(), rn.file, rn.line)  # validate now
            h.routes.append(RouteSpec(rn.as_str(), _where(rn)))
    if node.get("sysctls") is not None:
        from ..host.sysctl import Sysctls
        probe = Sysctls()
        for k, v in node.get("sysctls").as_map().items():
            try:
                probe.set(k, v.plain())
            except InputError as e:
                raise v.error(e.message) from None
            h.sysctls[k] = v.plain()
    if node.get("rules") is not None and node.get("rules_file") is not None:
        raise node.error("give either 'rules' or 'rules_file', not both")
    if node.get("rules") is not None:
        h.rules = node.get("rules").as_str()
        h.rules_origin = node.file
        # a block scalar (`rules: |`) starts on the line after the key
        h.rules_line_offset = node.get("rules").line
    elif node.get("rules_file") is not None:
        h.rules, h.rules_origin = _read_side_file(node.get("rules_file"), base_dir)
    if node.get("ipsets") is not None:
        h.ipsets = node.get("ipsets").as_str()
    elif node.get("ipsets_file") is not None:
        h.ipsets, _ = _read_side_file(node.get("ipsets_file"), base_dir)
    if node.get("listen") is not None:
        for ln in node.get("listen").as_seq():
            ln.check_keys(LISTEN_KEYS, required=("proto", "port"))
            proto = ln.get("proto").as_str().lower()
            if proto not in ("tcp", "udp"):
                raise ln.get("proto").error(f"expected tcp or udp, got '{proto}'")
            addr = None
            if ln.get("addr") is not None and ln.get("addr").as_str() not in ("0.0.0.0", "*", "::"):
                try:
                    addr = ipaddress.ip_address(ln.get("addr").as_str())
                except ValueError:
                    raise ln.get("addr").error("expected an IP address") from None
            h.listeners.append(ListenerSpec(
                proto=proto, port=ln.get("port").as_int(1, 65535), addr=addr,
                uid=ln.get("uid").as_int(0) if ln.get("uid") else 0,
                gid=ln.get("gid").as_int(0) if ln.get("gid") else 0,
                echo=ln.get("echo").as_bool() if ln.get("echo") is not None else True,
                transparent=ln.get("transparent").as_bool() if ln.get("transparent") is not None else False,
                where=_where(ln)))
    return h


def _auto_mac(host: str, ifname: str) -> str:
    import hashlib

    d = hashlib.sha256(f"{host}/{ifname}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in d[:5])


def _end(n: Node, sc: Scenario) -> tuple[str, str]:
    text = n.as_str()
    if ":" not in text:
        raise n.error(f"expected HOST:INTERFACE, got '{text}'")
    host, ifname = text.split(":", 1)
    if host not in sc.hosts:
        raise n.error(f"unknown host '{host}'")
    if not any(i.name == ifname for i in sc.hosts[host].interfaces):
        raise n.error(f"host '{host}' has no interface '{ifname}'")
    return host, ifname


def _link(n: Node, sc: Scenario) -> LinkSpec:
    if n.is_seq():
        ends = [_end(e, sc) for e in n.as_seq()]
        if len(ends) != 2:
            raise n.error("a veth link joins exactly two ends: [hostA:ifA, hostB:ifB]")
        link = LinkSpec("veth", ends, where=_where(n))
    else:
        n.check_keys(frozenset({"segment", "members"}), required=("segment", "members"))
        ends = [_end(e, sc) for e in n.get("members").as_seq()]
        if len(ends) < 2:
            raise n.error("a segment needs at least two members")
        link = LinkSpec("segment", ends, name=n.get("segment").as_str(), where=_where(n))
    return link


def _host_ref(n: Node | None, sc: Scenario, what: str, parent: Node) -> str:
    if n is None:
        raise parent.error(f"missing '{what}' (a host name)")
    name = n.as_str()
    if name not in sc.hosts:
        raise n.error(f"unknown host '{name}' (hosts: {', '.join(sc.hosts)})")
    return name


def _step(n: Node, sc: Scenario, base_dir: Path) -> Step:
    m = n.as_map()
    kinds = [k for k in m if k in STEP_KINDS]
    if len(kinds) != 1:
        raise n.error(f"each timeline entry has 'at' and exactly one of: {', '.join(STEP_KINDS)}")
    kind = kinds[0]
    for k in m:
        if k not in STEP_COMMON and k != kind:
            raise m[k].error(f"unknown key '{k}' in a {kind} step")
    at = m["at"].as_float() if "at" in m else 0.0
    body = m[kind]
    where = _where(n)
    name = m["name"].as_str() if "name" in m else ""
    if kind == "conntrack_flush" and not body.is_map():
        return Step(at, kind, _host_ref(body, sc, "host", n), {}, where, name)
    if kind == "sysctl":
        body.check_keys(STEP_KEYS[kind], required=("host", "set"))
        host = _host_ref(body.get("host"), sc, "host", body)
        from ..host.sysctl import Sysctls
        probe = Sysctls()
        values = {}
        for k, v in body.get("set").as_map().items():
            try:
                probe.set(k, v.plain())
            except InputError as e:
                raise v.error(e.message) from None
            values[k] = v.plain()
        return Step(at, kind, host, {"set": values}, where, name)
    body.check_keys(STEP_KEYS[kind])
    a = body.as_map()
    args: dict = {}
    host: str | None = None
    if kind in ("tcp_connect", "udp", "ping"):
        host = _host_ref(a.get("from"), sc, "from", body)
        if "to" not in a:
            raise body.error("missing 'to'")
        want_port = kind != "ping"
        addr, port = parse_addr_port(a["to"].as_str(), want_port, f"{a['to'].file}:{a['to'].line}")
        args["dst"], args["dport"] = addr, port
        if "src" in a:
            try:
                args["src"] = ipaddress.ip_address(a["src"].as_str())
            except ValueError:
                raise a["src"].error("expected an IP address") from None
        if "sport" in a:
            args["sport"] = a["sport"].as_int(1, 65535)
        for k in ("uid", "gid"):
            if k in a:
                args[k] = a[k].as_int(0)
        if "payload" in a:
            args["payload"] = a["payload"].as_int(0, 65000)
        if kind == "tcp_connect":
            close = a["close"].as_str() if "close" in a else "fin"
            if close not in ("fin", "rst", "open"):
                raise a["close"].error(f"expected fin, rst or open, got '{close}'")
            args["close"] = close
            args["hold"] = a["hold"].as_float() if "hold" in a else 0.0
            if "syn_retries" in a:
                args["syn_retries"] = a["syn_retries"].as_int(0, 10)
            args["count"] = a["count"].as_int(1, 10_000_000) if "count" in a else 1
            args["interval"] = a["interval"].as_float() if "interval" in a else 0.01
            if args["count"] > 1 and "sport" in a:
                raise a["count"].error("a repeated tcp_connect takes its source ports from "
                                       "ip_local_port_range: drop 'sport'")
        else:
            args["count"] = a["count"].as_int(1, 100000) if "count" in a else 1
            args["interval"] = a["interval"].as_float() if "interval" in a else 1.0
            if kind == "ping" and "icmp_id" in a:
                args["icmp_id"] = a["icmp_id"].as_int(0, 65535)
    elif kind == "packet":
        if "spec" not in a:
            raise body.error("missing 'spec' (e.g. 'tcp 10.0.1.2:40000 > 10.0.2.2:80 syn')")
        spec_node = a["spec"]
        parse_packet_spec(spec_node.as_str(), f"{spec_node.file}:{spec_node.line}")
        args["spec"] = spec_node.as_str()
        if ("from" in a) == ("host" in a):
            raise body.error("give 'from: HOST' (sent by the host) or 'host: HOST' with 'in: IFACE' "
                             "(arrives on that interface)")
        if "from" in a:
            host = _host_ref(a["from"], sc, "from", body)
            args["mode"] = "send"
        else:
            host = _host_ref(a["host"], sc, "host", body)
            if "in" not in a:
                raise body.error("'host' needs 'in: IFACE' (the interface the packet arrives on)")
            args["mode"] = "inject"
            args["in"] = _iface_ref(a["in"], sc, host)
    elif kind == "replay":
        host = _host_ref(a.get("host"), sc, "host", body)
        if "in" not in a or "file" not in a:
            raise body.error("replay needs 'host', 'in' and 'file'")
        args["in"] = _iface_ref(a["in"], sc, host)
        fp = Path(a["file"].as_str())
        args["file"] = str(fp if fp.is_absolute() else base_dir / fp)
    elif kind == "conntrack_flush":
        host = _host_ref(a.get("host"), sc, "host", body)
    elif kind == "rules":
        host = _host_ref(a.get("host"), sc, "host", body)
        if ("rules" in a) == ("rules_file" in a):
            raise body.error("give either 'rules' or 'rules_file'")
        if "rules" in a:
            args["rules"], args["origin"] = a["rules"].as_str(), a["rules"].file
            args["line_offset"] = a["rules"].line
        else:
            args["rules"], args["origin"] = _read_side_file(a["rules_file"], base_dir)
        args["noflush"] = a["noflush"].as_bool() if "noflush" in a else False
    return Step(at, kind, host, args, where, name)


def _iface_ref(n: Node, sc: Scenario, host: str) -> str:
    name = n.as_str()
    if not any(i.name == name for i in sc.hosts[host].interfaces) and name != "lo":
        raise n.error(f"host '{host}' has no interface '{name}'")
    return name


def load_host_file(path: str | Path) -> HostSpec:
    """A host description on its own (`conntrace trace --host FILE`): the keys of a scenario
    host entry, plus an optional `name`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read host file: {getattr(e, 'strerror', None) or e}", str(path)) from None
    root = load_yaml(text, str(path))
    root.check_keys(HOST_KEYS | {"name"})
    name = root.get("name").as_str() if root.get("name") else "host"
    m = dict(root.as_map())
    m.pop("name", None)
    return _host(name, Node(m, root.file, root.line, ""), p.parent)
