"""Parse iptables-save, iptables-restore and `iptables -S` text into a RulesetPair.

Input kinds are detected per file:
- restore/save input: `*table` sections closed by COMMIT, `:CHAIN POLICY [p:b]` lines and
  commands (-A -I -D -R -N -X -F -Z -P -E -C), as iptables-restore reads them
  (iptables/iptables-restore.c, xshared.c do_parse);
- an `iptables -S` listing: no `*table`/COMMIT, only -P/-N/-A lines of one table. The table
  is `table=` if given, else guessed from the built-in chains it names (see `_guess_table`).

IPv4 or IPv6 (`family=None`): a file is cut into blocks; a block ends where a table repeats
(istio records `iptables-restore` input followed by `ip6tables-restore` input with no
separator) or at a bare `iptables-restore` / `ip6tables-restore` line. A block is IPv6 when
its -s/-d addresses are IPv6, IPv4 when they are IPv4; a block with no address at all is
IPv4 if it is the first block and IPv6 otherwise (or as its `ip6tables-restore` line says).
Bare `ip(6)tables-save` lines carry no family: they are skipped with a note.

Where iptables-legacy and iptables-nft differ we follow iptables-nft 1.8.9 (the default):
a `*table` section without noflush replaces the whole table, resetting built-in policies to
ACCEPT; legacy keeps the old policies. Jumps must name a chain that exists when the rule
line is read (both variants refuse a later `-N`).

Unsupported constructs never fail the parse: they become UnsupportedMatch/UnsupportedTarget
kept verbatim, and an UnsupportedItem on the rule and on Ruleset.unsupported. Options of an
extension we do not model cannot be known, so an unknown option goes to the newest such
extension (after the modelled ones and the implicit protocol match had their chance).

Known differences from iptables-restore 1.8.9, all deliberate:
- the old intrapositioned negation (`-s ! X`, `--dport ! 80`) is accepted;
- `[packets:bytes]` rule counters are kept without `--counters`;
- host names are never resolved (an error names the address);
- leading blanks, blanks after COMMIT and CRLF line ends are tolerated;
- `-E` may rename a chain created earlier in the same section (iptables-nft refuses that,
  iptables-legacy allows it).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UnsupportedItem
from . import ext
from .ext import (ExtParseError, ExtUnsupported, Opt, OptionSpec, ParseContext,
                  UnsupportedMatch, UnsupportedTarget)
from .lint import find_loop, hook_violations
from .targets.standard import JumpTarget
from .model import (BUILTIN_CHAINS, TABLE_NAMES, AddrMatch, Chain, Counters, IfaceMatch,
                    IpHeaderMatch, Rule, Ruleset, RulesetPair, SourceRef, Table)

# --------------------------------------------------------------------------------------
# Kernel and iptables facts, as data
# --------------------------------------------------------------------------------------

# xtables_chain_protos (libxtables/xtables.c): the names iptables prints first for -p.
CHAIN_PROTOS: tuple[tuple[str, int], ...] = (
    ("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1),
    ("ipv6-icmp", 58), ("icmpv6", 58), ("esp", 50), ("ah", 51),
    ("mobility-header", 135), ("ipv6-mh", 135), ("mh", 135), ("dccp", 33),
    ("ipcomp", 108), ("all", 0),
)
# /etc/protocols (Debian netbase): getprotobyname/getprotobynumber, which iptables falls
# back to. Only primary names: iptables lower-cases -p first and aliases are upper case.
NETBASE_PROTOCOLS: dict[str, int] = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
    "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
    "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73,
    "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97,
    "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124,
    "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137,
    "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}
_NETBASE_BY_NUM: dict[int, str] = {}
for _n, _v in NETBASE_PROTOCOLS.items():
    _NETBASE_BY_NUM.setdefault(_v, _n)

# Matches the kernel binds to one protocol (struct xt_match .proto): xt_check_match refuses
# them unless the rule has `-p` that protocol, not inverted (net/netfilter/x_tables.c).
# Sources: xt_tcpudp.c, xt_sctp.c, xt_dccp.c, xt_esp.c, ipt_ah.c, ip_tables.c (icmp),
# ip6_tables.c (icmp6), ip6t_mh.c. Keyed by (family, match name).
PROTO_MATCH_PROTO: dict[tuple[int, str], int] = {
    **{(f, "tcp"): 6 for f in (4, 6)}, **{(f, "udp"): 17 for f in (4, 6)},
    **{(f, "udplite"): 136 for f in (4, 6)}, **{(f, "sctp"): 132 for f in (4, 6)},
    **{(f, "dccp"): 33 for f in (4, 6)}, **{(f, "esp"): 50 for f in (4, 6)},
    (4, "ah"): 51, (4, "icmp"): 1, (6, "icmp6"): 58, (6, "mh"): 135,
}

# Extensions that exist in iptables 1.8 (extensions/lib{xt,ipt,ip6t}_*.c), so that an
# unknown name can be told apart from a typo or a missing chain.
XT_MATCHES_ANY = frozenset("""addrtype bpf cgroup cluster comment connbytes connlabel connlimit
    connmark conntrack cpu dccp devgroup dscp ecn esp hashlimit helper ipcomp iprange ipvs
    length limit mac mark multiport nfacct osf owner physdev pkttype policy quota rateest
    recent rpfilter sctp set socket state statistic string tcp tcpmss time tos u32 udp
    udplite""".split())
XT_MATCHES_V4 = XT_MATCHES_ANY | {"ah", "icmp", "realm", "ttl"}
XT_MATCHES_V6 = XT_MATCHES_ANY | {"ah", "dst", "eui64", "frag", "hbh", "hl", "icmp6",
                                  "ipv6header", "mh", "rt", "srh"}
XT_TARGETS_ANY = frozenset("""AUDIT CHECKSUM CLASSIFY CONNMARK CONNSECMARK CT DNAT DSCP HMARK
    IDLETIMER LED LOG MARK MASQUERADE NETMAP NFLOG NFQUEUE NOTRACK RATEEST REDIRECT REJECT
    SECMARK SET SNAT SYNPROXY TCPMSS TCPOPTSTRIP TEE TOS TPROXY TRACE""".split())
XT_TARGETS_V4 = XT_TARGETS_ANY | {"CLUSTERIP", "ECN", "TTL", "ULOG"}
XT_TARGETS_V6 = XT_TARGETS_ANY | {"DNPT", "HL", "SNPT"}
# Targets only valid in one table, for guessing the table of an `iptables -S` listing when
# the target is not modelled (the kernel's xt_target .table).
_TARGET_TABLE_HINT = {"DNAT": "nat", "SNAT": "nat", "MASQUERADE": "nat", "REDIRECT": "nat",
                      "NETMAP": "nat", "CT": "raw", "NOTRACK": "raw", "TPROXY": "mangle"}

XT_EXTENSION_MAXNAMELEN = 29  # include/uapi/linux/netfilter/x_tables.h
IFNAMSIZ = 16
POLICIES = ("ACCEPT", "DROP")

# Base options of iptables (iptables/iptables.c original_opts): long name -> short letter.
_BASE_LONG: dict[str, str] = {
    "--append": "A", "--delete": "D", "--check": "C", "--insert": "I", "--replace": "R",
    "--list": "L", "--list-rules": "S", "--flush": "F", "--zero": "Z", "--new-chain": "N",
    "--delete-chain": "X", "--rename-chain": "E", "--policy": "P", "--source": "s",
    "--src": "s", "--destination": "d", "--dst": "d", "--protocol": "p",
    "--in-interface": "i", "--jump": "j", "--table": "t", "--match": "m", "--numeric": "n",
    "--out-interface": "o", "--verbose": "v", "--wait": "w", "--wait-interval": "W",
    "--exact": "x", "--fragments": "f", "--version": "V", "--help": "h",
    "--line-numbers": "0", "--modprobe": "M", "--set-counters": "c", "--goto": "g",
    "--ipv4": "4", "--ipv6": "6",
}
_SHORT = set("ACDEFILMNPRSXZcdfghijmnopstvwxVW046")
_COMMANDS = set("ACDEFILNPRSXZ")
_OPT_NAMES = {"s": "--source", "d": "--destination", "p": "--protocol", "i": "--in-interface",
              "o": "--out-interface", "f": "--fragments", "j": "--jump", "g": "--jump",
              "c": "--set-counters"}

_COMMAND_LINE_RE = re.compile(r"^ip6?tables(-legacy|-nft)?(-save|-restore)(\s+-\S+)*\s*$")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

def parse_rules(text: str, file: str = "<input>", *, family: int | None = None,
                base: RulesetPair | None = None, noflush: bool = False,
                table: str | None = None) -> RulesetPair:
    """Parse one file's text. `base` is never modified: edits apply to a copy, and the copy
    is returned only if the whole input is valid (iptables-restore is all-or-nothing).

    `family`: 4 or 6 forces every section to that family; None detects it (module doc).
    `noflush`: like `iptables-restore --noflush`: sections edit `base` instead of replacing.
    `table`: for `iptables -S` input, the table listed; for restore input, apply only that
    table (`iptables-restore -T`)."""
    if family not in (None, 4, 6):
        raise InputError(f"family must be 4 or 6, not {family!r}", file)
    if table is not None and table not in TABLE_NAMES:
        raise InputError(f"unknown table '{table}'; expected one of {', '.join(TABLE_NAMES)}",
                         file)
    ext.load_all()
    return _Parser(text, file, family, base, noflush, table).run()


def load_rules_file(path: str | Path, **kw) -> RulesetPair:
    """Read and parse a ruleset file; a binary file (NUL bytes, not UTF-8) is an InputError."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read ruleset file: {e.strerror or e}", name) from None
    if b"\0" in data:
        raise InputError("binary file (NUL bytes): expected iptables-save text", name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError("not UTF-8 text: expected iptables-save text", name, line) from None
    return parse_rules(text, name, **kw)


def tokenize(text: str, file: str = "<input>", line: int | None = None) -> list[str]:
    """Split a rule line like iptables-restore (xshared.c add_param_to_argv): blanks
    separate words; "double quotes" group, with backslash escaping any character inside
    them; a closing quote ends the word; single quotes and backslashes outside double
    quotes are ordinary characters."""
    out: list[str] = []
    buf: list[str] = []
    quote_open = escaped = False
    for ch in text:
        if quote_open:
            if escaped:
                buf.append(ch)
                escaped = False
                continue
            if ch == "\\":
                escaped = True
                continue
            if ch != '"':
                buf.append(ch)
                continue
            quote_open = False  # the closing quote ends the word, even an empty one
        elif ch == '"':
            quote_open = True
            continue
        elif ch not in " \t\n":
            buf.append(ch)
            continue
        elif not buf:
            continue
        # a closing quote or a blank after a word
        out.append("".join(buf))
        buf = []
    if buf:
        out.append("".join(buf))
    if any(len(w) >= 1024 for w in out):
        raise InputError("parameter too long (1023 characters at most)", file, line)
    return out


def proto_save_name(num: int) -> str:
    """How iptables-save prints `-p NUM` (proto_to_name: chain protos, then /etc/protocols)."""
    for name, n in CHAIN_PROTOS:
        if n == num:
            return name
    return _NETBASE_BY_NUM.get(num, str(num))


def parse_protocol(text: str) -> int | None:
    """xtables_parse_protocol on the lower-cased text; None when unknown."""
    s = text.lower()
    num = _c_strtoul(s)
    if num is not None:
        return num if num <= 255 else None
    for name, n in CHAIN_PROTOS:
        if name == s:
            return n
    return NETBASE_PROTOCOLS.get(s)


# --------------------------------------------------------------------------------------
# Small value parsers
# --------------------------------------------------------------------------------------

def _c_strtoul(s: str, base: int = 0) -> int | None:
    """C strtoul over the whole string (leading blanks and '+' allowed, '-' refused), as
    xtables_strtoui uses it: base 0 reads 0x.. as hex and 0.. as octal."""
    t = s.lstrip(" \t\n\r\f\v")
    if t.startswith("+"):
        t = t[1:]
    if not t:
        return None
    if base == 0:
        if t[:2].lower() == "0x":
            base, t = 16, t[2:]
        elif t.startswith("0") and len(t) > 1:
            base, t = 8, t[1:]
        else:
            base = 10
    digits = "0123456789abcdef"[:base]
    if not t or any(c not in digits for c in t.lower()):
        return None
    return int(t, base)


def _parse_v4_dotted(text: str, is_mask: bool) -> int | None:
    """__numeric_to_ipaddr: up to 4 dotted parts; an address may stop early ("10.1" is
    10.1.0.0), a mask may not."""
    parts = text.split(".")
    if len(parts) > 4 or (is_mask and len(parts) != 4):
        return None
    vals = []
    for p in parts:
        v = _c_strtoul(p)
        if v is None or v > 255:
            return None
        vals.append(v)
    vals += [0] * (4 - len(vals))
    return (vals[0] << 24) | (vals[1] << 16) | (vals[2] << 8) | vals[3]


def _mask_prefix(mask: int, bits: int) -> int | None:
    """Prefix length of a contiguous mask, None for a non-contiguous one."""
    full = (1 << bits) - 1
    for plen in range(bits + 1):
        if mask == (full << (bits - plen)) & full:
            return plen
    return None


@dataclass
class _Addr:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    written: str  # the item as written, for a non-CIDR mask placeholder
    noncontig: bool = False


def _parse_addr_item(item: str, family: int) -> _Addr:
    """One item of `-s`/`-d` (xtables_ipparse_multiple / xtables_ip6parse_multiple)."""
    text = item.lstrip(" \t")
    addr_s, _, mask_s = text.rpartition("/") if "/" in text else (text, "", None)
    bits = 32 if family == 4 else 128
    if mask_s is None:
        mask = (1 << bits) - 1
    elif family == 4 and "." in mask_s:
        m = _parse_v4_dotted(mask_s, True)
        if m is None:
            raise ValueError(f"invalid mask '{mask_s}' specified")
        mask = m
    elif family == 6 and ":" in mask_s:
        try:
            mask = int(ipaddress.IPv6Address(mask_s))
        except ValueError:
            raise ValueError(f"invalid mask '{mask_s}' specified") from None
    else:
        plen = _c_strtoul(mask_s)
        if plen is None or plen > bits:
            raise ValueError(f"invalid mask '{mask_s}' specified")
        mask = (((1 << bits) - 1) << (bits - plen)) & ((1 << bits) - 1)
    if mask == 0:
        addr = 0  # "any/0": the name is ignored
    elif family == 4:
        a = _parse_v4_dotted(addr_s, False)
        if a is None:
            raise ValueError(f"host/network '{addr_s}' not found: expected an IPv4 address "
                             "(host names are not resolved)")
        addr = a
    else:
        try:
            if "%" in addr_s:
                raise ValueError
            addr = int(ipaddress.IPv6Address(addr_s))
        except ValueError:
            raise ValueError(f"host/network '{addr_s}' not found: expected an IPv6 address "
                             "(host names are not resolved)") from None
    addr &= mask
    plen = _mask_prefix(mask, bits)
    if plen is None:
        if family == 4:
            text = f"{ipaddress.IPv4Address(addr)}/{ipaddress.IPv4Address(mask)}"
        else:
            text = f"{ipaddress.IPv6Address(addr).compressed}/{ipaddress.IPv6Address(mask).compressed}"
        return _Addr(None, text, noncontig=True)
    cls = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
    return _Addr(cls((addr, plen)), item)


def _parse_counters_pair(p: str, b: str) -> Counters | None:
    if p.isdigit() and b.isdigit():
        return Counters(int(p), int(b))
    return None


# --------------------------------------------------------------------------------------
# Per-rule parsing
# --------------------------------------------------------------------------------------

@dataclass
class _Loaded:
    """One match or target instance while its rule is read."""

    kind: str  # "match" or "target"
    name: str
    cls: type | None  # None: not modelled (kept verbatim)
    opts: list[Opt] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # everything after -m/-j NAME, verbatim


@dataclass
class _Command:
    cmd: str  # A I D R N X F Z P E C, or "" for a skipped -6 line
    chain: str | None = None
    rulenum: int | None = None
    policy: str | None = None
    newname: str | None = None
    rules: list[Rule] = field(default_factory=list)
    counters: Counters | None = None


class _RuleLine:
    """Reads one command line's tokens (xshared.c do_parse, in our terms)."""

    def __init__(self, p: "_Parser", tokens: list[str], lineno: int, text: str,
                 table: Table, family: int, counters: Counters | None):
        self.p = p
        self.toks = tokens
        self.i = 0
        self.lineno = lineno
        self.text = text
        self.table = table
        self.family = family
        self.cmd = _Command("", counters=counters)
        self.opts_seen: set[str] = set()
        self.inv: set[str] = set()
        self.src: str | None = None
        self.dst: str | None = None
        self.in_iface: str | None = None
        self.out_iface: str | None = None
        self.proto_text: str | None = None
        self.proto_used = False
        self.fragment = False
        self.loaded: list[_Loaded] = []
        self.target: _Loaded | None = None
        self.jump: str | None = None
        self.goto = False

    # -- helpers ---------------------------------------------------------------------
    def err(self, msg: str) -> InputError:
        return InputError(msg, self.p.file, self.lineno)

    def next_arg(self, opt: str) -> str:
        if self.i >= len(self.toks):
            raise self.err(f"option {opt} requires an argument")
        a = self.toks[self.i]
        self.i += 1
        return a

    def has_arg(self) -> bool:
        # xs_has_arg: an optional argument is a following word not starting with - or !
        return self.i < len(self.toks) and self.toks[self.i][:1] not in ("-", "!")

    def set_option(self, letter: str, invert: bool) -> None:
        name = _OPT_NAMES.get(letter, "-" + letter)
        if letter in self.opts_seen or (letter in "jg" and ({"j", "g"} & self.opts_seen)):
            raise self.err(f"multiple {name} options not allowed")
        self.opts_seen.add(letter)
        if invert:
            if letter not in "sdpiof":
                raise self.err(f"cannot have ! before {name}")
            self.inv.add(letter)

    def old_style_invert(self, invert: bool) -> bool:
        """`-s ! X` (intrapositioned negation, accepted by iptables < 1.4.3)."""
        if self.i < len(self.toks) and self.toks[self.i] == "!":
            if invert:
                raise self.err("multiple ! flags not allowed")
            self.i += 1
            return True
        return invert

    def add_command(self, cmd: str, invert: bool) -> None:
        if invert:
            raise self.err("unexpected ! flag before a command")
        if self.cmd.cmd:
            raise self.err(f"cannot use -{cmd} with -{self.cmd.cmd}")
        self.cmd.cmd = cmd

    # -- the option loop -----------------------------------------------------------------
    def read(self) -> _Command:
        invert = False
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            self.i += 1
            if tok == "!":
                if invert:
                    raise self.err("multiple consecutive ! not allowed")
                invert = True
                continue
            if tok.startswith("--") and len(tok) > 2:
                name, eq, val = tok.partition("=")
                if eq:
                    self.toks.insert(self.i, val)
                if self.long_option(name, invert):
                    return _Command("")  # -4/-6 line for the other family
            elif tok.startswith("-") and len(tok) >= 2:
                letter, rest = tok[1], tok[2:]
                if letter not in _SHORT:
                    raise self.err(f"unknown option {tok}")
                if rest:  # -jACCEPT: getopt's attached argument
                    self.toks.insert(self.i, rest)
                if self.base_option(letter, invert):
                    return _Command("")  # -4/-6 line for the other family
            else:
                raise self.err(f"bad argument '{tok}'")
            invert = False
        if invert:
            raise self.err("nothing appropriate following !")
        return self.finish()

    def long_option(self, name: str, invert: bool) -> bool:
        """Find who takes `--name`, like getopt_long over iptables' merged option table
        (base options first, then the newest extension's; a unique prefix is accepted),
        adapted to extensions we do not model, whose options we cannot know:
        1. an exact base option; 2. an exact option of a loaded extension;
        3. the implicit protocol match (`-p tcp --dport`), if it knows the option;
        4. newest first, a loaded extension with a unique prefix, or one we do not model
           (it keeps the option verbatim); 5. an unmodelled implicit protocol match;
        6. a unique prefix of a base option. Returns True for a -4/-6 line to skip."""
        if name in _BASE_LONG:
            return self.base_option(_BASE_LONG[name], invert)
        loaded = list(reversed(self.all_loaded()))
        for l in loaded:
            spec = l.cls.option_spec(name) if l.cls is not None else None
            if spec is not None:
                self.ext_option(l, spec, name, invert)
                return False
        l = self.load_proto(name)
        if l is not None:
            spec = l.cls.option_spec(name) or self.prefix_spec(l, name)
            self.ext_option(l, spec, name, invert)
            return False
        for l in loaded:
            if l.cls is None:
                self.unknown_option(l, name, invert)
                return False
            spec = self.prefix_spec(l, name)
            if spec is not None:
                self.ext_option(l, spec, name, invert)
                return False
        l = self.load_proto(name, holder=True)
        if l is not None:
            self.unknown_option(l, name, invert)
            return False
        letters = {v for k, v in _BASE_LONG.items() if k.startswith(name)}
        if len(letters) > 1:
            names = ", ".join(sorted(k for k in _BASE_LONG if k.startswith(name)))
            raise self.err(f"option {name} is ambiguous ({names})")
        if letters:
            return self.base_option(letters.pop(), invert)
        raise self.err(f"unknown option {name}")

    def all_loaded(self) -> list[_Loaded]:
        return self.loaded + ([self.target] if self.target else [])

    def prefix_spec(self, l: _Loaded, name: str) -> OptionSpec | None:
        assert l.cls is not None
        specs = {spec.name: spec for spec in l.cls.options
                 if any(n.startswith(name) for n in spec.names())}
        if len(specs) > 1:
            raise self.err(f"{l.name}: option {name} is ambiguous ({', '.join(sorted(specs))})")
        return next(iter(specs.values()), None)

    def load_proto(self, option: str, holder: bool = False) -> _Loaded | None:
        """The implicit protocol match of `-p tcp --dport 80` (xshared.c load_proto), loaded
        once. Without `holder`, only a modelled match that knows `option`; with it, a real
        protocol match we do not model, which then keeps the option verbatim."""
        if self.proto_text is None or self.proto_used:
            return None
        num = parse_protocol(self.proto_text)
        if num is None:
            return None
        name = self.proto_text.lower() if _c_strtoul(self.proto_text) is None else proto_save_name(num)
        if name in ("icmpv6", "ipv6-icmp"):
            name = "icmp6"
        cls = ext.MATCHES.get(name)
        if cls is not None and self.family not in cls.families:
            cls = None
        if not holder:
            if cls is None:
                return None
            probe = _Loaded("match", name, cls)
            if cls.option_spec(option) is None and self.prefix_spec(probe, option) is None:
                return None
            loaded = probe
        else:
            known = XT_MATCHES_V4 if self.family == 4 else XT_MATCHES_V6
            if cls is not None or name not in known:
                return None
            loaded = _Loaded("match", name, None)
        self.proto_used = True
        self.loaded.append(loaded)
        return loaded

    def ext_option(self, l: _Loaded, spec: OptionSpec, written: str, invert: bool) -> None:
        start = self.i - 1
        before = ["!"] if invert else []
        # old-style `--opt ! value` only for options that can be inverted: for the others a
        # `!` there is the value itself (e.g. --comment "!")
        if spec.nargs and spec.invertible:
            invert = self.old_style_invert(invert)
        if invert and not spec.invertible:
            raise self.err(f"{l.name}: option {spec.name} cannot be inverted")
        if not spec.repeatable and any(o.name == spec.name for o in l.opts):
            raise self.err(f"{l.name}: option {spec.name} can only be used once")
        args = tuple(self.next_arg(written) for _ in range(spec.nargs))
        l.opts.append(Opt(spec.name, args, invert, written))
        l.tokens += before + self.toks[start:self.i]

    def unknown_option(self, holder: _Loaded, name: str, invert: bool) -> None:
        """An option for a match/target we do not model: keep it and its words verbatim."""
        words = (["!"] if invert else []) + [self.toks[self.i - 1]]
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t == "!" and self.i + 1 < len(self.toks) and not self.toks[self.i + 1].startswith("-"):
                words += [t, self.toks[self.i + 1]]
                self.i += 2
                continue
            if t[:1] in ("-", "!"):
                break
            words.append(t)
            self.i += 1
        holder.tokens += words

    def base_option(self, letter: str, invert: bool) -> bool:
        """Returns True when the line is for the other family (-4/-6) and is skipped."""
        if letter in _COMMANDS:
            self.command(letter, invert)
        elif letter in "sd":
            self.set_option(letter, invert)
            val = self.next_arg("-" + letter)
            if val == "!":
                self.set_option_inv(letter)
                val = self.next_arg("-" + letter)
            if letter == "s":
                self.src = val
            else:
                self.dst = val
        elif letter in "io":
            self.set_option(letter, invert)
            val = self.next_arg("-" + letter)
            if val == "!":
                self.set_option_inv(letter)
                val = self.next_arg("-" + letter)
            if not val:
                raise self.err("empty interface name is likely to be undesired")
            if len(val) >= IFNAMSIZ:
                raise self.err(f"interface name '{val}' must be shorter than {IFNAMSIZ} characters")
            if letter == "i":
                self.in_iface = val
            else:
                self.out_iface = val
        elif letter == "p":
            self.set_option(letter, invert)
            val = self.next_arg("-p")
            if val == "!":
                self.set_option_inv(letter)
                val = self.next_arg("-p")
            if parse_protocol(val) is None:
                raise self.err(f"unknown protocol '{val}' specified")
            self.proto_text = val
        elif letter == "f":
            if self.family == 6:
                raise self.err("-f is not supported in IPv6, use -m frag instead")
            self.set_option(letter, invert)
            self.fragment = True
        elif letter == "m":
            if invert:
                raise self.err("unexpected ! flag before --match")
            self.match(self.next_arg("-m"))
        elif letter in "jg":
            self.set_option(letter, invert)
            self.jump_to(self.next_arg("-" + letter), letter == "g")
        elif letter == "c":
            self.set_option(letter, invert)
            p = self.next_arg("-c")
            if "," in p:
                p, b = p.split(",", 1)
            elif self.has_arg():
                b = self.next_arg("-c")
            else:
                raise self.err("--set-counters requires packet and byte counter")
            c = _parse_counters_pair(p, b)
            if c is None:
                raise self.err(f"--set-counters: counters '{p} {b}' are not numeric")
            self.cmd.counters = c
        elif letter == "4":
            return self.family == 6
        elif letter == "6":
            return self.family == 4
        elif letter == "v":
            pass  # verbose: no effect on the ruleset
        elif letter == "t":
            raise self.err("the -t option cannot be used in iptables-restore input")
        elif letter in "wW":
            raise self.err(f"you cannot use -{letter} from iptables-restore")
        else:
            raise self.err(f"option -{letter} is not valid in a ruleset")
        return False

    def set_option_inv(self, letter: str) -> None:
        if letter in self.inv:
            raise self.err("multiple ! flags not allowed")
        self.inv.add(letter)

    def command(self, letter: str, invert: bool) -> None:
        self.add_command(letter, invert)
        c = self.cmd
        if letter in "AC":
            c.chain = self.next_arg("-" + letter)
        elif letter == "I":
            c.chain = self.next_arg("-I")
            c.rulenum = self.rulenum() if self.has_arg() else 1
        elif letter == "D":
            c.chain = self.next_arg("-D")
            if self.has_arg():
                c.rulenum = self.rulenum()
        elif letter == "R":
            c.chain = self.next_arg("-R")
            if not self.has_arg():
                raise self.err("-R requires a rule number")
            c.rulenum = self.rulenum()
        elif letter in "XF":
            if self.has_arg():
                c.chain = self.next_arg("-" + letter)
        elif letter == "Z":
            if self.has_arg():
                c.chain = self.next_arg("-Z")
                if self.has_arg():
                    c.rulenum = self.rulenum()
        elif letter == "N":
            c.chain = self.next_arg("-N")
            self.p.check_chain_name(c.chain, self.lineno, self.family)
        elif letter == "E":
            c.chain = self.next_arg("-E")
            if not self.has_arg():
                raise self.err("-E requires old-chain-name and new-chain-name")
            c.newname = self.next_arg("-E")
            self.p.check_chain_name(c.newname, self.lineno, self.family)
        elif letter == "P":
            c.chain = self.next_arg("-P")
            if not self.has_arg():
                raise self.err("-P requires a chain and a policy")
            c.policy = self.next_arg("-P")
        else:  # L S
            raise self.err(f"-{letter} (list) is not a ruleset command")

    def rulenum(self) -> int:
        t = self.next_arg("rule number")
        n = _c_strtoul(t, 10) if ":" not in t else None
        if n is None or n < 1 or n > 2**31 - 1:
            raise self.err(f"invalid rule number '{t}'")
        return n

    def match(self, name: str) -> None:
        if not name or len(name) >= XT_EXTENSION_MAXNAMELEN:
            raise self.err(f"invalid match name '{name}' ({XT_EXTENSION_MAXNAMELEN - 1} chars max)")
        lookup = "icmp6" if name in ("icmpv6", "ipv6-icmp") else name
        cls = ext.MATCHES.get(lookup)
        if cls is not None and self.family not in cls.families:
            raise self.err(f"match '{name}' does not exist for IPv{self.family}")
        self.loaded.append(_Loaded("match", lookup, cls))

    def jump_to(self, name: str, goto: bool) -> None:
        if not name or len(name) >= XT_EXTENSION_MAXNAMELEN or any(c.isspace() for c in name):
            raise self.err(f"invalid target name '{name}'")
        self.jump, self.goto = name, goto
        if goto or name in self.table.chains:
            return  # a chain: checked when the rule is built
        if name == "CONTINUE":
            return
        cls = ext.TARGETS.get(name)
        if cls is not None and self.family not in cls.families:
            cls = None
        known = XT_TARGETS_V4 if self.family == 4 else XT_TARGETS_V6
        if cls is not None or name in known:
            self.target = _Loaded("target", name, cls)

    # -- building the rule -----------------------------------------------------------------
    def finish(self) -> _Command:
        c = self.cmd
        if not c.cmd:
            raise self.err("no command specified (expected -A, -I, -D, -N, -P ...)")
        rule_cmd = c.cmd in "AIDRC" and not (c.cmd == "D" and c.rulenum is not None)
        rule_opts = self.opts_seen - {"c"}
        if not rule_cmd:
            if rule_opts or self.loaded or self.target:
                first = sorted(rule_opts)[0] if rule_opts else "m"
                raise self.err(f"illegal option {_OPT_NAMES.get(first, '-' + first)} with -{c.cmd}")
            if "c" in self.opts_seen and c.cmd != "P":
                raise self.err(f"illegal option --set-counters with -{c.cmd}")
            return c
        if c.chain in ("PREROUTING", "INPUT") and "o" in self.opts_seen:
            raise self.err(f"can't use --out-interface with {c.chain}")
        if c.chain in ("POSTROUTING", "OUTPUT") and "i" in self.opts_seen:
            raise self.err(f"can't use --in-interface with {c.chain}")
        proto = parse_protocol(self.proto_text) if self.proto_text is not None else None
        proto_inv = "p" in self.inv
        if proto == 0 and proto_inv:
            raise self.err("rule would never match protocol")
        if proto == 0:
            proto = None
        srcs = self.addresses(self.src, "s")
        dsts = self.addresses(self.dst, "d")
        if (len(srcs) > 1 or len(dsts) > 1) and ({"s", "d"} & self.inv):
            raise self.err("! not allowed with multiple source or destination IP addresses")
        if c.cmd == "R" and (len(srcs) > 1 or len(dsts) > 1):
            raise self.err("-R accepts only one source and one destination address")
        pctx = ParseContext(self.family, self.table.name, c.chain or "", proto, proto_inv)
        items: list[UnsupportedItem] = []
        matches = [self.build_match(l, pctx, proto, proto_inv, items) for l in self.loaded]
        target = self.build_target(pctx, items)
        in_if = self.iface(self.in_iface, "i")
        out_if = self.iface(self.out_iface, "o")
        for s in srcs:
            for d in dsts:
                extra: list[ext.MatchExt] = []
                rule_items = list(items)
                for letter, a in (("s", s), ("d", d)):
                    if a is not None and a.noncontig:
                        extra.append(UnsupportedMatch(f"-{letter}", ("!",) * (letter in self.inv)
                                                      + (f"-{letter}", a.written)))
                        rule_items.append(UnsupportedItem(
                            "option", f"-{letter} {a.written}", self.p.file, self.lineno,
                            "non-contiguous address mask"))
                ip = IpHeaderMatch(
                    src=self.addr_match(s, "s"), dst=self.addr_match(d, "d"),
                    in_iface=in_if, out_iface=out_if, proto=proto,
                    proto_inverted=proto_inv if proto is not None else False,
                    proto_name=proto_save_name(proto) if proto is not None else None,
                    fragment=(not ("f" in self.inv)) if self.fragment else None)
                c.rules.append(Rule(
                    ip=ip, matches=extra + list(matches), target=target,
                    counters=Counters(c.counters.packets, c.counters.bytes) if c.counters else Counters(),
                    source=SourceRef(self.p.file, self.lineno, self.text),
                    unsupported=[_copy_item(i) for i in rule_items]))
        return c

    def addresses(self, text: str | None, letter: str) -> list[_Addr | None]:
        if text is None:
            return [None]
        out = []
        for item in text.split(","):
            try:
                out.append(_parse_addr_item(item, self.family))
            except ValueError as e:
                raise self.err(f"-{letter}: {e}") from None
        return out

    def addr_match(self, a: _Addr | None, letter: str) -> AddrMatch | None:
        if a is None or a.net is None:
            return None
        inv = letter in self.inv
        if a.net.prefixlen == 0 and not inv:
            return None  # matches everything; iptables-save omits it
        return AddrMatch(a.net, inv)

    def iface(self, name: str | None, letter: str) -> IfaceMatch | None:
        if name is None:
            return None
        inv = letter in self.inv
        if name == "+" and not inv:
            return None  # any interface; iptables-save omits it
        return IfaceMatch(name, inv)

    def build_match(self, l: _Loaded, pctx: ParseContext, proto: int | None, proto_inv: bool,
                    items: list[UnsupportedItem]) -> ext.MatchExt:
        need = PROTO_MATCH_PROTO.get((self.family, l.name))
        if need is not None and proto != need:
            have = "no -p" if proto is None else ("! -p " if proto_inv else "-p ") + proto_save_name(proto)
            raise self.err(f"the {l.name} match needs -p {proto_save_name(need)} (this rule has "
                           f"{have}); the kernel refuses it")
        if need is not None and proto_inv:
            # iptables-legacy: the kernel refuses it; iptables-nft 1.8.9 loads it as
            # `meta l4proto != P th dport N` (any other protocol's header bytes): not modelled
            items.append(UnsupportedItem(
                "option", f"! -p {proto_save_name(need)} -m {l.name}", self.p.file, self.lineno,
                "an inverted -p with its own protocol match: refused by iptables-legacy, "
                "a raw transport-header test in iptables-nft"))
            return UnsupportedMatch(l.name, tuple(l.tokens))
        if l.cls is None:
            items.append(UnsupportedItem("match", l.name, self.p.file, self.lineno))
            return UnsupportedMatch(l.name, tuple(l.tokens))
        return self.parse_ext(l, "match", pctx, items, UnsupportedMatch)

    def build_target(self, pctx: ParseContext, items: list[UnsupportedItem]) -> ext.TargetExt | None:
        if self.jump is None or (self.jump == "CONTINUE" and self.target is None):
            return None
        t = self.target
        if t is None:
            chain = self.table.chains.get(self.jump)
            kind = "goto" if self.goto else "jump"
            if chain is None:
                raise self.err(f"{kind} to chain '{self.jump}' which does not exist in table "
                               f"{self.table.name} (and no target has that name)")
            if chain.builtin:
                raise self.err(f"cannot {kind} to built-in chain {self.jump}")
            return JumpTarget(self.jump, self.goto)
        if t.cls is None:
            items.append(UnsupportedItem("target", t.name, self.p.file, self.lineno))
            return UnsupportedTarget(t.name, tuple(t.tokens))
        if self.table.name == "nat" and t.name == "DROP":
            raise self.err('the "nat" table is not intended for filtering: DROP is not allowed')
        return self.parse_ext(t, "target", pctx, items, UnsupportedTarget)

    def parse_ext(self, l, kind: str, pctx: ParseContext, items: list[UnsupportedItem],
                  unsupported: type):
        """Let the extension parse its options; an option it knows but does not model keeps
        the whole extension verbatim as unsupported."""
        self.check_table(l.cls, kind)
        try:
            return l.cls.parse(l.opts, pctx)
        except ExtUnsupported as e:
            items.append(UnsupportedItem("option", f"{l.name} {e.option}", self.p.file,
                                         self.lineno, e.detail))
            return unsupported(l.name, tuple(l.tokens))
        except (ExtParseError, ValueError) as e:
            raise self.err(f"{l.name} {kind}: {e}") from None

    def check_table(self, cls: type, kind: str) -> None:
        tables = getattr(cls, "valid_tables", None)
        if tables is not None and self.table.name not in tables:
            raise self.err(f"{cls.name} {kind}: only valid in table "
                           f"{'/'.join(t for t in TABLE_NAMES if t in tables)}, not {self.table.name}")


def _copy_item(i: UnsupportedItem) -> UnsupportedItem:
    return UnsupportedItem(i.kind, i.name, i.file, i.line, i.detail)


# --------------------------------------------------------------------------------------
# The file-level parser
# --------------------------------------------------------------------------------------

@dataclass
class _Line:
    no: int
    text: str  # without the line ending and trailing blanks
    body: str  # text without leading blanks


@dataclass
class _Open:
    """A `*table` section being read (or the implicit one of an `iptables -S` listing)."""

    name: str
    family: int
    line: int
    table: Table
    skip: bool = False  # iptables-restore -T: another table, read nothing


class _Parser:
    def __init__(self, text: str, file: str, family: int | None, base: RulesetPair | None,
                 noflush: bool, table: str | None):
        self.file = file
        self.family_opt = family
        self.noflush = noflush
        self.table_opt = table
        self.lines = _split_lines(text)
        if base is not None:
            self.pair = copy.deepcopy(base)
        else:
            self.pair = RulesetPair(v4=Ruleset(family=4))
        self.notes = self.pair.notes
        self.cur: _Open | None = None
        self.touched: dict[int, bool] = {}

    def err(self, msg: str, line: int | None) -> InputError:
        return InputError(msg, self.file, line)

    def ruleset(self, family: int) -> Ruleset:
        if family == 4:
            return self.pair.v4
        if self.pair.v6 is None:
            self.pair.v6 = Ruleset(family=6)
        return self.pair.v6

    def note(self, line: int, msg: str) -> None:
        self.notes.append(f"{self.file}:{line}: {msg}")

    # -- driver --------------------------------------------------------------------------
    def run(self) -> RulesetPair:
        content = [l for l in self.lines if l.body and not l.body.startswith("#")]
        if any(l.body.startswith("*") for l in content):
            self.run_restore()
        elif any(l.body.startswith("-") or l.body.startswith("[") for l in content):
            self.run_listing(content)
        else:
            for l in content:
                self.outside_line(l)
        used = {4} if self.pair.v6 is None else {4, 6}
        for fam in used:
            rs = self.ruleset(fam)
            if self.file not in rs.sources and self.touched.get(fam):
                rs.sources.append(self.file)
            _collect_unsupported(rs)
        return self.pair

    def run_restore(self) -> None:
        families = self.section_families()
        for l in self.lines:
            if not l.body or l.body.startswith("#"):
                continue
            if l.body.startswith("*") and self.cur is None:
                self.open_table(l, families[l.no])
            elif self.cur is None:
                self.outside_line(l)
            elif l.body == "COMMIT":
                self.commit(l.no)
            elif l.body.startswith("*"):
                raise self.err(f"'{l.body}' inside table {self.cur.name} (opened at line "
                               f"{self.cur.line}): COMMIT expected first", l.no)
            elif self.cur.skip:
                continue
            elif l.body.startswith(":"):
                self.chain_line(l)
            else:
                self.command_line(l)
        if self.cur is not None:
            raise self.err(f"table {self.cur.name} has no COMMIT (COMMIT expected at line "
                           f"{len(self.lines) + 1})", self.cur.line)

    def run_listing(self, content: list[_Line]) -> None:
        """An `iptables -S` listing: one table, no *table/COMMIT."""
        first = content[0].no
        table = self.table_opt or self._guess_table(content)
        family = self.family_opt or self.listing_family(content)
        self.begin(table, family, first)
        for l in content:
            if _COMMAND_LINE_RE.match(l.body):
                self.note(l.no, f"skipped command line '{l.body}'")
            elif l.body.startswith(":") or l.body == "COMMIT":
                raise self.err(f"'{l.body}' in an iptables -S listing: expected -P, -N or -A", l.no)
            else:
                self.command_line(l)
        self.commit(self.lines[-1].no if self.lines else first)

    def outside_line(self, l: _Line) -> None:
        if _COMMAND_LINE_RE.match(l.body):
            self.note(l.no, f"skipped command line '{l.body}'")
            return
        if l.body == "COMMIT":
            raise self.err("COMMIT without a table (expected a *table line first)", l.no)
        raise self.err(f"'{_short(l.body)}' outside a table: expected a *table line, a "
                       "comment or COMMIT", l.no)

    # -- sections ------------------------------------------------------------------------
    def open_table(self, l: _Line, family: int) -> None:
        words = tokenize(l.body[1:], self.file, l.no)
        if not words:
            raise self.err("table name invalid: expected *raw, *mangle, *nat, *filter or *security", l.no)
        name = words[0]
        if name not in TABLE_NAMES:
            raise self.err(f"unknown table '{name}': expected one of {', '.join(TABLE_NAMES)}", l.no)
        if self.table_opt is not None and name != self.table_opt:
            self.cur = _Open(name, family, l.no, Table.new(name), skip=True)
            self.note(l.no, f"table {name} skipped (only {self.table_opt} is applied)")
            return
        self.begin(name, family, l.no)

    def begin(self, name: str, family: int, line: int) -> None:
        rs = self.ruleset(family)
        src = SourceRef(self.file, line)
        old = rs.tables.get(name)
        if self.noflush and old is not None:
            table = copy.deepcopy(old)
        else:
            # without --noflush the section replaces the table (iptables-nft: policies too)
            table = Table.new(name, src)
            for ch in table.chains.values():
                ch.hooked = False  # iptables-nft creates a built-in chain only when named
        if table.source is None:
            table.source = src
        self.cur = _Open(name, family, line, table)

    def commit(self, line: int) -> None:
        cur = self.cur
        assert cur is not None
        self.cur = None
        if cur.skip:
            return
        _check_loops(cur.table, self.file)
        _check_hooks(cur.table, self.file)
        rs = self.ruleset(cur.family)
        rs.tables[cur.name] = cur.table
        self.touched[cur.family] = True

    def chain_line(self, l: _Line) -> None:
        cur = self.cur
        assert cur is not None
        words = l.body[1:].split()
        if not words:
            raise self.err("chain name invalid: expected ':CHAIN POLICY [packets:bytes]'", l.no)
        name = words[0]
        if len(name) >= XT_EXTENSION_MAXNAMELEN:
            raise self.err(f"invalid chain name '{name}' ({XT_EXTENSION_MAXNAMELEN - 1} chars max)", l.no)
        if len(words) < 2:
            raise self.err(f"policy invalid for chain {name}: expected ':{name} ACCEPT|DROP|- [packets:bytes]'", l.no)
        policy = words[1]
        counters = None
        if len(words) > 2:
            m = re.fullmatch(r"\[(\d+):(\d+)\]", words[2])
            if m is None:
                raise self.err(f"invalid policy counters '{words[2]}' for chain {name}: expected [packets:bytes]", l.no)
            counters = Counters(int(m.group(1)), int(m.group(2)))
        if len(words) > 3:
            raise self.err(f"unexpected '{words[3]}' after the counters of chain {name}", l.no)
        t = cur.table
        chain = t.chains.get(name)
        src = SourceRef(self.file, l.no, l.text)
        if chain is None or not chain.builtin:
            if chain is not None and not self.noflush:
                raise self.err(f"chain {name} already exists", l.no)
            if chain is not None:
                chain.rules.clear()  # --noflush: an existing user chain is flushed
            else:
                t.chains[name] = chain = Chain(name=name, builtin=False, source=src)
            if policy != "-":
                raise self.err(f"can't set policy '{policy}' on '{name}': not a built-in chain", l.no)
            return
        chain.source = src
        chain.hooked = True
        if policy == "-":
            return
        self.set_policy(chain, policy, counters, l.no)

    def set_policy(self, chain: Chain, policy: str, counters: Counters | None, line: int) -> None:
        if policy not in POLICIES:
            raise self.err(f"bad policy name '{policy}' for chain {chain.name}: expected ACCEPT or DROP", line)
        if policy == "DROP" and self.cur is not None and self.cur.name == "nat":
            raise self.err('the "nat" table is not intended for filtering: policy DROP is not allowed', line)
        chain.policy = policy
        chain.hooked = True
        if counters is not None:
            chain.policy_counters = counters

    def command_line(self, l: _Line) -> None:
        cur = self.cur
        assert cur is not None
        body = l.body
        counters = None
        if body.startswith("["):
            m = re.match(r"\[([^:\]]*):([^\]]*)\]", body)
            if m is None:
                raise self.err("bad rule counters: expected [packets:bytes] before the rule", l.no)
            counters = _parse_counters_pair(m.group(1), m.group(2))
            if counters is None:
                raise self.err(f"bad rule counters '{m.group(0)}': expected [packets:bytes]", l.no)
            body = body[m.end():]
        words = tokenize(body, self.file, l.no)
        rl = _RuleLine(self, words, l.no, l.text, cur.table, cur.family, counters)
        cmd = rl.read()
        if not cmd.cmd:
            self.note(l.no, f"skipped: rule for IPv{10 - cur.family}")
            return
        _apply(cmd, cur.table, self, l.no)

    def check_chain_name(self, name: str, line: int, family: int) -> None:
        """assert_valid_chain_name (xshared.c), for -N and -E."""
        if len(name) >= XT_EXTENSION_MAXNAMELEN:
            raise self.err(f"chain name '{name}' too long (must be under {XT_EXTENSION_MAXNAMELEN} chars)", line)
        if name[:1] in ("-", "!") or not name:
            raise self.err(f"chain name '{name}' not allowed to start with '{name[:1]}'", line)
        known = XT_TARGETS_V4 if family == 4 else XT_TARGETS_V6
        if name in ext.TARGETS or name in known:
            raise self.err(f"chain name '{name}' may not clash with target name", line)
        if any(c.isspace() for c in name):
            raise self.err(f"invalid chain name '{name}'", line)

    # -- family detection ----------------------------------------------------------------
    def section_families(self) -> dict[int, int]:
        """The family of every `*table` line (module doc)."""
        sections: list[tuple[int, str, set[int], int | None]] = []  # line, table, families, marker
        marker: int | None = None
        cur: tuple[int, str, set[int], int | None] | None = None
        for l in self.lines:
            b = l.body
            if not b or b.startswith("#"):
                continue
            if cur is None:
                if b.startswith("*"):
                    words = b[1:].split()
                    cur = (l.no, words[0] if words else "", set(), marker)
                    marker = None
                elif re.match(r"^ip6tables(-legacy|-nft)?-restore\b", b):
                    marker = 6
                elif re.match(r"^iptables(-legacy|-nft)?-restore\b", b):
                    marker = 4
                continue
            if b == "COMMIT":
                sections.append(cur)
                cur = None
                continue
            cur[2].update(_address_families(b))
        if cur is not None:
            sections.append(cur)
        out: dict[int, int] = {}
        if self.family_opt is not None:
            return {s[0]: self.family_opt for s in sections}
        blocks: list[list[tuple[int, str, set[int], int | None]]] = []
        for s in sections:
            if not blocks or s[3] is not None or s[1] in {x[1] for x in blocks[-1]}:
                blocks.append([s])
            else:
                blocks[-1].append(s)
        for bi, blk in enumerate(blocks):
            fams = set().union(*(s[2] for s in blk))
            if blk[0][3] is not None:
                fam = blk[0][3]
            elif fams == {6}:
                fam = 6
            elif fams == {4} or bi == 0:
                fam = 4
            else:
                fam = 6
            for s in blk:
                out[s[0]] = fam
        return out

    def listing_family(self, content: list[_Line]) -> int:
        fams: set[int] = set()
        for l in content:
            fams |= _address_families(l.body)
        return 6 if fams == {6} else 4

    def _guess_table(self, content: list[_Line]) -> str:
        """Which table an `iptables -S` listing shows: the one whose built-in chains are
        exactly the -P lines (iptables -S prints them all), else one holding every built-in
        chain named; ties are broken by targets that live in one table, then by the order
        filter, nat, raw, mangle, security."""
        policies: list[str] = []
        named: set[str] = set()
        targets: set[str] = set()
        all_builtin = {c for cs in BUILTIN_CHAINS.values() for c in cs}
        for l in content:
            try:
                w = tokenize(l.body, self.file, l.no)
            except InputError:
                continue
            if len(w) >= 2 and w[0] in ("-P", "--policy"):
                policies.append(w[1])
            if len(w) >= 2 and w[0] in ("-A", "-I", "--append", "--insert") and w[1] in all_builtin:
                named.add(w[1])
            for i, t in enumerate(w[:-1]):
                if t in ("-j", "--jump"):
                    targets.add(w[i + 1])
        order = ("filter", "nat", "raw", "mangle", "security")
        if policies:
            cands = [t for t in order if set(BUILTIN_CHAINS[t]) == set(policies)]
        else:
            cands = [t for t in order if named and named <= set(BUILTIN_CHAINS[t])]
        for name in targets:
            cls = ext.TARGETS.get(name)
            only = getattr(cls, "valid_tables", None) if cls is not None else None
            if only is None and name in _TARGET_TABLE_HINT:
                only = {_TARGET_TABLE_HINT[name]}
            if only is not None and any(c in only for c in cands):
                cands = [c for c in cands if c in only]
        if not cands:
            line = content[0].no if content else None
            raise self.err("cannot tell which table this iptables -S listing shows (built-in "
                           f"chains {', '.join(policies or sorted(named)) or 'none'}); pass table=",
                           line)
        return cands[0]


def _split_lines(text: str) -> list[_Line]:
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    out = []
    for i, t in enumerate(raw, 1):
        t = t.rstrip("\r").rstrip(" \t\r")
        out.append(_Line(i, t, t.lstrip(" \t")))
    return out


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


_ADDR_OPTS = {"-s", "-d", "--source", "--destination", "--src", "--dst"}


def _address_families(line: str) -> set[int]:
    """Families of the -s/-d values on a rule line (for family detection only)."""
    try:
        w = tokenize(line)
    except InputError:
        return set()
    out: set[int] = set()
    for i, t in enumerate(w[:-1]):
        if t in _ADDR_OPTS:
            v = w[i + 1]
            if v == "!" and i + 2 < len(w):
                v = w[i + 2]
            for item in v.split(","):
                item = item.split("/")[0].strip()
                if ":" in item:
                    out.add(6)
                elif item and item[0].isdigit():
                    out.add(4)
    return out


# --------------------------------------------------------------------------------------
# Applying commands to a table
# --------------------------------------------------------------------------------------

def _apply(cmd: _Command, t: Table, p: _Parser, line: int) -> None:
    def err(msg: str) -> InputError:
        return InputError(msg, p.file, line)

    def chain_of(name: str | None) -> Chain:
        ch = t.chains.get(name or "")
        if ch is None:
            raise err(f"chain '{name}' does not exist in table {t.name}")
        return ch

    c = cmd.cmd
    if c == "A":
        ch = chain_of(cmd.chain)
        ch.rules.extend(cmd.rules)
        ch.hooked = True
    elif c == "I":
        ch = chain_of(cmd.chain)
        ch.hooked = True
        idx = (cmd.rulenum or 1) - 1
        if idx > len(ch.rules):
            raise err(f"index of insertion too big: chain {ch.name} has {len(ch.rules)} rule(s)")
        for r in cmd.rules:
            ch.rules.insert(idx, r)
    elif c == "R":
        ch = chain_of(cmd.chain)
        idx = (cmd.rulenum or 1) - 1
        if idx >= len(ch.rules):
            raise err(f"index of replacement too big: chain {ch.name} has {len(ch.rules)} rule(s)")
        ch.rules[idx] = cmd.rules[0]
    elif c == "D" and cmd.rulenum is not None:
        ch = chain_of(cmd.chain)
        if cmd.rulenum > len(ch.rules):
            raise err(f"index of deletion too big: chain {ch.name} has {len(ch.rules)} rule(s)")
        del ch.rules[cmd.rulenum - 1]
    elif c in "DC":
        ch = chain_of(cmd.chain)
        for r in cmd.rules:
            hit = next((k for k, x in enumerate(ch.rules) if x.same_rule(r)), None)
            if hit is None:
                raise err(f"bad rule (does a matching rule exist in chain {ch.name}?)")
            if c == "D":
                del ch.rules[hit]
    elif c == "N":
        if cmd.chain in t.chains:
            raise err(f"chain {cmd.chain} already exists in table {t.name}")
        t.chains[cmd.chain] = Chain(name=cmd.chain, builtin=False,
                                    source=SourceRef(p.file, line))
    elif c == "X":
        names = [cmd.chain] if cmd.chain else [n for n, ch in t.chains.items() if not ch.builtin]
        for name in names:
            ch = chain_of(name)
            if ch.builtin:
                raise err(f"can't delete built-in chain {name}")
            if ch.rules:
                raise err(f"can't delete chain {name}: it is not empty")
            ref = _first_reference(t, name)
            if ref is not None:
                raise err(f"can't delete chain {name}: still referenced by the rule at {ref}")
            del t.chains[name]
    elif c == "F":
        for ch in ([chain_of(cmd.chain)] if cmd.chain else list(t.chains.values())):
            ch.rules.clear()
    elif c == "Z":
        chains = [chain_of(cmd.chain)] if cmd.chain else list(t.chains.values())
        for ch in chains:
            if cmd.rulenum is not None:
                if cmd.rulenum > len(ch.rules):
                    raise err(f"rule {cmd.rulenum} does not exist in chain {ch.name}")
                ch.rules[cmd.rulenum - 1].counters = Counters()
                continue
            for r in ch.rules:
                r.counters = Counters()
            ch.policy_counters = Counters()
    elif c == "P":
        ch = t.chains.get(cmd.chain or "")
        if ch is None or not ch.builtin:
            raise err(f"bad built-in chain name '{cmd.chain}' for table {t.name}")
        p.set_policy(ch, cmd.policy or "", cmd.counters, line)
    elif c == "E":
        ch = chain_of(cmd.chain)
        if ch.builtin:
            raise err(f"can't rename built-in chain {ch.name}")
        if cmd.newname in t.chains:
            raise err(f"chain {cmd.newname} already exists in table {t.name}")
        t.chains = {(cmd.newname if k == ch.name else k): v for k, v in t.chains.items()}
        old = ch.name
        ch.name = cmd.newname or ""
        for other in t.chains.values():
            for r in other.rules:
                if isinstance(r.target, JumpTarget) and r.target.chain == old:
                    r.target = JumpTarget(ch.name, r.target.goto)


def _first_reference(t: Table, name: str) -> SourceRef | str | None:
    for ch in t.chains.values():
        for k, r in enumerate(ch.rules, 1):
            if isinstance(r.target, JumpTarget) and r.target.chain == name:
                return r.source or f"{ch.name} rule {k}"
    return None


def _check_loops(t: Table, file: str) -> None:
    hit = find_loop(t)
    if hit is not None:
        names, r = hit
        raise InputError(f"chain loop in table {t.name}: {' -> '.join(names)} (the kernel "
                         "refuses it: too many levels of links)",
                         r.source.file if r.source else file, r.source.line if r.source else None)


def _check_hooks(t: Table, file: str) -> None:
    for ch, r, msg in hook_violations(t):
        raise InputError(f"{msg} (chain {ch.name} of table {t.name}; the kernel refuses it)",
                         r.source.file if r.source else file, r.source.line if r.source else None)


def _collect_unsupported(rs: Ruleset) -> None:
    """Ruleset.unsupported: every item of the rules now present, in source order."""
    items = [i for _t, _c, r in rs.rules() for i in r.unsupported]
    order = {f: k for k, f in enumerate(rs.sources)}
    items.sort(key=lambda i: (order.get(i.file or "", len(order)), i.line or 0))
    rs.unsupported = items
