"""Dream-MPC (Spieler et al.): gradient-based MPC from policy proposals, with action reuse and an
uncertainty penalty (paper Alg. 1; Eqs. 2, 3, 5, 6; spec/planners.md section 5).

Default = the authors' released code: plain SGD with a global gradient-norm clip of 20, no clamp
inside the loop, candidates ranked by the objective *before* the last update, the uncertainty
u = mean * std over all value heads at (z_{h+1}, a_h) and at (z_H, pi(z_H)), not discounted,
computed without gradient (it only changes which candidate is chosen). `uncertainty_grad=true`
differentiates it, as Eq. 6 read literally does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import (
    discounted_sum,
    estimate_return,
    gradient_ascent,
    latent_rollout,
    policy_rollout,
    shift,
    terminal_action,
)


@dataclass
class DreamMPCConfig:
    horizon: int = option(3, "planning horizon H (TD-MPC2 default; Dream-MPC Tab. 7)")
    candidates: int = option(5, "policy proposals N optimized in parallel (num_pi_trajs, Tab. 7)")
    iterations: int = option(1, "gradient steps I per planning step (Tab. 7)")
    lr: float = option(0.1, "step size alpha of the plain SGD ascent (Tab. 7)")
    reuse: float = option(
        0.1,
        "reuse coefficient rho: a = rho * shifted previous + (1 - rho) * proposal (Eq. 3, Tab. 7)",
        at_least=0.0,
        at_most=1.0,
    )
    lambda_unc: float | None = option(
        None,
        "uncertainty coefficient lambda (Eq. 6); None = per backbone: 0.01 TD-MPC2, 0.1 BMPC (authors' runs)",
        at_least=0.0,
    )
    uncertainty_grad: bool = option(
        False, "differentiate the uncertainty penalty (Eq. 6 literally); code default: rank only"
    )
    proposal_noise: float | None = option(
        None,
        "None: N policy rollouts (Eq. 2); sigma_a: one policy rollout plus N(0, sigma_a^2) noise per candidate "
        "(Eq. 15, the Dreamer variant; Tab. 16: 0.2)",
        at_least=0.0,
    )
    grad_clip_norm: float = option(
        20.0, "global L2 clip of the (H, N, A) action gradient (authors' code reuses the training clip)"
    )

    def validate(self) -> str | None:
        if self.horizon < 1 or self.candidates < 1 or self.iterations < 1:
            return "horizon, candidates and iterations must be >= 1"
        if not 0.0 <= self.reuse <= 1.0:
            return "reuse must be in [0, 1]"
        if self.grad_clip_norm <= 0:
            return "grad_clip_norm must be > 0"
        return None


def default_lambda(family: str) -> float:
    return 0.1 if family == "bmpc" else 0.01


def uncertainty(model, z: torch.Tensor, a: torch.Tensor | None) -> torch.Tensor:
    """u = mean_m(value_m) * std_m(value_m) over every head, unbiased std: (N,)."""
    heads = model.value(z, a).squeeze(-1)  # (M, N)
    return heads.mean(0) * heads.std(0, unbiased=True)


@register
class DreamMPCPlanner(Planner):
    name = "dream_mpc"
    paper = "Dream-MPC (Spieler et al.), Alg. 1: gradient ascent on policy proposals, reuse, uncertainty penalty"
    Config = DreamMPCConfig
    uses_gradients = True
    counted_info = ("uncertainty_bonus",)

    def __init__(self, model, config: DreamMPCConfig):
        super().__init__(model, config)
        self.lambda_unc = config.lambda_unc if config.lambda_unc is not None else default_lambda(model.family)
        # Candidates are (H, E * N, A): each lockstep episode's N candidates in a block (E = 1 alone).
        self._previous: torch.Tensor | None = None  # last step's optimized candidates, clamped
        self.last_initial: torch.Tensor | None = None  # candidates before optimization
        self.last_candidates: torch.Tensor | None = None  # after optimization
        self.last_reward_sums: torch.Tensor | None = None  # (E * N,) discounted reward sums of the last objective
        self.last_penalty: torch.Tensor | None = None  # (E * N,) summed uncertainty u of the last objective

    def reset(self) -> None:
        self._previous = None
        self.last_penalty = None

    def keep_episodes(self, keep: torch.Tensor) -> None:
        if self._previous is not None:  # (H, E * N, A), each episode's N candidates in a block
            H, _, A = self._previous.shape
            blocks = self._previous.view(H, -1, self.config.candidates, A)
            self._previous = blocks[:, keep].reshape(H, -1, A)

    @classmethod
    def model_evals_per_step(cls, config: DreamMPCConfig, action_dim: int) -> int:
        return config.candidates * config.iterations * config.horizon

    @classmethod
    def effective_settings(cls, config: DreamMPCConfig, family: str, action_dim: int) -> dict:
        lam = config.lambda_unc if config.lambda_unc is not None else default_lambda(family)
        variant = "uncertainty differentiated (Eq. 6)" if config.uncertainty_grad else "uncertainty ranks only (code)"
        return {"lambda_unc": lam, "variant": variant if lam else "no uncertainty term"}

    def objective(self, z: torch.Tensor, actions: torch.Tensor, generator: Draws) -> torch.Tensor:
        """J (N,) of Eq. 6 as implemented: sum_h gamma^h R(z_h, a_h) - lambda u(z_{h+1}, a_h),
        plus gamma^H value_avg(z_H, pi(z_H)) - lambda u(z_H, pi(z_H)). z: (N, Z), actions: (H, N, A).
        The terminal policy noise is one draw shared by all candidates of an episode."""
        model, lam = self.model, self.lambda_unc
        rewards, latents = latent_rollout(model, z, actions)
        self.last_reward_sums = discounted_sum(rewards, model.discount).detach()  # (N,), for the exploitation metric
        z = latents[-1]
        final_action = terminal_action(model, z, generator, shared_noise=True)
        terminal = model.value_avg(z, final_action, generator).squeeze(1)
        ret = estimate_return(model, rewards, latents, terminal, model.discount)  # Dreamer: Vλ (Alg. 3)
        if not lam:
            return ret
        # All H + 1 uncertainty points in one ensemble pass: (z_{h+1}, a_h) for each h, then (z_H, pi(z_H)).
        with torch.enable_grad() if self.config.uncertainty_grad else torch.no_grad():
            points = torch.cat([*latents, z])  # z_1..z_H, then z_H again with pi(z_H)
            point_actions = torch.cat([*actions, final_action]) if final_action is not None else None
            penalty = uncertainty(model, points, point_actions).view(len(actions) + 1, -1).sum(0)
        self.last_penalty = penalty.detach()
        return ret - lam * penalty

    def initial_candidates(self, z: torch.Tensor, generator: Draws) -> torch.Tensor:
        """Policy proposals (Eq. 2, or Eq. 15's perturbed single rollout) mixed with the shifted
        previous candidates (Eq. 3): z (E, Z) -> (H, E * N, A)."""
        cfg = self.config
        E, N = z.shape[0], cfg.candidates
        with torch.no_grad():
            if cfg.proposal_noise is None:
                starts = z.expand(N, -1) if E == 1 else z.repeat_interleave(N, 0)
                proposals = policy_rollout(self.model, starts, cfg.horizon, generator)
            else:
                rollout = policy_rollout(self.model, z, cfg.horizon, generator)  # (H, E, A)
                shape = (cfg.horizon, E * N, self.model.action_dim)
                noise = draws.normal(generator, shape, 1, z.device)
                proposals = rollout.repeat_interleave(N, 1) + cfg.proposal_noise * noise
        if self._previous is None or cfg.reuse == 0:
            return proposals
        return cfg.reuse * shift(self._previous, "duplicate") + (1 - cfg.reuse) * proposals

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg = self.config
        z = z.detach()
        E, N = z.shape[0], cfg.candidates
        z_all = z.expand(N, -1) if E == 1 else z.repeat_interleave(N, 0)
        actions = self.initial_candidates(z, generator)
        self.last_initial = actions.detach().clone()
        ascent = gradient_ascent(
            lambda a: self.objective(z_all, a, generator),
            actions,
            cfg.iterations,
            cfg.lr,
            cfg.grad_clip_norm,
            model=self.model,
            episodes=E,
        )  # no clamp inside the loop: the released code clamps only what it executes
        ranking = ascent.values.view(E, N)
        best = ranking.argmax(1)  # (E,)
        rows = torch.arange(E, device=z.device)
        self.last_candidates = ascent.actions
        self._previous = ascent.actions.clamp(-1, 1)
        sequences = self._previous.view(cfg.horizon, E, N, -1)[:, rows, best]  # (H, E, A)
        info: dict[str, torch.Tensor] = {"best_candidate": best.float()}
        if self.lambda_unc and self.last_penalty is not None:
            # u = mean * std of the value heads: where the mean value is negative, -lambda u rewards
            # disagreement instead of penalizing it (spec/planners.md section 5). Counted per episode.
            info["uncertainty_bonus"] = (self.last_penalty.view(E, N)[rows, best] < 0).float()
        reward_sums = self.last_reward_sums
        return Plans(
            actions=sequences[0],
            predicted_returns=ranking[rows, best],
            predicted_rewards=None if reward_sums is None else reward_sums.view(E, N)[rows, best],
            info=info,
            sequences=sequences,
        )
