"""Planning latency per step on the ms5 reference agent (CPU, 2 threads by default).

Prints median and p95 ms per planning step (encode + plan, as `benchctl eval` times it) for each
planner, next to a reference run in the same process: MPPI written the straightforward way
(separate dynamics/reward passes, all value heads decoded, then two picked), i.e. the official
code's arithmetic. The official TD-MPC2 code measured ~570 ms per MPPI step on this 2-core machine.

    python benchmarks/latency.py [--checkpoint PATH] [--threads 2] [--calls 30] [--planners policy,mppi]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchctl.agents import load_checkpoint
from benchctl.evaluate import plan_step
from benchctl.planners import make_planner, registry, resolve_config
from benchctl.planners.mppi import MPPIPlanner
from benchctl.runtime import keep_freed_memory

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tdmpc2-ms5-reacher-easy.pt"


class StraightforwardMPPI(MPPIPlanner):
    """Reference: same algorithm, value estimate computed as the official `_estimate_value` does."""

    name = "mppi-reference"

    def estimate_value(self, z, actions, generator):
        ret, discount = 0.0, 1.0
        z = z.contiguous()
        for a in actions:
            reward = self.model.reward(z, a)
            z = self.model.next(z, a)
            ret = ret + discount * reward
            discount *= self.model.discount
        heads = self.model.value(z, self.model.policy(z, generator=generator)[0])  # all heads, then two
        pick = torch.randperm(heads.shape[0], generator=generator)[:2]
        return (ret + discount * heads[pick].mean(0)).squeeze(1)


def time_planner(planner, observations: np.ndarray, max_calls: int, budget_s: float, warmup: int = 2) -> np.ndarray:
    """ms per planning step (encode + plan, as `benchctl eval` times it) after `warmup` steps;
    at most `max_calls` steps or about `budget_s` seconds, whichever comes first (at least 3)."""
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    times: list[float] = []
    start_all = time.perf_counter()
    for i in range(warmup + max_calls):
        start = time.perf_counter()
        plan_step(planner, observations[i % len(observations)], generator, device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
            if len(times) >= 3 and time.perf_counter() - start_all > budget_s:
                break
    return np.asarray(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30, help="timed planning steps per planner (at most)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per planner (at least 3 steps)")
    parser.add_argument("--planners", default=",".join(registry()))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the benchctl command does
    model = load_checkpoint(args.checkpoint)
    model.discount = 0.99
    observations = np.random.default_rng(1).standard_normal((64, model.dims.obs_dim)).astype(np.float32)
    print(f"checkpoint: {args.checkpoint.name} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'planner':<16}{'median ms':>11}{'p95 ms':>10}{'WM evals/step':>15}")
    rows = {}
    planners = [(n, make_planner(n, model, resolve_config(n, {}))) for n in args.planners.split(",")]
    planners.append(("mppi-reference", StraightforwardMPPI(model, resolve_config("mppi", {}))))
    for name, planner in planners:
        calls = args.calls if planner.model_evals_per_step(planner.config, model.action_dim) else 10 * args.calls
        times = time_planner(planner, observations, calls, args.budget)
        before = model.model_evals
        plan_step(planner, observations[0], torch.Generator().manual_seed(0), torch.device("cpu"))
        evals = model.model_evals - before
        rows[name] = np.median(times)
        print(f"{name:<16}{np.median(times):>11.2f}{np.percentile(times, 95):>10.2f}{evals:>15,.0f}")
    if "mppi" in rows:
        print(
            f"mppi / reference: {rows['mppi'] / rows['mppi-reference']:.2f}x time "
            f"(target: <= 450 ms; official code ~570 ms here)"
        )


if __name__ == "__main__":
    main()
