"""Parameter sweeps as ordinary cells: a grid of planner options expands into one planner spec per
point (Dream-MPC Fig. 5 varies candidates, horizon and iterations this way).

Each point is a planner config like any other, so its cells resume, merge and report unchanged;
the header of each cell records the point and the grid it came from.
"""

from __future__ import annotations

import itertools

from benchctl.errors import BenchctlError
from benchctl.execute import PlannerSpec, planner_overrides
from benchctl.planners.base import parse_set, resolve_config

MAX_POINTS = 1000  # per sweep; more is a typo, not an experiment


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['dream_mpc.horizon=1,3,5', 'iterations=1,2'] -> {'dream_mpc.horizon': ['1', '3', '5'], ...}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        texts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not texts:
            raise BenchctlError(f"--grid {item!r} is not key=v1,v2,...; write e.g. --grid dream_mpc.horizon=1,3,5")
        if key.strip() in grid:
            raise BenchctlError(f"--grid {key.strip()} is given twice; list all its values in one --grid")
        grid[key.strip()] = list(dict.fromkeys(texts))
    return grid


def expand(names: list[str], grid_items: list[str], set_items: list[str]) -> list[PlannerSpec]:
    """One spec per grid point of each planner (its Cartesian product), `--set` applied underneath.

    A planner the grid does not touch runs once at its config, as part of the sweep (point {}).
    """
    names = list(dict.fromkeys(names))
    fixed = planner_overrides(names, parse_set(set_items))
    grid = parse_grid(grid_items)
    # Each axis goes to the planners it names; validate one value at a time for a precise error.
    axes = planner_overrides(names, {k: ",".join(v) for k, v in grid.items()}, "--grid")
    specs: list[PlannerSpec] = []
    for name in names:
        options = {k: v.split(",") for k, v in axes[name].items()}
        for key, values in options.items():
            for value in values:
                resolve_config(name, fixed[name] | {key: value}, "--grid")
        seen: set[str] = set()
        typed_grid: dict[str, list] = {}
        points = []
        for combo in itertools.product(*options.values()):
            overrides = dict(zip(options, combo, strict=True))
            config = resolve_config(name, fixed[name] | overrides, "--grid")
            point = {k: getattr(config, k) for k in options}
            key = repr(sorted(point.items()))
            if key in seen:  # "1,1.0": the same point twice
                continue
            seen.add(key)
            for k, v in point.items():
                typed_grid.setdefault(k, [])
                if v not in typed_grid[k]:
                    typed_grid[k].append(v)
            points.append((config, point))
        for config, point in points:
            grid_of = {f"{name}.{k}": v for k, v in typed_grid.items()}
            chosen = frozenset(fixed[name]) | frozenset(point)
            specs.append(PlannerSpec(name, config, point=point, grid=grid_of, chosen=chosen))
        if len(specs) > MAX_POINTS:
            raise BenchctlError(f"--grid: {len(specs)}+ points; a sweep takes at most {MAX_POINTS}, narrow the grid")
    return specs
