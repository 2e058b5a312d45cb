"""Grad-MPC (S V, Jalagam, LeCun, Sobal 2023; spec/planners.md section 3): N(0, 1) candidate action
sequences optimized by gradient ascent on the predicted return; the best candidate's first action.

Paper default: reward-only, undiscounted objective (Alg. 1), no warm start, the winner ranked by
the return of the last evaluation, plain gradient steps (Alg. 1; `optimizer=adam` for the Adam
that Tab. 3 lists). Our recorded choice: candidates live in the action box [-1, 1]: the N(0, 1)
draws are projected onto it before the first evaluation and after every step (as CEM-GD).
`use_value=true` adds the terminal value of Eq. 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import gradient_ascent, open_loop_return


@dataclass
class GradMPCConfig:
    horizon: int = option(12, "planning horizon H (Grad-MPC Tab. 3; PlaNet)")
    candidates: int = option(1000, "N(0, 1)-initialized candidate sequences (Tab. 3)")
    iterations: int = option(10, "gradient steps; Dream-MPC's reimplementation (Tab. 16) uses 10, the paper 40")
    lr: float = option(0.1, "action learning rate, the largest of the paper's sweep {0.1, 0.01, 0.005, 1e-4} (Tab. 3)")
    optimizer: Literal["sgd", "adam"] = option(
        "sgd", "a plain gradient step on the actions (Alg. 1, as Policy+Grad-MPC); adam: Tab. 3 lists Adam"
    )
    use_value: bool = option(False, "add discount^H * value_avg at the horizon (Eq. 3); the paper's PlaNet has none")

    def validate(self) -> str | None:
        if min(self.horizon, self.candidates, self.iterations) < 1:
            return "horizon, candidates and iterations must be >= 1"
        return None


@register
class GradMPCPlanner(Planner):
    name = "grad_mpc"
    paper = "Grad-MPC (S V et al. 2023), Alg. 1: gradient ascent from Gaussian candidates"
    Config = GradMPCConfig
    uses_gradients = True

    def __init__(self, model, config: GradMPCConfig):
        super().__init__(model, config)
        self.last_initial: torch.Tensor | None = None
        self.last_candidates: torch.Tensor | None = None

    @classmethod
    def model_evals_per_step(cls, config: GradMPCConfig, action_dim: int) -> int:
        return config.candidates * config.iterations * config.horizon

    def objective(self, z: torch.Tensor, actions: torch.Tensor, generator: Draws) -> torch.Tensor:
        """(N,) predicted return: sum of rewards, plus the discounted terminal value if enabled."""
        return open_loop_return(
            self.model, z, actions, generator, use_value=self.config.use_value, discounted=self.config.use_value
        )

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg = self.config
        E, N = z.shape[0], cfg.candidates
        shape = (cfg.horizon, E * N, self.model.action_dim)  # episode-major candidates
        # N(0, 1) candidates (Alg. 1), projected onto the action box before the first evaluation:
        # about 32% of the draws fall outside [-1, 1], where no action can be executed.
        actions = draws.normal(generator, shape, 1, z.device).clamp(-1, 1)
        self.last_initial = actions.clone()
        z = z.detach()
        z_all = z.expand(N, -1) if E == 1 else z.repeat_interleave(N, 0)
        ascent = gradient_ascent(
            lambda a: self.objective(z_all, a, generator),
            actions,
            cfg.iterations,
            cfg.lr,
            clamp=True,
            optimizer=cfg.optimizer,
            model=self.model,
        )
        best = ascent.values.view(E, N).argmax(1)  # (E,)
        rows = torch.arange(E, device=z.device)
        candidates = ascent.actions.view(cfg.horizon, E, N, -1)
        self.last_candidates = ascent.actions
        sequences = candidates[:, rows, best]  # (H, E, A)
        return Plans(
            actions=sequences[0],
            predicted_returns=ascent.values.view(E, N)[rows, best],
            info={"best_candidate": best.float()},
            sequences=sequences,
        )
