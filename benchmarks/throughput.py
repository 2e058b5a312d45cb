"""Episodes per hour of `benchctl eval` on the shipped agents: sequential, lockstep
(`--batch-episodes`), a local pool (`--jobs 2`) and both, run alternately in one session.

Each mode runs the same cells (the given tasks x one planner, `--episodes` each) from scratch in a
fresh results folder, through the CLI exactly as a user runs it (process start and model loading
included), one torch thread per process. Prints wall seconds, episodes per hour, simulator steps
per second and the speedup over the sequential run of the same round.

    python benchmarks/throughput.py [--suite demo] [--tasks cartpole-swingup,reacher-easy]
        [--planners dream_mpc,mppi] [--episodes 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchctl.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "tdmpc2" / "demo"


def modes(episodes: int) -> dict[str, list[str]]:
    return {
        "sequential": [],
        f"--batch-episodes {episodes}": ["--batch-episodes", str(episodes)],
        "--jobs 2": ["--jobs", "2"],
        f"--jobs 2 --batch-episodes {episodes}": ["--jobs", "2", "--batch-episodes", str(episodes)],
    }


def run(args: argparse.Namespace, planner: str, extra: list[str]) -> float:
    """Wall seconds of one `benchctl eval` from scratch."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "benchctl", "eval", "--suite", args.suite, "--tasks", args.tasks,
                   "--checkpoints", str(args.checkpoints), "--seeds", "1", "-p", planner,
                   "--episodes", str(args.episodes), "--threads", "1", "--out", out, *extra]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"benchctl eval {' '.join(extra)} failed:\n{proc.stderr[-2000:]}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--tasks", default="cartpole-swingup,reacher-easy")
    parser.add_argument("--checkpoints", type=Path, default=SHIPPED)
    parser.add_argument("--planners", default="dream_mpc,mppi")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per cell (and the lockstep batch)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating repetitions of every mode")
    args = parser.parse_args()

    from benchctl.suites import load_suite

    suite = load_suite(args.suite)
    tasks = args.tasks.split(",")
    episodes = len(tasks) * args.episodes
    steps = sum(suite.tasks[t].episode_length for t in tasks) * args.episodes
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs; suite {args.suite}, tasks {args.tasks}, {args.episodes} episodes per cell:")
    print(f"{episodes} episodes, {steps} policy steps per run; 1 torch thread per process")
    print(f"{'planner':<10} {'mode':<30} {'wall s':>8} {'episodes/h':>11} {'steps/s':>8} {'speedup':>8}")
    for planner in args.planners.split(","):
        table: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, extra in modes(args.episodes).items():  # alternate the modes: the machine's load drifts
                table.setdefault(name, []).append(run(args, planner, extra))
        base = min(table["sequential"])
        for name, seconds in table.items():
            best = min(seconds)
            print(f"{planner:<10} {name:<30} {best:8.1f} {episodes * 3600 / best:11.0f} {steps / best:8.1f} "
                  f"{base / best:7.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
