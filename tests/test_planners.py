"""The papers' planners on a world model with a known optimum, and their evaluation counts."""

from __future__ import annotations

import pytest
import torch

from benchctl.agents import load_checkpoint
from benchctl.planners import make_planner, registry, resolve_config
from tests.analytic import AnalyticModel, DelayedRewardModel
from tests.conftest import BMPC_MS5, TDMPC2_MS5

START = torch.zeros(1, 2)  # position 0, time 0

# Enough budget for each planner to find the optimum of the 3-step analytic problem.
BUDGETS = {
    "mppi": {"iterations": 30},
    "cem": {"horizon": 3, "candidates": 300, "elites": 30},
    "smc": {"horizon": 2, "particles": 2000},
    "grad_mpc": {"horizon": 3, "candidates": 100, "iterations": 50},
    "policy_grad_mpc": {"horizon": 3, "iterations": 100, "lr": 0.1},
    "dream_mpc": {"candidates": 10, "iterations": 50},
    "cem_gd": {"horizon": 3, "init_samples": 300},
}
TOLERANCE = {"smc": 0.1}  # sampling only: its first action is a resampled policy draw


def planner(name: str, model, **overrides):
    return make_planner(name, model, resolve_config(name, {k: str(v) for k, v in overrides.items()}))


def test_every_planner_is_registered_with_paper_defaults():
    assert set(registry()) == {"policy", "mppi", "cem", "smc", "grad_mpc", "policy_grad_mpc", "dream_mpc", "cem_gd"}
    defaults = {name: resolve_config(name, {}) for name in registry()}
    assert (
        defaults["dream_mpc"].candidates,
        defaults["dream_mpc"].iterations,
        defaults["dream_mpc"].horizon,
        defaults["dream_mpc"].lr,
        defaults["dream_mpc"].reuse,
    ) == (5, 1, 3, 0.1, 0.1)
    assert (
        defaults["cem_gd"].top_k,
        defaults["cem_gd"].gd_steps,
        defaults["cem_gd"].eta,
        defaults["cem_gd"].backtrack,
        defaults["cem_gd"].line_search_trials,
        defaults["cem_gd"].horizon,
    ) == (1, 10, 0.01, 0.67, 8, 45)
    assert (defaults["smc"].particles, defaults["smc"].horizon, defaults["smc"].temperature) == (250, 10, 0.01)
    assert (defaults["cem"].candidates, defaults["cem"].elites, defaults["cem"].iterations) == (1000, 100, 10)


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_planner_finds_the_known_optimum(name):
    model = AnalyticModel()
    plan = planner(name, model, **BUDGETS[name]).plan(START, torch.Generator().manual_seed(0))
    optimum = float(model.optimum[0, 0])
    assert abs(float(plan.action[0]) - optimum) < TOLERANCE.get(name, 0.05)
    assert plan.predicted_return is not None and plan.predicted_return > -0.05  # the optimum's return is 0


# The planners whose objective is the discounted return with a terminal value; the paper versions of
# CEM, Grad-MPC and CEM-GD are reward-only and get it with use_value=true. SMC is left out: its
# weights are per-step advantages r + gamma V(z') - V(z), whose fixed point is the open-loop
# optimum only when V is the value-to-go of the rest of the horizon, which a terminal payoff is not
# (its use of gamma is tested in test_fidelity.py).
DELAYED = {
    "mppi": {"iterations": 30},
    "cem": {"horizon": 3, "candidates": 300, "elites": 30, "use_value": True},
    "grad_mpc": {"horizon": 3, "candidates": 100, "iterations": 50, "use_value": True},
    "policy_grad_mpc": {"horizon": 3, "iterations": 100, "lr": 0.1},
    "dream_mpc": {"candidates": 10, "iterations": 50},
    "cem_gd": {"horizon": 3, "init_samples": 300, "use_value": True},
}


@pytest.mark.parametrize("name", sorted(DELAYED))
def test_planner_finds_the_optimum_of_delayed_reward_under_a_discount(name):
    model = DelayedRewardModel(horizon=3, discount=0.5)
    optimum = model.optimum[:, 0]  # (0.167, 0.333, 0.667): later actions cost less after discounting
    ignoring_discount = DelayedRewardModel(horizon=3, discount=1.0).optimum[0, 0]  # 0.462 every step
    assert abs(optimum[0] - ignoring_discount) > 0.25 and optimum[0] > 0.15  # both mistakes are visible
    plan = planner(name, model, **DELAYED[name]).plan(START, torch.Generator().manual_seed(0))
    assert torch.allclose(plan.sequence[:, 0], optimum, atol=0.05), (plan.sequence[:, 0], optimum)


@pytest.mark.parametrize("name", ["cem", "grad_mpc", "cem_gd"])
def test_reward_only_planners_ignore_the_terminal_value_by_default(name):
    # As their papers define them: the objective is the reward sum, so paying the action cost buys nothing.
    budget = {k: v for k, v in DELAYED[name].items() if k != "use_value"}
    plan = planner(name, DelayedRewardModel(), **budget).plan(START, torch.Generator().manual_seed(0))
    assert abs(float(plan.action[0])) < 0.05


@pytest.mark.parametrize("name", ["dream_mpc", "grad_mpc"])
def test_gradient_planners_increase_the_objective(name):
    model = AnalyticModel()
    p = planner(name, model, **(BUDGETS[name] | {"iterations": 5}))
    p.plan(START, torch.Generator().manual_seed(0))
    before = model.plan_return(p.last_initial)
    after = model.plan_return(p.last_candidates)
    assert after.mean() > before.mean() and after.max() >= before.max()


def test_policy_grad_mpc_increases_the_objective():
    model = AnalyticModel()
    p = planner("policy_grad_mpc", model, horizon=3, iterations=1)
    one = p.plan(START, torch.Generator().manual_seed(0)).predicted_return  # J before the only step
    p = planner("policy_grad_mpc", model, horizon=3, iterations=3)
    three = p.plan(START, torch.Generator().manual_seed(0)).predicted_return  # J before the third step
    assert three > one


@pytest.mark.parametrize("eta", [0.01, 10.0])
@pytest.mark.parametrize("optimizer", ["plain", "adam"])
def test_cem_gd_line_search_never_accepts_a_worse_step(eta, optimizer):
    model = AnalyticModel(targets=(0.9, -0.7, 0.4))
    p = planner("cem_gd", model, horizon=3, init_samples=20, cem_iterations=1, top_k=4, eta=eta, optimizer=optimizer)
    for seed in range(3):
        p.reset()
        p.plan(START, torch.Generator().manual_seed(seed))
        trace = torch.stack(p.last_trace)  # (updates + 1, k)
        assert (trace[1:] >= trace[:-1]).all()
        assert len(trace) > 1


def test_cem_gd_gradient_steps_improve_on_its_cem_seed():
    model = AnalyticModel(targets=(0.9, -0.7, 0.4))
    p = planner("cem_gd", model, horizon=3, init_samples=10, cem_iterations=1, eta=0.05, gd_steps=20)
    p.plan(START, torch.Generator().manual_seed(0))
    assert p.last_trace[-1].max() > p.last_trace[0].max()


@pytest.mark.parametrize("name,expected", [("dream_mpc", 15), ("mppi", 9216)])
def test_model_evaluations_per_step_at_the_defaults(reference, name, expected):
    model = load_checkpoint(reference / f"{TDMPC2_MS5}.pt")
    p = planner(name, model)
    obs = torch.zeros(1, 6)
    with torch.inference_mode():
        z = model.encode(obs)
    before = model.model_evals
    p.plan(z.clone(), torch.Generator().manual_seed(0))
    assert model.model_evals - before == expected == type(p).model_evals_per_step(p.config, 2)


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("cem", {"candidates": 20, "iterations": 2, "elites": 4, "horizon": 4}),
        ("grad_mpc", {"candidates": 8, "iterations": 3, "horizon": 4}),
        ("policy_grad_mpc", {}),
        ("smc", {"particles": 16, "horizon": 3}),
        ("dream_mpc", {"candidates": 3, "iterations": 2, "horizon": 4}),
    ],
)
def test_counted_evaluations_equal_n_i_h(reference, name, overrides):
    model = load_checkpoint(reference / f"{BMPC_MS5}.pt")
    p = planner(name, model, **overrides)
    with torch.inference_mode():
        z = model.encode(torch.zeros(1, 5))
    before = model.model_evals
    p.plan(z.clone(), torch.Generator().manual_seed(0))
    assert model.model_evals - before == type(p).model_evals_per_step(p.config, 1)
