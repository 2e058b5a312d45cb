"""`benchctl gradients` and `benchctl profile`: planner-gradient quality and planning latency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from benchctl.cli.console import (
    app,
    err,
    out,
    parse_seeds,
    split_csv,
)
from benchctl.cli.evaluation import check_dtype
from benchctl.cli.options import Dtype_
from benchctl.errors import BenchctlError

DEFAULT_PENDULUM = Path("checkpoints/tdmpc2/pendulum/Pendulum-v1-1.pt")


@app.command("gradients")
def gradients_command(
    checkpoint: Annotated[
        Path | None, typer.Option(help="learned Pendulum-v1 agent [default: the shipped one]")
    ] = None,
    ground_truth_only: Annotated[bool, typer.Option(help="no learned agent: Grad-MPC on the true pendulum")] = False,
    horizons: Annotated[str, typer.Option(help="planning horizons")] = "1,2,3,5,10,15,20,30",
    samples: Annotated[int, typer.Option(min=2, max=100_000, help="gradient samples per state")] = 32,
    states: Annotated[int, typer.Option(min=1, max=100_000, help="states per seed")] = 100,
    seeds: Annotated[str, typer.Option(help="seeds")] = "1,2,3",
    start_states: Annotated[
        str, typer.Option(help="reset (Pendulum-v1's start distribution) or visited (the agent's episodes)")
    ] = "reset",
    torque_std: Annotated[
        float, typer.Option(min=1e-6, max=100.0, help="Grad-MPC's initial torques ~ N(0, std^2), N m")
    ] = 1.0,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("reports/gradients"),
):
    """Planner-gradient quality (ESNR, gradient size) against horizon on the true and a learned Pendulum-v1."""
    import json

    from benchctl.agents import load_checkpoint_with_info
    from benchctl.analysis.gradients import StudyConfig, run_study
    from benchctl.paths import writable_dir
    from benchctl.report.plots import gradient_curves

    writable_dir("--out", out_dir)
    agent, label = None, None
    if not ground_truth_only:
        path = checkpoint or DEFAULT_PENDULUM
        if not path.exists():
            raise BenchctlError(
                f"no learned Pendulum-v1 agent at {path}: train one with `benchctl train --task "
                "Pendulum-v1`, pass --checkpoint FILE, or use --ground-truth-only"
            )
        agent, info = load_checkpoint_with_info(path)
        if (info.dims.obs_dim, info.dims.action_dim) != (3, 1):
            raise BenchctlError(
                f"{path} takes obs {info.dims.obs_dim} / action {info.dims.action_dim}; "
                "a Pendulum-v1 agent takes obs 3 / action 1"
            )
        label = f"{path} (sha256 {info.sha256[:12]})"
    try:
        if start_states not in ("reset", "visited"):
            raise BenchctlError(f"--start-states {start_states}: choose reset or visited")
        config = StudyConfig(
            start_states=start_states,
            torque_std=torque_std,
            horizons=tuple(int(h) for h in split_csv(horizons)),
            samples=samples,
            states=states,
            seeds=tuple(parse_seeds(seeds)),
            planners=("grad_mpc",) if agent is None else ("grad_mpc", "dream_mpc"),
        )
    except ValueError:
        raise BenchctlError(f"--horizons {horizons}: give integers separated by commas") from None
    if not config.horizons or min(config.horizons) < 1:
        raise BenchctlError(f"--horizons {horizons}: give positive integers, e.g. 1,3,10")
    with err.status("differentiating planners..."):
        result = run_study(agent, config, label)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gradients.json").write_text(json.dumps(result, indent=1))
    figure = gradient_curves(result["summary"], out_dir)
    table = Table(title="planner gradients: ESNR (mean ± std over seeds) and mean gradient norm")
    for col in ("model", "planner", "H", "ESNR", "ESNR - 1/K", "undefined states", "|g|", "sum Var[g]"):
        table.add_column(col, justify="left" if col in ("model", "planner") else "right", no_wrap=True)
    for r in sorted(result["summary"], key=lambda r: (r["model"], r["planner"], r["horizon"])):
        esnr = "undefined" if r["esnr_mean"] is None else f"{r['esnr_mean']:.3g} ± {r['esnr_std']:.2g}"
        corrected = "undefined" if r["esnr_corrected_mean"] is None else f"{r['esnr_corrected_mean']:.3g}"
        table.add_row(
            r["model"],
            r["planner"],
            str(r["horizon"]),
            esnr,
            corrected,
            str(r["undefined_states"]),
            f"{r['grad_norm_mean']:.3g}",
            f"{r['grad_variance']:.3g}",
        )
    out.print(table)
    out.print("protocol: " + "; ".join(f"{k}: {v}" for k, v in result["protocol"].items()))
    out.print(f"results: {out_dir / 'gradients.json'}, figure: {figure}")


@app.command("profile")
def profile_command(
    planner: Annotated[list[str] | None, typer.Option("--planner", "-p", help="planner; repeat [default: all]")] = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(help="agent checkpoint; repeat for several")] = None,
    size: Annotated[str, typer.Option(help="synthetic agents of these official sizes (without --checkpoint)")] = "5",
    obs_dim: Annotated[int, typer.Option(min=1, help="synthetic agents' observation size")] = 24,
    action_dim: Annotated[int, typer.Option(min=1, help="synthetic agents' action size")] = 6,
    gpu: Annotated[bool, typer.Option(help="profile on CUDA")] = False,
    compile_mode: Annotated[str, typer.Option("--compile", help="none, compile (torch.compile) or cudagraph")] = "none",
    calls: Annotated[
        int, typer.Option(min=3, max=1_000_000, help="timed planning steps per planner, after warm-up")
    ] = 200,
    warmup: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="untimed planning steps per planner before the timed ones")
    ] = 5,
    sweep: Annotated[
        list[str] | None, typer.Option(help="NAME=v1,v2: candidates, horizon, iterations, action_dim, size")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="planner option key=value")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("reports/profile"),
    threads: Annotated[int | None, typer.Option(help="torch CPU threads [default: torch's choice]")] = None,
    dtype: Dtype_ = "float32",
):
    """Latency (mean, std, p50, p95, p99), peak memory and model evaluations per planning step, and scaling sweeps."""
    import json

    from benchctl import execute
    from benchctl.analysis import latency
    from benchctl.machine import set_threads
    from benchctl.paths import writable_dir
    from benchctl.planners import registry
    from benchctl.report.plots import latency_bars, sweep_lines

    set_threads(threads)
    writable_dir("--out", out_dir)
    names = planner or list(registry())
    try:
        sizes = [int(v) for v in split_csv(size)] if not checkpoint else []
    except ValueError:
        raise BenchctlError(f"--size {size}: give official sizes separated by commas, e.g. 1,5") from None
    request = latency.ProfileRequest(
        planners=execute.resolve_planners(names, set_ or []),
        checkpoints=list(checkpoint or []),
        sizes=sizes,
        obs_dim=obs_dim,
        action_dim=action_dim,
        device=execute.check_device("cuda" if gpu else "cpu"),
        compile_mode=compile_mode,
        calls=calls,
        warmup=warmup,
        sweeps=[latency.check_sweep(s) for s in (sweep or [])],
        dtype=check_dtype(dtype, "cuda" if gpu else "cpu"),
    )
    with err.status("timing planners..."):
        result = latency.run_profile(request)
    rows, sweep_rows = result["rows"], result["sweeps"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile.json").write_text(json.dumps(result, indent=1))
    figures = [latency_bars(rows, out_dir)] + ([sweep_lines(sweep_rows, out_dir)] if sweep_rows else [])
    table = Table(title=f"planning latency per step: {result['machine']} ({calls} steps after {warmup} untimed)")
    for col in ("agent", "planner", "mean ± std ms", "p50", "p95", "p99", "memory MB", "WM evals/step"):
        table.add_column(col, justify="left" if col in ("agent", "planner") else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["agent"],
            r["planner"],
            f"{r['mean_ms']:.2f} ± {r['std_ms']:.2f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['peak_memory_mb']:.1f}",
            f"{r['model_evals_per_step']:,.0f}",
        )
    out.print(table)
    out.print(
        f"memory: {rows[0]['memory_kind'] if rows else '-'}; results: {out_dir / 'profile.json'}; "
        f"figures: {', '.join(str(f) for f in figures)}"
    )
