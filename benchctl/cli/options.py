"""Option types shared by eval and sweep: which agents, seeds, episodes, where results go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchctl.cli.console import MAX_EPISODES

Suite_ = Annotated[str, typer.Option("--suite", help="suite name (suites/<name>.toml)")]
Planners_ = Annotated[list[str] | None, typer.Option("--planner", "-p", help="planner; repeat for several")]
Checkpoints_ = Annotated[
    Path | None,
    typer.Option("--checkpoints", help="folder of official <task>-<seed>.pt files [default: the shipped agents]"),
]
Checkpoint_ = Annotated[Path | None, typer.Option("--checkpoint", help="one checkpoint file (with --task)")]
Task_ = Annotated[str | None, typer.Option("--task", help="the task of --checkpoint")]
Tasks_ = Annotated[str | None, typer.Option("--tasks", help="comma-separated subset of the suite's tasks")]
Seeds_ = Annotated[str | None, typer.Option("--seeds", help="comma-separated checkpoint seeds [default: 1,2,3]")]
Episodes_ = Annotated[
    int, typer.Option("--episodes", min=1, max=MAX_EPISODES, help="episodes per (task, planner, seed)")
]
Device_ = Annotated[str, typer.Option("--device", help="cpu or cuda")]
Out_ = Annotated[Path, typer.Option("--out", help="results folder")]
Set_ = Annotated[list[str] | None, typer.Option("--set", help="planner option key=value (or planner.key=value)")]
Threads_ = Annotated[int | None, typer.Option("--threads", help="torch CPU threads [default: torch's choice]")]
Jobs_ = Annotated[int, typer.Option("--jobs", min=1, max=4096, help="cells at once, each in its own local process")]
Executor_ = Annotated[str, typer.Option("--executor", help="where cells run: local, ray or slurm")]
Address_ = Annotated[str, typer.Option("--address", help="ray: the cluster's address (auto: this machine's)")]
Gpus_ = Annotated[
    float, typer.Option("--gpus-per-worker", min=0.0, help="ray/slurm: GPUs per worker (ray: fractions share a GPU)")
]
Partition_ = Annotated[str | None, typer.Option("--partition", help="slurm: the partition")]
Dtype_ = Annotated[
    str, typer.Option("--dtype", help="float32, or bfloat16: matrix products in bfloat16 while planning (autocast)")
]
Time_ = Annotated[int, typer.Option("--time", min=1, help="slurm: minutes per array task")]
Augment_ = Annotated[
    bool,
    typer.Option(
        "--augment/--no-augment",
        help="pixel agents: randomly shift each observation at encode, as the official evaluation does",
    ),
]
BatchEpisodes_ = Annotated[
    int,
    typer.Option(
        "--batch-episodes", min=1, max=1024, help="episodes of a cell in lockstep: one planner call per step for all"
    ),
]
