"""CEM-GD (Huang et al. 2021, Alg. 1; spec/planners.md section 6): a CEM search seeds the top-k
sequences, which are then refined by gradient steps with a backtracking line search.

t = 0: CEM with `init_samples` per iteration from N(0, init_std^2) (paper: N_init = 15000 as
5 x 3000), refitted on the best `elite_ratio` (300). t > 0: `resample_samples` per iteration around
the previous optimum shifted by one (paper: N_r = 50 as 5 x 10), all of them elites. The refit is
Eq. 2a/2b: mean and variance <- (1 - alpha) old + alpha elite statistics. The k best sequences
seen take up to `gd_steps` gradient steps on the undiscounted predicted reward sum; each step tries
eta, eta * rho, ... (at most `line_search_trials`) and is taken only if it raises the return, else
that sequence stops.
Actions are projected onto [-1, 1]. The released code's choices are options: `optimizer=adam`
(projected Adam whose step is divided by 1.5 per failed trial), `tail_fill=zero`, `gd_steps=15`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from benchctl import draws
from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, option, register
from benchctl.planners.rollout import open_loop_return, shift, value_and_grad


@dataclass
class CEMGDConfig:
    horizon: int = option(45, "planning horizon T (CEM-GD Sec. 5)")
    init_samples: int = option(3000, "samples per CEM iteration at t = 0: N_init = 15000 as 5 x 3000 (Alg. 1)")
    resample_samples: int = option(10, "samples per CEM iteration at t > 0: N_r = 50 as 5 x 10 (Alg. 1)")
    cem_iterations: int = option(5, "CEM iterations per step (released code: num_iterations=5)")
    elite_ratio: float = option(
        0.1, "fraction of the t = 0 samples refitted as elites (released code: 300 of 3000)", above=0.0, at_most=1.0
    )
    resample_elites: int | None = option(
        None, "elites per CEM iteration at t > 0; None = all N_r samples (paper, released code)"
    )
    cem_alpha: float = option(
        0.9,
        "alpha of Eq. 2a/2b: weight of the new elite mean and variance (the code's alpha 0.1 weights the old one)",
        above=0.0,
        at_most=1.0,
    )
    same_samples_every_step: bool = option(
        False, "the released snapshot: N_r samples at t = 0 too (its N_init path is never taken)"
    )
    init_std: float = option(
        1.0, "sampling std: N(mu, I) in the paper (the code's (ub - lb)^2 / 16 variance is std 0.5)"
    )
    top_k: int = option(1, "sequences refined by gradient steps, k (Alg. 1)")
    gd_steps: int = option(10, "gradient updates per sequence, G (paper; released code 15)", at_least=0)
    eta: float = option(0.01, "initial step size eta_init of the line search (Alg. 1)")
    backtrack: float = option(
        0.67, "step shrink rho per failed trial (Alg. 1; the code's 1/1.5)", above=0.0, at_most=1.0
    )
    line_search_trials: int = option(8, "trials J per update before the sequence stops (Alg. 1)")
    optimizer: Literal["plain", "adam"] = option(
        "plain", "plain projected gradient step (paper) or the code's projected Adam"
    )
    tail_fill: Literal["duplicate", "zero"] = option(
        "duplicate", "warm start's new last action: duplicate (paper) or zero (code)"
    )
    use_value: bool = option(False, "add discount^H * value_avg at the horizon (not in the paper, which knows r)")

    def validate(self) -> str | None:
        if min(self.horizon, self.init_samples, self.resample_samples, self.cem_iterations, self.top_k) < 1:
            return "horizon, samples, cem_iterations and top_k must be >= 1"
        if self.top_k > min(self.init_samples, self.resample_samples) * self.cem_iterations:
            return "top_k exceeds the samples drawn"
        if not 0 < self.backtrack < 1 or self.eta <= 0:
            return "need eta > 0 and 0 < backtrack < 1"
        return None


@register
class CEMGDPlanner(Planner):
    name = "cem_gd"
    paper = "CEM-GD (Huang et al. 2021), Alg. 1: CEM seeds top-k refined by line-searched gradient steps"
    Config = CEMGDConfig
    uses_gradients = True

    def __init__(self, model, config: CEMGDConfig):
        super().__init__(model, config)
        self._previous: torch.Tensor | None = None  # (H, E, A) last executed optimum per episode
        self.last_trace: list[torch.Tensor] = []  # returns (k,) of the refined sequences after each update
        self.last_distribution: tuple[torch.Tensor, torch.Tensor] | None = None  # CEM's final (mean, var) (H, E, A)

    def reset(self) -> None:
        self._previous = None

    def keep_episodes(self, keep: torch.Tensor) -> None:
        if self._previous is not None:  # (H, E, A)
            self._previous = self._previous[:, keep]

    @classmethod
    def model_evals_per_step(cls, config: CEMGDConfig, action_dim: int) -> int:
        """Steady state (t > 0), at most: the CEM samples, then per refined sequence and update one
        gradient evaluation and up to J line-search evaluations, each H model steps. The line search
        stops at the first improvement and a failed search ends that sequence, so a step usually
        costs less; records count what was done. t = 0 uses init_samples instead of resample_samples."""
        searches = config.top_k * config.gd_steps * (1 + config.line_search_trials)
        return (config.resample_samples * config.cem_iterations + searches) * config.horizon

    def objective(self, z: torch.Tensor, actions: torch.Tensor, generator: Draws) -> torch.Tensor:
        return open_loop_return(
            self.model, z, actions, generator, use_value=self.config.use_value, discounted=self.config.use_value
        )

    def _cem(
        self, z: torch.Tensor, mean: torch.Tensor, samples: int, n_elite: int, generator: Draws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CEM per episode from `mean` (H, E, A) with `samples` per iteration refitted on `n_elite`
        elites (Eq. 2a/2b: mean and variance blended with weight alpha on the new statistics); returns
        each episode's k best sequences seen (H, E, k, A) and their returns (E, k)."""
        cfg = self.config
        H, E, A = mean.shape
        var = torch.full_like(mean, cfg.init_std**2)
        best_actions = torch.empty(H, E, 0, A, device=z.device)
        best_values = torch.empty(E, 0, device=z.device)
        z_all = z.expand(samples, -1) if E == 1 else z.repeat_interleave(samples, 0)
        for _ in range(cfg.cem_iterations):
            noise = draws.normal(generator, (H, E, samples, A), 1, z.device)
            actions = (mean.unsqueeze(2) + var.sqrt().unsqueeze(2) * noise).clamp(-1, 1)  # (H, E, S, A)
            values = self.objective(z_all, actions.view(H, E * samples, A), generator).nan_to_num(float("-inf"))
            values = values.view(E, samples)
            _, elite_idx = torch.topk(values, n_elite, dim=1)
            elites = _pick(actions, elite_idx)
            mean = (1 - cfg.cem_alpha) * mean + cfg.cem_alpha * elites.mean(2)
            var = (1 - cfg.cem_alpha) * var + cfg.cem_alpha * elites.var(2, unbiased=False)
            self.last_distribution = (mean, var)
            pool_actions = torch.cat([best_actions, actions], dim=2)
            pool_values = torch.cat([best_values, values], dim=1)
            keep = torch.topk(pool_values, min(cfg.top_k, pool_values.shape[1]), dim=1).indices
            best_actions, best_values = _pick(pool_actions, keep), pool_values.gather(1, keep)
        return best_actions, best_values

    def _refine(self, z: torch.Tensor, actions: torch.Tensor, values: torch.Tensor, generator: Draws):
        """Line-searched projected gradient ascent on each of the k sequences of every episode, all
        batched: actions (H, E * k, A), values (E * k,), episode-major. A row's search never depends
        on another's (a finished row is masked), so an episode refines the same alone or in lockstep;
        except with `use_value`, where the trials other episodes still need draw value heads from a
        finished episode's generator too."""
        cfg = self.config
        rows = actions.shape[1]
        E = z.shape[0]
        z_k = z.expand(rows, -1) if E == 1 else z.repeat_interleave(rows // E, 0)
        active = torch.ones(rows, dtype=torch.bool, device=z.device)
        m = torch.zeros_like(actions)
        v = torch.zeros_like(actions)
        self.last_trace = [values.clone()]
        for step in range(1, cfg.gd_steps + 1):
            _, grad = value_and_grad(lambda a: self.objective(z_k, a, generator), actions, self.model)
            if cfg.optimizer == "adam":  # the direction is fixed per update; trials only shrink its length
                m_new, v_new = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
                direction = (m_new / (1 - 0.9**step)) / ((v_new / (1 - 0.999**step)).sqrt() + 1e-8)
            else:
                direction = grad
            eta = torch.full((rows,), cfg.eta, device=z.device)
            accepted = torch.zeros(rows, dtype=torch.bool, device=z.device)
            for _ in range(cfg.line_search_trials):
                trial = (actions + eta.view(1, -1, 1) * direction).clamp(-1, 1)
                with torch.no_grad():
                    trial_values = self.objective(z_k, trial, generator)
                better = (trial_values > values) & active & ~accepted
                actions = torch.where(better.view(1, -1, 1), trial, actions)
                values = torch.where(better, trial_values, values)
                if cfg.optimizer == "adam":
                    m = torch.where(better.view(1, -1, 1), m_new, m)
                    v = torch.where(better.view(1, -1, 1), v_new, v)
                accepted |= better
                if bool((accepted | ~active).all()):
                    break
                eta = torch.where(accepted, eta, eta * cfg.backtrack)
            active &= accepted  # a failed search stops that sequence
            self.last_trace.append(values.clone())
            if not bool(active.any()):
                break
        return actions.detach(), values

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        cfg = self.config
        z = z.detach()
        E, A = z.shape[0], self.model.action_dim
        first = self._previous is None and not cfg.same_samples_every_step
        if self._previous is None:
            mean = torch.zeros(cfg.horizon, E, A, device=z.device)
        else:
            mean = shift(self._previous, cfg.tail_fill)
        if first:  # t = 0: the wide search, refitted on its best elite_ratio
            samples, n_elite = cfg.init_samples, max(1, int(cfg.elite_ratio * cfg.init_samples))
        else:  # t > 0: a few samples around the warm start, all of them elites unless resample_elites
            samples = cfg.resample_samples
            n_elite = min(samples, cfg.resample_elites) if cfg.resample_elites else samples
        with torch.no_grad():
            actions, values = self._cem(z, mean, samples, n_elite, generator)
        H, _, k, _ = actions.shape
        actions, values = self._refine(z, actions.reshape(H, E * k, A), values.reshape(E * k), generator)
        values = values.view(E, k)
        best = values.argmax(1)
        rows = torch.arange(E, device=z.device)
        found = actions.view(H, E, k, A)[:, rows, best]  # (H, E, A)
        predicted = values[rows, best]
        # where the best return is not finite, the warm-start mean, as the released code falls back
        plan = torch.where(torch.isfinite(predicted).view(1, E, 1), found, mean)
        self._previous = plan.clone()
        plan = plan.clamp(-1, 1)
        return Plans(actions=plan[0], predicted_returns=predicted, sequences=plan)


def _pick(actions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """actions (H, E, S, A) at per-episode candidate indices (E, k) -> (H, E, k, A)."""
    H, E, _, A = actions.shape
    return actions.gather(2, index.view(1, E, -1, 1).expand(H, E, index.shape[1], A))
