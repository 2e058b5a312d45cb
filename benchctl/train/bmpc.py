"""One BMPC update (Wang et al. 2025; spec/training.md section 5): TD-MPC2's model losses with
state-value heads trained on a model-based TD target, and a policy that imitates the planner's
action distribution (KL), with targets refreshed by lazy reanalyze.

Shapes: obs (H + 1, B, obs_dim), action (H, B, A), reward (H, B, 1), expert (H, B, 2A) =
(planner mean, planner std) per step; K = 2 value heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import cast

import torch
from torch import nn

from benchctl.agents.bmpc import BMPCModel
from benchctl.agents.layers import EnsembleLinear
from benchctl.planners.mppi import MPPIConfig, MPPIPlanner
from benchctl.planners.rollout import policy_rollout
from benchctl.train.tdmpc2 import TDMPC2Learner, TrainConfig, gaussian_entropy, init_weights, model_dims


@dataclass
class ReanalyzeConfig:
    """Lazy reanalyze (BMPC paper Table 6 / Dream-MPC paper Table 6)."""

    interval: int = 10  # every k-th policy-training update
    sequences: int = 20  # first b sequences of the batch, each with H observations
    horizon: int = 3  # replanning horizon


def new_bmpc_model(
    obs_dim: int,
    action_dim: int,
    size: int | None = 5,
    dims: tuple[int, int, int] | None = None,
    seed: int = 0,
    obs_shape: tuple[int, ...] = (),
) -> BMPCModel:
    """A fresh BMPC world model: TD-MPC2's trunk and init, except the V ensemble keeps PyTorch's
    default Linear init (uniform +-1/sqrt(fan_in)) and only its last weight is zeroed (spec 5)."""
    torch.manual_seed(seed)
    model = BMPCModel(model_dims(obs_dim, action_dim, size, dims, obs_shape, value_heads=2))
    init_weights(model)
    for layer in cast(list[EnsembleLinear], list(model._Qs.params)):
        bound = 1 / math.sqrt(layer.weight.shape[-1])
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(layer.bias, -bound, bound)
    nn.init.zeros_(cast(EnsembleLinear, model._Qs.params[-1]).weight)
    return model


def fill_missing_targets(expert: torch.Tensor) -> torch.Tensor:
    """Steps without a planner target (random seeding actions, stored as NaN) imitate N(0, 1)."""
    mean, std = expert.chunk(2, dim=-1)
    return torch.cat([mean.nan_to_num(0.0), std.nan_to_num(1.0)], dim=-1)


def gaussian_kl(mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, std_p) || N(mean_q, std_q)) per dimension."""
    return torch.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / (2 * std_q**2) - 0.5


class BMPCLearner(TDMPC2Learner):
    """TD-MPC2's learner with BMPC's value target and imitation policy loss."""

    def __init__(
        self,
        model: BMPCModel,
        discount: float,
        config: TrainConfig | None = None,
        reanalyze: ReanalyzeConfig | None = None,
        planner: MPPIConfig | None = None,
    ):
        super().__init__(model, discount, config)
        self.reanalyze_cfg = reanalyze or ReanalyzeConfig()
        self.planner_cfg = planner or MPPIConfig()

    def _v(self, ensemble: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """Logits (K, *lead, bins) of a V ensemble on latents (*lead, Z)."""
        out = ensemble(z.reshape(-1, z.shape[-1]))
        return out.view(out.shape[0], *z.shape[:-1], out.shape[-1])

    def td_target(
        self, obs: torch.Tensor, reward: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """N = 1 model-based, on-policy target from the encoded current observations:
        y_t = R_hat(z_t, a) + gamma * mean_k V_target_k(d(z_t, a)), a ~ pi(z_t); the buffer reward is unused."""
        m = self.model
        encoded = m.encode(obs)  # (H + 1, B, Z)
        zr = encoded[:-1]
        a = m.policy(zr, generator=generator)[0]
        za = torch.cat([zr, a], dim=-1)
        r_hat = m.decode(m._reward(za))
        v_next = m.decode(self._v(self.target_Qs, m._dynamics(za))).mean(0)
        return encoded[1:], r_hat + m.discount * v_next

    def value_logits(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self._v(self.model._Qs, z)

    def _update_policy(
        self, zs: torch.Tensor, generator: torch.Generator, expert: torch.Tensor | None = None
    ) -> dict[str, float]:
        """KL(pi(.|z_t) || expert_t) / max(1, S) - 1e-4 entropy on sg(z_0 .. z_{H-1})."""
        if expert is None:
            raise ValueError("BMPC's policy update needs the planner's action distributions (expert)")
        cfg, m = self.cfg, self.model
        z = zs[:-1]
        expert = fill_missing_targets(expert)
        expert_mean, expert_std = expert.chunk(2, dim=-1)
        mu, log_std = m.policy_params(z)
        kl = gaussian_kl(torch.tanh(mu), log_std.exp(), expert_mean, expert_std).mean(-1, keepdim=True)  # (H, B, 1)
        scale = self.scale.update(kl[0]).to(z.device)
        eps = torch.randn(log_std.shape, generator=generator, device=z.device)
        entropy = gaussian_entropy(log_std, eps)
        weights = cfg.rho ** torch.arange(z.shape[0], dtype=torch.float32, device=z.device)
        loss = ((kl / scale - cfg.entropy_coef * entropy).mean((1, 2)) * weights).mean()
        self.pi_optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m._pi.parameters(), cfg.grad_clip_norm)
        self.pi_optim.step()
        return {"pi_loss": float(loss.detach()), "kl": float(kl.mean().detach()), "pi_scale": float(scale)}

    @torch.no_grad()
    def reanalyze(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fresh planner targets for observations (H, b, obs_dim) -> (H, b, 2A): one batched MPPI
        search from scratch (mean 0, std max_std) with the exploration log-std bounds for the
        policy-prior samples, the model in eval mode."""
        m = self.model
        H, b = obs.shape[:2]
        cfg = replace(self.planner_cfg, horizon=self.reanalyze_cfg.horizon)
        A, P, n = m.action_dim, cfg.num_pi_trajs, H * b
        z = m.encode(obs.reshape(n, -1))
        prior = None
        if P:
            prior = policy_rollout(m, z.repeat_interleave(P, 0), cfg.horizon, generator, explore=True)
            prior = prior.view(cfg.horizon, n, P, A)
        init_mean = torch.zeros(cfg.horizon, n, A, device=obs.device)
        result = MPPIPlanner(m, cfg).search(z, prior, init_mean, generator)
        return torch.cat([result.action, result.std[0]], dim=-1).view(H, b, 2 * A)
