"""Synthetic results trees in the real store format, for tests, demos and the report benchmark."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from benchctl.store import cell_path, open_cell

DMC_NORMALIZATION = {"kind": "scale", "divisor": 1000.0}


def write_cell(
    out: Path,
    run: str,
    suite: str,
    task: str,
    planner: str,
    seed: int,
    returns: list[float],
    latency_ms: float = 1.0,
    model_evals: float = 0.0,
    config: dict | None = None,
    normalization: dict | None = None,
    successes: list[bool] | None = None,
    step_rewards: list[float] | None = None,
    predicted_rewards: list[float] | None = None,
    episode_latency_ms: list[float | tuple[float, float]] | None = None,
    failed: dict[int, str] | None = None,
    machine: dict | None = None,
    device_name: str = "synthetic",
) -> Path:
    """One cell file whose episodes have exactly `returns` (and, if given, these per-step rewards and
    predicted H-step reward sums, identical for every episode; a median latency, or (median, p95),
    per episode; a
    failure reason for some episodes; the header's machine snapshot)."""
    config = config or {}
    path = cell_path(out, run, suite, task, planner, config, seed)
    header = {
        "type": "header",
        "suite": suite,
        "task": task,
        "seed": seed,
        "planner": planner,
        "planner_config": config,
        "checkpoint": f"{task}-{seed}.pt",
        "checkpoint_sha256": hashlib.sha256(f"{run}/{task}/{seed}".encode()).hexdigest(),
        "family": "tdmpc2",
        "model_size": "5",
        "device": "cpu",
        "device_name": device_name,
        "normalization": normalization or DMC_NORMALIZATION,
        "versions": {"benchctl": "synthetic"},
        "discount": 0.99,
        "machine": machine or {"cpu_count": 2, "affinity": [0, 1], "load_avg": [0.1, 0.1, 0.1]},
    }
    cell = open_cell(path, header)
    for i, value in enumerate(returns):
        ms = latency_ms if episode_latency_ms is None else episode_latency_ms[i]
        p50, p95 = ms if isinstance(ms, tuple) else (ms, ms)
        cell.append(
            {
                "type": "episode",
                "episode": i,
                "return": float(value),
                "success": None if successes is None else bool(successes[i]),
                "length": 500,
                "latency_ms": {"mean": p50, "p50": p50, "p95": p95, "max": p95},
                "model_evals_per_step": model_evals,
            }
            | ({} if step_rewards is None else {"rewards": step_rewards})
            | ({} if predicted_rewards is None else {"predicted_rewards": predicted_rewards})
            | ({"failed": failed[i]} if failed and i in failed else {})
        )
    return path


def write_benchmark_tree(
    out: Path,
    tasks: int = 24,
    seeds: int = 3,
    planners: tuple[str, ...] = ("policy", "mppi", "dream_mpc", "grad_mpc", "cem", "smc"),
    episodes: int = 10,
    seed: int = 0,
) -> None:
    """A tasks x seeds x planners tree with random returns, planners differing in skill and cost."""
    rng = np.random.default_rng(seed)
    for p, planner in enumerate(planners):
        for t in range(tasks):
            difficulty = rng.uniform(0.2, 0.9)
            for s in range(1, seeds + 1):
                mean = 1000 * np.clip(difficulty + 0.05 * p + rng.normal(0, 0.05), 0, 1)
                returns = np.clip(rng.normal(mean, 30, size=episodes), 0, 1000)
                write_cell(
                    out,
                    "tdmpc2",
                    "dmc",
                    f"task{t:02d}",
                    planner,
                    s,
                    returns.tolist(),
                    latency_ms=float(10 ** (p / 2)),
                    model_evals=float(10**p),
                )
