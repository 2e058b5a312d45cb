"""Episode replay buffer with TD-MPC2's sampling: pick an episode uniformly, then a window start
uniformly among its valid starts (torchrl SliceSampler semantics, spec/training.md section 2).

An episode of L steps keeps obs (L + 1, obs_dim), actions (L, A), rewards (L,). A sampled window
of horizon H is obs[s .. s + H] and actions/rewards[s .. s + H - 1], time-major.
"""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    def __init__(self, capacity: int = 1_000_000):
        self.capacity = capacity  # in stored entries (L + 1 per episode, as the official buffer counts)
        self.episodes: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """One finished episode; the oldest episodes leave when capacity is exceeded (FIFO)."""
        self.episodes.append(
            {
                "obs": np.asarray(obs, np.float32),
                "actions": np.asarray(actions, np.float32),
                "rewards": np.asarray(rewards, np.float32),
            }
        )
        self.size += len(obs)
        while self.size > self.capacity and len(self.episodes) > 1:
            self.size -= len(self.episodes.pop(0)["obs"])

    def sample(self, batch: int, horizon: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """obs (H + 1, B, obs_dim), actions (H, B, A), rewards (H, B, 1)."""
        usable = [e for e in self.episodes if len(e["actions"]) >= horizon]
        pick = torch.randint(len(usable), (batch,), generator=generator).tolist()
        starts = torch.rand(batch, generator=generator).numpy()
        obs, actions, rewards = [], [], []
        for i, u in zip(pick, starts, strict=True):
            e = usable[i]
            s = int(u * (len(e["actions"]) - horizon + 1))
            obs.append(e["obs"][s : s + horizon + 1])
            actions.append(e["actions"][s : s + horizon])
            rewards.append(e["rewards"][s : s + horizon])
        return (
            torch.from_numpy(np.stack(obs, 1)),
            torch.from_numpy(np.stack(actions, 1)),
            torch.from_numpy(np.stack(rewards, 1)).unsqueeze(-1),
        )

    def state(self) -> dict:
        """Everything needed to rebuild the buffer, as tensors (loadable with weights_only=True)."""
        lengths = torch.tensor([len(e["actions"]) for e in self.episodes], dtype=torch.int64)

        def cat(key: str) -> torch.Tensor:
            if not self.episodes:
                return torch.empty(0)
            return torch.from_numpy(np.concatenate([e[key] for e in self.episodes]))

        return {
            "capacity": self.capacity,
            "lengths": lengths,
            "obs": cat("obs"),
            "actions": cat("actions"),
            "rewards": cat("rewards"),
        }

    @classmethod
    def from_state(cls, state: dict) -> ReplayBuffer:
        buffer = cls(int(state["capacity"]))
        o = a = 0
        for length in state["lengths"].tolist():
            buffer.add(
                state["obs"][o : o + length + 1].numpy(),
                state["actions"][a : a + length].numpy(),
                state["rewards"][a : a + length].numpy(),
            )
            o, a = o + length + 1, a + length
        return buffer
