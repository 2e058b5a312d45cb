"""The 12-cell evaluation the engine, fault-tolerance and lockstep tests run: 2 smoke tasks x 6
planners on the shipped demo agents, small planner budgets, 1 torch thread everywhere."""

from __future__ import annotations

from pathlib import Path

from benchctl.store import read_cell
from tests.conftest import REPO

SHIPPED = REPO / "checkpoints" / "tdmpc2" / "demo"  # cartpole-swingup and reacher-easy: the smoke suite's tasks
PLANNERS = ["policy", "dream_mpc", "policy_grad_mpc", "grad_mpc", "cem", "smc"]
CHEAP = [  # small budgets and horizons: the point is the cells, not the planners
    "grad_mpc.candidates=16", "grad_mpc.iterations=2", "grad_mpc.horizon=3", "policy_grad_mpc.iterations=2",
    "cem.candidates=32", "cem.elites=4", "cem.iterations=2", "cem.horizon=3", "smc.particles=16", "smc.horizon=3",
]  # fmt: skip
CELLS = 12
# Episodes per cell of the uninterrupted run in one process that the session shares (conftest's
# `twelve_cells`): the most any comparing test needs.
REFERENCE_EPISODES = 4


def eval_args(out: Path, episodes: int, *extra: str) -> list[str]:
    """`benchctl eval` arguments of the 12 cells with `episodes` episodes each, into `out`."""
    args = ["eval", "--suite", "smoke", "--checkpoints", str(SHIPPED), "--episodes", str(episodes)]
    for name in PLANNERS:
        args += ["--planner", name]
    for item in CHEAP:
        args += ["--set", item]
    return [*args, "--out", str(out), "--threads", "1", *extra]


def records(out: Path, episodes: int | None = None) -> dict[tuple[str, int], float]:
    """(cell, episode) -> return over every cell file (only episodes below `episodes` if given),
    checking each file is whole: a header, no torn or damaged line, no episode twice."""
    found: dict[tuple[str, int], float] = {}
    for path in sorted(out.rglob("seed-*.jsonl")):
        header, read, warnings, good = read_cell(path)
        assert header is not None and not warnings and good == path.stat().st_size, (path, warnings)
        indices = [e["episode"] for e in read]
        assert len(indices) == len(set(indices)), f"{path}: an episode twice"
        cell = str(path.relative_to(out))
        for e in read:
            if episodes is None or e["episode"] < episodes:
                found[(cell, e["episode"])] = e["return"]
    return found
