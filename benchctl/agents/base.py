"""The seam between planners and agents: the WorldModel protocol and the Agent bundle.

Every tensor is batched: B is the batch (candidates are part of it), Z the latent size,
A the action size. Planners see only this protocol, never observations after `encode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

import torch

from benchctl.draws import Draws


@runtime_checkable
class WorldModel(Protocol):
    """A latent world model that planners can roll out.

    Attributes: `family` ("tdmpc2", "bmpc", ...), `latent_dim`, `action_dim`,
    `num_value_heads`, `value_uses_action` (Q(z, a) vs V(z)), `discount` (per task),
    `model_evals` (a running count of latent steps, i.e. rows passed through the reward head:
    the unit "one candidate, one horizon step" that papers report). A model may also keep `work`,
    {"value_heads", "policy", "backward"} running counts, which the episode loop records per step.
    """

    family: str
    latent_dim: int
    action_dim: int
    num_value_heads: int
    value_uses_action: bool
    discount: float
    model_evals: int

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> z (B, Z)."""
        ...

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, A) -> z' (B, Z)."""
        ...

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, A) -> decoded reward (B, 1)."""
        ...

    def step(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One latent step: (next(z, a), reward(z, a)), possibly sharing work. A model that sets
        `shares_start_states = True` also takes z (E, N, Z), E start latents each shared by N
        consecutive rows of a (E * N, A), and computes their share once."""
        ...

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        """Every value head decoded: (heads, B, 1). Q(z, a) or V(z) (then `a` is ignored)."""
        ...

    def value_avg(self, z: torch.Tensor, a: torch.Tensor | None = None, generator: Draws | None = None) -> torch.Tensor:
        """Mean of two value heads drawn at random (one draw per call and episode): (B, 1)."""
        ...

    def policy(
        self,
        z: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: Draws | None = None,
        explore: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, Z) -> (sampled action, mean action, log_std), each (B, A); `eps` (B, A) is the noise
        (drawn from `generator` when None; lockstep episodes are episode-major blocks of B);
        `explore` widens the log-std bounds where the family defines exploration bounds."""
        ...


@runtime_checkable
class RecurrentWorldModel(WorldModel, Protocol):
    """A world model whose latent summarizes the history (Dreamer's RSSM): during an episode it
    filters instead of encoding each observation alone. The episode loop calls `begin_episode` at a
    reset, `observe` on every observation, and `executed` with each action sent to the environment."""

    recurrent: bool  # True

    def begin_episode(self, generator: Draws) -> None:
        """Blank histories for the episodes `generator` serves (E = 1, or E in lockstep); the
        filter's random draws come from their generators."""
        ...

    def observe(self, obs: torch.Tensor) -> torch.Tensor:
        """(E, *obs_shape) -> z (E, Z), after the previous executed actions."""
        ...

    def executed(self, action: torch.Tensor) -> None:
        """The actions (E, A) sent to the environments after the last observe()."""
        ...

    def keep_episodes(self, keep: torch.Tensor, generator: Draws) -> None:
        """Some lockstep episodes ended: keep the histories of episodes `keep` (indices, ascending);
        `generator` serves those alone from now on."""
        ...


def _add_counts(model: WorldModel, evals: int = 0, **work: int) -> None:
    """Add `evals` latent steps to `model.model_evals` and each keyword's rows to `model.work[key]`
    (models that count only latent steps have no `work`)."""
    model.model_evals += evals
    counts: dict[str, int] | None = getattr(model, "work", None)
    if counts is not None:
        for key, rows in work.items():
            counts[key] += rows


# What models count their work with, called as `base.count_work(...)` so that
# `keep_counts_out_of_graphs` can swap it for a version torch.compile leaves out of its graphs.
count_work: Callable[..., None] = _add_counts


def keep_counts_out_of_graphs() -> None:
    """Before compiling a model's methods (`benchctl profile --compile`): count outside the graphs.
    A count read while tracing becomes a guard on its value, and one that grows at every call would
    recompile the method at every call until torch gives up and runs it eagerly. Not the default:
    it imports torch's compiler (~1 s) in every process."""
    global count_work
    count_work = torch.compiler.disable(_add_counts)


def as_recurrent(model: object) -> RecurrentWorldModel | None:
    """The model as a RecurrentWorldModel when it filters (declares `recurrent = True`), else None."""
    return cast(RecurrentWorldModel, model) if getattr(model, "recurrent", False) else None


@dataclass(frozen=True)
class ModelDims:
    """Architecture read off a checkpoint's tensor shapes."""

    obs_dim: int
    action_dim: int
    latent_dim: int
    enc_dim: int
    mlp_dim: int
    num_enc_layers: int
    num_value_heads: int
    num_bins: int
    simnorm_dim: int = 8
    obs_shape: tuple[int, ...] = ()  # pixel agents: (C, H, W), e.g. (9, 64, 64) = 3 stacked RGB frames
    num_channels: int = 0  # pixel agents: convolution channels

    @property
    def obs_kind(self) -> str:
        """'rgb' for image observations (a conv encoder), 'state' for vectors."""
        return "rgb" if len(self.obs_shape) == 3 else "state"


@dataclass(frozen=True)
class CheckpointInfo:
    """What `benchctl inspect` shows and what every result header records."""

    path: str
    sha256: str
    family: str
    layout: str
    model_size: str
    dims: ModelDims
    num_params: int
    log_std_bounds: tuple[float, float] | None  # None: the family's actor has no log-std bounds (Dreamer)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)
