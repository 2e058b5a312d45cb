"""TD-MPC2's world model (Hansen et al. 2024) at any size, behind the WorldModel protocol.

Dimensions come from the checkpoint (`ModelDims`). Module and parameter names equal the
official ones, so an official state dict loads with `load_state_dict` after layout remapping
(see `checkpoint.py`).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from benchctl import draws
from benchctl.agents import base
from benchctl.agents.base import ModelDims
from benchctl.agents.layers import (
    Ensemble,
    NormedLinear,
    RandomShift,
    SimNorm,
    TwoHotDecoder,
    conv_encoder,
    mlp,
)
from benchctl.draws import Draws


class TDMPC2Model(nn.Module):
    """Encoder h, latent dynamics d, reward R, policy prior pi and a Q ensemble Q_k(z, a).

    Latents are SimNorm-ed (groups of 8). Reward and values are 101-bin two-hot logits in symlog
    space, decoded by softmax expectation. The policy is a tanh-squashed Gaussian whose log-std is
    mapped into [log_std_min, log_std_min + log_std_dif].
    """

    log_std_min: torch.Tensor  # int64 (or float) scalar buffers, as the official state dicts hold them
    log_std_dif: torch.Tensor

    family = "tdmpc2"
    value_uses_action = True
    shares_start_states = True  # step() takes (E, N, Z) start latents each shared by N rows (below)

    def __init__(self, dims: ModelDims, log_std_min: float = -10.0, log_std_dif: float = 12.0, dropout: float = 0.01):
        super().__init__()
        self.dims = dims
        self.latent_dim = dims.latent_dim
        self.action_dim = dims.action_dim
        self.num_value_heads = dims.num_value_heads
        self.discount = 0.99
        self.model_evals = 0
        # Other work a planning step does, apart from the dynamics/reward steps in model_evals:
        # value-head rows (heads x batch), policy rows, backward passes (counted by the planners).
        self.work = {"value_heads": 0, "policy": 0, "backward": 0}
        z, a, m = dims.latent_dim, dims.action_dim, dims.mlp_dim
        enc_hidden = max(dims.num_enc_layers - 1, 1) * [dims.enc_dim]
        if dims.obs_kind == "rgb":
            self._encoder = nn.ModuleDict({"rgb": conv_encoder(dims.obs_shape[0], dims.num_channels, dims.simnorm_dim)})
        else:
            self._encoder = nn.ModuleDict(
                {"state": mlp(dims.obs_dim, enc_hidden, z, out_act=SimNorm(dims.simnorm_dim))}
            )
        self._dynamics = mlp(z + a, [m, m], z, out_act=SimNorm(dims.simnorm_dim))
        self._reward = mlp(z + a, [m, m], dims.num_bins)
        self._pi = mlp(z, [m, m], 2 * a)
        self._Qs = Ensemble(dims.num_value_heads, self._value_in_dim(), [m, m], dims.num_bins, dropout=dropout)
        self.register_buffer(
            "log_std_min",
            torch.tensor(log_std_min, dtype=torch.int64 if float(log_std_min).is_integer() else torch.float32),
        )
        self.register_buffer(
            "log_std_dif",
            torch.tensor(log_std_dif, dtype=torch.int64 if float(log_std_dif).is_integer() else torch.float32),
        )
        self.decode = TwoHotDecoder(dims.num_bins)

    def _value_in_dim(self) -> int:
        return self.dims.latent_dim + self.dims.action_dim

    # -- WorldModel protocol -------------------------------------------------------------
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., obs_dim), or pixels (B, C, H, W) / (T, B, C, H, W) in 0..255 -> z (..., Z). Pixels pass the random
        shift first, as the official encode() does also at evaluation (`augment` turns it off)."""
        kind = self.dims.obs_kind
        if kind == "rgb" and obs.dim() == 5:  # (T, B, C, H, W) training windows: per time step, as the official
            return torch.stack([self._encoder[kind](frames) for frames in obs])
        return self._encoder[kind](obs)

    def _shift(self) -> RandomShift | None:
        return cast(RandomShift, cast(nn.Sequential, self._encoder["rgb"])[0]) if self.dims.obs_kind == "rgb" else None

    @property
    def augment(self) -> bool:
        """Whether encode() randomly shifts pixel observations (pixel agents only)."""
        shift = self._shift()
        return shift is not None and shift.active

    @augment.setter
    def augment(self, on: bool) -> None:
        shift = self._shift()
        if shift is not None:
            shift.active = on

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, A) -> z' (B, Z)."""
        return self._dynamics(torch.cat([z, a], dim=-1))

    def reward_logits(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        base.count_work(self, z.shape[0])
        return self._reward(torch.cat([z, a], dim=-1))

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, A) -> decoded reward (B, 1)."""
        return self.decode(self.reward_logits(z, a))

    def step(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next(z, a), reward(z, a)) for z (B, Z), a (B, A) -> ((B, Z), (B, 1)).

        The first step of a plan starts many candidates from few latents: z one latent expanded
        over the batch (stride 0), or z (E, N, Z) with B = E * N, episode e's latent shared by rows
        e * N ... (e + 1) * N - 1 of a (lockstep episodes). Then the latent part of both first layers
        is computed once per start latent instead of once per row.
        """
        base.count_work(self, a.shape[0])
        if z.dim() == 3:
            starts = z[:, 0]
        elif z.shape[0] > 1 and z.stride(0) == 0:
            starts = z[:1]
        else:
            za = torch.cat([z, a], dim=-1)
            return self._dynamics(za), self.decode(self._reward(za))
        return self._shared_first(self._dynamics, starts, a), self.decode(self._shared_first(self._reward, starts, a))

    def _shared_first(self, net: nn.Sequential, starts: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """net(cat(z, a)) for rows whose latents are `starts` (S, Z), each shared by B / S consecutive
        rows of a (B, A): the first layer split as W_z z (S rows) + W_a a + b."""
        first, Z = cast(NormedLinear, net[0]), starts.shape[1]
        shared = F.linear(starts, first.weight[:, :Z], first.bias)  # (S, out)
        if starts.shape[0] > 1:
            shared = shared.repeat_interleave(a.shape[0] // starts.shape[0], 0)
        x = torch.addmm(shared, a, first.weight[:, Z:].t())
        x = first.post(x)
        for layer in list(net)[1:]:
            x = layer(x)
        return x

    def value_logits(
        self, z: torch.Tensor, a: torch.Tensor | None = None, heads: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the selected heads (all by default): (k, B, bins)."""
        if self.value_uses_action and a is None:
            raise ValueError("Q(z, a) heads need the action a")
        x = torch.cat([z, a], dim=-1) if a is not None and self.value_uses_action else z
        base.count_work(self, value_heads=(self.num_value_heads if heads is None else heads.shape[-1]) * z.shape[0])
        return self._Qs(x, heads)

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        """Every head decoded: (heads, B, 1)."""
        return self.decode(self.value_logits(z, a))

    def random_heads(self, generator: Draws | None = None) -> torch.Tensor:
        """Two distinct heads drawn uniformly per episode, as the official `Q(..., return_type='avg')`
        does: (E, 2)."""
        return draws.permutations(generator, self.num_value_heads, self.log_std_min.device)[:, :2]

    def value_avg(self, z: torch.Tensor, a: torch.Tensor | None = None, generator: Draws | None = None) -> torch.Tensor:
        """Mean of two random heads (B, 1); only the heads drawn are computed. Lockstep episodes
        (B = E * k rows, episode-major) each use their own two heads (heads (E, 2))."""
        heads = self.random_heads(generator)
        if heads.shape[0] == 1:
            return self.decode(self.value_logits(z, a, heads[0])).mean(0)
        rows = z.shape[0] // heads.shape[0]
        if rows >= 64:  # many rows per episode (MPPI's samples): each episode's two heads, grouped products
            return self.decode(self.value_logits(z, a, heads)).mean(0)
        # few rows (Dream-MPC's candidates): the union of the drawn heads in one product costs less than
        # many small grouped ones (0.8 vs 2.8 ms for 10 episodes x 5 rows here); each row keeps its own two
        drawn = heads.unique()  # sorted
        values = self.decode(self.value_logits(z, a, drawn)).squeeze(-1)  # (U, B)
        picked = torch.searchsorted(drawn, heads.contiguous()).repeat_interleave(rows, 0)  # (B, 2)
        return values.t().gather(1, picked).mean(1, keepdim=True)

    def log_std_bounds(self, explore: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, span) of the policy's log-std; `explore` selects wider bounds where a family has them."""
        return self.log_std_min, self.log_std_dif

    def policy_params(self, z: torch.Tensor, explore: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Z) -> (pre-squash mean mu, log_std), each (B, A)."""
        base.count_work(self, policy=z.shape[0])
        mu, raw = self._pi(z).chunk(2, dim=-1)
        low, span = self.log_std_bounds(explore)
        log_std = low + 0.5 * span * (torch.tanh(raw) + 1)
        return mu, log_std

    def policy(
        self,
        z: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: Draws | None = None,
        explore: bool = False,
    ):
        """(B, Z) -> (action, mean, log_std), each (B, A). TD-MPC2: action = tanh(mu + std * eps)."""
        mu, log_std = self.policy_params(z, explore)
        if eps is None:
            eps = draws.normal(generator, mu.shape, 0, mu.device, mu.dtype)
        return self._sample(mu, log_std, eps), torch.tanh(mu), log_std

    def _sample(self, mu: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return torch.tanh(mu + eps * log_std.exp())

    def freeze(self) -> TDMPC2Model:
        """Evaluation mode with parameters frozen: only planner actions can require grad."""
        self.eval()
        self.requires_grad_(False)
        return self
