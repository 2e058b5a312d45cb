"""The Meta-World suite follows the TD-MPC2 protocol, checked against Meta-World itself, and runs
real episodes through `benchctl eval` on official-format checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

from benchctl.envs.metaworld import MetaWorldEnv, env_name
from benchctl.errors import BenchctlError
from benchctl.suites import load_suite
from benchctl.train.tdmpc2 import TDMPC2Learner, new_model
from tests.conftest import run_cli
from tests.test_cli_errors import one_line_error

PAPER_TASKS = [
    "assembly",
    "button-press",
    "disassemble",
    "lever-pull",
    "pick-place-wall",
    "push-back",
    "shelf-place",
    "window-open",
]


def raw_env(task: str, seed: int):
    """Meta-World's goal-observable v3 environment as TD-MPC2 configures it, seeded like benchctl."""
    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-v3-goal-observable"](seed=0)
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.seed(seed)
    return env


def test_protocol_against_metaworld_itself():
    env = MetaWorldEnv("button-press")
    raw = raw_env("button-press", 11)
    obs = env.reset(11)
    first, _ = raw.reset()
    np.testing.assert_array_equal(obs, first.astype(np.float32))  # the reset observation is returned ...
    assert obs.dtype == np.float32 and obs.shape == (39,)
    raw.step(np.zeros(4, np.float32))  # ... and the zero-action step after it is taken and discarded
    assert env._env.curr_path_length == raw.curr_path_length == 1
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        result = env.step(action)
        o1, r1, _, _, _ = raw.step(action)
        o2, r2, _, _, info = raw.step(action)
        steps += 1
        assert result.reward == pytest.approx(r1 + r2, abs=1e-12)  # action repeat 2, rewards summed
        np.testing.assert_array_equal(result.obs, o2.astype(np.float32))
        assert result.success == bool(info["success"])  # success of the last simulator step
        if result.done:
            break
    assert steps == 100 and raw.curr_path_length == 201  # 100 policy steps, 200 simulator steps + the zero step


def test_variants_follow_the_episode_seed():
    env = MetaWorldEnv("window-open")
    a, b, c = env.reset(3), env.reset(4), env.reset(3)
    np.testing.assert_array_equal(a, c)  # a rerun episode meets the same variant
    assert not np.allclose(a[4:7], b[4:7])  # another seed, another object position
    assert not np.allclose(a[36:39], b[36:39]) and np.abs(a[36:39]).sum() > 0  # the goal is observed


def test_suite_has_the_papers_tasks_with_their_protocol():
    suite = load_suite("metaworld")
    assert sorted(suite.tasks) == PAPER_TASKS
    for task in suite.tasks.values():
        assert (task.episode_length, task.action_repeat) == (100, 2)
        assert task.normalization == {"kind": "success"} and task.discount == pytest.approx(0.95)
    assert suite.task("mw-lever-pull").name == suite.task("lever-pull-v3").name == "lever-pull"
    for name in PAPER_TASKS:
        env = MetaWorldEnv(name)
        assert (env.obs_dim, env.action_dim) == (39, 4)


def test_other_versions_are_refused():
    assert env_name("mw-button-press") == env_name("button-press") == "button-press-v3"
    with pytest.raises(BenchctlError, match="v3 tasks only; use 'button-press'"):
        load_suite("metaworld").task("button-press-v2")


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Path:
    """A random-weight TD-MPC2 checkpoint in the official format, Meta-World dims (obs 39, action 4),
    128/128/64 wide as the shipped agents (a third of model_size 1's MPPI time)."""
    path = tmp_path_factory.mktemp("mw") / "button-press-1.pt"
    learner = TDMPC2Learner(new_model(39, 4, size=None, dims=(128, 128, 64), seed=3), 0.95)
    torch.save({"model": learner.official_state_dict()}, path)
    return path


def test_eval_runs_real_episodes_with_policy_and_mppi(agent, tmp_path):
    proc = run_cli(
        "eval", "--suite", "metaworld", "--checkpoint", str(agent), "--task", "mw-button-press",
        "--planner", "policy", "--planner", "mppi", "--episodes", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "success" in proc.stdout
    cells = sorted(tmp_path.rglob("seed-1.jsonl"))
    assert len(cells) == 2
    for cell in cells:
        lines = [json.loads(line) for line in cell.read_text().splitlines()]
        header, episodes = lines[0], lines[1:]
        assert header["suite"] == "metaworld" and header["task"] == "button-press"
        assert header["versions"]["metaworld"] == "3.1.1"
        assert len(episodes) == 2
        for e in episodes:
            assert e["length"] == 100 and isinstance(e["success"], bool) and "terminated" not in e
        if header["planner"] == "mppi":
            assert header["planner_effective"]["iterations"] == 6  # 4-dim actions: no +2
            assert episodes[0]["model_evals_per_step"] == 6 * 512 * 3
        assert episodes[0]["return"] != episodes[1]["return"]  # two seeded variants


def test_a_dmc_checkpoint_on_a_metaworld_task_is_one_line(reference):
    from tests.conftest import TDMPC2_MS1

    one_line_error(
        run_cli(
            "eval", "--suite", "metaworld", "--checkpoint", str(reference / f"{TDMPC2_MS1}.pt"),
            "--task", "button-press", "--episodes", "1",
        ),
        "obs 5 / action 1",
        "button-press has obs 39 / action 4",
    )  # fmt: skip


def test_a_versioned_name_of_another_version_is_one_line(agent):
    one_line_error(
        run_cli("eval", "--suite", "metaworld", "--checkpoint", str(agent), "--task", "button-press-v2"),
        "v3 tasks only",
        "'button-press'",
    )


def test_eval_runs_out_of_the_box_on_the_shipped_agent(tmp_path):
    """`benchctl eval --suite metaworld` with no checkpoints: the shipped agents (window-open,
    button-press, lever-pull), policy and MPPI, on the manifest's first episode seeds (distinct variants)."""
    proc = run_cli(
        "eval", "--suite", "metaworld", "--planner", "policy", "--planner", "mppi",
        "--seeds", "1", "--episodes", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no shipped agent for 5 of 8 tasks" in proc.stdout + proc.stderr  # the others, with the command
    assert "benchctl train --task assembly --suite metaworld" in proc.stdout + proc.stderr
    for shipped in ("button-press", "lever-pull"):
        assert len(list(tmp_path.glob(f"tdmpc2/metaworld/{shipped}/*/seed-1.jsonl"))) == 2
    cells = sorted(tmp_path.glob("tdmpc2/metaworld/window-open/*/seed-1.jsonl"))
    assert len(cells) == 2
    for cell in cells:
        lines = [json.loads(line) for line in cell.read_text().splitlines()]
        header, episodes = lines[0], lines[1:]
        assert header["checkpoint"].endswith("checkpoints/tdmpc2/metaworld/window-open-1.pt")
        assert [e["length"] for e in episodes] == [100, 100]
        if header["planner"] == "policy":  # 10 of 10 in its manifest entry, deterministic on these seeds
            assert [e["success"] for e in episodes] == [True, True] and min(e["return"] for e in episodes) > 1000
