"""What a report must warn about: partial results, mixed protocols, failed episodes, latency
measured on a busy machine, and intervals the bootstrap cannot estimate. Each check returns one
line per problem."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from benchctl import machine
from benchctl.report import aggregate as agg
from benchctl.report.load import Results


def protocol_warnings(results: Results) -> list[str]:
    """Partial results and mixed protocols, each as one line."""
    cells = results.cells[results.cells["episodes"] > 0]
    warnings = []
    counts = cells.groupby("method")["episodes"].agg(lambda s: sorted(set(s)))
    overall = sorted(set(cells["episodes"]))
    if len(overall) > 1:
        for method, values in counts.items():
            warnings.append(
                f"mixed protocols: {method} has {'/'.join(map(str, values))} episodes per seed "
                f"(all cells: {'/'.join(map(str, overall))})"
            )
    for _, run_cells in cells.groupby("run"):  # a run is one agent set: its methods should match
        all_seeds = set(run_cells["seed"])
        for (method, task), group in run_cells.groupby(["method", "task_id"]):
            missing = sorted(all_seeds - set(group["seed"]))
            if missing:
                warnings.append(f"partial: {method} on {task} lacks seed(s) {missing}")
        all_tasks = set(run_cells["task_id"])
        for method, group in run_cells.groupby("method"):
            missing = sorted(all_tasks - set(group["task_id"]))
            if missing:
                warnings.append(f"partial: {method} lacks task(s) {', '.join(missing)}")
    for (method, task), group in cells.groupby(["method", "task_id"]):
        if group["normalization"].map(json.dumps).nunique() > 1:
            warnings.append(f"mixed protocols: {method} on {task} mixes normalizations")
    return warnings


def failure_warnings(results: Results) -> list[str]:
    """Episodes that ended as failed (non-finite actions, diverged simulator), per method and task."""
    failed = results.episodes[results.episodes["failed"].notna()]
    return [
        f"failed episodes: {method} on {task}: {len(group)} of "
        f"{int(((results.episodes['method'] == method) & (results.episodes['task_id'] == task)).sum())} "
        f"(e.g. seed {group['seed'].iloc[0]} episode {group['episode'].iloc[0]}: {group['failed'].iloc[0]}); "
        "each counts with the return it reached"
        for (method, task), group in failed.groupby(["method", "task_id"])
    ]


def contention_warnings(results: Results) -> tuple[list[str], dict[str, int]]:
    """Cells whose latency spread says the machine was busy (machine.slow_episodes, slow_cells).

    Returns (warnings, {method: flagged cells}).
    """
    episodes = results.episodes
    cells = episodes.groupby(["method", "task_id", "seed"])
    median = cells["latency_p50_ms"].median()
    slow_cell = pd.concat(
        [pd.Series(machine.slow_cells(group.to_numpy()), index=group.index) for _, group in median.groupby("method")]
    )
    warnings: list[str] = []
    flagged: dict[str, int] = {}
    for key, group in cells:
        slow = machine.slow_episodes(group["latency_p50_ms"].to_numpy(), group["latency_p95_ms"].to_numpy())
        if not slow.any() and not slow_cell[key]:
            continue
        method, task, seed = key
        flagged[method] = flagged.get(method, 0) + 1
        reasons = []
        if slow.any():
            reasons.append(
                f"{int(slow.sum())} of {len(slow)} episode(s) with a latency spread one computation cannot explain"
            )
        if slow_cell[key]:
            reasons.append(
                f"median {median[key]:.1f} ms/step, over {machine.ACROSS_CELLS_FACTOR:g}x {method}'s median on "
                f"other tasks ({median[method].median():.1f})"
            )
        loads = [x for x in group["load_avg"] if x is not None and np.isfinite(x)]
        load = f" (load average up to {max(loads):.2f})" if loads else ""
        warnings.append(f"contended latency: {method} on {task} seed {seed}: {'; '.join(reasons)}{load}")
    return warnings, flagged


def ci_warnings(table: agg.ScoreTable) -> list[str]:
    """Intervals the bootstrap cannot estimate: one run per task gives zero-width CIs."""
    single = sorted(m for m, s in table.seeds.items() if len(s) < 2)
    if not single:
        return []
    return [
        f"confidence intervals cannot be estimated for {', '.join(single)}: one run (seed) per task, so the "
        "bootstrap has nothing to resample; their CIs are zero-width and P(X > Y) can only be 0, 0.5 or 1. "
        "Evaluate several seeds (--seeds 1,2,3) for intervals"
    ]
