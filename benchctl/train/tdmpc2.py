"""One TD-MPC2 update (spec/training.md sections 3-4): latent consistency, two-hot reward and value
cross-entropy against TD targets from the target ensemble, then the policy step, then Polyak.

Shapes: obs (H + 1, B, obs_dim), action (H, B, A), reward (H, B, 1); K value heads.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from benchctl.agents.base import ModelDims
from benchctl.agents.checkpoint import MODEL_SIZES
from benchctl.agents.layers import EnsembleLinear, symlog
from benchctl.agents.tdmpc2 import TDMPC2Model
from benchctl.errors import BenchctlError

# Official MODEL_SIZE presets plus their value-head counts (size 1 uses 2 Q heads, the others 5).
SIZES = {size: preset | {"num_value_heads": 2 if size == 1 else 5} for size, preset in MODEL_SIZES.items()}


@dataclass
class TrainConfig:
    """TD-MPC2 defaults (spec/training.md section 6; TD-MPC2 paper Table 6)."""

    batch_size: int = 256
    horizon: int = 3
    rho: float = 0.5  # temporal weight of losses along the rollout
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    entropy_coef: float = 1e-4
    tau: float = 0.01  # Polyak rate of the target heads and of the value scale
    vmin: float = -10.0
    vmax: float = 10.0


def init_weights(model: TDMPC2Model) -> None:
    """Linear weights ~ truncated normal(0, 0.02), biases 0, LayerNorm 1/0; the last layers of the
    reward head and of every value head are zero, so initial predictions decode to exactly 0."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, EnsembleLinear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.zeros_(cast(nn.Linear, model._reward[-1]).weight)
    nn.init.zeros_(cast(EnsembleLinear, model._Qs.params[-1]).weight)


def model_dims(
    obs_dim: int,
    action_dim: int,
    size: int | None = 5,
    dims: tuple[int, int, int] | None = None,
    obs_shape: tuple[int, ...] = (),
    value_heads: int | None = None,
) -> ModelDims:
    """Architecture of a new agent: an official size, or (enc, mlp, latent) dims (5 value heads);
    `value_heads` overrides the count (BMPC: 2). `obs_shape` (C, 64, 64) gives a pixel model: the
    official conv encoder of 32 channels, whose flattened output (32 x 4 x 4) is the latent, so the
    latent must be 512."""
    preset: dict[str, Any]
    if dims is not None:
        enc, mlp_dim, latent = dims
        preset = {"enc_dim": enc, "mlp_dim": mlp_dim, "latent_dim": latent, "num_enc_layers": 2, "num_value_heads": 5}
    else:
        preset = dict(SIZES[size if size is not None else 5])
    if value_heads is not None:
        preset["num_value_heads"] = value_heads
    if obs_shape:
        channels = 32
        if preset["latent_dim"] != channels * 16:
            raise BenchctlError(
                f"pixel agents need latent {channels * 16} (the conv encoder's {channels} x 4 x 4 output), not "
                f"{preset['latent_dim']}: use --size 5 or larger, or --dims ENC,MLP,{channels * 16}"
            )
        preset |= {"obs_shape": tuple(obs_shape), "num_channels": channels, "enc_dim": 0, "num_enc_layers": 0}
    return ModelDims(obs_dim=obs_dim, action_dim=action_dim, num_bins=101, **preset)


def new_model(
    obs_dim: int,
    action_dim: int,
    size: int | None = 5,
    dims: tuple[int, int, int] | None = None,
    seed: int = 0,
    obs_shape: tuple[int, ...] = (),
) -> TDMPC2Model:
    """A freshly initialized TD-MPC2 world model (architecture: `model_dims`)."""
    torch.manual_seed(seed)
    model = TDMPC2Model(model_dims(obs_dim, action_dim, size, dims, obs_shape))
    init_weights(model)
    return model


class RunningScale:
    """S <- S + tau (max(1, P95 - P5) - S), from 1: the policy's Q scale (moving percentile range)."""

    def __init__(self, tau: float = 0.01):
        self.tau = tau
        self.value = torch.ones(())

    def update(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.quantile(x.detach().flatten().float(), torch.tensor([0.05, 0.95], device=x.device))
        spread = torch.clamp(q[1] - q[0], min=1.0).cpu()
        self.value = self.value + self.tau * (spread - self.value)
        return self.value


def two_hot(x: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalars (..., 1) -> the two-hot encoding in symlog space as (lower bin (...) long, weight of the
    bin above it (...)); the lower bin holds 1 - weight. Beyond the range all mass sits on an end bin."""
    bin_size = (vmax - vmin) / (num_bins - 1)
    u = (torch.clamp(symlog(x), vmin, vmax).squeeze(-1) - vmin) / bin_size
    low = torch.floor(u)
    return low.long(), u - low


def soft_ce(logits: torch.Tensor, x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy of logits (..., bins) against two-hot(x), x (..., 1) broadcast to the logits'
    leading dims -> (...). Only the two target bins' log-probabilities are gathered."""
    low, frac = two_hot(x, logits.shape[-1], cfg.vmin, cfg.vmax)
    log_p = F.log_softmax(logits, dim=-1)
    lead = log_p.shape[:-1]
    low, frac = low.expand(lead).unsqueeze(-1), frac.expand(lead)
    high = (low + 1) % logits.shape[-1]  # u == vmax: frac is 0, the wrapped index carries no weight
    return -torch.lerp(log_p.gather(-1, low), log_p.gather(-1, high), frac.unsqueeze(-1)).squeeze(-1)


def gaussian_entropy(log_std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-log N(eps; 0, diag exp(2 log_std)) summed over action dims: (..., A) -> (..., 1), the
    one-sample entropy estimate both families use (TD-MPC2 scales it by A)."""
    return (log_std + 0.5 * eps**2 + 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)


class TDMPC2Learner:
    """Owns the world model being trained, its target value heads, optimizers and value scale."""

    def __init__(self, model: TDMPC2Model, discount: float, config: TrainConfig | None = None):
        self.cfg = config or TrainConfig()
        self.model = model
        self.model.discount = discount
        self.target_Qs = copy.deepcopy(model._Qs).requires_grad_(False).eval()
        lr = self.cfg.lr
        groups: list[dict] = [
            {"params": model._encoder.parameters(), "lr": lr * self.cfg.enc_lr_scale},
            {"params": model._dynamics.parameters()},
            {"params": model._reward.parameters()},
            {"params": model._Qs.parameters()},
        ]
        self.optim = torch.optim.Adam(
            groups,
            lr=lr,
            fused=True,  # one kernel per parameter: the per-tensor Python loop cost a 128/128/64 update ~2.5%
        )
        self.pi_optim = torch.optim.Adam(model._pi.parameters(), lr=lr, eps=1e-5, fused=True)
        self.scale = RunningScale(self.cfg.tau)

    def _values(self, ensemble: nn.Module, z: torch.Tensor, a: torch.Tensor, heads=None, params=None) -> torch.Tensor:
        """Logits (k, *lead, bins) of `ensemble` on (z, a) with leading dims flattened for the ensemble."""
        x = torch.cat([z, a], dim=-1)
        flat = x.reshape(-1, x.shape[-1])
        out = ensemble(flat, heads) if params is None else functional_call(ensemble, params, (flat, heads))
        return out.view(out.shape[0], *x.shape[:-1], out.shape[-1])

    def td_target(
        self, obs: torch.Tensor, reward: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(consistency targets enc(obs[1:]) (H, B, Z), value targets (H, B, 1)), no gradient.

        TD-MPC2: reward + gamma * min of 2 random target Q heads at (z', a' ~ pi(z'))."""
        m = self.model
        zn = m.encode(obs[1:])  # (H, B, Z)
        a_next = m.policy(zn, generator=generator)[0]
        heads = torch.randperm(m.num_value_heads, generator=generator, device=obs.device)[:2]
        q_next = m.decode(self._values(self.target_Qs, zn, a_next, heads)).min(0).values
        return zn, reward + m.discount * q_next

    def value_logits(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Logits (K, H, B, bins) of every online value head on the rolled-out latents."""
        return self._values(self.model._Qs, z, action)

    def update(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        generator: torch.Generator,
        update_policy: bool = True,
        expert: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One gradient step of the model, then of the policy. expert: (H, B, 2A) planner action
        distributions, used by families whose policy imitates the planner (BMPC)."""
        cfg, m = self.cfg, self.model
        H = action.shape[0]
        K = m.num_value_heads
        weights = cfg.rho ** torch.arange(H, dtype=torch.float32, device=obs.device)

        with torch.no_grad():  # targets, model in eval mode
            zn, td_target = self.td_target(obs, reward, generator)

        m.train()
        z = m.encode(obs[0])
        latents = [z]
        consistency = torch.zeros((), device=z.device)
        for t in range(H):
            z = m.next(z, action[t])
            consistency = consistency + weights[t] * F.mse_loss(z, zn[t])
            latents.append(z)
        zs = torch.stack(latents)  # (H + 1, B, Z)
        reward_logits = m._reward(torch.cat([zs[:-1], action], dim=-1))  # (H, B, bins)
        value_logits = self.value_logits(zs[:-1], action)  # (K, H, B, bins)
        reward_loss = (soft_ce(reward_logits, reward, cfg).mean(-1) * weights).sum()
        value_loss = (soft_ce(value_logits, td_target, cfg).mean(-1) * weights).sum()
        consistency, reward_loss, value_loss = consistency / H, reward_loss / H, value_loss / (H * K)
        total = cfg.consistency_coef * consistency + cfg.reward_coef * reward_loss + cfg.value_coef * value_loss
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for g in self.optim.param_groups for p in g["params"]], cfg.grad_clip_norm
        )
        self.optim.step()

        info = {
            "consistency_loss": float(consistency.detach()),
            "reward_loss": float(reward_loss.detach()),
            "value_loss": float(value_loss.detach()),
            "total_loss": float(total.detach()),
            "grad_norm": float(grad_norm),
        }
        if update_policy:
            info |= self._update_policy(zs.detach(), generator, expert)
        with torch.no_grad():
            for target, online in zip(self.target_Qs.parameters(), m._Qs.parameters(), strict=True):
                target.lerp_(online, cfg.tau)
        m.eval()
        return info

    def _update_policy(
        self, zs: torch.Tensor, generator: torch.Generator, expert: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Maximize scaled Q(z, pi(z)) plus a small entropy bonus on the rolled-out latents (H + 1, B, Z)."""
        cfg, m = self.cfg, self.model
        A = m.action_dim
        eps = torch.randn(*zs.shape[:-1], A, generator=generator, device=zs.device)
        action, _, log_std = m.policy(zs, eps=eps)
        params = {k: v.detach() for k, v in m._Qs.named_parameters()}  # gradient reaches the action only
        heads = torch.randperm(m.num_value_heads, generator=generator, device=zs.device)[:2]
        q = m.decode(self._values(m._Qs, zs, action, heads, params)).mean(0)  # (H + 1, B, 1)
        scale = self.scale.update(q[0]).to(zs.device)
        entropy = A * gaussian_entropy(log_std, eps)
        weights = cfg.rho ** torch.arange(zs.shape[0], dtype=torch.float32, device=zs.device)
        loss = ((-(cfg.entropy_coef * entropy + q / scale)).mean((1, 2)) * weights).mean()
        self.pi_optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m._pi.parameters(), cfg.grad_clip_norm)
        self.pi_optim.step()
        return {"pi_loss": float(loss.detach()), "pi_scale": float(scale)}

    # -- persistence ---------------------------------------------------------------------
    def official_state_dict(self) -> dict:
        """The model state dict exactly as the official TD-MPC2 `agent.save` writes it."""
        state = {}
        items = self.model.state_dict().items()
        # scalar buffers (log-std bounds) lead, as in the official files, whatever the registration order
        for key, value in sorted(items, key=lambda kv: "." in kv[0]):
            state[key] = value.detach().clone()
            if key.startswith("_Qs.params.") and key == self._last_q_key():
                heads = torch.Size([self.model.num_value_heads])
                state["_Qs.params.__batch_size"] = heads
                state["_Qs.params.__device"] = None
        for prefix, module in (("_detach_Qs_params", self.model._Qs), ("_target_Qs_params", self.target_Qs)):
            for key, value in module.state_dict().items():
                state[f"{prefix}.{key.removeprefix('params.')}"] = value.detach().clone()
            state[f"{prefix}.__batch_size"] = torch.Size([self.model.num_value_heads])
            state[f"{prefix}.__device"] = None
        return state

    def _last_q_key(self) -> str:
        return [k for k in self.model.state_dict() if k.startswith("_Qs.params.")][-1]

    def resume_state(self) -> dict:
        return {
            "optim": self.optim.state_dict(),
            "pi_optim": self.pi_optim.state_dict(),
            "scale": self.scale.value.clone(),
            "target_Qs": self.target_Qs.state_dict(),
        }

    def load_resume_state(self, state: dict) -> None:
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.scale.value = state["scale"].clone()
        self.target_Qs.load_state_dict(state["target_Qs"])
