"""benchctl train: a TD-MPC2 agent learns on real dm_control data, saves official-format
checkpoints, and resumes after SIGKILL from its last save."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from benchctl.agents import load_checkpoint_with_info
from benchctl.evaluate import episode_seed, run_episode
from benchctl.planners.base import make_planner, resolve_config
from benchctl.suites import load_suite, make_env
from benchctl.train.buffer import ReplayBuffer
from benchctl.train.queue import load_queue
from benchctl.train.tdmpc2 import TDMPC2Learner, TrainConfig, new_model, soft_ce
from benchctl.train.trainer import Trainer, TrainRequest
from tests.conftest import REPO, TDMPC2_MS1, run_cli
from tests.test_cli_errors import one_line_error


def random_episodes(task, episodes: int, seed: int = 0) -> ReplayBuffer:
    env = make_env(task)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer()
    for e in range(episodes):
        obs = [env.reset(seed + e)]
        actions, rewards = [], []
        while True:
            action = rng.uniform(-1, 1, env.action_dim)
            result = env.step(action)
            obs.append(result.obs)
            actions.append(action)
            rewards.append(result.reward)
            if result.done:
                break
        buffer.add(np.stack(obs), np.stack(actions), np.array(rewards))
    return buffer


def assert_official_layout(ours: dict, official: dict) -> None:
    """Same keys in the same order, same types, tensor shapes and dtypes; scalar tensors (log-std
    bounds) and non-tensor entries equal."""
    assert list(ours) == list(official)
    for key, value in official.items():
        mine = ours[key]
        assert type(mine) is type(value), key
        if isinstance(value, torch.Tensor):
            assert (mine.shape, mine.dtype) == (value.shape, value.dtype), key
            if value.dim() == 0:
                assert mine == value, key
        else:
            assert mine == value, key


def test_updates_lower_the_model_losses_and_write_the_official_layout(reference, tmp_path):
    task = load_suite("smoke").task("cartpole-swingup")
    buffer = random_episodes(task, 4)
    model = new_model(5, 1, size=None, dims=(64, 64, 32))
    learner = TDMPC2Learner(model, task.discount)
    g = torch.Generator().manual_seed(0)
    infos = [learner.update(*buffer.sample(64, 3, g), generator=g) for _ in range(300)]
    first, last = infos[:20], infos[-20:]
    for key in ("consistency_loss", "reward_loss", "value_loss"):
        assert np.mean([i[key] for i in last]) < 0.5 * np.mean([i[key] for i in first]), key
    # the checkpoint layout equals the official one, key for key (size-1 agent on cartpole)
    official = torch.load(reference / f"{TDMPC2_MS1}.pt", weights_only=True)["model"]
    ours = TDMPC2Learner(new_model(5, 1, size=1), task.discount).official_state_dict()
    assert_official_layout(ours, official)
    path = tmp_path / "agent.pt"
    torch.save({"model": learner.official_state_dict()}, path)
    loaded, info = load_checkpoint_with_info(path)
    assert (info.family, info.layout, info.dims.latent_dim) == ("tdmpc2", "current", 32)
    with torch.no_grad():
        obs = torch.from_numpy(buffer.episodes[0]["obs"][:8])
        torch.testing.assert_close(loaded.encode(obs), model.encode(obs))
        torch.testing.assert_close(
            loaded.value(loaded.encode(obs), torch.zeros(8, 1)), model.value(model.encode(obs), torch.zeros(8, 1))
        )


def test_initial_reward_and_values_decode_to_zero():
    model = new_model(5, 1, size=None, dims=(32, 32, 16))
    with torch.no_grad():
        z = model.encode(torch.randn(4, 5))
        assert torch.equal(model.reward(z, torch.zeros(4, 1)), torch.zeros(4, 1))
        assert torch.equal(model.value(z, torch.zeros(4, 1)), torch.zeros(5, 4, 1))


def test_soft_ce_is_the_cross_entropy_against_the_dense_two_hot_target():
    """The gathered two-bin cross-entropy equals -sum(target * log_softmax) with the two-hot target
    built bin by bin (symlog space, 101 bins in [-10, 10]), also beyond the range and broadcast over heads."""
    cfg = TrainConfig()
    bins = torch.linspace(cfg.vmin, cfg.vmax, 101)
    x = torch.tensor([0.0, 0.37, -2.5, 55.0, -1e6, 1e9]).reshape(1, 6, 1)
    logits = torch.randn(5, 6, 101, generator=torch.Generator().manual_seed(0))
    sx = torch.clamp(torch.sign(x) * torch.log1p(x.abs()), cfg.vmin, cfg.vmax).flatten()
    target = torch.zeros(6, 101)
    for i, v in enumerate(sx):
        j = int(torch.searchsorted(bins, v, right=True)) - 1
        w = float((v - bins[j]) / (bins[1] - bins[0]))
        target[i, j] += 1 - w
        if w > 0:
            target[i, j + 1] += w
    dense = -(target * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(soft_ce(logits, x, cfg), dense, atol=1e-5, rtol=1e-5)


def tiny_request(out, steps: int, **extra) -> TrainRequest:
    """A 32/32/16 agent on the smoke suite's cartpole-swingup (100-step episodes), saved every 200 steps;
    the same run as the CLI arguments of the SIGKILL test."""
    defaults: dict = {
        "seed": 1,
        "size": None,
        "dims": (32, 32, 16),
        "planner": "policy",
        "seed_steps": 200,
        "save_every": 200,
        "eval_every": 100_000,
        "eval_episodes": 1,
    }
    return TrainRequest(task=load_suite("smoke").task("cartpole-swingup"), out=out, steps=steps, **(defaults | extra))


class Quiet:
    """A training reporter that keeps the notes and shows nothing."""

    def __init__(self):
        self.notes: list[str] = []

    def start(self, total, done): ...
    def progress(self, step, info): ...
    def evaluation(self, step, returns): ...
    def note(self, message):
        self.notes.append(message)


def test_sigkill_resumes_from_the_last_save_with_the_same_buffer(tmp_path):
    out = tmp_path / "agent.pt"
    args = [
        "train",
        "--task",
        "cartpole-swingup",
        "--suite",
        "smoke",
        "--dims",
        "32,32,16",
        "--steps",
        "1000",
        "--seed-steps",
        "200",
        "--save-every",
        "200",
        "--eval-every",
        "100000",
        "--eval-episodes",
        "1",
        "--planner",
        "policy",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchctl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    resume = tmp_path / "agent.pt.resume.pt"
    deadline = time.time() + 900  # generous: a loaded machine trains the first 400 steps slowly
    while time.time() < deadline and proc.poll() is None:
        if resume.exists() and torch.load(resume, weights_only=True)["step"] >= 400:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert resume.exists(), "training wrote no resume file before the deadline"
    saved = torch.load(resume, weights_only=True)
    assert 400 <= saved["step"] < 1000, "killed mid-run after a save"
    trainer = Trainer(tiny_request(out, 1000))
    assert trainer.try_resume()
    assert trainer.step == saved["step"]
    saved_buffer = torch.load(tmp_path / "agent.pt.buffer.pt", weights_only=True)
    assert saved_buffer["step"] == saved["step"]
    saved["buffer"] = saved_buffer["buffer"]
    assert trainer.buffer.size == int(saved["buffer"]["lengths"].sum() + len(saved["buffer"]["lengths"]))
    assert trainer.buffer.size == 101 * (saved["step"] // 100)  # every finished episode kept, none twice
    rerun = subprocess.run([sys.executable, "-m", "benchctl", *args], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from step {saved['step']:,}" in rerun.stderr
    final = torch.load(resume, weights_only=True)
    final_buffer = torch.load(tmp_path / "agent.pt.buffer.pt", weights_only=True)["buffer"]
    assert final["step"] == 1000 and final_buffer["lengths"].tolist() == [100] * 10
    # the episodes run after the last save and lost to the kill were run again: the log counts each once
    log = [json.loads(line) for line in (tmp_path / "agent.log.jsonl").read_text().splitlines()]
    episode_steps = [r["step"] for r in log if r["type"] == "episode"]
    assert episode_steps == sorted(set(episode_steps)) and episode_steps[-1] == 1000
    assert [r["step"] for r in log if r["type"] == "start"] == [0, saved["step"]]
    assert load_checkpoint_with_info(out)[1].family == "tdmpc2"


def test_training_continues_from_the_committed_files_with_their_newest_episodes_or_refilling(tmp_path):
    """What a committed checkpoint gives another machine: weights, optimizer, step and the replay buffer's
    newest episodes (`.recent.pt`, within its MB budget), not the whole buffer. With the newest
    episodes the run updates at once; without them (a budget of 0, pixels over budget) it refills."""
    out = tmp_path / "agent.pt"
    episode_bytes = 4 * (101 * 5 + 100 * 1 + 100)  # cartpole: obs (101, 5), actions (100, 1), rewards (100,)

    def request(steps: int) -> TrainRequest:
        return tiny_request(out, steps, batch_size=32, recent_buffer_mb=2.5 * episode_bytes / 2**20)

    def log() -> list[dict]:
        return [json.loads(line) for line in out.with_name("agent.log.jsonl").read_text().splitlines()]

    Trainer(request(400)).run(Quiet())
    first = torch.load(out.with_name("agent.pt.resume.pt"), weights_only=True)
    assert first["step"] == 400 and "buffer" not in first  # the committable file holds no buffer
    whole = ReplayBuffer.from_state(torch.load(out.with_name("agent.pt.buffer.pt"), weights_only=True)["buffer"])
    recent = torch.load(out.with_name("agent.pt.recent.pt"), weights_only=True)
    assert recent["step"] == 400 and recent["buffer"]["lengths"].tolist() == [100, 100]  # 2 of 4 fit the budget
    committed = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".buffer.pt")}
    out.with_name("agent.pt.buffer.pt").unlink()  # a fresh clone has only the committed files

    # with the newest episodes: they are the buffer, updates go on at once
    trainer, quiet = Trainer(request(500)), Quiet()
    trainer.run(quiet)
    assert trainer.refill == 200 and trainer.buffer.size == 3 * 101
    for kept, original in zip(trainer.buffer.episodes[:2], whole.episodes[2:], strict=True):
        assert all(np.array_equal(kept[k], original[k]) for k in original)
    assert quiet.notes and "continuing with its newest 202 steps" in quiet.notes[0]
    lost = [r for r in log() if r["type"] == "buffer_lost"]
    assert len(lost) == 1 and lost[0]["kept_steps"] == 202 and lost[0]["refill_steps"] == 0
    assert "kept agent.pt.recent.pt" in lost[0]["why"]
    resumed = [r for r in log() if r["type"] == "episode" and r["step"] > 400]
    assert [r["step"] for r in resumed] == [500] and np.isfinite(resumed[0]["value_loss"])  # updated at once

    # without them: act until the buffer holds the seed phase's 200 entries, then update
    for path in tmp_path.iterdir():
        path.unlink()
    for name, data in committed.items():
        (tmp_path / name).write_bytes(data)
    out.with_name("agent.pt.recent.pt").unlink()
    trainer, quiet = Trainer(request(800)), Quiet()
    trainer.run(quiet)
    assert trainer.step == 800 and trainer.refill == 200
    assert quiet.notes and "refill 200 steps" in quiet.notes[0]
    lost = [r for r in log() if r["type"] == "buffer_lost"]
    assert len(lost) == 1 and lost[0]["step"] == 400 and lost[0]["refill_steps"] == 200
    assert lost[0]["kept_steps"] == 0
    after = [r for r in log() if r["type"] == "episode" and r["step"] > 400]
    assert [r["step"] for r in after] == [500, 600, 700, 800]  # the step count continues
    # no update until the buffer holds 200 entries again (after the episode ending at step 600)
    refilling, updating = after[:1], after[1:]
    assert all("value_loss" not in r for r in refilling)
    assert all(np.isfinite(r["total_loss"]) and np.isfinite(r["value_loss"]) for r in updating)
    assert trainer.buffer.size == 4 * 101  # only what was acted after the resume


def test_queue_runs_its_jobs_at_low_priority_and_skips_finished_ones(tmp_path):
    out = tmp_path / "queue" / "agent.pt"  # named relative to the queue file's folder, run from elsewhere
    queue = tmp_path / "queue.toml"
    queue.write_text(
        "[[job]]\n"
        'args = "--task cartpole-swingup --suite smoke --dims 32,32,16 --steps 300 --seed-steps 200 '
        '--save-every 100 --eval-every 100000 --eval-episodes 1 --planner policy --out=queue/agent.pt"\n'
    )
    proc = run_cli("queue", "--file", str(queue))
    assert proc.returncode == 0, proc.stderr
    assert "training from step 0 to 300 (nice 19, 1 thread)" in proc.stdout
    assert torch.load(out.with_name("agent.pt.resume.pt"), weights_only=True)["step"] == 300
    start = json.loads(out.with_name("agent.log.jsonl").read_text().splitlines()[0])
    assert start["type"] == "start" and start["nice"] == 19 and start["machine"]["torch_threads"] == 1
    assert 0 <= time.time() - start["time"] < 600  # every record is stamped with the wall clock
    from benchctl.report.curves import logged_evaluations

    evaluations = logged_evaluations(out.with_name("agent.log.jsonl"), "return")  # the stamp is not a score
    assert set(evaluations["planner"]) == {"policy"} and evaluations["step"].tolist() == [0, 300]
    again = run_cli("queue", "--file", str(queue))
    assert again.returncode == 0 and "done (300 of 300 steps)" in again.stdout
    assert "queue: 1 of 1 jobs done" in again.stdout
    queue.write_text('[[job]]\nargs = "--task cartpole-swingup --steps 300"\n')
    bad = run_cli("queue", "--file", str(queue))
    assert bad.returncode == 2 and "must name --task and --suite" in bad.stderr


def test_a_queue_runner_reads_its_file_again_after_each_job(tmp_path):
    """A job added to the queue file, or a job's --steps raised, while a runner trains is run by that
    runner: it reads the file again after each job."""
    from benchctl.train.files import is_training, resume_path

    small = "--task cartpole-swingup --suite smoke --dims 32,32,16 --seed-steps 100 --save-every 100 "
    small += "--eval-every 100000 --eval-episodes 1 --planner policy"
    first, second = tmp_path / "q" / "first.pt", tmp_path / "q" / "second.pt"
    queue = tmp_path / "queue.toml"
    queue.write_text(f'[[job]]\nargs = "{small} --steps 300 --out {first}"\n')
    env = dict(os.environ, COLUMNS="200")
    runner = subprocess.Popen(  # --nice 0: at nice 19 the trainings starve beside the other tests' processes
        [sys.executable, "-m", "benchctl", "queue", "--file", str(queue), "--nice", "0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.time() + 300
    while not is_training(first) and runner.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    queue.write_text(
        f'[[job]]\nargs = "{small} --steps 400 --out {first}"\n[[job]]\nargs = "{small} --steps 100 --out {second}"\n'
    )
    stdout, _ = runner.communicate(timeout=600)
    assert runner.returncode == 0
    assert stdout.startswith(f"q/first.pt: training from step 0 to 300 (nice {os.nice(0)}, 1 thread)\n")
    assert "\nq/first.pt: training from step 300 to 400" in stdout
    assert "\nq/second.pt: training from step 0 to 100" in stdout
    assert "queue: 2 of 2 jobs done" in stdout
    assert torch.load(resume_path(first), weights_only=True)["step"] == 400
    assert torch.load(resume_path(second), weights_only=True)["step"] == 100
    start = json.loads(first.with_name("first.log.jsonl").read_text().splitlines()[0])
    assert start["type"] == "start" and start["nice"] == os.nice(0)  # the runner's own niceness, nothing added


def test_two_queue_runners_share_a_queue_and_a_locked_checkpoint_refuses_a_second_training(tmp_path):
    """Two cores, two runners on one queue file: the second skips the job the first is training and
    takes the next. A `benchctl train` on a checkpoint being trained is refused in one line, and the
    lock goes with the process that held it (SIGKILL included)."""
    from benchctl.train.files import is_training

    small = "--task cartpole-swingup --suite smoke --dims 32,32,16 --seed-steps 100 --save-every 100 "
    small += "--eval-every 100000 --eval-episodes 1 --planner policy"
    first, second = tmp_path / "q" / "first.pt", tmp_path / "q" / "second.pt"
    queue = tmp_path / "queue.toml"
    jobs = [f"{small} --steps 100000 --out {first}", f"{small} --steps 100 --out {second}"]  # one seed episode
    queue.write_text("".join(f'[[job]]\nargs = "{args}"\n' for args in jobs))
    env = dict(os.environ, COLUMNS="200")
    runner = subprocess.Popen(
        [sys.executable, "-m", "benchctl", "queue", "--file", str(queue), "--nice", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not is_training(first):
            assert runner.poll() is None and time.time() < deadline, "the first runner never started its job"
            time.sleep(0.2)
        refused = run_cli("train", *small.split(), "--steps", "100000", "--out", str(first))
        assert refused.returncode == 2, refused.stderr
        assert f"{first} is being trained by pid " in refused.stderr and "pass another --out" in refused.stderr
        assert "Traceback" not in refused.stderr
        other = run_cli("queue", "--file", str(queue), "--nice", "0")
        assert other.returncode == 0, other.stderr
        assert "first.pt: being trained by another runner" in other.stdout
        assert "second.pt: training from step 0 to 100" in other.stdout
        assert torch.load(second.with_name("second.pt.resume.pt"), weights_only=True)["step"] == 100
        status = run_cli("queue", "--status", "--file", str(queue))  # reads the files, trains nothing
        assert status.returncode == 0, status.stderr
        rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if line.startswith("│")}
        first_row, second_row = rows["q/first.pt"], rows["q/second.pt"]  # named relative to the queue file
        assert "training" in first_row and "of 100,000" in first_row
        assert "policy " in first_row and " at 0 " in first_row  # its evaluation at step 0
        assert "done" in second_row and "100 of 100" in second_row and " at 100 " in second_row
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and the training it started
        runner.wait()
    deadline = time.time() + 30
    while is_training(first) and time.time() < deadline:  # the killed training's lock goes with it
        time.sleep(0.2)
    assert not is_training(first)
    starts = [json.loads(line) for line in first.with_name("first.log.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "start" for r in starts) == 1  # only the first runner ever trained it


def test_a_run_continues_another_runs_checkpoint_acting_with_another_planner(tmp_path):
    """`--from`: a new run (acting with MPPI) takes over a policy-acting run at its last save, with its
    weights, optimizers, step, whole replay buffer and log, and trains on from there."""
    source, out = tmp_path / "policy.pt", tmp_path / "mppi.pt"
    killed = [{"type": "start", "step": 0}, {"type": "eval", "step": 0, "policy": -1.0}]
    killed.append({"type": "episode", "step": 100})
    (tmp_path / "policy.log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in killed))  # before any save
    Trainer(tiny_request(source, 400)).run(Quiet())
    saved = torch.load(tmp_path / "policy.pt.resume.pt", weights_only=True)
    source_log = [json.loads(line) for line in (tmp_path / "policy.log.jsonl").read_text().splitlines()]
    # a fresh start forgets the killed attempt's episodes and evaluation; its start stays, as history
    assert [r["step"] for r in source_log if r["type"] == "episode"] == [100, 200, 300, 400]
    assert [r["policy"] == -1.0 for r in source_log if r["type"] == "eval"] == [False, False]  # at 0 and 400
    assert [r["type"] for r in source_log].count("start") == 2

    def request(steps: int) -> TrainRequest:
        return tiny_request(out, steps, start_from=source, planner="mppi", planner_overrides={"num_samples": "64"})

    taken = Trainer(request(600))
    assert taken.try_resume() and taken.step == 400 and taken.episode == saved["episode"]
    for name, value in taken.model.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name
    assert taken.learner.optim.state_dict()["state"], "the optimizer's moments came along"
    assert taken.buffer.size == 4 * 101 and taken.refill == 0  # the whole buffer: no refill
    assert taken.buffer.capacity == 600 + 6 + 1  # this run's steps (and episode ends), not the source's 405

    Trainer(request(600)).run(Quiet())
    log = [json.loads(line) for line in (tmp_path / "mppi.log.jsonl").read_text().splitlines()]
    assert log[: len(source_log)] == source_log  # its curve begins with the source's, time stamps kept
    taken_over = [r for r in log if r["type"] == "from"]
    assert len(taken_over) == 1 and taken_over[0]["step"] == 400 and taken_over[0]["checkpoint"] == "policy.pt"
    assert taken_over[0]["identity"]["planner"] == "policy"
    episodes = [r for r in log if r["type"] == "episode"]
    assert [r["step"] for r in episodes] == [100, 200, 300, 400, 500, 600]
    assert all(np.isfinite(r["total_loss"]) for r in episodes[-2:])
    final = torch.load(tmp_path / "mppi.pt.resume.pt", weights_only=True)
    assert final["step"] == 600 and json.loads(final["identity"])["planner"] == "mppi"
    # once saved, the run resumes its own files: --from no longer counts
    assert Trainer(request(600)).try_resume()
    assert (tmp_path / "mppi.log.jsonl").read_text().count('"type": "from"') == 1

    common = ["train", "--task", "cartpole-swingup", "--suite", "smoke", "--steps", "600", "--from", str(source)]
    one_line_error(
        run_cli(*common, "--dims", "32,32,8", "--out", str(tmp_path / "other.pt")),
        "another run's model",
        "dims [32, 32, 16] there, [32, 32, 8] here",
    )
    one_line_error(
        run_cli(*common[:-1], str(out.with_name("none.pt")), "--dims", "32,32,16", "--out", str(tmp_path / "x.pt")),
        "none.pt: no such file",
    )
    # A checkpoint alone, as an official agent comes (no resume file): a fresh run with its weights.
    weights = tmp_path / "weights-only.pt"
    shutil.copy(source, weights)
    one_line_error(
        run_cli(*common[:-1], str(weights), "--dims", "32,32,8", "--out", str(tmp_path / "x.pt")),
        "weights-only.pt: a tdmpc2 model (enc 32 / mlp 32 / latent 16) for 5-dim observations and 1-dim actions; "
        "this run builds a tdmpc2 model (enc 32 / mlp 32 / latent 8)",
    )
    shutil.copy(REPO / "checkpoints" / "dreamer" / "demo" / "cartpole-swingup-1.pt", tmp_path / "dreamer.pt")
    one_line_error(
        run_cli(*common[:-1], str(tmp_path / "dreamer.pt"), "--dims", "32,32,16", "--out", str(tmp_path / "x.pt")),
        "dreamer.pt: a dreamer checkpoint; --from takes a TD-MPC2 or BMPC agent",
    )
    tuned = Trainer(tiny_request(tmp_path / "tuned.pt", 300, start_from=weights))
    assert not tuned.try_resume() and tuned.step == 0 and tuned.pretrained
    for name, value in tuned.model.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name
    online, target = tuned.model._Qs.state_dict(), tuned.learner.target_Qs.state_dict()
    assert all(torch.equal(online[k], target[k]) for k in online)  # targets start as the heads' copies
    assert not tuned.learner.optim.state_dict()["state"]  # fresh optimizers
    # its first training episode acts with its planner (the policy's deterministic action), not at random
    first = tuned.train_episode()
    policy = make_planner("policy", tuned.model, resolve_config("policy", {}))
    alone = run_episode(make_env(tuned.request.task, seed=1), policy, episode_seed(1, 0), torch.device("cpu"))
    assert first["return"] == alone["return"]
    Trainer(tiny_request(tmp_path / "tuned.pt", 300, start_from=weights)).run(Quiet())
    tuned_log = [json.loads(line) for line in (tmp_path / "tuned.log.jsonl").read_text().splitlines()]
    taken_over = [r for r in tuned_log if r["type"] == "from"]
    assert taken_over == [taken_over[0]] and taken_over[0]["checkpoint"] == "weights-only.pt"
    assert taken_over[0]["weights_only"] and taken_over[0]["step"] == 0
    assert [r["step"] for r in tuned_log if r["type"] == "episode"] == [100, 200, 300]
    resumed = torch.load(tmp_path / "tuned.pt.resume.pt", weights_only=True)
    assert resumed["pretrained"] and resumed["step"] == 300
    # one update a step after the seed phase's 200 steps, no burst of 200 at its end
    assert [int(v["step"]) for v in resumed["learner"]["optim"]["state"].values()] == [100] * len(
        resumed["learner"]["optim"]["state"]
    )
    queue = tmp_path / "queue.toml"
    queue.write_text('[[job]]\nargs = "--task cartpole-swingup --suite smoke --from policy.pt --out runs/b.pt"\n')
    job = load_queue(queue)[0]
    assert job.args[job.args.index("--from") + 1] == str(source)  # relative to the queue file, as --out is
    assert job.steps_done() == 400  # before its first save, the queue counts from where it continues
