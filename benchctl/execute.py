"""Fan (task, seed, planner) cells out and run them in-process, resuming what is on disk.

A cell = one checkpoint on one task, one planner with a resolved config, one seed, N episodes.
Cells sharing a checkpoint share one loaded agent.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import benchctl
from benchctl import machine
from benchctl.agents import (
    CheckpointInfo,
    describe_checkpoint,
    planner_defaults,
    planning_discount,
)
from benchctl.engines import CellJob, Engine, InlineEngine
from benchctl.errors import BenchctlError
from benchctl.planners.base import config_dict, parse_set, planner_class, resolve_config
from benchctl.store import CellFile, cell_path, open_cell, point_label, read_cell
from benchctl.suites import Suite, Task, make_env

DEFAULT_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class AgentSpec:
    """One checkpoint to evaluate on one task; `seed` is its training seed (the cell's seed)."""

    task: Task
    seed: int
    checkpoint: Path


@dataclass
class PlannerSpec:
    """A planner with its resolved config; `point` is set for a sweep point (the swept options and
    their values) with `grid` the sweep it belongs to; `match` says why a compute-matched eval chose it."""

    name: str
    config: Any
    point: dict[str, Any] | None = None
    grid: dict[str, list] | None = None
    match: dict[str, Any] | None = None
    # options the user chose (--set, a sweep point, a match): an agent family's defaults never replace them
    chosen: frozenset[str] | None = frozenset()  # None: every option is chosen

    def for_family(self, family: str) -> PlannerSpec:
        """This planner with `family`'s settings for every option the user left unset (Dreamer: Dream-MPC
        Tab. 16), checked as `--set` values are; the spec itself where the family has none."""
        if self.chosen is None:
            return self
        defaults = {k: v for k, v in planner_defaults(family, self.name).items() if k not in self.chosen}
        if not defaults:
            return self
        overrides = {k: str(v) for k, v in config_dict(self.config).items() if k in self.chosen}
        config = resolve_config(self.name, {k: str(v) for k, v in defaults.items()} | overrides)
        return dataclasses.replace(self, config=config)

    @property
    def config_dict(self) -> dict:
        return config_dict(self.config)

    @property
    def label(self) -> str:
        return point_label(self.name, self.point or {})


@dataclass
class EvalRequest:
    suite: Suite
    agents: list[AgentSpec]
    planners: list[PlannerSpec]
    episodes: int = 10
    device: str = "cpu"
    out: Path = Path("results")
    run: str | None = None  # default: the agent family; "{family}" in it is replaced by the family
    augment: bool = True  # pixel agents: the official evaluation-time random shift (planner-independent)
    dtype: str = "float32"  # precision of the model's matrix products while planning (evaluate.precision)
    batch_episodes: int = 1  # episodes of a cell run in lockstep (evaluate.run_episodes)
    threads: int | None = None  # torch threads per worker (--threads); None: the engine's share of the CPUs


class Reporter(Protocol):
    def start(self, total: int, done: int, eta: Eta) -> None: ...
    def cell(self, label: str) -> None: ...
    def episode(self, label: str, record: dict) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass
class Eta:
    """Remaining wall time of a run, from the seconds per environment step each planner has shown.

    Planners differ a thousandfold per step (the policy vs MPPI), so a rate averaged over
    episodes is far off; while a planner with work left has not finished an episode, the
    remaining time is unknown (None) rather than guessed.
    """

    steps_left: dict[str, int]  # planner -> environment steps still to run
    seconds: dict[str, float] = field(default_factory=dict)  # planner -> wall seconds of its episodes
    steps_done: dict[str, int] = field(default_factory=dict)  # planner -> steps those episodes took

    def finished(self, planner: str, planned_steps: int, record: dict) -> None:
        self.steps_left[planner] -= planned_steps
        self.seconds[planner] = self.seconds.get(planner, 0.0) + record["wall_s"]
        self.steps_done[planner] = self.steps_done.get(planner, 0) + max(1, record["length"])

    def remaining(self) -> float | None:
        total = 0.0
        for planner, left in self.steps_left.items():
            if left <= 0:
                continue
            if planner not in self.seconds:
                return None
            total += left * self.seconds[planner] / self.steps_done[planner]
        return total


# -- building a request -------------------------------------------------------------------
def find_checkpoints(
    directory: Path, suite: Suite, tasks: list[Task], seeds: list[int]
) -> tuple[list[AgentSpec], list[tuple[str, str]]]:
    """Checkpoints in the official naming (any of a task's names): DIR/<task>-<seed>.pt, DIR/dmcontrol/...,
    DIR/<suite>/... (e.g. DIR/metaworld/mw-button-press-1.pt).

    Returns (found, skipped), skipped = [(task, why)] for tasks with no checkpoint at any seed.
    """
    if not directory.is_dir():
        raise BenchctlError(f"--checkpoints {directory}: no such directory; pass a folder of <task>-<seed>.pt files")
    found, skipped = [], []
    for task in tasks:
        hits = []
        for seed in seeds:
            for folder in (directory, directory / "dmcontrol", directory / suite.name):
                paths = [folder / f"{name}-{seed}.pt" for name in (task.name, *task.aliases)]
                path = next((p for p in paths if p.is_file()), None)
                if path:
                    hits.append(AgentSpec(task, seed, path))
                    break
        if hits:
            found.extend(hits)
        else:
            names = "|".join((task.name, *task.aliases))
            skipped.append(
                (
                    task.name,
                    f"no {names}-{{{','.join(map(str, seeds))}}}.pt in {directory} or its dmcontrol/ or {suite.name}/",
                )
            )
    return found, skipped


def resolve_agents(
    suite: Suite,
    checkpoints: Path | None,
    checkpoint: Path | None,
    task: str | None,
    tasks: list[str],
    seeds: list[int] | None,
) -> tuple[list[AgentSpec], list[str]]:
    """The agents an eval runs: one --checkpoint FILE, a --checkpoints DIR of official files, or the
    shipped agents. Returns (agents, notices): notices say which tasks have no agent and how to add one.
    """
    seed_list = seeds or list(DEFAULT_SEEDS)
    notices: list[str] = []
    if checkpoint is not None:
        if checkpoints is not None:
            raise BenchctlError("give either --checkpoint FILE (one agent) or --checkpoints DIR, not both")
        if task is None:
            raise BenchctlError(f"--checkpoint needs --task NAME, one of: {', '.join(suite.tasks)}")
        if not checkpoint.exists():
            raise BenchctlError(f"--checkpoint {checkpoint}: no such file")
        match = re.search(r"-(\d+)$", checkpoint.stem)
        seed = seed_list[0] if seeds else (int(match.group(1)) if match else 1)
        return [AgentSpec(suite.task(task), seed, checkpoint)], notices
    chosen = [suite.task(t) for t in tasks] or list(suite.tasks.values())
    if checkpoints is None:  # the agents shipped in checkpoints/
        from benchctl.shipped import add_command, find_shipped

        agents, missing = find_shipped(chosen, seed_list)
        if missing:
            notices.append(
                f"no shipped agent for {len(missing)} of {len(chosen)} tasks of suite {suite.name!r}; to add one:"
            )
            for t in missing:
                notices += [f"  {t.name}: {add_command(t)}"] + ([f"    {t.note}"] if t.note else [])
        if not agents:
            raise BenchctlError(
                f"no shipped agent for any task of suite {suite.name!r}; train one (see above) or pass "
                "--checkpoints DIR",
                notices,
            )
        return agents, notices
    agents, skipped = find_checkpoints(checkpoints, suite, chosen, seed_list)
    notices += [f"skipped {name}: {why}" for name, why in skipped]
    if not agents:
        raise BenchctlError(
            f"no checkpoint found for any task of suite {suite.name!r}; see the skipped list above", notices
        )
    return agents, notices


def planner_overrides(names: list[str], items: dict[str, str], flag: str = "--set") -> dict[str, dict[str, str]]:
    """Split `key=v` (every planner having that option) and `planner.key=v` (one) items per planner."""
    per_planner: dict[str, dict[str, str]] = {n: {} for n in names}
    for key, value in items.items():
        target, dot, option = key.partition(".")
        if dot:
            if target not in per_planner:
                raise BenchctlError(f"{flag} {key}: planner {target!r} is not among --planner {', '.join(names)}")
            per_planner[target][option] = value
            continue
        owners = [n for n in names if key in {f.name for f in dataclasses.fields(planner_class(n).Config)}]
        if not owners:
            resolve_config(names[0], {key: value}, flag)  # raises the "no option ... did you mean" error
        for n in owners:
            per_planner[n][key] = value
    return per_planner


def resolve_planners(names: list[str], set_items: list[str]) -> list[PlannerSpec]:
    """Planner specs with `--set` applied: `key=v` to every planner having that option, `planner.key=v` to one."""
    names = list(dict.fromkeys(names))
    per_planner = planner_overrides(names, parse_set(set_items))
    return [PlannerSpec(n, resolve_config(n, per_planner[n]), chosen=frozenset(per_planner[n])) for n in names]


def check_device(device: str) -> torch.device:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise BenchctlError(f"--device {device}: choose cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchctlError(f"--device {device}: this machine has no CUDA device visible to torch; use --device cpu")
    return torch.device(device)


def check_fits(agent: AgentSpec, info: CheckpointInfo) -> None:
    """The checkpoint's dims must match the task's env before any episode runs."""
    dims = info.dims
    env = make_env(agent.task, family=info.family)
    env_shape = tuple(getattr(env, "obs_shape", ()))
    if dims.obs_kind == "rgb" and not env_shape:
        raise BenchctlError(
            f"{agent.checkpoint} is a pixel agent (observations {'x'.join(map(str, dims.obs_shape))}), but "
            f"{agent.task.name} in suite {agent.task.suite!r} gives state vectors ({env.obs_dim}); "
            "pass a state-based checkpoint, or use the dmc-pixels suite"
        )
    if dims.obs_kind == "state" and env_shape:
        raise BenchctlError(
            f"{agent.checkpoint} is a state agent (obs {dims.obs_dim}), but {agent.task.name} in suite "
            f"{agent.task.suite!r} gives pixels ({'x'.join(map(str, env_shape))}); pass a pixel checkpoint (obs: rgb)"
        )
    takes = "x".join(map(str, dims.obs_shape)) or str(dims.obs_dim)  # 9x64x64 for pixels, 39 for a vector
    gives = "x".join(map(str, env_shape)) or str(env.obs_dim)
    if (takes, dims.action_dim) != (gives, env.action_dim):
        raise BenchctlError(
            f"{agent.checkpoint} takes obs {takes} / action {dims.action_dim}, but {agent.task.name} has "
            f"obs {gives} / action {env.action_dim}; pass a checkpoint trained on {agent.task.name}"
        )


# -- running ------------------------------------------------------------------------------
def _git_commit() -> str | None:
    try:
        root = Path(benchctl.__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {
        "benchctl": benchctl.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": version("mujoco"),
        "dm_control": version("dm-control"),
        "numpy": version("numpy"),
        "gymnasium": version("gymnasium"),
        "metaworld": version("metaworld"),
        "humanoid_bench": version("humanoid_bench"),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{machine.cpu_name()}, {torch.get_num_threads()} threads"


@dataclass
class CellResult:
    task: str
    planner: str
    seed: int
    path: Path
    episodes: list[dict]
    header: dict


def _header(
    request: EvalRequest,
    agent: AgentSpec,
    spec: PlannerSpec,
    info: CheckpointInfo,
    versions: dict,
    device: torch.device,
) -> dict:
    """Provenance of a cell: everything needed to tell whether two cells are the same experiment."""
    return {
        "type": "header",
        "suite": request.suite.name,
        "task": agent.task.name,
        "seed": agent.seed,
        "planner": spec.name,
        "planner_config": spec.config_dict,
        "planner_effective": planner_class(spec.name).effective_settings(
            spec.config, info.family, info.dims.action_dim
        ),
        **({"sweep": {"grid": spec.grid, "point": spec.point}} if spec.point is not None else {}),
        **({"match": spec.match} if spec.match is not None else {}),
        "checkpoint": str(agent.checkpoint),
        "checkpoint_sha256": info.sha256,
        "family": info.family,
        "model_size": info.model_size,
        "observations": info.dims.obs_kind,  # state or rgb
        # pixel agents: encode() randomly shifts each observation (the official evaluation) unless turned off
        "augment": request.augment if info.dims.obs_kind == "rgb" and info.family != "dreamer" else None,
        "dtype": request.dtype,
        "model_params": info.num_params,
        "dims": info.as_dict()["dims"],
        "discount": planning_discount(info.family, agent.task.discount),
        "episode_length": agent.task.episode_length,
        "action_repeat": agent.task.action_repeat,
        "normalization": agent.task.normalization,
        "device": str(device),
        "device_name": device_name(device),
        "machine": machine.snapshot(),
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(request: EvalRequest, reporter: Reporter, engine: Engine | None = None) -> list[CellResult]:
    """Run every missing episode of every cell on `engine` (default: in this process); finished
    episodes on disk are kept, never rerun.

    Every checkpoint is checked against its task and every cell opened before the first episode, so
    bad input fails fast and the progress bar knows what is done. The cells with episodes missing
    become jobs for the engine; cells of one agent stay together, so a worker loads it once. A cell
    whose worker fails twice is reported and left for a rerun (IncompleteRun at the end).
    """
    device = check_device(request.device)
    engine = engine or InlineEngine()
    versions = _versions()
    cells: list[tuple[AgentSpec, PlannerSpec, CellFile]] = []
    for agent in request.agents:
        info = describe_checkpoint(agent.checkpoint)
        check_fits(agent, info)
        run_name = (request.run or "{family}").replace("{family}", info.family)
        for spec in (spec.for_family(info.family) for spec in request.planners):
            path = cell_path(
                request.out, run_name, request.suite.name, agent.task.name, spec.name, spec.config_dict, agent.seed
            )
            cell = open_cell(path, _header(request, agent, spec, info, versions, device))
            for warning in cell.warnings:
                reporter.warn(warning)
            cells.append((agent, spec, cell))
    wanted = set(range(request.episodes))
    eta = Eta({spec.label: 0 for spec in request.planners})
    jobs, planner_of, history = [], {}, {}
    for agent, spec, cell in cells:
        missing = sorted(wanted - cell.done)
        eta.steps_left[spec.label] = eta.steps_left.get(spec.label, 0) + agent.task.episode_length * len(missing)
        if not missing:
            continue
        job = CellJob(
            checkpoint=str(Path(agent.checkpoint).resolve()),  # workers may start elsewhere
            task=agent.task,
            seed=agent.seed,
            planner=spec.name,
            config=spec.config_dict,
            path=str(Path(cell.path).resolve()),
            header=cell.header,
            episodes=tuple(missing),
            device=request.device,
            augment=request.augment,
            dtype=request.dtype,
            batch_episodes=request.batch_episodes,
            threads=request.threads,
            label=f"{agent.task.name} {spec.label} seed {agent.seed}",
        )
        jobs.append(job)
        planner_of[job.path] = spec.label
        history[job.path] = list(cell.episodes)
    done = sum(len(cell.done & wanted) for _, _, cell in cells)
    reporter.start(len(cells) * request.episodes, done, eta)

    def on_record(job: CellJob, record: dict) -> None:
        eta.finished(planner_of[job.path], job.task.episode_length, record)
        episodes = history[job.path]
        episodes.append(record)
        p50s = np.array([e["latency_ms"]["p50"] for e in episodes])
        p95s = np.array([e["latency_ms"]["p95"] for e in episodes])
        if machine.slow_episodes(p50s, p95s)[-1]:
            reporter.warn(
                f"{job.label} episode {record['episode']}: planning latency p50 {p50s[-1]:.1f} / p95 {p95s[-1]:.1f} "
                f"ms/step against a cell median of {np.median(p50s):.1f}: the machine looks busy "
                f"(load average {record['load_avg']}); the report flags this cell"
            )
        if "failed" in record:
            reporter.warn(f"{job.label} episode {record['episode']} failed: {record['failed']} (recorded as failed)")
        reporter.episode(job.label, record)

    failed: list[str] = []

    def on_failure(job: CellJob, why: str, again: bool) -> None:
        reporter.warn(f"{job.label}: {why}; " + ("running it once more" if again else "left for a rerun"))
        if not again:
            failed.append(job.label)

    engine.run(jobs, on_record, on_failure)
    results: list[CellResult] = []
    for agent, spec, cell in cells:
        on_disk = read_cell(cell.path, strict=False)[1]
        unique = {int(e["episode"]): e for e in reversed(on_disk)}  # the first record of an episode wins
        episodes = [unique[i] for i in sorted(unique) if i < request.episodes]
        results.append(CellResult(agent.task.name, spec.label, agent.seed, cell.path, episodes, cell.header))
    if failed:
        raise IncompleteRun(
            f"{len(failed)} cell(s) failed twice ({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); "
            "every finished episode is saved: rerun the same command to run the rest",
            results,
        )
    return results


class IncompleteRun(BenchctlError):
    """Cells whose workers failed twice; `results` holds what finished."""

    def __init__(self, message: str, results: list[CellResult]):
        super().__init__(message)
        self.results = results
