"""The HumanoidBench suite (optional extra) runs real h1hand episodes as the official TD-MPC2/BMPC
wrappers do, with early termination and success = return >= target; and a report over results of
all three paper suites aggregates per suite and overall.

HumanoidBench is not on PyPI: where it is not installed (a user's clone) these tests skip with the
install command; CI installs it from ../shared/vendor and they must run there."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchctl.envs.humanoid import install_hint
from benchctl.suites import load_suite
from benchctl.train.tdmpc2 import TDMPC2Learner, new_model
from tests.conftest import REPO, need, run_cli
from tests.test_cli_errors import one_line_error

PAPER_TASKS = ["balance_hard", "balance_simple", "hurdle", "maze", "reach", "run", "slide", "stair"]


@pytest.fixture(scope="module")
def humanoid_bench():
    need(importlib.util.find_spec("humanoid_bench") is not None, f"HumanoidBench: {install_hint()}")


def test_suite_lists_the_papers_tasks_with_normalization():
    # no HumanoidBench needed: the suite is data
    suite = load_suite("humanoid")
    assert sorted(suite.tasks) == sorted(f"h1hand-{t}-v0" for t in PAPER_TASKS)
    run = suite.task("h1hand-run")
    assert suite.task("humanoid_h1hand-run-v0") is run and (run.episode_length, run.action_repeat) == (1000, 1)
    assert run.normalization == {"kind": "random_target", "random": 1.927, "target": 700.0}
    assert suite.task("h1hand-reach-v0").normalization["random"] == -50.024
    assert run.discount == pytest.approx(0.995)
    proc = run_cli("ls", "tasks", "--suite", "humanoid")
    assert proc.returncode == 0 and "h1hand-maze-v0" in proc.stdout and "target=1200.0" in proc.stdout


def test_unknown_h1hand_task_is_one_line():
    one_line_error(
        run_cli("eval", "--suite", "humanoid", "--task", "h1hand-runn", "--checkpoint", str(REPO / "README.md")),
        "h1hand-runn",
        "did you mean 'h1hand-run-v0'",
    )


def test_missing_humanoid_bench_is_one_line_with_the_install_command(tmp_path):
    # the import fails as it does where HumanoidBench is not installed
    path = tmp_path / "h1hand-run-v0-1.pt"
    torch.save({"model": TDMPC2Learner(new_model(151, 61, size=1), 0.995).official_state_dict()}, path)
    code = (
        "import sys; sys.modules['humanoid_bench'] = None; from benchctl.cli import main; "
        "sys.argv = ['benchctl', 'eval', '--suite', 'humanoid', "
        f"'--checkpoint', {str(path)!r}, '--task', 'h1hand-run']; "
        "main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    one_line_error(proc, "needs HumanoidBench", "pip install --no-deps -e humanoid-bench")


def test_reset_is_reproducible_from_the_episode_seed(humanoid_bench):
    from benchctl.envs.humanoid import HumanoidEnv

    env = HumanoidEnv("h1hand-reach-v0", target=12000.0)  # its goal comes from numpy's global generator
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b, c = env.reset(5), env.reset(6), env.reset(5)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's generator is left as it was
    assert (env.obs_dim, env.action_dim) == (157, 61)


def test_struct_fields_missing_from_mujoco_are_dropped(humanoid_bench):
    import mujoco

    from benchctl.envs.humanoid import _drop_missing_struct_fields

    table = {"mjmodel": {"nq": (), "flex_xvert0": ()}, "mjdata": {"qpos": (), "no_such_field": ()}}
    assert sorted(_drop_missing_struct_fields(table)) == ["flex_xvert0", "no_such_field"]
    assert table == {"mjmodel": {"nq": ()}, "mjdata": {"qpos": ()}} and hasattr(mujoco.MjModel, "nq")


@pytest.fixture(scope="module")
def h1_agent(tmp_path_factory, humanoid_bench) -> Path:
    """A random-weight model_size-1 TD-MPC2 checkpoint in the official format, h1hand-run dims."""
    path = tmp_path_factory.mktemp("hb") / "h1hand-run-v0-1.pt"
    torch.save({"model": TDMPC2Learner(new_model(151, 61, size=1, seed=5), 0.995).official_state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def three_suites(tmp_path_factory, h1_agent) -> Path:
    """Real results of all three paper suites in one results folder: policy and Dream-MPC."""
    out = tmp_path_factory.mktemp("three")
    mw = out / "button-press-1.pt"
    torch.save({"model": TDMPC2Learner(new_model(39, 4, size=1, seed=3), 0.95).official_state_dict()}, mw)
    runs = [
        ("humanoid", h1_agent, "h1hand-run"),
        ("metaworld", mw, "button-press"),
        ("dmc", REPO / "checkpoints/tdmpc2/dmc/acrobot-swingup-1.pt", "acrobot-swingup"),
    ]
    for suite, agent, task in runs:
        proc = run_cli(
            "eval", "--suite", suite, "--checkpoint", str(agent), "--task", task, "--planner", "policy",
            "--planner", "dream_mpc", "--episodes", "2", "--seeds", "1", "--out", str(out / "results"),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    return out / "results"


def test_real_episodes_end_early_when_the_robot_falls(three_suites):
    cells = sorted((three_suites / "tdmpc2" / "humanoid").rglob("seed-1.jsonl"))
    assert len(cells) == 2
    for cell in cells:
        lines = [json.loads(line) for line in cell.read_text().splitlines()]
        header, episodes = lines[0], lines[1:]
        assert header["task"] == "h1hand-run-v0" and header["versions"]["humanoid_bench"]
        for e in episodes:
            # a random-weight agent falls long before 1000 steps; the episode says so
            assert e["length"] < 1000 and e["terminated"] is True
            assert e["success"] is (e["return"] >= 700.0) is False


def test_mppi_plans_61_dim_actions_with_8_iterations(h1_agent, tmp_path):
    proc = run_cli(
        "eval", "--suite", "humanoid", "--checkpoint", str(h1_agent), "--task", "h1hand-balance_simple",
        "--planner", "mppi", "--episodes", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode != 0  # balance_simple observes 164 dims, the agent takes 151
    assert "h1hand-balance_simple-v0 has obs 164 / action 61" in proc.stderr
    proc = run_cli(
        "eval", "--suite", "humanoid", "--checkpoint", str(h1_agent), "--task", "h1hand-run",
        "--planner", "mppi", "--episodes", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in next(tmp_path.rglob("seed-1.jsonl")).read_text().splitlines()]
    assert lines[0]["planner_effective"]["iterations"] == 8  # 61-dim actions: 6 + 2 (TD-MPC2)
    assert lines[1]["model_evals_per_step"] == 8 * 512 * 3 and lines[1]["terminated"] is True


def test_report_over_three_suites_aggregates_per_suite_and_overall(three_suites, tmp_path):
    proc = run_cli("report", str(three_suites), "--out", str(tmp_path), "--reps", "200", "--format", "md,csv")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report.md").read_text()
    for suite in ("dmc", "humanoid", "metaworld"):
        assert f"### Aggregates: {suite} alone" in text
    assert "### metaworld (success rate in %)" in text
    assert "### humanoid (return, normalized score in parentheses)" in text
    assert "### dmc (return)" in text
    assert "humanoid: (return - random) / (target - random); h1hand-run-v0: random 1.927, target 700" in text
    assert "metaworld: success (0/1) of each episode" in text and "dmc: return / 1000" in text
    import pandas as pd

    per_suite = pd.read_csv(tmp_path / "aggregates_per_suite.csv")
    overall = pd.read_csv(tmp_path / "aggregates.csv")
    seeds = pd.read_csv(tmp_path / "scores_per_seed.csv")
    assert sorted(per_suite["suite"].unique()) == ["dmc", "humanoid", "metaworld"]
    for method in ("policy", "dream_mpc"):
        rows = seeds[seeds["method"].str.endswith(method)]
        mean = overall[(overall["method"].str.endswith(method)) & (overall["metric"] == "Mean")]
        # the overall mean is over the three tasks' scores; each suite's mean is its task's score
        assert mean["point"].item() == pytest.approx(rows["score"].mean())
        for suite in ("dmc", "humanoid", "metaworld"):
            part = per_suite[(per_suite["suite"] == suite) & (per_suite["metric"] == "Mean")]
            part = part[part["method"].str.endswith(method)]
            assert part["point"].item() == pytest.approx(rows[rows["task_id"].str.startswith(suite)]["score"].item())
    humanoid = seeds[seeds["task_id"] == "humanoid/h1hand-run-v0"]
    assert np.allclose(humanoid["score"], (humanoid["ret"] - 1.927) / (700 - 1.927))


def test_eval_runs_out_of_the_box_on_the_shipped_agent(humanoid_bench, tmp_path):
    """`benchctl eval --suite humanoid` with no checkpoints runs the shipped h1hand-balance_simple agent
    (policy and MPPI), says which tasks lack one, and its policy reproduces the manifest's return on
    the manifest's 10 episodes (each ends when the robot falls, after some tens of steps)."""
    import tomllib

    manifest = tomllib.loads((REPO / "checkpoints" / "manifest.toml").read_text())
    entry = next(e for e in manifest["agent"] if e["suite"] == "humanoid")
    proc = run_cli(
        "eval", "--suite", "humanoid", "--planner", "policy", "--seeds", str(entry["seed"]),
        "--episodes", "10", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no shipped agent for 7 of 8 tasks" in proc.stdout + proc.stderr
    (cell,) = tmp_path.glob("tdmpc2/humanoid/h1hand-balance_simple-v0/policy@*/seed-1.jsonl")
    lines = [json.loads(line) for line in cell.read_text().splitlines()]
    header, episodes = lines[0], lines[1:]
    assert header["checkpoint"].endswith("checkpoints/tdmpc2/humanoid/h1hand-balance_simple-v0-1.pt")
    assert all(e["terminated"] is True and e["length"] < 1000 and e["success"] is False for e in episodes)
    mean = float(np.mean([e["return"] for e in episodes]))
    assert abs(mean - entry["returns"]["policy"]) <= 0.01 * entry["returns"]["policy"] + 0.1  # manifest rounds
    proc = run_cli(
        "eval", "--suite", "humanoid", "--planner", "mppi", "--seeds", "1", "--episodes", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (cell,) = tmp_path.glob("tdmpc2/humanoid/h1hand-balance_simple-v0/mppi@*/seed-1.jsonl")
    assert json.loads(cell.read_text().splitlines()[1])["model_evals_per_step"] == 8 * 512 * 3
