"""HumanoidBench `h1hand-*-v0` tasks as the official TD-MPC2/BMPC wrappers run them (spec/suites.md).

`gym.make(<task>)` with the task's own time limit (1000 steps), action repeat 1, actions passed
as they are (the action space is already [-1, 1]^61), float32 observations; an episode ends when
the environment terminates (the robot fell) or truncates. HumanoidBench has no success flag:
a task counts as solved when the episode's return reaches its target score.

HumanoidBench is not on PyPI and is optional: `install_hint()` says how to install it. Two
things are handled here without editing the installed package:
- its copy of dm_control's struct-size table names MjModel/MjData fields that mujoco 3.3 no
  longer has (e.g. `flex_xvert0`), and every reset fails on them; the names the installed mujoco
  lacks are dropped from that table once, before the first environment is built;
- some tasks draw their initial state from numpy's global generator (reach's goal, ...): the
  reset runs under a generator seeded from the episode seed, and the caller's global state is
  restored afterwards, so a rerun episode starts the same.
"""

from __future__ import annotations

import os

import numpy as np

from benchctl.envs.base import StepResult
from benchctl.errors import BenchctlError

REPOSITORY = "https://github.com/carlosferrazza/humanoid-bench"


def install_hint() -> str:
    return (
        'pip install -e ".[humanoid]" and then HumanoidBench itself from its repository: '
        f"git clone {REPOSITORY} && pip install --no-deps -e humanoid-bench"
    )


def _import_humanoid_bench():
    os.environ.setdefault("MUJOCO_GL", "egl")  # its import builds renderers; state runs never render
    try:
        import humanoid_bench  # noqa: F401  (registers the h1hand-* environments with gymnasium)
        import humanoid_bench.dmc_deps.dmc_sizes as sizes
    except ImportError as exc:
        raise BenchctlError(f"the humanoid suite needs HumanoidBench ({exc}); install it: {install_hint()}") from None
    _drop_missing_struct_fields(sizes.array_sizes)


def _drop_missing_struct_fields(array_sizes: dict) -> list[str]:
    """Remove from HumanoidBench's size table the fields the installed mujoco does not define."""
    import mujoco

    structs = {"mjmodel": mujoco.MjModel, "mjdata": mujoco.MjData}
    dropped = []
    for struct_name, fields in array_sizes.items():
        cls = structs.get(struct_name)
        for name in [f for f in fields if cls is not None and not hasattr(cls, f)]:
            del fields[name]
            dropped.append(name)
    return dropped


class HumanoidEnv:
    def __init__(self, env_id: str, episode_length: int = 1000, action_repeat: int = 1, target: float | None = None):
        _import_humanoid_bench()
        import gymnasium as gym

        try:
            self._env = gym.make(env_id, render_mode=None)
        except gym.error.Error as exc:
            raise BenchctlError(f"HumanoidBench has no environment {env_id!r}: {exc}") from None
        self.obs_dim = int(np.prod(self._env.observation_space.shape or ()))
        self.action_dim = int(np.prod(self._env.action_space.shape or ()))
        limit = self._env.spec.max_episode_steps if self._env.spec else None
        self.episode_length = min(episode_length, limit or episode_length)
        self.action_repeat = action_repeat
        self.target = target  # success: episode return >= target
        self._t, self._return = 0, 0.0

    def reset(self, seed: int) -> np.ndarray:
        outer = np.random.get_state()
        np.random.seed(int(seed) % 2**32)
        try:
            obs, _ = self._env.reset(seed=int(seed))
        finally:
            np.random.set_state(outer)
        self._t, self._return = 0, 0.0
        return np.asarray(obs, dtype=np.float32).ravel()

    def step(self, action: np.ndarray) -> StepResult:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, _ = self._env.step(action.copy())
            reward += float(r)
            if terminated or truncated:
                break
        self._t += 1
        self._return += reward
        done = terminated or truncated or self._t >= self.episode_length
        success = None if self.target is None or not done else self._return >= self.target
        return StepResult(np.asarray(obs, dtype=np.float32).ravel(), reward, done, success, bool(terminated))
