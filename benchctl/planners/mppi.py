"""MPPI exactly as TD-MPC2 plans (Hansen et al. 2024; official `TDMPC2._plan` / `_estimate_value`).

Per step: 24 policy-prior trajectories fixed for all iterations, 488 Gaussian samples around a
mean warm-started from the previous step's mean (shifted), I iterations of elite refitting with
exponential weights, and the executed action is the first action of one elite drawn with
probabilities = weights (Gumbel-max). See spec/planners.md section 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import estimate_return, latent_rollout, policy_rollout, terminal_value


@dataclass
class MPPIConfig:
    horizon: int = option(3, "planning horizon H (TD-MPC2 config.yaml; Dream-MPC Tab. 5)")
    iterations: int = option(6, "MPPI iterations I; +2 when action_dim >= 20 (TD-MPC2 config: dog, humanoid, H1)")
    num_samples: int = option(512, "candidate sequences per iteration, policy trajectories included (Tab. 5)")
    num_pi_trajs: int = option(
        24, "sequences sampled from the policy prior, fixed across iterations (Tab. 5)", at_least=0
    )
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


def gumbel_max(probs: torch.Tensor, generator: Draws) -> torch.Tensor:
    """One index per row drawn with probabilities `probs` (b, K): argmax(log p + Gumbel noise); with
    lockstep episodes, row blocks draw from their episode's generator."""
    gumbel = -draws.exponential(generator, probs.shape, 0, probs.device).log()
    return torch.argmax(probs.log() + gumbel, dim=-1)


@dataclass
class MPPIResult:
    """Outcome of one MPPI search per start state (b states).

    mean, std: (H, b, A), the final sampling distribution; action: (b, A), the first action of
    the elite drawn by Gumbel-max; value: (b,), that elite's estimated return; elite_index: (b,)
    its position among the N candidates of the last iteration; sequence: (H, b, A), that elite's
    whole action sequence.
    """

    mean: torch.Tensor
    std: torch.Tensor
    action: torch.Tensor
    value: torch.Tensor
    elite_index: torch.Tensor
    sequence: torch.Tensor


ValueFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mppi_search(
    config: MPPIConfig,
    z: torch.Tensor,
    prior: torch.Tensor | None,
    init_mean: torch.Tensor,
    estimate: ValueFn,
    generator: Draws,
    shared_starts: bool = False,
) -> MPPIResult:
    """MPPI from b start latents at once (candidates and states are batch dimensions).

    z: (b, Z); prior: (H, b, P, A) policy-prior sequences kept through every iteration (None when
    P = 0); init_mean: (H, b, A); estimate(z_flat (b*N, Z), actions (H, b*N, A)) -> values (b*N,).
    One start state is expanded with stride 0, which lets the model share its first-layer product;
    several (b > 1: lockstep episodes, BMPC's reanalysis) go to `estimate` as (b, N, Z), each state
    expanded over its N candidates, where the model takes them (`shared_starts`), else repeated.
    """
    cfg = config
    H, b, A = init_mean.shape
    N, P, K = cfg.num_samples, cfg.num_pi_trajs, cfg.num_elites
    device = z.device
    actions = torch.empty(H, b, N, A, device=device)
    if P and prior is not None:
        actions[:, :, :P] = prior
    mean = init_mean
    std = torch.full((H, b, A), cfg.max_std, device=device)  # the std always restarts at max_std
    if b == 1:
        z_flat = z.expand(N, -1)
    else:
        z_flat = z.unsqueeze(1).expand(b, N, z.shape[1]) if shared_starts else z.repeat_interleave(N, 0)
    for _ in range(effective_iterations(cfg, A)):
        noise = draws.normal(generator, (H, b, N - P, A), 1, device)
        actions[:, :, P:] = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp(-1, 1)
        value = estimate(z_flat, actions.view(H, b * N, A)).view(b, N).nan_to_num(0.0)
        elite_value, elite_idx = torch.topk(value, K, dim=1)  # (b, K)
        elite_actions = actions.gather(2, elite_idx.view(1, b, K, 1).expand(H, b, K, A))  # (H, b, K, A)
        score = torch.exp(cfg.temperature * (elite_value - elite_value.max(1, keepdim=True).values))
        score = score / score.sum(1, keepdim=True)
        weights = score.view(1, b, K, 1)
        norm = score.sum(1).view(1, b, 1) + 1e-9
        mean = (weights * elite_actions).sum(2) / norm
        std = ((weights * (elite_actions - mean.unsqueeze(2)) ** 2).sum(2) / norm).sqrt()
        std = std.clamp(cfg.min_std, cfg.max_std)
    chosen = gumbel_max(score, generator)  # (b,)
    rows = torch.arange(b, device=device)
    return MPPIResult(
        mean=mean,
        std=std,
        action=elite_actions[0, rows, chosen],
        value=elite_value[rows, chosen],
        elite_index=elite_idx[rows, chosen],
        sequence=elite_actions[:, rows, chosen],
    )


@register
class MPPIPlanner(Planner):
    name = "mppi"
    paper = "TD-MPC2 (Hansen et al., ICLR 2024), MPPI with policy-prior samples"
    Config = MPPIConfig
    reports_distribution = True

    def __init__(self, model, config: MPPIConfig):
        super().__init__(model, config)
        self._prev_mean: torch.Tensor | None = None  # (H, E, A), the last step's final mean per episode

    def reset(self) -> None:
        self._prev_mean = None

    def keep_episodes(self, keep: torch.Tensor) -> None:
        if self._prev_mean is not None:
            self._prev_mean = self._prev_mean[:, keep]

    @classmethod
    def model_evals_per_step(cls, config: MPPIConfig, action_dim: int) -> int:
        return config.num_samples * effective_iterations(config, action_dim) * config.horizon

    @classmethod
    def effective_settings(cls, config: MPPIConfig, family: str, action_dim: int) -> dict:
        return {"iterations": effective_iterations(config, action_dim)}  # +2 where A >= 20 (TD-MPC2)

    def estimate_value(self, z: torch.Tensor, actions: torch.Tensor, generator: Draws) -> torch.Tensor:
        """Discounted H-step model return plus the terminal value (`_estimate_value`; the family's
        return estimate, estimate_return).

        z: (N, Z), the start latent per candidate, or (E, N / E, Z) start latents shared by blocks
        of candidates (`mppi_search`); actions: (H, N, A) -> values (N,).
        """
        rewards, latents = latent_rollout(self.model, z, actions)
        terminal = terminal_value(self.model, latents[-1], generator)
        return estimate_return(self.model, rewards, latents, terminal, self.model.discount)

    def search(
        self, z: torch.Tensor, prior: torch.Tensor | None, init_mean: torch.Tensor, generator: Draws
    ) -> MPPIResult:
        """`mppi_search` from the b latents z (b, Z) with this planner's config and value estimate."""

        def estimate(zs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
            return self.estimate_value(zs, acts, generator)

        shared = getattr(self.model, "shares_start_states", False)
        return mppi_search(self.config, z, prior, init_mean, estimate, generator, shared_starts=shared)

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg, model = self.config, self.model
        E = z.shape[0]
        H, P, A = cfg.horizon, cfg.num_pi_trajs, model.action_dim
        prior = None
        if P:  # P policy trajectories per episode, episode-major
            starts = z.expand(P, -1) if E == 1 else z.repeat_interleave(P, 0)
            prior = policy_rollout(model, starts, H, generator).view(H, E, P, A)
        mean = torch.zeros(H, E, A, device=z.device)
        if self._prev_mean is not None:  # warm start from the last step's mean, shifted
            mean[:-1] = self._prev_mean[1:]
        result = self.search(z, prior, mean, generator)
        action_chosen, std0 = result.action, result.std[0]  # (E, A) each
        action = action_chosen
        if cfg.eval_noise:
            action = action + std0 * draws.normal(generator, (E, A), 0, z.device)
        self._prev_mean = result.mean
        return Plans(
            actions=action.clamp(-1, 1),
            predicted_returns=result.value,
            info={"std0": std0.mean(1)},
            distribution=(action_chosen, std0),  # BMPC's imitation target: chosen elite, before noise
            sequences=result.sequence,
        )
