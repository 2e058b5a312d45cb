"""The policy prior alone: execute its deterministic evaluation action, no planning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl.planners.base import Plan, Planner, register
from benchctl.planners.rollout import evaluation_action


@dataclass
class PolicyConfig:
    """No options: the family's evaluation action (TD-MPC2, BMPC: the mean tanh(mu); Dreamer: the mode of
    100 actor samples, dreamer-pytorch's `get_action(det=True)`)."""


@register
class PolicyPlanner(Planner):
    name = "policy"
    paper = "the agent's policy prior pi(z), its evaluation action (TD-MPC2 / BMPC mean; Dreamer actor mode)"
    Config = PolicyConfig

    def plan(self, z: torch.Tensor, generator: torch.Generator) -> Plan:
        return Plan(action=evaluation_action(self.model, z, generator)[0].clamp(-1, 1))
