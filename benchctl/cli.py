"""The `benchctl` command: parse options, call the library, render with rich. The only module that prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from benchctl.errors import BenchctlError, unknown
from benchctl.runtime import keep_freed_memory

if TYPE_CHECKING:  # execute imports torch: loaded only by the commands that run agents
    from benchctl.execute import Eta

app = typer.Typer(
    name="benchctl",
    help="Benchmark test-time planners on learned world models.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
out = Console()
if not out.is_terminal:  # piped or logged: don't squeeze tables into 80 columns
    out = Console(width=160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


MAX_EPISODES = 100_000  # per cell; a larger number is a typo, not a benchmark


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _seeds(text: str | None) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
        if any(not 0 <= s < 2**32 for s in seeds):
            raise ValueError
        return seeds
    except ValueError:
        raise BenchctlError(
            f"--seeds {text}: give integers from 0 to 2^32 - 1 separated by commas, e.g. --seeds 1,2,3"
        ) from None


def _progress(unit: str, eta_field: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, done/total `unit`, elapsed and remaining time.

    With `eta_field` the remaining time is the task's `eta` field, set by the caller (rich's own
    estimate assumes every unit costs the same).
    """
    remaining = TextColumn("{task.fields[eta]}") if eta_field else TimeRemainingColumn()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        remaining,
        console=err,
    )


class RichReporter:
    """Progress bar over episodes with an honest ETA (per-planner step rates); warnings above it."""

    def __init__(self):
        self.progress = _progress("episodes", eta_field=True)
        self.bar = None
        self.total = self.done = 0
        self.eta = None

    def start(self, total: int, done: int, eta: Eta) -> None:
        if done:
            err.print(f"resuming: {done} of {total} episodes already on disk")
        self.total, self.done, self.eta = total, done, eta
        self.progress.start()
        self.bar = self.progress.add_task("starting", total=total, completed=done, eta=self._eta_text())

    def _eta_text(self) -> str:
        left = self.eta.remaining() if self.eta is not None else None
        if self.done >= self.total:
            return ""
        if left is None:
            return "remaining: measuring"
        minutes, seconds = divmod(int(left), 60)
        return f"remaining ~{minutes}:{seconds:02d}"

    def cell(self, label: str) -> None:
        self.progress.update(self.bar, description=escape(label))

    def episode(self, label: str, record: dict) -> None:
        self.done += 1
        self.progress.update(
            self.bar,
            advance=1,
            description=escape(
                f"{label}: ep {record['episode']} return {record['return']:.1f}, "
                f"{record['latency_ms']['p50']:.1f} ms/step"
            ),
            eta=self._eta_text(),
        )

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.progress.stop()
            self.bar = None


def _run_eval(request, reporter: RichReporter, engine=None):
    """execute.run with Ctrl-C turned into what a user needs: what was kept, how to resume, exit 130."""
    from benchctl import execute

    try:
        return execute.run(request, reporter, engine)
    except KeyboardInterrupt:
        reporter.stop()
        err.print(
            f"interrupted: {reporter.done} of {reporter.total} episodes are saved in {request.out}/; "
            "rerun the same command to run only the missing ones",
            markup=False,
        )
        raise typer.Exit(INTERRUPTED) from None
    finally:
        reporter.stop()


def _summary(results) -> Table:
    """Per (task, agent family, planner): return, success rate (suites that score success: Meta-World,
    HumanoidBench), episodes the environment ended early (a humanoid fell), median ms per step, model
    evaluations. With agents of several families (TD-MPC2, BMPC, Dreamer) the planner column names
    the family, as reports do (`bmpc/mppi`): their returns are never pooled."""
    families = {r.header.get("family", "") for r in results}
    eps_of: dict[tuple[str, str], list] = {}
    for r in results:
        label = f"{r.header.get('family', '')}/{r.planner}" if len(families) > 1 else r.planner
        eps_of.setdefault((r.task, label), []).append(r)
    scored = any(e.get("success") is not None for r in results for e in r.episodes)
    ended = any(e.get("terminated") for r in results for e in r.episodes)
    table = Table(title="benchctl eval: return (mean ± std over episodes, all seeds) and planning latency")
    columns = ["task", "planner", "seeds", "episodes", "return"]
    columns += ["success"] * scored + ["fell/ended early"] * ended + ["ms/step (median)", "WM evals/step"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("task", "planner") else "right", no_wrap=True)
    for (task, planner), cells in eps_of.items():
        eps = [e for c in cells for e in c.episodes]
        if not eps:
            continue
        returns = np.array([e["return"] for e in eps])
        row = [task, escape(planner), str(len(cells)), str(len(eps)), f"{returns.mean():.1f} ± {returns.std():.1f}"]
        if scored:
            wins = [bool(e["success"]) for e in eps if e.get("success") is not None]
            row.append(f"{100 * np.mean(wins):.0f}% ({sum(wins)}/{len(wins)})" if wins else "-")
        if ended:
            row.append(str(sum(bool(e.get("terminated")) for e in eps)))
        ms = np.median([e["latency_ms"]["p50"] for e in eps])
        evals = np.mean([e["model_evals_per_step"] for e in eps])
        table.add_row(*row, f"{ms:.2f}", f"{evals:,.0f}")
    return table


# Options shared by eval and sweep: which agents, seeds, episodes, where results go.
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


def _check_dtype(dtype: str) -> str:
    from benchctl.evaluate import DTYPES

    if dtype not in DTYPES:
        raise BenchctlError(f"--dtype {dtype}: choose {' or '.join(DTYPES)}")
    return dtype


def _dtype_run(default_run: str, dtype: str) -> str:
    """bfloat16 cells are their own run ("tdmpc2-bfloat16/mppi" in reports)."""
    return default_run if _check_dtype(dtype) == "float32" else f"{default_run}-{dtype}"


def _how_episodes_run(request, threads: int | None, batch_episodes: int, dtype: str, augment: bool) -> None:
    """The options of eval and sweep that say how a cell's episodes run, set on the request."""
    request.threads, request.batch_episodes, request.dtype, request.augment = threads, batch_episodes, dtype, augment


def _engine(
    executor: str, jobs: int, address: str, gpus: float, partition: str | None, minutes: int, out_dir: Path, device: str
):
    from benchctl.engines import make_engine

    if jobs > 1 and executor != "local":
        raise BenchctlError(f"--jobs {jobs} is for --executor local; {executor} sizes itself by its cluster")
    if device.startswith("cuda") and executor != "local" and gpus == 0:
        raise BenchctlError(f"--device {device} --executor {executor}: give each worker GPUs, e.g. --gpus-per-worker 1")
    return make_engine(executor, jobs, address, gpus, partition, minutes, folder=out_dir / ".submitit")


def _request(suite, planners, checkpoints, checkpoint, task, tasks, seeds, episodes, device, out_dir, run, default_run):
    """An EvalRequest from the shared options, with the agents' notices printed. `default_run` may
    hold "{family}" (replaced per agent); a --run the user gives is one folder name."""
    from benchctl import execute
    from benchctl.paths import folder_name, writable_dir
    from benchctl.suites import load_suite

    if run is not None:
        folder_name("--run", run)
    suite_obj = load_suite(suite)
    seed_list = _seeds(seeds) or None
    agents, notices = execute.resolve_agents(suite_obj, checkpoints, checkpoint, task, _csv(tasks), seed_list)
    for line in notices:
        err.print(line, markup=False, highlight=False)
    writable_dir("--out", out_dir)
    return execute.EvalRequest(suite_obj, agents, planners, episodes, device, out_dir, run or default_run)


def _finish_eval(request, engine=None) -> None:
    from benchctl.execute import IncompleteRun

    try:
        results = _run_eval(request, RichReporter(), engine)
    except IncompleteRun as exc:  # what finished, then the cells to rerun: exit 1
        out.print(_summary(exc.results))
        _fail(str(exc), code=1)
    out.print(_summary(results))
    out.print(f"results: {request.out}/ ({sum(len(r.episodes) for r in results)} episodes in {len(results)} cells)")


@app.command("eval")
def eval_command(
    suite: Suite_ = "dmc",
    planner: Planners_ = None,
    checkpoints: Checkpoints_ = None,
    checkpoint: Checkpoint_ = None,
    task: Task_ = None,
    tasks: Tasks_ = None,
    seeds: Seeds_ = None,
    episodes: Episodes_ = 10,
    device: Device_ = "cpu",
    out_dir: Out_ = Path("results"),
    run: Annotated[str | None, typer.Option(help="name of this run under --out [default: agent family]")] = None,
    set_: Set_ = None,
    match: Annotated[
        str | None,
        typer.Option(help="compute-matched: ms=25 or evals=600 picks each planner's best measured config within it"),
    ] = None,
    match_from: Annotated[
        Path | None, typer.Option(help="results folder the --match candidates come from [default: --out]")
    ] = None,
    threads: Threads_ = None,
    jobs: Jobs_ = 1,
    executor: Executor_ = "local",
    address: Address_ = "auto",
    gpus_per_worker: Gpus_ = 0.0,
    partition: Partition_ = None,
    minutes: Time_ = 60,
    dtype: Dtype_ = "float32",
    batch_episodes: BatchEpisodes_ = 1,
    augment: Augment_ = True,
):
    """Evaluate agents with one or more planners; rerunning the same command resumes."""
    from benchctl import execute
    from benchctl.machine import set_threads

    set_threads(threads)
    names = planner or ["dream_mpc"]
    if match is None:
        if match_from is not None:
            raise BenchctlError("--match-from needs --match ms=N or --match evals=N")
        specs = execute.resolve_planners(names, set_ or [])
    else:
        specs = _matched_specs(names, set_ or [], match, match_from or out_dir, device)
    default_run = f"match-{specs[0].match['slug']}-{{family}}" if match and specs[0].match else "{family}"
    request = _request(
        suite, specs, checkpoints, checkpoint, task, tasks, seeds, episodes, device, out_dir, run,
        _dtype_run(default_run, dtype),
    )  # fmt: skip
    _how_episodes_run(request, threads, batch_episodes, dtype, augment)
    _finish_eval(request, _engine(executor, jobs, address, gpus_per_worker, partition, minutes, out_dir, device))


def _matched_specs(names: list[str], set_items: list[str], budget_text: str, source: Path, device: str):
    """Per planner, the best measured config within the budget (benchctl.match), announced on stderr."""
    from benchctl import execute, match

    if set_items:
        raise BenchctlError("--match chooses each planner's options; drop --set (sweep the settings instead)")
    budget = match.parse_budget(budget_text)
    if not source.is_dir():
        raise BenchctlError(f"--match-from {source}: no such results folder; run `benchctl sweep` into it first")
    torch_device = execute.check_device(device)
    device_name = execute.device_name(torch_device)
    specs = []
    for name, choice in match.choose(source, list(dict.fromkeys(names)), budget, device, device_name).items():
        header = match.match_header(choice, budget, source, device_name)
        specs.append(execute.PlannerSpec(name, match.build_config(choice), match=header, chosen=None))
        options = ", ".join(f"{k}={v}" for k, v in choice.point.items()) or "its config in " + ", ".join(choice.runs)
        err.print(
            f"--match {budget.text}: {name} with {options} ({choice.cost:.4g} {budget.kind}/step measured, mean score "
            f"{choice.score:.3f} on {len(choice.tasks)} task(s); {choice.fitting} of {choice.candidates} configs fit)",
            markup=False,
            highlight=False,
        )
    return specs


@app.command("sweep")
def sweep_command(
    grid: Annotated[
        list[str] | None,
        typer.Option(help="planner.option=v1,v2,... (or option=... for every planner having it); repeat: the product"),
    ] = None,
    suite: Suite_ = "dmc",
    planner: Planners_ = None,
    checkpoints: Checkpoints_ = None,
    checkpoint: Checkpoint_ = None,
    task: Task_ = None,
    tasks: Tasks_ = None,
    seeds: Seeds_ = None,
    episodes: Episodes_ = 10,
    device: Device_ = "cpu",
    out_dir: Out_ = Path("results"),
    run: Annotated[str | None, typer.Option(help="name of this sweep under --out [default: sweep-<family>]")] = None,
    set_: Set_ = None,
    threads: Threads_ = None,
    jobs: Jobs_ = 1,
    executor: Executor_ = "local",
    address: Address_ = "auto",
    gpus_per_worker: Gpus_ = 0.0,
    partition: Partition_ = None,
    minutes: Time_ = 60,
    dtype: Dtype_ = "float32",
    batch_episodes: BatchEpisodes_ = 1,
    augment: Augment_ = True,
):
    """Evaluate every point of a grid of planner options (ordinary cells: resume, merge, report); the report
    draws each swept option as a curve, and `eval --match` picks from the points."""
    from benchctl.machine import set_threads
    from benchctl.sweep import expand

    set_threads(threads)
    specs = expand(planner or ["dream_mpc"], grid or [], set_ or [])
    points = sum(1 for s in specs if s.point)
    err.print(f"sweep: {len(specs)} planner configuration(s) ({points} grid point(s))", markup=False)
    request = _request(
        suite, specs, checkpoints, checkpoint, task, tasks, seeds, episodes, device, out_dir, run,
        _dtype_run("sweep-{family}", dtype),
    )  # fmt: skip
    _how_episodes_run(request, threads, batch_episodes, dtype, augment)
    _finish_eval(request, _engine(executor, jobs, address, gpus_per_worker, partition, minutes, out_dir, device))


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


class TrainProgress:
    """Live training view: a step bar, the latest episode and losses, evaluations as they come."""

    def __init__(self):
        self.view = _progress("steps")
        self.bar = None

    def start(self, total: int, done: int) -> None:
        if done:
            err.print(f"resuming from step {done:,}")
        self.view.start()
        self.bar = self.view.add_task("training", total=total, completed=done)

    def progress(self, step: int, info: dict) -> None:
        losses = ", ".join(
            f"{k.removesuffix('_loss')} {info[k]:.3f}"
            for k in ("consistency_loss", "observation_loss", "kl_loss", "reward_loss", "value_loss")
            if k in info
        )
        self.view.update(
            self.bar,
            completed=step,
            description=f"episode {info['episode']}: return {info['return']:.1f}" + (f" | {losses}" if losses else ""),
        )

    def evaluation(self, step: int, returns: dict[str, float]) -> None:
        text = ", ".join(f"{k} {v:.1f}" for k, v in returns.items())
        self.view.console.print(f"eval at step {step:,}: {text}")

    def note(self, message: str) -> None:
        self.view.console.print(message, markup=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.view.stop()


def _find_task(name: str, suite: str | None):
    from benchctl.suites import Task, load_suite, suite_names

    if suite:
        return load_suite(suite).task(name)
    every: dict[str, Task] = {}
    for s in suite_names():
        for task in load_suite(s).tasks.values():
            every.setdefault(task.name, task)
            for alias in task.aliases:
                every.setdefault(alias, task)
    if name not in every:
        raise unknown("task", name, every)
    return every[name]


@app.command("train")
def train_command(
    task: Annotated[str, typer.Option(help="task name, e.g. cartpole-swingup")],
    suite: Annotated[str | None, typer.Option(help="suite of the task [default: the first that has it]")] = None,
    family: Annotated[str, typer.Option(help="agent family: tdmpc2, bmpc or dreamer")] = "tdmpc2",
    size: Annotated[int, typer.Option(help="official model size: 1, 5, 19, 48 or 317 (millions of parameters)")] = 5,
    dims: Annotated[
        str | None,
        typer.Option(help="enc,mlp,latent instead of --size, e.g. 128,128,64 (dreamer: belief,state,hidden,embedding)"),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, max=10**9, help="environment steps (after action repeat)")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="training seed")] = 1,
    planner: Annotated[
        str | None,
        typer.Option(help="planner that acts during training [default: dream_mpc; bmpc: mppi; dreamer: policy]"),
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="acting planner option key=value")] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="checkpoint [default: checkpoints/<family>/<suite>/<task>-<seed>.pt]"),
    ] = None,
    eval_every: Annotated[int, typer.Option(min=1, help="steps between evaluations")] = 10_000,
    eval_episodes: Annotated[int, typer.Option(min=1, max=MAX_EPISODES, help="episodes per evaluation")] = 10,
    save_every: Annotated[int, typer.Option(min=1, help="steps between saves (resume points)")] = 10_000,
    recent_buffer_mb: Annotated[
        float,
        typer.Option(
            min=0, max=1024, help="MB of the replay buffer's newest episodes saved to commit (.recent.pt; 0: none)"
        ),
    ] = 4.0,
    seed_steps: Annotated[
        int | None, typer.Option(min=0, help="random-action steps [default: max(1000, 5 x episode length)]")
    ] = None,
    reanalyze_interval: Annotated[int, typer.Option(min=1, help="bmpc: lazy reanalyze every k-th update")] = 10,
    reanalyze_sequences: Annotated[
        int, typer.Option(min=1, help="bmpc: batch windows replanned per reanalyze (x horizon observations)")
    ] = 20,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads [default: torch's choice]")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=1_000_000, help="minibatch per update [default: 256; dreamer: 50 chunks] (smaller is faster)"
        ),
    ] = None,
):
    """Train a TD-MPC2, BMPC or Dreamer agent and write its official-format checkpoint; rerunning resumes
    from the last save."""
    from benchctl.machine import set_threads
    from benchctl.paths import writable_file
    from benchctl.planners.base import parse_set, planner_class
    from benchctl.train.trainer import FAMILIES, Trainer, TrainRequest

    set_threads(threads)

    if family not in [*FAMILIES, "dreamer"]:
        raise BenchctlError(f"--family {family}: choose one of {', '.join([*FAMILIES, 'dreamer'])}")
    planner = planner or {"bmpc": "mppi", "dreamer": "policy"}.get(family, "dream_mpc")
    task_obj = _find_task(task, suite)
    planner_class(planner)
    if family == "dreamer":
        if seed_steps is not None:
            raise BenchctlError("--seed-steps: Dreamer seeds with 5 random episodes (Tab. 16); drop the option")
        _train_dreamer(
            task_obj, dims, steps, seed, planner, parse_set(set_ or []), out_path, eval_every, eval_episodes,
            save_every, batch_size, recent_buffer_mb,
        )  # fmt: skip
        return
    dim_tuple = None
    if dims:
        dim_tuple = _parse_dims(
            dims, 3, "give enc,mlp,latent as positive integers, latent a multiple of 8, e.g. 128,128,64"
        )
        if dim_tuple[2] % 8:
            raise BenchctlError(f"--dims {dims}: the latent ({dim_tuple[2]}) must be a multiple of 8 (SimNorm groups)")
    out_file = writable_file(
        "--out", out_path or Path("checkpoints") / family / task_obj.suite / f"{task_obj.name}-{seed}.pt"
    )
    request = TrainRequest(
        task=task_obj,
        family=family,
        out=out_file,
        steps=steps,
        seed=seed,
        size=None if dim_tuple else size,
        dims=(dim_tuple[0], dim_tuple[1], dim_tuple[2]) if dim_tuple else None,
        planner=planner,
        planner_overrides=parse_set(set_ or []),
        seed_steps=seed_steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        save_every=save_every,
        recent_buffer_mb=recent_buffer_mb,
        reanalyze_interval=reanalyze_interval,
        reanalyze_sequences=reanalyze_sequences,
        batch_size=batch_size or 256,
    )
    _run_training(Trainer(request), out_file)


def _parse_dims(text: str, count: int, how: str) -> tuple[int, ...]:
    """'--dims a,b,c' as `count` positive integers, or a one-line error saying `how`."""
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or min(values) <= 0:
        raise BenchctlError(f"--dims {text}: {how}")
    return values


def _run_training(trainer, out_file: Path) -> None:
    """Run a trainer (any family) under the live view; say where the checkpoint and log are."""
    from benchctl.train.files import training_lock

    view = TrainProgress()
    try:
        with training_lock(out_file):
            returns = trainer.run(view)
    finally:
        view.stop()
    out.print(
        f"checkpoint: {out_file} (final evaluation: "
        + ", ".join(f"{k} {v:.1f}" for k, v in returns.items())
        + f"); log: {trainer.log_path}"
    )


def _train_dreamer(
    task, dims, steps, seed, planner, overrides, out_path, eval_every, eval_episodes, save_every, batch_size, recent_mb
) -> None:
    """`benchctl train --family dreamer`: dreamer-pytorch's algorithm, its checkpoint format."""
    from dataclasses import replace

    from benchctl.paths import writable_file
    from benchctl.planners.base import resolve_config
    from benchctl.train.dreamer import DreamerTrainConfig, DreamerTrainer, DreamerTrainRequest

    sizes = (200, 30, 200, 1024)
    if dims:
        b, s, h, e = _parse_dims(
            dims, 4, "Dreamer takes belief,state,hidden,embedding as positive integers, e.g. 200,30,200,1024"
        )
        sizes = (b, s, h, e)
    resolve_config(planner, overrides)  # a bad --set fails before any work
    config = DreamerTrainConfig() if batch_size is None else replace(DreamerTrainConfig(), batch_size=batch_size)
    out_file = writable_file(
        "--out", out_path or Path("checkpoints") / "dreamer" / task.suite / f"{task.name}-{seed}.pt"
    )
    trainer = DreamerTrainer(
        DreamerTrainRequest(
            task=task,
            out=out_file,
            steps=steps,
            seed=seed,
            sizes=sizes,
            planner=planner,
            planner_overrides=overrides,
            config=config,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            save_every=save_every,
            recent_buffer_mb=recent_mb,
        )
    )
    _run_training(trainer, out_file)


@app.command("queue")
def queue_command(
    file: Annotated[Path | None, typer.Option(help="queue file [default: checkpoints/queue.toml]")] = None,
    status: Annotated[bool, typer.Option("--status", help="show where each job stands and exit")] = False,
):
    """Run the training queue: its jobs one at a time, at low priority (nice 19, 1 thread); rerun to continue.
    Several runners share one queue: each skips the jobs another is training."""
    import os
    import subprocess

    from benchctl.train.files import is_training
    from benchctl.train.queue import QUEUE_FILE, load_queue

    jobs = load_queue(file or QUEUE_FILE)
    if status:
        out.print(_queue_table(jobs))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for job in jobs:
        done = job.steps_done()
        if done >= job.steps:
            out.print(f"{job.label}: done ({done:,} of {job.steps:,} steps)")
            continue
        if is_training(job.out):
            out.print(f"{job.label}: being trained by another runner (at {done:,} of {job.steps:,} steps); next job")
            continue
        out.print(f"{job.label}: training from step {done:,} to {job.steps:,} (nice 19, 1 thread)")
        code = subprocess.call(
            [sys.executable, "-m", "benchctl", "train", *job.args, "--threads", "1"],
            env=env,
            preexec_fn=lambda: os.nice(19),  # the machine's other work goes first
        )
        if code in (INTERRUPTED, -2):  # Ctrl-C reached the job too
            raise typer.Exit(INTERRUPTED)
        if code != 0:
            err.print(f"[yellow]warning:[/yellow] {job.label} stopped with exit code {code}; next job")
    out.print(f"queue: {sum(j.steps_done() >= j.steps for j in jobs)} of {len(jobs)} jobs done")


def _queue_table(jobs) -> Table:
    from benchctl.train.queue import job_status

    table = Table(title="benchctl queue: where each job stands (from its resume file and training log)")
    for column in ("job", "steps saved", "state", "last evaluation (mean return)", "steps/h", "to go"):
        table.add_column(column, justify="right" if column in ("steps saved", "steps/h", "to go") else "left")
    for st in map(job_status, jobs):
        state = "done" if st.done >= st.job.steps else "training" if st.training else "waiting"
        last = "-"
        if st.last_eval:
            scores = {k: v for k, v in st.last_eval.items() if k != "step"}
            returns = ", ".join(
                f"{k} {v:.1f}" + (f" ({scores[k + '.success']:.0%} success)" if k + ".success" in scores else "")
                for k, v in scores.items()
                if not k.endswith(".success")
            )
            last = f"{returns} at {int(st.last_eval['step']):,}"
        left = max(0, st.job.steps - st.done)
        to_go = "-" if not left or not st.steps_per_hour else f"{left / st.steps_per_hour:.1f} h"
        speed = f"{st.steps_per_hour:,.0f}" if st.steps_per_hour else "-"
        table.add_row(st.job.label, f"{st.done:,} of {st.job.steps:,}", state, last, speed, to_go)
    return table


DEFAULT_PENDULUM = Path("checkpoints/tdmpc2/pendulum/Pendulum-v1-1.pt")


@app.command("ship")
def ship_command(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint under checkpoints/ written by benchctl train")],
    episodes: Annotated[int, typer.Option(min=1, max=MAX_EPISODES, help="evaluation episodes per planner")] = 10,
    out_dir: Annotated[Path, typer.Option("--out", help="results folder of the measurement")] = Path("results"),
):
    """Measure a trained agent's returns (policy, mppi, dream_mpc) and write its entry in checkpoints/manifest.toml."""
    from benchctl import shipped

    shipment = shipped.prepare(checkpoint, episodes, out_dir)
    results = _run_eval(shipment.request, RichReporter())
    entry, manifest = shipped.record(shipment, results)
    out.print(_summary(results))
    rates = "".join(f", {k} success {v:.0%}" for k, v in entry.success.items())
    out.print(f"{entry.path}: " + ", ".join(f"{k} {v}" for k, v in entry.returns.items()) + rates + f" -> {manifest}")


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
            horizons=tuple(int(h) for h in _csv(horizons)),
            samples=samples,
            states=states,
            seeds=tuple(_seeds(seeds)),
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
        sizes = [int(v) for v in _csv(size)] if not checkpoint else []
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
        sweeps=[latency.check_sweep(s) for s in (sweep or [])],
        dtype=_check_dtype(dtype),
    )
    with err.status("timing planners..."):
        result = latency.run_profile(request)
    rows, sweep_rows = result["rows"], result["sweeps"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile.json").write_text(json.dumps(result, indent=1))
    figures = [latency_bars(rows, out_dir)] + ([sweep_lines(sweep_rows, out_dir)] if sweep_rows else [])
    table = Table(title=f"planning latency per step: {result['machine']} ({calls} steps after warm-up)")
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
    --verify, the largest relative error per output against an archive (exit 1 above 1e-4)."""
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
    """Compare every output of `archive` with `model`'s; exit 1 above the tolerance."""
    from benchctl.agents.verify import TOLERANCE
    from benchctl.agents.verify import verify as run_verify

    checks = run_verify(model, archive)
    result = Table(title=f"outputs against {archive} (max |ours - theirs| / max |theirs|)")
    for col in ("output", "shape", "relative error", ""):
        result.add_column(col, justify="left" if col == "output" else "right")
    for c in checks:
        result.add_row(c.output, str(c.shape), f"{c.error:.2e}", "ok" if c.ok else "[red]FAIL[/red]")
    out.print(result)
    worst = max(checks, key=lambda c: c.error)
    if not worst.ok:
        err.print(
            f"{worst.output} differs by {worst.error:.2e} (> {TOLERANCE:g}): the model does not reproduce the archive"
        )
        raise typer.Exit(1)
    out.print(f"all {len(checks)} outputs within {TOLERANCE:g} (largest: {worst.output}, {worst.error:.2e})")


def main() -> None:
    """Console entry point: bad input is one line on stderr and exit code 2, never a traceback.

    Only typer's public names are caught: typer >= 0.29 carries its own click, so `click` is not
    importable on a fresh install.
    """
    keep_freed_memory()
    try:
        code = app(standalone_mode=False)  # outside standalone mode, typer returns typer.Exit's code
        if isinstance(code, int) and code:
            sys.exit(code)
    except BenchctlError as exc:
        for note in exc.notes:
            err.print(note, markup=False, highlight=False)
        _fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted: finished work is saved; rerun the same command to resume", markup=False)
        sys.exit(INTERRUPTED)
    except typer.TyperException as exc:  # usage errors: unknown option, bad or missing value
        message = exc.format_message()
        if not message:  # no arguments: the help was printed
            sys.exit(exc.exit_code)
        _fail(f"{message} (see --help)")
    except OSError as exc:  # a path the user gave: read-only, a file where a folder belongs, ...
        _fail(_os_message(exc))


INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"benchctl: error: {' '.join(message.split())}", markup=False)
    sys.exit(code)


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; choose a writable folder (e.g. --out results) or fix its permissions"


if __name__ == "__main__":
    main()
