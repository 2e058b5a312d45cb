"""BMPC (Wang et al. 2025): TD-MPC2's trunk with a state-value ensemble V_k(z) and a clipped policy."""

from __future__ import annotations

import torch

from benchctl.agents.base import ModelDims
from benchctl.agents.tdmpc2 import TDMPC2Model


class BMPCModel(TDMPC2Model):
    """Differences from TD-MPC2: value heads see the latent alone (V(z)); log-std bounds [-3, 1];
    the policy sample is clamp(tanh(mu) + std * eps, -1, 1), with no squash of the sample.
    `expl_log_std_*` (the [-2, 1] bounds used by BMPC's reanalyze) are kept as buffers."""

    expl_log_std_min: torch.Tensor
    expl_log_std_dif: torch.Tensor

    family = "bmpc"
    value_uses_action = False

    def __init__(
        self,
        dims: ModelDims,
        log_std_min: float = -3.0,
        log_std_dif: float = 4.0,
        expl_log_std_min: float = -2.0,
        expl_log_std_dif: float = 3.0,
        dropout: float = 0.01,
    ):
        super().__init__(dims, log_std_min, log_std_dif, dropout)
        self.register_buffer("expl_log_std_min", torch.tensor(int(expl_log_std_min)))
        self.register_buffer("expl_log_std_dif", torch.tensor(int(expl_log_std_dif)))

    def log_std_bounds(self, explore: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if explore:  # BMPC's reanalyze samples its policy prior with wider bounds, [-2, 1]
            return self.expl_log_std_min, self.expl_log_std_dif
        return self.log_std_min, self.log_std_dif

    def _value_in_dim(self) -> int:
        return self.dims.latent_dim

    def _sample(self, mu: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(mu) + eps * log_std.exp()).clamp(-1, 1)
