"""Dreamer checkpoints written by dreamer-pytorch load (weights only) and reproduce the outputs
that code computes: one RSSM step (prior, posterior on the observation) and every head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchctl.agents import load_checkpoint
from benchctl.agents.dreamer import DreamerDims, DreamerModel, load_dreamer, rssm_step, save_dreamer
from benchctl.agents.dreamer_world import DreamerWorldModel
from benchctl.planners.rollout import lambda_return, open_loop_return
from tests.conftest import REPO, need, run_cli
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
    assert "all 12 outputs within their tolerance" in proc.stdout
    data = dict(np.load(reference / f"{name}.outputs.npz"))
    data["value"] = data["value"] + 0.5
    np.savez(tmp_path / "broken.npz", **data)
    bad = run_cli("inspect", str(reference / f"{name}.pth"), "--verify", str(tmp_path / "broken.npz"))
    assert bad.returncode == 1 and "value differs by" in bad.stderr


def test_a_dreamer_checkpoint_on_the_wrong_task_is_one_line(reference):
    one_line_error(
        run_cli(
            "eval", "--suite", "dmc", "--checkpoint", str(reference / "dreamer-state-pendulum.pth"),
            "--task", "acrobot-swingup",
        ),
        "takes obs 3 / action 1, but acrobot-swingup has obs 6 / action 1",
    )  # fmt: skip


# -- planning on Dreamer agents ------------------------------------------------------------
@pytest.fixture(scope="module")
def cartpole_dreamer(tmp_path_factory) -> Path:
    """A randomly initialized Dreamer for cartpole-swingup (obs 5, action 1), in dreamer-pytorch's format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dreamer") / "cartpole-swingup-1.pth"
    save_dreamer(DreamerModel(DreamerDims(200, 30, 200, 1024, 1, (5,))), path)
    return path


def test_lambda_return_is_eq_14_and_lambda_1_is_the_discounted_sum():
    """G = (1 - l) sum_{n=1}^{H-1} l^(n-1) V_N^n + l^(H-1) V_N^H (Dream-MPC Eq. 14) from the recursion,
    with Eq. 13's n-step returns over the imagined states s_1..s_H as dreamer-pytorch forms them:
    V_N^n = sum_{h<n} gamma^h R(s_{h+1}) + gamma^n v(s_{n+1}), and v(s_H) again past the horizon."""
    gen = torch.Generator().manual_seed(0)
    H, N, gamma, lam = 6, 4, 0.99, 0.95
    rewards, values = torch.randn(H, N, generator=gen), torch.randn(H, N, generator=gen)

    def n_step(n: int) -> torch.Tensor:  # rewards[h] = R(s_{h+1}), values[h] = v(s_{h+1})
        return sum(gamma**h * rewards[h] for h in range(n)) + gamma**n * values[min(n, H - 1)]

    eq14 = (1 - lam) * sum(lam ** (n - 1) * n_step(n) for n in range(1, H)) + lam ** (H - 1) * n_step(H)
    got = lambda_return(rewards, values, values[-1], gamma, lam)
    torch.testing.assert_close(got, eq14, rtol=1e-5, atol=1e-5)
    plain = lambda_return(rewards, None, values[-1], gamma, 1.0)
    torch.testing.assert_close(plain, n_step(H))
    assert not torch.allclose(got, plain, atol=1e-3)


def test_planners_score_dreamer_plans_with_v_lambda(cartpole_dreamer):
    """open_loop_return with the value is Vλ over the imagined states (one value per reached state)."""
    model = load_checkpoint(cartpole_dreamer)
    assert model.family == "dreamer" and model.latent_dim == 230 and model.return_lambda == 0.95
    gen = torch.Generator().manual_seed(1)
    model.begin_episode(gen)
    z = model.observe(torch.randn(1, 5, generator=gen))
    actions = torch.rand(4, 3, 1, generator=gen) * 2 - 1
    with model.deterministic():  # prior means: the same imagined states twice
        got = open_loop_return(model, z.expand(3, -1), actions, gen, use_value=True, discounted=True)
        zs, rewards, values = z.expand(3, -1), [], []
        for a in actions:
            zs = model.next(zs, a)
            rewards.append(model.net.reward(zs[:, :200], zs[:, 200:]))
            values.append(model.net.value(zs[:, :200], zs[:, 200:]))
    want = lambda_return(torch.stack(rewards), torch.stack(values), values[-1], 0.99, 0.95)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_filtering_conditions_on_the_history_and_replays_from_the_seed(cartpole_dreamer):
    model = load_checkpoint(cartpole_dreamer)
    obs = torch.randn(3, 1, 5, generator=torch.Generator().manual_seed(2))

    def trajectory(seed: int, action: float) -> list[torch.Tensor]:
        model.begin_episode(torch.Generator().manual_seed(seed))
        out = []
        for o in obs:
            out.append(model.observe(o))
            model.executed(torch.tensor([action]))
        return out

    first, again = trajectory(0, 0.5), trajectory(0, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # all draws from the generator
    other_action = trajectory(0, -0.5)
    assert torch.equal(first[0], other_action[0])  # the first step has no executed action yet
    assert not torch.allclose(first[1][:, :200], other_action[1][:, :200])  # the belief remembers the action
    # step one from a blank history: the belief is the GRU of zeros, the state a posterior sample
    net = model.net
    belief = net.belief_step(torch.zeros(1, 200), torch.zeros(1, 30), torch.zeros(1, 1))
    mean, std = net.posterior(belief, net.embed(obs[0]))
    noise = torch.randn(1, 30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first[0], torch.cat([belief, mean + std * noise], dim=-1))


def test_the_evaluation_action_is_the_most_likely_of_100_actor_samples(cartpole_dreamer):
    """dreamer-pytorch's SampleDist.mode: TransformedDistribution(Normal, TanhBijector) whose inverse
    clamps to +-0.99999997 before atanh; the sample with the largest log_prob per batch row."""
    from torch.distributions import Independent, Normal, Transform, TransformedDistribution, constraints

    class ClampedTanh(Transform):  # TanhBijector's rules (dreamer-pytorch models.py)
        domain, codomain, bijective, sign = constraints.real, constraints.interval(-1.0, 1.0), True, 1

        def _call(self, x):
            return torch.tanh(x)

        def _inverse(self, y):
            y = torch.where(y.abs() <= 1.0, y.clamp(-0.99999997, 0.99999997), y)
            return 0.5 * torch.log((1 + y) / (1 - y))

        def log_abs_det_jacobian(self, x, y):
            return 2.0 * (np.log(2) - x - torch.nn.functional.softplus(-2.0 * x))

    model = load_checkpoint(cartpole_dreamer)
    z = torch.randn(2, 230, generator=torch.Generator().manual_seed(3))
    action = model.act(z, torch.Generator().manual_seed(4))
    mu, std = model.net.actor(z[:, :200], z[:, 200:])
    noise = torch.randn((100, 2, 1), generator=torch.Generator().manual_seed(4))
    samples = torch.tanh(mu + std * noise)  # (100, 2, 1)
    density = Independent(TransformedDistribution(Normal(mu, std), [ClampedTanh()]), 1)
    log_prob = density.log_prob(samples)  # (100, 2)
    want = samples[log_prob.argmax(0), torch.arange(2)]
    torch.testing.assert_close(action, want)


PLANNERS = {  # small budgets; the Dreamer defaults (Tab. 16) otherwise
    "policy": [],
    "dream_mpc": [],
    "grad_mpc": ["grad_mpc.candidates=20", "grad_mpc.iterations=2"],
    "policy_grad_mpc": [],
    "cem": ["cem.candidates=20", "cem.elites=4", "cem.iterations=2"],
}


def test_real_episodes_with_every_planner_on_a_dreamer_agent(cartpole_dreamer, tmp_path):
    args = ["eval", "--suite", "smoke", "--checkpoint", str(cartpole_dreamer), "--task", "cartpole-swingup"]
    for name in PLANNERS:
        args += ["--planner", name]
    for item in (s for sets in PLANNERS.values() for s in sets):
        args += ["--set", item]
    args += ["--set", "dream_mpc.horizon=5", "--episodes", "2", "--out", str(tmp_path), "--threads", "1"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    cells = {}
    for path in tmp_path.glob("dreamer/smoke/cartpole-swingup/*/seed-1.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        cells[lines[0]["planner"]] = lines
    assert set(cells) == set(PLANNERS)
    for name, (header, *episodes) in cells.items():
        assert header["family"] == "dreamer" and header["discount"] == 0.99 and header["augment"] is None
        assert len(episodes) == 2 and all(e["length"] == 100 and "failed" not in e for e in episodes), name
        assert episodes[0]["return"] != episodes[1]["return"], name  # two seeds, two episodes
    dream = cells["dream_mpc"][0]["planner_config"]
    # Tab. 16 where nothing was set; --set wins where it was
    assert dream | {"horizon": 15} == dream | DreamerWorldModel.planner_defaults["dream_mpc"]
    assert dream["horizon"] == 5 and dream["lambda_unc"] == 0.0 and dream["proposal_noise"] == 0.2
    assert cells["dream_mpc"][1]["model_evals_per_step"] == 5 * 1 * 5
    assert cells["policy_grad_mpc"][0]["planner_config"] == {"horizon": 1, "iterations": 10, "lr": 0.05}
    assert cells["grad_mpc"][0]["planner_config"]["horizon"] == 12
    # the same command again: the Dreamer defaults lead to the same cells, every episode is on disk, none reruns
    before = {p: p.read_text() for p in tmp_path.rglob("*.jsonl")}
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert {p: p.read_text() for p in tmp_path.rglob("*.jsonl")} == before
    # a TD-MPC2 agent beside it: the report labels each method with its family, no special case
    shipped = REPO / "checkpoints/tdmpc2/demo/cartpole-swingup-1.pt"
    tdmpc2 = run_cli(*args[:4], str(shipped), *args[5:7], "-p", "policy", "--episodes", "2", "--out", str(tmp_path))
    assert tdmpc2.returncode == 0, tdmpc2.stderr
    report = run_cli("report", str(tmp_path), "--out", str(tmp_path / "report"), "--reps", "100", "--format", "csv")
    assert report.returncode == 0, report.stderr
    methods = set(pd.read_csv(tmp_path / "report" / "aggregates.csv")["method"])
    assert {"tdmpc2/policy", "dreamer/policy", "dreamer/dream_mpc"} <= methods


RENDER_CHECK = """
import json
import numpy as np
import pandas as pd
from benchctl.envs.dmc_pixels import PixelDMCEnv, resize_bilinear
env = PixelDMCEnv("cheetah", "run", episode_length=10, protocol="dreamer")
obs = env.reset(seed=5)
env.step(np.full(env.action_dim, 0.5))
obs = env.step(np.full(env.action_dim, 0.5)).obs
full = env._physics.render(camera_id=0)
checks = {"shape": list(obs.shape), "dtype": str(obs.dtype), "full": list(full.shape),
          "resized": bool(np.array_equal(obs, resize_bilinear(full, 64).transpose(2, 0, 1)))}
try:
    import cv2
    theirs = cv2.resize(full, (64, 64), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    checks["cv2_max_diff"] = int(np.abs(obs.astype(int) - theirs.astype(int)).max())
except ImportError:
    pass
print(json.dumps(checks))
"""


def test_dreamer_pixels_render_one_resized_frame():
    """dreamer-pytorch's observation: physics.render(camera_id=0) at 240x320, resized to 64x64 (in a
    child process: this one imported dm_control headless)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run([sys.executable, "-c", RENDER_CHECK], env=env, capture_output=True, text=True, timeout=300)
    need(proc.returncode == 0 or "OpenGL" not in proc.stderr, f"offscreen OpenGL: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(proc.stdout.strip().splitlines()[-1])
    assert checks["shape"] == [3, 64, 64] and checks["dtype"] == "uint8" and checks["full"] == [240, 320, 3]
    assert checks["resized"]
    if "cv2_max_diff" in checks:  # opencv comes with the humanoid extra (CI): cv2 itself rounds in fixed point
        assert checks["cv2_max_diff"] <= 1


def test_profile_compares_the_tab_15_planners_on_a_dreamer_agent(cartpole_dreamer, tmp_path):
    """Dream-MPC Tab. 15's rows (PlaNet CEM, Grad-MPC, hybrid Grad-MPC, Dream-MPC) with Tab. 16's
    settings: the model evaluations per step are the paper's 120,000 / 120,000 / 10 / 75."""
    proc = run_cli(
        "profile", "--checkpoint", str(cartpole_dreamer), "-p", "cem", "-p", "grad_mpc", "-p", "policy_grad_mpc",
        "-p", "dream_mpc", "--calls", "3", "--warmup", "1", "--threads", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(3 steps after 1 untimed)" in proc.stdout
    result = json.loads((tmp_path / "profile.json").read_text())
    assert result["calls"] == 3 and result["warmup"] == 1
    rows = {r["planner"]: r for r in result["rows"]}
    assert {name: r["model_evals_per_step"] for name, r in rows.items()} == {
        "cem": 120_000, "grad_mpc": 120_000, "policy_grad_mpc": 10, "dream_mpc": 75,
    }  # fmt: skip
    assert all(r["family"] == "dreamer" and r["p50_ms"] > 0 for r in rows.values())
