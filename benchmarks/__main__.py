"""Run the benchmarks, each in its own process (so peak memory is its own), and print the
results as a table and as JSON:  python -m benchmarks [--quick] [NAME ...]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCHES = {
    "conntrack_table": ("benchmarks.conntrack_table", {"n": 1_000_000}, {"n": 100_000}),
    "short_flows": ("benchmarks.short_flows", {"flows": 100_000}, {"flows": 2_000}),
}


def _run_isolated(module: str, kwargs: dict) -> dict:
    code = (f"import json, {module} as m; "
            f"print('RESULT ' + json.dumps(m.run(**{kwargs!r})))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(l for l in cp.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("names", nargs="*", help=f"benchmarks to run ({', '.join(BENCHES)})")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/latest.json"))
    args = ap.parse_args(argv)
    results = {}
    for name in args.names or BENCHES:
        module, full, quick = BENCHES[name]
        res = _run_isolated(module, quick if args.quick else full)
        results[name] = res
        print(f"{name}:")
        for k, v in res.items():
            print(f"  {k:<24} {v}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
