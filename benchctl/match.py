"""Compute-matched planner choice: per planner, the measured configuration that scores best within a
budget of milliseconds or world-model evaluations per planning step.

Costs are what was measured, never a planner's nominal settings: the steady-state planning latency
(median over episodes of each episode's median ms per step after the first step) on this very
device, or the counted model evaluations per step. Candidates are every cell of the planner in the
results tree (sweep points and plain evals alike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchctl.errors import BenchctlError

KINDS = {"ms": "ms per planning step (steady state, this device)", "evals": "world-model evaluations per step"}


@dataclass(frozen=True)
class Budget:
    kind: str  # "ms" or "evals"
    limit: float

    @property
    def text(self) -> str:
        return f"{self.kind}={self.limit:g}"

    @property
    def slug(self) -> str:
        """For run names: ms25, evals600."""
        return f"{self.kind}{self.limit:g}".replace(".", "p")


def parse_budget(text: str) -> Budget:
    kind, sep, value = text.partition("=")
    try:
        limit = float(value)
        if kind not in KINDS or not sep or not np.isfinite(limit) or limit <= 0:
            raise ValueError
    except ValueError:
        raise BenchctlError(
            f"--match {text}: give ms=<milliseconds per step> or evals=<model evaluations per step>, "
            "a positive number, e.g. --match ms=25"
        ) from None
    return Budget(kind, limit)


@dataclass
class Choice:
    """The configuration chosen for one planner, with what the choice rested on."""

    planner: str
    config: dict[str, Any]
    point: dict[str, Any]  # the sweep point, {} for a plain eval's config
    cost: float  # measured, in the budget's unit
    score: float  # mean normalized score over `tasks` (mean over seeds per task, then over tasks)
    tasks: list[str]
    candidates: int  # measured configs of this planner
    fitting: int  # of which within the budget
    runs: list[str]  # runs the chosen config's cells came from


def choose(source: Path, names: list[str], budget: Budget, device: str, device_name: str) -> dict[str, Choice]:
    """{planner: Choice} from the cells under `source` measured on (device, device_name)."""
    from benchctl.report.load import load_results  # pandas: loaded only for --match

    results = load_results([source])
    cells, episodes = results.cells, results.episodes
    here = (cells["device"] == device) & (cells["device_name"] == device_name)
    choices = {}
    for name in names:
        planner_cells = cells[(cells["planner"] == name) & here]
        if planner_cells.empty:
            elsewhere = sorted(set(cells.loc[cells["planner"] == name, "device_name"]))
            where = f" (only on: {'; '.join(elsewhere)})" if elsewhere else ""
            raise BenchctlError(
                f"--match: no {name} results measured on this machine ({device}, {device_name}) under "
                f"{source}{where}; run `benchctl sweep --planner {name} ...` here first"
            )
        eps = episodes[(episodes["planner"] == name) & episodes["path"].isin(planner_cells["path"])]
        rows = []
        for config_id, group in eps.groupby("config"):
            cost = float(group["steady_p50_ms"].median()) if budget.kind == "ms" else float(group["model_evals"].mean())
            per_task = group.groupby(["task_id", "seed"])["score"].mean().groupby("task_id").mean()
            first = planner_cells[planner_cells["config"] == config_id].iloc[0]
            runs = sorted(set(planner_cells.loc[planner_cells["config"] == config_id, "run"]))
            rows.append((config_id, cost, per_task, first["planner_config"], first["sweep_point"], runs))
        fitting = [r for r in rows if r[1] <= budget.limit]
        if not fitting:
            cheapest = min(rows, key=lambda r: r[1])
            raise BenchctlError(
                f"--match {budget.text}: none of the {len(rows)} measured {name} configurations fits; the cheapest "
                f"({_describe(cheapest[4], cheapest[0])}) costs {cheapest[1]:.4g} {budget.kind} per step; "
                "raise the budget or sweep cheaper settings"
            )
        shared = sorted(set.intersection(*(set(r[2].index) for r in fitting)))
        if not shared:
            raise BenchctlError(
                f"--match: the {len(fitting)} {name} configurations within {budget.text} share no task, so their "
                f"scores cannot be compared; sweep them on the same tasks under {source}"
            )
        best = max(fitting, key=lambda r: (float(r[2][shared].mean()), -r[1]))
        choices[name] = Choice(
            planner=name,
            config=best[3],
            point=dict(best[4]),
            cost=best[1],
            score=float(best[2][shared].mean()),
            tasks=shared,
            candidates=len(rows),
            fitting=len(fitting),
            runs=best[5],
        )
    return choices


def _describe(point: dict, config_id: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) if point else f"config {config_id}"


def build_config(choice: Choice) -> Any:
    """The chosen planner's config object, from the dict its cells recorded."""
    from benchctl.planners.base import planner_class  # torch: the report reads budgets without it

    cls = planner_class(choice.planner).Config
    try:
        return cls(**choice.config)
    except TypeError:
        raise BenchctlError(
            f"--match: the chosen {choice.planner} config was written by another benchctl version "
            f"({sorted(choice.config)}); rerun the sweep with this version"
        ) from None


def match_header(choice: Choice, budget: Budget, source: Path, device_name: str) -> dict[str, Any]:
    """What a matched cell's header says about why its config was chosen."""
    return {
        "budget": budget.text,
        "slug": budget.slug,
        "unit": KINDS[budget.kind],
        "source": str(source),
        "device_name": device_name,
    } | {k: v for k, v in asdict(choice).items() if k not in ("planner", "config")}
