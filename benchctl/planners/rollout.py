"""Latent rollouts shared by the planners: open-loop returns, terminal values, policy proposals.

Shapes: z (N, Z) start latents (often one latent expanded over N candidates), actions (H, N, A).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal, cast

import torch

from benchctl import draws
from benchctl.agents import base
from benchctl.agents.base import WorldModel
from benchctl.draws import Draws


def policy_rollout(
    model: WorldModel, z: torch.Tensor, horizon: int, generator: Draws, explore: bool = False
) -> torch.Tensor:
    """Sampled policy actions rolled through the dynamics: z (N, Z) -> actions (H, N, A).

    explore: sample with the family's exploration log-std bounds (BMPC's reanalyze)."""
    actions = []
    for h in range(horizon):
        a = model.policy(z, generator=generator, explore=explore)[0]
        actions.append(a)
        if h < horizon - 1:
            z = model.next(z, a)
    return torch.stack(actions)


def reward_sum(
    model: WorldModel, z: torch.Tensor, actions: torch.Tensor, discount: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_h discount^h R(z_h, a_h) (N,), z_H (N, Z)) along the latent rollout."""
    total = torch.zeros(z.shape[0], device=z.device)
    weight = 1.0
    for a in actions:
        z, reward = model.step(z, a)
        total = total + weight * reward.squeeze(1)
        weight *= discount
    return total, z


def latent_rollout(model: WorldModel, z: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards (H, N), latents z_1..z_H (H, N, Z)) of open-loop actions (H, N, A) from z (N, Z), or
    from block-shared start latents (E, N / E, Z) where the model takes them (`shares_start_states`)."""
    rewards, latents = [], []
    for a in actions:
        z, reward = model.step(z, a)
        rewards.append(reward.squeeze(1))
        latents.append(z)
    return torch.stack(rewards), torch.stack(latents)


def return_lambda(model: WorldModel) -> float:
    """The lambda of the family's return estimate: 1 (TD-MPC2, BMPC: rewards plus the terminal value)
    unless the model declares its own (Dreamer's Vλ: 0.95)."""
    return float(getattr(model, "return_lambda", 1.0))


def discounted_sum(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """sum_h discount^h rewards[h]: (H, N) -> (N,)."""
    return lambda_return(rewards, None, torch.zeros_like(rewards[0]), discount, 1.0)


def lambda_return(
    rewards: torch.Tensor, values: torch.Tensor | None, bootstrap: torch.Tensor, discount: float, lam: float
) -> torch.Tensor:
    """The lambda-return of the first step (N,), Dream-MPC Eq. 14 as dreamer-pytorch computes it:
    G_h = r_h + discount ((1 - lam) v_{h+1} + lam G_{h+1}), with v_H = G_H = `bootstrap` (N,).

    rewards (H, N); values (H, N) at the states reached by each step (only values[1:] are read;
    None when lam == 1, where G_0 = sum_h discount^h r_h + discount^H bootstrap)."""
    if lam == 1.0:  # summed forward, in the order the planners always have (bit-identical returns)
        total, weight = torch.zeros_like(bootstrap), 1.0
        for reward in rewards:
            total = total + weight * reward
            weight *= discount
        return total + discount ** rewards.shape[0] * bootstrap
    return lambda_returns(rewards, cast(torch.Tensor, values), bootstrap, discount, lam)[0]


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, bootstrap: torch.Tensor, discount: float, lam: float
) -> torch.Tensor:
    """The lambda-return of every step (H, N) by the recursion of lambda_return (dreamer-pytorch's
    `lambda_return`; what Dreamer's actor maximizes and its critic regresses to). values: (H, N),
    values[h] at the state step h reached; only values[1:] are read."""
    last, out = bootstrap, []
    for h in reversed(range(rewards.shape[0])):
        next_value = bootstrap if h + 1 == rewards.shape[0] else values[h + 1]
        last = rewards[h] + discount * ((1 - lam) * next_value + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


def estimate_return(
    model: WorldModel,
    rewards: torch.Tensor,
    latents: torch.Tensor,
    terminal: torch.Tensor,
    discount: float,
) -> torch.Tensor:
    """The family's return estimate of a rollout (N,): rewards (H, N) and latents (H, N, Z) from
    latent_rollout, `terminal` (N,) the value of z_H. TD-MPC2/BMPC: sum_h gamma^h r_h + gamma^H
    terminal; Dreamer: Vλ over the reached states, which needs v at each of them (V heads only)."""
    lam = return_lambda(model)
    values = None
    if lam != 1.0 and rewards.shape[0] > 1:
        if model.value_uses_action:
            raise ValueError("a lambda-return needs V(z) heads; Q(z, a) families use lambda 1")
        H, N = rewards.shape
        # values[h] = v(z_{h+1}); row 0 is never read and z_H's value is `terminal`
        middle = model.value_avg(latents[1:-1].reshape((H - 2) * N, -1)).reshape(H - 2, N) if H > 2 else None
        values = torch.cat([terminal[None], *([] if middle is None else [middle]), terminal[None]])
    return lambda_return(rewards, values, terminal, discount, lam)


def terminal_action(
    model: WorldModel, z: torch.Tensor, generator: Draws, shared_noise: bool = False
) -> torch.Tensor | None:
    """a ~ pi(z) (N, A) for Q(z, a) heads; None for V(z) heads, which need no action.

    shared_noise: one policy noise draw for every candidate of an episode (Dream-MPC's vmap
    randomness="same"); lockstep episodes are N / E consecutive rows each.
    """
    if not model.value_uses_action:
        return None
    eps = None
    if shared_noise:
        count = draws.episode_count(generator)
        eps = draws.normal(generator, (count, model.action_dim), 0, z.device)
        eps = eps.expand(z.shape[0], -1) if count == 1 else eps.repeat_interleave(z.shape[0] // count, 0)
    return model.policy(z, eps=eps, generator=generator)[0]


def terminal_value(model: WorldModel, z: torch.Tensor, generator: Draws, shared_noise: bool = False) -> torch.Tensor:
    """Value of the final latent (N,): Q_avg(z, a ~ pi(z)) for Q heads, V_avg(z) for V heads."""
    return model.value_avg(z, terminal_action(model, z, generator, shared_noise), generator).squeeze(1)


def open_loop_return(
    model: WorldModel,
    z: torch.Tensor,
    actions: torch.Tensor,
    generator: Draws,
    use_value: bool = False,
    discounted: bool = False,
) -> torch.Tensor:
    """Return of each open-loop plan (N,): the reward sum, or with `use_value` the family's return
    estimate with the terminal value (estimate_return)."""
    gamma = model.discount if discounted else 1.0
    if not use_value:
        return reward_sum(model, z, actions, gamma)[0]
    rewards, latents = latent_rollout(model, z, actions)
    return estimate_return(model, rewards, latents, terminal_value(model, latents[-1], generator), gamma)


@torch.no_grad()
def predict_plans(model: WorldModel, z: torch.Tensor, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's prediction for executed open-loop plans: (their return estimates with the terminal
    value (E,), the discounted reward sums alone (E,)).

    z: (E, Z), sequences: (H, E, A). Deterministic, so it leaves every generator alone: the terminal
    value is the mean over all value heads at the policy's mean action (V heads: at z_H), and a model
    with stochastic imagination imagines with its means (`deterministic()`).
    """
    with getattr(model, "deterministic", nullcontext)():
        rewards, latents = latent_rollout(model, z, sequences)
        z_end = latents[-1]
        action = model.policy(z_end, eps=torch.zeros(z.shape[0], model.action_dim, device=z.device))[1]
        value = model.value(z_end, action if model.value_uses_action else None).mean(0).squeeze(-1)
        total = _mean_value_return(model, rewards, latents, value)
    return total, discounted_sum(rewards, model.discount)


def predict_plan(model: WorldModel, z: torch.Tensor, sequence: torch.Tensor) -> tuple[float, float]:
    """predict_plans for one plan: z (1, Z), sequence (H, A) -> (return estimate, reward sum)."""
    total, rewards = predict_plans(model, z, sequence.unsqueeze(1))
    return float(total.squeeze()), float(rewards.squeeze())


def _mean_value_return(model: WorldModel, rewards: torch.Tensor, latents: torch.Tensor, terminal: torch.Tensor):
    """estimate_return with every value head averaged (no random head draw)."""
    lam = return_lambda(model)
    values = None
    if lam != 1.0 and rewards.shape[0] > 1:
        H, N = rewards.shape
        values = model.value(latents.reshape(H * N, -1)).mean(0).reshape(H, N)
    return lambda_return(rewards, values, terminal, model.discount, lam)


def evaluation_action(model: WorldModel, z: torch.Tensor, generator: Draws) -> torch.Tensor:
    """The family's deterministic evaluation action (B, A): its own `act` where it has one (Dreamer:
    the mode of 100 actor samples), else the policy mean tanh(mu) (TD-MPC2, BMPC), drawing nothing."""
    act = getattr(model, "act", None)
    if act is not None:
        return act(z, generator)
    return model.policy(z, eps=torch.zeros(z.shape[0], model.action_dim, device=z.device))[1]


def shift(plan: torch.Tensor, fill: str = "duplicate") -> torch.Tensor:
    """Warm start for the next step: plan[h] <- plan[h + 1]; the last step duplicates the new last
    (`duplicate`) or is zero (`zero`). plan: (H, ...)."""
    out = torch.empty_like(plan)
    out[:-1] = plan[1:]
    out[-1] = out[-2] if (fill == "duplicate" and len(plan) > 1) else (plan[-1] if fill == "duplicate" else 0.0)
    return out


Objective = Callable[[torch.Tensor], torch.Tensor]  # actions (H, N, A) -> each candidate's J (N,)


def value_and_grad(
    objective: Objective, actions: torch.Tensor, model: WorldModel | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J (N,), dJ/da (H, N, A)) at detached `actions`. Candidates do not interact, so the gradient of
    sum_n J_n gives each candidate its own gradient in one backward pass, counted in `model.work`."""
    if model is not None:
        base.count_work(model, backward=1)
    x = actions.detach().requires_grad_(True)
    with torch.enable_grad():
        value = objective(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad


@dataclass
class Ascent:
    actions: torch.Tensor  # (H, N, A) after the last step
    values: torch.Tensor  # (N,) J at the last evaluation, i.e. before the last step: the ranking


def gradient_ascent(
    objective: Objective,
    actions: torch.Tensor,
    iterations: int,
    lr: float,
    clip_norm: float | None = None,
    clamp: bool = False,
    optimizer: Literal["sgd", "adam"] = "sgd",
    model: WorldModel | None = None,
    episodes: int = 1,
) -> Ascent:
    """`iterations` x: J and its gradient, the gradient's global L2 norm clipped to `clip_norm`, a step
    of `lr` (plain, or Adam's bias-corrected direction with betas 0.9/0.999 and eps 1e-8, as
    torch.optim.Adam), then the actions clamped to [-1, 1] if `clamp`. `model`: where backward
    passes are counted. `episodes`: lockstep episodes, N / E consecutive candidates each; the
    norm clipped is each episode's own.

    Ranking rule (Grad-MPC Alg. 1, Dream-MPC's and Policy+Grad-MPC's released code): candidates are
    ranked by J from the last evaluation, taken before the last step; no extra evaluation is spent on
    the final actions.
    """
    m = v = None
    values = None
    for step in range(1, iterations + 1):
        values, grad = value_and_grad(objective, actions, model)
        if clip_norm is not None:
            grad = clip_global_norm(grad, clip_norm, episodes)
        if optimizer == "adam":
            m = 0.1 * grad if m is None else 0.9 * m + 0.1 * grad
            v = 0.001 * grad**2 if v is None else 0.999 * v + 0.001 * grad**2
            grad = (m / (1 - 0.9**step)) / ((v / (1 - 0.999**step)).sqrt() + 1e-8)
        actions = actions.detach() + lr * grad
        if clamp:
            actions = actions.clamp(-1, 1)
    assert values is not None  # iterations >= 1 (validated by every config that calls this)
    return Ascent(actions, values)


def clip_global_norm(grad: torch.Tensor, max_norm: float, episodes: int = 1) -> torch.Tensor:
    """Scale `grad` (H, N, A) so its L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_'s
    rule); with lockstep episodes (N / E consecutive candidates each) each episode's part apart."""
    if episodes == 1:
        norm = torch.linalg.vector_norm(grad)
        return grad * torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    H, N, A = grad.shape
    parts = grad.reshape(H, episodes, N // episodes, A)
    norm = torch.linalg.vector_norm(parts, dim=(0, 2, 3), keepdim=True)
    return (parts * torch.clamp(max_norm / (norm + 1e-6), max=1.0)).reshape(H, N, A)
