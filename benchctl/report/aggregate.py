"""Per-seed scores, score matrices and rliable aggregates (spec/planners.md section 9).

A run is one seed; its score on a task is the mean normalized score of its episodes. rliable's
score matrices have shape (num_runs, num_tasks). rliable ignores `random_state`, so every
bootstrap runs with numpy's global generator seeded (and restored afterwards).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

METRICS = ("Median", "IQM", "Mean", "Optimality Gap")
CI_METHOD = "stratified percentile bootstrap over runs within each task, 95%"


@contextlib.contextmanager
def numpy_seed(seed: int):
    """Seed numpy's global generator for rliable, then put the caller's state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def per_seed(episodes: pd.DataFrame, by_device: bool = False) -> pd.DataFrame:
    """One row per (method, task, seed): mean score/return/success/latency over its episodes;
    `by_device`: one row per (method, device, task, seed), for latency split by where it was measured."""
    keys = ["method", "device", "task_id", "seed"] if by_device else ["method", "task_id", "seed"]
    grouped = episodes.groupby(keys, sort=True)
    out = grouped.agg(
        score=("score", "mean"),
        ret=("return", "mean"),
        latency_ms=("latency_ms", "mean"),
        steady_ms=("steady_p50_ms", "median"),
        steady_p95_ms=("steady_p95_ms", "median"),
        first_ms=("first_ms", "median"),
        model_evals=("model_evals", "mean"),
        value_head_evals=("value_head_evals", "mean"),
        policy_evals=("policy_evals", "mean"),
        backward=("backward", "mean"),
        episodes=("episode", "count"),
    ).reset_index()
    success = episodes.assign(s=episodes["success"].astype(float)).groupby(keys)["s"].mean()
    out["success"] = success.to_numpy()
    return out


@dataclass
class ScoreTable:
    """Rectangular score matrices over shared tasks: {method: (runs, tasks)}.

    `tasks_of[m]` names the columns of `matrices[m]`; methods of one group (one results run, i.e.
    one agent set) share them. `tasks` is the union over groups.
    """

    tasks: list[str]
    matrices: dict[str, np.ndarray]
    seeds: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)
    tasks_of: dict[str, list[str]] = field(default_factory=dict)


def score_table(seeds_df: pd.DataFrame, group_of: dict[str, str] | None = None) -> ScoreTable:
    """Aggregates compare like with like: within each group of methods (default: one group), only
    the tasks all its methods share, and per method the seeds its tasks share. Whatever is left
    out is said in `notes`.

    seeds_df: one row per (method, task_id, seed) with its `score`; group_of: method -> group.
    """
    methods = sorted(seeds_df["method"].unique())
    group_of = group_of or {}
    groups: dict[str, list[str]] = {}
    for m in methods:
        groups.setdefault(group_of.get(m, ""), []).append(m)
    tasks_of_method = {m: set(seeds_df.loc[seeds_df["method"] == m, "task_id"]) for m in methods}
    matrices, seeds, notes, tasks_of = {}, {}, [], {}
    for members in groups.values():
        shared = sorted(set.intersection(*(tasks_of_method[m] for m in members)))
        for m in members:
            extra = sorted(tasks_of_method[m] - set(shared))
            if extra:
                notes.append(
                    f"{m}: {len(extra)} task(s) left out of the aggregates (not run by every method of its run): "
                    + ", ".join(extra)
                )
            rows = seeds_df[(seeds_df["method"] == m) & seeds_df["task_id"].isin(shared)]
            per_task = [set(rows.loc[rows["task_id"] == t, "seed"]) for t in shared]
            common = sorted(set.intersection(*per_task)) if per_task else []
            for t, have in zip(shared, per_task, strict=True):
                if have - set(common):
                    notes.append(f"{m} on {t}: seed(s) {sorted(have - set(common))} left out (not on every task)")
            if not common:
                notes.append(f"{m}: no seed present on every shared task; left out of the aggregates")
                continue
            pivot = rows[rows["seed"].isin(common)].pivot(index="seed", columns="task_id", values="score")
            matrices[m] = pivot.loc[common, shared].to_numpy(dtype=float)
            seeds[m] = common
            tasks_of[m] = shared
    if len({tuple(t) for t in tasks_of.values()}) > 1:
        notes.append(
            "runs cover different tasks, so each run's aggregates cover its own shared tasks (see the protocol); "
            "compare aggregates within a run"
        )
    every = sorted({t for ts in tasks_of.values() for t in ts})
    return ScoreTable(every, matrices, seeds, notes, tasks_of)


def _aggregate_all(x: np.ndarray) -> np.ndarray:
    return np.array(
        [
            metrics.aggregate_median(x),
            metrics.aggregate_iqm(x),
            metrics.aggregate_mean(x),
            metrics.aggregate_optimality_gap(x, 1.0),
        ]
    )


def aggregates(table: ScoreTable, reps: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Median, IQM, mean, optimality gap (gamma = 1) per method: points {m: (4,)}, CIs {m: (2, 4)}."""
    with numpy_seed(seed):
        return rly.get_interval_estimates(table.matrices, _aggregate_all, reps=reps)


def performance_profiles(table: ScoreTable, taus: np.ndarray, reps: int, seed: int):
    """Fraction of runs scoring above each tau, with bootstrap bands: ({m: (T,)}, {m: (2, T)})."""
    with numpy_seed(seed):
        return rly.create_performance_profile(table.matrices, taus, reps=reps)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> tuple[float, np.ndarray]:
    """P(X > Y) averaged over tasks, with a stratified-bootstrap 95% CI, vectorized over replicates.

    x: (m, tasks), y: (n, tasks). Per task: P = (#{x_i > y_j} + 0.5 #{x_i = y_j}) / (m n), the
    Mann-Whitney U statistic rliable uses. Each replicate resamples x's and y's runs within each
    task independently (rliable's StratifiedIndependentBootstrap). Returns (point, [low, high]).
    """
    point = float(_poi(x[None], y[None])[0])
    rng = np.random.default_rng(seed)
    m, tasks = x.shape
    n = y.shape[0]
    columns = np.arange(tasks)
    xb = x[rng.integers(0, m, size=(reps, m, tasks)), columns]  # (R, m, T)
    yb = y[rng.integers(0, n, size=(reps, n, tasks)), columns]  # (R, n, T)
    boot = _poi(xb, yb)
    return point, np.percentile(boot, [2.5, 97.5])


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x (R, m, T), y (R, n, T) -> (R,) task-averaged P(X > Y)."""
    diff = x[:, :, None, :] - y[:, None, :, :]  # (R, m, n, T)
    per_task = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(1, 2))
    return per_task.mean(axis=1)
