"""The parity suite: every scenario under tests/parity/scenarios/<area>/ runs on the model and
on the real kernel, and must agree through the same diff as `conntrace verify`.

At the end of the run a short report lists scenarios, agreements and disagreements by area.
"""

from __future__ import annotations

from collections import defaultdict

from conntrace.kernel.testing import kernel_required, pytest_runtest_makereport  # noqa: F401

# area -> list of (scenario, ok, n_agree, n_disagree, n_known)
RESULTS: dict[str, list[tuple[str, bool, int, int, int]]] = defaultdict(list)


def record(area: str, name: str, comparison) -> None:
    RESULTS[area].append((name, comparison.ok, comparison.count("agree"),
                          comparison.count("disagree"), comparison.count("known deviation")))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("parity report (model vs kernel)")
    total = agree_sc = items_dis = items_known = 0
    for area in sorted(RESULTS):
        rows = RESULTS[area]
        ok = sum(1 for r in rows if r[1])
        dis = sum(r[3] for r in rows)
        known = sum(r[4] for r in rows)
        total += len(rows)
        agree_sc += ok
        items_dis += dis
        items_known += known
        tr.write_line(f"  {area:<14} {len(rows):3d} scenarios, {ok:3d} agree, "
                      f"{len(rows) - ok:3d} disagree ({dis} items), {known} known-deviation items")
        for name, good, _a, d, _k in rows:
            if not good:
                tr.write_line(f"      DISAGREE {name}: {d} item(s)")
    tr.write_line(f"  {'total':<14} {total:3d} scenarios, {agree_sc:3d} agree, "
                  f"{total - agree_sc:3d} disagree; {items_dis} unexplained item(s), "
                  f"{items_known} known-deviation item(s)")
