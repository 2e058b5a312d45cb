"""Meta-World 3.1.1 (v3 tasks) with the TD-MPC2 protocol (spec/suites.md).

The official TD-MPC2 wrapper builds the goal-observable environment, unfreezes its random
vector (object and goal positions are drawn at every reset), and after each reset takes one
zero-action step whose result it discards: the observation returned is the reset observation.
Each policy step repeats the action twice and sums the rewards; an episode is 100 policy steps
and its success is `info["success"]` of the last simulator step.

benchctl draws the task variant from the episode seed (`seed()` on the environment's own
generator before the reset), so a rerun episode meets the same object and goal positions.
"""

from __future__ import annotations

import os
import re

import numpy as np

from benchctl.envs.base import StepResult
from benchctl.errors import BenchctlError, unknown


def env_name(task: str) -> str:
    """Meta-World's v3 environment name for a benchctl/TD-MPC2 task name: button-press,
    mw-button-press and button-press-v3 all give button-press-v3; another version is refused."""
    name = task.removeprefix("mw-")
    version = re.search(r"-v(\d+)$", name)
    if version and version.group(1) != "3":
        raise BenchctlError(
            f"Meta-World task {task!r}: Meta-World 3.1.1 serves v3 tasks only; "
            f"use {name[: version.start()]!r} (or {name[: version.start()]}-v3)"
        )
    return name if version else f"{name}-v3"


class MetaWorldEnv:
    def __init__(self, task: str, episode_length: int = 100, action_repeat: int = 2):
        os.environ.setdefault("MUJOCO_GL", "disable")  # state observations need no OpenGL context
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        name = env_name(task)
        key = f"{name}-goal-observable"
        if key not in ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE:
            names = [k.removesuffix("-v3-goal-observable") for k in ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE]
            raise unknown("Meta-World v3 task", name.removesuffix("-v3"), names)
        self._env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[key](seed=0)  # type: ignore[call-arg]  # its __init__ takes seed
        self._env._freeze_rand_vec = False  # a new variant at every reset (TD-MPC2)
        self._env.seeded_rand_vec = True  # ... drawn from the environment's generator, which reset() seeds
        self.obs_dim = int(np.prod(self._env.observation_space.shape or ()))
        self.action_dim = int(np.prod(self._env.action_space.shape or ()))
        self.episode_length = episode_length
        self.action_repeat = action_repeat
        self._t = 0

    def reset(self, seed: int) -> np.ndarray:
        self._env.seed(int(seed) % 2**32)
        obs, _ = self._env.reset()
        self._env.step(np.zeros(self.action_dim, dtype=np.float32))  # TD-MPC2's discarded zero-action step
        self._t = 0
        return np.asarray(obs, dtype=np.float32)

    def step(self, action: np.ndarray) -> StepResult:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)  # the action space is [-1, 1]^4
        reward = 0.0
        for _ in range(self.action_repeat):
            obs, r, _, _, info = self._env.step(action.copy())
            reward += float(r)
        self._t += 1
        return StepResult(
            np.asarray(obs, dtype=np.float32),
            reward,
            self._t >= self.episode_length,
            bool(info["success"]),
        )
