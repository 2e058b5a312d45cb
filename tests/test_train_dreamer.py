"""Dreamer training (dreamer-pytorch's algorithm): updates that learn, checkpoints in dreamer-pytorch's
format that every benchctl command reads, and a run that resumes, with or without its buffer."""

from __future__ import annotations

import json
import math

import torch

from benchctl.agents.dreamer import OPTIMIZERS, PARTS, DreamerDims, DreamerModel, load_dreamer
from benchctl.suites import load_suite
from benchctl.train.dreamer import DreamerLearner, DreamerTrainConfig, DreamerTrainer, DreamerTrainRequest
from tests.conftest import run_cli

SMALL = "64,16,64,64"  # belief, state, hidden, embedding: Tab. 16's shape of network, CPU-test sized
UPDATES = 25  # updates per collected episode (Tab. 16: 100): what is tested is the cadence, not the learning


def train_args(out, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--family", "dreamer", "--task", "cartpole-swingup", "--suite", "smoke", "--dims", SMALL,
        "--steps", str(steps), "--batch-size", "8", "--eval-every", "100000", "--eval-episodes", "1",
        "--save-every", "500", "--collect-interval", str(UPDATES), "--out", str(out), "--threads", "1", *extra,
    ]  # fmt: skip


def test_updates_fit_the_world_model_actor_and_critic(tmp_path):
    """On one fixed batch of real cartpole chunks, 30 updates lower the model's loss; the actor's and
    critic's parameters move, the model's do not move in the actor and critic steps."""
    torch.manual_seed(0)
    net = DreamerModel(DreamerDims(64, 16, 64, 64, 1, (5,)))
    cfg = DreamerTrainConfig(batch_size=8, collect_interval=1, chunk_length=20, imagination_horizon=5)
    learner = DreamerLearner(net, cfg)
    task = load_suite("smoke").tasks["cartpole-swingup"]
    trainer = DreamerTrainer(DreamerTrainRequest(task=task, out=tmp_path / "agent.pt", sizes=(64, 16, 64, 64)))
    for _ in range(2):
        trainer.collect(random=True)
    gen = torch.Generator().manual_seed(1)
    batch = trainer.buffer.sample_batch(8, cfg.chunk_length - 1, gen)
    actor_before = [p.clone() for p in net.actor_model.parameters()]
    losses = [learner.update(batch.obs, batch.actions, batch.rewards[..., 0], gen) for _ in range(30)]
    model_loss = [loss["observation_loss"] + loss["reward_loss"] for loss in losses]
    assert model_loss[-1] < 0.5 * model_loss[0], model_loss
    assert all(loss["kl_loss"] >= cfg.free_nats - 1e-6 for loss in losses)  # free nats clip from below
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, net.actor_model.parameters(), strict=True))
    # the model's optimizer holds dreamer-pytorch's parameter order: transition, decoder, reward, encoder
    first = learner.model_opt.param_groups[0]["params"]
    assert (
        first[0] is net.transition_model.fc_embed_state_action.weight
        and first[-1] is list(net.encoder.parameters())[-1]
    )


def test_train_writes_a_dreamer_pytorch_checkpoint_that_evaluates_and_resumes(tmp_path):
    out = tmp_path / "cartpole-swingup-1.pt"
    first = run_cli(*train_args(out, 800))
    assert first.returncode == 0, first.stderr
    blob = torch.load(out, weights_only=True)
    assert set(PARTS) <= set(blob) and blob["model_optimizer"]["state"]  # Adam moments saved, as main.py does
    model = load_dreamer(out)
    assert (model.dims.belief, model.dims.state, model.dims.hidden, model.dims.embedding) == (64, 16, 64, 64)
    progress = blob["benchctl"]  # the checkpoint is the resume point; dreamer-pytorch ignores this entry
    assert progress["step"] == 800 and progress["updates"] == 3 * UPDATES  # 5 seed episodes, then 3 collected
    resume = out.with_name(out.name + ".resume.pt")
    assert torch.load(resume, weights_only=True)["step"] == 800 and resume.stat().st_size < 10_000
    again = run_cli(*train_args(out, 1000))
    assert again.returncode == 0, again.stderr
    assert "resuming from step 800" in again.stderr
    log = [json.loads(line) for line in (tmp_path / "cartpole-swingup-1.log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if r["type"] == "episode"]
    assert steps == list(range(100, 1001, 100))  # every episode once, across the resume
    assert [r["random"] for r in log if r["type"] == "episode"][:6] == [True] * 5 + [False]
    assert all(r["observation_loss"] > 0 for r in log if r["type"] == "episode" and not r["random"])
    evaluation = run_cli(
        "eval", "--suite", "smoke", "--checkpoint", str(out), "--task", "cartpole-swingup", "-p", "policy",
        "--episodes", "1", "--out", str(tmp_path / "results"),
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr
    assert list((tmp_path / "results").glob("dreamer/smoke/cartpole-swingup/policy*/seed-1.jsonl"))


def test_a_run_continues_from_its_committed_files_collecting_what_their_newest_episodes_lack(tmp_path):
    out = tmp_path / "agent.pt"
    budget = 2.5 * 4 * (101 * 5 + 100 + 100) / 2**20  # MB: 2 of cartpole's 100-step episodes fit
    assert run_cli(*train_args(out, 600, "--recent-buffer-mb", f"{budget:.6f}")).returncode == 0
    out.with_name(out.name + ".buffer.pt").unlink()  # what a fresh clone has: the committed files only,
    blob = torch.load(out, weights_only=True)  # the checkpoint committed without its optimizer states
    torch.save(blob | dict.fromkeys(OPTIMIZERS, {}), out)
    proc = run_cli(*train_args(out, 1300))
    assert proc.returncode == 0, proc.stderr
    log = [json.loads(line) for line in (tmp_path / "agent.log.jsonl").read_text().splitlines()]
    lost = [r for r in log if r["type"] == "buffer_lost"]
    assert len(lost) == 1 and lost[0]["step"] == 600
    assert lost[0]["kept_episodes"] == 2 and lost[0]["refill_episodes"] == 3  # .recent.pt's 2 newest of 6
    restarted = [r for r in log if r["type"] == "optimizers_restarted"]
    assert len(restarted) == 1 and restarted[0]["step"] == 600
    after = [r for r in log if r["type"] == "episode" and r["step"] > 600]
    assert [("observation_loss" in r) for r in after] == [False] * 3 + [True] * 4  # refill by acting, then update
    assert all(math.isfinite(r["observation_loss"]) for r in after[3:])
    assert all(torch.load(out, weights_only=True)[name] for name in OPTIMIZERS)  # fresh optimizers saved again
    assert not any(r["random"] for r in after)  # refilled by the agent, not at random
