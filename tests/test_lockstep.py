"""Lockstep episodes (`--batch-episodes`): one planner call per step for several episodes, each with
its own generator, so an episode plans as it would alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from benchctl.agents import load_checkpoint, planning_discount
from benchctl.draws import EpisodeGenerators
from benchctl.envs.humanoid import install_hint
from benchctl.evaluate import run_episode, run_episodes
from benchctl.planners import registry
from benchctl.planners.base import make_planner, resolve_config
from benchctl.store import read_cell
from benchctl.suites import load_suite, make_env
from tests.conftest import REPO, need, run_cli
from tests.twelve_cells import CELLS, REFERENCE_EPISODES, eval_args, records

SHIPPED = REPO / "checkpoints" / "tdmpc2" / "demo"
SMALL = {  # every planner, at budgets small enough for a test
    "cem": {"candidates": "64", "elites": "8", "iterations": "2", "horizon": "4"},
    "cem_gd": {"horizon": "4", "init_samples": "64", "resample_samples": "8", "gd_steps": "3"},
    "dream_mpc": {},
    "grad_mpc": {"candidates": "32", "iterations": "3", "horizon": "4"},
    "mppi": {"num_samples": "64", "num_pi_trajs": "8", "num_elites": "8"},
    "policy": {},
    "policy_grad_mpc": {},
    "smc": {"particles": "32", "horizon": "3", "value": "true", "value_samples": "2"},
}


@pytest.fixture(scope="module")
def agent():
    model = load_checkpoint(SHIPPED / "cartpole-swingup-1.pt")
    model.discount = planning_discount(model.family, 0.99)
    return model


def test_every_planner_is_tested_here():
    assert set(SMALL) == set(registry())


@pytest.fixture
def in_float64():
    """Everything in float64 for the test: batched and single products then differ by ~1e-15 instead of
    float32's ~1e-7, which elite selections and Gumbel draws would amplify into other plans."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_lockstep_call_plans_each_episode_as_alone(in_float64, name):
    """Three episodes' latents in one call, each with its own generator, give each episode the plan it
    gets alone (two steps: the warm starts too): the same random numbers in the same order. Then the
    middle episode ends: the planner keeps the other two's warm starts and plans their third step as alone."""
    agent = load_checkpoint(SHIPPED / "cartpole-swingup-1.pt").double()
    agent.discount = 0.99
    config = resolve_config(name, SMALL[name])
    with torch.no_grad():  # three real latents: encoded observations of the agent's size
        z = agent.encode(torch.randn(3, agent.dims.obs_dim, generator=torch.Generator().manual_seed(1)))
    alone = []
    for e in range(3):
        planner, generator = make_planner(name, agent, config), torch.Generator().manual_seed(100 + e)
        alone.append([planner.plan(z[e : e + 1].clone(), generator) for _ in range(3)])
    planner = make_planner(name, agent, config)
    generators = EpisodeGenerators([torch.Generator().manual_seed(100 + e) for e in range(3)])
    together = [planner.plan_episodes(z.clone(), generators) for _ in range(2)]
    planner.keep_episodes(torch.tensor([0, 2]))
    remaining = planner.plan_episodes(z[[0, 2]].clone(), EpisodeGenerators([generators[0], generators[2]]))
    for row, e in enumerate((0, 2)):
        torch.testing.assert_close(remaining.actions[row], alone[e][2].action, atol=1e-9, rtol=0)
    for step in range(2):
        assert together[step].actions.shape == (3, agent.action_dim)
        for e in range(3):
            torch.testing.assert_close(together[step].actions[e], alone[e][step].action, atol=1e-9, rtol=0)
            if alone[e][step].predicted_return is not None:
                assert together[step].episode(e).predicted_return == pytest.approx(
                    alone[e][step].predicted_return, abs=1e-9
                )


def test_lockstep_mppi_computes_each_episodes_start_latent_share_once(agent):
    """MPPI's first model step starts each episode's N samples from one latent: the latent part of the
    dynamics and reward heads' first layers runs on the E start latents (E rows), not on E * N rows,
    with E lockstep episodes as with one (the sequential stride-0 share)."""
    from torch.overrides import TorchFunctionMode

    firsts = {id(agent._dynamics[0].weight), id(agent._reward[0].weight)}
    Z = agent.latent_dim

    class Products(TorchFunctionMode):
        """(rows, columns of the weight) of every product with a first-layer weight (or its latent part)."""

        def __init__(self):
            super().__init__()
            self.seen: list[tuple[int, int]] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.linear and (
                id(args[1]) in firsts or id(getattr(args[1], "_base", None)) in firsts
            ):
                self.seen.append((args[0].shape[0], args[1].shape[1]))
            return func(*args, **(kwargs or {}))

    config = resolve_config("mppi", SMALL["mppi"])  # 64 samples, horizon 3, 6 iterations
    for episodes in (1, 3):
        planner = make_planner("mppi", agent, config)
        generator = EpisodeGenerators([torch.Generator().manual_seed(e) for e in range(episodes)])
        with torch.no_grad():
            z = agent.encode(torch.randn(episodes, agent.dims.obs_dim, generator=torch.Generator().manual_seed(1)))
        with torch.inference_mode(), Products() as products:
            planner.plan_episodes(z, generator if episodes > 1 else generator[0])
        rows = episodes * config.num_samples
        iterations = 6
        # step 0: the latent part on the E start latents; steps 1, 2: the whole layer on every row
        assert products.seen.count((episodes, Z)) == 2 * iterations
        assert products.seen.count((rows, Z + agent.action_dim)) == 2 * iterations * (config.horizon - 1)
        # and the policy prior's trajectories (8 per episode) through the dynamics after their first action
        prior = products.seen.count((episodes * config.num_pi_trajs, Z + agent.action_dim))
        assert prior == config.horizon - 1
        assert len(products.seen) == 2 * iterations * config.horizon + prior


def test_lockstep_episodes_equal_sequential_ones_and_replay(agent):
    """Real dm_control episodes: three in lockstep give the returns of the same seeds run one by one
    (to round-off), the same lockstep run twice gives identical records, and records say lockstep."""
    task = load_suite("smoke").tasks["cartpole-swingup"]
    planner = make_planner("dream_mpc", agent, resolve_config("dream_mpc", {}))
    seeds = [11, 12, 13]
    cpu = torch.device("cpu")
    alone = [run_episode(make_env(task, seed=1), planner, s, cpu) for s in seeds]
    first = run_episodes([make_env(task, seed=1) for _ in seeds], planner, seeds, cpu)
    again = run_episodes([make_env(task, seed=1) for _ in seeds], planner, seeds, cpu)
    assert [r["return"] for r in first] == [r["return"] for r in again]  # reproducible
    assert [r["return"] for r in first] == pytest.approx([r["return"] for r in alone], abs=0.5)
    assert len({r["return"] for r in first}) == 3  # three different episodes, not one copied
    for record in first:
        assert record["lockstep"] == 3 and record["length"] == task.episode_length
        assert record["model_evals_per_step"] == 15  # per episode: 5 candidates x 1 iteration x horizon 3
    assert all("lockstep" not in r for r in alone)


def test_ended_episodes_leave_the_batch(tmp_path):
    """HumanoidBench episodes end when the robot falls, each at its own step: from then on the planner
    plans for the running episodes only, so the world-model evaluations of the whole lockstep run are
    the per-episode budget times the steps actually taken (not times the longest episode for all)."""
    need(importlib.util.find_spec("humanoid_bench") is not None, f"HumanoidBench: {install_hint()}")
    task = load_suite("humanoid").tasks["h1hand-balance_simple-v0"]
    agent = load_checkpoint(REPO / "checkpoints" / "tdmpc2" / "humanoid" / "h1hand-balance_simple-v0-1.pt")
    agent.discount = planning_discount(agent.family, task.discount)
    planner = make_planner("dream_mpc", agent, resolve_config("dream_mpc", {}))
    seeds = [1, 2, 3, 4]
    before = agent.model_evals
    records = run_episodes([make_env(task, seed=1) for _ in seeds], planner, seeds, torch.device("cpu"))
    lengths = [r["length"] for r in records]
    assert all(r["terminated"] for r in records) and len(set(lengths)) > 1  # ended at different steps
    assert agent.model_evals - before == 15 * sum(lengths)  # 5 candidates x 1 iteration x horizon 3
    assert all(r["model_evals_per_step"] == 15 and r["lockstep"] == 4 for r in records)


def test_a_filtering_model_keeps_the_histories_of_the_running_episodes():
    """Dreamer's filter in lockstep: after the middle episode ends, the other two filter their next
    observation exactly as they do alone (their beliefs, states and generators kept)."""
    agent = load_checkpoint(REPO / "checkpoints" / "dreamer" / "demo" / "cartpole-swingup-1.pt")
    obs = torch.randn(3, 3, *agent.net.dims.obs_shape, generator=torch.Generator().manual_seed(0))  # (step, E, obs)
    actions = torch.rand(3, 3, agent.action_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
    alone = []
    with torch.no_grad():
        for e in range(3):
            agent.begin_episode(torch.Generator().manual_seed(100 + e))
            for step in range(3):
                z = agent.observe(obs[step, e : e + 1])
                agent.executed(actions[step, e : e + 1])
            alone.append(z[0])
        generators = EpisodeGenerators([torch.Generator().manual_seed(100 + e) for e in range(3)])
        agent.begin_episode(generators)
        for step in range(2):
            agent.observe(obs[step])
            agent.executed(actions[step])
        agent.keep_episodes(torch.tensor([0, 2]), EpisodeGenerators([generators[0], generators[2]]))
        together = agent.observe(obs[2, [0, 2]])
    torch.testing.assert_close(together, torch.stack([alone[0], alone[2]]), atol=1e-5, rtol=1e-5)


def cell_returns(out: Path) -> dict[str, np.ndarray]:
    """cell -> the returns of its episodes in index order."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(out.rglob("seed-*.jsonl")):
        _, episodes, _, _ = read_cell(path)
        ordered = sorted(episodes, key=lambda e: e["episode"])
        found[str(path.relative_to(out))] = np.array([e["return"] for e in ordered])
    return found


def test_twelve_cells_in_lockstep_match_the_sequential_run(tmp_path, twelve_cells):
    """`--batch-episodes 4` on the 12-cell evaluation the engine tests run (2 tasks x 6 planners on
    the shipped agents): the same cells and episodes as the sequential run, every record marked
    lockstep, and each cell's mean return within the 95% interval of the sequential mean."""
    assert REFERENCE_EPISODES == 4  # the shared sequential run: 4 episodes per cell, as here
    sequential, lockstep = twelve_cells, tmp_path / "lockstep"
    proc = run_cli(*eval_args(lockstep, 4, "--batch-episodes", "4"))
    assert proc.returncode == 0, proc.stderr
    assert records(lockstep).keys() == records(sequential).keys() and len(records(lockstep)) == 4 * CELLS
    for path in lockstep.rglob("seed-*.jsonl"):
        assert all(e["lockstep"] == 4 for e in read_cell(path)[1])
    alone, together = cell_returns(sequential), cell_returns(lockstep)
    for cell, returns in alone.items():
        half_width = 1.96 * returns.std(ddof=1) / np.sqrt(len(returns)) + 1.0  # + 1: a point is its own interval
        assert abs(together[cell].mean() - returns.mean()) <= half_width, (cell, returns, together[cell])
