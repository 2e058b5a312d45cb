"""TD-MPC2 updates per second (batch 256, horizon 3) on this CPU, per model size.

Reference figures measured with the official code on this 2-core machine (torch 2.13): 2.5 updates/s
at model_size 1, 1.5 at model_size 5, 12 at enc 128 / mlp 128 / latent 64.

    python benchmarks/train_speed.py [--threads 2] [--updates 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchctl.train.tdmpc2 import TDMPC2Learner, new_model

OFFICIAL = {"size 1": 2.5, "size 5": 1.5, "128,128,64": 12.0}


def updates_per_second(size: int | None, dims, updates: int, obs_dim: int = 24, action_dim: int = 6) -> float:
    model = new_model(obs_dim, action_dim, size, dims)
    learner = TDMPC2Learner(model, 0.99)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(4, 256, obs_dim, generator=g)
    action = torch.rand(3, 256, action_dim, generator=g) * 2 - 1
    reward = torch.rand(3, 256, 1, generator=g)
    for _ in range(3):  # warm-up
        learner.update(obs, action, reward, g)
    start = time.perf_counter()
    for _ in range(updates):
        learner.update(obs, action, reward, g)
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"walker-sized agent (obs 24, action 6), batch 256, horizon 3, {args.threads} threads")
    print(f"{'model':<12}{'updates/s':>11}{'official':>10}{'ratio':>8}")
    for label, size, dims, n in (
        ("size 1", 1, None, args.updates),
        ("size 5", 5, None, args.updates),
        ("128,128,64", None, (128, 128, 64), 5 * args.updates),
    ):
        rate = updates_per_second(size, dims, n)
        print(f"{label:<12}{rate:>11.2f}{OFFICIAL[label]:>10.1f}{rate / OFFICIAL[label]:>7.2f}x")


if __name__ == "__main__":
    main()
