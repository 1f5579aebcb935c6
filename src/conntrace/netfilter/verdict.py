"""Verdicts a target or chain can return (include/uapi/linux/netfilter.h, x_tables XT_RETURN)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class VerdictKind(Enum):
    CONTINUE = "CONTINUE"  # non-terminating target (XT_CONTINUE): go on with the next rule
    ACCEPT = "ACCEPT"  # ends this table's traversal for this hook; the next callback runs
    DROP = "DROP"  # ends the whole hook; the packet is freed
    RETURN = "RETURN"  # back to the calling chain (or the policy of a built-in chain)
    JUMP = "JUMP"  # -j USERCHAIN
    GOTO = "GOTO"  # -g USERCHAIN
    QUEUE = "QUEUE"  # NFQUEUE: userspace; not modelled beyond the verdict
    STOLEN = "STOLEN"  # the target consumed the packet (e.g. TPROXY to a socket is still ACCEPT)


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    chain: str | None = None  # for JUMP/GOTO
    reason: str = ""

    @property
    def terminal(self) -> bool:
        return self.kind in (VerdictKind.ACCEPT, VerdictKind.DROP, VerdictKind.QUEUE,
                             VerdictKind.STOLEN)

    def __str__(self) -> str:
        if self.chain:
            return f"{self.kind.value} {self.chain}"
        return self.kind.value


CONTINUE = Verdict(VerdictKind.CONTINUE)
ACCEPT = Verdict(VerdictKind.ACCEPT)
DROP = Verdict(VerdictKind.DROP)
RETURN = Verdict(VerdictKind.RETURN)
