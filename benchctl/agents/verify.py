"""Check a checkpoint against an archive of the official code's outputs on fixed inputs
(`../shared/reference/README.md` format): what `benchctl inspect --verify` runs, and what users
porting agents check their files with.

An archive holds inputs (obs, action, eps) and outputs (z, z_next, reward_logits, reward,
pi_mu_raw, pi_mean, pi_log_std, pi_action, value_logits, value_heads; pixel agents also
z_encode_seed7: encode() with its random shift right after torch.manual_seed(7)). Every output is
recomputed by benchctl's model; the error of one output is max |ours - theirs| / max(max |theirs|, 1e-3).

An output passes within TOLERANCE, or within ROUNDOFF_FACTOR times its float32 round-off on this
machine (the same computation in float64, same scale) where that is larger: a pixel encoder ends in
a SimNorm over logits in the thousands, so float32 round-off of 1e-7 relative in its convolutions
becomes ~2e-4 in z, and AVX2 and AVX512 kernels (or the archive's machine) disagree by that much.
A wrong layer, weight or shift is off by orders more (a shifted z differs from the unshifted by 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchctl.errors import BenchctlError

TOLERANCE = 1e-4  # float32 round-off of well-conditioned outputs stays far below; a wrong layer does not
ROUNDOFF_FACTOR = 4.0  # ours and the archive's each carry about one round-off: allow twice the sum
INPUTS = ("obs", "action", "eps", "belief0", "state0")  # inputs, never outputs (eps: TD-MPC2; b0, s0: Dreamer)


@dataclass(frozen=True)
class Check:
    output: str
    shape: tuple[int, ...]
    error: float  # scale-relative max error against the archive
    roundoff: float  # scale-relative max |float32 - float64| of benchctl's own computation, here

    @property
    def allowed(self) -> float:
        return max(TOLERANCE, ROUNDOFF_FACTOR * self.roundoff)

    @property
    def ok(self) -> bool:
        return self.error <= self.allowed


def read_archive(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise BenchctlError(f"--verify {path}: not a readable .npz archive ({exc})") from None
    missing = [k for k in ("obs", "action") if k not in data]
    if missing:
        raise BenchctlError(f"--verify {path}: the archive lacks the input(s) {', '.join(missing)}; see its format")
    return data


def outputs(model, data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Every output the archive may hold, computed by `model` from the archive's inputs."""
    if model.family == "dreamer":
        from benchctl.agents.dreamer import rssm_step

        return rssm_step(model, {k: torch.as_tensor(v) for k, v in data.items()})
    obs, action, eps = (torch.as_tensor(data[k]) for k in ("obs", "action", "eps"))
    ours: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        augment = model.augment
        model.augment = False  # z: the deterministic encoder (the shift is checked apart)
        z = model.encode(obs)
        model.augment = augment
        if "z_encode_seed7" in data:
            state = torch.random.get_rng_state()
            torch.manual_seed(7)
            model.augment = True
            ours["z_encode_seed7"] = model.encode(obs)
            model.augment = augment
            torch.random.set_rng_state(state)
        mu_raw, _ = model.policy_params(z)
        sample, mean, log_std = model.policy(z, eps=eps)
        ours |= {
            "z": z,
            "z_next": model.next(z, action),
            "reward_logits": model.reward_logits(z, action),
            "reward": model.reward(z, action),
            "pi_mu_raw": mu_raw,
            "pi_mean": mean,
            "pi_log_std": log_std,
            "pi_action": sample,
            "value_logits": model.value_logits(z, action),
            "value_heads": model.value(z, action),
        }
    return ours


def in_float64(model, data: dict[str, np.ndarray]) -> tuple[object, dict[str, np.ndarray]]:
    """A float64 copy of `model` and the archive as float64 (uint8 pixels exactly)."""
    exact = {k: v.astype(np.float64) if v.dtype.kind in "fu" else v for k, v in data.items()}
    return copy.deepcopy(model).double(), exact


def verify(model, archive: Path) -> list[Check]:
    """One Check per output present in the archive, in the archive's order."""
    data = read_archive(archive)
    dims = model.dims
    takes = dims.obs_shape if model.family == "dreamer" else (dims.obs_shape or (dims.obs_dim,))
    if tuple(data["obs"].shape[1:]) != tuple(takes):
        raise BenchctlError(
            f"--verify {archive}: its observations are {tuple(data['obs'].shape[1:])}, the checkpoint takes "
            f"{tuple(takes)}; pass the archive written for this checkpoint"
        )
    ours = outputs(model, data)
    exact = outputs(*in_float64(model, data))
    checks = []
    for key in data:
        if key in INPUTS or key not in ours:
            continue
        want, got = data[key], ours[key].numpy()
        if got.shape != want.shape:
            raise BenchctlError(f"--verify {archive}: output {key} has shape {want.shape}, benchctl's {got.shape}")
        scale = max(float(np.abs(want).max()), 1e-3)
        error = float(np.abs(got - want).max()) / scale
        roundoff = float(np.abs(got - exact[key].numpy()).max()) / scale
        checks.append(Check(key, tuple(want.shape), error, roundoff))
    if not checks:
        raise BenchctlError(f"--verify {archive}: the archive holds no output benchctl computes (z, reward, ...)")
    return checks
