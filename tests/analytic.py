"""A tiny world model with known optimum, implementing the WorldModel protocol exactly.

Latent z = (position, time). Dynamics: position += action (A = 1), time += 1. Reward of a step:
-(position + action - target[time])^2, so the best open-loop plan from position 0 is
a_h = target[h] - target[h - 1] (target[-1] = 0). Value heads: zero (the horizon holds all reward).
"""

from __future__ import annotations

import torch


class AnalyticModel:
    family = "analytic"
    latent_dim = 2
    action_dim = 1
    num_value_heads = 2
    value_uses_action = True

    def __init__(self, targets=(0.5, -0.3, 0.2), discount: float = 1.0, policy_std: float = 0.3):
        self.targets = torch.tensor(targets, dtype=torch.float32)
        self.discount = discount
        self.policy_std = policy_std
        self.model_evals = 0
        self.steps: list[torch.Tensor] = []  # actions seen by step(), in call order (for tests)

    @property
    def optimum(self) -> torch.Tensor:
        """(H, A): the best open-loop plan from position 0 at time 0."""
        previous = torch.cat([torch.zeros(1), self.targets[:-1]])
        return (self.targets - previous).unsqueeze(1)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.stack([z[:, 0] + a[:, 0], z[:, 1] + 1], dim=1)

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        self.model_evals += z.shape[0]
        t = z[:, 1].long().clamp(max=len(self.targets) - 1)
        return -((z[:, 0] + a[:, 0] - self.targets[t]) ** 2).unsqueeze(1)

    def step(self, z: torch.Tensor, a: torch.Tensor):
        self.steps.append(a.detach().clone())
        return self.next(z, a), self.reward(z, a)

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(self.num_value_heads, z.shape[0], 1) + 0 * z[:, :1]

    def value_avg(self, z, a=None, generator=None) -> torch.Tensor:
        return self.value(z, a).mean(0)

    def policy(self, z, eps=None, generator=None, explore=False):
        if eps is None:
            eps = torch.randn(z.shape[0], 1, generator=generator)
        mean = torch.zeros(z.shape[0], 1) + 0 * z[:, :1]
        log_std = torch.full_like(mean, float(torch.tensor(self.policy_std).log()))
        return (mean + self.policy_std * eps).clamp(-1, 1), mean, log_std

    def plan_return(self, actions: torch.Tensor) -> torch.Tensor:
        """Exact return of open-loop plans actions (H, N, A) from position 0, plus the discounted
        terminal value (zero here): (N,)."""
        z = torch.zeros(actions.shape[1], 2)
        total = torch.zeros(actions.shape[1])
        for h, a in enumerate(actions):
            total += self.discount**h * self.reward(z, a)[:, 0]
            z = self.next(z, a)
        return total + self.discount ** len(actions) * self.value(z)[0, :, 0]


class DelayedRewardModel(AnalyticModel):
    """Delayed reward under a discount: each step only costs -cost * a^2; the payoff is the terminal
    value -value_scale * (position - goal)^2, reached only through the horizon's end. With
    J(a) = sum_h gamma^h r_h + gamma^H V(z_H), the optimum spends more on later actions (their
    cost is discounted more): a_h = lam * gamma^-h / cost with
    lam = gamma^H k g / (1 + gamma^H (k / cost) sum_h gamma^-h). A planner that drops the discount
    finds equal actions k g / (cost + H k); one that drops the terminal value finds a = 0.
    """

    def __init__(self, horizon: int = 3, discount: float = 0.5, cost: float = 1.0, value_scale: float = 4.0, goal=1.5):
        super().__init__(targets=(0.0,) * horizon, discount=discount)
        self.horizon, self.cost, self.value_scale, self.goal = horizon, cost, value_scale, goal

    @property
    def optimum(self) -> torch.Tensor:
        g, k, c, H = self.discount, self.value_scale, self.cost, self.horizon
        inverse = torch.tensor([g**-h for h in range(H)])
        lam = g**H * k * self.goal / (1 + g**H * (k / c) * float(inverse.sum()))
        return (lam * inverse / c).unsqueeze(1)

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        self.model_evals += z.shape[0]
        return -self.cost * a[:, :1] ** 2 + 0 * z[:, :1]

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        v = -self.value_scale * (z[:, :1] - self.goal) ** 2
        return v.unsqueeze(0).expand(self.num_value_heads, -1, -1)
