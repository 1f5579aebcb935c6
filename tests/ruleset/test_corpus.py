"""Every ruleset of the shared corpus (<repo>/../shared/corpus, see its README.md): loads
without a crash, either fully or with an InputError naming the file and line; every
unsupported construct is listed with file:line; every parsed file round-trips through
iptables-save text. A summary (files, rules, unsupported by name, refused files) is
printed to the test output.

Partial `--noflush` inputs of one kube-proxy test (`<Test>.NN.rules`, NN > 01) are applied
on top of the previous file of the series, as kube-proxy restores them."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from conntrace.errors import InputError
from conntrace.ruleset import ext
from conntrace.ruleset.iptables_save import load_rules_file, parse_rules
from conntrace.ruleset.model import RulesetPair
from conntrace.ruleset.writer import to_save

from ruleset_helpers import assert_same_ruleset

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
_SKIP_DIRS = {"LICENSES"}
_SERIES = re.compile(r"^(?P<test>.+)\.(?P<n>\d\d)\.rules$")


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*")
                  if p.is_file() and p.suffix != ".md"
                  and not _SKIP_DIRS & set(p.relative_to(CORPUS).parts))


FILES = corpus_files()
RESULTS: dict[str, dict] = {}
_LOADED: dict[Path, RulesetPair] = {}


def _previous_in_series(path: Path) -> Path | None:
    m = _SERIES.match(path.name)
    if m is None or int(m.group("n")) <= 1:
        return None
    prev = path.with_name(f"{m.group('test')}.{int(m.group('n')) - 1:02d}.rules")
    return prev if prev.exists() else None


def _load(path: Path) -> RulesetPair:
    if path in _LOADED:
        return _LOADED[path]
    prev = _previous_in_series(path)
    if prev is not None:
        pair = load_rules_file(path, base=_load(prev), noflush=True)
    else:
        pair = load_rules_file(path)
    _LOADED[path] = pair
    return pair


def _rule_lines(text: str) -> dict[int, str]:
    """Line number -> text of every -A/-I line inside a *table section (for restore input)
    or anywhere (for an iptables -S listing)."""
    lines = text.split("\n")
    has_tables = any(l.lstrip().startswith("*") for l in lines)
    out, inside = {}, not has_tables
    for no, l in enumerate(lines, 1):
        b = l.strip()
        if b.startswith("*"):
            inside = True
        elif b == "COMMIT":
            inside = not has_tables
        elif inside and re.match(r"^(\[\d+:\d+\]\s*)?-[AI]\s", b):
            out[no] = b
    return out


@pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES]
                         if FILES else None)
def test_corpus_file(path: Path):
    text = path.read_text()
    nlines = len(text.split("\n"))
    rel = str(path.relative_to(CORPUS))
    try:
        pair = _load(path)
    except InputError as e:
        # refused like iptables-restore refuses it: one error, naming this file and a line
        assert e.file == str(path) and e.line is not None and 1 <= e.line <= nlines + 1, str(e)
        assert str(e).startswith(f"{path}:{e.line}: ") and e.message
        RESULTS[rel] = {"error": str(e).replace(str(CORPUS) + "/", "")}
        return
    rulesets = [rs for rs in (pair.v4, pair.v6) if rs is not None]
    n_rules = 0
    for rs in rulesets:
        for item in rs.unsupported:
            assert item.file is not None and item.line is not None
            assert f" at {item.file}:{item.line}" in str(item)
        for t, c, r in rs.rules():
            if r.source is None or r.source.file != str(path):
                continue  # from an earlier file of a --noflush series
            n_rules += 1
            # the rule points at its own line; its unsupported items are on the rule too
            assert text.split("\n")[r.source.line - 1].strip() == r.source.text.strip()
            for item in r.unsupported:
                assert (item.file, item.line) == (str(path), r.source.line)
                assert any(i is item or (i.name, i.line) == (item.name, item.line)
                           for i in rs.unsupported)
            assert r.supported == (not r.unsupported)
    # parsed fully: every -A/-I line of a file with no deleting command became a rule
    if not re.search(r"^\s*-[DFXRE]\b", text, re.M) and _previous_in_series(path) is None:
        lines = {r.source.line for rs in rulesets for _t, _c, r in rs.rules()}
        skipped = {int(n.split(":")[1]) for n in pair.notes if "skipped: rule for" in n}
        missing = set(_rule_lines(text)) - lines - skipped
        assert not missing, f"rule lines not in the model: {sorted(missing)}"
    # round trip through iptables-save text
    for rs in rulesets:
        saved = to_save(rs, counters=True)
        back = parse_rules(saved, "roundtrip", family=rs.family)
        again = back.v4 if rs.family == 4 else back.v6
        assert_same_ruleset(rs, again)
        assert to_save(again, counters=True) == saved
    RESULTS[rel] = {
        "rules": n_rules,
        "families": [rs.family for rs in rulesets if rs.tables],
        "unsupported": [i for rs in rulesets for i in rs.unsupported if i.file == str(path)],
        "notes": len(pair.notes),
    }


@pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")
def test_known_invalid_inputs_are_refused_like_iptables_restore():
    """Quirks the corpus README lists as invalid for real iptables-restore."""
    ext.load_all()
    with pytest.raises(InputError) as e:
        load_rules_file(CORPUS / "net-network/configs_serverfault/759927-info.cut.iptables-save")
    assert e.value.line == 20 and "tcp match needs -p tcp" in e.value.message
    # kube-proxy's sorting test jumps to KUBE-MARK-DROP, which it never declares
    with pytest.raises(InputError) as e:
        load_rules_file(CORPUS / "kube-proxy/TestSortIPTablesRules.rules")
    assert "KUBE-MARK-DROP" in e.value.message
    # a partial restore alone jumps to chains that only its predecessor created
    with pytest.raises(InputError) as e:
        load_rules_file(CORPUS / "kube-proxy/TestSyncProxyRulesRepeated.02.rules")
    assert "does not exist" in e.value.message
    if "comment" in ext.MATCHES:
        # unquoted multi-word --comment: "Bad argument" in iptables-restore
        with pytest.raises(InputError) as e:
            load_rules_file(CORPUS / "kube-proxy/TestTracePacket.rules")
        assert e.value.line == 11 and "bad argument" in e.value.message


@pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")
def test_summary(capsys):
    """Runs after the per-file tests (same module, later): prints what the corpus gave."""
    for path in FILES:  # when run alone (-k summary), load everything here
        rel = str(path.relative_to(CORPUS))
        if rel not in RESULTS:
            try:
                test_corpus_file(path)
            except AssertionError:
                RESULTS[rel] = {"error": "assertion failed (see the per-file test)"}
    parsed = {k: v for k, v in RESULTS.items() if "error" not in v}
    refused = {k: v["error"] for k, v in RESULTS.items() if "error" in v}
    by_name = collections.Counter(f"{i.kind} {i.name}" for v in parsed.values()
                                  for i in v["unsupported"])
    files_with = sum(1 for v in parsed.values() if v["unsupported"])
    lines = [
        "",
        f"corpus {CORPUS}: {len(RESULTS)} files, {len(parsed)} parsed "
        f"({sum(1 for v in parsed.values() if 6 in v['families'])} with IPv6), "
        f"{len(refused)} refused, {sum(v['rules'] for v in parsed.values())} rules, "
        f"{sum(by_name.values())} unsupported constructs in {files_with} files",
    ]
    for name, n in by_name.most_common():
        lines.append(f"  unsupported {name}: {n}")
    for rel, msg in sorted(refused.items()):
        lines.append(f"  refused {msg}")
    with capsys.disabled():
        print("\n".join(lines))
    assert len(RESULTS) == len(FILES)
    assert parsed, "no corpus file could be parsed"
