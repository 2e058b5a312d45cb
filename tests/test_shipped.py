"""The shipped agents in checkpoints/: manifest hashes match, every agent loads and fits its task."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tomllib

import numpy as np
import pytest

from benchctl.agents import describe_checkpoint
from benchctl.machine import cpu_name
from benchctl.shipped import FAMILY_PLANNERS, RETURN_PLANNERS
from benchctl.suites import load_suite, make_env
from tests.conftest import REPO, REQUIRE_EXTERNAL, run_cli

CHECKPOINTS = REPO / "checkpoints"


def test_manifest_matches_the_files_and_every_agent_fits_its_task():
    manifest = tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())
    listed = {entry["path"] for entry in manifest["agent"]}
    on_disk = {  # trainings in progress (checkpoints/queue/) and resume files are not shipped agents
        str(p.relative_to(CHECKPOINTS))
        for p in CHECKPOINTS.rglob("*.pt")
        if not p.name.endswith(".resume.pt") and p.relative_to(CHECKPOINTS).parts[0] != "queue"
    }
    assert listed == on_disk and listed
    for entry in manifest["agent"]:
        path = CHECKPOINTS / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
        assert entry.get("measured_on"), f"{entry['path']}: no measured_on (benchctl ship writes it)"
        info = describe_checkpoint(path)
        assert info.family == entry["family"]
        assert set(entry["returns"]) == set(FAMILY_PLANNERS.get(info.family, RETURN_PLANNERS))
        if entry["suite"] == "humanoid" and importlib.util.find_spec("humanoid_bench") is None:
            assert not REQUIRE_EXTERNAL, "CI needs HumanoidBench to check the shipped humanoid agent"
            continue  # a clone without the optional HumanoidBench: the other checks above still ran
        task = load_suite(entry["suite"]).task(entry["task"])
        if task.env == "dmc-pixels":  # frames need OpenGL, which this process keeps off: sizes without rendering
            from benchctl.envs.dmc import DMCEnv

            state = DMCEnv(task.params["domain"], task.params["task"])
            assert (info.dims.obs_shape, info.dims.action_dim) == ((9, 64, 64), state.action_dim)
            continue
        env = make_env(task, family=info.family)
        assert (info.dims.obs_dim, info.dims.action_dim) == (env.obs_dim, env.action_dim)


def test_the_manifest_names_every_planner_a_shipped_agent_acted_with():
    """An agent trained on from another run's save (`train --from`) lists that run in `continued_from`:
    hopper-hop acted with Dream-MPC to 300k, then with MPPI to 400k. For every agent with a training log
    the entry agrees with the log's `from` records, and with its resume file's acting planner and step
    where one is shipped."""
    import torch

    from benchctl.shipped import continued_from
    from benchctl.train.files import RunLog, log_path, resume_path

    entries = {e["path"]: e for e in tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())["agent"]}
    hopper = entries["tdmpc2/dmc/hopper-hop-1.pt"]
    assert (hopper["training_steps"], hopper["acting_planner"]) == (400_000, "mppi")
    assert hopper["continued_from"] == [{"step": 300_000, "acting_planner": "dream_mpc"}]
    logged = [path for path in entries if log_path(CHECKPOINTS / path).is_file()]
    assert len(logged) >= 10
    for path in logged:
        entry, checkpoint = entries[path], CHECKPOINTS / path
        log = RunLog(log_path(checkpoint)).records()
        assert entry.get("continued_from", []) == continued_from(log, entry["training_steps"]), path
        if not resume_path(checkpoint).is_file():  # shipped without optimizer states (the early agents)
            continue
        state = torch.load(resume_path(checkpoint), weights_only=True, map_location="cpu")
        assert json.loads(state["identity"])["planner"] == entry["acting_planner"], path
        assert int(state["step"]) == entry["training_steps"], path


def test_eval_without_checkpoints_runs_the_shipped_agents(tmp_path):
    proc = run_cli("eval", "--suite", "pendulum", "--planner", "policy", "--episodes", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    cells = list(tmp_path.glob("tdmpc2/pendulum/Pendulum-v1/policy@*/seed-1.jsonl"))
    assert len(cells) == 1
    header = json.loads(cells[0].read_text().splitlines()[0])
    assert header["checkpoint"] == str(CHECKPOINTS / "tdmpc2/pendulum/Pendulum-v1-1.pt")
    assert (
        header["checkpoint_sha256"]
        == hashlib.sha256((CHECKPOINTS / "tdmpc2/pendulum/Pendulum-v1-1.pt").read_bytes()).hexdigest()
    )


def test_eval_lists_the_tasks_it_lacks_with_the_command_that_adds_them(tmp_path):
    proc = run_cli("eval", "--suite", "dmc", "--tasks", "dog-run,humanoid-walk", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "benchctl train --task dog-run --suite dmc" in proc.stderr
    assert "benchctl train --task humanoid-walk --suite dmc" in proc.stderr
    # The tasks a CPU cannot train say so, with the official curve's figures (suites/dmc.toml).
    lines = proc.stderr.splitlines()
    for task, figure in (("dog-run", "170 after 1M steps"), ("humanoid-walk", "628 after 1M")):
        after = lines[next(i for i, line in enumerate(lines) if line.strip().startswith(f"{task}:")) + 1]
        assert "needs GPU-scale training" in after and figure in after
    assert "Traceback" not in proc.stderr
    assert "error: no shipped agent for any task of suite 'dmc'" in proc.stderr.strip().splitlines()[-1]


def test_a_shipped_agent_still_scores_what_its_manifest_says(tmp_path):
    """Re-measure the policy of one shipped agent on the manifest's first episodes (same seeds):
    a loader, model or environment regression moves the return."""
    manifest = tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())
    entry = next(e for e in manifest["agent"] if e["path"] == "tdmpc2/demo/cartpole-swingup-1.pt")
    proc = run_cli(
        "eval",
        "--suite",
        "demo",
        "--tasks",
        "cartpole-swingup",
        "--planner",
        "policy",
        "--seeds",
        str(entry["seed"]),
        "--episodes",
        "3",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    (cell,) = tmp_path.glob("tdmpc2/demo/cartpole-swingup/policy@*/seed-1.jsonl")
    returns = [json.loads(line)["return"] for line in cell.read_text().splitlines()[1:]]
    # Its 10 episodes spread by about 1 point around 856: 1% is far beyond noise, far below a defect.
    assert abs(sum(returns) / len(returns) - entry["returns"]["policy"]) < 0.01 * entry["returns"]["policy"]


@pytest.mark.slow
def test_every_shipped_agent_still_scores_what_its_manifest_says(tmp_path):
    """The long form of the test above (slow: every agent, its manifest's 10 episodes, ~1 min on 2
    cores): each shipped agent's policy on the manifest's episode seeds reproduces its entry, to
    round-off where this is the CPU it was measured on (`measured_on`, model and vector instructions;
    entries that name only the instructions are held to the interval below everywhere). Elsewhere
    round-off alone can move an episode (the BMPC catch agent on one AVX2 machine: one of its 10
    episodes 234 with torch's AVX2 kernels, 625 with its plain ones, the other nine equal), so the
    entry need only lie in this run's 95% interval."""
    manifest = tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())
    here = cpu_name()
    off = []
    for entry in manifest["agent"]:
        if entry["suite"] == "humanoid" and importlib.util.find_spec("humanoid_bench") is None:
            assert not REQUIRE_EXTERNAL, "CI needs HumanoidBench to re-measure the shipped humanoid agent"
            continue  # a clone without the optional HumanoidBench
        out = tmp_path / entry["path"].replace("/", "_")
        proc = run_cli(
            "eval", "--suite", entry["suite"], "--checkpoint", str(CHECKPOINTS / entry["path"]),
            "--task", entry["task"], "--planner", "policy", "--seeds", str(entry["seed"]),
            "--episodes", "10", "--out", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        (cell,) = out.rglob("seed-*.jsonl")
        returns = [json.loads(line)["return"] for line in cell.read_text().splitlines()[1:]]
        mean, listed = float(np.mean(returns)), entry["returns"]["policy"]
        allowed = 0.01 * abs(listed) + 0.5  # the manifest rounds to 0.1
        if entry["measured_on"] != here:  # Student's t, 9 degrees of freedom: 2.262
            allowed += 2.262 * float(np.std(returns, ddof=1)) / len(returns) ** 0.5
        if abs(mean - listed) > allowed:
            off.append(f"{entry['path']}: {mean:.1f} on {here}, manifest {listed} on {entry['measured_on']}")
    assert not off, off


def test_eval_summary_keeps_agent_families_apart(tmp_path):
    """ball_in_cup-catch has a shipped TD-MPC2 and a shipped BMPC agent: the summary shows one row per
    family (as reports do), never their returns pooled into one."""
    proc = run_cli(
        "eval", "--suite", "demo", "--tasks", "ball_in_cup-catch", "--planner", "policy", "--seeds", "1",
        "--episodes", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "ball_in_cup-catch" in line]
    assert len(rows) == 2 and any("tdmpc2/policy" in r for r in rows) and any("bmpc/policy" in r for r in rows)
    for family in ("tdmpc2", "bmpc"):
        (cell,) = tmp_path.glob(f"{family}/demo/ball_in_cup-catch/policy@*/seed-1.jsonl")
        episode = json.loads(cell.read_text().splitlines()[1])
        row = next(r for r in rows if f"{family}/policy" in r)
        assert f"{episode['return']:.1f}" in row  # its own return, not a mean over families


def test_shipped_agents_match_tasks_that_observe_as_they_were_trained():
    """A task name is one task in every state suite, another from pixels: `dmc`'s shipped
    acrobot-swingup serves `demo`'s acrobot-swingup but not `dmc-pixels`' (it would be refused there,
    and `benchctl eval --suite dmc-pixels` with no checkpoints stopped at it); whatever a pixel task is
    matched to is a pixel agent."""
    from benchctl.shipped import find_shipped

    demo, pixels = load_suite("demo"), load_suite("dmc-pixels")
    found, _ = find_shipped([demo.task("acrobot-swingup")], [1])
    assert [a.checkpoint.relative_to(CHECKPOINTS).as_posix() for a in found] == ["tdmpc2/dmc/acrobot-swingup-1.pt"]
    found, missing = find_shipped(list(pixels.tasks.values()), [1])
    assert len(found) + len(missing) >= len(pixels.tasks)
    assert "acrobot-swingup" in {t.name for t in missing}
    assert all(describe_checkpoint(a.checkpoint).dims.obs_shape for a in found)


def test_the_manifest_records_training_settings_that_differ_from_the_official_ones():
    """A TD-MPC2/BMPC minibatch other than the official 256 (the shipped pixel agent: 64), BMPC's
    reanalyze schedule and acting-planner overrides go into `training_options`; defaults do not."""
    from benchctl.shipped import training_options

    assert training_options({"family": "tdmpc2", "batch_size": 256, "planner_overrides": {}}) == {}
    assert training_options({"family": "tdmpc2", "batch_size": 64}) == {"batch_size": 64}
    assert training_options({"family": "bmpc", "reanalyze": [10, 5], "planner_overrides": {"horizon": "5"}}) == {
        "planner.horizon": "5",
        "reanalyze_interval": 10,
        "reanalyze_sequences": 5,
    }
    manifest = tomllib.loads((CHECKPOINTS / "manifest.toml").read_text())
    pixel = next(e for e in manifest["agent"] if e["path"] == "tdmpc2/dmc-pixels/cheetah-run-1.pt")
    assert pixel["training_options"] == {"batch_size": 64}


def test_ship_measures_a_trained_agent_and_writes_its_manifest_entry(tmp_path, monkeypatch):
    """`benchctl ship` on a checkpoint `benchctl train` wrote (the checkpoints folder pointed at a
    temporary one): its entry holds the file's hash, the training's steps and planner, each planner's
    mean over the episodes it measured, and the CPU they were measured on."""
    import benchctl.shipped
    from benchctl.cli import main

    root = tmp_path / "checkpoints"
    checkpoint = root / "tdmpc2" / "smoke" / "cartpole-swingup-1.pt"
    trained = run_cli(
        "train", "--task", "cartpole-swingup", "--suite", "smoke", "--dims", "32,32,16", "--steps", "300",
        "--seed-steps", "200", "--eval-episodes", "0", "--planner", "policy", "--out", str(checkpoint),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    monkeypatch.setattr(benchctl.shipped, "SHIPPED_DIR", root)
    results = tmp_path / "results"
    monkeypatch.setattr("sys.argv", ["benchctl", "ship", str(checkpoint), "--episodes", "2", "--out", str(results)])
    main()  # returns on success; bad input would exit 2
    (entry,) = tomllib.loads((root / "manifest.toml").read_text())["agent"]
    assert entry["path"] == "tdmpc2/smoke/cartpole-swingup-1.pt" and entry["task"] == "cartpole-swingup"
    assert entry["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (entry["training_steps"], entry["acting_planner"], entry["seed"]) == (300, "policy", 1)
    assert entry["dims"] == {"enc": 32, "mlp": 32, "latent": 16}
    assert entry["measured_on"] == cpu_name()
    assert set(entry["returns"]) == set(RETURN_PLANNERS)
    for planner in RETURN_PLANNERS:
        (cell,) = results.glob(f"ship-tdmpc2/smoke/cartpole-swingup/{planner}@*/seed-1.jsonl")
        returns = [json.loads(line)["return"] for line in cell.read_text().splitlines()[1:]]
        assert len(returns) == 2 and entry["returns"][planner] == round(float(np.mean(returns)), 1)

    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(checkpoint.read_bytes())
    refused = run_cli("ship", str(outside))
    assert refused.returncode == 2 and "pass a checkpoint file inside" in refused.stderr
