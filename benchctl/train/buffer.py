"""Episode replay buffer with TD-MPC2's sampling: pick an episode uniformly, then a window start
uniformly among its valid starts (torchrl SliceSampler semantics, spec/training.md section 2).

An episode of L steps keeps obs (L + 1, obs_dim), actions (L, A), rewards (L,), and optional
per-step extras (L, D) aligned with the actions (BMPC: the planner's action distribution at obs[t]).
A sampled window of horizon H is obs[s .. s + H] and actions/rewards/extras[s .. s + H - 1], time-major.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """obs (H + 1, B, obs_dim), actions (H, B, A), rewards (H, B, 1), extras name -> (H, B, D);
    where: (B, 2) int64 rows of (episode position, window start), valid until the next `add`."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    extras: dict[str, torch.Tensor]
    where: np.ndarray


class EpisodeTrace:
    """One episode as it is acted: observations (T + 1), actions (T), rewards (T); `extras` holds
    per-step arrays a family also stores (BMPC's planner distributions)."""

    def __init__(self, first_obs: np.ndarray):
        self.observations: list[np.ndarray] = [first_obs]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.extras: dict[str, list[np.ndarray]] = {}

    def add(self, action: np.ndarray, result, **extras: np.ndarray) -> None:
        """The action taken and the environment's StepResult after it."""
        self.observations.append(result.obs)
        self.actions.append(action)
        self.rewards.append(result.reward)
        for key, value in extras.items():
            self.extras.setdefault(key, []).append(value)

    @property
    def total(self) -> float:
        # summed in order, as an evaluation record sums its return: np.sum's pairwise order differs by
        # round-off (and by numpy's SIMD build), so the same actions would give two returns
        return float(sum(self.rewards))

    def store(self, buffer: ReplayBuffer) -> None:
        buffer.add(
            np.stack(self.observations),
            np.stack(self.actions),
            np.array(self.rewards),
            **{k: np.stack(v) for k, v in self.extras.items()},
        )


class ReplayBuffer:
    def __init__(self, capacity: int = 1_000_000):
        self.capacity = capacity  # in stored entries (L + 1 per episode, as the official buffer counts)
        self.episodes: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, **extras: np.ndarray) -> None:
        """One finished episode; the oldest episodes leave when capacity is exceeded (FIFO)."""
        episode = {
            # pixels stay uint8 frames (4x smaller); state vectors are float32
            "obs": np.asarray(obs) if np.asarray(obs).dtype == np.uint8 else np.asarray(obs, np.float32),
            "actions": np.asarray(actions, np.float32),
            "rewards": np.asarray(rewards, np.float32),
        }
        episode |= {f"extra.{k}": np.array(v, np.float32) for k, v in extras.items()}
        self.episodes.append(episode)
        self.size += len(obs)
        while self.size > self.capacity and len(self.episodes) > 1:
            self.size -= len(self.episodes.pop(0)["obs"])

    def sample_batch(self, batch: int, horizon: int, generator: torch.Generator) -> Batch:
        usable = [i for i, e in enumerate(self.episodes) if len(e["actions"]) >= horizon]
        pick = torch.randint(len(usable), (batch,), generator=generator).tolist()
        starts = torch.rand(batch, generator=generator).numpy()
        keys = [k for k in self.episodes[usable[0]] if k != "obs"]
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ["obs", *keys]}
        where = np.empty((batch, 2), np.int64)
        for j, (i, u) in enumerate(zip(pick, starts, strict=True)):
            e = self.episodes[usable[i]]
            s = int(u * (len(e["actions"]) - horizon + 1))
            where[j] = usable[i], s
            rows["obs"].append(e["obs"][s : s + horizon + 1])
            for k in keys:
                rows[k].append(e[k][s : s + horizon])
        stacked = {k: torch.from_numpy(np.stack(v, 1)) for k, v in rows.items()}
        return Batch(
            obs=stacked["obs"],
            actions=stacked["actions"],
            rewards=stacked["rewards"].unsqueeze(-1),
            extras={k.removeprefix("extra."): v for k, v in stacked.items() if k.startswith("extra.")},
            where=where,
        )

    def sample(self, batch: int, horizon: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """obs (H + 1, B, obs_dim), actions (H, B, A), rewards (H, B, 1)."""
        b = self.sample_batch(batch, horizon, generator)
        return b.obs, b.actions, b.rewards

    def write(self, name: str, where: np.ndarray, values: torch.Tensor) -> None:
        """Overwrite extra `name` of sampled windows: where (b, 2) from `Batch.where`, values (H, b, D)."""
        data = values.detach().cpu().numpy()
        for j, (episode, start) in enumerate(where):
            self.episodes[episode][f"extra.{name}"][start : start + data.shape[0]] = data[:, j]

    def newest(self, max_bytes: int) -> ReplayBuffer:
        """The newest whole episodes that fit in `max_bytes` (their arrays' sizes), same capacity: what
        is committed beside a checkpoint so another machine continues with recent experience."""
        kept = ReplayBuffer(self.capacity)
        total, start = 0, len(self.episodes)
        while start > 0:
            size = sum(a.nbytes for a in self.episodes[start - 1].values())
            if total + size > max_bytes:
                break
            total, start = total + size, start - 1
        for episode in self.episodes[start:]:
            kept.episodes.append(episode)
            kept.size += len(episode["obs"])
        return kept

    def state(self) -> dict:
        """Everything needed to rebuild the buffer, as tensors (loadable with weights_only=True)."""
        lengths = torch.tensor([len(e["actions"]) for e in self.episodes], dtype=torch.int64)
        keys = list(self.episodes[0]) if self.episodes else ["obs", "actions", "rewards"]
        state = {"capacity": self.capacity, "lengths": lengths}
        for key in keys:
            state[key] = (
                torch.from_numpy(np.concatenate([e[key] for e in self.episodes])) if self.episodes else torch.empty(0)
            )
        return state

    @classmethod
    def from_state(cls, state: dict, capacity: int = 0) -> ReplayBuffer:
        """The buffer `state()` saved, holding at least `capacity` entries (a run continued to more steps
        than it began with keeps them all)."""
        buffer = cls(max(int(state["capacity"]), capacity))
        extras = [k for k in state if k.startswith("extra.")]
        o = a = 0
        for length in state["lengths"].tolist():
            buffer.add(
                state["obs"][o : o + length + 1].numpy(),
                state["actions"][a : a + length].numpy(),
                state["rewards"][a : a + length].numpy(),
                **{k.removeprefix("extra."): state[k][a : a + length].numpy() for k in extras},
            )
            o, a = o + length + 1, a + length
        return buffer
