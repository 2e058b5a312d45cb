"""Assemble a report folder: self-contained HTML, Markdown, LaTeX and CSV tables, PNG + PDF figures,
and the protocol every number was produced under."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

import benchctl
from benchctl.errors import BenchctlError
from benchctl.match import parse_budget
from benchctl.report import aggregate as agg
from benchctl.report import compute, curves, plots, reference, tables
from benchctl.report.checks import ci_warnings, contention_warnings, failure_warnings, protocol_warnings
from benchctl.report.exploitation import exploitation_table
from benchctl.report.load import Results, load_results

FORMATS = ("md", "html", "tex", "csv")
PAIR = " > "  # key of a probability-of-improvement pair: "X > Y" (method names may hold commas)


@dataclass
class Report:
    out: Path
    files: list[Path]
    warnings: list[str]
    aggregates: dict[str, np.ndarray]  # method -> (4,) Median, IQM, Mean, Optimality Gap
    intervals: dict[str, np.ndarray]  # method -> (2, 4)
    improvement: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)  # "X > Y" -> (P, [lo, hi])
    tasks: list[str] = field(default_factory=list)
    coverage: str = ""  # which tasks the aggregates cover (per run when runs differ)


def parse_formats(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise BenchctlError(f"--format {text}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def improvement_pairs(
    table: agg.ScoreTable, run_of: dict[str, str], planner_of: dict[str, str], baseline: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """(method, reference) pairs for P(X > Y): every method against `baseline` and 'mppi'.

    A reference named exactly as a method is used as is; a planner name (`policy`) matches that
    planner's method within each run (agent family), so `tdmpc2/dream_mpc` is compared with
    `tdmpc2/policy` and `bmpc/dream_mpc` with `bmpc/policy`. Pairs need the same task columns.
    """
    methods = list(table.matrices)
    pairs: list[tuple[str, str]] = []
    warnings: list[str] = []
    for ref_name in dict.fromkeys([baseline, "mppi"]):
        if ref_name in table.matrices:
            refs = {m: ref_name for m in methods}
        else:
            by_run = {run_of[m]: m for m in methods if planner_of[m] == ref_name}
            refs = {m: by_run[run_of[m]] for m in methods if run_of[m] in by_run}
        if not refs and ref_name == baseline:
            warnings.append(
                f"baseline {baseline!r} matches no method or planner, so no probability of improvement against it; "
                f"pass --baseline with one of: {', '.join(sorted(set(planner_of.values()) | set(methods)))}"
            )
        for m in methods:
            ref = refs.get(m)
            if ref is None or ref == m or (m, ref) in pairs:
                continue
            if table.tasks_of[m] != table.tasks_of[ref]:
                warnings.append(f"P({m} > {ref}) not computed: the two cover different tasks")
                continue
            pairs.append((m, ref))
    return pairs, warnings


def build_report(
    roots: list[Path],
    out: Path,
    reps: int = 2000,
    seed: int = 0,
    formats: list[str] | None = None,
    baseline: str = "policy",
    references: list[reference.Reference] | None = None,
    reference_aggregates: bool = False,
) -> Report:
    """The report folder for the results under `roots`; `references` add labeled rows that enter
    the aggregates only with `reference_aggregates` (and only those with per-seed scores)."""
    formats = formats or list(FORMATS)
    if reps < 100:
        raise BenchctlError(f"--reps {reps}: use at least 100 bootstrap replicates (rliable's default is 50,000)")
    results = load_results(roots)
    warnings = list(results.warnings) + protocol_warnings(results) + failure_warnings(results)
    seeds = agg.per_seed(results.episodes)
    run_of = dict(zip(results.cells["method"], results.cells["run"], strict=True))
    planner_of = dict(zip(results.cells["method"], results.cells["planner"], strict=True))
    refs = references or []
    ref_rows, ref_warnings = reference.for_report(refs, results.cells)
    warnings += ref_warnings
    scored = seeds
    if reference_aggregates and len(ref_rows):
        published = sorted(set(ref_rows.loc[~ref_rows["per_seed"].astype(bool), "method"]))
        if published:
            warnings.append(
                f"left out of the aggregates: {', '.join(published)} (only mean ± std per task is published, "
                "no per-seed scores to bootstrap)"
            )
        per_seed = ref_rows[ref_rows["per_seed"].astype(bool)]
        scored = pd.concat([seeds, per_seed[["method", "task_id", "seed", "score"]]], ignore_index=True)
        for label in per_seed["method"].unique():  # each reference is its own group, like a run
            run_of[label] = planner_of[label] = label
    table = agg.score_table(scored, run_of)
    warnings += table.notes + ci_warnings(table)
    if not table.matrices or not table.tasks:
        raise BenchctlError(
            "no task is shared by every method, so there is nothing to aggregate; "
            "pass results that overlap, or one method's results alone"
        )
    points, cis = agg.aggregates(table, reps, seed)
    suite_of = dict(zip(results.cells["task_id"], results.cells["suite"], strict=True))
    per_suite = suite_aggregates(scored, suite_of, run_of, reps, seed)
    top = max(1.0, max(float(m.max()) for m in table.matrices.values()))
    taus = np.linspace(0.0, top, 81)
    profile, bands = agg.performance_profiles(table, taus, reps, seed)
    pairs, pair_warnings = improvement_pairs(table, run_of, planner_of, baseline)
    warnings += pair_warnings
    improvement = {
        f"{x}{PAIR}{y}": agg.probability_of_improvement(table.matrices[x], table.matrices[y], reps, seed + 1 + k)
        for k, (x, y) in enumerate(pairs)
    }

    out.mkdir(parents=True, exist_ok=True)
    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    latency = tables.latency_table(agg.per_seed(results.episodes, by_device=True))
    busy, flagged = contention_warnings(results)
    warnings += busy
    latency["contended"] = [flagged.get(m, 0) for m, _ in latency.index]
    costs = compute.method_costs(seeds)
    sweeps = compute.sweep_table(results.cells, points, cis, costs)
    matched = compute.matched_table(results.cells, points, cis, costs)
    warnings += compute.budget_warnings(matched)
    budgets: dict = {"methods": list(matched.get("method", []))}
    for text in sorted(set(matched.get("budget", []))):
        budget = parse_budget(text)
        budgets.setdefault(budget.kind, []).append(budget.limit)
    figures = {
        "Aggregate metrics (95% CIs)": plots.aggregate_intervals(points, cis, figures_dir),
        "Performance profiles": plots.profiles(profile, bands, taus, figures_dir),
        "Normalized score per task (dots: seeds; dashed: references)": plots.per_task_bars(
            seeds, results.episodes, figures_dir, seed, ref_rows
        ),
        "Compute frontier: IQM against measured cost per planning step (stars: compute-matched)": (
            plots.compute_frontier(points, cis, costs, figures_dir, budgets)
        ),
    }
    if len(sweeps) and any(
        compute.sweep_axes(sweeps, run, planner)
        for run, planner in set(zip(sweeps["run"], sweeps["planner"], strict=True))
    ):
        figures["Parameter sweeps: IQM against each swept option"] = plots.sweep_curves(sweeps, figures_dir)
    exploitation = exploitation_table(results.episodes)
    if len(exploitation):
        figures["Model exploitation: actual minus predicted H-step return"] = plots.exploitation(
            exploitation, figures_dir
        )
    trained = curves.training_curves(results.cells, refs)
    warnings += trained.warnings
    if len(trained.evaluations):
        figures["Training curves: evaluations logged during training beside the published curve"] = (
            plots.training_curves(trained.evaluations, trained.official, figures_dir)
        )
    if improvement:
        figures["Probability of improvement"] = plots.improvement(
            {k: v[0] for k, v in improvement.items()}, {k: v[1] for k, v in improvement.items()}, figures_dir
        )

    norms = zip(results.cells["task_id"], results.cells["normalization"], strict=True)
    kind_of = {t: n.get("kind", "none") for t, n in norms}
    success_tasks = {t for t, kind in kind_of.items() if kind == "success"}
    per_task = tables.per_task_table(seeds, success_tasks, ref_rows)
    per_task_parts = per_suite_tables(per_task, suite_of, kind_of)
    protocol = _protocol(results, seeds, table, reps, seed, baseline, run_of)
    if len(exploitation):
        protocol.append(
            (
                "model exploitation",
                "prediction at step t = the model's discounted H-step reward sum along the open-loop plan the planner "
                "executes (its first action is taken), computed after planning, neither timed nor counted; the same "
                "definition for every planner that plans a sequence (the policy alone makes none); realized = the "
                "discounted sum of the next H rewards obtained",
            )
        )
    if refs:
        protocol += [
            (
                "references (not measured by benchctl)",
                "; ".join(f"{r.label}: {r.source}" for r in refs)
                + (" (in the aggregates where per-seed)" if reference_aggregates else " (not in the aggregates)"),
            ),
            ("reference task names", ", ".join(f"{k} = {v}" for k, v in reference.task_names().items())),
        ]
    files = [p for fig in figures.values() for p in (fig, fig.with_suffix(".pdf"))]
    if "csv" in formats:
        files += _write_csv(out, seeds, per_task, latency, points, cis, improvement)
        if per_suite:
            rows = [
                {"suite": name, "method": m, "metric": metric, "point": p[m][i]}
                | {"ci_low": c[m][0][i], "ci_high": c[m][1][i]}
                for name, (p, c) in per_suite.items()
                for m in p
                for i, metric in enumerate(agg.METRICS)
            ]
            pd.DataFrame(rows).to_csv(out / "aggregates_per_suite.csv", index=False)
            files.append(out / "aggregates_per_suite.csv")
        for name, frame in (("sweeps", sweeps), ("matched", matched)):
            if len(frame):
                frame.to_csv(out / f"{name}.csv", index=False)
                files.append(out / f"{name}.csv")
        if len(exploitation):
            exploitation.to_csv(out / "exploitation.csv", index=False)
            files.append(out / "exploitation.csv")
        if len(trained.table):
            trained.table.to_csv(out / "training_curves.csv", index=False)
            files.append(out / "training_curves.csv")
    if "tex" in formats:
        for name, body in (
            ("per_task", tables.render_per_task(per_task, "tex", references=set(ref_rows["method"]))),
            ("latency", tables.render_latency(latency, "tex")),
        ):
            path = out / f"{name}.tex"
            path.write_text(body + "\n")
            files.append(path)
    sections = {
        "per_task": per_task,
        "per_task_parts": per_task_parts,
        "per_suite": per_suite,
        "references": set(ref_rows["method"]),
        "latency": latency,
        "sweeps": sweeps,
        "matched": matched,
        "training": trained.table,
        "points": points,
        "cis": cis,
        "improvement": improvement,
        "figures": figures,
        "protocol": protocol,
        "warnings": warnings,
    }
    if "md" in formats:
        files.append(_write_markdown(out, sections))
    if "html" in formats:
        files.append(_write_html(out, sections))
    return Report(out, files, warnings, points, cis, improvement, table.tasks, _coverage(table, run_of))


def suite_aggregates(
    scored: pd.DataFrame, suite_of: dict[str, str], run_of: dict[str, str], reps: int, seed: int
) -> dict[str, tuple[dict, dict]]:
    """{suite: (points, cis)} over each suite's tasks alone, when the results span several suites
    (the overall aggregates pool all tasks present)."""
    names = sorted(set(suite_of.values()))
    if len(names) < 2:
        return {}
    out = {}
    for name in names:
        part = scored[scored["task_id"].map(suite_of) == name]
        table = agg.score_table(part, run_of)
        if table.matrices and table.tasks:
            out[name] = agg.aggregates(table, reps, seed)
    return out


_UNITS = {
    "scale": "return",
    "success": "success rate in %",
    "random_target": "return, normalized score in parentheses",
    "none": "return",
}


def per_suite_tables(
    per_task: pd.DataFrame, suite_of: dict[str, str], kind_of: dict[str, str]
) -> list[tuple[str, str, pd.DataFrame, bool]]:
    """The per-task table split by suite: [(suite, unit, rows, with_score)], each suite in its own unit."""
    parts = []
    for name in sorted(set(suite_of.values())):
        rows = per_task[[suite_of.get(t) == name for t in per_task.index]]
        if rows.empty:
            continue
        kinds = {kind_of[t] for t in rows.index}
        kind = kinds.pop() if len(kinds) == 1 else "none"
        parts.append((name, _UNITS.get(kind, "return"), rows, kind == "random_target"))
    return parts


def normalization_text(cells: pd.DataFrame) -> str:
    """Each suite's normalization in words: DMC return / 1000, Meta-World success, HumanoidBench
    (x - random) / (target - random) with each task's constants."""
    parts = []
    for suite, group in cells.groupby("suite", sort=True):
        norms = {t: n for t, n in zip(group["task"], group["normalization"], strict=True)}
        kinds = {n.get("kind", "none") for n in norms.values()}
        if kinds == {"scale"} and len({n["divisor"] for n in norms.values()}) == 1:
            text = f"return / {next(iter(norms.values()))['divisor']:g}"
        elif kinds == {"success"}:
            text = "success (0/1) of each episode"
        elif kinds == {"random_target"}:
            text = "(return - random) / (target - random); " + ", ".join(
                f"{t}: random {n['random']:g}, target {n['target']:g}" for t, n in sorted(norms.items())
            )
        else:
            text = "; ".join(f"{t}: {json.dumps(n, sort_keys=True)}" for t, n in sorted(norms.items()))
        parts.append(f"{suite}: {text}")
    return "; ".join(parts)


def _coverage(table: agg.ScoreTable, run_of: dict[str, str]) -> str:
    """Which tasks the aggregates cover: one list, or one per run when runs cover different tasks."""
    sets = {run_of[m]: tasks for m, tasks in table.tasks_of.items()}
    if len({tuple(t) for t in sets.values()}) == 1:
        return f"{len(table.tasks)} task(s) every method has: {', '.join(table.tasks)}"
    return "; ".join(f"run {run}: {len(t)} task(s) ({', '.join(t)})" for run, t in sorted(sets.items()))


def _protocol(
    results: Results,
    seeds: pd.DataFrame,
    table: agg.ScoreTable,
    reps: int,
    seed: int,
    baseline: str,
    run_of: dict[str, str],
) -> list[tuple[str, str]]:
    cells = results.cells
    hashes = cells.groupby(["run", "task_id", "seed"])["checkpoint_sha256"].first()
    return [
        ("episodes per seed", ", ".join(map(str, sorted(set(cells["episodes"]))))),
        ("seeds", ", ".join(map(str, sorted(set(cells["seed"]))))),
        ("normalization", normalization_text(cells) + " (score per run = mean over its episodes)"),
        ("aggregates cover", _coverage(table, run_of)),
        ("runs per method", ", ".join(f"{m}: {len(s)}" for m, s in table.seeds.items())),
        ("bootstrap", f"{agg.CI_METHOD}; {reps} replicates; seed {seed} (numpy's global generator, restored after)"),
        ("optimality gap", "gamma = 1"),
        (
            "probability of improvement",
            f"against {baseline!r} and 'mppi' where present (a planner name matches within each run); "
            "Mann-Whitney per task, "
            "averaged over tasks; independent stratified bootstrap",
        ),
        (
            "benchctl",
            f"report {benchctl.__version__}; results written by "
            + ", ".join(sorted({str(v) for v in cells["benchctl"]})),
        ),
        (
            "devices",
            "; ".join(sorted({f"{d} ({n})" for d, n in zip(cells["device"], cells["device_name"], strict=True)})),
        ),
        ("checkpoints", "; ".join(f"{r}/{t}/seed {s}: {h[:12]}" for (r, t, s), h in hashes.items())),
        ("generated", datetime.now(UTC).isoformat(timespec="seconds")),
    ]


def _write_csv(out: Path, seeds, per_task, latency, points, cis, improvement) -> list[Path]:
    paths = []
    seeds.to_csv(out / "scores_per_seed.csv", index=False)
    paths.append(out / "scores_per_seed.csv")
    flat = per_task.copy()
    flat.columns = [f"{m}:{stat}" for m, stat in flat.columns]
    flat.to_csv(out / "per_task.csv")
    latency.to_csv(out / "latency.csv")
    rows = [
        {"method": m, "metric": metric, "point": points[m][i], "ci_low": cis[m][0][i], "ci_high": cis[m][1][i]}
        for m in points
        for i, metric in enumerate(agg.METRICS)
    ]
    pd.DataFrame(rows).to_csv(out / "aggregates.csv", index=False)
    pd.DataFrame(
        [
            {"pair": k, "x": k.split(PAIR)[0], "y": k.split(PAIR)[1], "p": v[0], "ci_low": v[1][0], "ci_high": v[1][1]}
            for k, v in improvement.items()
        ]
    ).to_csv(out / "probability_of_improvement.csv", index=False)
    paths += [out / n for n in ("per_task.csv", "latency.csv", "aggregates.csv", "probability_of_improvement.csv")]
    return paths


def _aggregate_rows(points, cis) -> list[tuple[str, list[str]]]:
    return [
        (m, [f"{points[m][i]:.3f} [{cis[m][0][i]:.3f}, {cis[m][1][i]:.3f}]" for i in range(4)])
        for m in sorted(points, key=lambda m: -points[m][1])
    ]


def _write_markdown(out: Path, s: dict) -> Path:
    lines = [
        "# benchctl report",
        "",
        "## Aggregates (normalized scores, 95% CIs)",
        "",
        tables._render(["method", *agg.METRICS], _aggregate_rows(s["points"], s["cis"]), "md"),
        "",
    ]
    for name, (points, cis) in s["per_suite"].items():
        lines += [
            f"### Aggregates: {name} alone",
            "",
            tables._render(["method", *agg.METRICS], _aggregate_rows(points, cis), "md"),
            "",
        ]
    if s["improvement"]:
        rows = [(k, [f"{v[0]:.3f} [{v[1][0]:.3f}, {v[1][1]:.3f}]"]) for k, v in s["improvement"].items()]
        lines += ["## Probability of improvement", "", tables._render(["pair", "P(X > Y)"], rows, "md"), ""]
    lines += [f"## Per task ({PER_TASK_NOTE})", ""]
    for title, body in _per_task_sections(s, "md"):
        lines += ([f"### {title}", ""] if title else []) + [body, ""]
    lines += [
        "## Planning latency",
        "",
        "ms per planning step = encode + plan wall time; steady state = every step after an episode's first. "
        "Work per step: dynamics+reward evaluations (one candidate, one horizon step), value-head rows "
        "(heads x candidates), policy rows, backward passes.",
        "",
        tables.render_latency(s["latency"], "md"),
        "",
    ]
    for title, body in _compute_sections(s, "md"):
        lines += [f"## {title}", "", body, ""]
    lines += ["## Figures", ""]
    for title, png in s["figures"].items():
        lines += [f"### {title}", "", f"![{title}](figures/{png.name})", ""]
    lines += ["## Protocol", ""] + [f"- **{k}**: {v}" for k, v in s["protocol"]]
    if s["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in s["warnings"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


PER_TASK_NOTE = (
    "mean ± sample std (ddof = 1) over seeds of the per-seed mean, the mean alone where there is one seed; "
    "best in bold, second underlined"
)


def _per_task_sections(s: dict, fmt: str) -> list[tuple[str, str]]:
    """[(title, table)]: one table per suite, each in its unit; no title when there is one suite."""
    parts = s["per_task_parts"]
    return [
        (
            f"{name} ({unit})" if len(parts) > 1 else f"{name}: {unit}",
            tables.render_per_task(rows, fmt, references=s["references"], with_score=with_score),
        )
        for name, unit, rows, with_score in parts
    ]


def _compute_sections(s: dict, fmt: str) -> list[tuple[str, str]]:
    """The sweep and compute-matched tables, where the results hold them."""
    sections = []
    if len(s["sweeps"]):
        rows = [
            (
                r["method"],
                [
                    f"{r['iqm']:.3f} [{r['iqm_low']:.3f}, {r['iqm_high']:.3f}]",
                    f"{r['steady_ms']:.2f}",
                    f"{r['model_evals']:,.0f}",
                ],
            )
            for _, r in s["sweeps"].sort_values(["run", "planner", "method"]).iterrows()
        ]
        body = tables._render(["sweep point", "IQM [95% CI]", "steady ms / step", "WM evals / step"], rows, fmt)
        sections.append(("Parameter sweeps (IQM of normalized score per point, measured cost)", body))
    if len(s["matched"]):
        rows = [
            (
                r["method"],
                [
                    r["budget"],
                    html.escape(r["chosen"]) if fmt == "html" else r["chosen"],
                    f"{r['cost_when_chosen']:.3g}",
                    f"{r['cost_now']:.3g}",
                    r["fitting"],
                    html.escape(r["measured_on"]) if fmt == "html" else r["measured_on"],
                    f"{r['iqm']:.3f} [{r['iqm_low']:.3f}, {r['iqm_high']:.3f}]",
                ],
            )
            for _, r in s["matched"].sort_values("iqm", ascending=False).iterrows()
        ]
        header = [
            "method",
            "budget",
            "chosen",
            "cost (sweep)",
            "cost (this run)",
            "configs fitting",
            "measured on",
            "IQM [95% CI]",
        ]
        sections.append(
            ("Compute-matched comparison (best measured config within the budget)", tables._render(header, rows, fmt))
        )
    if len(s["training"]):
        note = html.escape(TRAINING_NOTE) if fmt == "html" else TRAINING_NOTE
        body = f"<p>{note}</p>" if fmt == "html" else note + "\n\n"
        sections.append(("Training curves", body + _training_table(s["training"], fmt)))
    return sections


TRAINING_NOTE = (
    "Each agent's periodic evaluations logged during training (benchctl train: the policy and the acting planner, "
    "a few episodes each) beside the published curve of its task at the same steps: mean [min, max] over the "
    "seeds that published a point at that step, number of seeds; — where none did (the TD-MPC2 curves have a "
    "point every 100k steps; the figure draws them whole)."
)


def _training_table(table: pd.DataFrame, fmt: str) -> str:
    """Agent, task, step, each planner's logged value, the published curve there; success in %."""
    fixed = {"agent", "task_id", "metric", "step", "reference"}
    planners = [c for c in table.columns if c not in fixed and not c.startswith("official_")]
    planners.sort(key=lambda c: (c != "policy", c))
    has_official = "official_mean" in table.columns
    label = next((r for r in table.get("reference", pd.Series(dtype=str)).dropna()), "")
    ref_name = "published curve" + (f" ({label})" if label else "")

    def value(x: float, metric: str) -> str:
        if pd.isna(x):
            return "—"
        return f"{100 * x:.0f}%" if metric == "success" else f"{x:.1f}"

    rows = []
    for _, r in table.iterrows():
        cells = [r["task_id"], f"{int(r['step']):,}"] + [value(r[p], r["metric"]) for p in planners]
        if has_official:
            cells.append(
                "—"
                if pd.isna(r.get("official_mean"))
                else f"{value(r['official_mean'], r['metric'])} [{value(r['official_min'], r['metric'])}, "
                f"{value(r['official_max'], r['metric'])}] ({int(r['official_seeds'])})"
            )
        rows.append((r["agent"], [html.escape(c) if fmt == "html" else c for c in cells]))
    header = ["agent", "task", "step", *planners] + ([ref_name] if has_official else [])
    return tables._render(header, rows, fmt)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.warn{color:#8a4b00}dt{font-weight:600}dd{margin:0 0 .5em 1em}"""


def _write_html(out: Path, s: dict) -> Path:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>benchctl report</title>",
        f"<style>{_CSS}</style></head><body><h1>benchctl report</h1>",
        "<h2>Aggregates (normalized scores, 95% CIs)</h2>",
        tables._render(
            ["method", *agg.METRICS],
            [(m, [html.escape(c) for c in cells]) for m, cells in _aggregate_rows(s["points"], s["cis"])],
            "html",
        ),
    ]
    for name, (points, cis) in s["per_suite"].items():
        parts += [
            f"<h3>Aggregates: {html.escape(name)} alone</h3>",
            tables._render(
                ["method", *agg.METRICS],
                [(m, [html.escape(c) for c in cells]) for m, cells in _aggregate_rows(points, cis)],
                "html",
            ),
        ]
    if s["improvement"]:
        rows = [(k, [f"{v[0]:.3f} [{v[1][0]:.3f}, {v[1][1]:.3f}]"]) for k, v in s["improvement"].items()]
        parts += ["<h2>Probability of improvement</h2>", tables._render(["pair", "P(X > Y)"], rows, "html")]
    parts += [f"<h2>Per task</h2><p>{html.escape(PER_TASK_NOTE)}.</p>"]
    for title, body in _per_task_sections(s, "html"):
        parts += [f"<h3>{html.escape(title)}</h3>", body]
    parts += [
        "<h2>Planning latency</h2>",
        tables.render_latency(s["latency"], "html"),
    ]
    for title, body in _compute_sections(s, "html"):
        parts += [f"<h2>{html.escape(title)}</h2>", body]
    parts.append("<h2>Figures</h2>")
    for title, png in s["figures"].items():
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        )
    parts.append(
        "<h2>Protocol</h2><dl>"
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in s["protocol"])
        + "</dl>"
    )
    if s["warnings"]:
        parts.append(
            "<h2>Warnings</h2><ul>"
            + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in s["warnings"])
            + "</ul>"
        )
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("".join(parts))
    return path
