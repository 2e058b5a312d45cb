"""`benchctl eval` end to end on real dm_control episodes, resume after SIGKILL, torn lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BMPC_MS5, TDMPC2_MS1, run_cli


def smoke_eval(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    """`benchctl eval` arguments for one agent on the smoke suite's cartpole-swingup."""
    return [
        "eval",
        "--suite",
        "smoke",
        "--checkpoint",
        str(checkpoint),
        "--task",
        "cartpole-swingup",
        "--out",
        str(out),
        *extra,
    ]


def read_cells(out: Path) -> dict[str, list[dict]]:
    """{relative cell path: [header, episodes...]} of a results tree."""
    return {
        str(p.relative_to(out)): [json.loads(line) for line in p.read_text().splitlines()]
        for p in sorted(out.rglob("*.jsonl"))
    }


def test_eval_policy_and_mppi_on_real_episodes(official_dir, tmp_path):
    out = tmp_path / "results"
    flags = "--suite smoke --planner policy --planner mppi --episodes 1 --tasks cartpole-swingup"
    proc = run_cli("eval", *flags.split(), "--checkpoints", str(official_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cells = read_cells(out)
    assert sorted(k.split("@")[0] for k in cells) == [
        "tdmpc2/smoke/cartpole-swingup/mppi",
        "tdmpc2/smoke/cartpole-swingup/policy",
    ]
    for lines in cells.values():
        header, episodes = lines[0], lines[1:]
        assert header["type"] == "header" and header["family"] == "tdmpc2" and header["model_size"] == "1"
        assert len(header["checkpoint_sha256"]) == 64 and header["versions"]["torch"]
        assert [e["episode"] for e in episodes] == [0]
        ep = episodes[0]
        assert ep["length"] == 100 == len(ep["rewards"])
        assert abs(ep["return"] - sum(ep["rewards"])) < 1e-3
        assert 0 < ep["latency_ms"]["p50"] <= ep["latency_ms"]["p95"] <= ep["latency_ms"]["max"]
        expected = 9216 if header["planner"] == "mppi" else 0
        assert ep["model_evals_per_step"] == expected
    assert "cartpole-swingup" in proc.stdout and "mppi" in proc.stdout and "9,216" in proc.stdout


def test_bmpc_agent_runs_both_planners(reference, tmp_path):
    out = tmp_path / "results"
    flags = "--planner policy --planner mppi --set num_samples=64 --set num_elites=8 --set num_pi_trajs=8 --episodes 1"
    proc = run_cli(*smoke_eval(reference / f"{BMPC_MS5}.pt", out, *flags.split()))
    assert proc.returncode == 0, proc.stderr
    cells = read_cells(out)
    assert len(cells) == 2 and all(k.startswith("bmpc/") for k in cells)
    mppi = next(v for k, v in cells.items() if "/mppi@" in k)
    assert mppi[0]["planner_config"]["num_samples"] == 64
    assert mppi[1]["model_evals_per_step"] == 64 * 6 * 3 and mppi[1]["length"] == 100


def test_sigkill_then_rerun_loses_and_duplicates_nothing(reference, tmp_path):
    out = tmp_path / "results"
    small_mppi = "--planner mppi --set num_samples=48 --set num_pi_trajs=8 --set num_elites=8 --episodes 6"
    args = smoke_eval(reference / f"{TDMPC2_MS1}.pt", out, *small_mppi.split())
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchctl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 900  # generous: on a loaded machine the first episodes come slowly
    before: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        files = list(out.rglob("*.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= 3:  # header + 2 episodes
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (cell,) = out.rglob("*.jsonl")
    before = cell.read_text().splitlines()
    assert 3 <= len(before) < 7, "the run must be killed mid-way"
    finished = []
    for line in before[1:]:
        try:
            finished.append(json.loads(line))
        except ValueError:  # the line the kill tore
            pass
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    lines = cell.read_text().splitlines()
    episodes = [json.loads(line) for line in lines[1:]]
    assert sorted(e["episode"] for e in episodes) == list(range(6))  # nothing lost, nothing twice
    kept = {e["episode"]: e for e in episodes}
    for e in finished:  # finished episodes were kept byte for byte, not rerun
        assert kept[e["episode"]] == e


def test_torn_last_line_is_dropped_and_reported(reference, tmp_path):
    out = tmp_path / "results"
    args = smoke_eval(reference / f"{TDMPC2_MS1}.pt", out, "--planner", "policy", "--episodes", "3")
    assert run_cli(*args).returncode == 0
    (cell,) = out.rglob("*.jsonl")
    lines = cell.read_text().splitlines()
    third = json.loads(lines[3])
    cell.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # crash mid-write of episode 2
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "torn last line" in rerun.stderr
    episodes = [json.loads(line) for line in cell.read_text().splitlines()[1:]]
    assert [e["episode"] for e in episodes] == [0, 1, 2]
    # seeded per episode: the rerun episode reproduces the lost one exactly
    assert episodes[2]["return"] == third["return"] and episodes[2]["env_seed"] == third["env_seed"]


def test_ls_and_inspect(reference):
    planners = run_cli("ls", "planners")
    assert planners.returncode == 0 and "mppi" in planners.stdout and "9,216" in planners.stdout
    suites = run_cli("ls", "suites")
    assert "dmc" in suites.stdout and "smoke" in suites.stdout
    tasks = run_cli("ls", "tasks", "--suite", "dmc")
    assert "humanoid-walk" in tasks.stdout and "0.990" in tasks.stdout
    info = run_cli("inspect", str(reference / f"{BMPC_MS5}.pt"))
    assert info.returncode == 0
    for text in ("bmpc", "3,192,625", "2 x V(z)", "[-3, 1]", "current"):
        assert text in info.stdout


ALL_PLANNERS = ["policy", "mppi", "cem", "smc", "grad_mpc", "policy_grad_mpc", "dream_mpc", "cem_gd"]
# Small budgets keep 100-step episodes quick on CPU; the algorithms are the real ones.
SMALL_BUDGETS = (
    "mppi.num_samples=64 mppi.num_elites=8 mppi.num_pi_trajs=8 cem.candidates=64 cem.elites=8 cem.iterations=2 "
    "cem.horizon=3 grad_mpc.candidates=16 grad_mpc.iterations=2 grad_mpc.horizon=3 cem_gd.horizon=3 "
    "cem_gd.init_samples=64 cem_gd.gd_steps=2 smc.particles=32 smc.horizon=2"
).split()


@pytest.mark.parametrize("checkpoint", [TDMPC2_MS1, BMPC_MS5])
def test_every_planner_completes_a_real_episode(reference, tmp_path, checkpoint):
    out = tmp_path / "results"
    args = smoke_eval(reference / f"{checkpoint}.pt", out, "--episodes", "1")
    for name in ALL_PLANNERS:
        args += ["--planner", name]
    for item in SMALL_BUDGETS:
        args += ["--set", item]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    cells = read_cells(out)
    assert sorted(lines[0]["planner"] for lines in cells.values()) == sorted(ALL_PLANNERS)
    for lines in cells.values():
        header, (episode,) = lines[0], lines[1:]
        assert episode["length"] == 100 and np.isfinite(episode["return"])
        if header["planner"] != "policy":
            assert episode["model_evals_per_step"] > 0
            assert all(p is not None and np.isfinite(p) for p in episode["predicted_returns"])
    dream = next(lines for lines in cells.values() if lines[0]["planner"] == "dream_mpc")
    assert dream[1]["model_evals_per_step"] == 15
