"""Where cells run: in this process, in a pool of local processes, on a Ray cluster, or as a Slurm job
array (submitit). One interface: `engine.run(jobs, on_record, on_failure)`.

A job is one cell's missing episodes (`CellJob`: everything a fresh process needs, picklable). Every
engine runs the same `run_cell`; the results tree is the same whatever ran it, and so is resuming:
a cell file holds every finished episode (one fsynced line each), so a rerun after any crash runs
only what is missing. Workers of the local pool and of Slurm append to their cell files themselves
(a shared filesystem) and the driver follows the files; Ray workers stream their records to the
driver, which appends them (no shared filesystem needed). A job whose worker dies is reported and
run once more (its finished episodes are kept); a second failure is reported and the cell is left
for a rerun.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch

from benchctl import machine
from benchctl.errors import BenchctlError
from benchctl.evaluate import episode_seed, lower_precision, run_episodes
from benchctl.store import open_cell, read_cell
from benchctl.suites import Task, make_env

RETRIES = 1  # a failed job runs once more


@dataclass(frozen=True)
class CellJob:
    """One cell's episodes to run, self-contained for another process or machine."""

    checkpoint: str
    task: Task
    seed: int  # the checkpoint's seed (the cell's)
    planner: str
    config: dict[str, Any]  # the resolved planner config (config_dict)
    path: str  # the cell file
    header: dict[str, Any]
    episodes: tuple[int, ...]  # episode indices the cell lacked when the job was made
    device: str = "cpu"
    augment: bool = True
    dtype: str = "float32"  # planning precision (evaluate.precision)
    batch_episodes: int = 1  # episodes run in lockstep, one planner call per step for all (evaluate.run_episodes)
    threads: int | None = None  # torch threads in the worker (None: torch's choice)
    label: str = ""


OnRecord = Callable[[CellJob, dict], None]
OnFailure = Callable[[CellJob, str, bool], None]  # (job, why, will it be retried)

_MODELS: dict[tuple[str, str, str], Any] = {}  # per process: a worker running several cells of one agent loads it once


def _model(job: CellJob):
    from benchctl.agents import load_checkpoint, planning_discount

    key = (job.checkpoint, job.device, job.dtype)
    if key not in _MODELS:
        _MODELS.clear()  # one agent at a time: cells arrive grouped by agent
        _MODELS[key] = lower_precision(load_checkpoint(job.checkpoint, device=job.device), job.dtype)
    model = _MODELS[key]
    model.discount = planning_discount(model.family, job.task.discount)
    if hasattr(model, "augment"):  # TD-MPC2 pixel agents' random shift
        model.augment = job.augment
    return model


def run_cell(job: CellJob, emit: Callable[[dict], None] | None = None, write: bool = True) -> int:
    """Run the job's episodes its cell file does not hold yet, in index order, `batch_episodes` at a
    time in lockstep. Each record is appended to the cell file (`write`) before `emit` sees it (a
    lockstep group's records when the group ends). Returns how many episodes ran."""
    from benchctl.planners.base import make_planner, planner_class

    if job.threads is not None:
        torch.set_num_threads(job.threads)
    cell = open_cell(Path(job.path), job.header) if write else None
    todo = [i for i in job.episodes if cell is None or i not in cell.done]
    if not todo:
        return 0
    model = _model(job)
    planner = make_planner(job.planner, model, planner_class(job.planner).Config(**job.config))
    size = max(1, min(job.batch_episodes, len(todo)))
    envs = [make_env(job.task, seed=job.seed, family=model.family) for _ in range(size)]
    device = torch.device(job.device)
    for first in range(0, len(todo), size):
        group = todo[first : first + size]
        seeds = [episode_seed(job.seed, index) for index in group]
        results = run_episodes(envs[: len(group)], planner, seeds, device, job.dtype)
        load = machine.load_average()
        for index, seed, result in zip(group, seeds, results, strict=True):
            record = {"type": "episode", "episode": index, "env_seed": seed} | result
            record["load_avg"] = load
            if cell is not None:
                cell.append(record)
            if emit is not None:
                emit(record)
    return len(todo)


class Engine(Protocol):
    name: str

    def run(self, jobs: list[CellJob], on_record: OnRecord, on_failure: OnFailure) -> None: ...


class InlineEngine:
    """Cells one after another in this process (the default, `--jobs 1`)."""

    name = "inline"

    def run(self, jobs: list[CellJob], on_record: OnRecord, on_failure: OnFailure) -> None:
        for job in jobs:
            run_cell(job, emit=partial(on_record, job))


class _FileFollower:
    """The driver's view of cells that workers append to: new complete records, each reported once."""

    def __init__(self, jobs: list[CellJob]):
        self.seen: dict[str, set[int]] = {}
        for job in jobs:
            path = Path(job.path)
            self.seen[job.path] = (
                {int(e["episode"]) for e in read_cell(path, strict=False)[1]} if path.exists() else set()
            )

    def poll(self, jobs: list[CellJob], on_record: OnRecord) -> None:
        for job in jobs:
            path = Path(job.path)
            if not path.exists():
                continue
            for record in read_cell(path, strict=False)[1]:  # a line being written is a torn tail: skipped
                index = int(record["episode"])
                if index not in self.seen[job.path]:
                    self.seen[job.path].add(index)
                    on_record(job, record)

    def missing(self, job: CellJob) -> tuple[int, ...]:
        return tuple(i for i in job.episodes if i not in self.seen[job.path])


def _retry_or_fail(job: CellJob, why: str, attempts: dict[str, int], on_failure: OnFailure) -> bool:
    """Count a failure of `job`; True when it runs again."""
    attempts[job.path] = attempts.get(job.path, 0) + 1
    again = attempts[job.path] <= RETRIES
    on_failure(job, why, again)
    return again


class LocalEngine:
    """`--jobs N`: up to N cells at once, each in a fresh process of its own (spawned: nothing shared
    with the driver, a crash takes only its cell). Workers append to their cell files; the driver
    follows the files for progress. A worker that dies (killed, out of memory, an error) is reported
    and its cell runs once more, skipping the episodes it finished."""

    name = "local"

    def __init__(self, workers: int, poll_seconds: float = 0.5):
        if workers < 1:
            raise BenchctlError(f"--jobs {workers}: give 1 or more worker processes")
        self.workers, self.poll_seconds = workers, poll_seconds

    def run(self, jobs: list[CellJob], on_record: OnRecord, on_failure: OnFailure) -> None:
        follower, attempts = _FileFollower(jobs), dict[str, int]()
        context = multiprocessing.get_context("spawn")
        queue: list[CellJob] = list(jobs)
        running: dict[Any, tuple[CellJob, Any]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    job = _on_a_gpu(queue.pop(0), [j for j, _ in running.values()])
                    if job.threads is None:  # the workers share the CPUs instead of each taking all of them
                        job = replace(job, threads=max(1, len(machine.cpus()) // self.workers))
                    receive, send = context.Pipe(duplex=False)
                    process = context.Process(target=_local_worker, args=(job, send), daemon=True)
                    process.start()
                    send.close()
                    running[process] = (job, receive)
                time.sleep(self.poll_seconds)
                follower.poll([job for job, _ in running.values()], on_record)
                for process in [p for p in running if not p.is_alive()]:
                    job, receive = running.pop(process)
                    process.join()
                    message = _message(receive)
                    follower.poll([job], on_record)
                    if process.exitcode == 0 and message is None:
                        continue
                    why = message or f"its worker process died (exit code {process.exitcode})"
                    if _retry_or_fail(job, why, attempts, on_failure):
                        queue.append(job)
        finally:
            for process in running:  # Ctrl-C or an error in the driver: stop the workers now
                process.kill()
                process.join()
        follower.poll(jobs, on_record)


def _on_a_gpu(job: CellJob, running: list[CellJob]) -> CellJob:
    """`--device cuda` with local workers: each worker gets the visible GPU with the fewest cells."""
    if job.device != "cuda" or torch.cuda.device_count() < 2:
        return job
    load = [sum(j.device == f"cuda:{i}" for j in running) for i in range(torch.cuda.device_count())]
    return replace(job, device=f"cuda:{load.index(min(load))}")


def _message(receive) -> str | None:
    """The one line a failed worker sent, or None (it finished, or died before it could say)."""
    try:
        return receive.recv() if receive.poll() else None
    except EOFError:  # the worker closed its end without a word
        return None
    finally:
        receive.close()


def _local_worker(job: CellJob, send) -> None:
    """A local worker's process: run the cell; an exception goes back to the driver as one line."""
    try:
        run_cell(job)
    except BaseException as exc:  # noqa: BLE001 - whatever stops the cell is the driver's to report
        send.send(f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise SystemExit(1) from None


class RayEngine:
    """`--executor ray --address ADDR`: one Ray task per cell on an existing cluster (`auto`: the one
    this machine belongs to), `--gpus-per-worker` GPUs each (fractions share a GPU). Workers stream
    records to the driver through a Ray queue; the driver appends them to the cell files."""

    name = "ray"

    def __init__(self, address: str, gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BenchctlError('--executor ray needs Ray: pip install -e ".[ray]"') from None
        self.address, self.gpus, self.cpus = address, gpus_per_worker, cpus_per_worker

    def run(self, jobs: list[CellJob], on_record: OnRecord, on_failure: OnFailure) -> None:
        import ray
        from ray.util.queue import Empty, Queue

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BenchctlError(
                    f"--address {self.address}: no Ray cluster there ({exc}); start one with `ray start --head`"
                ) from None
        records = Queue()
        remote = ray.remote(_ray_cell).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        cells = {job.path: open_cell(Path(job.path), job.header) for job in jobs}
        attempts: dict[str, int] = {}

        def drain() -> None:
            while True:
                try:
                    path, record = records.get_nowait()
                except Empty:
                    return
                cell = cells[path]
                if int(record["episode"]) in cell.done:  # a retried job's repeat of a delivered episode
                    continue
                cell.append(record)
                on_record(next(j for j in jobs if j.path == path), record)

        running = {remote.remote(job, records): job for job in jobs}
        try:
            while running:
                ready, _ = ray.wait(list(running), timeout=0.5, num_returns=1)
                drain()
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - Ray wraps worker deaths and task errors alike
                        drain()
                        left = tuple(i for i in job.episodes if i not in cells[job.path].done)
                        if left and _retry_or_fail(job, _ray_reason(exc), attempts, on_failure):
                            retry = replace(job, episodes=left)
                            running[remote.remote(retry, records)] = retry
            drain()
        finally:
            for ref in running:  # Ctrl-C or an error in the driver: the cluster stops this run's tasks
                ray.cancel(ref, force=True)


def _ray_reason(exc: Exception) -> str:
    """One line for a failed Ray task: the error inside the task, or how its worker died."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if type(cause).__name__ in ("WorkerCrashedError", "ActorDiedError", "NodeDiedError") or not text:
        return f"its worker process died ({type(cause).__name__})"
    return f"{type(cause).__name__}: {text}"


def _ray_cell(job: CellJob, records) -> int:
    """A Ray task: run the cell without touching its file, each record sent to the driver."""
    return run_cell(job, emit=lambda record: records.put((job.path, record)), write=False)


def run_cells(jobs: list[CellJob]) -> int:
    """One Slurm array task: several cells of one agent in a row (the agent loads once)."""
    return sum(run_cell(job) for job in jobs)


class SlurmEngine:
    """`--executor slurm --partition P --time MIN`: a submitit job array, one task per agent (its cells
    in a row, so the agent loads once), each task on one node with `--gpus-per-worker` GPUs. Workers
    append to their cell files on the shared filesystem; the driver follows them and waits. Without
    Slurm (`cluster="local"`) submitit runs the same array as local processes (the tests do)."""

    name = "slurm"

    def __init__(
        self,
        folder: Path,
        partition: str | None,
        minutes: int,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: int = 1,
        cluster: str | None = None,
        poll_seconds: float = 2.0,
    ):
        try:
            import submitit
        except ImportError:
            raise BenchctlError('--executor slurm needs submitit: pip install -e ".[slurm]"') from None
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params: dict[str, Any] = {"timeout_min": minutes, "cpus_per_task": cpus_per_worker, "tasks_per_node": 1}
        if self.executor.cluster == "slurm":
            if not partition:
                raise BenchctlError("--executor slurm: name the partition with --partition P")
            params |= {"slurm_partition": partition, "slurm_gpus_per_task": int(gpus_per_worker) or None}
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self.poll_seconds = poll_seconds

    def run(self, jobs: list[CellJob], on_record: OnRecord, on_failure: OnFailure) -> None:
        follower, attempts = _FileFollower(jobs), dict[str, int]()
        groups: dict[str, list[CellJob]] = {}
        for job in jobs:
            groups.setdefault(job.checkpoint, []).append(job)
        pending = list(groups.values())
        while pending:
            submitted = list(zip(self.executor.map_array(run_cells, pending), pending, strict=True))
            pending = []
            try:
                while any(not j.done() for j, _ in submitted):
                    time.sleep(self.poll_seconds)
                    follower.poll(jobs, on_record)
            except BaseException:  # Ctrl-C: the array's tasks are cancelled (scancel), finished episodes stay
                for slurm_job, _ in submitted:
                    slurm_job.cancel(check=False)
                raise
            follower.poll(jobs, on_record)
            for slurm_job, group in submitted:
                error = slurm_job.exception()
                if error is None:
                    continue
                detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                why = f"Slurm job {slurm_job.job_id}: {detail}"
                left = [replace(j, episodes=follower.missing(j)) for j in group]
                if _retry_or_fail(group[0], why, attempts, on_failure):
                    pending.append([j for j in left if j.episodes])


def make_engine(
    executor: str,
    jobs: int = 1,
    address: str = "auto",
    gpus_per_worker: float = 0.0,
    partition: str | None = None,
    minutes: int = 60,
    folder: Path | None = None,
    cluster: str | None = None,
) -> Engine:
    """The engine `--executor` names (`local` with `--jobs 1` runs in this process)."""
    if executor == "local":
        return InlineEngine() if jobs == 1 else LocalEngine(jobs)
    if executor == "ray":
        return RayEngine(address, gpus_per_worker)
    if executor == "slurm":
        return SlurmEngine(folder or Path(".submitit"), partition, minutes, gpus_per_worker, cluster=cluster)
    raise BenchctlError(f"--executor {executor}: choose local, ray or slurm")
