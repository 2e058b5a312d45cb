"""The episode loop: obs -> encode -> plan -> env step, with per-step latency and model-work counts."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchctl.agents.base import as_recurrent
from benchctl.envs.base import Env, SimulatorError
from benchctl.planners.base import Plan, Planner
from benchctl.planners.rollout import predict_plan


def episode_seed(cell_seed: int, episode: int) -> int:
    """The seed of one episode: fixed by (cell seed, episode index), so a resumed run replays it exactly."""
    return int(np.random.SeedSequence([cell_seed, episode]).generate_state(1)[0])


@dataclass
class StepTimer:
    """Wall time of a block in ms; on CUDA the device is synchronized before reading the clock."""

    device: torch.device

    def __post_init__(self):
        self._sync = self.device.type == "cuda"

    def now(self) -> float:
        if self._sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def _stats(values: list[float]) -> dict:
    """Latency summary of one episode (ms): over all steps, plus the first step (warm-up: lazy
    allocations, CEM-GD's t = 0 search) and the steady state (every later step) apart."""
    arr = np.asarray(values, dtype=np.float64)
    stats: dict[str, Any] = {
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
        "first": float(arr[0]),
    }
    if len(arr) > 1:
        steady = arr[1:]
        stats["steady"] = {
            "mean": float(steady.mean()),
            "p50": float(np.percentile(steady, 50)),
            "p95": float(np.percentile(steady, 95)),
        }
    return stats


def _finite_or_none(value: float | None) -> float | None:
    """A model prediction for the record; NaN/inf (a diverged model) is recorded as missing."""
    return None if value is None or not np.isfinite(value) else value


def observe(model, obs: np.ndarray, device: torch.device) -> torch.Tensor:
    """The latent of the current observation (1, Z): encode(obs), or for a recurrent model (Dreamer)
    one filtering step that also reads the history (`observe`)."""
    filtering = as_recurrent(model)
    with torch.inference_mode():
        x = torch.as_tensor(obs, device=device).unsqueeze(0)
        return filtering.observe(x) if filtering is not None else model.encode(x)


DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # --dtype: the precision of the model's matrix products


def precision(device: torch.device, dtype: str = "float32"):
    """The context planning runs in: as is for float32; for bfloat16 torch's autocast, which runs
    matrix products (linear layers, convolutions) in bfloat16 and keeps reductions, normalizations
    and the planners' own arithmetic in float32."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose {', '.join(DTYPES)}")
    low = DTYPES[dtype]
    return nullcontext() if low is None else torch.autocast(device_type=device.type, dtype=low)


def lower_precision(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """Store the model's weight matrices (every parameter of 2 or more dimensions) in `dtype` once,
    so autocast need not convert them at every call; vectors (biases, norms) stay float32. The model
    then runs only inside `precision(device, dtype)`."""
    low = DTYPES[dtype]
    if low is not None:
        for parameter in model.parameters():
            if parameter.dim() >= 2 and parameter.is_floating_point():
                parameter.data = parameter.data.to(low)
    return model


def plan_step(
    planner: Planner, obs: np.ndarray, generator: torch.Generator, device: torch.device, dtype: str = "float32"
) -> tuple[Plan, torch.Tensor]:
    """Encode one observation (obs_dim,) and plan: what a controller waits for at each step.
    Returns the plan and the latent it started from (1, Z).

    Gradient-free planners run under inference mode; gradient planners get a normal tensor z so
    that autograd can differentiate with respect to their actions.
    """
    with precision(device, dtype):
        z = observe(planner.model, obs, device).float()
        if planner.uses_gradients:
            return planner.plan(z.clone(), generator), z  # a clone outside inference mode is a normal tensor
        with torch.inference_mode():
            return planner.plan(z, generator), z


def _prediction(planner: Planner, z: torch.Tensor, plan: Plan) -> tuple:
    """(predicted return, predicted discounted reward sum) of the executed plan from its latent z
    (1, Z), for the model-exploitation metric: `predict_plan` on the plan's sequence when the planner
    gives one, else its own numbers. Outside the timed region, and its model evaluations are not counted."""
    if plan.sequence is None:
        return plan.predicted_return, plan.predicted_rewards
    model = planner.model
    counted, work = model.model_evals, dict(getattr(model, "work", {}))
    with torch.inference_mode():
        prediction = predict_plan(model, z, plan.sequence.detach().float())
    model.model_evals = counted
    if work:
        model.work.update(work)  # type: ignore[attr-defined]  # models that count more than evals
    return prediction


def run_episode(env: Env, planner: Planner, seed: int, device: torch.device, dtype: str = "float32") -> dict:
    """One seeded episode. Returns the record the store writes (minus the episode index).

    Latency covers encode + plan (observation upload and action download included), the time a
    controller waits for its action. World-model evaluations are counted by the model. `dtype`:
    the precision planning runs in (`precision`); the exploitation prediction stays float32.

    A planner action that is not finite (a diverged model) is never sent to the simulator: the
    episode stops there and its record carries `failed` (why), with the return reached so far.
    So does an episode whose simulator gives up (SimulatorError).
    """
    model = planner.model
    generator = torch.Generator(device=device).manual_seed(seed)
    if getattr(model, "augment", False):  # the pixel shift draws from torch's global generator (official code)
        torch.manual_seed(seed)
    rendered = getattr(env, "render_seconds", None)
    timer = StepTimer(device)
    obs = env.reset(seed)
    planner.reset()
    filtering = as_recurrent(model)
    if filtering is not None:  # a blank history; the filter draws from the episode's generator
        filtering.begin_episode(generator)
    latencies: list[float] = []
    evals: list[int] = []
    rewards: list[float] = []
    predicted: list[float | None] = []
    predicted_rewards: list[float | None] = []
    total, success, failed, terminated, start = 0.0, None, None, False, time.perf_counter()
    counts = dict.fromkeys(planner.counted_info, 0)
    work: dict[str, int] = getattr(model, "work", None) or {}
    work_done: dict[str, list[int]] = {key: [] for key in work}
    for step in range(env.episode_length):
        evals_before, work_before = model.model_evals, dict(work)
        t0 = timer.now()
        plan, z = plan_step(planner, obs, generator, device, dtype)
        action = plan.action.detach().float().cpu().numpy()  # bfloat16 planning may hand back bfloat16
        latencies.append((timer.now() - t0) * 1e3)
        if filtering is not None:  # the next filtering step conditions on what was executed
            filtering.executed(plan.action)
        evals.append(model.model_evals - evals_before)
        for key, done in work_done.items():
            done.append(work[key] - work_before[key])
        if not np.isfinite(action).all():
            failed = f"non-finite action at step {step} (the planner or the model produced NaN/inf)"
            break
        try:
            result = env.step(action)
        except SimulatorError as exc:
            failed = str(exc)
            break
        for key in counts:
            counts[key] += int(plan.info.get(key, 0))
        with precision(device, dtype):  # the model's own prediction, at the precision it planned with
            predicted_return, predicted_sum = _prediction(planner, z, plan)
        predicted.append(_finite_or_none(predicted_return))
        predicted_rewards.append(_finite_or_none(predicted_sum))
        rewards.append(result.reward)
        total += result.reward
        obs = result.obs
        if result.success is not None:
            success = result.success
        terminated = result.terminated
        if result.done:
            break
    record: dict[str, Any] = {
        "return": total,
        "success": success,
        "length": len(rewards),
        "wall_s": time.perf_counter() - start,
        "latency_ms": _stats(latencies),
        "model_evals_per_step": float(np.mean(evals)),  # dynamics + reward steps (candidate x horizon step)
        "rewards": [round(r, 6) for r in rewards],
    }
    if rendered is not None:  # pixel suites: rendering, never part of the planning latency
        record["render_ms_per_step"] = (env.render_seconds - rendered) * 1e3 / max(1, len(rewards) + 1)  # type: ignore[attr-defined]
    if terminated:  # ended by the environment before its time limit (HumanoidBench: the robot fell)
        record["terminated"] = True
    if work_done:  # the rest of a step's work: value-head rows, policy rows, backward passes
        record["work_per_step"] = {key: float(np.mean(done)) for key, done in work_done.items()}
    if counts:  # e.g. Dream-MPC's steps where the uncertainty term rewarded disagreement
        record["info_counts"] = counts
    if failed is not None:
        record["failed"] = failed
    if any(p is not None for p in predicted):
        record["predicted_returns"] = [None if p is None else round(p, 6) for p in predicted]
    if any(p is not None for p in predicted_rewards):  # model exploitation: compare with realized rewards
        record["predicted_rewards"] = [None if p is None else round(p, 6) for p in predicted_rewards]
    return record
