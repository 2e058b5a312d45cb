"""`benchctl report`: aggregate results into a report with rliable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from benchctl.cli.console import (
    app,
    err,
    out,
)


@app.command("report")
def report_command(
    roots: Annotated[list[Path] | None, typer.Argument(help="results folders [default: results]")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("reports/latest"),
    reps: Annotated[int, typer.Option(max=1_000_000, help="bootstrap replicates for every CI")] = 2000,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="bootstrap seed (reports are reproducible)")] = 0,
    formats: Annotated[str, typer.Option("--format", help="text outputs: md,html,tex,csv")] = "md,html,tex,csv",
    baseline: Annotated[str, typer.Option(help="method the probability of improvement compares against")] = "policy",
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="published scores beside benchctl's: tdmpc2-csv (shipped TD-MPC2 curves), tdmpc2-csv=DIR, "
            "dream-mpc-paper; repeat for several"
        ),
    ] = None,
    reference_step: Annotated[
        int | None,
        typer.Option(min=0, help="training step at which learning-curve references are read [default: last]"),
    ] = None,
    reference_aggregates: Annotated[
        bool, typer.Option(help="put references with per-seed scores into the aggregates too")
    ] = False,
):
    """rliable aggregates, paper-style tables and figures from any results trees (merged)."""
    from benchctl.paths import writable_dir
    from benchctl.report import reference as refs
    from benchctl.report.render import build_report, parse_formats

    chosen = parse_formats(formats)
    specs, roots = refs.claim_csv_folders(reference or [], roots or [Path("results")])
    loaded = refs.load(specs, reference_step)
    writable_dir("--out", out_dir)
    with err.status("bootstrapping confidence intervals..."):
        report = build_report(roots, out_dir, reps, seed, chosen, baseline, loaded, reference_aggregates)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    table = Table(title=f"aggregates, 95% CIs ({reps} bootstrap replicates) over {report.coverage}")
    table.add_column("method", no_wrap=True)
    for name in ("Median", "IQM", "Mean", "Optimality Gap"):
        table.add_column(name, justify="right", no_wrap=True)
    for method in sorted(report.aggregates, key=lambda m: -report.aggregates[m][1]):
        p, ci = report.aggregates[method], report.intervals[method]
        table.add_row(escape(method), *[f"{p[i]:.3f} [{ci[0][i]:.3f}, {ci[1][i]:.3f}]" for i in range(4)])
    out.print(table)
    out.print(f"report: {out_dir}/ ({len(report.files)} files; open {out_dir / 'report.html'})")
