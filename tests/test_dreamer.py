"""Dreamer checkpoints written by dreamer-pytorch load (weights only) and reproduce the outputs
that code computes: one RSSM step (prior, posterior on the observation) and every head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchctl.agents.dreamer import load_dreamer, rssm_step
from tests.conftest import run_cli
from tests.test_cli_errors import one_line_error

CASES = [
    ("dreamer-pixels-cheetah-run", (3, 64, 64), 6),
    ("dreamer-state-pendulum", (3,), 1),
]


@pytest.mark.parametrize("name,obs_shape,action_dim", CASES)
def test_dreamer_checkpoint_reproduces_one_rssm_step(reference, name, obs_shape, action_dim):
    model = load_dreamer(reference / f"{name}.pth")
    d = model.dims
    assert (d.belief, d.state, d.hidden, d.embedding) == (200, 30, 200, 1024)
    assert (d.obs_shape, d.action_dim, d.min_std) == (obs_shape, action_dim, 0.1)
    data = dict(np.load(reference / f"{name}.outputs.npz"))
    ours = rssm_step(model, {k: torch.as_tensor(v) for k, v in data.items()})
    assert len(ours) == 12 and set(ours) <= set(data)
    for key, got in ours.items():
        want = data[key]
        assert got.shape == want.shape, key
        scale = max(float(np.abs(want).max()), 1e-3)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5 * scale, err_msg=key)
    # the posterior is not the prior: the observation moved the state estimate
    assert not np.allclose(data["posterior_mean"], data["prior_mean"], atol=1e-3)


def test_inspect_names_the_family_and_sizes_and_verifies(reference, tmp_path):
    name = "dreamer-pixels-cheetah-run"
    proc = run_cli("inspect", str(reference / f"{name}.pth"), "--verify", str(reference / f"{name}.outputs.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "dreamer (dreamer-pytorch RSSM)" in proc.stdout and "belief (GRU) 200, stochastic state 30" in proc.stdout
    assert "all 12 outputs within 0.0001" in proc.stdout
    data = dict(np.load(reference / f"{name}.outputs.npz"))
    data["value"] = data["value"] + 0.5
    np.savez(tmp_path / "broken.npz", **data)
    bad = run_cli("inspect", str(reference / f"{name}.pth"), "--verify", str(tmp_path / "broken.npz"))
    assert bad.returncode == 1 and "value differs by" in bad.stderr


def test_eval_on_a_dreamer_checkpoint_is_one_line(reference):
    one_line_error(
        run_cli(
            "eval", "--suite", "dmc", "--checkpoint", str(reference / "dreamer-state-pendulum.pth"),
            "--task", "acrobot-swingup",
        ),
        "is a Dreamer (dreamer-pytorch) checkpoint",
        "planning on Dreamer agents is not supported yet",
    )  # fmt: skip
