"""Gymnasium's Pendulum-v1 written in torch: a ground-truth, differentiable world model.

State z = (theta, theta_dot) in float64; actions in [-1, 1] are torques u = 2a (the env
adapter's mapping). Matches gymnasium 1.x bit for bit (within 1e-12) under numpy 2, whose
scalar rules compute 3.0 * u and 0.001 * u^2 in float32 (u is the float32 action).
The speed clip at +-8 zeroes gradients at the limit.
"""

from __future__ import annotations

import math

import torch

from benchctl.agents import base

G, MASS, LENGTH, DT, MAX_SPEED, MAX_TORQUE = 10.0, 1.0, 1.0, 0.05, 8.0, 2.0


def angle_normalize(theta: torch.Tensor) -> torch.Tensor:
    return torch.remainder(theta + math.pi, 2 * math.pi) - math.pi


def dynamics(state: torch.Tensor, torque: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """state (B, 2) float64, torque (B, 1) -> (next state (B, 2), reward (B, 1)), as Pendulum-v1.step."""
    theta, theta_dot = state[:, :1], state[:, 1:]
    u = torch.clamp(torque, -MAX_TORQUE, MAX_TORQUE).to(torch.float32)
    cost = angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + (torch.tensor(0.001, dtype=torch.float32) * u**2).double()
    accel = 3 * G / (2 * LENGTH) * torch.sin(theta) + (3.0 / (MASS * LENGTH**2) * u).double()
    new_theta_dot = torch.clamp(theta_dot + accel * DT, -MAX_SPEED, MAX_SPEED)
    new_theta = theta + new_theta_dot * DT
    return torch.cat([new_theta, new_theta_dot], dim=1), -cost


class PendulumModel:
    """WorldModel protocol over the true Pendulum-v1 (no value heads, no policy)."""

    family = "pendulum"
    latent_dim = 2
    action_dim = 1
    num_value_heads = 0
    value_uses_action = True

    def __init__(self, discount: float = 0.975):
        self.discount = discount
        self.model_evals = 0

    @staticmethod
    def max_torque_of(a: torch.Tensor) -> torch.Tensor:
        """Actions in [-1, 1] units -> torque (the env adapter maps [-1, 1] onto [-2, 2])."""
        return MAX_TORQUE * a.double()

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 3) observations (cos, sin, theta_dot) -> (B, 2) float64 state."""
        obs = obs.double()
        return torch.stack([torch.atan2(obs[:, 1], obs[:, 0]), obs[:, 2]], dim=1)

    def step(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base.count_work(self, z.shape[0])
        return dynamics(z, self.max_torque_of(a))

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return dynamics(z, self.max_torque_of(a))[0]

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        base.count_work(self, z.shape[0])
        return dynamics(z, self.max_torque_of(a))[1]

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(0, z.shape[0], 1, dtype=z.dtype)

    def value_avg(self, z: torch.Tensor, a: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        return torch.zeros(z.shape[0], 1, dtype=z.dtype)

    def policy(self, z, eps=None, generator=None, explore=False):
        raise NotImplementedError("the ground-truth pendulum has no policy; take proposals from a learned agent")
