"""CONNMARK: the conntrack mark (net/netfilter/xt_connmark.c connmark_tg_shift, revision 2).

- set:     ct->mark = ((ct->mark & ~ctmask) ^ ctmark) shifted
- save:    ct->mark = (ct->mark & ~ctmask) ^ ((skb->mark & nfmask) shifted)
- restore: skb->mark = (skb->mark & ~nfmask) ^ ((ct->mark & ctmask) shifted)

No conntrack on the packet (untracked, INVALID): nothing happens. A changed ct mark caches
the IPCT_MARK event (nf_conntrack_event_cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ...netfilter.effects import Note
from ...netfilter.verdict import CONTINUE, Verdict
from ..ext import ExtParseError, ExtUnsupported, Opt, OptionSpec, ParseContext, TargetExt, register_target
from ._common import U32_MAX, arg, check_exclusive, check_plain, check_table_hook, parse_uint
from .mark import xmark_from_option

if TYPE_CHECKING:
    from ...netfilter.context import EvalContext

_SET_OPS = ("--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark")
_OPS = _SET_OPS + ("--save-mark", "--restore-mark")
_MODES = ("set", "save", "restore")


@register_target
@dataclass(frozen=True)
class ConnmarkTarget(TargetExt):
    mode: str  # "set", "save" or "restore"
    ctmark: int = 0
    ctmask: int = U32_MAX
    nfmask: int = U32_MAX
    shift_left: bool = True
    shift_bits: int = 0

    name: ClassVar[str] = "CONNMARK"
    needs_conntrack: ClassVar[bool] = True
    options: ClassVar[tuple[OptionSpec, ...]] = (
        *(OptionSpec(n) for n in _SET_OPS),
        OptionSpec("--save-mark", nargs=0), OptionSpec("--restore-mark", nargs=0),
        OptionSpec("--ctmask"), OptionSpec("--nfmask"), OptionSpec("--mask"),
        OptionSpec("--left-shift-mark"), OptionSpec("--right-shift-mark"),
    )

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"CONNMARK mode must be one of {_MODES}")

    @classmethod
    def parse(cls, opts: Sequence[Opt], pctx: ParseContext) -> "ConnmarkTarget":
        check_table_hook(cls, pctx)
        check_plain(cls.name, opts)
        check_exclusive(cls.name, opts, _OPS)
        check_exclusive(cls.name, opts, ("--mask", "--ctmask"))
        check_exclusive(cls.name, opts, ("--mask", "--nfmask"))
        mode = None
        ctmark, ctmask, nfmask = 0, U32_MAX, U32_MAX
        left, bits = True, 0
        # In option order, like libxt_CONNMARK: --set-mark after --mask overrides the mask.
        for o in opts:
            a = arg(o)
            if o.name in _SET_OPS:
                mode = "set"
                ctmark, ctmask = xmark_from_option(o.name, a, cls.name)
            elif o.name == "--save-mark":
                mode = "save"
            elif o.name == "--restore-mark":
                mode = "restore"
            elif o.name == "--mask":
                nfmask = ctmask = parse_uint(a, "--mask")
            elif o.name == "--ctmask":
                ctmask = parse_uint(a, "--ctmask")
            elif o.name == "--nfmask":
                nfmask = parse_uint(a, "--nfmask")
            else:  # --left-shift-mark / --right-shift-mark
                bits = parse_uint(a, f"{o.name}", 0, 32)
                left = o.name == "--left-shift-mark"
                if bits == 32:
                    raise ExtUnsupported(o.name, "a 32-bit shift of a u32 is undefined in C")
        if mode is None:
            raise ExtParseError("no operation specified (expected --set-xmark, "
                                "--set-mark, --and-mark, --or-mark, --xor-mark, --save-mark or "
                                "--restore-mark)")
        if mode == "set":
            nfmask = U32_MAX  # not used by set, not printed by iptables-save
        if bits == 0:
            left = True
        return cls(mode, ctmark, ctmask, nfmask, left, bits)

    def render(self) -> list[str]:
        if self.mode == "set":
            out = ["--set-xmark", f"0x{self.ctmark:x}/0x{self.ctmask:x}"]
        else:
            out = [f"--{self.mode}-mark", "--nfmask", f"0x{self.nfmask:x}",
                   "--ctmask", f"0x{self.ctmask:x}"]
        if self.shift_bits:
            out += ["--left-shift-mark" if self.shift_left else "--right-shift-mark",
                    str(self.shift_bits)]
        return out

    def _shift(self, value: int) -> int:
        value = value << self.shift_bits if self.shift_left else value >> self.shift_bits
        return value & U32_MAX

    def apply(self, ctx: "EvalContext") -> Verdict:
        ct = ctx.ct
        meta = ctx.pkt.meta
        if ct is None:
            ctx.emit(Note(f"CONNMARK --{self.mode}: the packet has no conntrack, nothing done"))
            return CONTINUE
        if self.mode == "restore":
            meta.mark = (meta.mark & ~self.nfmask & U32_MAX) ^ self._shift(ct.mark & self.ctmask)
            return CONTINUE
        if self.mode == "set":
            new = self._shift((ct.mark & ~self.ctmask & U32_MAX) ^ self.ctmark)
        else:
            new = (ct.mark & ~self.ctmask & U32_MAX) ^ self._shift(meta.mark & self.nfmask)
        if new != ct.mark:
            old = ct.mark
            ct.mark = new
            ct.ecache.add("MARK")
            ctx.emit(Note(f"ct mark 0x{old:x} -> 0x{new:x}", {"ct_mark": new}))
        return CONTINUE
