"""ESNR of planner gradients: the estimator against analytic values, and `benchctl gradients` end to end."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch

from benchctl.analysis.gradients import snr, stats_from, true_gradients
from benchctl.train.tdmpc2 import TDMPC2Learner, new_model
from tests.conftest import run_cli


def test_snr_matches_the_analytic_value_of_a_known_distribution():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0, 0.5, 0.0])
    std = torch.tensor([1.0, 2.0, 0.5, 3.0])
    samples = mean + std * torch.randn(400_000, 4, generator=g, dtype=torch.float64)
    analytic = float((mean**2).sum() / (std**2).sum())  # 5.25 / 14.25
    assert abs(snr(samples) - analytic) < 0.01 * analytic


def test_zero_variance_is_undefined_not_a_division_by_zero():
    constant = torch.ones(32, 6)
    assert snr(constant) is None
    stats = stats_from(torch.stack([constant, torch.randn(32, 6)]))
    assert stats.undefined_states == 1 and stats.esnr is not None


def reached_return(state: np.ndarray, actions: list[float]) -> float:
    """gymnasium Pendulum-v1: the rewards of the H steps, then the reward of the last reached state
    at zero torque (its state cost), actions in [-1, 1] units (torque = 2 a)."""
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=0)
    env.state = state.copy()
    total = 0.0
    for a in [*actions, 0.0]:
        total += float(env.step(np.array([2.0 * a], dtype=np.float32))[1])
    return total


def test_true_gradient_differentiates_the_reached_states_as_gymnasium_scores_them():
    # Independent reference: central differences of gymnasium's own rewards. At H = 1 the gradient
    # is mostly the effect of the torque on the reached state, not the 0.001 u^2 action cost alone.
    state, actions = np.array([2.5, -1.0]), [0.3, -0.2]
    grad = true_gradients(torch.tensor(state[None]), torch.tensor(actions).view(2, 1, 1))[:, 0, 0].double()
    for h in range(2):
        step = np.zeros(2)
        step[h] = 1e-4
        numeric = (reached_return(state, list(actions + step)) - reached_return(state, list(actions - step))) / 2e-4
        assert abs(float(grad[h]) - numeric) < 1e-3 * max(1.0, abs(numeric))
    one = true_gradients(torch.tensor(state[None]), torch.tensor([[[0.3]]]))[0, 0, 0]
    action_cost_only = -0.001 * 2 * (2 * 0.3) * 2  # d/da of -0.001 (2a)^2
    assert abs(float(one)) > 10 * abs(action_cost_only)


def test_gradients_command_on_the_true_and_a_learned_pendulum(tmp_path):
    agent = tmp_path / "Pendulum-v1-1.pt"
    learner = TDMPC2Learner(new_model(3, 1, size=None, dims=(32, 32, 16)), 0.975)
    torch.save({"model": learner.official_state_dict()}, agent)
    out = tmp_path / "grads"
    proc = run_cli(
        "gradients",
        "--checkpoint",
        str(agent),
        "--horizons",
        "1,5",
        "--states",
        "8",
        "--samples",
        "8",
        "--seeds",
        "1,2",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "gradients.json").read_text())
    combos = {(r["model"], r["planner"], r["horizon"]) for r in result["summary"]}
    assert combos == {(m, p, h) for m in ("ground_truth", "learned") for p in ("grad_mpc", "dream_mpc") for h in (1, 5)}
    assert all(r["seeds"] == 2 for r in result["summary"])
    assert "samples_per_state" in result["protocol"] and (out / "gradients.png").stat().st_size > 0
    assert "undefined" in proc.stdout  # a fresh agent's zero reward head gives zero-variance gradients


def test_missing_default_agent_is_a_one_line_error(tmp_path):
    proc = run_cli("gradients", "--checkpoint", str(tmp_path / "none.pt"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "benchctl train --task Pendulum-v1" in proc.stderr


class LinearQuadratic:
    """x' = x + a, r(x, a) = -(x + a)^2 (the reward of the reached state): g is linear in the actions."""

    def step(self, z, a):
        return z + a, -((z + a) ** 2)


def test_esnr_of_a_linear_quadratic_system_matches_its_closed_form():
    # J = -sum_{h=1..H} x_h^2 - x_H^2 with x_h = x0 + sum_{i<h} a_i, so g = c + M a with
    # c_i = -2 (H - i + 1) x0 and M_ij = -2 (H - max(i, j) + 1). For a ~ N(mu, s^2 I):
    # ESNR = |c + M mu|^2 / (s^2 ||M||_F^2).
    from benchctl.analysis.gradients import learned_gradients

    H, x0, mu, s, K = 4, 0.8, 0.1, 0.5, 50_000
    i = torch.arange(H, dtype=torch.float64)
    c = -2 * (H - i + 1) * x0
    M = -2 * (H - torch.maximum(i[:, None], i[None, :]) + 1)
    analytic = float(((c + M @ torch.full((H,), mu, dtype=torch.float64)) ** 2).sum() / (s**2 * (M**2).sum()))
    generator = torch.Generator().manual_seed(0)
    actions = (mu + s * torch.randn(H, K, 1, generator=generator, dtype=torch.float64)).float()
    grads = learned_gradients(LinearQuadratic(), torch.full((K, 1), x0), actions)  # (H, K, 1)
    assert abs(snr(grads[:, :, 0].T) - analytic) < 0.02 * analytic


def test_bias_corrected_esnr_removes_the_one_over_k_of_pure_noise():
    # Zero-mean gradients have ESNR 0, but the squared sample mean of K draws is var/K on average.
    K = 32
    grads = torch.randn(400, K, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stats = stats_from(grads)
    assert abs(stats.esnr - 1 / K) < 0.15 / K
    assert abs(stats.esnr_corrected) < 0.15 / K


def test_study_start_states_follow_the_protocol():
    from benchctl.analysis.gradients import StudyConfig, start_states

    reset = start_states(None, StudyConfig(states=200, start_states="reset"), seed=1)
    assert reset.shape == (200, 3) and float(reset[:, 2].abs().max()) <= 1.0  # theta_dot ~ U(-1, 1)
    visited = start_states(None, StudyConfig(states=200, start_states="visited", episodes=2), seed=1)
    assert float(visited[:, 2].abs().max()) > 1.0  # random torques spin it up beyond the reset range
