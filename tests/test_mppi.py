"""MPPI on a world model whose best plan is known."""

from __future__ import annotations

import torch

from benchctl.planners import make_planner, resolve_config
from tests.analytic import AnalyticModel

START = torch.zeros(1, 2)  # position 0, time 0


def mppi(model, **overrides):
    return make_planner("mppi", model, resolve_config("mppi", {k: str(v) for k, v in overrides.items()}))


def test_converges_to_the_known_optimum():
    model = AnalyticModel()
    planner = mppi(model, iterations=30)
    plan = planner.plan(START, torch.Generator().manual_seed(0))
    torch.testing.assert_close(planner._prev_mean[:, 0], model.optimum, atol=0.03, rtol=0)
    assert abs(float(plan.action[0]) - float(model.optimum[0, 0])) < 0.1
    assert plan.predicted_return > -0.01  # the optimum's return is 0


def _sample_means(model: AnalyticModel, planner) -> torch.Tensor:
    """Mean of the Gaussian samples (policy columns excluded) per horizon step of the last plan: (H,)."""
    P, H = planner.config.num_pi_trajs, planner.config.horizon
    return torch.stack([a[P:, 0].mean() for a in model.steps[-H:]])


def test_warm_start_shifts_the_mean_and_reset_clears_it():
    model = AnalyticModel()
    gen = torch.Generator().manual_seed(1)
    # A small std keeps samples away from the [-1, 1] clamp, so their mean estimates the planner's mean.
    planner = mppi(model, iterations=1, min_std=0.01, max_std=0.01, num_elites=8)
    planner.plan(START, gen)
    first = _sample_means(model, planner)
    torch.testing.assert_close(first, torch.zeros(3), atol=0.01, rtol=0)  # t0: mean starts at zero
    final_mean = planner._prev_mean[:, 0, 0].clone()  # (H, episode, A)
    planner.plan(START, gen)
    shifted = _sample_means(model, planner)
    torch.testing.assert_close(shifted[:-1], final_mean[1:], atol=0.01, rtol=0)
    assert abs(float(shifted[-1])) < 0.01  # the new last step starts at zero
    planner.reset()
    planner.plan(START, gen)
    torch.testing.assert_close(_sample_means(model, planner), torch.zeros(3), atol=0.01, rtol=0)


def test_executed_action_is_the_first_action_of_an_elite():
    model = AnalyticModel(targets=(0.9, 0.1, -0.6))
    planner = mppi(model, iterations=2, num_elites=16)
    for seed in range(5):
        planner.reset()
        plan = planner.plan(START, torch.Generator().manual_seed(seed))
        H = planner.config.horizon
        candidates = torch.stack(model.steps[-H:])  # (H, N, A): the final iteration's sequences
        returns = model.plan_return(candidates)
        elites = torch.topk(returns, 16).indices
        first_actions = candidates[0, elites, 0]
        assert torch.isclose(first_actions, plan.action[0]).any()
        # and the reported prediction is that elite's return (terminal value is zero here)
        match = elites[torch.isclose(first_actions, plan.action[0])]
        assert any(abs(float(returns[i]) - plan.predicted_return) < 1e-5 for i in match)


def test_counts_model_evaluations_per_step():
    model = AnalyticModel()
    planner = mppi(model)
    planner.plan(START, torch.Generator().manual_seed(0))
    assert model.model_evals == 512 * 6 * 3 == type(planner).model_evals_per_step(planner.config, 1)
