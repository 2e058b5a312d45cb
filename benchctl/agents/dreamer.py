"""Dreamer's recurrent state-space model (RSSM) as the PyTorch Dreamer implementation the Dream-MPC
paper builds on writes it (dreamer-pytorch, `models_<episode>.pth`; `../shared/reference/README.md`).

A checkpoint is a dict of state dicts: `transition_model` (the RSSM), `observation_model` (decoder),
`reward_model`, `encoder`, `actor_model`, `value_model` (and optimizers, ignored). Sizes are read
off the tensors: belief (GRU) 200, stochastic state 30, hidden 200, embedding 1024 by default.
Observations are 64x64 RGB in [-0.5, 0.5] (a conv encoder) or a state vector (symbolic).

One RSSM step from (belief b, state s) under action a:
  b' = GRU(relu(W [s, a]), b)
  prior:     relu(W b') -> (mean, softplus(.) + min_std)
  posterior: relu(W [b', embed(obs)]) -> (mean, softplus(.) + min_std)
Heads see (b', s'): reward and value are MLPs; the actor is a tanh-normal whose pre-tanh mean is
5 tanh(mu / 5) and std softplus(raw + log(e^5 - 1)) + 1e-4 (dreamer-pytorch's defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from benchctl.errors import BenchctlError

PARTS = ("transition_model", "observation_model", "reward_model", "encoder", "actor_model", "value_model")
OPTIMIZERS = ("model_optimizer", "actor_optimizer", "value_optimizer")  # their states, beside the parts


@dataclass(frozen=True)
class DreamerDims:
    belief: int
    state: int
    hidden: int
    embedding: int
    action_dim: int
    obs_shape: tuple[int, ...]  # (3, 64, 64) for pixels, (obs_dim,) for symbolic observations
    min_std: float = 0.1  # the RSSM's minimum std (dreamer-pytorch's min_std_dev; not stored in the file)

    @property
    def symbolic(self) -> bool:
        return len(self.obs_shape) == 1


def _mlp_layers(sizes: list[int]) -> nn.ModuleDict:
    """fc1..fcN linear layers (dreamer-pytorch's names) mapping sizes[i] -> sizes[i + 1]."""
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    return nn.ModuleDict({f"fc{i + 1}": nn.Linear(a, b) for i, (a, b) in enumerate(pairs)})


class Transition(nn.Module):
    def __init__(self, d: DreamerDims):
        super().__init__()
        self.fc_embed_state_action = nn.Linear(d.state + d.action_dim, d.belief)
        self.rnn = nn.GRUCell(d.belief, d.belief)
        self.fc_embed_belief_prior = nn.Linear(d.belief, d.hidden)
        self.fc_state_prior = nn.Linear(d.hidden, 2 * d.state)
        self.fc_embed_belief_posterior = nn.Linear(d.belief + d.embedding, d.hidden)
        self.fc_state_posterior = nn.Linear(d.hidden, 2 * d.state)


class VisualEncoder(nn.Module):
    """(B, 3, 64, 64) in [-0.5, 0.5] -> (B, embedding): 4 stride-2 convolutions (32, 64, 128, 256)."""

    def __init__(self, embedding: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2)
        self.conv4 = nn.Conv2d(128, 256, 4, stride=2)
        self.fc: nn.Module = nn.Identity() if embedding == 1024 else nn.Linear(1024, embedding)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        return self.fc(x.reshape(-1, 1024))


class VisualDecoder(nn.Module):
    """(B, belief + state) -> (B, 3, 64, 64): a linear layer, then 4 transposed convolutions."""

    def __init__(self, d: DreamerDims):
        super().__init__()
        self.embedding = d.embedding
        self.fc1 = nn.Linear(d.belief + d.state, d.embedding)
        self.conv1 = nn.ConvTranspose2d(d.embedding, 128, 5, stride=2)
        self.conv2 = nn.ConvTranspose2d(128, 64, 5, stride=2)
        self.conv3 = nn.ConvTranspose2d(64, 32, 6, stride=2)
        self.conv4 = nn.ConvTranspose2d(32, 3, 6, stride=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc1(features).view(-1, self.embedding, 1, 1)  # no nonlinearity here (dreamer-pytorch)
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.relu(conv(x))
        return self.conv4(x)


class DreamerModel(nn.Module):
    family = "dreamer"

    def __init__(self, d: DreamerDims):
        super().__init__()
        self.dims = d
        self.transition_model = Transition(d)
        features = d.belief + d.state
        if d.symbolic:
            self.encoder: nn.Module = _mlp_layers([d.obs_shape[0], d.embedding, d.embedding, d.embedding])
            self.observation_model: nn.Module = _mlp_layers([features, d.embedding, d.embedding, d.obs_shape[0]])
        else:
            self.encoder = VisualEncoder(d.embedding)
            self.observation_model = VisualDecoder(d)
        self.reward_model = _mlp_layers([features, d.hidden, d.hidden, 1])
        self.value_model = _mlp_layers([features, d.hidden, d.hidden, d.hidden, 1])
        self.actor_model = _mlp_layers([features, d.hidden, d.hidden, d.hidden, d.hidden, 2 * d.action_dim])
        self.model_evals = 0

    # -- the networks, each on a batch -----------------------------------------------------
    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, 3, 64, 64) in [-0.5, 0.5] or (B, obs_dim) -> (B, embedding)."""
        if not self.dims.symbolic:
            return self.encoder(obs)
        return self._head(cast(nn.ModuleDict, self.encoder), obs)

    def belief_step(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The deterministic path: b' = GRU(relu(W [s, a]), b). (B, belief)."""
        t = self.transition_model
        return t.rnn(F.relu(t.fc_embed_state_action(torch.cat([state, action], dim=-1))), belief)

    def _gaussian(self, hidden: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = torch.chunk(layer(hidden), 2, dim=-1)
        return mean, F.softplus(raw_std) + self.dims.min_std

    def prior(self, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the state given the belief alone (imagination). Each (B, state)."""
        t = self.transition_model
        return self._gaussian(F.relu(t.fc_embed_belief_prior(belief)), t.fc_state_prior)

    def posterior(self, belief: torch.Tensor, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the state given the belief and an observation's embedding (filtering)."""
        t = self.transition_model
        hidden = F.relu(t.fc_embed_belief_posterior(torch.cat([belief, embedding], dim=-1)))
        return self._gaussian(hidden, t.fc_state_posterior)

    @staticmethod
    def _head(layers: nn.ModuleDict, x: torch.Tensor, act=F.relu) -> torch.Tensor:
        names = list(layers)
        for name in names[:-1]:
            x = act(layers[name](x))
        return layers[names[-1]](x)

    def reward(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """(B,) predicted reward of the features (belief, state)."""
        return self._head(self.reward_model, torch.cat([belief, state], dim=-1)).squeeze(-1)

    def value(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """(B,) value estimate of the features."""
        return self._head(self.value_model, torch.cat([belief, state], dim=-1)).squeeze(-1)

    def actor(self, belief: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's pre-tanh Normal (mean, std), each (B, action_dim); actions are tanh of a sample."""
        raw = self._head(self.actor_model, torch.cat([belief, state], dim=-1), act=F.elu)
        mean, raw_std = torch.chunk(raw, 2, dim=-1)
        mean_scale, init_std, min_std = 5.0, 5.0, 1e-4
        std = F.softplus(raw_std + math.log(math.exp(init_std) - 1)) + min_std
        return mean_scale * torch.tanh(mean / mean_scale), std

    def decode(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The observation model's reconstruction of the features."""
        features = torch.cat([belief, state], dim=-1)
        if self.dims.symbolic:
            return self._head(cast(nn.ModuleDict, self.observation_model), features)
        return self.observation_model(features)


def rssm_step(model: DreamerModel, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference archives' outputs: one RSSM step from (state0, action, belief0) with the
    posterior on embed(obs), every head on (belief1, posterior mean)."""
    with torch.no_grad():
        embedding = model.embed(data["obs"])
        belief = model.belief_step(data["belief0"], data["state0"], data["action"])
        prior_mean, prior_std = model.prior(belief)
        mean, std = model.posterior(belief, embedding)
        actor_mean, actor_std = model.actor(belief, mean)
        return {
            "embedding": embedding,
            "belief1": belief,
            "prior_mean": prior_mean,
            "prior_std": prior_std,
            "posterior_mean": mean,
            "posterior_std": std,
            "reward": model.reward(belief, mean),
            "value": model.value(belief, mean),
            "actor_mean": actor_mean,
            "actor_std": actor_std,
            "tanh_actor_mean": torch.tanh(actor_mean),
            "reconstruction": model.decode(belief, mean),
        }


def is_dreamer(blob: object) -> bool:
    return isinstance(blob, dict) and all(part in blob for part in ("transition_model", "encoder", "actor_model"))


def infer_dims(blob: dict) -> DreamerDims:
    """Sizes from tensor shapes alone."""
    try:
        t, enc = blob["transition_model"], blob["encoder"]
        belief = t["rnn.weight_hh"].shape[1]
        state = t["fc_state_prior.weight"].shape[0] // 2
        action = t["fc_embed_state_action.weight"].shape[1] - state
        hidden = t["fc_embed_belief_prior.weight"].shape[0]
        embedding = t["fc_embed_belief_posterior.weight"].shape[1] - belief
        obs_shape = (enc["fc1.weight"].shape[1],) if "fc1.weight" in enc else (3, 64, 64)
    except (KeyError, IndexError) as exc:
        raise BenchctlError(
            f"Dreamer checkpoint lacks an expected tensor ({exc}); is it a dreamer-pytorch file?"
        ) from None
    return DreamerDims(int(belief), int(state), int(hidden), int(embedding), int(action), tuple(map(int, obs_shape)))


def load_dreamer(path: str | Path, blob: dict | None = None, device: str = "cpu") -> DreamerModel:
    """A dreamer-pytorch checkpoint's models in one DreamerModel, frozen (weights_only load)."""
    if blob is None:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    if not is_dreamer(blob):
        raise BenchctlError(f"{path} is not a dreamer-pytorch checkpoint (no transition_model/encoder/actor_model)")
    model = DreamerModel(infer_dims(blob))
    for part in PARTS:
        if part not in blob:
            raise BenchctlError(f"{path} lacks the {part} state dict; the file is incomplete")
        module = getattr(model, part)
        state = {k: v for k, v in blob[part].items() if k in module.state_dict()}
        missing = set(module.state_dict()) - set(state)
        if missing:
            raise BenchctlError(f"{path}: {part} lacks {sorted(missing)[0]} (and {len(missing) - 1} more)")
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise BenchctlError(f"{path}: {part} does not fit the sizes read from the file: {exc}") from None
    return model.eval().requires_grad_(False).to(device)


def save_dreamer(
    model: DreamerModel, path: str | Path, optimizers: dict[str, dict] | None = None, extra: dict | None = None
) -> None:
    """Write `model` as dreamer-pytorch's main.py does: one state dict per part, plus the optimizers'
    (`model_optimizer`, `actor_optimizer`, `value_optimizer`; empty dicts for a model never trained).
    `extra`: more entries (benchctl's training progress), which dreamer-pytorch does not read."""
    blob: dict[str, dict] = {part: getattr(model, part).state_dict() for part in PARTS}
    for name in OPTIMIZERS:
        blob[name] = (optimizers or {}).get(name, {})
    torch.save(blob | (extra or {}), path)
