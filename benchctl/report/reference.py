"""Reference scores beside benchctl's own: the TD-MPC2 repository's per-task result CSVs and the
Dream-MPC paper's Tables 8-13 (benchctl/data/reference/README.md says where each comes from).

A reference is never measured by benchctl: the report labels it `ref: ...`, leaves it out of the
best/second marks and, unless asked, out of the aggregates.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchctl.errors import BenchctlError

DATA = Path(__file__).resolve().parent.parent / "data" / "reference"
PAPER_TABLES = DATA / "dream_mpc_paper.csv"
TDMPC2_CSV = DATA / "tdmpc2"  # the TD-MPC2 curves benchctl ships (its suites' tasks)
KINDS = ("tdmpc2-csv", "dream-mpc-paper")
# The protocol the published numbers were measured under: (policy steps per episode, action repeat).
PROTOCOLS = {"dmc": (500, 2), "metaworld": (100, 2), "humanoid": (1000, 1)}


@dataclass
class Reference:
    """label: the column and legend name; source: provenance; scores: one row per (task, seed) with
    `task` (benchctl name), `protocol` ((policy steps per episode, action repeat) it was measured
    under), `seed` (-1 where only a mean is published), `value` (return or success
    rate), `std` (the published std over seeds, NaN for per-seed rows) and `step` (training step)."""

    label: str
    source: str
    scores: pd.DataFrame
    per_seed: bool
    notes: list[str] = field(default_factory=list)
    # Whole learning curves where the source has them (TD-MPC2 CSVs): one row per (task, seed, step)
    # with `task`, `protocol`, `seed`, `step`, `value` and `metric` ("reward" or "success").
    curves: pd.DataFrame | None = None


def task_names() -> dict[str, str]:
    """Official name -> benchctl name, for names that differ (data/reference/task_names.toml)."""
    return tomllib.loads((DATA / "task_names.toml").read_text())


def benchctl_task(official: str) -> str:
    name = official.removeprefix("mw-")
    return task_names().get(name, name)


def parse_spec(text: str) -> tuple[str, Path | None]:
    """'tdmpc2-csv', 'tdmpc2-csv=DIR' or 'dream-mpc-paper' -> (kind, path or None)."""
    kind, sep, path = text.partition("=")
    if kind not in KINDS or (sep and not path) or (path and kind != "tdmpc2-csv"):
        raise BenchctlError(
            f"--reference {text}: choose tdmpc2-csv (the curves benchctl ships), tdmpc2-csv=DIR (a folder of "
            "the TD-MPC2 repository's results/<method>/<task>.csv) or dream-mpc-paper"
        )
    return kind, Path(path).expanduser() if path else None


def is_curve_folder(path: Path) -> bool:
    """A folder of TD-MPC2-format CSVs (and no benchctl results)."""
    if not path.is_dir() or next(path.rglob("seed-*.jsonl"), None) is not None:
        return False
    first = next(iter(sorted(path.glob("*.csv"))), None)
    return first is not None and first.read_text().startswith("step,")


def claim_csv_folders(specs: list[str], roots: list[Path]) -> tuple[list[str], list[Path]]:
    """`--reference tdmpc2-csv DIR` as the issue tracker and TD-MPC2 users write it: the shell hands
    DIR over as a results folder; a bare `tdmpc2-csv` takes the first such folder of curves."""
    specs, roots = list(specs), list(roots)
    for i, text in enumerate(specs):
        folder = next((r for r in roots if is_curve_folder(r)), None) if text == "tdmpc2-csv" else None
        if folder is not None:
            specs[i] = f"tdmpc2-csv={folder}"
            roots.remove(folder)
    return specs, roots or [Path("results")]


def load(specs: list[str], step: int | None) -> list[Reference]:
    """Every --reference, in order; `step` picks the training step of learning-curve references."""
    refs: list[Reference] = []
    for text in specs:
        kind, path = parse_spec(text)
        if kind == "dream-mpc-paper":
            refs += paper_tables()
        else:
            refs.append(tdmpc2_csv(path or TDMPC2_CSV, step))
    return refs


def _step_text(step: int) -> str:
    if step >= 1_000_000 and step % 100_000 == 0:
        return f"{step / 1e6:g}M"
    return f"{step / 1000:g}k" if step % 1000 == 0 else str(step)


def tdmpc2_csv(directory: Path, step: int | None) -> Reference:
    """Per-seed scores at one training step from a folder of `<task>.csv` files (`step,reward,seed`
    or `step,success,seed`). Each seed contributes its row nearest `step`; with no step, the last
    step all seeds of a task reached."""
    if not directory.is_dir():
        raise BenchctlError(
            f"--reference tdmpc2-csv={directory}: no such folder; pass results/<method> of the TD-MPC2 repository"
        )
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise BenchctlError(f"--reference tdmpc2-csv={directory}: no <task>.csv files in it")
    rows, notes, curves = [], [], []
    for path in files:
        frame = pd.read_csv(path)
        value_col = next((c for c in ("reward", "success") if c in frame.columns), None)
        if value_col is None or not {"step", "seed"} <= set(frame.columns):
            raise BenchctlError(
                f"{path}: expected the columns step,reward,seed (or step,success,seed); got {list(frame.columns)}"
            )
        protocol = PROTOCOLS["metaworld" if path.stem.startswith("mw-") else "dmc"]
        curves.append(
            pd.DataFrame(
                {
                    "task": benchctl_task(path.stem),
                    "protocol": [protocol] * len(frame),
                    "seed": frame["seed"].astype(int),
                    "step": frame["step"].astype(int),
                    "value": frame[value_col].astype(float),
                    "metric": value_col,
                }
            )
        )
        target = step if step is not None else int(frame.groupby("seed")["step"].max().min())
        for seed, runs in frame.groupby("seed"):
            nearest = runs.iloc[int(np.argmin(np.abs(runs["step"].to_numpy() - target)))]
            if step is not None and abs(int(nearest["step"]) - step) > 0.05 * max(step, 1):
                notes.append(f"{path.stem} seed {seed}: no row near step {step:,}; nearest is {int(nearest['step']):,}")
            rows.append(
                {
                    "task": benchctl_task(path.stem),
                    "protocol": protocol,
                    "seed": int(seed),
                    "value": float(nearest[value_col]),
                    "std": np.nan,
                    "step": int(nearest["step"]),
                }
            )
    scores = pd.DataFrame(rows)
    name = directory.resolve().name
    at = f"@ {_step_text(step)}" if step is not None else "(final step)"
    source = (
        "TD-MPC2 repository results (github.com/nicklashansen/tdmpc2, commit e9f5932, MIT), shipped with benchctl"
        if directory.resolve() == TDMPC2_CSV.resolve()
        else f"CSV learning curves in {directory}"
    )
    return Reference(
        f"ref: {name} csv {at}",
        f"{source}; per-seed value at the step nearest {at.strip('@() ')}",
        scores,
        True,
        notes,
        pd.concat(curves, ignore_index=True),
    )


def paper_tables() -> list[Reference]:
    """One reference per method column of the Dream-MPC paper's Tables 8-13 (mean ± std over 3 seeds)."""
    table = pd.read_csv(PAPER_TABLES)
    refs = []
    for method, rows in table.groupby("method", sort=False):
        numbers = ", ".join(str(n) for n in sorted(set(rows["table"])))
        scores = pd.DataFrame(
            {
                "task": rows["task"],
                "protocol": [PROTOCOLS[suite] for suite in rows["suite"]],
                "seed": -1,
                "value": rows["mean"].astype(float),
                "std": rows["std"].astype(float),
                "step": -1,
            }
        )
        source = f"Dream-MPC paper, Tables {numbers} (mean ± std over 3 seeds × 10 episodes, final agents)"
        refs.append(Reference(f"ref: {method} [paper]", source, scores.reset_index(drop=True), False))
    return refs


def for_report(refs: list[Reference], cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Reference rows on the report's tasks: columns method, task_id, seed, value, std, score
    (normalized as the report's own cells of that task), per_seed. Returns (rows, warnings)."""
    from benchctl.report.load import normalize

    tasks = cells.drop_duplicates("task_id")[["task_id", "task", "normalization", "episode_length", "action_repeat"]]
    tasks = tasks.assign(protocol=list(zip(tasks["episode_length"], tasks["action_repeat"], strict=True)))
    frames, warnings = [], []
    missing: dict[tuple[str, ...], list[str]] = {}  # tasks without a reference -> the references lacking them
    absent: list[str] = []  # references holding none of the report's tasks
    for ref in refs:
        merged = ref.scores.merge(tasks, on="task", suffixes=("", "_report"))
        differs = merged["protocol"] != merged["protocol_report"]
        for task_id in sorted(set(merged.loc[differs, "task_id"])):
            row = merged[differs & (merged["task_id"] == task_id)].iloc[0]
            warnings.append(
                f"{ref.label}: left off {task_id}, whose episodes ({row['protocol_report'][0]} steps, action repeat "
                f"{row['protocol_report'][1]}) differ from the reference's ({row['protocol'][0]}, {row['protocol'][1]})"
            )
        merged = merged[~differs]
        if merged.empty:
            if not differs.any():
                absent.append(ref.label)
            continue
        lacking = tuple(sorted(set(tasks["task"]) - set(merged["task"])))
        if lacking:
            missing.setdefault(lacking, []).append(ref.label)
        scores = np.empty(len(merged))
        for i, (value, norm) in enumerate(zip(merged["value"], merged["normalization"], strict=True)):
            # A success reference is already a rate in [0, 1], the score of a success-scored task.
            scores[i] = (
                value if norm.get("kind") == "success" else normalize(np.array([value]), np.zeros(1, bool), norm)[0]
            )
        frames.append(merged.assign(method=ref.label, score=scores, per_seed=ref.per_seed))
        warnings += ref.notes
    warnings += [f"no reference for {', '.join(tasks)} in: {', '.join(labels)}" for tasks, labels in missing.items()]
    if absent:
        warnings.append(f"none of the report's tasks ({', '.join(tasks['task'])}) is in: {', '.join(absent)}")
    if not frames:
        return pd.DataFrame(columns=["method", "task_id", "seed", "value", "std", "score", "per_seed"]), warnings
    return pd.concat(frames, ignore_index=True), warnings
