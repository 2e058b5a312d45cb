"""Agent families: world models that planners plan with."""

from benchctl.agents.base import CheckpointInfo, ModelDims, WorldModel
from benchctl.agents.checkpoint import describe_checkpoint, load_checkpoint, load_checkpoint_with_info

__all__ = [
    "CheckpointInfo",
    "ModelDims",
    "WorldModel",
    "describe_checkpoint",
    "load_checkpoint",
    "load_checkpoint_with_info",
]
