"""Simulator speed per suite and planning cost on a 61-dim-action agent (issue: Meta-World and HumanoidBench).

1. Environment steps per second with random actions, one task per suite (dmc acrobot-swingup,
   metaworld button-press, humanoid h1hand-run when HumanoidBench is installed): benchctl's adapter
   (policy steps; action repeat included, so a DMC/Meta-World policy step is 2 simulator steps)
   next to the bare simulator stepped the same number of simulator steps in the same process,
   the two interleaved in rounds.
2. Planning ms per step (encode + plan, as `benchctl eval` times it) of mppi and dream_mpc on a
   random-weight model_size-5 TD-MPC2 agent with HumanoidBench's dims (obs 151, action 61), next
   to the same planners on a model_size-5 agent with DMC walker's dims (obs 24, action 6); MPPI
   runs 8 iterations at action dim >= 20 (6 below), as the official code.

    python benchmarks/env_speed.py [--threads 1] [--seconds 3] [--rounds 3] [--calls 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np
import torch

from benchctl.machine import cpu_name

os.environ.setdefault("MUJOCO_GL", "disable")


def steps_per_second(step, reset, action_dim: int, seconds: float) -> float:
    """Steps per second of `step(action)` with uniform random actions, resetting when it ends."""
    rng = np.random.default_rng(0)
    reset()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if step(rng.uniform(-1, 1, action_dim).astype(np.float32)):
            reset()
        n += 1
    return n / (time.perf_counter() - start)


def dmc_pair():
    from dm_control import suite

    from benchctl.envs.dmc import DMCEnv

    env = DMCEnv("acrobot", "swingup")
    raw = suite.load("acrobot", "swingup", task_kwargs={"random": 0})
    seed = iter(range(10**9))
    ours = (lambda a: env.step(a).done, lambda: env.reset(next(seed)), env.action_dim)
    bare = (lambda a: raw.step(a).last(), raw.reset, env.action_dim)
    return "dmc acrobot-swingup", ours, bare


def metaworld_pair():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    from benchctl.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("button-press")
    raw = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE["button-press-v3-goal-observable"](seed=0)
    raw._freeze_rand_vec = False
    seed = iter(range(10**9))
    ours = (lambda a: env.step(a).done, lambda: env.reset(next(seed)), 4)
    bare = (lambda a: raw.step(a)[3] or raw.curr_path_length >= 499, raw.reset, 4)
    return "metaworld button-press", ours, bare


def humanoid_pair():
    import gymnasium as gym

    from benchctl.envs.humanoid import HumanoidEnv

    env = HumanoidEnv("h1hand-run-v0", target=700.0)  # imports HumanoidBench and adapts it to mujoco 3.3
    raw = gym.make("h1hand-run-v0", render_mode=None)
    seed = iter(range(10**9))
    ours = (lambda a: env.step(a).done, lambda: env.reset(next(seed)), 61)
    bare = (lambda a: any(raw.step(a)[2:4]), lambda: raw.reset(seed=next(seed)), 61)
    return "humanoid h1hand-run", ours, bare


def planning_ms(planner_name: str, obs_dim: int, action_dim: int, calls: int) -> float:
    from benchctl.evaluate import plan_step
    from benchctl.planners import make_planner, resolve_config
    from benchctl.train.tdmpc2 import new_model

    model = new_model(obs_dim, action_dim, size=5, seed=1).eval()
    model.discount = 0.995
    planner = make_planner(planner_name, model.freeze(), resolve_config(planner_name, {}))
    generator = torch.Generator().manual_seed(0)
    obs = np.random.default_rng(0).normal(size=(calls + 2, obs_dim)).astype(np.float32)
    times = []
    planner.reset()
    for i in range(calls + 2):
        start = time.perf_counter()
        plan_step(planner, obs[i], generator, torch.device("cpu"))
        if i >= 2:  # the first steps allocate
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--calls", type=int, default=20, help="planning steps per planner and agent")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s)")

    pairs = [dmc_pair, metaworld_pair]
    if importlib.util.find_spec("humanoid_bench"):
        pairs.append(humanoid_pair)
    else:
        print("humanoid: HumanoidBench is not installed (README: Meta-World and HumanoidBench); skipped")
    print("\n1. environment steps/s, random actions (median of interleaved rounds)")
    print(f"{'suite task':<26}{'benchctl policy steps/s':>25}{'sim steps/s (x repeat)':>24}{'bare sim steps/s':>18}")
    for make in pairs:
        label, ours, bare = make()
        repeat = 1 if label.startswith("humanoid") else 2
        mine, theirs = [], []
        for _ in range(args.rounds):
            mine.append(steps_per_second(*ours, args.seconds))
            theirs.append(steps_per_second(*bare, args.seconds))
        m, t = float(np.median(mine)), float(np.median(theirs))
        print(f"{label:<26}{m:>25,.0f}{m * repeat:>24,.0f}{t:>18,.0f}")

    print("\n2. planning ms/step (median), model_size-5 TD-MPC2 agents, random weights")
    print(f"{'planner':<12}{'obs 151 / action 61 (H1hand)':>30}{'obs 24 / action 6 (walker)':>28}{'ratio':>8}")
    for name in ("dream_mpc", "mppi"):
        big, small = [], []
        for _ in range(args.rounds):
            big.append(planning_ms(name, 151, 61, args.calls))
            small.append(planning_ms(name, 24, 6, args.calls))
        b, s = float(np.median(big)), float(np.median(small))
        print(f"{name:<12}{b:>30.1f}{s:>28.1f}{b / s:>8.2f}")


if __name__ == "__main__":
    main()
