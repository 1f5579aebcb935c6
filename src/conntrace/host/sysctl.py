"""Per-netns sysctls the model reads, with the kernel's names and defaults.

Conntrack defaults: /proc/sys/net/netfilter on Linux 6.18 (reference §3), sources
net/netfilter/nf_conntrack_proto_{tcp,udp,icmp,generic}.c and nf_conntrack_standalone.c.
"""

from __future__ import annotations

from ..errors import InputError

DEFAULT_SYSCTLS: dict[str, int | str] = {
    "net.ipv4.ip_forward": 0,
    "net.ipv4.conf.all.forwarding": 0,
    "net.ipv4.ip_local_port_range": "32768 60999",
    "net.ipv4.conf.all.route_localnet": 0,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.tcp_syn_retries": 6,
    "net.ipv4.tcp_syn_linear_timeouts": 4,
    "net.ipv4.tcp_fin_timeout": 60,
    "net.netfilter.nf_conntrack_max": 262144,
    "net.netfilter.nf_conntrack_buckets": 262144,
    "net.netfilter.nf_conntrack_acct": 0,
    "net.netfilter.nf_conntrack_checksum": 1,
    "net.netfilter.nf_conntrack_events": 2,
    "net.netfilter.nf_conntrack_timestamp": 0,
    "net.netfilter.nf_conntrack_log_invalid": 0,
    "net.netfilter.nf_conntrack_tcp_loose": 1,
    "net.netfilter.nf_conntrack_tcp_be_liberal": 0,
    "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst": 0,
    "net.netfilter.nf_conntrack_tcp_max_retrans": 3,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv": 60,
    "net.netfilter.nf_conntrack_tcp_timeout_established": 432000,
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 60,
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": 30,
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_close": 10,
    "net.netfilter.nf_conntrack_tcp_timeout_max_retrans": 300,
    "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged": 300,
    "net.netfilter.nf_conntrack_udp_timeout": 30,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 120,
    "net.netfilter.nf_conntrack_icmp_timeout": 30,
    "net.netfilter.nf_conntrack_icmpv6_timeout": 30,
    "net.netfilter.nf_conntrack_generic_timeout": 600,
    "net.netfilter.nf_log_all_netns": 0,
    # REJECT / icmp_send (net/ipv4/icmp.c, nf_reject_ipv4.c); defaults read on 6.18
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv4.fwmark_reflect": 0,
    "net.ipv4.icmp_errors_use_inbound_ifaddr": 0,
    "net.ipv4.icmp_ratelimit": 1000,
    "net.ipv4.icmp_ratemask": 6168,
    "net.ipv4.icmp_msgs_per_sec": 1000,
    "net.ipv4.icmp_msgs_burst": 50,
}

# Per-interface keys are accepted with any interface name in place of "all"/"default".
_PER_IFACE_PREFIXES = ("net.ipv4.conf.", "net.ipv6.conf.")


class Sysctls:
    """A namespace's sysctls. Unknown keys are refused, so typos are caught."""

    def __init__(self, values: dict[str, int | str] | None = None):
        self._values: dict[str, int | str] = dict(DEFAULT_SYSCTLS)
        for k, v in (values or {}).items():
            self.set(k, v)

    @staticmethod
    def normalise(key: str) -> str:
        key = key.strip().replace("/", ".")
        if key.startswith("proc.sys."):
            key = key[len("proc.sys."):]
        return key

    def known(self, key: str) -> bool:
        return key in DEFAULT_SYSCTLS or key.startswith(_PER_IFACE_PREFIXES)

    def set(self, key: str, value: int | str) -> None:
        key = self.normalise(key)
        if not self.known(key):
            raise InputError(f"unknown sysctl '{key}' (known: net.ipv4.ip_forward, "
                             "net.netfilter.nf_conntrack_*, net.ipv4.conf.<if>.*, ...)")
        default = DEFAULT_SYSCTLS.get(key, 0)
        if isinstance(default, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise InputError(f"sysctl '{key}' expects an integer, got {value!r}") from None
        self._values[key] = value
        # ip_forward and conf.all.forwarding are the same switch in the kernel
        if key == "net.ipv4.ip_forward":
            self._values["net.ipv4.conf.all.forwarding"] = value
        elif key == "net.ipv4.conf.all.forwarding":
            self._values["net.ipv4.ip_forward"] = value

    def get(self, key: str) -> int | str:
        hit = self._values.get(key)
        if hit is not None:
            return hit
        key = self.normalise(key)
        if key in self._values:
            return self._values[key]
        if key.startswith(_PER_IFACE_PREFIXES):
            # an interface's value defaults to conf.all / conf.default
            parts = key.split(".")
            for alt in ("all", "default"):
                k2 = ".".join(parts[:3] + [alt] + parts[4:])
                if k2 in self._values:
                    return self._values[k2]
            return 0
        raise KeyError(key)

    def get_int(self, key: str) -> int:
        v = self.get(key)
        return int(v)

    def forwarding(self, iface: str) -> bool:
        """IN_DEV_FORWARD: forwarding is per input device; ip_forward sets all of them."""
        k = f"net.ipv4.conf.{iface}.forwarding"
        if k in self._values:
            return bool(int(self._values[k]))
        return bool(self.get_int("net.ipv4.ip_forward"))

    def port_range(self) -> tuple[int, int]:
        lo, hi = str(self.get("net.ipv4.ip_local_port_range")).split()
        return int(lo), int(hi)

    def items(self) -> list[tuple[str, int | str]]:
        return sorted(self._values.items())
