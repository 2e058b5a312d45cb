"""Time `benchctl report` on a 24-task x 3-seed x 6-planner synthetic results tree (target: < 60 s
with 2000 replicates on a 2-core CPU), and time rliable's own probability-of-improvement bootstrap
for one pair in the same process, the part benchctl computes vectorized instead.

    python benchmarks/report_speed.py [--reps 2000] [--rliable-reps 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics

from benchctl.report.aggregate import numpy_seed, probability_of_improvement
from benchctl.report.render import build_report
from benchctl.report.synthetic import write_benchmark_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--rliable-reps", type=int, default=2000, help="replicates for the rliable reference pair")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        write_benchmark_tree(root)
        start = time.perf_counter()
        report = build_report([root], Path(tmp) / "report", reps=args.reps)
        total = time.perf_counter() - start
        pairs = len(report.improvement)
        print(
            f"benchctl report, 24 tasks x 3 seeds x 6 planners, {args.reps} replicates: {total:.1f} s "
            f"({len(report.files)} files, {pairs} improvement pairs)"
        )
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0.3, 0.9, (3, 24)), rng.uniform(0.25, 0.85, (3, 24))  # two methods' (runs, tasks) scores
    start = time.perf_counter()
    ours = probability_of_improvement(x, y, args.rliable_reps, seed=0)
    vectorized = time.perf_counter() - start
    start = time.perf_counter()
    with numpy_seed(0):
        _, theirs = rly.get_interval_estimates(
            {"xy": [x, y]}, metrics.probability_of_improvement, reps=args.rliable_reps
        )
    reference = time.perf_counter() - start
    print(
        f"probability of improvement, one pair, {args.rliable_reps} replicates: vectorized {vectorized * 1e3:.1f} ms, "
        f"rliable {reference:.1f} s ({reference / vectorized:,.0f}x); "
        f"CI {np.round(ours[1], 3).tolist()} vs rliable {np.round(theirs['xy'][:, 0], 3).tolist()}"
    )


if __name__ == "__main__":
    main()
