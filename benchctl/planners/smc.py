"""Sequential Monte Carlo planning with a policy proposal (Byravan et al. 2022, Alg. 2;
spec/planners.md section 7a).

S particles start at z; for t = 0..H (H + 1 steps) each samples a ~ pi(z), steps the model, and
gets the weight exp(A / tau) with advantage A = r (or r + V(z') - V(z) with `value=true`, our
stated reading: the paper leaves A undefined); particles are resampled multinomially every step,
whole histories copied. The first action of a uniformly drawn survivor is executed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register


@dataclass
class SMCConfig:
    particles: int = option(250, "S, particles (Byravan et al. App. F, learning setting)")
    horizon: int = option(10, "H; the rollout takes H + 1 model steps (Alg. 2)", at_least=0)
    temperature: float = option(0.01, "tau in w = exp(A / tau) (App. F; 0.1 for Ant walking)")
    value: bool = option(
        False, "advantage r + V(z') - V(z) with V(z) = mean over value_samples policy actions of value_avg (App. F.2)"
    )
    value_samples: int = option(10, "policy actions averaged for V(z) of Q-value agents (App. F.2)")

    def validate(self) -> str | None:
        if self.particles < 1 or self.horizon < 0:
            return "particles must be >= 1 and horizon >= 0"
        if self.temperature <= 0:
            return "temperature must be > 0"
        return None


@register
class SMCPlanner(Planner):
    name = "smc"
    paper = "SMC planner with a policy proposal (Byravan et al. 2022), Alg. 2"
    Config = SMCConfig

    @classmethod
    def model_evals_per_step(cls, config: SMCConfig, action_dim: int) -> int:
        return config.particles * (config.horizon + 1)

    def state_value(self, z: torch.Tensor, generator: Draws) -> torch.Tensor:
        """V(z) (E * S,): V heads directly, or the mean of value_avg(z, a_j) over policy samples a_j.
        z: (E * S, Z), each lockstep episode's S particles in a block."""
        model = self.model
        if not model.value_uses_action:
            return model.value_avg(z, None, generator).squeeze(1)
        k, E = self.config.value_samples, draws.episode_count(generator)
        S = z.shape[0] // E
        zk = z.view(E, 1, S, -1).expand(E, k, S, -1).reshape(E * k * S, -1)  # per episode: k copies of its S
        values = model.value_avg(zk, model.policy(zk, generator=generator)[0], generator)
        return values.view(E, k, S).mean(1).reshape(E * S)

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg, model = self.config, self.model
        E, S = z.shape[0], cfg.particles
        zs = z.expand(S, -1) if E == 1 else z.repeat_interleave(S, 0)  # (E * S, Z)
        first_row = (torch.arange(E, device=z.device) * S).repeat_interleave(S)  # each particle's episode block
        value_now = self.state_value(zs, generator) if cfg.value else torch.zeros(E * S, device=z.device)
        returns = torch.zeros(E * S, device=z.device)  # each particle's predicted reward so far
        sequences = torch.empty(0, E * S, model.action_dim, device=z.device)  # (h, E * S, A): each particle's actions
        for _ in range(cfg.horizon + 1):
            a = model.policy(zs, generator=generator)[0]
            z_next, reward = model.step(zs, a)
            advantage = reward.squeeze(1)
            if cfg.value:  # the one-step advantage r + gamma V(z') - V(z) (Alg. 2)
                value_next = self.state_value(z_next, generator)
                advantage = advantage + model.discount * value_next - value_now
            weights = torch.softmax(advantage.view(E, S) / cfg.temperature, dim=1)
            ancestors = draws.multinomial(weights, S, generator).view(E * S) + first_row  # within each episode
            sequences = torch.cat([sequences, a.unsqueeze(0)])[:, ancestors]
            zs = z_next[ancestors]
            returns = returns[ancestors] + reward.squeeze(1)[ancestors]
            if cfg.value:
                value_now = value_next[ancestors]
        pick = draws.randint(generator, S, 1, z.device) + first_row[::S]  # (E,): a uniformly drawn survivor
        # its H actions, the window the metric compares (H = 0: the one action it took)
        plan = sequences[: max(cfg.horizon, 1), pick].clamp(-1, 1)  # (H, E, A)
        return Plans(actions=plan[0], predicted_returns=returns[pick], sequences=plan)
