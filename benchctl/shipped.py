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
# the CPU development machine; training_steps are environment steps after action repeat; measured_on is
# that CPU, its model and the vector instructions torch's kernels used there (entries shipped before
# 2026-12-07 name only the instructions): round-off differs between kernels, enough to move a single
# episode, so the same returns are only expected on the same CPU. continued_from lists the runs this one
# took over (`benchctl train --from`): the step it took over at and the planner that run acted with, or
# the weights it began from.
"""
RETURN_PLANNERS = ("policy", "mppi", "dream_mpc")
# Per family where it differs: Dreamer's own planners (Dream-MPC App. D) at its Tab. 16 settings. PlaNet's
# CEM and Grad-MPC (120,000 model evaluations per step, seconds per step on a CPU) are measured apart.
FAMILY_PLANNERS = {"dreamer": ("policy", "dream_mpc", "policy_grad_mpc")}


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
    success: dict[str, float] = field(default_factory=dict)  # success rates, suites that score success
    training_options: dict[str, str | int] = field(default_factory=dict)  # non-default trainer / planner settings
    measured_on: str = ""  # the CPU the returns were measured on (`cpu_name`), e.g. "AMD EPYC (AVX2)"
    # earlier runs this one took over, oldest first: {step, acting_planner} or {step, weights}
    continued_from: list[dict] = field(default_factory=list)


def load_manifest(directory: Path | None = None) -> list[ShippedAgent]:
    path = (directory or SHIPPED_DIR) / "manifest.toml"
    if not path.is_file():
        return []
    return [ShippedAgent(**entry) for entry in tomllib.loads(path.read_text())["agent"]]


def _toml_value(value) -> str:
    if isinstance(value, dict):
        keys = {k: k if k.isidentifier() else f'"{k}"' for k in value}
        return "{ " + ", ".join(f"{keys[k]} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:.1f}" if value == round(value, 1) else f"{value:g}"
    return str(value)


def write_manifest(agents: list[ShippedAgent], directory: Path | None = None) -> Path:
    """Rewrite the manifest, one [[agent]] table per agent, sorted by family, suite, task, seed."""
    path = (directory or SHIPPED_DIR) / "manifest.toml"
    blocks = [MANIFEST_HEADER]
    for agent in sorted(agents, key=lambda a: (a.family, a.suite, a.task, a.seed)):
        fields = {k: v for k, v in agent.__dict__.items() if v not in ({}, "", []) or k == "returns"}
        if "success" in fields:
            fields["success"] = {k: round(v, 2) for k, v in fields["success"].items()}
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
    suites whose environment observes the same way (cartpole-swingup_sparse is one task in `dmc` and
    `demo`, another from pixels in `dmc-pixels`). Returns (found, missing)."""
    from benchctl.suites import load_suite

    root = directory or SHIPPED_DIR
    agents = load_manifest(root)
    suites = {name: load_suite(name) for name in {a.suite for a in agents}}  # each file read once
    env_of = {a.path: suites[a.suite].task(a.task).env for a in agents}
    found, missing = [], []
    for task in tasks:
        names = {task.name, *task.aliases}
        hits = [a for a in agents if a.task in names and a.seed in seeds and env_of[a.path] == task.env]
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


@dataclass
class Shipment:
    """A checkpoint on its way into the manifest: the eval request that measures it, and what the
    manifest entry needs from its training run."""

    request: object  # execute.EvalRequest
    path: Path
    task: Task
    state: dict
    run_id: dict


def prepare(checkpoint: Path, episodes: int, out_dir: Path, root: Path | None = None) -> Shipment:
    """The measurement of a trained agent under checkpoints/: policy, mppi and dream_mpc, `episodes`
    each at its training seed. Reads the training run from the .resume.pt beside the checkpoint."""
    import json

    import torch

    from benchctl import execute
    from benchctl.suites import load_suite

    root = root or SHIPPED_DIR
    path = checkpoint.resolve()
    if not path.is_file() or root not in path.parents:
        raise BenchctlError(
            f"{checkpoint}: pass a checkpoint file inside {root} (checkpoints/<family>/<suite>/<task>-<seed>.pt)"
        )
    from benchctl.train.files import resume_path

    resume = resume_path(path)  # written beside every checkpoint benchctl trains
    if not resume.is_file():
        raise BenchctlError(f"{resume} is missing: ship reads the training run (task, steps, planner) from it")
    state = torch.load(resume, weights_only=True, map_location="cpu")
    run_id = json.loads(state["identity"])
    suite = load_suite(path.parent.name)
    task = suite.task(run_id["task"])
    request = execute.EvalRequest(
        suite,
        [execute.AgentSpec(task, run_id["seed"], path)],
        execute.resolve_planners(list(FAMILY_PLANNERS.get(run_id.get("family", "tdmpc2"), RETURN_PLANNERS)), []),
        episodes,
        "cpu",
        out_dir,
        f"ship-{path.parent.parent.name}",  # one run per family: agents of two families share a task
    )
    return Shipment(request, path, task, state, run_id)


def training_options(run_id: dict) -> dict:
    """The settings of a training run that differ from the papers' defaults, for the manifest."""
    options: dict = {f"planner.{k}": v for k, v in run_id.get("planner_overrides", {}).items()}
    interval, sequences = run_id.get("reanalyze", (10, 20))
    if (interval, sequences) != (10, 20):
        options |= {"reanalyze_interval": interval, "reanalyze_sequences": sequences}
    if run_id.get("family") != "dreamer" and run_id.get("batch_size", 256) != 256:  # official: 256
        options["batch_size"] = run_id["batch_size"]
    if run_id.get("family") == "dreamer":  # the trainer's settings, against Tab. 16's
        import dataclasses

        from benchctl.train.dreamer import DreamerTrainConfig

        defaults = dataclasses.asdict(DreamerTrainConfig())
        options |= {k: v for k, v in run_id.get("config", {}).items() if defaults.get(k) != v}
    return options


def continued_from(log: list[dict], step: int) -> list[dict]:
    """The runs a training run took over up to `step`, oldest first, from its log's `from` records:
    where it took over and the planner that run acted with (so an agent trained acting with Dream-MPC
    to 300k and with MPPI after shows both), or the weights a fresh run began from (an official agent)."""
    taken = []
    for r in log:
        if r.get("type") != "from" or int(r["step"]) > step:
            continue
        if r.get("weights_only"):
            taken.append({"step": int(r["step"]), "weights": r["checkpoint"]})
        else:
            taken.append({"step": int(r["step"]), "acting_planner": r["identity"]["planner"]})
    return taken


def record(shipment: Shipment, results: list, root: Path | None = None) -> tuple[ShippedAgent, Path]:
    """Write the measured agent's manifest entry (replacing any for the same file)."""
    import numpy as np

    from benchctl.agents import describe_checkpoint
    from benchctl.machine import cpu_name
    from benchctl.train.files import RunLog, log_path

    root = root or SHIPPED_DIR
    info = describe_checkpoint(shipment.path)
    returns = {r.planner: round(float(np.mean([e["return"] for e in r.episodes])), 1) for r in results}
    success = {
        r.planner: float(np.mean([bool(e["success"]) for e in r.episodes]))
        for r in results
        if r.episodes and r.episodes[0].get("success") is not None
    }
    entry = ShippedAgent(
        path=str(shipment.path.relative_to(root)),
        task=shipment.task.name,
        suite=shipment.task.suite,
        family=info.family,
        size=info.model_size,
        dims={"enc": info.dims.enc_dim, "mlp": info.dims.mlp_dim, "latent": info.dims.latent_dim},
        training_steps=int(shipment.state["step"]),
        acting_planner=shipment.run_id["planner"],
        seed=int(shipment.run_id["seed"]),
        sha256=info.sha256,
        returns=returns,
        success=success,
        training_options=training_options(shipment.run_id),
        measured_on=cpu_name(),
        continued_from=continued_from(RunLog(log_path(shipment.path)).records(), int(shipment.state["step"])),
    )
    agents = [a for a in load_manifest(root) if a.path != entry.path] + [entry]
    return entry, write_manifest(agents, root)
