"""The cadence every `benchctl train` family shares: resume, log where the stretch runs, evaluate
every `eval_every` steps and save every `save_every`, one training episode at a time, then a final
evaluation and save. A family supplies the episode (`train_episode`) and its files."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from benchctl import machine


class TrainReporter(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def progress(self, step: int, info: dict) -> None: ...
    def evaluation(self, step: int, returns: dict[str, float]) -> None: ...
    def note(self, message: str) -> None: ...


class TrainingLoop(ABC):
    """`request` has `steps`, `eval_every`, `eval_episodes` (0: no evaluations), `save_every` and `out`
    (the checkpoint path); `step` counts environment steps."""

    request: Any
    step: int

    @abstractmethod
    def try_resume(self) -> bool:
        """Load the resume file if there is one; True when a run continues."""

    @abstractmethod
    def save(self) -> None: ...

    @abstractmethod
    def log(self, record: dict) -> None: ...

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Mean evaluation return per planner (and success rates where the suite has them)."""

    @abstractmethod
    def train_episode(self) -> dict:
        """Act for one episode (or up to `request.steps`), updating as the family does; returns its
        log record (`type` "episode", `step`, return, losses)."""

    def notes(self) -> list[str]:
        """What the user should know about this stretch once it starts (a lost replay buffer)."""
        return []

    def run(self, reporter: TrainReporter) -> dict[str, float]:
        req = self.request
        resumed = self.try_resume()
        Path(req.out).parent.mkdir(parents=True, exist_ok=True)
        # where and how this stretch of training ran (a run may cross machines)
        self.log({"type": "start", "step": self.step, "nice": os.nice(0), "machine": machine.snapshot()})
        reporter.start(req.steps, self.step)
        for message in self.notes():
            reporter.note(message)
        # a resumed run evaluated at its save step before it stopped
        next_eval = (self.step // req.eval_every + (1 if resumed else 0)) * req.eval_every
        next_save = (self.step // req.save_every + 1) * req.save_every
        evaluating = req.eval_episodes > 0  # 0: train only (evaluate the checkpoint later with `benchctl eval`)
        while self.step < req.steps:
            if evaluating and self.step >= next_eval:
                self._evaluate(reporter)
                next_eval += req.eval_every
            if self.step >= next_save:
                self.save()
                next_save += req.save_every
            record = self.train_episode()
            self.log(record)
            reporter.progress(self.step, record)
        returns = self._evaluate(reporter) if evaluating else {}
        self.save()
        return returns

    def _evaluate(self, reporter: TrainReporter) -> dict[str, float]:
        returns = self.evaluate()
        self.log({"type": "eval", "step": self.step} | returns)
        reporter.evaluation(self.step, returns)
        return returns
