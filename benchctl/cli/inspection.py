"""`benchctl ls` and `benchctl inspect`: what suites, tasks, planners and checkpoints there are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from benchctl.cli.console import (
    app,
    err,
    out,
)

ls_app = typer.Typer(help="List suites, planners or tasks.", no_args_is_help=True)
app.add_typer(ls_app, name="ls")


@ls_app.command("suites")
def ls_suites():
    """Every suite with its task count."""
    from benchctl.suites import load_suite, suite_names

    table = Table("suite", "tasks", "description")
    for name in suite_names():
        s = load_suite(name)
        table.add_row(name, str(len(s.tasks)), s.description)
    out.print(table)


@ls_app.command("tasks")
def ls_tasks(suite: Annotated[str | None, typer.Option(help="only this suite")] = None):
    """Tasks with their protocol (episode length, action repeat, normalization)."""
    from benchctl.suites import load_suite, suite_names

    table = Table("suite", "task", "episode steps", "action repeat", "discount", "normalization")
    for name in [suite] if suite else suite_names():
        for t in load_suite(name).tasks.values():
            norm = ", ".join(f"{k}={v}" for k, v in t.normalization.items())
            table.add_row(name, t.name, str(t.episode_length), str(t.action_repeat), f"{t.discount:.3f}", norm)
    out.print(table)


@ls_app.command("planners")
def ls_planners(action_dim: Annotated[int, typer.Option(help="action size used for the evaluation count")] = 6):
    """Every planner: its paper, defaults and world-model evaluations per planning step."""
    from benchctl.planners import config_dict, registry

    table = Table("planner", "paper", "defaults", "WM evals/step", show_lines=True)
    for name, cls in registry().items():
        config = cls.Config()
        defaults = ", ".join(f"{k}={v}" for k, v in config_dict(config).items()) or "-"
        table.add_row(name, cls.paper, defaults, f"{cls.model_evals_per_step(config, action_dim):,}")
    out.print(table)


@app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="a TD-MPC2/BMPC checkpoint file")],
    verify: Annotated[
        Path | None, typer.Option(help="an .npz of the official code's outputs on fixed inputs: compare")
    ] = None,
):
    """Family, model size, dims, observations, value heads, layout and sha256 of a checkpoint; with
    --verify, the largest relative error per output against an archive (exit 1 above 1e-4, or above 4x
    the output's float32 round-off on this machine where that is larger)."""
    from benchctl.agents import describe_checkpoint, load_checkpoint
    from benchctl.agents.checkpoint import read_blob
    from benchctl.agents.dreamer import is_dreamer, load_dreamer

    blob = read_blob(path)
    if is_dreamer(blob):
        model = load_dreamer(path, blob)  # type: ignore[arg-type]
        _print_dreamer(path, model)
        if verify is not None:
            _verify(model, verify)
        return
    info = describe_checkpoint(path)
    d = info.dims
    table = Table(show_header=False, title=str(path))
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    if d.obs_kind == "rgb":
        observations = f"rgb {'x'.join(map(str, d.obs_shape))} (uint8 frames)"
        encoder = f"4 convolutions, {d.num_channels} channels, random shift at encode"
    else:
        observations, encoder = f"state {d.obs_dim}", f"{d.num_enc_layers} layers, width {d.enc_dim}"
    rows = [
        ("family", info.family),
        ("layout", info.layout),
        ("model size", f"{info.model_size} ({info.num_params:,} parameters)"),
        ("observations", observations),
        ("obs / action dim", f"{d.obs_dim} / {d.action_dim}"),
        ("encoder", encoder),
        ("latent", f"{d.latent_dim} (SimNorm groups of {d.simnorm_dim})"),
        ("mlp width", str(d.mlp_dim)),
        ("value heads", f"{d.num_value_heads} x {'V(z)' if info.family == 'bmpc' else 'Q(z, a)'}, {d.num_bins} bins"),
        ("policy log-std", "[{:g}, {:g}]".format(*info.log_std_bounds) if info.log_std_bounds else "unbounded"),
        ("sha256", info.sha256),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    if verify is not None:
        _verify(load_checkpoint(path), verify)


def _print_dreamer(path: Path, model) -> None:
    """The `inspect` table of a dreamer-pytorch checkpoint."""
    from benchctl.agents.checkpoint import sha256_of

    d = model.dims
    table = Table(show_header=False, title=str(path))
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    observations = f"state {d.obs_shape[0]} (symbolic)" if d.symbolic else "rgb 3x64x64 (one frame, in [-0.5, 0.5])"
    params = sum(p.numel() for p in model.parameters())
    rows = [
        ("family", "dreamer (dreamer-pytorch RSSM)"),
        ("parameters", f"{params:,}"),
        ("observations", observations),
        ("action dim", str(d.action_dim)),
        ("RSSM", f"belief (GRU) {d.belief}, stochastic state {d.state}, hidden {d.hidden}, min std {d.min_std:g}"),
        ("encoder", f"{'MLP' if d.symbolic else '4 convolutions'}, embedding {d.embedding}"),
        ("heads", "reward, value, tanh-normal actor, observation decoder"),
        ("sha256", sha256_of(path)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def _verify(model, archive: Path) -> None:
    """Compare every output of `archive` with `model`'s; exit 1 above the tolerance (benchctl.agents.verify)."""
    from benchctl.agents.verify import verify as run_verify

    checks = run_verify(model, archive)
    result = Table(title=f"outputs against {archive} (max |ours - theirs| / max |theirs|)")
    for col in ("output", "shape", "relative error", "float32 round-off here", "allowed", ""):
        result.add_column(col, justify="left" if col == "output" else "right")
    for c in checks:
        ok = "ok" if c.ok else "[red]FAIL[/red]"
        result.add_row(c.output, str(c.shape), f"{c.error:.2e}", f"{c.roundoff:.2e}", f"{c.allowed:.1e}", ok)
    out.print(result)
    failed = [c for c in checks if not c.ok]
    if failed:
        worst = max(failed, key=lambda c: c.error / c.allowed)
        err.print(
            f"{worst.output} differs by {worst.error:.2e} (> {worst.allowed:.1e}): the model does not reproduce the "
            "archive"
        )
        raise typer.Exit(1)
    worst = max(checks, key=lambda c: c.error / c.allowed)
    out.print(
        f"all {len(checks)} outputs within their tolerance (largest: {worst.output}, {worst.error:.2e} of "
        f"{worst.allowed:.1e} allowed)"
    )
