"""The policy prior alone: execute its deterministic evaluation action, no planning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchctl.draws import Draws
from benchctl.planners.base import Planner, Plans, register
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

    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        return Plans(actions=evaluation_action(self.model, z, generator).clamp(-1, 1))
