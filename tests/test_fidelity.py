"""Planner fidelity and metric semantics against independent references (the analytic world model,
hand-computed sums, numpy): what the exploitation metric predicts, SMC's discounted advantage,
Dream-MPC's uncertainty bonus count, the per-task sample std."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchctl.evaluate import _predictions
from benchctl.planners.base import make_planner, registry, resolve_config
from benchctl.report.tables import per_task_table, render_per_task
from tests.analytic import AnalyticModel

OBS = np.zeros(2, dtype=np.float32)  # position 0, time 0 (the analytic model's encoder is the identity)


def by_hand(model: AnalyticModel, sequence: torch.Tensor) -> float:
    """sum_h gamma^h -(x_h + a_h - target_h)^2 along `sequence` (H, 1) from position 0."""
    x, total = 0.0, 0.0
    for h, a in enumerate(sequence[:, 0].tolist()):
        total += model.discount**h * -((x + a - float(model.targets[min(h, len(model.targets) - 1)])) ** 2)
        x += a
    return total


PLANNING = [name for name in registry() if name != "policy"]
SETTINGS = {"dream_mpc": {"lr": "0.5", "iterations": "2"}, "grad_mpc": {"use_value": "true"}}


@pytest.mark.parametrize("name", PLANNING)
def test_exploitation_data_is_the_models_prediction_for_the_executed_plan(name):
    model = AnalyticModel(discount=0.9)
    config = resolve_config(name, {"horizon": "3"} | SETTINGS.get(name, {}))
    planner = make_planner(name, model, config)
    generator = torch.Generator().manual_seed(0)
    z = torch.as_tensor(OBS).unsqueeze(0)
    with torch.enable_grad() if planner.uses_gradients else torch.inference_mode():
        plans = planner.plan_episodes(z.clone(), generator)
    plan = plans.episode(0)
    assert plan.sequence is not None and plan.sequence.shape == (3, 1)
    assert torch.equal(plan.sequence[0], plan.action) or name == "mppi"  # MPPI may add execution noise
    counted = model.model_evals
    (predicted_return,), (predicted_rewards,) = _predictions(planner, z, plans)
    assert model.model_evals == counted  # the metric's rollout is not the planner's work
    assert predicted_rewards == pytest.approx(by_hand(model, plan.sequence), abs=1e-6)
    assert predicted_return == pytest.approx(predicted_rewards, abs=1e-6)  # the analytic value heads are zero
    if name == "dream_mpc":  # its own number is J before the last update: not the plan it executes
        assert abs(plan.predicted_rewards - predicted_rewards) > 1e-3


class LinearValueModel(AnalyticModel):
    """Targets all zero; every value head is V(z) = 10 x (x = position): moving right pays off later."""

    def __init__(self, discount: float):
        super().__init__(targets=(0.0, 0.0, 0.0), discount=discount, policy_std=0.5)

    def value(self, z, a=None):
        return (10.0 * z[:, :1]).expand(self.num_value_heads, -1, -1)


def smc_first_action(discount: float, seeds: int = 40) -> float:
    model = LinearValueModel(discount)
    planner = make_planner("smc", model, resolve_config("smc", {"value": "true", "horizon": "1"}))
    z = torch.zeros(1, 2)
    actions = [float(planner.plan(z, torch.Generator().manual_seed(s)).action) for s in range(seeds)]
    return float(np.mean(actions))


def test_smc_advantage_discounts_the_next_value():
    # r + gamma V(z') - V(z) with V = 10 x: at gamma = 1 each step pays 10 a (actions pushed right);
    # at gamma ~ 0 the gain vanishes and -V(z') at the second step punishes having moved right. The
    # same seeds draw the same particles, so a planner that ignores gamma gives identical actions.
    far, myopic = smc_first_action(1.0), smc_first_action(1e-3)
    assert far > 0.3
    assert myopic < 0.0 and far - myopic > 0.3


def smc_by_hand(model: AnalyticModel, particles: int, temperature: float, seed: int) -> float:
    """One SMC step (horizon 0, reward-only advantage) written out: S proposal draws, weights
    exp(r / tau) normalized, S ancestors drawn multinomially, then a uniformly drawn survivor."""
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(particles, 1, generator=generator)
    a = (model.policy_std * eps).clamp(-1, 1)  # the analytic proposal N(0, policy_std), clamped
    r = -((a[:, 0] - model.targets[0]) ** 2)
    w = torch.exp((r - r.max()) / temperature)
    ancestors = torch.multinomial(w / w.sum(), particles, replacement=True, generator=generator)
    pick = int(torch.randint(particles, (1,), generator=generator))
    return float(a[ancestors[pick], 0])


@pytest.mark.parametrize("temperature", [0.001, 0.1, 100.0])
def test_smc_weights_and_temperature_match_the_algorithm_by_hand(temperature):
    for seed in range(5):
        model = AnalyticModel(targets=(0.4,), policy_std=0.5)
        config = resolve_config("smc", {"horizon": "0", "particles": "64", "temperature": str(temperature)})
        plan = make_planner("smc", model, config).plan(torch.zeros(1, 2), torch.Generator().manual_seed(seed))
        assert float(plan.action) == pytest.approx(smc_by_hand(model, 64, temperature, seed), abs=1e-6)


def test_smc_temperature_moves_it_from_argmax_to_the_proposal():
    model = AnalyticModel(targets=(0.4,), policy_std=0.5)

    def actions(temperature):
        config = resolve_config("smc", {"horizon": "0", "particles": "256", "temperature": str(temperature)})
        planner = make_planner("smc", model, config)
        plans = [planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(s)) for s in range(60)]
        return np.array([float(p.action) for p in plans])

    cold, hot = actions(1e-9), actions(1e4)
    for seed, action in enumerate(cold):  # every survivor is the proposal draw nearest the target
        draws = (0.5 * torch.randn(256, 1, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)[:, 0]
        assert action == pytest.approx(float(draws[(draws - 0.4).abs().argmin()]), abs=1e-7)
    assert abs(hot.mean()) < 0.15 and hot.std() > 0.35  # uniform weights: draws from N(0, 0.5) itself


def test_byravan_cem_refit_is_smoothed_from_a_policy_sampled_mean():
    # Byravan et al. Alg. 3 by hand, one iteration: the mean starts at one policy-sampled open-loop plan,
    # N samples mean + std * noise clamped to [-1, 1], the top K by reward sum, then
    # mu <- 0.1 mu + 0.9 mean(elites) and sigma <- 0.5 sigma + 0.5 std(elites) (biased).
    from benchctl.planners.rollout import policy_rollout

    model = AnalyticModel(targets=(0.9, -0.7, 0.4))
    options = {"init": "policy", "horizon": "3", "iterations": "1", "candidates": "50", "elites": "5"}
    config = resolve_config("cem", options | {"init_std": "0.5"})
    planner = make_planner("cem", model, config)
    plan = planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(3))

    generator = torch.Generator().manual_seed(3)
    mean = policy_rollout(model, torch.zeros(1, 2), 3, generator)[:, 0]
    std = torch.full((3, 1), 0.5)
    actions = (mean.unsqueeze(1) + std.unsqueeze(1) * torch.randn(3, 50, 1, generator=generator)).clamp(-1, 1)
    returns = torch.tensor([by_hand(model, actions[:, i]) for i in range(50)])
    elites = actions[:, returns.topk(5).indices]
    expected_mean = 0.1 * mean + 0.9 * elites.mean(1)
    assert torch.allclose(plan.sequence, expected_mean.clamp(-1, 1), atol=1e-6)
    assert plan.predicted_return == pytest.approx(float(returns.topk(5).values.mean()), abs=1e-5)
    planner_std = 0.5 * std + 0.5 * elites.std(1, unbiased=False)
    assert (planner_std < std).all()  # the smoothing keeps half the old spread: it narrows, never collapses
    assert (planner_std >= 0.25).all()


class NegativeValueModel(AnalyticModel):
    """Two value heads that disagree around a negative mean: u = mean * std < 0 everywhere."""

    def value(self, z, a=None):
        return torch.stack([torch.full((z.shape[0], 1), -1.0), torch.full((z.shape[0], 1), -3.0)]) + 0 * z[:, :1]


def test_dream_mpc_counts_the_steps_where_its_uncertainty_term_is_a_bonus():
    for model, expected in ((NegativeValueModel(), 1.0), (AnalyticModel(), 0.0)):
        planner = make_planner("dream_mpc", model, resolve_config("dream_mpc", {"lambda_unc": "0.1"}))
        plan = planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(0))
        assert plan.info["uncertainty_bonus"] == expected
    assert "uncertainty_bonus" in type(planner).counted_info  # summed into each episode's record


def test_per_task_std_is_the_sample_std_over_seeds():
    seeds = pd.DataFrame(
        {
            "method": ["a"] * 3 + ["b"],
            "task_id": ["t"] * 4,
            "seed": [1, 2, 3, 1],
            "ret": [100.0, 200.0, 600.0, 50.0],
            "score": [0.1, 0.2, 0.6, 0.05],
            "success": [np.nan] * 4,
        }
    )
    table = per_task_table(seeds, set())
    assert table[("a", "std")].item() == pytest.approx(np.std([100, 200, 600], ddof=1))
    text = render_per_task(table, "md")
    assert "**300.0 ± 264.6**" in text and "<u>50.0</u>" in text  # one seed: the mean alone, no made-up ± 0


def test_cem_gd_refits_mean_and_variance_as_eq_2a_2b():
    # One CEM iteration at t = 0 by hand: the same noise, the top elite_ratio, then
    # mu <- (1 - alpha) mu + alpha mean(elites), Sigma <- (1 - alpha) Sigma + alpha var(elites).
    model = AnalyticModel()
    config = resolve_config("cem_gd", {"horizon": "3", "init_samples": "40", "cem_iterations": "1", "gd_steps": "0"})
    planner = make_planner("cem_gd", model, config)
    planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(3))
    noise = torch.randn(3, 40, 1, generator=torch.Generator().manual_seed(3))
    actions = noise.clamp(-1, 1)  # mean 0, std 1
    returns = torch.tensor([by_hand(model, actions[:, i]) for i in range(40)])
    elites = actions[:, torch.topk(returns, 4).indices]  # elite_ratio 0.1 of 40
    alpha = config.cem_alpha
    mean, var = (x[:, 0] for x in planner.last_distribution)  # (H, episode, A)
    torch.testing.assert_close(mean, alpha * elites.mean(1))
    torch.testing.assert_close(var, (1 - alpha) * 1.0 + alpha * elites.var(1, unbiased=False))


def test_cem_gd_keeps_searching_after_the_first_step():
    # t > 0: every one of the N_r samples is an elite, so the sampling spread survives the refit
    # (one elite of ten would set the variance to (1 - alpha)^i of the start within a few iterations).
    planner = make_planner("cem_gd", AnalyticModel(), resolve_config("cem_gd", {"horizon": "3", "gd_steps": "0"}))
    generator = torch.Generator().manual_seed(0)
    planner.plan(torch.zeros(1, 2), generator)
    planner.plan(torch.tensor([[0.5, 1.0]]), generator)
    assert float(planner.last_distribution[1].min()) > 0.05


@pytest.mark.parametrize("gd_steps", [0, 10])
def test_cem_gd_counted_evaluations_against_its_formula(gd_steps):
    model = AnalyticModel()
    config = resolve_config("cem_gd", {"horizon": "3", "init_samples": "30", "gd_steps": str(gd_steps)})
    planner = make_planner("cem_gd", model, config)
    generator = torch.Generator().manual_seed(0)
    planner.plan(torch.zeros(1, 2), generator)
    first = model.model_evals
    planner.plan(torch.tensor([[0.5, 1.0]]), generator)
    later = model.model_evals - first
    bound = type(planner).model_evals_per_step(config, 1)
    cem = config.resample_samples * config.cem_iterations * config.horizon
    if gd_steps == 0:  # no line search: the formula is exact, at t = 0 with init_samples
        assert later == bound == cem and first == config.init_samples * config.cem_iterations * config.horizon
    else:
        assert cem + config.horizon <= later <= bound  # at least one gradient evaluation


def test_grad_mpc_evaluates_only_executable_actions():
    model = AnalyticModel()
    planner = make_planner("grad_mpc", model, resolve_config("grad_mpc", {"horizon": "3", "candidates": "200"}))
    planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(0))
    seen = torch.cat(model.steps)
    assert len(seen) == 200 * 3 * planner.config.iterations
    assert float(seen.abs().max()) <= 1.0  # N(0, 1) draws put ~32% outside before the projection
    assert planner.config.optimizer == "sgd"  # Alg. 1's plain step, as Policy+Grad-MPC


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_ascent_steps_as_sgd_and_torch_adam(clip):
    from benchctl.planners.rollout import clip_global_norm, gradient_ascent

    target = torch.tensor([[[0.3]], [[-0.7]]])  # J = -sum (a - target)^2 per candidate
    start = torch.zeros(2, 1, 1)

    def objective(a):
        return -((a - target) ** 2).sum(dim=(0, 2))

    plain = gradient_ascent(objective, start, 3, 0.1, clip_norm=clip)
    a = start.clone()
    for _ in range(3):
        grad = -2 * (a - target)
        a = a + 0.1 * (clip_global_norm(grad, clip) if clip else grad)
    torch.testing.assert_close(plain.actions, a)
    leaf = start.clone().requires_grad_(True)
    adam = torch.optim.Adam([leaf], lr=0.1)
    for _ in range(3):
        adam.zero_grad()
        (-objective(leaf).sum()).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_([leaf], clip)
        adam.step()
    ours = gradient_ascent(objective, start, 3, 0.1, clip_norm=clip, optimizer="adam")
    torch.testing.assert_close(ours.actions, leaf.detach())
    # The ranking is J before the last step.
    torch.testing.assert_close(
        ours.values, objective(gradient_ascent(objective, start, 2, 0.1, clip, optimizer="adam").actions)
    )


def test_headers_record_the_settings_a_planner_derives_from_the_agent():
    mppi, dream = registry()["mppi"], registry()["dream_mpc"]
    assert mppi.effective_settings(mppi.Config(), "tdmpc2", 38)["iterations"] == 8  # dog: A >= 20
    assert mppi.effective_settings(mppi.Config(), "tdmpc2", 6)["iterations"] == 6
    assert dream.effective_settings(dream.Config(), "bmpc", 6)["lambda_unc"] == 0.1
    assert dream.effective_settings(dream.Config(lambda_unc=0.0), "bmpc", 6)["variant"] == "no uncertainty term"


@pytest.mark.parametrize("name", sorted(registry()))
def test_same_seed_same_actions(name):
    """Every planner draws all its randomness from the episode generator: a rerun replays it."""

    def actions(seed: int) -> list[torch.Tensor]:
        model = AnalyticModel(discount=0.9)
        overrides = {"horizon": "3"} if "horizon" in registry()[name].Config.__dataclass_fields__ else {}
        planner = make_planner(name, model, resolve_config(name, overrides | SETTINGS.get(name, {})))
        generator = torch.Generator().manual_seed(seed)
        out, z = [], torch.zeros(1, 2)
        for _ in range(3):  # warm starts carry over between steps
            with torch.enable_grad() if planner.uses_gradients else torch.inference_mode():
                a = planner.plan(z.clone(), generator).action.detach()
            out.append(a)
            z = torch.stack([z[:, 0] + a, z[:, 1] + 1], dim=1)
        return out

    first, again = actions(5), actions(5)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("fill, last", [("duplicate", 0.3), ("zero", 0.0)])
def test_cem_gd_warm_start_shifts_its_last_plan(fill, last):
    model = AnalyticModel()
    overrides = {"horizon": "3", "gd_steps": "0", "tail_fill": fill, "init_std": "1e-6", "cem_iterations": "1"}
    config = resolve_config("cem_gd", overrides)
    planner = make_planner("cem_gd", model, config)
    planner._previous = torch.tensor([[[0.1]], [[0.2]], [[0.3]]])  # (H, episode, A) as if step t - 1 had planned this
    model.model_evals = 0
    planner.plan(torch.zeros(1, 2), torch.Generator().manual_seed(0))
    assert model.model_evals == config.resample_samples * 3  # t > 0: N_r samples, one iteration
    # A vanishing spread: every sample, hence the refitted mean, sits on the shifted plan.
    expected = torch.tensor([[0.2], [0.3], [last]])
    torch.testing.assert_close(planner.last_distribution[0][:, 0], expected, atol=1e-5, rtol=0)


def test_records_count_each_kind_of_model_work_per_step():
    """Dynamics/reward steps, value-head rows, policy rows and backward passes apart, and not the
    metric's own prediction rollout."""
    from benchctl.agents import load_checkpoint
    from benchctl.evaluate import run_episode
    from benchctl.suites import load_suite, make_env
    from tests.conftest import REPO

    model = load_checkpoint(REPO / "checkpoints" / "tdmpc2" / "demo" / "cartpole-swingup-1.pt")
    task = load_suite("smoke").task("cartpole-swingup")
    records, small = {}, {"mppi": {"num_samples": "64", "num_elites": "8", "iterations": "2"}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread, and no spinning threads on a busy machine
    try:
        for name in ("mppi", "dream_mpc", "policy"):
            planner = make_planner(name, model, resolve_config(name, small.get(name, {})))
            records[name] = run_episode(make_env(task, seed=1), planner, 7, torch.device("cpu"))["work_per_step"]
    finally:
        torch.set_num_threads(threads)
    mppi = resolve_config("mppi", small["mppi"])
    # MPPI: the terminal value of every sample in every iteration, two heads each; policy rows: the
    # 24 prior trajectories over H steps plus each sample's terminal action.
    assert records["mppi"]["value_heads"] == 2 * mppi.num_samples * mppi.iterations
    assert records["mppi"]["policy"] == mppi.num_pi_trajs * mppi.horizon + mppi.num_samples * mppi.iterations
    assert records["mppi"]["backward"] == 0
    assert records["dream_mpc"]["backward"] == 1  # one gradient step per planning step
    assert records["policy"] == {"value_heads": 0, "policy": 1, "backward": 0}
