"""DeepMind Control Suite with the TD-MPC2 protocol (spec/suites.md).

Observation entries flattened and concatenated in `observation_spec()` order as float32; actions
mapped linearly from [-1, 1] to the spec bounds; each action repeated `action_repeat` times with
the rewards summed; `episode_length` policy steps; task randomness seeded per episode.
"""

from __future__ import annotations

import os

import numpy as np

from benchctl.envs.base import SimulatorError, StepResult
from benchctl.errors import BenchctlError


class DMCEnv:
    def __init__(self, domain: str, task: str, episode_length: int = 500, action_repeat: int = 2, seed: int = 0):
        os.environ.setdefault("MUJOCO_GL", "disable")  # state observations need no OpenGL context
        from dm_control import suite
        from dm_control.rl.control import PhysicsError

        self._physics_error = PhysicsError

        try:
            self._env = suite.load(domain, task, task_kwargs={"random": seed})
        except ValueError as exc:
            raise BenchctlError(f"dm_control has no task {domain}-{task}: {exc}") from None
        self._keys = list(self._env.observation_spec().keys())
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.obs_dim = int(sum(np.prod(v.shape, dtype=int) for v in self._env.observation_spec().values()))
        self.action_dim = int(spec.shape[0])
        self.episode_length = episode_length
        self.action_repeat = action_repeat
        self._t = 0

    @property
    def physics(self):
        """The MuJoCo physics of the running task (pixel suites render from it)."""
        return self._env.physics

    def _flatten(self, observation: dict) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel() for k in self._keys])

    def reset(self, seed: int) -> np.ndarray:
        self._env.task.random.seed(seed)  # the RandomState dm_control draws initial states from
        self._t = 0
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> StepResult:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        reward, last = 0.0, False
        for _ in range(self.action_repeat):
            try:
                ts = self._env.step(scaled)
            except self._physics_error as exc:
                raise SimulatorError(f"MuJoCo physics diverged at step {self._t}: {exc}") from None
            reward += ts.reward or 0.0
            if ts.last():
                last = True
                break
        self._t += 1
        return StepResult(self._flatten(ts.observation), reward, last or self._t >= self.episode_length)
