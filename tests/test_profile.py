"""`benchctl profile`: every planner on the reference checkpoints, valid JSON, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import BMPC_MS5, TDMPC2_MS1, run_cli
from tests.test_eval_cli import ALL_PLANNERS, SMALL_BUDGETS


def test_profile_every_planner_on_the_reference_checkpoints(reference, tmp_path):
    args = [
        "profile",
        "--checkpoint",
        str(reference / f"{TDMPC2_MS1}.pt"),
        "--checkpoint",
        str(reference / f"{BMPC_MS5}.pt"),
        "--calls",
        "3",
        "--warmup",
        "1",
        "--sweep",
        "horizon=1,3",
        "--out",
        str(tmp_path),
    ]
    for item in SMALL_BUDGETS:
        args += ["--set", item]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "profile.json").read_text())
    assert result["device"] == "cpu" and "threads" in result["machine"] and result["warmup"] == 1
    assert {(r["agent"].split(" ")[0], r["planner"]) for r in result["rows"]} == {
        (f"{name}.pt", p) for name in (TDMPC2_MS1, BMPC_MS5) for p in ALL_PLANNERS
    }
    for row in result["rows"]:
        assert row["calls"] == 3 and 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["mean_ms"] > 0 and row["std_ms"] >= 0 and row["peak_memory_mb"] >= 0
    dream = next(r for r in result["rows"] if r["planner"] == "dream_mpc")
    assert dream["model_evals_per_step"] == 15
    horizons = {(r["planner"], r["value"]) for r in result["sweeps"]["horizon"]}
    assert ("mppi", 1) in horizons and ("dream_mpc", 3) in horizons and not any(p == "policy" for p, _ in horizons)
    assert (tmp_path / "latency.png").stat().st_size > 0 and (tmp_path / "scaling.pdf").stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize(
    "args,needle",
    [
        (["--gpu"], "no CUDA device"),
        (["--compile", "cudagraph"], "add --gpu"),
        (["--sweep", "width=3"], "--sweep width=3"),
        (["--size", "7"], "--size 7"),
    ],
)
def test_profile_errors_are_one_line(args, needle):
    proc = run_cli("profile", "--planner", "policy", "--calls", "3", *args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr


def test_a_compiled_model_keeps_its_graphs_while_its_work_counts_grow():
    """`benchctl profile --compile` compiles the model's entry points; the running counts they keep
    (latent steps, policy and value-head rows) must not become guards, or every call would recompile
    until torch gives up and runs eagerly. error_on_recompile turns any recompilation into an error."""
    from benchctl.analysis.latency import _compiled
    from benchctl.train.tdmpc2 import new_model

    torch._dynamo.reset()
    model = _compiled(new_model(5, 2, dims=(32, 32, 16)).requires_grad_(False).eval(), "compile")
    z, a = torch.randn(4, 16), torch.rand(4, 2) * 2 - 1
    with torch._dynamo.config.patch(error_on_recompile=True), torch.inference_mode():
        for _ in range(3):
            model.step(z, a)
            model.policy(z, eps=torch.zeros(4, 2))
            model.value(z, a)
    assert model.model_evals == 12
    assert model.work["policy"] == 12 and model.work["value_heads"] == 3 * model.num_value_heads * 4
    torch._dynamo.reset()
