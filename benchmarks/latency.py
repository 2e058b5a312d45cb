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
from benchctl.planners import make_planner, registry, resolve_config
from benchctl.planners.mppi import MPPIPlanner

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


def time_planner(planner, observations: torch.Tensor, calls: int, warmup: int = 3) -> np.ndarray:
    """ms per planning step (encode + plan) over `calls` states."""
    generator = torch.Generator().manual_seed(0)
    times = []
    with torch.inference_mode():
        for i in range(warmup + calls):
            obs = observations[i % len(observations)].unsqueeze(0)
            start = time.perf_counter()
            planner.plan(planner.model.encode(obs), generator)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30, help="timed planning steps per planner")
    parser.add_argument("--planners", default=",".join(registry()))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    model.discount = 0.99
    observations = torch.randn(64, model.dims.obs_dim, generator=torch.Generator().manual_seed(1))
    print(f"checkpoint: {args.checkpoint.name} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'planner':<16}{'median ms':>11}{'p95 ms':>10}{'WM evals/step':>15}")
    rows = {}
    planners = [(n, make_planner(n, model, resolve_config(n, {}))) for n in args.planners.split(",")]
    planners.append(("mppi-reference", StraightforwardMPPI(model, resolve_config("mppi", {}))))
    for name, planner in planners:
        calls = args.calls if planner.model_evals_per_step(planner.config, model.action_dim) else 10 * args.calls
        before = model.model_evals
        times = time_planner(planner, observations, calls)
        evals = (model.model_evals - before) / (calls + 3)
        rows[name] = np.median(times)
        print(f"{name:<16}{np.median(times):>11.2f}{np.percentile(times, 95):>10.2f}{evals:>15,.0f}")
    if "mppi" in rows:
        print(f"mppi / reference: {rows['mppi'] / rows['mppi-reference']:.2f}x time "
              f"(target: <= 450 ms; official code ~570 ms here)")


if __name__ == "__main__":
    main()
