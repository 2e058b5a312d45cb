"""Sweeps and compute-matched comparisons in a report: per sweep point and per matched planner, its
IQM (95% CI) next to what it cost per planning step on its machine.

Costs are measured: the steady-state latency (median over a method's cells of each cell's median
per-episode p50 after the first step) and the counted world-model evaluations per step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchctl.match import parse_budget


def method_costs(seeds: pd.DataFrame) -> pd.DataFrame:
    """Rows: methods; columns: steady_ms (median over (task, seed) cells), model_evals (mean)."""
    grouped = seeds.groupby("method")
    return pd.DataFrame({"steady_ms": grouped["steady_ms"].median(), "model_evals": grouped["model_evals"].mean()})


def sweep_table(cells: pd.DataFrame, points: dict, cis: dict, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep point with options: run, planner, the point's options as columns, method,
    IQM and its CI, steady ms and evals per step. Empty when no cell belongs to a sweep grid."""
    swept = cells[cells["sweep_point"].map(bool)]
    rows = []
    for method, group in swept.groupby("method"):
        if method not in points:  # left out of the aggregates (see the report's notes)
            continue
        first = group.iloc[0]
        rows.append(
            {
                "run": first["run"],
                "planner": first["planner"],
                **{f"option:{k}": v for k, v in first["sweep_point"].items()},
                "method": method,
                "iqm": points[method][1],
                "iqm_low": cis[method][0][1],
                "iqm_high": cis[method][1][1],
                "steady_ms": costs.loc[method, "steady_ms"],
                "model_evals": costs.loc[method, "model_evals"],
            }
        )
    return pd.DataFrame(rows)


def sweep_axes(table: pd.DataFrame, run: str, planner: str) -> list[str]:
    """The options swept for (run, planner) with more than one value."""
    rows = table[(table["run"] == run) & (table["planner"] == planner)]
    options = [c for c in rows.columns if c.startswith("option:") and rows[c].notna().any()]
    return [c.removeprefix("option:") for c in options if rows[c].nunique() > 1]


def matched_table(cells: pd.DataFrame, points: dict, cis: dict, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per compute-matched method (an eval run with --match): the budget, the options chosen,
    the cost measured when choosing and in this run, and the IQM with its CI."""
    matched = cells[cells["match"].map(lambda m: isinstance(m, dict))]
    rows = []
    for method, group in matched.groupby("method"):
        if method not in points:
            continue
        match = group.iloc[0]["match"]
        kind = parse_budget(match["budget"]).kind
        rows.append(
            {
                "method": method,
                "planner": group.iloc[0]["planner"],
                "budget": match["budget"],
                "chosen": ", ".join(f"{k}={v}" for k, v in match.get("point", {}).items()) or "its only config",
                "cost_when_chosen": match.get("cost"),
                "cost_now": costs.loc[method, "steady_ms" if kind == "ms" else "model_evals"],
                "fitting": f"{match.get('fitting')} of {match.get('candidates')}",
                "measured_on": match.get("device_name", ""),
                "iqm": points[method][1],
                "iqm_low": cis[method][0][1],
                "iqm_high": cis[method][1][1],
            }
        )
    return pd.DataFrame(rows)


def budget_warnings(matched: pd.DataFrame, tolerance: float = 0.1) -> list[str]:
    """A matched method whose latency in its own run exceeds the budget by more than `tolerance`."""
    warnings = []
    for _, row in matched.iterrows():
        budget = parse_budget(row["budget"])
        if budget.kind == "ms" and np.isfinite(row["cost_now"]) and row["cost_now"] > budget.limit * (1 + tolerance):
            warnings.append(
                f"{row['method']}: chosen within {row['budget']} but ran at {row['cost_now']:.3g} ms per step "
                "(the machine was slower than when the sweep measured it); rerun the sweep on a quiet machine"
            )
    return warnings


def pareto_front(costs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the points no cheaper-or-equal point beats, sorted by cost: (N,) -> (K,)."""
    order = np.lexsort((-scores, costs))
    front, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return np.array(front, dtype=int)
