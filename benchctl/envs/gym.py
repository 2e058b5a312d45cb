"""Gymnasium environments (classic control, e.g. Pendulum-v1) behind the Env interface.

Actions in [-1, 1] are mapped linearly to the Box bounds; observations are float32; `reset(seed)`
seeds the episode; the episode ends at `episode_length` steps, termination or truncation.
"""

from __future__ import annotations

import numpy as np

from benchctl.envs.base import StepResult
from benchctl.errors import BenchctlError


class GymEnv:
    def __init__(self, env_id: str, episode_length: int, action_repeat: int = 1):
        import gymnasium as gym

        try:
            self._env = gym.make(env_id, max_episode_steps=episode_length)
        except gym.error.Error as exc:
            raise BenchctlError(f"gymnasium has no environment {env_id!r}: {exc}") from None
        space = self._env.action_space
        assert isinstance(space, gym.spaces.Box), space  # continuous control only
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_dim = int(np.prod(self._env.observation_space.shape or ()))
        self.action_dim = int(np.prod(space.shape))
        self.episode_length = episode_length
        self.action_repeat = action_repeat
        self._t = 0

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=int(seed))
        self._t = 0
        return np.asarray(obs, dtype=np.float32).ravel()

    def step(self, action: np.ndarray) -> StepResult:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = (self._low + (action + 1.0) * 0.5 * (self._high - self._low)).astype(np.float32)
        reward, end = 0.0, False
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, info = self._env.step(scaled)
            reward += float(r)
            if terminated or truncated:
                end = True
                break
        self._t += 1
        success = info.get("success")
        return StepResult(
            np.asarray(obs, dtype=np.float32).ravel(),
            reward,
            end or self._t >= self.episode_length,
            None if success is None else bool(success),
        )
