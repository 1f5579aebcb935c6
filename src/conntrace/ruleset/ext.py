"""The extension API: each match and target is one small class with parse / evaluate / render.

How the parser hands options to an extension (mirrors iptables' getopt handling):
- The rule's tokens are read left to right. `-m NAME` loads a match; `-j NAME` the target;
  `-p tcp|udp|icmp` loads the protocol's match implicitly when one of its options appears.
- An option token (`--dport`) is offered to the loaded extensions, most recently loaded first
  (the target last), and consumed by the first whose `options` lists it. The spec says how
  many arguments follow and whether a `!` before it (or, old style, after it) inverts it.
- The extension's `parse` then receives every `Opt` it consumed, in order, and builds a
  frozen instance (or raises `ExtParseError` with a message; the parser adds file:line).
- `render` returns the canonical iptables-save tokens after `-m NAME` / `-j NAME`, so
  parse(render(x)) == x.

Evaluation gets an `EvalContext` (netfilter/context.py): packet, hook, devices, host, clock,
RNG, conntrack attachment and a place for per-rule runtime state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

if TYPE_CHECKING:
    from ..netfilter.context import EvalContext
    from ..netfilter.verdict import Verdict


class ExtParseError(Exception):
    """An option value an extension cannot accept; the message says what was expected."""


class ExtUnsupported(Exception):
    """Raised by `parse` for an option the extension recognises but does not model.

    The parser then keeps the whole match/target verbatim as an Unsupported* item and
    reports `option` (e.g. "--hashlimit-htable-gcinterval") with file:line; it never fails."""

    def __init__(self, option: str, detail: str = ""):
        self.option = option
        self.detail = detail
        super().__init__(f"{option}: {detail}" if detail else option)


class SaveString(str):
    """A token `render` returns for a value iptables-save prints with xtables_save_string
    (comment, log prefix...): the writer double-quotes it unless it is [A-Za-z0-9_-]+,
    escaping `"`, `\\` and `'` (libxtables/xtables.c)."""


@dataclass(frozen=True)
class OptionSpec:
    name: str  # "--dport"
    nargs: int = 1  # 0, 1 or 2 (e.g. --tcp-flags MASK COMP)
    invertible: bool = False
    aliases: tuple[str, ...] = ()  # e.g. ("--destination-port",)
    # options whose argument is optional (e.g. recent --rsource): nargs=0 and this False
    repeatable: bool = False

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Opt:
    """One option as written in the rule, already resolved to its canonical name."""

    name: str
    args: tuple[str, ...]
    inverted: bool = False
    written: str = ""  # the spelling used (alias), for messages


@dataclass(frozen=True)
class ParseContext:
    """What an extension may need to know while parsing."""

    family: int  # 4 or 6
    table: str
    chain: str
    proto: int | None  # from -p, None when absent
    proto_inverted: bool = False


class Extension(ABC):
    name: ClassVar[str]
    options: ClassVar[tuple[OptionSpec, ...]] = ()
    # Families this extension exists for (icmp is IPv4 only, icmp6 IPv6 only)
    families: ClassVar[frozenset[int]] = frozenset({4, 6})
    # Conntrack must be switched on in the netns when a rule uses this (nf_ct_netns_get).
    needs_conntrack: ClassVar[bool] = False

    @classmethod
    def option_spec(cls, token: str) -> OptionSpec | None:
        for spec in cls.options:
            if token in spec.names():
                return spec
        return None

    @classmethod
    @abstractmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "Extension":
        ...

    @abstractmethod
    def render(self) -> list[str]:
        ...


class MatchExt(Extension):
    """A `-m` match. Instances are frozen dataclasses: equality means same rule."""

    # Built-in chains (hooks) the kernel allows this match in (xt_match.hooks); None: any.
    valid_hooks: ClassVar[frozenset[str] | None] = None

    @abstractmethod
    def matches(self, ctx: "EvalContext") -> bool:
        ...

    def hook_error(self, hooks: frozenset[str]) -> str | None:
        """The kernel's load-time refusal (xt_check_match / checkentry) when this match sits
        in a chain reachable from `hooks` (built-in chain names), else None. `parse` already
        checks rules written in a built-in chain; a loader that knows which hooks reach a
        user chain calls this for the rules of that chain."""
        if self.valid_hooks is None or hooks <= self.valid_hooks:
            return None
        order = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
        used = "/".join(h for h in order if h in hooks)
        valid = "/".join(h for h in order if h in self.valid_hooks)
        return f"{self.name} match: used from hooks {used}, but only valid from {valid}"


class TargetExt(Extension):
    """A `-j` target. `terminal` says whether it ends the traversal (for lint's reachability)."""

    terminal: ClassVar[bool] = False
    # Tables / built-in chains the kernel allows this target in; None: anywhere.
    valid_tables: ClassVar[frozenset[str] | None] = None
    valid_hooks: ClassVar[frozenset[str] | None] = None

    @abstractmethod
    def apply(self, ctx: "EvalContext") -> "Verdict":
        ...


MATCHES: dict[str, type[MatchExt]] = {}
TARGETS: dict[str, type[TargetExt]] = {}


def register_match(cls: type[MatchExt]) -> type[MatchExt]:
    MATCHES[cls.name] = cls
    return cls


def register_target(cls: type[TargetExt]) -> type[TargetExt]:
    TARGETS[cls.name] = cls
    return cls


def load_all() -> None:
    """Import every extension module so the registries are complete."""
    from . import matches, targets  # noqa: F401  (registration happens on import)


@dataclass(frozen=True)
class UnsupportedMatch(MatchExt):
    """A match we do not model, kept verbatim so it renders back and is reported."""

    name_: str
    tokens: tuple[str, ...]
    name: ClassVar[str] = "<unsupported>"

    @classmethod
    def parse(cls, opts, pctx):  # pragma: no cover - built by the parser directly
        raise NotImplementedError

    def render(self) -> list[str]:
        return list(self.tokens)

    def matches(self, ctx: "EvalContext") -> bool:
        # Reaching here at all is reported by the traversal; the rule is treated as not
        # matching and the whole result is flagged uncertain.
        ctx.mark_uncertain(f"match '{self.name_}' is not modelled")
        return False


@dataclass(frozen=True)
class UnsupportedTarget(TargetExt):
    name_: str
    tokens: tuple[str, ...]
    name: ClassVar[str] = "<unsupported>"

    @classmethod
    def parse(cls, opts, pctx):  # pragma: no cover
        raise NotImplementedError

    def render(self) -> list[str]:
        return list(self.tokens)

    def apply(self, ctx: "EvalContext") -> "Verdict":
        from ..netfilter.verdict import CONTINUE

        ctx.mark_uncertain(f"target '{self.name_}' is not modelled; treated as CONTINUE")
        return CONTINUE
