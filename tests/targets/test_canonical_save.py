"""Every target renders exactly what iptables-save 1.8.9 printed for the same rule on the real
tool (data/iptables_save_targets.tsv), and parsing the saved form gives the same object."""

from __future__ import annotations

from pathlib import Path

import pytest

from conntrace.ruleset import ext
from conntrace.ruleset.iptables_save import parse_protocol, parse_rules, tokenize
from conntrace.ruleset.writer import quote_token, to_save

from .conftest import opts_from, pctx

DATA = Path(__file__).parent / "data" / "iptables_save_targets.tsv"


def _cases():
    for line in DATA.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        table, chain, written, saved = line.split("\t")
        yield pytest.param(table, chain, written, saved, id=f"{table}:{written}")


def _split(rule: str) -> tuple[int | None, bool, str, list[str]]:
    """(proto, proto inverted, target name, target tokens) of a simple rule."""
    toks = tokenize(rule)
    proto, inv = None, False
    if "-p" in toks:
        i = toks.index("-p")
        proto = parse_protocol(toks[i + 1])
        inv = i > 0 and toks[i - 1] == "!"
    j = toks.index("-j")
    return proto, inv, toks[j + 1], toks[j + 2:]


@pytest.mark.parametrize("table,chain,written,saved", list(_cases()))
def test_render_matches_iptables_save(table, chain, written, saved):
    proto, inv, name, toks = _split(written)
    cls = ext.TARGETS[name]
    ctx = pctx(4, table, chain, proto, inv)
    t = cls.parse(opts_from(cls, toks), ctx)
    rendered = " ".join(quote_token(x) for x in [f"-j", name, *t.render()])
    assert saved.endswith(rendered) and saved[: -len(rendered)].rstrip().split()[-1] != "-j"
    assert saved.split(" -j ", 1)[1] == rendered[len("-j "):]
    # the saved form reads back to the same target
    _, _, _, saved_toks = _split(saved)
    assert cls.parse(opts_from(cls, saved_toks), ctx) == t


def test_whole_file_through_parser_and_writer():
    """The saved lines, as one iptables-save file, survive parse_rules + to_save unchanged."""
    by_table: dict[str, list[tuple[str, str]]] = {}
    for line in DATA.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        table, chain, _, saved = line.split("\t")
        by_table.setdefault(table, []).append((chain, saved))
    chains = {"raw": ("PREROUTING", "OUTPUT"),
              "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
              "filter": ("INPUT", "FORWARD", "OUTPUT"),
              "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
    parts = []
    for table in ("mangle", "raw", "filter", "nat"):
        parts.append(f"*{table}")
        parts += [f":{c} ACCEPT [0:0]" for c in chains[table]]
        # iptables-save groups rules by chain in hook order
        for c in chains[table]:
            parts += [s for ch, s in by_table.get(table, []) if ch == c]
        parts.append("COMMIT")
    text = "\n".join(parts) + "\n"
    rs = parse_rules(text, "saved.rules").v4
    assert rs.unsupported == []
    out = to_save(rs)
    want = [p for p in parts if p.startswith("-A")]
    got = [line for line in out.splitlines() if line.startswith("-A")]
    assert sorted(got) == sorted(want)
