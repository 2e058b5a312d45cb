"""Policy + Grad-MPC ("hybrid Grad-MPC"; S V et al. 2023 Sec. 6, Dream-MPC App. D;
spec/planners.md section 4): start from the policy's mean action and climb the one-step value
J(a) = R(z, a) + gamma * value_avg(z', pi(z')) with plain gradient steps (Eq. 6, ascent)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import gradient_ascent, open_loop_return


@dataclass
class PolicyGradMPCConfig:
    horizon: int = option(1, "planning horizon (Grad-MPC Tab. 5; Dream-MPC Tab. 16)")
    iterations: int = option(10, "gradient steps (Dream-MPC Tab. 16, hybrid Grad-MPC)")
    lr: float = option(0.05, "step size alpha (Dream-MPC Tab. 16, hybrid Grad-MPC)")

    def validate(self) -> str | None:
        if self.horizon < 1 or self.iterations < 1:
            return "horizon and iterations must be >= 1"
        return None


@register
class PolicyGradMPCPlanner(Planner):
    name = "policy_grad_mpc"
    paper = "Policy+Grad-MPC (S V et al. 2023, Sec. 6): one policy candidate refined by value gradients"
    Config = PolicyGradMPCConfig
    uses_gradients = True

    @classmethod
    def model_evals_per_step(cls, config: PolicyGradMPCConfig, action_dim: int) -> int:
        return config.iterations * config.horizon

    def objective(self, z: torch.Tensor, actions: torch.Tensor, generator: Draws) -> torch.Tensor:
        return open_loop_return(self.model, z, actions, generator, use_value=True, discounted=True)

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg, model = self.config, self.model
        z = z.detach()
        with torch.no_grad():  # the policy's mean actions along its own rollout, one candidate per episode
            means, zh = [], z
            for _ in range(cfg.horizon):
                mean = model.policy(zh, eps=torch.zeros(z.shape[0], model.action_dim, device=z.device))[1]
                means.append(mean)
                zh = model.next(zh, mean)
        actions = torch.stack(means)  # (H, E, A)
        ascent = gradient_ascent(
            lambda a: self.objective(z, a, generator), actions, cfg.iterations, cfg.lr, model=self.model
        )
        plan = ascent.actions.clamp(-1, 1)
        return Plans(actions=plan[0], predicted_returns=ascent.values, sequences=plan)
