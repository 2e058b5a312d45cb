"""The background training queue: `benchctl train` invocations run one at a time at low priority.

A queue file (TOML) lists jobs as `benchctl train` arguments. A job's checkpoint goes to
`checkpoints/queue/<family>/<suite>/<task>-<seed>.pt` unless it names `--out` (relative to the queue
file's folder, so a queue runs the same from any working directory, as is `--from`); its small resume file
and the replay buffer's newest episodes (`.recent.pt`) are what gets committed, so any machine
continues where the last one stopped (the rest of the buffer is refilled by acting). A job is done
when its resume file has reached its `--steps`.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch

from benchctl.errors import BenchctlError
from benchctl.shipped import SHIPPED_DIR
from benchctl.train.files import RECORD_FIELDS, RunLog, is_training, log_path, resume_path

QUEUE_FILE = SHIPPED_DIR / "queue.toml"
QUEUE_DIR = SHIPPED_DIR / "queue"


@dataclass(frozen=True)
class Job:
    """One training: its `benchctl train` arguments (with --out), checkpoint path, target steps and
    the queue file's folder (what its relative paths start from)."""

    args: tuple[str, ...]
    out: Path
    steps: int
    folder: Path

    @property
    def label(self) -> str:
        """The checkpoint as the queue file names it: relative to the file's folder when inside it (short
        enough for a table's column), else the whole path."""
        out, folder = self.out.absolute(), self.folder.absolute()
        return str(out.relative_to(folder)) if folder in out.parents else str(self.out)

    def steps_done(self) -> int:
        """Environment steps of the last save; before the first, those of the run it continues (`--from`)
        or 0."""
        resume = resume_path(self.out)
        source = _option(list(self.args), "--from")
        if not resume.is_file() and source is not None:
            resume = resume_path(Path(source))
        if not resume.is_file():
            return 0
        return int(torch.load(resume, weights_only=True, map_location="cpu")["step"])


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, from its files: steps of the last save, whether a runner trains it now, its
    last periodic evaluation (its step and scores: mean return per planner, success rates) and its
    recent speed."""

    job: Job
    done: int
    training: bool
    last_eval_step: int | None
    last_eval: dict[str, float]
    steps_per_hour: float | None  # over the last episodes logged (acting and updating)


def job_status(job: Job, recent_episodes: int = 20) -> JobStatus:
    records = RunLog(log_path(job.out)).records()
    evals = [r for r in records if r.get("type") == "eval"]
    starts = [i for i, r in enumerate(records) if r.get("type") == "start"]
    stretch = records[starts[-1] if starts else 0 :]  # the last stretch of training: one machine's pace
    episodes = [r for r in stretch if r.get("type") == "episode"][-recent_episodes:]
    rate = None
    if len(episodes) >= 2:
        if "time" in episodes[0]:  # wall clock: updates, acting and evaluations
            seconds = episodes[-1]["time"] - episodes[0]["time"]
        elif _option(list(job.args), "--family") != "dreamer":  # unstamped logs: each episode's training time
            seconds = sum(r["seconds"] for r in episodes[1:])
        else:  # unstamped Dreamer records timed the acting alone
            seconds = 0.0
        rate = (episodes[-1]["step"] - episodes[0]["step"]) / seconds * 3600 if seconds > 0 else None
    last_step = int(evals[-1]["step"]) if evals else None
    last = {k: v for k, v in evals[-1].items() if k not in RECORD_FIELDS} if evals else {}
    return JobStatus(job, job.steps_done(), is_training(job.out), last_step, last, rate)


def _option(args: list[str], name: str, default: str | None = None) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def _without_option(args: list[str], name: str) -> list[str]:
    """args with every `name VALUE` and `name=VALUE` taken out."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def load_queue(path: Path = QUEUE_FILE) -> list[Job]:
    """The jobs of a queue file, in order: `[[job]]` tables with `args = "--task ... --suite ..."`."""
    if not path.is_file():
        raise BenchctlError(f'{path}: no queue file; list trainings there as [[job]] args = "--task T --suite S ..."')
    try:
        entries = tomllib.loads(path.read_text()).get("job", [])
    except tomllib.TOMLDecodeError as exc:
        raise BenchctlError(f"{path} is not valid TOML: {exc}") from None
    jobs = []
    for number, entry in enumerate(entries, start=1):
        args = shlex.split(entry.get("args", ""))
        task, suite = _option(args, "--task"), _option(args, "--suite")
        if not task or not suite:
            raise BenchctlError(f"{path} job {number}: args must name --task and --suite")
        family, seed = _option(args, "--family") or "tdmpc2", _option(args, "--seed") or "1"
        named = _option(args, "--out")
        out = str(QUEUE_DIR / family / suite / f"{task}-{seed}.pt" if named is None else path.parent / named)
        args = _without_option(args, "--out") + ["--out", out]
        source = _option(args, "--from")
        if source is not None:  # another run's checkpoint, named as --out is
            args = _without_option(args, "--from") + ["--from", str(path.parent / source)]
        try:
            steps = int(_option(args, "--steps") or "100000")
        except ValueError:
            raise BenchctlError(f"{path} job {number}: --steps must be an integer") from None
        jobs.append(Job(tuple(args), Path(out), steps, path.parent))
    return jobs
