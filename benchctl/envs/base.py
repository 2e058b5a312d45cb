"""The interface every suite adapter implements: seeded episodes with actions in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SimulatorError(RuntimeError):
    """The simulator could not go on (e.g. MuJoCo's unstable physics): the episode ends as failed."""


@dataclass
class StepResult:
    obs: np.ndarray  # (obs_dim,) float32
    reward: float  # summed over the action repeat
    done: bool  # episode over (time limit or termination)
    success: bool | None = None  # suites that define success (Meta-World, HumanoidBench); None otherwise
    terminated: bool = False  # the environment ended the episode before its time limit (a humanoid fell)


class Env(Protocol):
    obs_dim: int
    action_dim: int
    episode_length: int  # policy steps (after action repeat)

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode whose randomness is fixed by `seed`; returns the first observation (obs_dim,)."""
        ...

    def step(self, action: np.ndarray) -> StepResult:
        """Apply `action` (action_dim,) in [-1, 1], rescaled to the simulator's bounds."""
        ...
