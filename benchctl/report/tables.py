"""Paper-style tables (Dream-MPC Tables 1-2, 8-13) as Markdown, HTML, LaTeX and CSV.

Per-task table: mean ± sample std (ddof = 1) over seeds of each seed's mean return (success rate in % for suites
scored by success; the normalized score beside the return where it is not return / 1000), best in bold, second
underlined. Latency table: mean ± std over (task, seed) cells of the mean ms per planning step, with world-model
evaluations per step.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd


def per_task_table(
    seeds: pd.DataFrame, success_tasks: set[str], references: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Rows: tasks; columns: (method, "mean"/"std"/"seeds"/"score") of the per-seed mean return, or
    success rate in % for tasks scored by success (Meta-World); "score" is the mean normalized score.

    references (reference.for_report rows) add their columns after the measured methods: per-seed
    references summarized like a method, published ones with their published mean ± std (3 seeds).
    """
    success = seeds["task_id"].isin(success_tasks)
    values = seeds.assign(value=np.where(success, 100.0 * seeds["success"].astype(float), seeds["ret"]))
    grouped = values.groupby(["task_id", "method"])
    table = pd.DataFrame(
        {
            "mean": grouped["value"].mean(),
            "std": grouped["value"].std(ddof=1),
            "seeds": grouped["value"].count(),
            "score": grouped["score"].mean(),
        }
    )
    table = table.unstack("method").swaplevel(0, 1, axis=1).sort_index(axis=1)
    if references is None or references.empty:
        return table
    columns = {}
    for label, rows in references.groupby("method", sort=False):
        rows = rows[rows["task_id"].isin(table.index)]
        # a success reference is a rate in [0, 1]: shown in % like the measured success
        rate = np.where(rows["task_id"].isin(success_tasks), 100.0, 1.0)
        rows = rows.assign(value=rows["value"] * rate, std=rows["std"] * rate)
        by_task = rows.groupby("task_id")
        if rows["per_seed"].astype(bool).all():
            summary = pd.DataFrame(
                {
                    "mean": by_task["value"].mean(),
                    "std": by_task["value"].std(ddof=1),
                    "seeds": by_task["value"].count(),
                    "score": by_task["score"].mean(),
                }
            )
        else:
            first = by_task.first()
            summary = pd.DataFrame({"mean": first["value"], "std": first["std"], "seeds": 3, "score": first["score"]})
        for stat in ("mean", "std", "seeds", "score"):
            columns[(label, stat)] = summary[stat].reindex(table.index)
    return pd.concat([table, pd.DataFrame(columns, index=table.index)], axis=1)


def latency_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Rows: methods, or (method, device) when `seeds` has a device column (per_seed(by_device=True)):
    latency is only comparable on one device. Columns: the steady state (every step after an
    episode's first) as the median over (task, seed) cells of each cell's median per-episode p50
    and p95, the first step (warm-up: lazy allocation, CEM-GD's t = 0 search) apart, the mean over
    all steps with its std over cells, WM evals/step, cells."""
    grouped = seeds.groupby(["method", "device"] if "device" in seeds else "method")
    return pd.DataFrame(
        {
            "ms_mean": grouped["latency_ms"].mean(),
            "ms_std": grouped["latency_ms"].std(ddof=0),
            "steady_p50": grouped["steady_ms"].median(),
            "steady_p95": grouped["steady_p95_ms"].median(),
            "first_ms": grouped["first_ms"].median(),
            "model_evals": grouped["model_evals"].mean(),
            "value_head_evals": grouped["value_head_evals"].mean(),
            "policy_evals": grouped["policy_evals"].mean(),
            "backward": grouped["backward"].mean(),
            "cells": grouped["latency_ms"].count(),
        }
    )


def _count(value: float) -> str:
    """A per-step count; '-' where the records predate it."""
    return "-" if np.isnan(value) else f"{value:,.0f}"


def _ranks(row: pd.Series) -> dict[str, int]:
    """{method: 1 for the best mean, 2 for the second}, higher is better; ties share a rank."""
    values = sorted({v for v in row.dropna().to_numpy()}, reverse=True)
    return {m: values.index(v) + 1 for m, v in row.dropna().items() if values.index(v) < 2}


def _fmt(mean: float, std: float, digits: int) -> str:
    """`mean ± std`; the mean alone where the std is undefined (one seed)."""
    if np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def render_per_task(
    table: pd.DataFrame,
    fmt: str,
    digits: int = 1,
    references: set[str] | None = None,
    with_score: bool = False,
) -> str:
    """The per-task table as `md`, `html` or `tex`, best bold and second underlined among the
    measured methods (reference columns are never marked); `with_score` adds each cell's mean
    normalized score in parentheses (HumanoidBench: return and score side by side)."""
    methods = list(dict.fromkeys(table.columns.get_level_values(0)))
    references = references or set()
    rows = []
    for task, row in table.iterrows():
        means = pd.Series({m: row[(m, "mean")] for m in methods if m not in references})
        ranks = _ranks(means)
        cells = []
        for m in methods:
            text = _fmt(row[(m, "mean")], row[(m, "std")], digits)
            if with_score and text != "-" and not np.isnan(row.get((m, "score"), np.nan)):
                text += f" ({row[(m, 'score')]:.3f})"
            cells.append(_emphasize(text, ranks.get(m), fmt))
        rows.append((str(task), cells))
    return _render(["task", *methods], rows, fmt)


def render_latency(table: pd.DataFrame, fmt: str) -> str:
    """Latency rows (with the device where the table is split by it); `contended` (cells the report
    flags as measured on a busy machine) when present."""
    contended = "contended" in table
    by_device = table.index.nlevels == 2  # (method, device): a device column
    rows = [
        (
            str(key[0] if by_device else key),
            ([_escape(str(key[1]), fmt)] if by_device else [])
            + [
                f"{r['steady_p50']:.2f}",
                f"{r['steady_p95']:.2f}",
                _fmt(r["first_ms"], np.nan, 2),
                _fmt(r["ms_mean"], r["ms_std"], 2),
                f"{r['model_evals']:,.0f}",
                _count(r["value_head_evals"]),
                _count(r["policy_evals"]),
                _count(r["backward"]),
                str(int(r["cells"])),
            ]
            + ([str(int(r["contended"]))] if contended else []),
        )
        for key, r in table.sort_values("steady_p50").iterrows()
    ]
    header = (
        ["method"]
        + (["device"] if by_device else [])
        + [
            "steady p50 ms",
            "steady p95 ms",
            "first step ms",
            "mean ± std ms (all steps)",
            "dynamics+reward evals / step",
            "value-head evals / step",
            "policy evals / step",
            "backward passes / step",
            "cells",
        ]
        + (["contended cells"] if contended else [])
    )
    return _render(header, rows, fmt)


def _emphasize(text: str, rank: int | None, fmt: str) -> str:
    if rank is None or text == "-":
        return _escape(text, fmt)
    if fmt == "md":
        return f"**{text}**" if rank == 1 else f"<u>{text}</u>"
    if fmt == "html":
        return f"<b>{html.escape(text)}</b>" if rank == 1 else f"<u>{html.escape(text)}</u>"
    body = _escape(text, "tex")
    return f"\\textbf{{{body}}}" if rank == 1 else f"\\underline{{{body}}}"


def _escape(text: str, fmt: str) -> str:
    if fmt == "html":
        return html.escape(text)
    if fmt == "tex":
        return text.replace("±", "$\\pm$").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
    return text


def _render(header: list[str], rows: list[tuple[str, list[str]]], fmt: str) -> str:
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows]
        return "\n".join(lines)
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr><td>" + html.escape(name) + "</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
            for name, cells in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    columns = "l" + "r" * (len(header) - 1)
    lines = [
        f"\\begin{{tabular}}{{{columns}}}",
        "\\toprule",
        " & ".join(_escape(h, "tex") for h in header) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join([_escape(name, "tex"), *cells]) + " \\\\" for name, cells in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)
