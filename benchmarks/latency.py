"""Planning latency per step on the ms5 reference agent (CPU, 2 threads by default).

Prints median and p95 ms per planning step (encode + plan, as `benchctl eval` times it) for each
planner, next to a reference run in the same process: MPPI written the straightforward way
(separate dynamics/reward passes, all value heads decoded, then two picked), i.e. the official
code's arithmetic. The official TD-MPC2 code measured ~570 ms per MPPI step on this 2-core machine.

Then MPPI against its GEMM floor (the same matrix products alone, timed alternately), in float32
and in bfloat16 (`--dtype bfloat16`: torch's autocast), and against the GEMM floor plus the step's
LayerNorm + Mish alone (float32 in both modes: in bfloat16 they do not shrink). --fused-bound: the
bfloat16 floor plus the step's elementwise work with each layer's fused into one compiled pass, the
least a bfloat16 step can take next to its products.

    python benchmarks/latency.py [--checkpoint PATH] [--threads 2] [--calls 30] [--planners policy,mppi] [--fused-bound]
    python benchmarks/latency.py --pixels [--threads 1] [--task cheetah-run]

--pixels: a model-size-5 pixel agent (random weights; conv encoder on 3 stacked 64x64 RGB frames,
latent 512) planning with policy, mppi and dream_mpc from real rendered observations, the random
shift on as in `benchctl eval`; then the `dmc-pixels` environment's steps and renders per second,
next to the same task's state environment (the render is the difference).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchctl.agents import load_checkpoint
from benchctl.agents.layers import SimNorm, mish
from benchctl.evaluate import lower_precision, plan_step
from benchctl.machine import bfloat16_units, cpu_name
from benchctl.planners import make_planner, registry, resolve_config
from benchctl.planners.mppi import MPPIPlanner, effective_iterations
from benchctl.runtime import keep_freed_memory

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tdmpc2-ms5-reacher-easy.pt"


class StraightforwardMPPI(MPPIPlanner):
    """Reference: same algorithm, value estimate computed as the official `_estimate_value` does."""

    name = "mppi-reference"

    def estimate_value(self, z, actions, generator):
        ret, discount = 0.0, 1.0
        z = z.contiguous()
        for a in actions:
            reward = self.model.reward(z, a)
            z = self.model.next(z, a)
            ret = ret + discount * reward
            discount *= self.model.discount
        heads = self.model.value(z, self.model.policy(z, generator=generator)[0])  # all heads, then two
        pick = torch.randperm(heads.shape[0], generator=generator)[:2]
        return (ret + discount * heads[pick].mean(0)).squeeze(1)


def gemm_floor(model, config, dtype: torch.dtype) -> Callable[[], None]:
    """The matrix products of one MPPI step and nothing else: per iteration and horizon step the
    dynamics and reward MLPs on all samples, then the policy and two Q heads at the horizon; the policy
    trajectories' policy and dynamics MLPs once. Random weights of the model's shapes, in `dtype`."""
    d = model.dims
    z, a, m, bins = d.latent_dim, d.action_dim, d.mlp_dim, d.num_bins
    n, horizon, iterations = config.num_samples, config.horizon, effective_iterations(config, a)

    def mlp(i: int, o: int) -> list[torch.Tensor]:
        return [torch.randn(m, i, dtype=dtype), torch.randn(m, m, dtype=dtype), torch.randn(o, m, dtype=dtype)]

    dynamics, reward, policy, q = mlp(z + a, z), mlp(z + a, bins), mlp(z, 2 * a), mlp(z + a, bins)
    za, zs = torch.randn(n, z + a, dtype=dtype), torch.randn(n, z, dtype=dtype)
    prior_za, prior_z = za[: config.num_pi_trajs], zs[: config.num_pi_trajs]

    def run(weights: list[torch.Tensor], x: torch.Tensor) -> None:
        h = F.linear(x, weights[0])
        h = F.linear(h, weights[1])
        F.linear(h, weights[2])

    def step() -> None:
        for _ in range(horizon):  # the policy trajectories, once per step
            run(policy, prior_z)
            run(dynamics, prior_za)
        for _ in range(iterations):
            for _ in range(horizon):
                run(dynamics, za)
                run(reward, za)
            run(policy, zs)
            run(q, za)
            run(q, za)

    return step


def activation_floor(model, config) -> Callable[[], None]:
    """The LayerNorm + Mish of one MPPI step's hidden layers and nothing else, in float32 as the models
    compute them after bfloat16 products too: every hidden activation of `gemm_floor`'s products,
    (rows, mlp_dim) each. In bfloat16 the products halve while these stay."""
    d = model.dims
    m = d.mlp_dim
    n, horizon, iterations = config.num_samples, config.horizon, effective_iterations(config, d.action_dim)
    weight, bias = torch.ones(m), torch.zeros(m)
    samples, prior = torch.randn(n, m), torch.randn(config.num_pi_trajs, m)

    def hidden(x: torch.Tensor, layers: int = 2) -> None:
        for _ in range(layers):
            mish(F.layer_norm(x, (m,), weight, bias))

    def step() -> None:
        for _ in range(horizon):  # policy trajectories: policy and dynamics MLPs
            hidden(prior, 4)
        for _ in range(iterations):
            for _ in range(horizon):
                hidden(samples, 4)  # dynamics and reward
            hidden(samples, 6)  # policy and two Q heads

    return step


def fused_elementwise(model, config) -> Callable[[], None]:
    """The elementwise work one MPPI step cannot skip, each part by its fastest implementation here:
    LayerNorm + Mish of every hidden activation of `activation_floor` and the two-hot decode of each
    reward and Q head fused into one pass each by torch.compile (inductor: bfloat16 in, float32
    inside, bfloat16 out, no separate conversions); LayerNorm + SimNorm of each dynamics output as the
    model runs it (inductor's grouped softmax is slower than SimNorm's transposed one). Added to the
    bfloat16 GEMM floor it bounds how close to its products a bfloat16 step can come, the planner's own
    arithmetic aside."""
    d = model.dims
    m, n, pi_rows = d.mlp_dim, config.num_samples, config.num_pi_trajs
    horizon, iterations = config.horizon, effective_iterations(config, d.action_dim)
    simnorm = SimNorm(d.simnorm_dim)

    def ln_mish(x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), x.shape[-1:])
        e = torch.exp(torch.clamp(y, max=20.0))
        e = e * (e + 2)
        return (y - 2 * y / (e + 2)).to(x.dtype)

    def decode(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        x = (torch.softmax(logits.float(), -1) * bins).sum(-1, keepdim=True)
        return torch.sign(x) * (torch.exp(torch.abs(x)) - 1)

    def latent_pass(x: torch.Tensor) -> torch.Tensor:
        return simnorm(F.layer_norm(x.float(), x.shape[-1:]))

    hidden_pass, decode_pass = torch.compile(ln_mish, dynamic=False), torch.compile(decode, dynamic=False)
    bins = torch.linspace(-10, 10, d.num_bins)
    hidden, prior_hidden = torch.randn(n, m).bfloat16(), torch.randn(pi_rows, m).bfloat16()
    latent, prior_latent = torch.randn(n, d.latent_dim).bfloat16(), torch.randn(pi_rows, d.latent_dim).bfloat16()
    logits = torch.randn(n, d.num_bins).bfloat16()

    def step() -> None:
        for _ in range(horizon):  # policy trajectories: policy and dynamics MLPs
            for _ in range(4):
                hidden_pass(prior_hidden)
            latent_pass(prior_latent)
        for _ in range(iterations):
            for _ in range(horizon):  # dynamics and reward
                for _ in range(4):
                    hidden_pass(hidden)
                latent_pass(latent)
                decode_pass(logits, bins)
            for _ in range(6):  # policy and two Q heads
                hidden_pass(hidden)
            for _ in range(2):
                decode_pass(logits, bins)

    return step


def time_planner(
    planner, observations: np.ndarray, max_calls: int, budget_s: float, warmup: int = 2, dtype: str = "float32"
) -> np.ndarray:
    """ms per planning step (encode + plan, as `benchctl eval` times it) after `warmup` steps;
    at most `max_calls` steps or about `budget_s` seconds, whichever comes first (at least 3)."""
    generator = torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    times: list[float] = []
    start_all = time.perf_counter()
    for i in range(warmup + max_calls):
        start = time.perf_counter()
        plan_step(planner, observations[i % len(observations)], generator, device, dtype)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
            if len(times) >= 3 and time.perf_counter() - start_all > budget_s:
                break
    return np.asarray(times)


def pixel_rows(task: str, calls: int, budget: float) -> None:
    """Planning ms per step of a model-size-5 pixel agent, and the pixel environment's speed."""
    from benchctl.envs.dmc import DMCEnv
    from benchctl.suites import load_suite, make_env
    from benchctl.train.tdmpc2 import new_model

    spec = load_suite("dmc-pixels").task(task)
    env = make_env(spec)
    state_env = DMCEnv(spec.params["domain"], spec.params["task"], spec.episode_length, spec.action_repeat)
    model = new_model(env.obs_dim, env.action_dim, 5, obs_shape=env.obs_shape).requires_grad_(False).eval()
    model.discount = 0.99
    rng = np.random.default_rng(0)
    observations = [env.reset(seed=1)]
    for _ in range(31):
        observations.append(env.step(rng.uniform(-1, 1, env.action_dim).astype(np.float32)).obs)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"pixel agent: model size 5 ({parameters:,} parameters), obs {env.obs_shape} uint8, random shift on")
    print(f"dmc-pixels {task}, rendering with {env.gl}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'planner':<16}{'median ms':>11}{'p95 ms':>10}{'WM evals/step':>15}")
    for name in ("policy", "mppi", "dream_mpc"):
        planner = make_planner(name, model, resolve_config(name, {}))
        times = time_planner(planner, np.stack(observations), calls if name == "mppi" else 10 * calls, budget)
        evals = planner.model_evals_per_step(planner.config, model.action_dim)
        print(f"{name:<16}{np.median(times):>11.2f}{np.percentile(times, 95):>10.2f}{evals:>15,.0f}")
    envs = [("dmc-pixels", env), ("state, same task", state_env)]
    print(f"{'environment':<16}{'steps/s':>11}{'renders/s':>11}{'render ms':>11}")
    for label, e in envs:
        e.reset(seed=2)
        rendered = getattr(e, "render_seconds", 0.0)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < budget / 4 or steps < 20:
            if e.step(rng.uniform(-1, 1, e.action_dim).astype(np.float32)).done:
                e.reset(seed=2)
            steps += 1
        elapsed = time.perf_counter() - start
        render = getattr(e, "render_seconds", 0.0) - rendered
        renders = f"{steps / render:>11.1f}{render / steps * 1e3:>11.2f}" if render else f"{'-':>11}{'-':>11}"
        print(f"{label:<16}{steps / elapsed:>11.1f}{renders}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30, help="timed planning steps per planner (at most)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per planner (at least 3 steps)")
    parser.add_argument("--planners", default=",".join(registry()))
    parser.add_argument("--pixels", action="store_true", help="a model-size-5 pixel agent and the pixel environment")
    parser.add_argument("--task", default="cheetah-run", help="--pixels: a dmc-pixels task")
    parser.add_argument(
        "--fused-bound",
        action="store_true",
        help="also the bfloat16 GEMM floor plus the elementwise work fused by torch.compile (needs a C++ compiler)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the benchctl command does
    if args.pixels:
        pixel_rows(args.task, args.calls, args.budget)
        return
    model = load_checkpoint(args.checkpoint)
    model.discount = 0.99
    observations = np.random.default_rng(1).standard_normal((64, model.dims.obs_dim)).astype(np.float32)
    print(f"checkpoint: {args.checkpoint.name} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {args.threads} threads")
    print(f"{'planner':<16}{'median ms':>11}{'p95 ms':>10}{'WM evals/step':>15}")
    rows = {}
    planners = [(n, make_planner(n, model, resolve_config(n, {}))) for n in args.planners.split(",")]
    planners.append(("mppi-reference", StraightforwardMPPI(model, resolve_config("mppi", {}))))
    for name, planner in planners:
        calls = args.calls if planner.model_evals_per_step(planner.config, model.action_dim) else 10 * args.calls
        times = time_planner(planner, observations, calls, args.budget)
        before = model.model_evals
        plan_step(planner, observations[0], torch.Generator().manual_seed(0), torch.device("cpu"))
        evals = model.model_evals - before
        rows[name] = np.median(times)
        print(f"{name:<16}{np.median(times):>11.2f}{np.percentile(times, 95):>10.2f}{evals:>15,.0f}")
    if "mppi" in rows:
        print(
            f"mppi / reference: {rows['mppi'] / rows['mppi-reference']:.2f}x time "
            f"(target: <= 450 ms; official code ~570 ms here)"
        )
        gemm_rows(model, observations, args.calls, args.budget, args.fused_bound)


def gemm_rows(model, observations: np.ndarray, calls: int, budget: float, fused: bool = False) -> None:
    """benchctl's MPPI step against the GEMM floor of the same step, float32 and bfloat16, each pair
    timed alternately in this process (the machine's drift hits both)."""
    config = resolve_config("mppi", {})
    print(
        f"{'dtype':<10}{'mppi ms':>9}{'GEMM floor ms':>15}{'ratio':>7}{'LN+Mish ms':>12}{'ratio to both':>15}"
        "   (goal: ratio <= 1.2)"
    )
    activations = activation_floor(model, config)
    dtypes = [("float32", torch.float32), ("bfloat16", torch.bfloat16)]
    if bfloat16_units() is False:  # emulated bfloat16 products: its rows would time the emulation
        print(f"bfloat16: skipped, {cpu_name()} has no bfloat16 matrix instructions (torch emulates them)")
        dtypes, fused = dtypes[:1], False
    for name, dtype in dtypes:
        planner = make_planner("mppi", lower_precision(copy.deepcopy(model), name), config)
        floor = gemm_floor(model, config, dtype)
        ours, gemm, act = [], [], []
        for _ in range(3):  # interleaved rounds
            ours.append(np.median(time_planner(planner, observations, max(3, calls // 3), budget / 3, dtype=name)))
            gemm.append(_ms(floor))
            act.append(_ms(activations))
        mine, products, rest = np.median(ours), np.median(gemm), np.median(act)
        both = mine / (products + rest)
        print(f"{name:<10}{mine:>9.1f}{products:>15.1f}{mine / products:>7.2f}{rest:>12.1f}{both:>15.2f}")
    if fused:
        fused_bound(model, config)


def fused_bound(model, config, rounds: int = 5) -> None:
    """The bfloat16 GEMM floor against the floor plus `fused_elementwise`, timed alternately."""
    floor, elementwise = gemm_floor(model, config, torch.bfloat16), fused_elementwise(model, config)
    start = time.perf_counter()
    elementwise()  # compiles each fused pass once
    print(f"fused elementwise passes compiled in {time.perf_counter() - start:.1f} s")
    products, rest = [], []
    for _ in range(rounds):
        products.append(_ms(floor))
        rest.append(_ms(elementwise))
    gemm, fused = np.median(products), np.median(rest)
    print(
        f"bfloat16 GEMM floor {gemm:.1f} ms + fused elementwise {fused:.1f} ms = {(gemm + fused) / gemm:.2f}x the "
        "floor: the least a bfloat16 step can take against its products (goal: mppi <= 1.2x)"
    )


def _ms(step: Callable[[], None], repeats: int = 3) -> float:
    """Mean ms of `repeats` calls after one warm call."""
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) * 1e3 / repeats


if __name__ == "__main__":
    main()
