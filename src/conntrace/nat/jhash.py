"""Bob Jenkins' lookup3 hash as the kernel's jhash2() computes it (include/linux/jhash.h),
used by find_best_ips_proto to spread clients over a NAT address range."""

from __future__ import annotations

JHASH_INITVAL = 0xDEADBEEF
_M = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M; a ^= _rol(c, 4); c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol(a, 6); a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol(b, 8); b = (b + a) & _M
    a = (a - c) & _M; a ^= _rol(c, 16); c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol(a, 19); a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol(b, 4); b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _M
    a ^= c; a = (a - _rol(c, 11)) & _M
    b ^= a; b = (b - _rol(a, 25)) & _M
    c ^= b; c = (c - _rol(b, 16)) & _M
    a ^= c; a = (a - _rol(c, 4)) & _M
    b ^= a; b = (b - _rol(a, 14)) & _M
    c ^= b; c = (c - _rol(b, 24)) & _M
    return c


def jhash2(words: list[int], initval: int) -> int:
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M
    k = list(words)
    while length > 3:
        a = (a + k[0]) & _M
        b = (b + k[1]) & _M
        c = (c + k[2]) & _M
        a, b, c = _mix(a, b, c)
        length -= 3
        k = k[3:]
    if length == 0:
        return c
    if length >= 3:
        c = (c + k[2]) & _M
    if length >= 2:
        b = (b + k[1]) & _M
    a = (a + k[0]) & _M
    return _final(a, b, c)


def addr_words(addr) -> list[int]:
    """union nf_inet_addr as four host-order (little-endian) u32 words."""
    raw = addr.packed.ljust(16, b"\0")
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]


def jhash2_addr(addr, initval: int) -> int:
    return jhash2(addr_words(addr), initval & _M)


def reciprocal_scale(val: int, ep_ro: int) -> int:
    """(u32)(((u64) val * ep_ro) >> 32): map a 32-bit hash into [0, ep_ro)."""
    return ((val & _M) * (ep_ro & _M)) >> 32
