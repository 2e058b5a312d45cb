"""Read any number of results trees into pandas DataFrames, with every problem as a warning."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchctl.errors import BenchctlError
from benchctl.store import config_hash, point_label, read_cell


@dataclass
class Results:
    """episodes: one row per episode; cells: one row per (run, suite, task, planner config, seed)."""

    episodes: pd.DataFrame
    cells: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def normalize(returns: np.ndarray, successes: np.ndarray, normalization: dict) -> np.ndarray:
    """Per-episode normalized score: DMC return / divisor, Meta-World success, HumanoidBench
    (x - random) / (target - random)."""
    kind = normalization.get("kind", "none")
    if kind == "scale":
        return returns / float(normalization["divisor"])
    if kind == "success":
        return successes.astype(float)
    if kind == "random_target":
        lo, hi = float(normalization["random"]), float(normalization["target"])
        return (returns - lo) / (hi - lo)
    return returns


def load_results(roots: list[Path]) -> Results:
    """All cells under `roots` (results trees of `benchctl eval`, merged)."""
    warnings: list[str] = []
    episode_rows, cell_rows = [], []
    for root in roots:
        if not root.exists():
            raise BenchctlError(f"{root}: no such results folder; pass folders written by benchctl eval")
        files = sorted(root.rglob("seed-*.jsonl"))
        if not files:
            warnings.append(f"{root}: no results (no seed-*.jsonl files below it)")
            continue
        for path in files:
            header, episodes, problems, _ = read_cell(path, strict=False)
            warnings.extend(problems)
            if header is None:
                continue
            rel = path.relative_to(root).parts
            run = rel[0] if len(rel) >= 5 else root.name
            config_id = config_hash(header["planner"], header.get("planner_config", {}))
            cell = {
                "run": run,
                "suite": header["suite"],
                "task": header["task"],
                "planner": header["planner"],
                "config": config_id,
                "seed": int(header["seed"]),
                "path": str(path),
                "checkpoint": header.get("checkpoint", ""),
                "checkpoint_sha256": header.get("checkpoint_sha256", ""),
                "observations": header.get("observations", "state"),
                "family": header.get("family", ""),
                "model_size": header.get("model_size", ""),
                "device": header.get("device", ""),
                "device_name": header.get("device_name", ""),
                "benchctl": header.get("versions", {}).get("benchctl"),
                "planner_config": header.get("planner_config", {}),
                "normalization": header.get("normalization", {}),
                "episodes": len(episodes),
                "discount": float(header.get("discount", 0.99)),
                "episode_length": header.get("episode_length"),
                "action_repeat": header.get("action_repeat"),
                "horizon": header.get("planner_config", {}).get("horizon"),
                "sweep_point": header.get("sweep", {}).get("point") or {},
                "match": header.get("match"),
            }
            if not episodes:
                warnings.append(f"{path}: header only, no finished episode")
            cell_rows.append(cell)
            returns = np.array([float(e.get("return", np.nan)) for e in episodes])
            successes = np.array([bool(e.get("success")) for e in episodes])
            scores = normalize(returns, successes, cell["normalization"])
            for e, score in zip(episodes, scores, strict=True):
                latency = e.get("latency_ms", {})
                episode_rows.append(
                    {
                        "run": run,
                        "suite": cell["suite"],
                        "task": cell["task"],
                        "planner": cell["planner"],
                        "config": config_id,
                        "seed": cell["seed"],
                        "path": cell["path"],
                        "episode": int(e["episode"]),
                        "return": float(e.get("return", np.nan)),
                        "success": e.get("success"),
                        "score": float(score),
                        "latency_ms": float(latency.get("mean", np.nan)),
                        "latency_p50_ms": float(latency.get("p50", np.nan)),
                        "latency_p95_ms": float(latency.get("p95", np.nan)),
                        # steady state: every step after the first (records before 0.x lack it: p50 is close)
                        "steady_p50_ms": float(latency.get("steady", latency).get("p50", np.nan)),
                        "steady_p95_ms": float(latency.get("steady", latency).get("p95", np.nan)),
                        "first_ms": float(latency.get("first", np.nan)),
                        "model_evals": float(e.get("model_evals_per_step", np.nan)),
                        "value_head_evals": float(e.get("work_per_step", {}).get("value_heads", np.nan)),
                        "policy_evals": float(e.get("work_per_step", {}).get("policy", np.nan)),
                        "backward": float(e.get("work_per_step", {}).get("backward", np.nan)),
                        "length": e.get("length"),
                        "rewards": e.get("rewards"),
                        "predicted_returns": e.get("predicted_returns"),
                        "predicted_rewards": e.get("predicted_rewards"),
                        "discount": cell["discount"],
                        "horizon": cell["horizon"],
                        "failed": e.get("failed"),
                        "load_avg": e.get("load_avg"),
                        # where its latency was measured: the device and its name (CPU model and threads, GPU)
                        "device": f"{cell['device']}: {cell['device_name']}" if cell["device_name"] else cell["device"],
                    }
                )
    if not cell_rows:
        where = ", ".join(map(str, roots))
        raise BenchctlError(
            f"no benchctl results found under {where}; run benchctl eval first or pass its --out folder"
        )
    if not episode_rows:  # what an eval killed or failed before its first episode leaves behind
        raise BenchctlError(
            f"the {len(cell_rows)} results file(s) under {', '.join(map(str, roots))} hold only headers, no finished "
            "episode (the eval that wrote them stopped before its first episode); rerun that eval to resume it"
        )
    episodes_df = pd.DataFrame(episode_rows)
    cells_df = pd.DataFrame(cell_rows)
    _label_methods(episodes_df, cells_df)
    return Results(episodes_df, cells_df, warnings)


def _label_methods(episodes: pd.DataFrame, cells: pd.DataFrame) -> None:
    """A readable method name per (run, planner, config): the planner name; a sweep point's options
    (`dream_mpc[horizon=3]`), or the config hash when one planner ran with several configs outside a
    sweep; the run in front when several runs (agent sets, sweeps) are merged."""
    several_runs = cells["run"].nunique() > 1
    configs = cells.groupby(["run", "planner"])["config"].nunique()
    points = {
        (r, p, c): point
        for r, p, c, point in zip(cells["run"], cells["planner"], cells["config"], cells["sweep_point"], strict=True)
        if point
    }

    def label(row) -> str:
        name = row["planner"]
        point = points.get((row["run"], row["planner"], row["config"]))
        if point:
            name = point_label(name, point)
        elif configs.loc[(row["run"], row["planner"])] > 1:
            name = f"{name}@{row['config']}"
        return f"{row['run']}/{name}" if several_runs else name

    for frame in (cells, episodes):
        frame["method"] = frame.apply(label, axis=1)
        frame["task_id"] = frame["task"] if cells["suite"].nunique() == 1 else frame["suite"] + "/" + frame["task"]
