"""Planning latency, memory and world-model work per planner, and how they scale.

Timing covers encode + plan per step after a warm-up, exactly what `benchctl eval` records. On
CUDA each step is timed with CUDA events after a synchronization; on CPU with perf_counter.
Memory: peak CUDA memory allocated during the timed steps, or growth of the process's peak RSS.
"""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from benchctl.errors import BenchctlError
from benchctl.evaluate import plan_step
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
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def profile_planner(
    model, name: str, config, observations: np.ndarray, device: torch.device, calls: int = 200, warmup: int = 5
) -> Profile:
    """Latency statistics of `calls` planning steps (after `warmup`), peak memory, evaluations per step."""
    planner = make_planner(name, model, config)
    generator = torch.Generator(device=device).manual_seed(0)
    cuda = device.type == "cuda"
    for i in range(warmup):
        plan_step(planner, observations[i % len(observations)], generator, device)
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
            plan_step(planner, obs, generator, device)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            plan_step(planner, obs, generator, device)
            times.append((time.perf_counter() - t0) * 1e3)
    evals = (model.model_evals - evals_before) / calls
    if cuda:
        memory, kind = (torch.cuda.max_memory_allocated(device) - base) / 2**20, "CUDA peak allocated"
    else:
        memory, kind = _rss_mb() - rss_before, "peak RSS growth"
    arr = np.asarray(times)
    return Profile(
        name,
        config_dict(config),
        calls,
        float(arr.mean()),
        float(arr.std()),
        *(float(np.percentile(arr, q)) for q in (50, 95, 99)),
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
