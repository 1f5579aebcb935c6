"""Read routes as `ip route` prints them (text and `ip -j route` JSON)."""

from __future__ import annotations

import ipaddress
import json

from ..errors import InputError
from .netdev import Route, RouteType

_TYPES = {t.name.lower(): t for t in RouteType}
# keywords of `ip route` output that take one argument and that we do not need
_SKIP1 = {"proto", "scope", "table", "realm", "realms", "mtu", "advmss", "rtt", "rttvar",
          "window", "cwnd", "initcwnd", "initrwnd", "expires", "pref", "onlink", "nhid",
          "quickack", "congctl", "features", "hoplimit", "ssthresh", "reordering", "tos", "dsfield"}
_FLAGS = {"onlink", "linkdown", "dead", "pervasive", "offload", "trap", "notify", "rt_offload"}


def _net(text: str, file: str | None, line: int | None):
    if text == "default":
        return ipaddress.ip_network("0.0.0.0/0")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InputError(f"expected a destination (default or A.B.C.D/LEN), got '{text}'",
                         file, line) from None


def parse_route_line(text: str, file: str | None = None, line: int | None = None) -> Route:
    """One line of `ip route` output (or an `ip route add` argument list)."""
    words = text.split()
    if words[:3] == ["ip", "route", "add"]:
        words = words[3:]
    if not words:
        raise InputError("empty route", file, line)
    rtype = RouteType.UNICAST
    if words[0] in _TYPES and len(words) > 1:
        rtype = _TYPES[words[0]]
        words = words[1:]
    route = Route(dst=_net(words[0], file, line), type=rtype)
    i = 1
    while i < len(words):
        w = words[i]
        arg = words[i + 1] if i + 1 < len(words) else None
        if w in _FLAGS:
            i += 1
            continue
        if arg is None:
            raise InputError(f"route '{text}': '{w}' needs a value", file, line)
        try:
            if w == "via":
                route.via = ipaddress.ip_address(arg.split()[-1])
            elif w == "dev":
                route.dev = arg
            elif w == "src":
                route.src = ipaddress.ip_address(arg)
            elif w == "metric":
                route.metric = int(arg)
            elif w == "table":
                route.table = arg
            elif w == "scope":
                route.scope = arg
            elif w == "proto":
                route.proto = arg
            elif w in _SKIP1:
                pass
            else:
                raise InputError(f"route '{text}': unknown keyword '{w}'", file, line)
        except ValueError:
            raise InputError(f"route '{text}': bad value '{arg}' for '{w}'", file, line) from None
        i += 2
    if route.type is RouteType.UNICAST and route.dev is None and route.via is None:
        raise InputError(f"route '{text}': expected 'via GATEWAY' or 'dev IFACE'", file, line)
    return route


def parse_ip_route_text(text: str, file: str = "<routes>") -> list[Route]:
    """`ip route` or `ip -j route` output; JSON is detected by its first character."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _parse_json(stripped, file)
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        out.append(parse_route_line(s, file, n))
    return out


def _parse_json(text: str, file: str) -> list[Route]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", file, e.lineno) from None
    if not isinstance(data, list):
        raise InputError("expected a JSON list of routes (ip -j route)", file, 1)
    out = []
    for i, r in enumerate(data):
        if not isinstance(r, dict) or "dst" not in r:
            raise InputError(f"route #{i + 1}: expected an object with 'dst'", file, 1)
        rtype = _TYPES.get(r.get("type", "unicast"), RouteType.UNICAST)
        route = Route(dst=_net(r["dst"], file, 1), type=rtype, dev=r.get("dev"),
                      metric=int(r.get("metric", 0)), table=str(r.get("table", "main")),
                      scope=r.get("scope"), proto=r.get("protocol"))
        if r.get("gateway"):
            route.via = ipaddress.ip_address(r["gateway"])
        if r.get("prefsrc"):
            route.src = ipaddress.ip_address(r["prefsrc"])
        out.append(route)
    return out
