"""Instructions per request on the wire (bench/wire_cost.py under callgrind): a count the other
programs on a shared machine cannot disturb, where CPU time moves by ±20 % with them.

Each case runs twice, with N1 and N2 requests; (total₂ − total₁) / (N2 − N1) leaves out start-up
and warm-up. Slow (valgrind runs Python ~50× slower): about a minute per case on a quiet core.

    .venv/bin/python -m bench.instructions [--cases raw,health,me,session] [--n1 100 --n2 600]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.infra import ROOT
from bench.wire_cost import CASES

TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)


def total(case: str, n: int, work: Path) -> int:
    out = work / f"callgrind.{case}.{n}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
         "bench.wire_cost", "--case", case, "--requests", str(n)],
        # One hash seed for every run: with random ones, dict layouts (and the probing in
        # them) differ from run to run, and so does the count.
        cwd=ROOT, check=True, capture_output=True, timeout=3600,
        env={**os.environ, "PYTHONHASHSEED": "0"})
    found = TOTALS.search(out.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"no totals in {out}")
    return int(found.group(1))


def per_request(case: str, n1: int, n2: int) -> float:
    with tempfile.TemporaryDirectory(prefix="regcopilot-callgrind-") as work:
        a, b = total(case, n1, Path(work)), total(case, n2, Path(work))
    return (b - a) / (n2 - n1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="raw,health,me,session")
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    a = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind not found (scripts/system-deps.sh installs it)", file=sys.stderr)
        return 1
    counts = {}
    for case in a.cases.split(","):
        if case not in CASES:
            parser.error(f"unknown case {case} (one of {', '.join(CASES)})")
        counts[case] = per_request(case, a.n1, a.n2)
        print(f"{case:8} {counts[case]:10,.0f} instructions per request", flush=True)
    if "raw" in counts:
        for case, n in counts.items():
            if case != "raw":
                print(f"{case:8} (R) / {case} = {counts['raw'] / n:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
