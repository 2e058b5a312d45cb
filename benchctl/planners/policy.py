"""The policy prior alone: execute its deterministic mean action, no planning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl.planners.base import Plan, Planner, register


@dataclass
class PolicyConfig:
    """No options: the action is the mean of pi(z) (tanh(mu) for TD-MPC2 and BMPC)."""


@register
class PolicyPlanner(Planner):
    name = "policy"
    paper = "the agent's policy prior pi(z), mean action (TD-MPC2 / BMPC)"
    Config = PolicyConfig

    def plan(self, z: torch.Tensor, generator: torch.Generator) -> Plan:
        # eps = 0: the mean needs no noise, and the generator is left untouched.
        _, mean, _ = self.model.policy(z, eps=torch.zeros(z.shape[0], self.model.action_dim, device=z.device))
        return Plan(action=mean[0].clamp(-1, 1))
