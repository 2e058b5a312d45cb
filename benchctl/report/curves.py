"""Training curves of the evaluated agents beside the published learning curve of the same task.

`benchctl train` logs a periodic evaluation (`{"type": "eval", "step": ..., "<planner>": return,
"<planner>.success": rate}`) in `<checkpoint stem>.log.jsonl`. For every agent of a report whose
log is found, these points are set beside a reference's whole curve (`--reference tdmpc2-csv`) at
the same training steps: mean, min and max over the seeds that published a point at that step (the
TD-MPC2 repository publishes one every 100k steps; the figure draws the whole curve).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchctl.report.reference import Reference
from benchctl.shipped import SHIPPED_DIR, ShippedAgent, load_manifest
from benchctl.train.files import RECORD_FIELDS, RunLog, log_path


@dataclass
class TrainingCurves:
    """evaluations: one row per (agent, planner, step) with `agent`, `task_id`, `task`, `metric`
    ("reward" = return, "success" = success rate), `planner`, `step`, `value`.
    official: one row per (reference, task_id, seed, step) of the references' curves on those tasks.
    table: one row per (agent, step): the logged values per planner and the official mean, min, max
    and seed count where the reference published a point at that step."""

    evaluations: pd.DataFrame
    official: pd.DataFrame
    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def training_log(checkpoint: str, sha256: str, shipped: list[ShippedAgent]) -> tuple[Path | None, int | None]:
    """(log path, last training step it may count) of an evaluated checkpoint: the log beside it,
    else the log of the shipped agent with the same sha256 (results carried from another machine);
    a shipped agent's log counts up to its manifest's training steps."""
    entry = next((a for a in shipped if a.sha256 == sha256), None)
    until = entry.training_steps if entry else None
    for candidate in (Path(checkpoint) if checkpoint else None, SHIPPED_DIR / entry.path if entry else None):
        if candidate is not None and log_path(candidate).is_file():
            return log_path(candidate), until
    return None, None


def logged_evaluations(log: Path, metric: str, until: int | None = None) -> pd.DataFrame:
    """`step`, `planner`, `value` of the log's evaluations (returns, or success rates where `metric`
    is "success"); a line torn by a kill is skipped, evaluations past `until` are left out."""
    rows = []
    for record in RunLog(log).records():
        if record.get("type") != "eval" or (until is not None and int(record["step"]) > until):
            continue
        for key, value in record.items():
            if key in RECORD_FIELDS or value is None:
                continue
            planner, _, kind = key.partition(".")
            if (kind == "success") == (metric == "success"):
                rows.append({"step": int(record["step"]), "planner": planner, "value": float(value)})
    return pd.DataFrame(rows, columns=["step", "planner", "value"])


def curve_name(ref: Reference) -> str:
    """A reference's label without the step its per-task scores were read at ("ref: tdmpc2 csv")."""
    return ref.label.split(" @ ")[0].split(" (final")[0]


def official_at(curves: pd.DataFrame, steps: np.ndarray) -> pd.DataFrame:
    """Mean, min, max and number of seeds of the published curves (`seed`, `step`, `value` rows) at
    `steps`, where a seed published a point at that step (NaN where none did: a curve published
    every 100k steps says nothing exact about 25k)."""
    published = curves.groupby("step")["value"]
    stats = pd.DataFrame(
        {
            "official_mean": published.mean(),
            "official_min": published.min(),
            "official_max": published.max(),
            "official_seeds": published.count(),
        }
    )
    at = stats.reindex(steps)
    at["official_seeds"] = at["official_seeds"].fillna(0).astype(int)
    return at.reset_index(names="step")


def training_curves(cells: pd.DataFrame, refs: list[Reference]) -> TrainingCurves:
    """The training curves of the report's agents (cells: the report's cell rows) and of the
    references with whole curves on the same tasks and episode protocol."""
    shipped = load_manifest()
    agents = cells.drop_duplicates(["run", "task_id", "checkpoint_sha256"])
    several_runs = cells["run"].nunique() > 1
    evaluations, officials, notes, unlogged = [], [], [], []
    for _, cell in agents.iterrows():
        name = Path(cell["checkpoint"]).name if cell["checkpoint"] else cell["checkpoint_sha256"][:12]
        agent = f"{cell['family']} {name}"
        if several_runs and cell["run"] != cell["family"]:
            agent = f"{cell['run']}: {agent}"
        metric = "success" if cell["normalization"].get("kind") == "success" else "reward"
        log, until = training_log(cell["checkpoint"], cell["checkpoint_sha256"], shipped)
        found = logged_evaluations(log, metric, until) if log is not None else pd.DataFrame()
        if found.empty:
            unlogged.append(agent)
            continue
        evaluations.append(found.assign(agent=agent, task_id=cell["task_id"], task=cell["task"], metric=metric))
        protocol = (cell["episode_length"], cell["action_repeat"])
        for ref in refs:
            if ref.curves is None:
                continue
            same = ref.curves["protocol"].map(lambda p, protocol=protocol: tuple(p) == protocol)
            curve = ref.curves[(ref.curves["task"] == cell["task"]) & same]
            if curve.empty:
                continue
            if cell["observations"] != "state":
                notes.append(
                    f"training curves: {agent} observes {cell['observations']}; {ref.label}'s curve is from state"
                )
            officials.append(curve.assign(reference=curve_name(ref), task_id=cell["task_id"], agent=agent))
            break  # one published curve per agent: the first reference that has its task
    if unlogged and evaluations:
        notes.append(
            f"training curves: no training log (.log.jsonl written by benchctl train) for {', '.join(unlogged)}"
        )
    evals = pd.concat(evaluations, ignore_index=True) if evaluations else pd.DataFrame()
    official = pd.concat(officials, ignore_index=True) if officials else pd.DataFrame()
    return TrainingCurves(evals, official, _table(evals, official), notes)


def _table(evals: pd.DataFrame, official: pd.DataFrame) -> pd.DataFrame:
    """One row per (agent, step): planners' logged values side by side, then the official curve there."""
    if evals.empty:
        return pd.DataFrame()
    wide = evals.pivot_table(index=["agent", "task_id", "metric", "step"], columns="planner", values="value")
    wide = wide.reset_index()
    wide.columns.name = None
    parts = []
    for (agent, task_id), rows in wide.groupby(["agent", "task_id"], sort=False):
        rows = rows.sort_values("step")
        curve = official[(official["agent"] == agent) & (official["task_id"] == task_id)] if len(official) else official
        if len(curve):
            at = official_at(curve, rows["step"].to_numpy(int)).drop(columns="step")
            rows = pd.concat([rows.reset_index(drop=True), at], axis=1).assign(reference=curve["reference"].iloc[0])
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)
