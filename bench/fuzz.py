"""The long fuzz run: every property of tests/fuzz (and the egress table's), with many more random examples.

The test suite runs the same properties in a bounded, derandomised pass (about
30 s on two cores). This runs them in rounds of fresh random examples, each
round ``--scale`` times the suite's example counts, until ``--minutes`` have
passed, and prints what ran: every property, its example count and timing
(hypothesis' statistics), and each round's result. Failing examples are kept
in ``bench/out/hypothesis`` (hypothesis replays them first on the next run);
a bug found here is fixed and its example kept as an ``@example`` on the
property, so the normal suite checks it from then on.

    .venv/bin/python bench/fuzz.py [--minutes 10] [--scale 20]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["tests/fuzz", "tests/plan/test_egress_rules.py"]


def run_round(scale: float, database: Path) -> tuple[int, int, int, str]:
    env = {**os.environ, "WASMLET_FUZZ_SCALE": str(scale), "WASMLET_FUZZ_DATABASE": str(database)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
         "-k", "not test_is_internal", *TARGETS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    examples = sum(int(n) for n in re.findall(r"(\d+) passing, ", output))
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", output)) else 0
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", output)) else 0
    return passed, failed, examples, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="keep starting rounds until then")
    parser.add_argument("--scale", type=float, default=20.0, help="examples per property, times the suite's")
    args = parser.parse_args()
    database = ROOT / "bench" / "out" / "hypothesis"
    database.mkdir(parents=True, exist_ok=True)
    print(f"# fuzz: {', '.join(TARGETS)}; {args.scale:g}x the suite's examples per round, "
          f"rounds for {args.minutes:g} min; failing examples kept in {database.relative_to(ROOT)}")
    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    rounds = total_examples = total_failed = 0
    while time.monotonic() < deadline:
        round_started = time.monotonic()
        passed, failed, examples, output = run_round(args.scale, database)
        rounds += 1
        total_examples += examples
        total_failed += failed
        print(f"\n## round {rounds}: {passed} properties passed, {failed} failed, {examples} examples, "
              f"{time.monotonic() - round_started:.0f} s")
        if rounds == 1 or failed:
            print(output)  # the statistics of every property once, and every failure in full
    print(f"\n# {rounds} rounds, {total_examples} examples in {time.monotonic() - started:.0f} s, "
          f"{total_failed} property failures")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
