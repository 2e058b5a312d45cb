"""Planner-gradient quality (Dream-MPC App. D.2, Eq. 17; spec/planners.md section 8).

ESNR(g) = E_states[ sum_i E[g_i]^2 / sum_i Var[g_i] ], i over the H x A action coordinates, with
g = d/da of the undiscounted return of the H states the actions reach (tau = t+1 ... t+H, Eq. 17):
the H step rewards r(s_h, a_h), h < H, whose state part at h = 0 no action changes, plus the state
reward of s_H (the reward there at zero action). Pendulum-v1's reward is computed from the pre-step
state, so without that last term H = 1 would differentiate only the 0.001 u^2 action cost. Inner mean and variance:
over K gradient samples at one state, whose randomness is the planner's initialization (Grad-MPC:
N(0, 1) candidates; Dream-MPC: policy-sampled proposals). Outer mean: over states. A state whose
total variance is zero has an undefined SNR and is counted, not averaged.

All states and samples of one (model, planner, horizon) run as one batch: each row's return
depends only on its own actions, so one backward pass yields every sample's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchctl.agents.pendulum import PendulumModel, dynamics
from benchctl.planners.rollout import policy_rollout


def snr(grads: torch.Tensor) -> float | None:
    """grads (K, D) samples at one state -> sum_i mean_i^2 / sum_i var_i (unbiased), or None when the
    variance is zero or at the rounding level of the gradients' dtype (relative spread below 16 eps:
    an almost deterministic policy then gives only floating-point noise, not a signal-to-noise ratio)."""
    eps = torch.finfo(grads.dtype).eps
    g = grads.double()
    var = g.var(0, unbiased=True).sum()
    signal = g.mean(0).pow(2).sum()
    if float(var) <= float((16 * eps) ** 2 * signal) or float(var) == 0.0:
        return None
    return float(signal / var)


@dataclass
class GradientStats:
    """Per (model, planner, horizon, seed): ESNR over states with a defined SNR, gradient size."""

    esnr: float | None
    esnr_corrected: float | None  # mean over states of SNR - 1/K: E[mean^2] = mu^2 + var/K biases it up
    undefined_states: int
    grad_norm_mean: float  # mean over states and samples of ||g||_2
    grad_norm_std: float  # std over states and samples of ||g||_2
    grad_variance: float  # mean over states of sum_i Var[g_i]


def stats_from(grads: torch.Tensor) -> GradientStats:
    """grads (S, K, D) -> statistics over S states of K samples each."""
    values = [snr(g) for g in grads]
    defined = [v for v in values if v is not None]
    norms = grads.norm(dim=-1)
    bias = 1.0 / grads.shape[1]
    return GradientStats(
        esnr=float(sum(defined) / len(defined)) if defined else None,
        esnr_corrected=float(sum(defined) / len(defined)) - bias if defined else None,
        undefined_states=len(values) - len(defined),
        grad_norm_mean=float(norms.mean()),
        grad_norm_std=float(norms.std()),
        grad_variance=float(grads.var(1, unbiased=True).sum(-1).mean()),
    )


def learned_gradients(model, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """d/da of the predicted return of the reached states, sum_{h<H} R(z_h, a_h) + R(z_H, 0) (no
    discount, no value): actions (H, N, A) -> same."""
    actions = actions.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z, total = z0, 0.0
        for a in actions:
            z, r = model.step(z, a)
            total = total + r.sum()
        total = total + model.step(z, torch.zeros_like(actions[0]))[1].sum()  # the last reached state
        (grad,) = torch.autograd.grad(total, actions)
    return grad


def true_gradients(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """d/da of Pendulum-v1's true return of the reached states, sum_{h<H} r(s_h, a_h) + r(s_H, 0),
    from states (N, 2) under actions (H, N, 1) in [-1, 1] units."""
    actions = actions.detach().clone().double().requires_grad_(True)
    with torch.enable_grad():
        s, total = states.double(), torch.zeros((), dtype=torch.float64)
        for a in actions:
            s, r = dynamics(s, PendulumModel.max_torque_of(a))
            total = total + r.sum()
        total = total + dynamics(s, torch.zeros_like(s[:, :1]))[1].sum()  # the last reached state
        (grad,) = torch.autograd.grad(total, actions)
    return grad.float()


def policy_proposals_true(agent, states: torch.Tensor, horizon: int, generator: torch.Generator) -> torch.Tensor:
    """Sampled policy actions of a learned agent rolled through the TRUE pendulum: states (N, 2) -> (H, N, 1)."""
    out = []
    s = states.double()
    with torch.no_grad():
        for _ in range(horizon):
            obs = torch.stack([torch.cos(s[:, 0]), torch.sin(s[:, 0]), s[:, 1]], dim=1).float()
            a = agent.policy(agent.encode(obs), generator=generator)[0]
            out.append(a)
            s, _ = dynamics(s, PendulumModel.max_torque_of(a))
    return torch.stack(out)


@dataclass
class StudyConfig:
    horizons: tuple[int, ...] = (1, 2, 3, 5, 10, 15, 20, 30)  # Dream-MPC Fig. 13/14
    samples: int = 32  # K gradient samples per state (>= 32, our protocol)
    states: int = 100  # states per seed
    # reset: Pendulum-v1's start distribution (theta ~ U(-pi, pi), theta_dot ~ U(-1, 1)); visited:
    # states of `episodes` episodes of the agent's policy (upright states dominate once it balances,
    # where the unstable equilibrium drives the fall and the gradients).
    start_states: str = "reset"
    episodes: int = 10
    # Grad-MPC's initial candidates in Pendulum's own action units: N(0, torque_std^2) N m. 2.0 is
    # N(0, 1) in [-1, 1] units, which puts ~32% of torques beyond the 2 N m limit, where the clip
    # zeroes the gradient.
    torque_std: float = 1.0
    seeds: tuple[int, ...] = (1, 2, 3)
    planners: tuple[str, ...] = ("grad_mpc", "dream_mpc")

    def protocol(self, agent: str | None) -> dict:
        return {
            "objective": "undiscounted return of the H reached states, sum_{h<H} r(s_h, a_h) + r(s_H, 0) "
            "(Eq. 17, tau = t+1..t+H), gradient w.r.t. the H x A actions",
            "esnr": "mean over states of sum_i mean_i^2 / sum_i var_i (Eq. 17); var unbiased over samples; "
            "states whose variance is zero or at float rounding level (relative spread < 16 eps) are undefined",
            "esnr_corrected": f"ESNR - 1/K (K = {self.samples}): the squared sample mean overestimates the "
            "squared mean by var/K per coordinate",
            "samples_per_state": self.samples,
            "states_per_seed": (
                f"{self.states} Pendulum-v1 reset states (theta ~ U(-pi, pi), theta_dot ~ U(-1, 1))"
                if self.start_states == "reset"
                else f"{self.states}, uniform over the states of {self.episodes} Pendulum-v1 episodes "
                + ("of the agent's policy (mean action)" if agent else "of uniform random actions")
            ),
            "seeds": list(self.seeds),
            "resampled": f"grad_mpc: the initial candidates, torque ~ N(0, {self.torque_std:g}^2) N m; dream_mpc: "
            "the policy-sampled proposals (rolled through the model being differentiated); states are fixed per seed",
            "ground_truth": "gymnasium Pendulum-v1 in torch (float64); torques beyond +-2 and speeds at +-8 are "
            "clipped, which zeroes those gradients",
            "learned_model": agent or "none given",
        }


def start_states(agent, config: StudyConfig, seed: int) -> torch.Tensor:
    """(states, 3) observations: Pendulum-v1 reset states, or states visited by episodes (the
    agent's mean action, or uniform random actions without an agent)."""
    from benchctl.suites import load_suite, make_env

    task = load_suite("pendulum").task("Pendulum-v1")
    env = make_env(task)
    if config.start_states == "reset":
        return torch.from_numpy(np.stack([env.reset(seed=10_000 * seed + i) for i in range(config.states)]))
    generator = torch.Generator().manual_seed(seed)
    seen = []
    for episode in range(config.episodes):
        obs = env.reset(seed=1000 * seed + episode)
        for _ in range(task.episode_length):
            seen.append(obs)
            if agent is None:
                action = (torch.rand(1, generator=generator) * 2 - 1).numpy()
            else:
                with torch.no_grad():
                    action = agent.policy(agent.encode(torch.from_numpy(obs)[None]), eps=torch.zeros(1, 1))[1][
                        0
                    ].numpy()
            result = env.step(action)
            obs = result.obs
            if result.done:
                break
    pick = torch.randperm(len(seen), generator=generator)[: config.states]
    return torch.from_numpy(np.stack(seen))[pick]


def run_study(agent, config: StudyConfig, agent_label: str | None = None) -> dict:
    """Every (model, planner, horizon, seed) of the study; `agent` is a learned Pendulum-v1 world
    model with a policy, or None (then only Grad-MPC on the ground truth is possible)."""
    rows = []
    K = config.samples
    truth = PendulumModel()
    for seed in config.seeds:
        obs = start_states(agent, config, seed)
        S = len(obs)
        obs_k = obs.repeat_interleave(K, dim=0)
        states_k = truth.encode(obs_k)
        z_k = None
        if agent is not None:
            with torch.no_grad():
                z_k = agent.encode(obs_k)
        for horizon in config.horizons:
            for planner in config.planners:
                generator = torch.Generator().manual_seed(seed * 1000 + horizon)
                for model_name in ("ground_truth", "learned"):
                    if model_name == "learned" and agent is None:
                        continue
                    if planner == "dream_mpc" and agent is None:
                        continue
                    if planner == "grad_mpc":  # torque_std N m in [-1, 1] units (torque = 2 a)
                        scale = config.torque_std / float(PendulumModel.max_torque_of(torch.ones(1)))
                        actions = scale * torch.randn(horizon, S * K, 1, generator=generator)
                    elif model_name == "ground_truth":
                        actions = policy_proposals_true(agent, states_k, horizon, generator)
                    else:
                        assert agent is not None and z_k is not None  # the learned model is skipped without one
                        with torch.no_grad():
                            actions = policy_rollout(agent, z_k, horizon, generator)
                    if model_name == "ground_truth":
                        grads = true_gradients(states_k, actions)
                    else:
                        assert agent is not None and z_k is not None
                        grads = learned_gradients(agent, z_k, actions)
                    per_state = grads.permute(1, 0, 2).reshape(S, K, -1)  # (S, K, H * A)
                    stats = stats_from(per_state)
                    rows.append(
                        {"model": model_name, "planner": planner, "horizon": horizon, "seed": seed, "samples": K}
                        | stats.__dict__
                    )
    return {"protocol": config.protocol(agent_label), "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean +- std over seeds per (model, planner, horizon); ESNR over the seeds where it is defined."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["planner"], r["horizon"]), []).append(r)
    out = []
    for (model, planner, horizon), rs in groups.items():
        esnr = [r["esnr"] for r in rs if r["esnr"] is not None]
        out.append(
            {
                "model": model,
                "planner": planner,
                "horizon": horizon,
                "seeds": len(rs),
                "esnr_mean": float(np.mean(esnr)) if esnr else None,
                "esnr_std": float(np.std(esnr)) if esnr else None,
                "esnr_corrected_mean": float(np.mean(esnr) - 1.0 / rs[0]["samples"]) if esnr else None,
                "undefined_states": int(sum(r["undefined_states"] for r in rs)),
                "grad_norm_mean": float(np.mean([r["grad_norm_mean"] for r in rs])),
                # the spread over seeds of each seed's mean norm (not the spread of the gradients)
                "grad_norm_seed_std": float(np.std([r["grad_norm_mean"] for r in rs])),
                "grad_variance": float(np.mean([r["grad_variance"] for r in rs])),
            }
        )
    return out
