"""The online training loop of TD-MPC2 (spec/training.md section 1), with any registered planner
acting, periodic evaluation, official-format checkpoints and crash-safe resume.

Files: the checkpoint (official format: what other tools load), `<checkpoint>.resume.pt` (model,
target heads, optimizers, value scale, step, RNG state: small enough to commit), the replay buffer
in `<checkpoint>.buffer.pt` (large: stays on the machine), its newest episodes in
`<checkpoint>.recent.pt` (a few MB: committed with the resume file) and `<checkpoint>.log.jsonl` (one
JSON line per episode and per evaluation). Every .pt file is written to a temporary name and
renamed, so a crash leaves the previous save intact.

A run continues from `.resume.pt` (another machine, a fresh clone): without the whole buffer saved at
the same step, it starts from the newest episodes of `.recent.pt` (or from nothing), acts with its
planner until the buffer holds as many steps as the seed phase did, updating again from then on,
and logs the loss of the rest of the old buffer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchctl.agents.base import ModelDims
from benchctl.agents.checkpoint import MODEL_SIZES, load_checkpoint_with_info, size_label
from benchctl.errors import BenchctlError
from benchctl.evaluate import episode_seed, plan_step, run_episode
from benchctl.planners.base import make_planner, resolve_config
from benchctl.suites import Task, make_env
from benchctl.train.bmpc import BMPCLearner, ReanalyzeConfig, new_bmpc_model
from benchctl.train.buffer import EpisodeTrace, ReplayBuffer
from benchctl.train.files import (
    RunLog,
    SavedBuffer,
    atomic_save,
    check_identity,
    kept_on_resume,
    load_buffer,
    log_path,
    resume_path,
    save_buffer,
)
from benchctl.train.loop import TrainingLoop
from benchctl.train.tdmpc2 import TDMPC2Learner, TrainConfig, new_model

# family -> (fresh model, learner); a BMPC learner's policy imitates the acting planner
FAMILIES = {"tdmpc2": (new_model, TDMPC2Learner), "bmpc": (new_bmpc_model, BMPCLearner)}


@dataclass
class TrainRequest:
    task: Task
    out: Path  # checkpoint path
    family: str = "tdmpc2"
    steps: int = 100_000
    seed: int = 1
    size: int | None = 5
    dims: tuple[int, int, int] | None = None  # (enc, mlp, latent) instead of an official size
    planner: str = "dream_mpc"
    planner_overrides: dict[str, str] = field(default_factory=dict)
    seed_steps: int | None = None  # default max(1000, 5 * episode length)
    eval_every: int = 10_000
    eval_episodes: int = 10
    save_every: int = 10_000
    recent_buffer_mb: float = 4.0  # the buffer's newest episodes saved in a file small enough to commit
    buffer_size: int = 1_000_000
    batch_size: int = 256
    reanalyze_interval: int = 10  # BMPC lazy reanalyze: every k-th update (paper Table 6)
    reanalyze_sequences: int = 20  # BMPC lazy reanalyze: windows replanned (x H observations)
    start_from: Path | None = None  # another run's checkpoint to continue from (before this run's first save)

    def identity(self) -> dict[str, Any]:
        """What must agree between a run and its resume."""
        return (
            {
                "family": self.family,
                "task": self.task.name,
                "seed": self.seed,
                "size": self.size,
                "dims": self.dims,
                "planner": self.planner,
                "planner_overrides": self.planner_overrides,
            }
            | ({"reanalyze": [self.reanalyze_interval, self.reanalyze_sequences]} if self.family == "bmpc" else {})
            | ({"batch_size": self.batch_size} if self.batch_size != 256 else {})
        )


def _described(family: str, dims: ModelDims) -> str:
    """E.g. 'a tdmpc2 model of size 5 (enc 256 / mlp 512 / latent 512) for 24-dim observations and 6-dim actions'."""
    size = size_label(dims)
    return (
        f"a {family} model{'' if size == 'custom' else f' of size {size}'} (enc {dims.enc_dim} / mlp {dims.mlp_dim} / "
        f"latent {dims.latent_dim}) for {dims.obs_dim}-dim observations and {dims.action_dim}-dim actions"
    )


def acting_config(name: str, overrides: dict[str, str], training: bool):
    """The planner's config for acting; MPPI adds its std[0] exploration noise while training."""
    values = dict(overrides)
    if name == "mppi" and training:
        values.setdefault("eval_noise", "true")
    if name == "mppi" and not training:
        values["eval_noise"] = "false"
    return resolve_config(name, values)


class Trainer(TrainingLoop):
    def __init__(self, request: TrainRequest):
        self.request = request
        task = request.task
        if request.size is not None and request.size not in MODEL_SIZES:
            raise BenchctlError(f"--size {request.size}: choose one of {', '.join(map(str, MODEL_SIZES))}")
        self.env = make_env(task, seed=request.seed)
        self.seed_steps = request.seed_steps or max(1000, 5 * task.episode_length)
        if self.seed_steps < task.episode_length:
            raise BenchctlError(
                f"--seed-steps {self.seed_steps}: the random-action phase must finish at least one episode "
                f"({task.episode_length} steps on {task.name}) so the first updates have data"
            )
        if request.family not in FAMILIES:
            raise BenchctlError(f"--family {request.family}: choose one of {', '.join(FAMILIES)}")
        make_model, Learner = FAMILIES[request.family]
        shape = tuple(getattr(self.env, "obs_shape", ()))  # pixel suites: (C, H, W) frames
        self.model = make_model(
            self.env.obs_dim, self.env.action_dim, request.size, request.dims, seed=request.seed, obs_shape=shape
        )
        self.learner = Learner(self.model, task.discount, TrainConfig(batch_size=request.batch_size))
        self.imitates = isinstance(self.learner, BMPCLearner)  # policy learns the acting planner's distributions
        if self.imitates:
            self.learner.reanalyze_cfg = ReanalyzeConfig(request.reanalyze_interval, request.reanalyze_sequences)
        self.policy_updates = 0  # BMPC's lazy-reanalyze counter (updates after pretraining)
        # every step of the run, as the official min(buffer_size, steps), in entries (L + 1 per episode)
        self.buffer = ReplayBuffer(min(request.buffer_size, request.steps + request.steps // task.episode_length + 1))
        self.generator = torch.Generator().manual_seed(request.seed)
        self.step, self.episode = 0, 0
        self.last_losses: dict[str, float] = {}  # the latest update's losses, logged with each episode
        self.acting = make_planner(
            request.planner, self.model, acting_config(request.planner, request.planner_overrides, True)
        )
        if self.imitates and not self.acting.reports_distribution:
            raise BenchctlError(
                f"--planner {request.planner}: BMPC's policy imitates the acting planner's action distribution, "
                "which this planner does not report; use --planner mppi"
            )
        self.resume_path = resume_path(request.out)
        self.refill = 0  # buffer entries needed before updates resume (after a lost buffer)
        self.pretrained = False  # began with another agent's weights: no random seed phase, no burst
        self.log_path = log_path(request.out)
        self.run_log = RunLog(self.log_path)
        resolve_config(request.planner, request.planner_overrides)  # bad --set fails before any work

    # -- persistence ---------------------------------------------------------------------
    def save(self) -> None:
        atomic_save({"model": self.learner.official_state_dict()}, self.request.out)
        save_buffer(self.buffer, self.step, self.request.out, self.request.recent_buffer_mb)
        atomic_save(
            {
                "identity": json.dumps(self.request.identity()),
                "step": self.step,
                "episode": self.episode,
                "policy_updates": self.policy_updates,
                "pretrained": self.pretrained,
                "model": self.model.state_dict(),
                "learner": self.learner.resume_state(),
                "generator": self.generator.get_state(),
            },
            self.resume_path,
        )

    def try_resume(self) -> bool:
        """Continue this run from its last save, or else another run's (`start_from` with its resume
        file), if any. A `start_from` checkpoint without one (an official agent) gives a fresh run its
        weights."""
        source = None if self.request.start_from is None else Path(self.request.start_from)
        if self.resume_path.exists():
            state = torch.load(self.resume_path, weights_only=True)
            check_identity(self.resume_path, self._identity_of(state), self.request.identity())
            saved = self._load(state, self.request.out)
            self.run_log.drop_after(self.step)
        elif source is not None and resume_path(source).is_file():
            saved = self._start_from(source)
        else:  # a fresh run: forget what an attempt killed before its first save logged
            self.run_log.start_fresh()
            if source is not None:
                self._take_weights(source)
            return False
        self._log_lost_buffer(saved)
        return True

    @staticmethod
    def _identity_of(state: dict) -> dict:
        return {"family": "tdmpc2"} | json.loads(state["identity"])  # files from before BMPC training

    def _start_from(self, source: Path) -> SavedBuffer:
        """Take over another run at its last save: weights, optimizers, value scale, generator, step and
        saved replay buffer; its log up to that step becomes this run's (a run killed before its first
        save starts over). The runs may differ only in what leaves the model as it is: the acting
        planner and its options, BMPC's reanalysis, the batch size."""
        state = torch.load(resume_path(source), weights_only=True)
        theirs, ours = self._identity_of(state), json.loads(json.dumps(self.request.identity()))
        differ = [k for k in ("family", "task", "seed", "size", "dims") if theirs.get(k) != ours.get(k)]
        if differ:
            what = ", ".join(f"{k} {theirs.get(k)} there, {ours.get(k)} here" for k in differ)
            raise BenchctlError(f"--from {source}: another run's model ({what}); give its --task, --seed and dims")
        saved = self._load(state, source)
        records = RunLog(log_path(source)).records()
        self.run_log.start_with([r for r in records if kept_on_resume(r, self.step)])
        self.log({"type": "from", "step": self.step, "checkpoint": self._named(source), "identity": theirs})
        return saved

    def _take_weights(self, source: Path) -> None:
        """Begin this fresh run with the weights of a checkpoint that has no resume file (an official
        TD-MPC2 or BMPC agent, a file copied without it): the target value heads start as copies of the value
        heads (as the official trainer starts them), the optimizers and value scale fresh. The agent
        acts with its planner from the first step, and updates once the buffer holds the seed phase's
        steps: no random actions, no pretraining burst."""
        if not source.is_file():
            raise BenchctlError(f"--from {source}: no such file; pass an agent's checkpoint")
        loaded, info = load_checkpoint_with_info(source)
        if info.family not in FAMILIES:
            raise BenchctlError(f"--from {source}: a {info.family} checkpoint; --from takes a TD-MPC2 or BMPC agent")
        if info.family != self.request.family or loaded.dims != self.model.dims:
            raise BenchctlError(
                f"--from {source}: {_described(info.family, info.dims)}; this run builds "
                f"{_described(self.request.family, self.model.dims)}: give its --family, --task and --size or --dims"
            )
        self.model.load_state_dict(loaded.state_dict())
        self.learner.target_Qs.load_state_dict(self.model._Qs.state_dict())
        self.pretrained = True
        self.log(
            {"type": "from", "step": 0, "checkpoint": self._named(source), "weights_only": True, "sha256": info.sha256}
        )

    def _named(self, source: Path) -> str:
        """A checkpoint beside or below this run's log named from there (the same on any machine), else
        as given."""
        where = os.path.relpath(source.absolute(), self.log_path.parent.absolute())
        return str(source) if where.startswith("..") else where

    def _load(self, state: dict, checkpoint: Path) -> SavedBuffer:
        """Model, optimizers, generator, counters and the replay buffer saved with them (a resume file's
        `state`, written beside `checkpoint`); returns what there was of the buffer."""
        self.model.load_state_dict(state["model"])
        self.learner.load_resume_state(state["learner"])
        self.generator.set_state(state["generator"])
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self.policy_updates = int(state.get("policy_updates", 0))
        self.pretrained = bool(state.get("pretrained", False))
        capacity = self.buffer.capacity  # this run's --steps: a saved buffer grows to hold them all
        if "buffer" in state:  # resume files written before the buffer had a file of its own
            saved = SavedBuffer(ReplayBuffer.from_state(state["buffer"], capacity), True)
        else:
            saved = load_buffer(checkpoint, self.step, capacity)
        if saved.buffer is not None:
            self.buffer = saved.buffer
        return saved

    def _log_lost_buffer(self, saved: SavedBuffer) -> None:
        """Without the whole saved buffer, act to refill the seed phase's worth before updating again."""
        if not saved.complete and self.step > 0:
            self.refill = min(self.seed_steps, self.buffer.capacity)
            self.log(
                {
                    "type": "buffer_lost",
                    "step": self.step,
                    "why": saved.why,
                    "kept_steps": self.buffer.size,
                    "refill_steps": max(0, self.refill - self.buffer.size),
                }
            )

    def log(self, record: dict) -> None:
        self.run_log.write(record)

    # -- loop ------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Mean return of the policy and of the acting planner (in eval mode) over eval episodes, and
        their success rates (`<planner>.success`) where the suite scores success."""
        out = {}
        for name in dict.fromkeys(["policy", self.request.planner]):
            planner = make_planner(
                name,
                self.model,
                acting_config(name, self.request.planner_overrides, False)
                if name == self.request.planner
                else resolve_config(name, {}),
            )
            records = [
                run_episode(self.env, planner, episode_seed(10_000 + self.request.seed, i), torch.device("cpu"))
                for i in range(self.request.eval_episodes)
            ]
            out[name] = float(np.mean([r["return"] for r in records]))
            if records[0]["success"] is not None:  # Meta-World, HumanoidBench: the success rate too
                out[f"{name}.success"] = float(np.mean([bool(r["success"]) for r in records]))
        return out

    def update(self, count: int, pretraining: bool = False) -> dict[str, float]:
        infos = []
        for _ in range(count):
            infos.append(self._update_once(pretraining))
        return {k: float(np.mean([i[k] for i in infos])) for k in infos[-1]}

    def _update_once(self, pretraining: bool) -> dict[str, float]:
        batch = self.buffer.sample_batch(self.request.batch_size, self.learner.cfg.horizon, self.generator)
        if not self.imitates:
            return self.learner.update(batch.obs, batch.actions, batch.rewards, generator=self.generator)
        # BMPC: no policy update (and no reanalyze) during pretraining
        expert = batch.extras["expert"]
        if not pretraining:
            self.policy_updates += 1
            lazy = self.learner.reanalyze_cfg
            if self.policy_updates % lazy.interval == 0:
                b = lazy.sequences
                fresh = self.learner.reanalyze(batch.obs[:-1, :b], self.generator)  # (H, b, 2A)
                self.buffer.write("expert", batch.where[:b], fresh)
                expert = expert.clone()
                expert[:, :b] = fresh
        return self.learner.update(
            batch.obs,
            batch.actions,
            batch.rewards,
            generator=self.generator,
            update_policy=not pretraining,
            expert=expert,
        )

    def notes(self) -> list[str]:
        if not self.refill:
            return []
        kept, missing = self.buffer.size, max(0, self.refill - self.buffer.size)
        if not kept:
            what = f"acting to refill {missing:,} steps before updating again"
        elif missing:
            what = f"kept its newest {kept:,} steps, acting to refill {missing:,} more before updating again"
        else:
            what = f"continuing with its newest {kept:,} steps"
        return [f"no whole replay buffer saved at step {self.step:,}: {what} (logged in {self.log_path.name})"]

    def train_episode(self) -> dict:
        """One episode: random actions through the seed phase, then the acting planner; one update per
        step after it (the seed phase ends with a burst of as many updates as it had steps). A run that
        began with another agent's weights acts with its planner throughout, without the burst."""
        req = self.request
        device = torch.device("cpu")
        obs = self.env.reset(episode_seed(req.seed, self.episode))
        self.acting.reset()
        trace, infos = EpisodeTrace(obs), []
        start = time.perf_counter()
        while True:
            expert = np.full(2 * self.env.action_dim, np.nan, np.float32)  # no planner target while seeding
            if self.step < self.seed_steps and not self.pretrained:
                action = torch.rand(self.env.action_dim, generator=self.generator).numpy() * 2 - 1
            else:
                plan, _ = plan_step(self.acting, obs, self.generator, device)
                action = plan.action.detach().numpy()
                if self.imitates and plan.distribution is not None:
                    expert = torch.cat(plan.distribution).detach().numpy()
            result = self.env.step(action)
            obs = result.obs
            trace.add(action, result, **({"expert": expert} if self.imitates else {}))
            self.step += 1
            done = result.done or self.step >= req.steps
            if result.done:
                trace.store(self.buffer)
            if self.step == self.seed_steps and not self.pretrained:
                infos.append(self.update(self.seed_steps, pretraining=True))  # burst on the seed data
            elif self.step > self.seed_steps and self.buffer.size >= self.refill:
                infos.append(self.update(1))
            if done:
                break
        if result.done:
            self.episode += 1
        if infos:
            self.last_losses = {k: float(np.mean([i[k] for i in infos if k in i])) for k in infos[-1]}
        record = {
            "type": "episode",
            "step": self.step,
            "episode": self.episode,
            "return": trace.total,
            "seconds": time.perf_counter() - start,
        } | self.last_losses
        if result.success is not None:
            record["success"] = bool(result.success)
        if result.terminated:
            record["terminated"] = True
        return record
