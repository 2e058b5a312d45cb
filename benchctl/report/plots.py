"""Report figures with matplotlib (rliable's plotting helpers where they exist). Each figure is
written as PNG and PDF; functions return the PNG path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rliable import plot_utils  # noqa: E402

from benchctl.report.aggregate import METRICS  # noqa: E402


def _save(fig, out: Path, name: str) -> Path:
    png = out / f"{name}.png"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(out / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    return png


def _panel_grid(count: int):
    """A figure of `count` panels, at most 3 per row: (fig, axes (rows, cols))."""
    ncols = min(3, count)
    nrows = -(-count // ncols)
    return plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)


def _save_grid(fig, axes, used: int, out: Path, name: str) -> Path:
    """Blank the panels past the `used` ones and write the figure."""
    for ax in axes.flat[used:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out, name)


def aggregate_intervals(points: dict, cis: dict, out: Path) -> Path:
    """Median, IQM, mean and optimality gap with 95% CIs per method (Dream-MPC Fig. 2 style)."""
    return _save(aggregate_figure(points, cis), out, "aggregates")


def aggregate_figure(points: dict, cis: dict):
    """The figure of `aggregate_intervals`: points {method: (4,)}, cis {method: (2, 4)}."""
    methods = sorted(points, key=lambda m: points[m][1])
    row_height = 0.5  # inches per method
    height = max(2, len(methods)) * row_height
    fig, axes = plot_utils.plot_interval_estimates(
        points,
        cis,
        metric_names=list(METRICS),
        algorithms=methods,
        xlabel="",
        max_ticks=3,  # xx-large tick labels of neighbouring panels collide at rliable's 4
        row_height=row_height,
        wspace=0.3,
    )
    for ax in axes:
        ax.tick_params(axis="x", labelsize="large")
    # Below the tick labels at any number of methods (rliable places it at a fixed fraction of the height).
    fig.text(0.5, -0.6 / height, "Normalized score (95% stratified-bootstrap CIs)", ha="center", fontsize="x-large")
    return fig


def profiles(profile: dict, bands: dict, taus: np.ndarray, out: Path) -> Path:
    """Performance profiles: fraction of runs above tau, with bootstrap bands."""
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles(
        profile, taus, performance_profile_cis=bands, ax=ax, xlabel=r"Normalized score ($\tau$)"
    )
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, out, "performance_profiles")


def improvement(points: dict[str, float], cis: dict[str, np.ndarray], out: Path) -> Path:
    """P(X > Y) with 95% CIs for each compared pair ("X > Y")."""
    intervals = {k: np.asarray(v).reshape(2, 1) for k, v in cis.items()}
    ax = plot_utils.plot_probability_of_improvement(
        points, intervals, pair_separator=" > ", figsize=(5, 0.45 * len(points) + 1)
    )
    return _save(ax.figure, out, "probability_of_improvement")


def _mean_ci(values: np.ndarray, rng: np.random.Generator, reps: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean of `values` (n,); zero width when n == 1."""
    boot = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return tuple(np.percentile(boot, [2.5, 97.5]))


def per_task_bars(
    seeds: pd.DataFrame, episodes: pd.DataFrame, out: Path, seed: int = 0, references: pd.DataFrame | None = None
) -> Path:
    """Normalized score per task, one panel per task: a bar per method (mean over seeds), a dot per
    seed, and a 95% bootstrap CI of the mean: over seeds, or over episodes where there is one seed.
    references (reference.for_report rows): a dashed line per reference at its mean normalized score."""
    rng = np.random.default_rng(seed)
    tasks = sorted(seeds["task_id"].unique())
    methods = sorted(seeds["method"].unique())
    ncols = min(6, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.1 * nrows), squeeze=False, sharey=True)
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap
    references = references if references is not None else pd.DataFrame(columns=["method", "task_id", "score"])
    ref_labels = list(dict.fromkeys(references["method"]))
    ref_colors = plt.get_cmap("Dark2").colors  # type: ignore[attr-defined]
    for ax, task in zip(axes.flat, tasks, strict=False):
        rows = seeds[seeds["task_id"] == task]
        for i, method in enumerate(methods):
            values = rows.loc[rows["method"] == method, "score"].to_numpy()
            if len(values):
                if len(values) == 1:  # one seed: the CI is over its episodes
                    chosen = (episodes["task_id"] == task) & (episodes["method"] == method)
                    low, high = _mean_ci(episodes.loc[chosen, "score"].to_numpy(), rng)
                else:
                    low, high = _mean_ci(values, rng)
                mean = values.mean()
                ax.bar(i, mean, color=colors[i % 10], alpha=0.75, label=method)
                whiskers = [[max(0.0, mean - low)], [max(0.0, high - mean)]]  # >= 0 through rounding
                ax.errorbar(i, mean, yerr=whiskers, color="black", capsize=2, linewidth=0.8)
                ax.scatter(np.full(len(values), i), values, s=8, color="black", zorder=3)
        for j, label in enumerate(ref_labels):
            ref = references[(references["method"] == label) & (references["task_id"] == task)]
            if len(ref):
                ax.axhline(ref["score"].mean(), color=ref_colors[j % 8], linestyle="--", linewidth=1)
        ax.set_title(task, fontsize=8)
        ax.set_xticks([])
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("Normalized score", fontsize=8)
    handles: list = [plt.Rectangle((0, 0), 1, 1, color=colors[i % 10], alpha=0.75) for i in range(len(methods))]
    handles += [plt.Line2D([0], [0], color=ref_colors[j % 8], linestyle="--") for j in range(len(ref_labels))]
    names = methods + ref_labels
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(6, len(names)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.02 * (len(names) > 6)),
    )
    fig.suptitle(
        "bars: mean over seeds; dots: seeds; whiskers: 95% bootstrap CI (over episodes where one seed)", fontsize=8
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, out, "per_task")


def compute_frontier(points: dict, cis: dict, costs: pd.DataFrame, out: Path, budgets: dict | None = None) -> Path:
    """IQM normalized score (95% CI) against measured cost per planning step: steady-state ms (left)
    and world-model evaluations (right), one point per method, the Pareto front as a line.

    costs: rows = methods, columns steady_ms, model_evals; budgets: {"ms"|"evals": [limits]} drawn
    as vertical lines, and the methods chosen within them (stars) are `budgets["methods"]`.
    """
    from benchctl.report.compute import pareto_front

    budgets = budgets or {}
    starred = set(budgets.get("methods", []))
    methods = [m for m in sorted(points) if m in costs.index]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap
    label_points = len(methods) > 10  # a legend of many sweep points is unreadable: name them in place
    for ax, column, kind, xlabel in (
        (axes[0], "steady_ms", "ms", "ms per planning step (steady state, log scale)"),
        (axes[1], "model_evals", "evals", "world-model evaluations per step (log scale above 1)"),
    ):
        xs = np.array([costs.loc[m, column] for m in methods], dtype=float)
        ys = np.array([points[m][1] for m in methods])
        # The policy alone makes no model evaluation: the evaluation axis is linear below 1 to show it.
        shown = np.isfinite(xs) & ((xs > 0) | (kind == "evals"))
        for i, m in enumerate(methods):
            if not shown[i]:
                continue
            low, high = cis[m][0][1], cis[m][1][1]
            ax.errorbar(
                xs[i],
                ys[i],
                yerr=[[ys[i] - low], [high - ys[i]]],
                fmt="*" if m in starred else "o",
                markersize=11 if m in starred else 5,
                color=colors[i % 10],
                capsize=3,
                label=m,
            )
            if label_points:
                ax.annotate(m, (xs[i], ys[i]), fontsize=5, xytext=(3, 3), textcoords="offset points")
        if shown.sum() > 1:
            idx = np.flatnonzero(shown)
            front = idx[pareto_front(xs[idx], ys[idx])]
            ax.step(xs[front], ys[front], where="post", color="gray", linewidth=1, alpha=0.7, label="Pareto front")
        for limit in budgets.get(kind, []):
            ax.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"budget {kind}={limit:g}")
        if shown.any():
            ax.set_xscale("symlog", linthresh=1) if kind == "evals" else ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("IQM normalized score (95% CI)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if not label_points:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7, bbox_to_anchor=(0.5, -0.08)
        )
    fig.tight_layout()
    return _save(fig, out, "compute_frontier")


def sweep_curves(table: pd.DataFrame, out: Path) -> Path:
    """IQM (95% CI band) against each swept option, one panel per (run, planner, option) and a line
    per combination of the other swept options (Dream-MPC Fig. 5)."""
    from benchctl.report.compute import sweep_axes

    panels = []
    for (run, planner), _ in table.groupby(["run", "planner"]):
        panels += [(run, planner, axis) for axis in sweep_axes(table, run, planner)]
    fig, axes = _panel_grid(len(panels))
    several_runs = table["run"].nunique() > 1
    for ax, (run, planner, axis) in zip(axes.flat, panels, strict=False):
        rows = table[(table["run"] == run) & (table["planner"] == planner)]
        others = [a for a in sweep_axes(table, run, planner) if a != axis]
        groups = rows.groupby([f"option:{a}" for a in others]) if others else [((), rows)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            group = group.sort_values(f"option:{axis}")
            x = group[f"option:{axis}"].to_numpy(dtype=float)
            label = ", ".join(f"{a}={v}" for a, v in zip(others, key, strict=True)) or planner
            ax.plot(x, group["iqm"], marker="o", label=label)
            ax.fill_between(x, group["iqm_low"], group["iqm_high"], alpha=0.15)
        values = rows[f"option:{axis}"].to_numpy(dtype=float)
        if values.min() > 0 and values.max() / values.min() >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(axis.replace("_", " "))
        ax.set_ylabel("IQM normalized score")
        ax.set_title(f"{run}: {planner}" if several_runs else planner, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save_grid(fig, axes, len(panels), out, "sweeps")


def training_curves(evaluations: pd.DataFrame, official: pd.DataFrame, out: Path) -> Path:
    """One panel per task: each agent's logged evaluations during training (a line per planner) and
    the published curve of the task (mean over seeds, min-max band), over the agent's steps."""
    tasks = list(dict.fromkeys(evaluations["task_id"]))
    fig, axes = _panel_grid(len(tasks))
    styles = ["-", "--", ":", "-."]
    for ax, task in zip(axes.flat, tasks, strict=False):
        rows = evaluations[evaluations["task_id"] == task]
        last = int(rows["step"].max())
        for k, (agent, runs) in enumerate(rows.groupby("agent", sort=False)):
            color = f"C{k}"
            for i, (planner, run) in enumerate(runs.groupby("planner", sort=False)):
                run = run.sort_values("step")
                label = f"{agent}: {planner}"
                ax.plot(run["step"], run["value"], styles[i % 4], color=color, marker="o", ms=3, label=label)
        curve = official[official["task_id"] == task] if len(official) else official
        if len(curve):
            # The published points inside the agent's range and the first one past it (the line reaches the edge).
            beyond = curve.loc[curve["step"] > last, "step"]
            edge = int(beyond.min()) if len(beyond) else last
            shown = curve[curve["step"] <= edge].groupby("step")["value"]
            steps = np.array(sorted(shown.groups))
            name = curve["reference"].iloc[0]
            ax.plot(steps, shown.mean().loc[steps], color="black", lw=1.2, marker="s", ms=3, label=f"{name}: mean")
            ax.fill_between(steps, shown.min().loc[steps], shown.max().loc[steps], color="black", alpha=0.12,
                            label="seeds min-max")  # fmt: skip
            ax.set_xlim(0, last * 1.05 if last else None)
        metric = rows["metric"].iloc[0]
        ax.set_ylabel("success rate" if metric == "success" else "return")
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save_grid(fig, axes, len(tasks), out, "training_curves")


def gradient_curves(summary: list[dict], out: Path) -> Path:
    """ESNR and gradient magnitude against planning horizon, per model and planner (Dream-MPC Fig. 13/14)."""
    models = sorted({r["model"] for r in summary})
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 7), squeeze=False)
    for col, model in enumerate(models):
        for planner in sorted({r["planner"] for r in summary if r["model"] == model}):
            rows = sorted(
                (r for r in summary if r["model"] == model and r["planner"] == planner), key=lambda r: r["horizon"]
            )
            h = np.array([r["horizon"] for r in rows])
            for row, (key, std_key, label) in enumerate(
                (("esnr_mean", "esnr_std", "ESNR"), ("grad_norm_mean", "grad_norm_seed_std", "gradient norm"))
            ):
                y = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
                s = np.array([np.nan if r[std_key] is None else r[std_key] for r in rows], dtype=float)
                ax = axes[row, col]
                ax.plot(h, y, marker="o", label=planner)
                ax.fill_between(h, y - s, y + s, alpha=0.2)
                ax.set_xlabel("planning horizon H")
                ax.set_ylabel(label)
                ax.set_title(f"{label}: {model.replace('_', ' ')}")
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
    for ax in axes.flat:  # log scale where there is something positive to show (ESNR can be undefined)
        data = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.array([])])
        if np.any(np.isfinite(data) & (data > 0)):
            ax.set_yscale("log")
    fig.tight_layout()
    return _save(fig, out, "gradients")


def latency_bars(rows: list[dict], out: Path) -> Path:
    """Median ms per planning step (p95 as the whisker) per planner and agent, log scale."""
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    planners = list(dict.fromkeys(r["planner"] for r in rows))
    width = 0.8 / len(agents)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(planners)), 4))
    for i, agent in enumerate(agents):
        xs, ys, errs = [], [], []
        for j, planner in enumerate(planners):
            match = [r for r in rows if r["agent"] == agent and r["planner"] == planner]
            if match:
                xs.append(j + (i - (len(agents) - 1) / 2) * width)
                ys.append(match[0]["p50_ms"])
                errs.append(match[0]["p95_ms"] - match[0]["p50_ms"])
        ax.bar(xs, ys, width=width * 0.9, yerr=[np.zeros(len(errs)), errs], capsize=2, label=agent)
    ax.set_xticks(range(len(planners)), planners, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("ms per planning step (median, p95 whisker)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out, "latency")


def sweep_lines(sweeps: dict[str, list[dict]], out: Path) -> Path:
    """Median latency against each swept quantity, one line per planner."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.5 * len(sweeps), 3.6), squeeze=False)
    for ax, (dimension, rows) in zip(axes[0], sweeps.items(), strict=True):
        for planner in dict.fromkeys(r["planner"] for r in rows):
            pts = sorted((r["value"], r["p50_ms"]) for r in rows if r["planner"] == planner)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=planner)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(dimension.replace("_", " "))
        ax.set_ylabel("median ms per planning step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "scaling")


def exploitation(table: pd.DataFrame, out: Path) -> Path:
    """Realized minus predicted H-step return over the episode, mean ± std over episodes and seeds
    (Dream-MPC Fig. 15a), one panel per task."""
    tasks = sorted(table["task_id"].unique())
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        rows = table[table["task_id"] == task]
        for method, group in rows.groupby("method"):
            ax.plot(group["step"], group["mean"], label=method, linewidth=1)
            ax.fill_between(group["step"], group["mean"] - group["std"], group["mean"] + group["std"], alpha=0.2)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("episode step (policy steps)")
        ax.set_ylabel("actual - predicted H-step return\n(task reward units)")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out, "exploitation")
