"""Suites as data: `suites/<name>.toml` lists tasks with their protocol and normalization.

A suite file has suite-level defaults (env, episode_length, action_repeat, normalization) and a
`[tasks.<name>]` table per task that may override them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from benchctl.errors import BenchctlError, unknown


def suites_dir() -> Path:
    return Path(os.environ.get("BENCHCTL_SUITES", Path(__file__).resolve().parent.parent / "suites"))


@dataclass(frozen=True)
class Task:
    name: str  # benchctl's name, e.g. "cartpole-swingup"
    suite: str
    env: str  # adapter: "dmc"
    params: dict  # adapter arguments, e.g. {"domain": "cartpole", "task": "swingup"}
    episode_length: int  # policy steps
    action_repeat: int
    normalization: dict  # {"kind": "scale", "divisor": 1000} | {"kind": "success"} | {"kind": "random_target", ...}
    aliases: tuple[str, ...] = field(default_factory=tuple)  # other names in official checkpoint files
    note: str = ""  # what a user should know before training an agent for it (listed with the train command)

    @property
    def discount(self) -> float:
        """TD-MPC2's heuristic: frac = episode_length / 5; clip((frac - 1) / frac, 0.95, 0.995)."""
        frac = self.episode_length / 5
        return min(max((frac - 1) / frac, 0.95), 0.995)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: dict[str, Task]

    def task(self, name: str) -> Task:
        for task in self.tasks.values():
            if name == task.name or name in task.aliases:
                return task
        if any(t.env == "metaworld" for t in self.tasks.values()):
            from benchctl.envs.metaworld import env_name

            env_name(name)  # a Meta-World name of another version (button-press-v2) gets its own message
        raise unknown(f"{self.name} task", name, self.tasks)


_TASK_KEYS = {"env", "episode_length", "action_repeat", "normalization", "aliases", "note"}


def suite_names() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.toml"))


def load_suite(name: str) -> Suite:
    path = suites_dir() / f"{name}.toml"
    if not path.exists():
        raise unknown("suite", name, suite_names())
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchctlError(f"{path} is not valid TOML: {exc}") from None
    defaults = {k: data[k] for k in _TASK_KEYS if k in data}
    tasks = {}
    for task_name, spec in data.get("tasks", {}).items():
        merged = defaults | spec
        try:
            tasks[task_name] = Task(
                name=task_name,
                suite=name,
                env=merged["env"],
                params={k: v for k, v in spec.items() if k not in _TASK_KEYS},
                episode_length=int(merged["episode_length"]),
                action_repeat=int(merged.get("action_repeat", 1)),
                normalization=dict(merged.get("normalization", {"kind": "none"})),
                aliases=tuple(merged.get("aliases", ())),
                note=str(spec.get("note", "")),
            )
        except KeyError as exc:
            raise BenchctlError(f"{path}: task {task_name!r} lacks {exc.args[0]!r}") from None
    return Suite(name=name, description=data.get("description", ""), tasks=tasks)


def make_env(task: Task, seed: int = 0, family: str = "tdmpc2"):
    """The adapter for `task`, imported lazily so a suite's simulator loads only when used. `family`:
    the agent family, where it decides how observations look (pixels: TD-MPC2's 3 stacked 64x64
    renders, or Dreamer's one resized frame)."""
    if task.env == "dmc":
        from benchctl.envs.dmc import DMCEnv

        return DMCEnv(task.params["domain"], task.params["task"], task.episode_length, task.action_repeat, seed)
    if task.env == "gym":
        from benchctl.envs.gym import GymEnv

        return GymEnv(task.params["id"], task.episode_length, task.action_repeat)
    if task.env == "dmc-pixels":
        from benchctl.agents import pixel_protocol
        from benchctl.envs.dmc_pixels import PixelDMCEnv

        return PixelDMCEnv(
            task.params["domain"],
            task.params["task"],
            task.episode_length,
            task.action_repeat,
            seed,
            protocol=pixel_protocol(family),
        )
    if task.env == "metaworld":
        from benchctl.envs.metaworld import MetaWorldEnv

        return MetaWorldEnv(task.params["env_name"], task.episode_length, task.action_repeat)
    if task.env == "humanoid":
        from benchctl.envs.humanoid import HumanoidEnv

        target = task.normalization.get("target")
        return HumanoidEnv(task.params["id"], task.episode_length, task.action_repeat, target)
    raise BenchctlError(f"suite {task.suite!r}: no adapter for env {task.env!r}")
