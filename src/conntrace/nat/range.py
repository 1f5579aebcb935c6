"""struct nf_nat_range2: what a NAT target asks for (include/uapi/linux/netfilter/nf_nat.h)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..packet import IPAddress


class Manip(Enum):
    SRC = "src"  # SNAT, MASQUERADE (POSTROUTING, INPUT)
    DST = "dst"  # DNAT, REDIRECT (PREROUTING, OUTPUT)


@dataclass(frozen=True)
class NatRange:
    """An address range and an optional port range. `min_addr is None` means "keep the
    address" (e.g. `--to-destination :8080` or REDIRECT, which fills it in at run time)."""

    min_addr: IPAddress | None = None
    max_addr: IPAddress | None = None
    min_port: int | None = None  # None: NF_NAT_RANGE_PROTO_SPECIFIED not set
    max_port: int | None = None
    random: bool = False  # NF_NAT_RANGE_PROTO_RANDOM
    random_fully: bool = False  # NF_NAT_RANGE_PROTO_RANDOM_FULLY
    persistent: bool = False  # NF_NAT_RANGE_PERSISTENT
    # NF_NAT_RANGE_PROTO_OFFSET: DNAT --to-destination a:1000-2000/3000 (base port)
    base_port: int | None = None

    @property
    def map_ips(self) -> bool:
        return self.min_addr is not None

    @property
    def proto_specified(self) -> bool:
        return self.min_port is not None


@dataclass(frozen=True)
class NatRequest:
    """What a NAT target hands to the NAT engine via `EvalContext.nat_setup`.

    kind says how the concrete range is completed at the hook: DNAT/SNAT use `range` as
    written; MASQUERADE picks the out device's source; REDIRECT the in device's primary
    address (127.0.0.1 from OUTPUT); NETMAP maps the prefix 1:1."""

    kind: str  # "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP"
    manip: Manip
    range: NatRange
    netmap_prefix: object = None  # ipaddress network for NETMAP
