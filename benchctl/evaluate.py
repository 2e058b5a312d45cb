"""The episode loop: obs -> encode -> plan -> env step, with per-step latency and model-work counts."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchctl.agents.base import as_recurrent
from benchctl.agents.layers import EnsembleLayerNorm
from benchctl.draws import Draws, EpisodeGenerators
from benchctl.envs.base import Env, SimulatorError
from benchctl.planners.base import Plan, Planner, Plans
from benchctl.planners.rollout import predict_plans


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
    """The latent of the current observation (obs_shape) -> (1, Z): encode(obs), or for a recurrent
    model (Dreamer) one filtering step that also reads the history (`observe`)."""
    return observe_batch(model, np.expand_dims(obs, 0), device)


def observe_batch(model, obs: np.ndarray, device: torch.device) -> torch.Tensor:
    """The latents (E, Z) of E episodes' current observations (E, *obs_shape)."""
    filtering = as_recurrent(model)
    with torch.inference_mode():
        x = torch.as_tensor(obs, device=device)
        return filtering.observe(x) if filtering is not None else model.encode(x)


DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # --dtype: the precision of the model's matrix products


def precision(device: torch.device, dtype: str = "float32"):
    """The context planning runs in: as is for float32; for bfloat16 torch's autocast, which runs
    matrix products (linear layers, convolutions) in bfloat16. The models keep their LayerNorms,
    activations and two-hot decoding in float32 (autocast alone would leave them in bfloat16), and
    the planners' own arithmetic stays float32."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose {', '.join(DTYPES)}")
    low = DTYPES[dtype]
    return nullcontext() if low is None else torch.autocast(device_type=device.type, dtype=low)


def lower_precision(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """Store the model's weight matrices (every parameter of 2 or more dimensions outside normalization
    layers) in `dtype` once, so autocast need not convert them at every call; vectors and the
    normalizations' gains and offsets (ensembles stack them as matrices) stay float32. The model then
    runs only inside `precision(device, dtype)`."""
    low = DTYPES[dtype]
    if low is not None:
        for module in model.modules():
            if _is_norm(module):
                continue
            for parameter in module.parameters(recurse=False):
                if parameter.dim() >= 2 and parameter.is_floating_point():
                    parameter.data = parameter.data.to(low)
    return model


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.LayerNorm | EnsembleLayerNorm)


def plan_step(
    planner: Planner, obs: np.ndarray, generator: torch.Generator, device: torch.device, dtype: str = "float32"
) -> tuple[Plan, torch.Tensor]:
    """Encode one observation (obs_dim,) and plan: what a controller waits for at each step.
    Returns the plan and the latent it started from (1, Z)."""
    plans, z = plan_steps(planner, np.expand_dims(obs, 0), generator, device, dtype)
    return plans.episode(0), z


def plan_steps(
    planner: Planner, obs: np.ndarray, generator: Draws, device: torch.device, dtype: str = "float32"
) -> tuple[Plans, torch.Tensor]:
    """Encode the observations of E lockstep episodes (E, *obs_shape) and plan for all of them in one
    call. Returns the plans and the latents they started from (E, Z).

    Gradient-free planners run under inference mode; gradient planners get a normal tensor z so
    that autograd can differentiate with respect to their actions.
    """
    with precision(device, dtype):
        z = observe_batch(planner.model, obs, device).float()
        if planner.uses_gradients:
            return planner.plan_episodes(z.clone(), generator), z  # a clone outside inference mode is a normal tensor
        with torch.inference_mode():
            return planner.plan_episodes(z, generator), z


def _predictions(planner: Planner, z: torch.Tensor, plans: Plans) -> tuple[list[float | None], list[float | None]]:
    """(predicted returns, predicted discounted reward sums) of the executed plans from their latents
    z (E, Z), for the model-exploitation metric: `predict_plans` on the plans' sequences when the
    planner gives them, else its own numbers. Outside the timed region, and its model evaluations
    are not counted."""

    def listed(values: torch.Tensor | None) -> list[float | None]:
        return [None] * len(plans) if values is None else [float(v) for v in values]

    if plans.sequences is None:
        return listed(plans.predicted_returns), listed(plans.predicted_rewards)
    model = planner.model
    counted, work = model.model_evals, dict(getattr(model, "work", {}))
    with torch.inference_mode():
        returns, rewards = predict_plans(model, z, plans.sequences.detach().float())
    model.model_evals = counted
    if work:
        model.work.update(work)  # type: ignore[attr-defined]  # models that count more than evals
    return listed(returns), listed(rewards)


@dataclass
class _Episode:
    """What one episode of the loop has gathered so far."""

    seed: int
    obs: np.ndarray
    running: bool = True
    latencies: list[float] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)
    work: dict[str, list[float]] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)
    predicted: list[float | None] = field(default_factory=list)
    predicted_rewards: list[float | None] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    success: bool | None = None
    failed: str | None = None
    terminated: bool = False
    ended_at: float = 0.0


def run_episode(env: Env, planner: Planner, seed: int, device: torch.device, dtype: str = "float32") -> dict:
    """One seeded episode. Returns the record the store writes (minus the episode index)."""
    return run_episodes([env], planner, [seed], device, dtype)[0]


def run_episodes(
    envs: list[Env], planner: Planner, seeds: list[int], device: torch.device, dtype: str = "float32"
) -> list[dict]:
    """E seeded episodes in lockstep (E = len(envs), one environment each): at every step the planner
    is called once on all E observations. Returns one record per episode, in order.

    Each episode draws from its own generator seeded with its seed (`benchctl.draws`), so it plans as
    it would alone; an episode that ends early (success, a fall, a failure) leaves the batch: the
    planner and a filtering model drop its state and later calls plan for the running episodes only.
    Latency covers encode + plan (observation upload and action download included), the time a
    controller waits for its action: in lockstep, the time of the call for the episodes still running
    (records then carry `lockstep: E`). World-model evaluations are counted by the model, per episode.
    `dtype`: the precision planning runs in (`precision`); the exploitation prediction stays float32.

    A planner action that is not finite (a diverged model) is never sent to the simulator: the
    episode stops there and its record carries `failed` (why), with the return reached so far.
    So does an episode whose simulator gives up (SimulatorError).
    """
    model = planner.model
    count = len(envs)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    generator: Draws = generators[0] if count == 1 else EpisodeGenerators(generators)
    if getattr(model, "augment", False):  # the pixel shift draws from torch's global generator (official code)
        torch.manual_seed(seeds[0])
    rendered = [getattr(env, "render_seconds", None) for env in envs]
    timer = StepTimer(device)
    episodes = [_Episode(seed, env.reset(seed)) for env, seed in zip(envs, seeds, strict=True)]
    planner.reset()
    filtering = as_recurrent(model)
    if filtering is not None:  # blank histories; the filter draws from the episodes' generators
        filtering.begin_episode(generator)
    work: dict[str, int] = getattr(model, "work", None) or {}
    for episode in episodes:
        episode.counts = dict.fromkeys(planner.counted_info, 0)
        episode.work = {key: [] for key in work}
    active = list(range(count))  # the episodes still running, in order: the rows of each call
    start = time.perf_counter()
    for step in range(envs[0].episode_length):
        evals_before, work_before = model.model_evals, dict(work)
        t0 = timer.now()
        plans, z = plan_steps(planner, np.stack([episodes[e].obs for e in active]), generator, device, dtype)
        actions = plans.actions.detach().float().cpu().numpy()  # bfloat16 planning may hand back bfloat16
        latency = (timer.now() - t0) * 1e3
        if filtering is not None:  # the next filtering step conditions on what was executed
            filtering.executed(plans.actions)
        evals = (model.model_evals - evals_before) / len(active)
        stepped = []  # rows of this call whose episode took a step
        for row, e in enumerate(active):
            episode, env = episodes[e], envs[e]
            episode.latencies.append(latency)
            episode.evals.append(evals)
            for key, done in episode.work.items():
                done.append((work[key] - work_before[key]) / len(active))
            if not np.isfinite(actions[row]).all():
                episode.failed = f"non-finite action at step {step} (the planner or the model produced NaN/inf)"
            else:
                try:
                    result = env.step(actions[row])
                except SimulatorError as exc:
                    episode.failed = str(exc)
                else:
                    stepped.append(row)
                    for key in episode.counts:
                        episode.counts[key] += int(plans.info[key][row]) if key in plans.info else 0
                    episode.rewards.append(result.reward)
                    episode.obs = result.obs
                    if result.success is not None:
                        episode.success = result.success
                    episode.terminated = result.terminated
                    if result.done:
                        episode.running = False
            if episode.failed is not None:
                episode.running = False
            if not episode.running:
                episode.ended_at = time.perf_counter()
        if stepped:
            with precision(device, dtype):  # the model's own prediction, at the precision it planned with
                returns, reward_sums = _predictions(planner, z, plans)
            for row in stepped:
                episodes[active[row]].predicted.append(_finite_or_none(returns[row]))
                episodes[active[row]].predicted_rewards.append(_finite_or_none(reward_sums[row]))
        running = [row for row, e in enumerate(active) if episodes[e].running]
        if not running:
            break
        if len(running) < len(active):  # planning work for ended episodes would be wasted
            active = [active[row] for row in running]
            kept = [generators[e] for e in active]
            generator = kept[0] if len(kept) == 1 else EpisodeGenerators(kept)
            keep = torch.tensor(running, device=device)
            planner.keep_episodes(keep)
            if filtering is not None:
                filtering.keep_episodes(keep, generator)
    end = time.perf_counter()
    return [
        _record(episode, env, before, start, end, count)
        for episode, env, before in zip(episodes, envs, rendered, strict=True)
    ]


def _record(episode: _Episode, env: Env, rendered: float | None, start: float, end: float, lockstep: int) -> dict:
    """The store's record of one finished episode."""
    steps = len(episode.rewards)
    record: dict[str, Any] = {
        "return": float(sum(episode.rewards)),
        "success": episode.success,
        "length": steps,
        "wall_s": (episode.ended_at or end) - start,
        "latency_ms": _stats(episode.latencies),
        "model_evals_per_step": float(np.mean(episode.evals)),  # dynamics + reward steps (candidate x horizon step)
        "rewards": [round(r, 6) for r in episode.rewards],
    }
    if lockstep > 1:  # latency is that of one planner call for all the lockstep episodes
        record["lockstep"] = lockstep
    if rendered is not None:  # pixel suites: rendering, never part of the planning latency
        record["render_ms_per_step"] = (env.render_seconds - rendered) * 1e3 / max(1, steps + 1)  # type: ignore[attr-defined]
    if episode.terminated:  # ended by the environment before its time limit (HumanoidBench: the robot fell)
        record["terminated"] = True
    if episode.work:  # the rest of a step's work: value-head rows, policy rows, backward passes
        record["work_per_step"] = {key: float(np.mean(done)) for key, done in episode.work.items()}
    if episode.counts:  # e.g. Dream-MPC's steps where the uncertainty term rewarded disagreement
        record["info_counts"] = episode.counts
    if episode.failed is not None:
        record["failed"] = episode.failed
    if any(p is not None for p in episode.predicted):
        record["predicted_returns"] = [None if p is None else round(p, 6) for p in episode.predicted]
    if any(p is not None for p in episode.predicted_rewards):  # model exploitation: compare with realized rewards
        record["predicted_rewards"] = [None if p is None else round(p, 6) for p in episode.predicted_rewards]
    return record
