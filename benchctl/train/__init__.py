"""Training TD-MPC2 agents that write official-format checkpoints (spec/training.md)."""
