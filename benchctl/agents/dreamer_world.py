"""A Dreamer agent behind the WorldModel protocol: filtering during the episode, prior imagination
for planning, Dreamer's own return estimate (Vλ) and its planners' settings (Dream-MPC App. D).

The latent that planners see is z = [belief, state] (B, belief + state). Across an episode the model
*filters* (dreamer-pytorch `update_belief_and_act`): each real observation advances the GRU belief
with the previous state and the executed action, then samples the posterior state given the
observation's embedding; planning starts from that (belief, state). Imagined steps (`next`) use the
prior, sampled as dreamer-pytorch's transition model does. Every random draw (posterior, prior,
the pixel dequantization noise, the actor's samples) comes from the episode's generator, so an
episode replays exactly.

The reward head reads the state an action leads to (q(r_t | s_t)): `step(z, a)` returns
(z', R(z')), the reward of the reached state, so a plan's rewards are those of s_{t+1..t+H} as in
Dream-MPC Eq. 16. The value head v(s) needs no action (`value_uses_action = False`), one head.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from benchctl import draws
from benchctl.agents import base
from benchctl.agents.dreamer import DreamerModel
from benchctl.draws import Draws

# Dream-MPC Tab. 16 and the Grad-MPC paper: what each planner runs on a Dreamer backbone, applied
# wherever the user leaves an option unset (`--set` wins). Recorded in every results header.
PLANNER_DEFAULTS: dict[str, dict[str, Any]] = {
    # Tab. 16: H 15, N 5, I 1, alpha 0.1, action noise 0.2, reuse 0.1; App. D: no uncertainty term
    "dream_mpc": {
        "horizon": 15,
        "candidates": 5,
        "iterations": 1,
        "lr": 0.1,
        "reuse": 0.1,
        "lambda_unc": 0.0,
        "proposal_noise": 0.2,
    },
    # Tab. 16 (Dream-MPC's reimplementation of Grad-MPC): 1000 candidates x 10 iterations x H 12
    "grad_mpc": {"horizon": 12, "candidates": 1000, "iterations": 10},
    # Tab. 16 hybrid Grad-MPC: H 1, 10 iterations, action optimization rate 0.05
    "policy_grad_mpc": {"horizon": 1, "iterations": 10, "lr": 0.05},
}


class DreamerWorldModel(nn.Module):
    """DreamerModel's networks as a recurrent WorldModel. Shapes: z (B, belief + state), a (B, A)."""

    family = "dreamer"
    value_uses_action = False
    num_value_heads = 1
    recurrent = True  # the episode loop calls begin_episode / observe / executed instead of encode
    return_lambda = 0.95  # Vλ's lambda (Eq. 14; Tab. 16 "horizon discount factor")
    fixed_discount = 0.99  # Tab. 16, whatever the episode length
    planner_defaults: ClassVar[dict[str, dict[str, Any]]] = PLANNER_DEFAULTS
    pixel_protocol = "dreamer"  # dreamer-pytorch's rendering: one resized 64x64 frame (envs/dmc_pixels.py)

    def __init__(self, net: DreamerModel, bit_depth: int = 5, mode_samples: int = 100):
        super().__init__()
        self.net = net
        d = net.dims
        self.belief_size, self.state_size = d.belief, d.state
        self.latent_dim = d.belief + d.state
        self.action_dim = d.action_dim
        self.discount = self.fixed_discount
        self.bit_depth = bit_depth  # Tab. 16: images quantized to 5 bits
        self.mode_samples = mode_samples  # dreamer-pytorch's SampleDist: the mode of 100 samples
        self.model_evals = 0
        self.work = {"value_heads": 0, "policy": 0, "backward": 0}
        self.sample_prior = True  # imagination samples the prior; deterministic() uses its mean
        self._noise: Draws = torch.Generator().manual_seed(0)  # replaced by each episode's generator
        self._filter: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # belief, state, action

    # -- the filter --------------------------------------------------------------------------
    def begin_episode(self, generator: Draws) -> None:
        """A blank history (zero belief, state and action, as dreamer-pytorch starts each episode)
        for each of the episodes `generator` serves (one, or E in lockstep); every later random draw
        comes from their generators."""
        self._noise = generator
        device = next(self.net.parameters()).device
        count = draws.episode_count(generator)
        self._filter = (
            torch.zeros(count, self.belief_size, device=device),
            torch.zeros(count, self.state_size, device=device),
            torch.zeros(count, self.action_dim, device=device),
        )

    def keep_episodes(self, keep: torch.Tensor, generator: Draws) -> None:
        """Histories of the episodes `keep` only (lockstep episodes ended); `generator` serves them."""
        self._noise = generator
        if self._filter is not None:
            self._filter = tuple(part[keep] for part in self._filter)  # type: ignore[assignment]

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, 3, 64, 64) -> floats in [-0.5, 0.5]: quantized to `bit_depth` bits, then
        uniform dequantization noise (dreamer-pytorch `preprocess_observation_`, applied to every
        observation, evaluation included). State vectors pass as float32."""
        if self.net.dims.symbolic:
            return obs.float()
        levels = 2**self.bit_depth
        x = torch.floor(obs.float() / 2 ** (8 - self.bit_depth)) / levels - 0.5
        noise = draws.uniform(self._noise, x.shape, 0, x.device)
        return x + noise / levels

    def observe(self, obs: torch.Tensor) -> torch.Tensor:
        """One filtering step on the real observations (E, *obs_shape) of the E episodes begun ->
        z (E, Z): each belief advances with the previous state and executed action, the state is a
        posterior sample."""
        if self._filter is None:
            raise RuntimeError("observe() before begin_episode()")
        belief, state, action = self._filter
        embedding = self.net.embed(self.preprocess(obs))
        belief = self.net.belief_step(belief, state, action)
        mean, std = self.net.posterior(belief, embedding)
        state = mean + std * self._randn(mean)
        self._filter = (belief, state, action)
        return torch.cat([belief, state], dim=-1)

    def executed(self, action: torch.Tensor) -> None:
        """The actions sent to the environments (E, A) (or (A,) for one): the next observe()
        conditions on them."""
        if self._filter is not None:
            belief, state, _ = self._filter
            executed = action.detach().reshape(belief.shape[0], -1).to(belief.device, belief.dtype)
            self._filter = (belief, state, executed)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """An observation without history (B, *obs_shape) -> z (B, Z): one filtering step from a blank
        history with the posterior mean. Episodes use observe(), which keeps the history."""
        x = self.preprocess(obs)
        b = x.shape[0]
        device = x.device
        belief = self.net.belief_step(
            torch.zeros(b, self.belief_size, device=device),
            torch.zeros(b, self.state_size, device=device),
            torch.zeros(b, self.action_dim, device=device),
        )
        mean, _ = self.net.posterior(belief, self.net.embed(x))
        return torch.cat([belief, mean], dim=-1)

    # -- imagination -------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[..., : self.belief_size], z[..., self.belief_size :]

    def _randn(self, like: torch.Tensor) -> torch.Tensor:
        return draws.normal(self._noise, like.shape, 0, like.device, like.dtype)

    @contextmanager
    def deterministic(self) -> Iterator[None]:
        """Imagine with the prior mean and leave the episode's generator untouched (predictions that
        must not change what the episode draws, e.g. the model-exploitation metric)."""
        saved = self.sample_prior
        self.sample_prior = False
        try:
            yield
        finally:
            self.sample_prior = saved

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, A) -> z' (B, Z): the belief's GRU step, then the prior over the state."""
        belief, state = self._split(z)
        belief = self.net.belief_step(belief, state, a)
        mean, std = self.net.prior(belief)
        state = mean + std * self._randn(mean) if self.sample_prior else mean
        return torch.cat([belief, state], dim=-1)

    def step(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z', R(z')) with R(z') (B, 1) the predicted reward of the state reached."""
        base.count_work(self, z.shape[0])
        z_next = self.next(z, a)
        return z_next, self.net.reward(*self._split(z_next)).unsqueeze(-1)

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(B, 1): the reward of the state that a leads to (one imagined step)."""
        return self.step(z, a)[1]

    def value(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        """v(z): (1, B, 1); the action is ignored."""
        base.count_work(self, value_heads=z.shape[0])
        return self.net.value(*self._split(z)).reshape(1, -1, 1)

    def value_avg(self, z: torch.Tensor, a: torch.Tensor | None = None, generator: Draws | None = None) -> torch.Tensor:
        """The single value head (B, 1)."""
        return self.value(z)[0]

    # -- the actor ---------------------------------------------------------------------------
    def policy(
        self,
        z: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: Draws | None = None,
        explore: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, Z) -> (tanh(mu + std * eps), tanh(mu), log std), each (B, A): the tanh-normal actor."""
        base.count_work(self, policy=z.shape[0])
        mu, std = self.net.actor(*self._split(z))
        if eps is None:
            eps = draws.normal(generator, mu.shape, 0, mu.device, mu.dtype)
        return torch.tanh(mu + std * eps), torch.tanh(mu), std.log()

    def act(self, z: torch.Tensor, generator: Draws) -> torch.Tensor:
        """Dreamer's evaluation action (B, A): dreamer-pytorch's `get_action(det=True)`, the most likely
        of `mode_samples` tanh-normal samples under the actor's density."""
        base.count_work(self, policy=z.shape[0])
        mu, std = self.net.actor(*self._split(z))
        noise = draws.normal(generator, (self.mode_samples, *mu.shape), 1, mu.device, mu.dtype)
        samples = torch.tanh(mu + std * noise)  # (S, B, A)
        # The density of each sample as dreamer-pytorch's TanhBijector computes it: back through a
        # clamped atanh (saturated samples all map to atanh(0.99999997)), Normal log-prob minus
        # log|d tanh/dx| = 2 (log 2 - x - softplus(-2x)).
        clamped = samples.clamp(-0.99999997, 0.99999997)
        x = 0.5 * torch.log((1 + clamped) / (1 - clamped))
        log_prob = -((x - mu) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi)
        log_prob = log_prob - 2 * (math.log(2) - x - nn.functional.softplus(-2 * x))
        best = log_prob.sum(-1).argmax(0)  # (B,)
        return samples[best, torch.arange(samples.shape[1], device=samples.device)]

    def freeze(self) -> DreamerWorldModel:
        self.eval()
        self.requires_grad_(False)
        return self
