"""`benchctl train`, `benchctl queue` and `benchctl ship`: train agents, run the background queue, measure
and record shipped agents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from benchctl.cli.console import (
    INTERRUPTED,
    MAX_EPISODES,
    app,
    ctrl_c_remembered,
    err,
    out,
    progress_bar,
)
from benchctl.cli.evaluation import RichReporter, run_eval, summary_table
from benchctl.errors import BenchctlError, unknown


class TrainProgress:
    """Live training view: a step bar, the latest episode and losses, evaluations as they come."""

    def __init__(self):
        self.view = progress_bar("steps")
        self.bar = None
        self.interrupted = False  # Ctrl-C was pressed (`ctrl_c_remembered` sets it)

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
        if self.interrupted:  # a Ctrl-C whose KeyboardInterrupt was lost: stop at this episode's end
            raise KeyboardInterrupt

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
    eval_episodes: Annotated[
        int, typer.Option(min=0, max=MAX_EPISODES, help="episodes per evaluation (0: none, train only)")
    ] = 10,
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
    collect_interval: Annotated[
        int | None,
        typer.Option(min=1, max=1_000_000, help="dreamer: updates per collected episode [default: 100, Tab. 16]"),
    ] = None,
    start_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="continue another run's checkpoint (its last save: weights, optimizers, step, replay buffer and "
            "log) under this run's --out, e.g. acting with another --planner; a checkpoint without benchctl's "
            "resume file (an official agent) gives a fresh run its weights; used until --out's first save",
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
    if collect_interval is not None and family != "dreamer":
        raise BenchctlError(
            f"--collect-interval: {family} updates once per environment step; the option is Dreamer's, drop it"
        )
    if family == "dreamer":
        if start_from is not None:
            raise BenchctlError("--from: Dreamer's training continues its own --out only; drop the option")
        if seed_steps is not None:
            raise BenchctlError("--seed-steps: Dreamer seeds with 5 random episodes (Tab. 16); drop the option")
        _train_dreamer(
            task_obj, dims, steps, seed, planner, parse_set(set_ or []), out_path, eval_every, eval_episodes,
            save_every, batch_size, recent_buffer_mb, collect_interval,
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
        start_from=start_from,
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
        with training_lock(out_file), ctrl_c_remembered(view):
            returns = trainer.run(view)
    finally:
        view.stop()
    final = ", ".join(f"{k} {v:.1f}" for k, v in returns.items()) or "none, --eval-episodes 0"
    out.print(f"checkpoint: {out_file} (final evaluation: {final}); log: {trainer.log_path}")


def _train_dreamer(
    task,
    dims,
    steps,
    seed,
    planner,
    overrides,
    out_path,
    eval_every,
    eval_episodes,
    save_every,
    batch_size,
    recent_mb,
    collect_interval,
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
    given = {"batch_size": batch_size, "collect_interval": collect_interval}
    config = replace(DreamerTrainConfig(), **{k: v for k, v in given.items() if v is not None})
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
    nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="added to the jobs' niceness: 19 lets all other work go first, 0 trains at the runner's priority",
        ),
    ] = 19,
):
    """Run the training queue: its jobs one at a time, at low priority (nice 19 unless --nice, 1 thread); rerun
    to continue. Several runners share one queue: each skips the jobs another is training. The file is read again
    after each job, so jobs added or extended meanwhile are run too."""
    import os
    import subprocess

    from benchctl.train.files import is_training
    from benchctl.train.queue import QUEUE_FILE, load_queue

    path = file or QUEUE_FILE
    jobs = load_queue(path)
    if status:
        out.print(_queue_table(jobs))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    said: set[tuple[Path, str]] = set()  # each skip is reported once, not at every reading of the file
    failed: set[Path] = set()  # jobs that stopped without progress in this run are not started again

    def next_job(jobs):
        """The first job to train now and its saved steps; each skipped job is reported once per state."""
        for job in jobs:
            if job.out in failed:
                continue
            done = job.steps_done()
            if done >= job.steps:
                state, why = "done", f"done ({done:,} of {job.steps:,} steps)"
            elif is_training(job.out):
                state, why = "busy", f"being trained by another runner (at {done:,} of {job.steps:,} steps); next job"
            else:
                return job, done
            if (job.out, state) not in said:
                said.add((job.out, state))
                out.print(f"{job.label}: {why}")
        return None, 0

    while (picked := next_job(jobs))[0] is not None:
        job, done = picked
        job_nice = min(19, os.nice(0) + nice)  # what the job runs at: the runner's own niceness plus --nice
        out.print(f"{job.label}: training from step {done:,} to {job.steps:,} (nice {job_nice}, 1 thread)")
        code = subprocess.call(
            [sys.executable, "-m", "benchctl", "train", *job.args, "--threads", "1"],
            env=env,
            preexec_fn=lambda: os.nice(nice),  # 19 (the default): the machine's other work goes first
        )
        if code in (INTERRUPTED, -2):  # Ctrl-C reached the job too
            raise typer.Exit(INTERRUPTED)
        if code != 0:
            err.print(f"[yellow]warning:[/yellow] {job.label} stopped with exit code {code}; next job")
        if code != 0 or job.steps_done() <= done:
            failed.add(job.out)
        jobs = load_queue(path)  # jobs added or extended while this one ran
    out.print(f"queue: {sum(j.steps_done() >= j.steps for j in jobs)} of {len(jobs)} jobs done")


def _queue_table(jobs) -> Table:
    from benchctl.train.queue import job_status

    table = Table(title="benchctl queue: where each job stands (from its resume file and training log)")
    for column in ("job", "steps saved", "state", "last evaluation (mean return)", "steps/h", "to go"):
        table.add_column(column, justify="right" if column in ("steps saved", "steps/h", "to go") else "left")
    for st in map(job_status, jobs):
        state = "done" if st.done >= st.job.steps else "training" if st.training else "waiting"
        last = "-"
        if st.last_eval_step is not None:
            scores = st.last_eval
            returns = ", ".join(
                f"{k} {v:.1f}" + (f" ({scores[k + '.success']:.0%} success)" if k + ".success" in scores else "")
                for k, v in scores.items()
                if not k.endswith(".success")
            )
            last = f"{returns} at {st.last_eval_step:,}"
        left = max(0, st.job.steps - st.done)
        to_go = "-" if not left or not st.steps_per_hour else f"{left / st.steps_per_hour:.1f} h"
        speed = f"{st.steps_per_hour:,.0f}" if st.steps_per_hour else "-"
        table.add_row(st.job.label, f"{st.done:,} of {st.job.steps:,}", state, last, speed, to_go)
    return table


@app.command("ship")
def ship_command(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint under checkpoints/ written by benchctl train")],
    episodes: Annotated[int, typer.Option(min=1, max=MAX_EPISODES, help="evaluation episodes per planner")] = 10,
    out_dir: Annotated[Path, typer.Option("--out", help="results folder of the measurement")] = Path("results"),
):
    """Measure a trained agent's returns (policy, mppi, dream_mpc) and write its entry in checkpoints/manifest.toml."""
    from benchctl import shipped

    shipment = shipped.prepare(checkpoint, episodes, out_dir)
    results = run_eval(shipment.request, RichReporter())
    entry, manifest = shipped.record(shipment, results)
    out.print(summary_table(results))
    rates = "".join(f", {k} success {v:.0%}" for k, v in entry.success.items())
    out.print(f"{entry.path}: " + ", ".join(f"{k} {v}" for k, v in entry.returns.items()) + rates + f" -> {manifest}")
