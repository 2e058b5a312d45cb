"""Agent families: world models that planners plan with."""

from benchctl.agents.base import CheckpointInfo, ModelDims, WorldModel
from benchctl.agents.checkpoint import load_checkpoint, load_checkpoint_with_info

__all__ = ["CheckpointInfo", "ModelDims", "WorldModel", "load_checkpoint", "load_checkpoint_with_info"]
