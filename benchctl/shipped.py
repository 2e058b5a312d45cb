"""The agents shipped in checkpoints/ and their manifest (checkpoints/manifest.toml).

`benchctl eval` with no --checkpoints evaluates these; `benchctl ship` measures an agent's returns
and writes its manifest entry. Layout: checkpoints/<family>/<suite>/<task>-<seed>.pt.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import benchctl
from benchctl.errors import BenchctlError
from benchctl.execute import AgentSpec
from benchctl.suites import Task

SHIPPED_DIR = Path(benchctl.__file__).resolve().parent.parent / "checkpoints"
MANIFEST_HEADER = """\
# Agents shipped with benchctl, written by `benchctl ship`. sha256 is of the file; returns are the
# mean over 10 evaluation episodes (benchctl eval, the agent's seed) of the planner named, measured on
# the CPU development machine; training_steps are environment steps after action repeat.
"""
RETURN_PLANNERS = ("policy", "mppi", "dream_mpc")


@dataclass
class ShippedAgent:
    path: str  # relative to the checkpoints folder
    task: str
    suite: str
    family: str
    size: str  # an official size ("5") or "custom"
    dims: dict[str, int]
    training_steps: int
    acting_planner: str
    seed: int
    sha256: str
    returns: dict[str, float] = field(default_factory=dict)
    training_options: dict[str, str | int] = field(default_factory=dict)  # non-default trainer / planner settings


def load_manifest(directory: Path | None = None) -> list[ShippedAgent]:
    path = (directory or SHIPPED_DIR) / "manifest.toml"
    if not path.is_file():
        return []
    return [ShippedAgent(**entry) for entry in tomllib.loads(path.read_text())["agent"]]


def _toml_value(value) -> str:
    if isinstance(value, dict):
        keys = {k: k if k.isidentifier() else f'"{k}"' for k in value}
        return "{ " + ", ".join(f"{keys[k]} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def write_manifest(agents: list[ShippedAgent], directory: Path | None = None) -> Path:
    """Rewrite the manifest, one [[agent]] table per agent, sorted by family, suite, task, seed."""
    path = (directory or SHIPPED_DIR) / "manifest.toml"
    blocks = [MANIFEST_HEADER]
    for agent in sorted(agents, key=lambda a: (a.family, a.suite, a.task, a.seed)):
        fields = {k: v for k, v in agent.__dict__.items() if v != {} or k == "returns"}
        lines = ["[[agent]]"] + [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
        blocks.append("\n".join(lines) + "\n")
    path.write_text("\n".join(blocks))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_command(task: Task) -> str:
    """How a user adds an agent for a task the shipped set lacks."""
    names = "|".join((task.name, *task.aliases))
    return (
        f"benchctl train --task {task.name} --suite {task.suite}   "
        f"(or --checkpoints DIR holding official {names}-<seed>.pt files)"
    )


def find_shipped(
    tasks: list[Task], seeds: list[int], directory: Path | None = None
) -> tuple[list[AgentSpec], list[Task]]:
    """Shipped agents for `tasks` at `seeds`, matched by task name or alias across families and
    suites (a task name means the same environment in every suite). Returns (found, missing)."""
    root = directory or SHIPPED_DIR
    agents = load_manifest(root)
    found, missing = [], []
    for task in tasks:
        names = {task.name, *task.aliases}
        hits = [a for a in agents if a.task in names and a.seed in seeds]
        for agent in sorted(hits, key=lambda a: (a.family, a.seed)):
            path = root / agent.path
            if not path.is_file():
                raise BenchctlError(
                    f"{path} is listed in {root / 'manifest.toml'} but missing; restore it with git checkout"
                )
            found.append(AgentSpec(task, agent.seed, path))
        if not hits:
            missing.append(task)
    return found, missing
