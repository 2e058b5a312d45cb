"""`benchctl eval` and `benchctl sweep`: run cells with a live view, summarize their returns and latency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from benchctl.cli.console import (
    INTERRUPTED,
    app,
    ctrl_c_remembered,
    err,
    fail,
    out,
    parse_seeds,
    progress_bar,
    split_csv,
)
from benchctl.cli.options import (
    Address_,
    Augment_,
    BatchEpisodes_,
    Checkpoint_,
    Checkpoints_,
    Device_,
    Dtype_,
    Episodes_,
    Executor_,
    Gpus_,
    Jobs_,
    Out_,
    Partition_,
    Planners_,
    Seeds_,
    Set_,
    Suite_,
    Task_,
    Tasks_,
    Threads_,
    Time_,
)
from benchctl.errors import BenchctlError

if TYPE_CHECKING:  # execute imports torch: loaded only by the commands that run agents
    from benchctl.execute import Eta


class RichReporter:
    """Progress bar over episodes with an honest ETA (per-planner step rates); warnings above it."""

    def __init__(self):
        self.progress = progress_bar("episodes", eta_field=True)
        self.bar = None
        self.total = self.done = 0
        self.eta = None
        self.interrupted = False  # Ctrl-C was pressed (`ctrl_c_remembered` sets it)

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
        if self.interrupted:  # a Ctrl-C whose KeyboardInterrupt was lost: stop now, the episode is saved
            raise KeyboardInterrupt

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.progress.stop()
            self.bar = None


def run_eval(request, reporter: RichReporter, engine=None):
    """execute.run with Ctrl-C turned into what a user needs: what was kept, how to resume, exit 130."""
    from benchctl import execute

    try:
        with ctrl_c_remembered(reporter):
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


def summary_table(results) -> Table:
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


def check_dtype(dtype: str, device: str) -> str:
    """`dtype` if it is one of the planning precisions, with a warning where this CPU only emulates it."""
    from benchctl.evaluate import DTYPES
    from benchctl.machine import bfloat16_warning

    if dtype not in DTYPES:
        raise BenchctlError(f"--dtype {dtype}: choose {' or '.join(DTYPES)}")
    warning = bfloat16_warning(dtype, device)
    if warning is not None:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", markup=True, highlight=False)
    return dtype


def _dtype_run(default_run: str, dtype: str, device: str) -> str:
    """bfloat16 cells are their own run ("tdmpc2-bfloat16/mppi" in reports)."""
    return default_run if check_dtype(dtype, device) == "float32" else f"{default_run}-{dtype}"


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
    seed_list = parse_seeds(seeds) or None
    agents, notices = execute.resolve_agents(suite_obj, checkpoints, checkpoint, task, split_csv(tasks), seed_list)
    for line in notices:
        err.print(line, markup=False, highlight=False)
    writable_dir("--out", out_dir)
    return execute.EvalRequest(suite_obj, agents, planners, episodes, device, out_dir, run or default_run)


def _finish_eval(request, engine=None) -> None:
    from benchctl.execute import IncompleteRun

    try:
        results = run_eval(request, RichReporter(), engine)
    except IncompleteRun as exc:  # what finished, then the cells to rerun: exit 1
        out.print(summary_table(exc.results))
        fail(str(exc), code=1)
    out.print(summary_table(results))
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
        _dtype_run(default_run, dtype, device),
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
        _dtype_run("sweep-{family}", dtype, device),
    )  # fmt: skip
    _how_episodes_run(request, threads, batch_episodes, dtype, augment)
    _finish_eval(request, _engine(executor, jobs, address, gpus_per_worker, partition, minutes, out_dir, device))
