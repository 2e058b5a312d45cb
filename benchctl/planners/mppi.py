"""MPPI exactly as TD-MPC2 plans (Hansen et al. 2024; official `TDMPC2._plan` / `_estimate_value`).

Per step: 24 policy-prior trajectories fixed for all iterations, 488 Gaussian samples around a
mean warm-started from the previous step's mean (shifted), I iterations of elite refitting with
exponential weights, and the executed action is the first action of one elite drawn with
probabilities = weights (Gumbel-max). See spec/planners.md section 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl.planners.base import Plan, Planner, option, register
from benchctl.planners.rollout import policy_rollout, reward_sum, terminal_value


@dataclass
class MPPIConfig:
    horizon: int = option(3, "planning horizon H (TD-MPC2 config.yaml; Dream-MPC Tab. 5)")
    iterations: int = option(6, "MPPI iterations I; +2 when action_dim >= 20 (TD-MPC2 config: dog, humanoid, H1)")
    num_samples: int = option(512, "candidate sequences per iteration, policy trajectories included (Tab. 5)")
    num_pi_trajs: int = option(24, "sequences sampled from the policy prior, fixed across iterations (Tab. 5)")
    num_elites: int = option(64, "elites refitted each iteration (Tab. 5)")
    min_std: float = option(0.05, "lower clamp of the sampling std (Tab. 5)")
    max_std: float = option(2.0, "initial sampling std and its upper clamp (Tab. 5)")
    temperature: float = option(0.5, "multiplies the value in exp(temperature * (V - max V)): an inverse temperature")
    eval_noise: bool = option(False, "add std[0] * N(0, I) to the action, as the official training acting does")

    def validate(self) -> str | None:
        if self.horizon < 1 or self.iterations < 1:
            return "horizon and iterations must be >= 1"
        if not 0 <= self.num_pi_trajs < self.num_samples:
            return "num_pi_trajs must be >= 0 and below num_samples"
        if not 1 <= self.num_elites <= self.num_samples:
            return "num_elites must be between 1 and num_samples"
        if not 0 < self.min_std <= self.max_std:
            return "need 0 < min_std <= max_std"
        return None


def effective_iterations(config: MPPIConfig, action_dim: int) -> int:
    return config.iterations + (2 if action_dim >= 20 else 0)


def gumbel_max(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index drawn with probabilities `probs` (K,): argmax(log p + Gumbel noise)."""
    gumbel = -torch.empty_like(probs).exponential_(generator=generator).log()
    return torch.argmax(probs.log() + gumbel)


@register
class MPPIPlanner(Planner):
    name = "mppi"
    paper = "TD-MPC2 (Hansen et al., ICLR 2024), MPPI with policy-prior samples"
    Config = MPPIConfig

    def __init__(self, model, config: MPPIConfig):
        super().__init__(model, config)
        self._prev_mean: torch.Tensor | None = None  # (H, A), the last step's final mean
        self.last_reward_sums: torch.Tensor | None = None  # (N,) discounted reward sums of the last evaluation

    def reset(self) -> None:
        self._prev_mean = None

    @classmethod
    def model_evals_per_step(cls, config: MPPIConfig, action_dim: int) -> int:
        return config.num_samples * effective_iterations(config, action_dim) * config.horizon

    def estimate_value(self, z: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Discounted H-step model return plus the terminal value (`_estimate_value`).

        z: (N, Z), the start latent per candidate; actions: (H, N, A) -> values (N,).
        """
        ret, z_end = reward_sum(self.model, z, actions, self.model.discount)
        self.last_reward_sums = ret  # (N,), kept for the exploitation metric
        return ret + self.model.discount ** len(actions) * terminal_value(self.model, z_end, generator)

    def plan(self, z: torch.Tensor, generator: torch.Generator) -> Plan:
        cfg, model = self.config, self.model
        H, N, P, A = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, model.action_dim
        device = z.device
        actions = torch.empty(H, N, A, device=device)
        if P:  # sampled once, kept through every iteration
            actions[:, :P] = policy_rollout(model, z.expand(P, -1), H, generator)
        mean = torch.zeros(H, A, device=device)
        std = torch.full((H, A), cfg.max_std, device=device)
        if self._prev_mean is not None:  # warm start; the std always restarts at max_std
            mean[:-1] = self._prev_mean[1:]
        z_all = z.expand(N, -1)
        for _ in range(effective_iterations(cfg, A)):
            noise = torch.randn(H, N - P, A, generator=generator, device=device)
            actions[:, P:] = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1, 1)
            value = self.estimate_value(z_all, actions, generator).nan_to_num(0.0)
            elite_value, elite_idx = torch.topk(value, cfg.num_elites, dim=0)
            elite_actions = actions[:, elite_idx]  # (H, K, A)
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max()))
            score = score / score.sum()
            weights = score.view(1, -1, 1)
            mean = (weights * elite_actions).sum(1) / (score.sum() + 1e-9)
            std = ((weights * (elite_actions - mean.unsqueeze(1)) ** 2).sum(1) / (score.sum() + 1e-9)).sqrt()
            std = std.clamp(cfg.min_std, cfg.max_std)
        chosen = gumbel_max(score, generator)
        action = elite_actions[0, chosen]
        if cfg.eval_noise:
            action = action + std[0] * torch.randn(A, generator=generator, device=device)
        self._prev_mean = mean
        return Plan(
            action=action.clamp(-1, 1),
            predicted_return=float(elite_value[chosen]),
            predicted_rewards=float(self.last_reward_sums[elite_idx[chosen]]),
            info={"std0": float(std[0].mean())},
        )
