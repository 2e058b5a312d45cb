"""Cross-entropy method over open-loop action sequences (spec/planners.md section 2).

Default: PlaNet (Hafner et al. 2019), as Grad-MPC and Dream-MPC run it: mean 0 and std 1 every step,
N samples clamped to the action box, scored by the undiscounted sum of predicted rewards, the
top-K refit (biased std), output mean[0]. `init=policy`: Byravan et al. 2022 (Alg. 3) - the mean
starts at an open-loop plan sampled from the policy proposal, and the refit is smoothed:
mu <- (1 - mean_step) mu + mean_step mu_elite, likewise sigma with std_step (0.9 / 0.5 there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import open_loop_return, policy_rollout


@dataclass
class CEMConfig:
    horizon: int = option(12, "planning horizon H (PlaNet; Dream-MPC Tab. 16)")
    iterations: int = option(10, "CEM iterations (PlaNet; Dream-MPC Tab. 16)")
    candidates: int = option(1000, "samples per iteration (PlaNet; Dream-MPC Tab. 16)")
    elites: int = option(100, "top candidates refitted (PlaNet; Dream-MPC Tab. 16)")
    init: Literal["zero", "policy"] = option(
        "zero", "zero: PlaNet's N(0, 1); policy: Byravan's proposal-sampled mean (Alg. 3)"
    )
    init_std: float = option(1.0, "initial sampling std (PlaNet 1; Byravan sweeps {0.1, 0.25, 0.5, 1})")
    mean_step: float | None = option(
        None,
        "smoothing toward the elite mean; None = 1 (PlaNet) or 0.9 with init=policy (Byravan)",
        above=0.0,
        at_most=1.0,
    )
    std_step: float | None = option(
        None,
        "smoothing toward the elite std; None = 1 (PlaNet) or 0.5 with init=policy (Byravan)",
        above=0.0,
        at_most=1.0,
    )
    use_value: bool = option(False, "add discount^H * value_avg at the horizon (Byravan's optional V_psi)")

    def validate(self) -> str | None:
        if min(self.horizon, self.iterations, self.candidates) < 1:
            return "horizon, iterations and candidates must be >= 1"
        if not 1 <= self.elites <= self.candidates:
            return "elites must be between 1 and candidates"
        return None


@register
class CEMPlanner(Planner):
    name = "cem"
    paper = "CEM: PlaNet (Hafner et al. 2019); init=policy: Byravan et al. 2022, Alg. 3"
    Config = CEMConfig

    @classmethod
    def model_evals_per_step(cls, config: CEMConfig, action_dim: int) -> int:
        return config.candidates * config.iterations * config.horizon

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg, model = self.config, self.model
        E = z.shape[0]
        H, N, A = cfg.horizon, cfg.candidates, model.action_dim
        by_policy = cfg.init == "policy"
        mean_step = cfg.mean_step if cfg.mean_step is not None else (0.9 if by_policy else 1.0)
        std_step = cfg.std_step if cfg.std_step is not None else (0.5 if by_policy else 1.0)
        if by_policy:
            mean = policy_rollout(model, z, H, generator)  # (H, E, A), one sampled open-loop plan each
        else:
            mean = torch.zeros(H, E, A, device=z.device)
        std = torch.full((H, E, A), cfg.init_std, device=z.device)
        z_all = z.expand(N, -1) if E == 1 else z.repeat_interleave(N, 0)  # (E * N, Z), episode-major
        for _ in range(cfg.iterations):
            noise = draws.normal(generator, (H, E, N, A), 1, z.device)
            actions = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp(-1, 1)  # (H, E, N, A)
            value = open_loop_return(
                model, z_all, actions.view(H, E * N, A), generator, use_value=cfg.use_value, discounted=cfg.use_value
            ).nan_to_num(float("-inf"))
            elite_value, elite_idx = torch.topk(value.view(E, N), cfg.elites, dim=1)  # (E, K)
            elites = actions.gather(2, elite_idx.view(1, E, -1, 1).expand(H, E, cfg.elites, A))  # (H, E, K, A)
            mean = (1 - mean_step) * mean + mean_step * elites.mean(2)
            std = (1 - std_step) * std + std_step * elites.std(2, unbiased=False)
        plan = mean.clamp(-1, 1)
        return Plans(actions=plan[0], predicted_returns=elite_value.mean(1), sequences=plan)
