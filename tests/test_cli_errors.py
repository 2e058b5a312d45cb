"""Bad input: one line on stderr naming the problem and the fix, exit code 2, never a traceback."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TDMPC2_MS1, TDMPC2_MS5, run_cli


def one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_suite(official_dir):
    one_line_error(run_cli("eval", "--suite", "dcm", "--checkpoints", str(official_dir)), "dcm", "did you mean 'dmc'")


def test_unknown_planner(official_dir):
    one_line_error(
        run_cli("eval", "--suite", "smoke", "--planner", "mppj", "--checkpoints", str(official_dir)),
        "mppj",
        "did you mean 'mppi'",
    )


def test_unknown_task(reference):
    one_line_error(
        run_cli(
            "eval",
            "--suite",
            "smoke",
            "--checkpoint",
            str(reference / f"{TDMPC2_MS1}.pt"),
            "--task",
            "cartpole-swingupp",
        ),
        "cartpole-swingupp",
        "did you mean 'cartpole-swingup'",
    )


def test_unknown_task_in_tasks_list(official_dir):
    one_line_error(
        run_cli("eval", "--suite", "dmc", "--tasks", "acrobot-swing", "--checkpoints", str(official_dir)),
        "acrobot-swing",
        "did you mean 'acrobot-swingup'",
    )


def test_checkpoint_dims_do_not_fit_task(reference):
    one_line_error(
        run_cli(
            "eval",
            "--suite",
            "smoke",
            "--checkpoint",
            str(reference / f"{TDMPC2_MS5}.pt"),
            "--task",
            "cartpole-swingup",
            "--episodes",
            "1",
        ),
        "obs 6 / action 2",
        "cartpole-swingup has obs 5 / action 1",
    )


def test_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    one_line_error(
        run_cli("eval", "--suite", "smoke", "--checkpoint", str(bogus), "--task", "cartpole-swingup"),
        "not a PyTorch checkpoint",
    )
    one_line_error(run_cli("inspect", str(bogus)), "not a PyTorch checkpoint")
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, bogus)
    one_line_error(run_cli("inspect", str(bogus)), "not a TD-MPC2/BMPC world model")


@pytest.mark.parametrize("flag", ["--checkpoint", "--checkpoints"])
def test_missing_path(tmp_path, flag):
    extra = ["--task", "cartpole-swingup"] if flag == "--checkpoint" else []
    one_line_error(run_cli("eval", "--suite", "smoke", flag, str(tmp_path / "nope"), *extra), "nope")


def test_unknown_set_key(official_dir):
    one_line_error(
        run_cli("eval", "--suite", "smoke", "--checkpoints", str(official_dir), "--set", "horizn=5"),
        "horizn",
        "did you mean 'horizon'",
    )


@pytest.mark.parametrize(
    "item,needle",
    [
        ("horizon=abc", "takes a int"),
        ("eval_noise=maybe", "takes a bool"),
        ("horizon", "not key=value"),
        ("num_elites=600", "num_elites must be between 1 and num_samples"),
        ("num_elites=0", "mppi.num_elites must be >= 1, not 0"),
        ("temperature=nan", "mppi.temperature must be a finite number"),
        ("temperature=inf", "mppi.temperature must be a finite number"),
        ("temperature=-0.5", "mppi.temperature must be > 0"),
        ("num_samples=1000000000", "mppi.num_samples must be <= 1,000,000"),
    ],
)
def test_ill_typed_set(official_dir, item, needle):
    args = ["eval", "--suite", "smoke", "--planner", "mppi", "--checkpoints", str(official_dir), "--set", item]
    one_line_error(run_cli(*args), needle)


def test_set_for_a_planner_not_requested(official_dir):
    args = ["eval", "--suite", "smoke", "--planner", "mppi", "--checkpoints", str(official_dir)]
    one_line_error(run_cli(*args, "--set", "cem.horizon=3"), "planner 'cem' is not among --planner mppi")
    one_line_error(run_cli(*args, "--set", "reuse=0.5"), "mppi has no option 'reuse'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_cuda_without_a_gpu(official_dir):
    one_line_error(
        run_cli("eval", "--suite", "smoke", "--checkpoints", str(official_dir), "--device", "cuda"), "no CUDA device"
    )
