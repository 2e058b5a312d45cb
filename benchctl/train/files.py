"""The files a training run keeps, the same for every family: crash-safe saves, the run's identity
check on resume, the JSON-lines log that a resume trims to the resumed step, and the lock that
keeps two trainings from writing one checkpoint."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchctl.errors import BenchctlError
from benchctl.train.buffer import ReplayBuffer

try:
    import fcntl
except ImportError:  # Windows: no flock; trainings there are not locked
    fcntl = None  # type: ignore[assignment]


# The files beside a checkpoint `<task>-<seed>.pt` that a training run writes.
def resume_path(checkpoint: Path) -> Path:
    """Weights, optimizers, counters, generator: small enough to commit."""
    return checkpoint.with_name(checkpoint.name + ".resume.pt")


def buffer_path(checkpoint: Path) -> Path:
    """The replay buffer: stays on the machine."""
    return checkpoint.with_name(checkpoint.name + ".buffer.pt")


def recent_path(checkpoint: Path) -> Path:
    """The newest episodes of the replay buffer within a few MB: small enough to commit, so another
    machine continues with recent experience instead of an empty buffer."""
    return checkpoint.with_name(checkpoint.name + ".recent.pt")


def log_path(checkpoint: Path) -> Path:
    """`<task>-<seed>.log.jsonl`: one JSON line per episode, evaluation and stretch of training."""
    return checkpoint.with_name(checkpoint.stem + ".log.jsonl")


def lock_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".lock")


@contextmanager
def training_lock(checkpoint: Path) -> Iterator[None]:
    """Hold `<checkpoint>.lock` (an flock, released by the OS when the process ends, however it ends)
    for a training run: a second `benchctl train` on the same checkpoint, or a second queue runner,
    is refused in one line instead of both writing the same files."""
    if fcntl is None:
        yield
        return
    path = lock_path(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise BenchctlError(
                f"{checkpoint} is being trained by {holder}; wait for it to finish or pass another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        yield


def is_training(checkpoint: Path) -> bool:
    """Whether a live process holds the checkpoint's training lock."""
    path = lock_path(checkpoint)
    if fcntl is None or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, synced, then renamed: a crash leaves the previous file intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_buffer(buffer: ReplayBuffer, step: int, checkpoint: Path, recent_mb: float) -> None:
    """The whole replay buffer beside the checkpoint, and its newest episodes within `recent_mb` MB
    (no file when not one episode fits: pixel episodes are tens of MB)."""
    atomic_save({"step": step, "buffer": buffer.state()}, buffer_path(checkpoint))
    newest = buffer.newest(int(recent_mb * 2**20))
    if newest.episodes:
        atomic_save({"step": step, "buffer": newest.state()}, recent_path(checkpoint))
    else:
        recent_path(checkpoint).unlink(missing_ok=True)


@dataclass
class SavedBuffer:
    """What a resumed run has of the replay buffer saved at its step: `buffer` (None when nothing),
    `complete` (the whole buffer, else its newest episodes or nothing) and `why` (what was lost)."""

    buffer: ReplayBuffer | None
    complete: bool
    why: str = ""


def load_buffer(checkpoint: Path, step: int, capacity: int = 0) -> SavedBuffer:
    """The replay buffer saved at `step`: the whole one (`.buffer.pt`, on the machine that trained),
    else the newest episodes committed beside the checkpoint (`.recent.pt`), else nothing; it holds at
    least `capacity` entries."""
    whole, recent = buffer_path(checkpoint), recent_path(checkpoint)
    why = f"no {whole.name}"
    if whole.exists():
        saved = torch.load(whole, weights_only=True)
        if int(saved["step"]) == step:
            return SavedBuffer(ReplayBuffer.from_state(saved["buffer"], capacity), True)
        why = f"{whole.name} is from step {int(saved['step'])}, the resume file from {step}"
    if recent.exists():
        saved = torch.load(recent, weights_only=True)
        if int(saved["step"]) == step:
            return SavedBuffer(ReplayBuffer.from_state(saved["buffer"], capacity), False, f"{why}; kept {recent.name}")
    return SavedBuffer(None, False, f"{why} (continued from the resume file alone)")


def check_identity(resume_path: Path, saved: dict, identity: dict) -> None:
    """A resume file must come from the same run (task, seed, sizes, planner, ...)."""
    if saved != json.loads(json.dumps(identity)):
        raise BenchctlError(
            f"{resume_path} belongs to a different training run ({json.dumps(saved)}); pass another --out or delete it"
        )


RECORD_FIELDS = frozenset({"type", "step", "time"})  # a log record's own fields; an evaluation's others are scores


class RunLog:
    """One JSON line per episode, evaluation and stretch of training (`<checkpoint stem>.log.jsonl`),
    each stamped with the wall-clock `time` it was written (Unix seconds)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record | {"time": round(time.time(), 1)}) + "\n")

    def records(self) -> list[dict]:
        """Every record, oldest first (none before the first write); a line torn by a kill is skipped."""
        return _parsed(self._lines())

    def _lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []

    def drop_after(self, step: int) -> None:
        """Forget the episodes and evaluations past a resumed step: they are run again, and a curve must
        not count them twice. Other records (starts, lost buffers) are history and stay; a line torn by
        a kill mid-write goes."""
        self._keep(lambda r: kept_on_resume(r, step))

    def start_fresh(self) -> None:
        """Forget what an attempt killed before its first save logged: its episodes, evaluations and the
        run it began from (`from`); its start records stay, as history."""
        self._keep(lambda r: kept_on_resume(r, -1) and r.get("type") != "from")

    def _keep(self, wanted: Callable[[dict], bool]) -> None:
        """Rewrite the log with the records `wanted` keeps, only when something (a torn line too) goes."""
        lines = self._lines()
        kept = [r for r in _parsed(lines) if wanted(r)]
        if len(kept) != len(lines):
            self.start_with(kept)

    def start_with(self, records: list[dict]) -> None:
        """Make `records` (as they are, time stamps included) the whole log."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        tmp.replace(self.path)  # atomic: a kill now leaves the old log or the new one


def _parsed(lines: list[str]) -> list[dict]:
    """The records of log lines; a line torn by a kill is skipped."""
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def kept_on_resume(record: dict, step: int) -> bool:
    """Whether a log record stays when training resumes at `step`: not an episode or evaluation past it."""
    return not (record.get("type") in {"episode", "eval"} and int(record.get("step", 0)) > step)
