"""Agent families: world models that planners plan with."""

from typing import Any

from benchctl.agents.base import CheckpointInfo, ModelDims, WorldModel
from benchctl.agents.checkpoint import describe_checkpoint, load_checkpoint, load_checkpoint_with_info
from benchctl.agents.dreamer_world import DreamerWorldModel

# Per family: what its planners run where the user sets nothing else (the family's papers' settings).
_FAMILY_MODELS: dict[str, Any] = {"dreamer": DreamerWorldModel}
_PLANNER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {"dreamer": DreamerWorldModel.planner_defaults}


def planning_discount(family: str, task_discount: float) -> float:
    """The discount a family plans with: the task's (TD-MPC2's heuristic from the episode length) unless
    the family fixes its own (Dreamer: 0.99, Dream-MPC Tab. 16)."""
    return float(getattr(_FAMILY_MODELS.get(family), "fixed_discount", None) or task_discount)


def pixel_protocol(family: str) -> str:
    """How a family's official code renders pixel observations (envs/dmc_pixels.py): "tdmpc2" unless the
    family says otherwise (Dreamer: dreamer-pytorch's single resized frame)."""
    return str(getattr(_FAMILY_MODELS.get(family), "pixel_protocol", "tdmpc2"))


def planner_defaults(family: str, planner: str) -> dict[str, Any]:
    """Option values `family` gives `planner` by default ({} where the planner's own defaults hold)."""
    return dict(_PLANNER_DEFAULTS.get(family, {}).get(planner, {}))


__all__ = [
    "CheckpointInfo",
    "ModelDims",
    "WorldModel",
    "describe_checkpoint",
    "load_checkpoint",
    "load_checkpoint_with_info",
    "planner_defaults",
    "pixel_protocol",
    "planning_discount",
]
