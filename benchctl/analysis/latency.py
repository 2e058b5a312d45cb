"""Planning latency, memory and world-model work per planner, and how they scale.

Timing covers encode + plan per step after a warm-up, exactly what `benchctl eval` records. On
CUDA each step is timed with CUDA events after a synchronization; on CPU with perf_counter.
Memory: peak CUDA memory allocated during the timed steps, or growth of the process's peak RSS.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from benchctl.agents.base import as_recurrent, keep_counts_out_of_graphs
from benchctl.errors import BenchctlError
from benchctl.evaluate import lower_precision, plan_step
from benchctl.machine import cpu_name
from benchctl.planners.base import config_dict, make_planner, resolve_config

# Which config field each sweep dimension means for each planner (None: the planner has none).
SWEEP_FIELDS = {
    "candidates": {
        "mppi": "num_samples",
        "dream_mpc": "candidates",
        "grad_mpc": "candidates",
        "cem": "candidates",
        "smc": "particles",
        "cem_gd": "resample_samples",
    },
    "horizon": {
        "mppi": "horizon",
        "dream_mpc": "horizon",
        "grad_mpc": "horizon",
        "cem": "horizon",
        "smc": "horizon",
        "cem_gd": "horizon",
        "policy_grad_mpc": "horizon",
    },
    "iterations": {
        "mppi": "iterations",
        "dream_mpc": "iterations",
        "grad_mpc": "iterations",
        "cem": "iterations",
        "cem_gd": "gd_steps",
        "policy_grad_mpc": "iterations",
    },
}
MODEL_SWEEPS = ("action_dim", "size")


@dataclass
class Profile:
    planner: str
    config: dict
    calls: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_memory_mb: float
    memory_kind: str
    model_evals_per_step: float

    def row(self) -> dict:
        return self.__dict__.copy()


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def profile_planner(
    model,
    name: str,
    config,
    observations: np.ndarray,
    device: torch.device,
    calls: int = 200,
    warmup: int = 5,
    dtype: str = "float32",
) -> Profile:
    """Latency statistics of `calls` planning steps (after `warmup`), peak memory, evaluations per step."""
    planner = make_planner(name, model, config)
    generator = torch.Generator(device=device).manual_seed(0)
    cuda = device.type == "cuda"
    filtering = as_recurrent(model)
    if filtering is not None:  # a recurrent model filters the observations as in an episode
        filtering.begin_episode(generator)

    def step(obs: np.ndarray) -> None:
        plan, _ = plan_step(planner, obs, generator, device, dtype)
        if filtering is not None:
            filtering.executed(plan.action)

    for i in range(warmup):
        step(observations[i % len(observations)])
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = _rss_mb()
    evals_before = model.model_evals
    times = []
    for i in range(calls):
        obs = observations[i % len(observations)]
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            step(obs)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step(obs)
            times.append((time.perf_counter() - t0) * 1e3)
    evals = (model.model_evals - evals_before) / calls
    if cuda:
        memory, kind = (torch.cuda.max_memory_allocated(device) - base) / 2**20, "CUDA peak allocated"
    else:
        memory, kind = _rss_mb() - rss_before, "peak RSS growth"
    arr = np.asarray(times)
    p50, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 95, 99))
    return Profile(
        name,
        config_dict(config),
        calls,
        float(arr.mean()),
        float(arr.std()),
        p50,
        p95,
        p99,
        float(memory),
        kind,
        float(evals),
    )


def sweep_config(name: str, dimension: str, value: int, base: dict[str, str]):
    """The planner's config with the sweep dimension set, or None when the planner lacks it."""
    field = SWEEP_FIELDS.get(dimension, {}).get(name)
    if field is None:
        return None
    overrides = dict(base) | {field: str(value)}
    if name == "mppi" and field == "num_samples":  # keep the policy share and elites valid
        overrides.setdefault("num_pi_trajs", str(min(24, max(0, value // 2 - 1))))
        overrides.setdefault("num_elites", str(min(64, max(1, value // 4))))
    if name == "cem" and field == "candidates":
        overrides.setdefault("elites", str(max(1, value // 10)))
    return resolve_config(name, overrides)


def _family_base(family: str, planner: str) -> dict[str, str]:
    """A family's planner settings (Dreamer: Tab. 16) as sweep_config overrides."""
    from benchctl.agents import planner_defaults

    return {k: str(v) for k, v in planner_defaults(family, planner).items()}


def check_sweep(text: str) -> tuple[str, list[int]]:
    """'candidates=8,32,128' -> ('candidates', [8, 32, 128])."""
    key, sep, values = text.partition("=")
    choices = [*SWEEP_FIELDS, *MODEL_SWEEPS]
    if not sep or key not in choices:
        raise BenchctlError(f"--sweep {text}: write NAME=v1,v2,... with NAME one of {', '.join(choices)}")
    try:
        numbers = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise BenchctlError(f"--sweep {text}: values must be integers") from None
    if not numbers or min(numbers) < 1:
        raise BenchctlError(f"--sweep {text}: give positive integers")
    return key, numbers


@dataclass
class ProfileRequest:
    """What `benchctl profile` measures: planners (execute.PlannerSpec) on checkpoints, or on
    synthetic agents of official sizes, with optional scaling sweeps (check_sweep output)."""

    planners: list  # PlannerSpec: each planner's config, before an agent family's defaults
    checkpoints: list = field(default_factory=list)  # paths; empty: synthetic agents of `sizes`
    sizes: list[int] = field(default_factory=lambda: [5])
    obs_dim: int = 24
    action_dim: int = 6
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    compile_mode: str = "none"  # none, compile (torch.compile) or cudagraph
    calls: int = 200
    warmup: int = 5  # untimed steps first: lazy allocations, thread pools, compilation (--compile)
    sweeps: list[tuple[str, list[int]]] = field(default_factory=list)
    dtype: str = "float32"  # planning precision (evaluate.precision)


def _synthetic(request: ProfileRequest, size: int, action_dim: int):
    from benchctl.train.tdmpc2 import SIZES, new_model

    if size not in SIZES:
        raise BenchctlError(f"--size {size}: choose from {', '.join(map(str, SIZES))}")
    model = new_model(request.obs_dim, action_dim, size).requires_grad_(False).eval().to(request.device)
    return model, f"synthetic size {size} (obs {request.obs_dim}, action {action_dim})"


def _compiled(model, mode: str):
    """The model's entry points through torch.compile (cudagraph: mode reduce-overhead)."""
    if mode != "none":
        keep_counts_out_of_graphs()
        for attr in ("encode", "step", "next", "value_avg", "value", "policy"):
            compile_mode = "reduce-overhead" if mode == "cudagraph" else None
            setattr(model, attr, torch.compile(getattr(model, attr), mode=compile_mode, dynamic=False))
    return model


def _observations(dims) -> np.ndarray:
    """32 fixed observations the timed steps cycle through: standard-normal vectors (32, obs_dim), or
    uniform uint8 images (32, *obs_shape) for pixel agents. dims: the agent's ModelDims."""
    rng = np.random.default_rng(0)
    if dims.obs_shape:
        return rng.integers(0, 256, (32, *dims.obs_shape), dtype=np.uint8)
    return rng.standard_normal((32, dims.obs_dim)).astype(np.float32)


def run_profile(request: ProfileRequest) -> dict:
    """Profile every planner on every agent, then the sweeps. Returns the profile.json content:
    machine, device, compile, calls, warmup, rows (one per agent x planner), sweeps (dimension -> rows)."""
    from benchctl.agents import load_checkpoint_with_info

    if request.compile_mode not in ("none", "compile", "cudagraph"):
        raise BenchctlError(f"--compile {request.compile_mode}: choose none, compile or cudagraph")
    if request.compile_mode == "cudagraph" and request.device.type != "cuda":
        raise BenchctlError("--compile cudagraph captures CUDA graphs: add --gpu on a machine with CUDA")
    agents = []
    for path in request.checkpoints:
        model, info = load_checkpoint_with_info(path, device=str(request.device))
        agents.append((model, f"{path.name} ({info.family}, size {info.model_size})", info.family, info.dims))
    if not request.checkpoints:
        for size in request.sizes:
            model, label = _synthetic(request, size, request.action_dim)
            agents.append((model, label, model.family, model.dims))
    rows = []
    for model, label, family, dims in agents:
        model = _compiled(lower_precision(model, request.dtype), request.compile_mode)
        model.discount = 0.99
        for spec in (spec.for_family(family) for spec in request.planners):
            profile = profile_planner(
                model, spec.name, spec.config, _observations(dims), request.device, request.calls,
                warmup=request.warmup, dtype=request.dtype,
            )  # fmt: skip
            rows.append({"agent": label, "family": family} | profile.row())
    sweep_rows: dict[str, list[dict]] = {}
    for dimension, values in request.sweeps:
        for value in values:
            if dimension in MODEL_SWEEPS:
                size = value if dimension == "size" else 5
                model = _synthetic(request, size, value if dimension == "action_dim" else request.action_dim)[0]
                model.discount = 0.99
                dims = model.dims
                configs = {spec.name: spec.config for spec in request.planners}
            else:
                model, family, dims = agents[0][0], agents[0][2], agents[0][3]
                configs = {
                    spec.name: sweep_config(spec.name, dimension, value, _family_base(family, spec.name))
                    for spec in request.planners
                }
            for name, config in configs.items():
                if config is None:
                    continue
                p = profile_planner(
                    model, name, config, _observations(dims), request.device, max(3, request.calls // 4),
                    warmup=request.warmup,
                )  # fmt: skip
                sweep_rows.setdefault(dimension, []).append({"value": value} | p.row())
    return {
        "machine": machine(request.device),
        "device": str(request.device),
        "compile": request.compile_mode,
        "dtype": request.dtype,
        "calls": request.calls,
        "warmup": request.warmup,
        "rows": rows,
        "sweeps": sweep_rows,
    }
