"""Random draws for one episode or for several episodes in lockstep, each from its own generator.

Every random number an episode uses (planner noise, policy samples, value-head choices, Dreamer's
posterior and prior samples) comes from that episode's generator. When E episodes run in lockstep
(`--batch-episodes`), a planner call serves all E of them and its tensors carry the episodes as
consecutive blocks of one axis (episode-major: rows e*k .. (e+1)*k - 1 belong to episode e). The
helpers here draw each block from its episode's generator with the shape a single episode would
draw, so every episode sees exactly the numbers it sees when run alone.

`Draws` is what planners and models accept: a torch.Generator (one episode) or EpisodeGenerators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeAlias

import torch


class EpisodeGenerators:
    """The generators of E lockstep episodes, in episode order."""

    def __init__(self, generators: Sequence[torch.Generator]):
        if not generators:
            raise ValueError("EpisodeGenerators needs at least one generator")
        self.generators = list(generators)

    def __len__(self) -> int:
        return len(self.generators)

    def __iter__(self) -> Iterator[torch.Generator]:
        return iter(self.generators)

    def __getitem__(self, episode: int) -> torch.Generator:
        return self.generators[episode]


Draws: TypeAlias = torch.Generator | EpisodeGenerators


def episode_count(generator: Draws | None) -> int:
    """How many lockstep episodes `generator` serves (1 for a plain generator or None)."""
    return len(generator) if isinstance(generator, EpisodeGenerators) else 1


def _blocks(
    draw: Callable[[tuple[int, ...], torch.Generator | None], torch.Tensor],
    generator: Draws | None,
    shape: Sequence[int],
    dim: int,
) -> torch.Tensor:
    """draw(shape) from one generator, or E draws of shape[dim] / E concatenated along `dim`."""
    shape = tuple(shape)
    if not isinstance(generator, EpisodeGenerators):
        return draw(shape, generator)
    if len(generator) == 1:
        return draw(shape, generator[0])
    count = len(generator)
    if shape[dim] % count:
        raise ValueError(f"axis {dim} of {shape} does not split into {count} episodes")
    part = (*shape[:dim], shape[dim] // count, *shape[dim + 1 :])
    return torch.cat([draw(part, g) for g in generator], dim=dim)


Device = torch.device | str | None


def normal(generator: Draws | None, shape: Sequence[int], dim: int = 0, device: Device = None, dtype=None):
    """N(0, 1) draws of `shape`; the episodes are blocks of axis `dim`."""
    return _blocks(lambda s, g: torch.randn(s, generator=g, device=device, dtype=dtype), generator, shape, dim)


def uniform(generator: Draws | None, shape: Sequence[int], dim: int = 0, device: Device = None, dtype=None):
    """U[0, 1) draws of `shape`; the episodes are blocks of axis `dim`."""
    return _blocks(lambda s, g: torch.rand(s, generator=g, device=device, dtype=dtype), generator, shape, dim)


def exponential(generator: Draws | None, shape: Sequence[int], dim: int = 0, device: Device = None) -> torch.Tensor:
    """Exp(1) draws of `shape` (Gumbel-max noise); the episodes are blocks of axis `dim`."""
    return _blocks(lambda s, g: torch.empty(s, device=device).exponential_(generator=g), generator, shape, dim)


def randint(generator: Draws | None, high: int, count: int, device: Device = None) -> torch.Tensor:
    """`count` integers in [0, high) per episode: (E * count,)."""
    total = count * episode_count(generator)
    return _blocks(lambda s, g: torch.randint(high, s, generator=g, device=device), generator, (total,), 0)


def permutations(generator: Draws | None, n: int, device: Device = None) -> torch.Tensor:
    """A random permutation of range(n) per episode: (E, n) (torch.randperm with each generator)."""
    generators = list(generator) if isinstance(generator, EpisodeGenerators) else [generator]
    return torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])


def multinomial(weights: torch.Tensor, samples: int, generator: Draws | None) -> torch.Tensor:
    """`samples` indices drawn with replacement per row of weights (E, S), row e with episode e's
    generator: (E, samples)."""
    generators = list(generator) if isinstance(generator, EpisodeGenerators) else [generator]
    if len(generators) != weights.shape[0]:
        raise ValueError(f"{weights.shape[0]} weight rows for {len(generators)} episodes")
    rows = zip(weights, generators, strict=True)
    return torch.stack([torch.multinomial(row, samples, replacement=True, generator=g) for row, g in rows])
