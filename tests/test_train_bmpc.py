"""BMPC training: V-head model losses, imitation of the planner, lazy reanalyze written back to the
replay buffer, and checkpoints in the official BMPC layout."""

from __future__ import annotations

import numpy as np
import torch

from benchctl.agents import load_checkpoint_with_info
from benchctl.suites import load_suite
from benchctl.train.bmpc import BMPCLearner, new_bmpc_model
from benchctl.train.trainer import Trainer, TrainRequest
from tests.test_train import assert_official_layout, random_episodes

BMPC_MS5 = "bmpc-ms5-cartpole-swingup"


def test_bmpc_updates_lower_the_losses_and_write_the_official_layout(reference, tmp_path):
    task = load_suite("smoke").task("cartpole-swingup")
    buffer = random_episodes(task, 4)
    model = new_bmpc_model(5, 1, size=None, dims=(64, 64, 32))
    learner = BMPCLearner(model, task.discount)
    g = torch.Generator().manual_seed(0)
    expert = torch.tensor([0.5, 0.2]).expand(3, 64, 2)  # one fixed target: N(0.5, 0.2) everywhere
    infos = []
    for _ in range(300):
        obs, action, reward = buffer.sample(64, 3, g)
        infos.append(learner.update(obs, action, reward, generator=g, expert=expert))
    first, last = infos[:20], infos[-20:]
    for key in ("consistency_loss", "reward_loss", "value_loss", "kl"):
        assert np.mean([i[key] for i in last]) < 0.5 * np.mean([i[key] for i in first]), key
    with torch.no_grad():
        _, mean, log_std = model.policy(model.encode(torch.from_numpy(buffer.episodes[0]["obs"][:32])))
    assert abs(float(mean.mean()) - 0.5) < 0.1 and abs(float(log_std.exp().mean()) - 0.2) < 0.1

    official = torch.load(reference / f"{BMPC_MS5}.pt", weights_only=True)["model"]
    ours = BMPCLearner(new_bmpc_model(5, 1, size=5), task.discount).official_state_dict()
    assert_official_layout(ours, official)
    path = tmp_path / "bmpc.pt"
    torch.save({"model": learner.official_state_dict()}, path)
    loaded, info = load_checkpoint_with_info(path)
    assert (info.family, info.dims.latent_dim, info.dims.num_value_heads) == ("bmpc", 32, 2)
    with torch.no_grad():
        z = loaded.encode(torch.from_numpy(buffer.episodes[0]["obs"][:8]))
        torch.testing.assert_close(loaded.value(z), model.value(z))


def test_initial_values_ignore_the_state_and_v_heads_keep_default_init():
    model = new_bmpc_model(5, 1, size=None, dims=(32, 32, 16))
    with torch.no_grad():
        z = model.encode(torch.randn(4, 5))
        assert torch.equal(model.reward(z, torch.zeros(4, 1)), torch.zeros(4, 1))
        values = model.value(z)  # last V weight zero, its bias keeps the default init: one constant per head
        assert torch.equal(values, values[:, :1].expand(-1, 4, -1))
    first = model._Qs.params[0].weight  # uniform +-1/sqrt(16), far wider than trunc-normal(0.02)
    assert 0.15 < float(first.detach().abs().max()) <= 0.25


def test_reanalyze_writes_fresh_planner_targets_into_the_buffer(tmp_path):
    task = load_suite("smoke").task("cartpole-swingup")
    request = TrainRequest(
        task=task,
        out=tmp_path / "bmpc.pt",
        family="bmpc",
        steps=300,
        size=None,
        dims=(32, 32, 16),
        planner="mppi",
        planner_overrides={"num_samples": "64", "num_elites": "8", "num_pi_trajs": "8"},
        seed_steps=200,
        eval_every=100_000,
        eval_episodes=1,
        batch_size=32,
    )
    trainer = Trainer(request)

    class Quiet:
        def start(self, total, done): ...
        def progress(self, step, info): ...
        def note(self, message): ...
        def evaluation(self, step, returns): ...

    returns = trainer.run(Quiet())
    assert set(returns) == {"policy", "mppi"}
    # seeding steps hold no target (NaN); planned steps hold (elite action, std) with std in MPPI's clamp
    experts = np.concatenate([e["extra.expert"] for e in trainer.buffer.episodes])
    assert experts.shape == (300, 2)
    seeded, planned = experts[:200], experts[200:]
    assert np.isnan(seeded[: 200 - 1]).sum() > 0
    assert np.isfinite(planned).all()
    assert (np.abs(planned[:, 0]) <= 1).all() and ((planned[:, 1] >= 0.05) & (planned[:, 1] <= 2.0)).all()
    assert trainer.policy_updates == 100  # no policy update during the 200 pretraining updates
    # lazy reanalyze replaced NaN targets of seeding steps: 10 reanalyses x 20 windows x 3 steps
    assert np.isfinite(seeded).all(axis=1).sum() > 0
    batch = trainer.buffer.sample_batch(20, 3, torch.Generator().manual_seed(0))
    fresh = trainer.learner.reanalyze(batch.obs[:-1], torch.Generator().manual_seed(1))
    assert fresh.shape == (3, 20, 2) and torch.isfinite(fresh).all()
    trainer.buffer.write("expert", batch.where, fresh)
    again = trainer.buffer.episodes[batch.where[0, 0]]["extra.expert"][batch.where[0, 1] : batch.where[0, 1] + 3]
    np.testing.assert_array_equal(again, fresh[:, 0].numpy())
    loaded, info = load_checkpoint_with_info(request.out)
    assert info.family == "bmpc"
