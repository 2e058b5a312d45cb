"""Engines: the same cells and records whether cells run in this process, in a local pool, on Ray or
as a submitit job array, and fault tolerance proven by killing workers."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchctl.store import read_cell
from tests.conftest import need, run_cli
from tests.twelve_cells import CELLS, REFERENCE_EPISODES, SHIPPED, eval_args, records


def children(pid: int, marker: str) -> list[int]:
    """Live descendants of `pid` whose command line contains `marker`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                frontier.append(child)
                try:
                    if marker in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                        found.append(child)
                except OSError:
                    continue
    return found


def everywhere(marker: str) -> list[int]:
    """Live processes anywhere on the machine whose command line contains `marker` (Ray's workers are
    the raylet's children, not the driver's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_workers(args: list[str], marker: str, kills: int, rng: random.Random, anywhere: bool = False) -> int:
    """Run `benchctl ARGS` and SIGKILL a random worker (a descendant, or with `anywhere` any process,
    whose command line holds `marker`) at random moments until `kills` are done or the run ends.
    Returns the kills done."""
    done = 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchctl", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    while proc.poll() is None and done < kills:
        time.sleep(rng.uniform(0.2, 1.5))
        workers = everywhere(marker) if anywhere else children(proc.pid, marker)
        if workers:
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
                done += 1
            except ProcessLookupError:
                pass
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode in (0, 1), stderr[-2000:]  # 1: cells failed twice, left for the rerun
    return done


def survive_kills(tmp_path: Path, reference: Path, extra: list[str], marker: str, anywhere: bool = False) -> None:
    """20 SIGKILLs of workers at random moments; every run after a kill resumes. The records then equal
    those of an uninterrupted run in one process (`reference`: the same 12 cells, episodes and
    returns): none lost, none twice, no torn line."""
    rng, out, total, episodes = random.Random(0), tmp_path / "killed", 0, 3
    while True:
        total += kill_workers(eval_args(out, episodes, *extra), marker, 20 - total, rng, anywhere)
        if total >= 20:
            break
        episodes += 2  # the run finished before enough kills: give the next one more work (the same cells)
    finish = run_cli(*eval_args(out, episodes, *extra))
    assert finish.returncode == 0, finish.stderr
    if episodes > REFERENCE_EPISODES:  # more than the shared run holds: an uninterrupted run of its own
        reference = tmp_path / "reference"
        assert run_cli(*eval_args(reference, episodes)).returncode == 0
    assert records(out) == records(reference, episodes) and len(records(out)) == CELLS * episodes


def test_twenty_sigkills_of_local_workers_lose_and_duplicate_nothing(tmp_path, twelve_cells):
    survive_kills(tmp_path, twelve_cells, ["--jobs", "2"], "multiprocessing.spawn")


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray cluster on 127.0.0.1 (2 CPUs), started for these tests and stopped after."""
    need(importlib.util.find_spec("ray") is not None, 'Ray (an optional extra: pip install -e ".[ray]")')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    start = subprocess.run(
        [*ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([*ray, "stop", "--force"], capture_output=True, timeout=300)


def test_twenty_sigkills_of_ray_workers_lose_and_duplicate_nothing(tmp_path, ray_cluster, twelve_cells):
    """The same on a local Ray cluster: Ray workers (`ray::_ray_cell`) stream records to the driver."""
    extra = ["--executor", "ray", "--address", ray_cluster]
    survive_kills(tmp_path, twelve_cells, extra, "ray::_ray_cell", anywhere=True)


def test_submitit_runs_the_cells_as_a_job_array(tmp_path, twelve_cells):
    """`--executor slurm` through submitit: without Slurm here, its local executor runs the same array
    (one task per agent, its cells in a row); the records equal a run in one process."""
    need(importlib.util.find_spec("submitit") is not None, 'submitit (an optional extra: pip install -e ".[slurm]")')
    out = tmp_path / "slurm"
    proc = run_cli(*eval_args(out, 2, "--executor", "slurm", "--time", "20"))
    assert proc.returncode == 0, proc.stderr
    assert records(out) == records(twelve_cells, 2) and len(records(out)) == 2 * CELLS
    assert len(list((out / ".submitit").glob("*_0_log.out"))) == 2  # two array tasks: one per agent


def test_a_worker_error_is_reported_retried_once_and_left_for_a_rerun(tmp_path):
    """A cell whose worker fails (here: its agent file is not a checkpoint) is reported with the
    worker's one-line reason, run once more, then given up; the other cell finishes."""
    from benchctl.engines import CellJob, LocalEngine
    from benchctl.planners.base import config_dict, resolve_config
    from benchctl.suites import load_suite

    task = load_suite("smoke").tasks["cartpole-swingup"]
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")

    def job(checkpoint: Path, name: str) -> CellJob:
        header = {"type": "header", "suite": "smoke", "task": task.name, "planner": "policy", "planner_config": {}}
        return CellJob(
            str(checkpoint), task, 1, "policy", config_dict(resolve_config("policy", {})),
            str(tmp_path / name / "seed-1.jsonl"), header, (0, 1), threads=1, label=name,
        )  # fmt: skip

    good, bad = job(SHIPPED / "cartpole-swingup-1.pt", "good"), job(tmp_path / "broken.pt", "bad")
    seen: list[tuple[str, int]] = []
    failures: list[tuple[str, str, bool]] = []
    LocalEngine(2, poll_seconds=0.1).run(
        [good, bad],
        lambda j, r: seen.append((j.label, r["episode"])),
        lambda j, why, again: failures.append((j.label, why, again)),
    )
    assert sorted(seen) == [("good", 0), ("good", 1)]
    assert [(label, again) for label, _, again in failures] == [("bad", True), ("bad", False)]
    assert all("BenchctlError" in why and "not a PyTorch checkpoint" in why for _, why, _ in failures)


def test_bfloat16_runs_products_in_bfloat16_and_the_rest_in_float32():
    """Under `--dtype bfloat16` only the matrix products drop to bfloat16: autocast alone would leave
    LayerNorm, Mish and the two-hot decoding in bfloat16 too (CPUs run Mish at half speed there, and a
    bfloat16 reward has 3 significant digits). Checked on a shipped agent's real model: weights bf16,
    normalization gains float32, hidden activations and decoded rewards/values float32 and equal to the
    float32 model's to bfloat16 product accuracy, and the decoding itself exact."""
    import copy

    import torch

    from benchctl.agents import load_checkpoint
    from benchctl.agents.layers import NormedLinear
    from benchctl.evaluate import lower_precision, precision

    model = load_checkpoint(SHIPPED / "cartpole-swingup-1.pt")
    low = lower_precision(copy.deepcopy(model), "bfloat16")
    dtypes = {name: p.dtype for name, p in low.named_parameters()}
    assert dtypes["_dynamics.0.weight"] == torch.bfloat16 and dtypes["_Qs.params.0.weight"] == torch.bfloat16
    assert dtypes["_dynamics.0.ln.weight"] == torch.float32 and dtypes["_Qs.params.0.ln.weight"] == torch.float32
    g = torch.Generator().manual_seed(0)
    z = model.encode(torch.randn(64, model.dims.obs_dim, generator=g))
    a = torch.rand(64, model.dims.action_dim, generator=g) * 2 - 1
    za = torch.cat([z, a], -1)
    hidden = []
    hook = lambda module, inputs, output: hidden.append(output)  # noqa: E731
    for module in low.modules():
        if isinstance(module, NormedLinear):
            module.register_forward_hook(hook)
    with torch.no_grad(), precision(torch.device("cpu"), "bfloat16"):
        logits = low._reward(za)
        reward = low.decode(logits)
        _, step_reward = low.step(z, a)
        values = low.value(z, a)
    with torch.no_grad():
        exact = model.decode(logits.float())  # float32 decoding of the same logits, outside autocast
        reference, reference_values = model.reward(z, a), model.value(z, a)
    assert logits.dtype == torch.bfloat16  # the last product stays in bfloat16 ...
    assert hidden and all(h.dtype == torch.float32 for h in hidden)  # ... every LayerNorm + Mish is float32
    assert reward.dtype == step_reward.dtype == values.dtype == torch.float32
    torch.testing.assert_close(reward, exact, rtol=1e-6, atol=1e-6)  # decoding adds no bfloat16 rounding
    scale = reference.abs().max().item() + 1.0
    assert (reward - reference).abs().max().item() < 0.05 * scale
    assert (values - reference_values).abs().max().item() < 0.05 * (reference_values.abs().max().item() + 1.0)


def test_bfloat16_planning_keeps_the_returns_within_float32s_interval(tmp_path):
    """`--dtype bfloat16` (matrix products in bfloat16 under autocast) on the shipped agents: recorded in
    every header, its own run folder, and each planner's mean return within the 95% interval of the
    float32 episodes' mean (the same episode seeds)."""
    args = ["eval", "--suite", "smoke", "--checkpoints", str(SHIPPED), "-p", "policy", "-p", "dream_mpc",
            "--episodes", "10", "--out", str(tmp_path), "--threads", "1"]  # fmt: skip
    assert run_cli(*args).returncode == 0
    low = run_cli(*args, "--dtype", "bfloat16")
    assert low.returncode == 0, low.stderr
    for planner in ("policy", "dream_mpc"):
        for task in ("cartpole-swingup", "reacher-easy"):
            cells = {}
            for run in ("tdmpc2", "tdmpc2-bfloat16"):
                (path,) = (tmp_path / run / "smoke" / task).glob(f"{planner}@*/seed-1.jsonl")
                header, episodes, _, _ = read_cell(path)
                assert header is not None and header["dtype"] == ("float32" if run == "tdmpc2" else "bfloat16")
                cells[run] = np.array([e["return"] for e in episodes])
            full, low_returns = cells["tdmpc2"], cells["tdmpc2-bfloat16"]
            half_width = 1.96 * full.std(ddof=1) / np.sqrt(len(full)) + 1.0  # + 1: a point is its own interval
            assert abs(low_returns.mean() - full.mean()) <= half_width, (planner, task, full, low_returns)
