"""Dreamer's training algorithm as dreamer-pytorch runs it (the code Dream-MPC App. D builds on;
Alg. 2 of the paper, settings of Tab. 16), writing dreamer-pytorch's checkpoint format.

One update (`DreamerLearner.update`) on a batch of B chunks of L steps:
1. World model: filter the chunk from a zero belief and state (posterior samples), then
   observation loss (squared error summed over pixels/dims), reward loss (squared error of the
   reward of the state reached), KL(posterior || prior) summed over the state, clipped below at the
   free nats elementwise; one Adam step on encoder, RSSM, decoder and reward head, norm clipped.
2. Actor: from every filtered state (detached), imagine H - 1 steps with the actor's reparameterized
   tanh-normal samples and sampled priors, the model frozen; maximize the mean Vλ (λ 0.95, γ 0.99)
   of the imagined states, bootstrapped with the value head.
3. Critic: regress v(imagined state) on those returns (unit-variance Normal log-likelihood).

Data collection (DreamerTrainer): S seed episodes of uniform random actions; then, per episode,
C updates and one episode acted by the agent (the actor's sample, or any planner: App. D's
"planning during training") with N(0, 0.3^2) exploration noise, clamped to [-1, 1]. Images are
stored as uint8 frames and quantized to 5 bits with uniform dequantization noise when sampled.
Every random draw comes from the run's generator; a run resumes from its last save: the checkpoint
itself (weights, optimizers, counters and generator in one file), so `.resume.pt` stays a few bytes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchctl.agents import planner_defaults
from benchctl.agents.dreamer import OPTIMIZERS, PARTS, DreamerDims, DreamerModel, save_dreamer
from benchctl.agents.dreamer_world import DreamerWorldModel
from benchctl.errors import BenchctlError
from benchctl.evaluate import episode_seed, observe, run_episode
from benchctl.planners.base import Planner, make_planner, resolve_config
from benchctl.planners.rollout import lambda_returns
from benchctl.suites import Task, make_env
from benchctl.train.buffer import EpisodeTrace, ReplayBuffer
from benchctl.train.files import RunLog, atomic_save, check_identity, load_buffer, log_path, resume_path, save_buffer
from benchctl.train.loop import TrainingLoop


@dataclass
class DreamerTrainConfig:
    """dreamer-pytorch's Dreamer settings as Dream-MPC Tab. 16 lists them."""

    seed_episodes: int = 5  # Tab. 16
    collect_interval: int = 100  # updates per collected episode (Tab. 16)
    batch_size: int = 50  # chunks per update (Tab. 16)
    chunk_length: int = 50  # steps per chunk (dreamer-pytorch default)
    free_nats: float = 3.0  # Tab. 16
    bit_depth: int = 5  # Tab. 16
    model_lr: float = 6e-4  # Tab. 16
    actor_lr: float = 8e-5  # Tab. 16
    value_lr: float = 8e-5  # Tab. 16
    adam_eps: float = 1e-7  # Tab. 16
    grad_clip_norm: float = 100.0  # Tab. 16
    discount: float = 0.99  # Tab. 16
    disclam: float = 0.95  # Tab. 16 "horizon discount factor": Vλ's lambda
    imagination_horizon: int = 15  # Tab. 16 planning horizon (H - 1 imagined steps, as dreamer-pytorch)
    exploration_noise: float = 0.3  # Tab. 16


def _kl_normal(m1: torch.Tensor, s1: torch.Tensor, m2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """KL(N(m1, s1^2) || N(m2, s2^2)) elementwise."""
    return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def _params(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


class DreamerLearner:
    """The three Adam optimizers and one update of dreamer-pytorch. Shapes: T = L - 1 transitions."""

    def __init__(self, net: DreamerModel, cfg: DreamerTrainConfig):
        self.net, self.cfg = net, cfg
        # dreamer-pytorch's parameter order (main.py param_list): its optimizer states load into ours
        self.model_params = _params(net.transition_model, net.observation_model, net.reward_model, net.encoder)
        self.model_opt = torch.optim.Adam(self.model_params, lr=cfg.model_lr, eps=cfg.adam_eps)
        self.actor_opt = torch.optim.Adam(net.actor_model.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps)
        self.value_opt = torch.optim.Adam(net.value_model.parameters(), lr=cfg.value_lr, eps=cfg.adam_eps)

    def preprocess(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 images -> [-0.5, 0.5], 5-bit quantized plus uniform noise; vectors pass as float."""
        if obs.dtype != torch.uint8:
            return obs.float()
        levels = 2**self.cfg.bit_depth
        x = torch.floor(obs.float() / 2 ** (8 - self.cfg.bit_depth)) / levels - 0.5
        return x + torch.rand(x.shape, generator=generator) / levels

    def filter(
        self, embeddings: torch.Tensor, actions: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Posterior filtering of T steps from zeros: embeddings (T, B, E), actions (T, B, A) -> beliefs,
        states (posterior samples), prior and posterior means and stds, each (T, B, .)."""
        net, (T, B) = self.net, actions.shape[:2]
        d = net.dims
        belief, state = torch.zeros(B, d.belief), torch.zeros(B, d.state)
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("belief", "state", "pm", "ps", "qm", "qs")}
        for t in range(T):
            belief = net.belief_step(belief, state, actions[t])
            pm, ps = net.prior(belief)
            qm, qs = net.posterior(belief, embeddings[t])
            state = qm + qs * torch.randn(qm.shape, generator=generator)
            for key, value in zip(out, (belief, state, pm, ps, qm, qs), strict=True):
                out[key].append(value)
        return {k: torch.stack(v) for k, v in out.items()}

    def imagine(self, belief: torch.Tensor, state: torch.Tensor, generator: torch.Generator):
        """H - 1 imagined steps from (N, .) starts with the actor's reparameterized samples:
        (beliefs, states), each (H - 1, N, .)."""
        net, beliefs, states = self.net, [], []
        for _ in range(self.cfg.imagination_horizon - 1):
            mu, std = net.actor(belief.detach(), state.detach())
            action = torch.tanh(mu + std * torch.randn(mu.shape, generator=generator))
            belief = net.belief_step(belief, state, action)
            pm, ps = net.prior(belief)
            state = pm + ps * torch.randn(pm.shape, generator=generator)
            beliefs.append(belief)
            states.append(state)
        return torch.stack(beliefs), torch.stack(states)

    def update(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        """obs (T + 1, B, *obs_shape) raw, actions (T, B, A), rewards (T, B): one update of all three parts."""
        cfg, net = self.cfg, self.net
        T, B = actions.shape[:2]
        target = self.preprocess(obs[1:], generator)  # o_1..o_T: the posterior reads them, the decoder rebuilds them
        embeddings = net.embed(target.flatten(0, 1)).view(T, B, -1)
        f = self.filter(embeddings, actions, generator)
        belief, state = f["belief"].flatten(0, 1), f["state"].flatten(0, 1)
        reconstruction = net.decode(belief, state).view(target.shape)
        observation_loss = ((reconstruction - target) ** 2).flatten(2).sum(-1).mean()
        reward_loss = ((net.reward(belief, state).view(T, B) - rewards) ** 2).mean()
        kl = _kl_normal(f["qm"], f["qs"], f["pm"], f["ps"]).sum(-1)
        kl_loss = torch.clamp(kl, min=cfg.free_nats).mean()  # free nats, per (t, b) as dreamer-pytorch
        model_loss = observation_loss + reward_loss + kl_loss
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        nn.utils.clip_grad_norm_(self.model_params, cfg.grad_clip_norm)
        self.model_opt.step()

        frozen = [*self.model_params, *net.value_model.parameters()]
        for p in frozen:
            p.requires_grad_(False)
        try:
            beliefs, states = self.imagine(belief.detach(), state.detach(), generator)
            flat_b, flat_s = beliefs.flatten(0, 1), states.flatten(0, 1)
            imagined_rewards = net.reward(flat_b, flat_s).view(beliefs.shape[:2])
            values = net.value(flat_b, flat_s).view(beliefs.shape[:2])
            returns = lambda_returns(imagined_rewards, values, values[-1], cfg.discount, cfg.disclam)
            actor_loss = -returns.mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            nn.utils.clip_grad_norm_(net.actor_model.parameters(), cfg.grad_clip_norm)
            self.actor_opt.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)

        predicted = net.value(flat_b.detach(), flat_s.detach()).view(beliefs.shape[:2])
        value_loss = (0.5 * (predicted - returns.detach()) ** 2).mean() + 0.5 * math.log(2 * math.pi)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        nn.utils.clip_grad_norm_(net.value_model.parameters(), cfg.grad_clip_norm)
        self.value_opt.step()
        return {
            "observation_loss": float(observation_loss.detach()),
            "reward_loss": float(reward_loss.detach()),
            "kl_loss": float(kl_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "value_loss": float(value_loss.detach()),
        }

    def optimizer_states(self) -> dict[str, dict]:
        return {
            "model_optimizer": self.model_opt.state_dict(),
            "actor_optimizer": self.actor_opt.state_dict(),
            "value_optimizer": self.value_opt.state_dict(),
        }

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        self.model_opt.load_state_dict(states["model_optimizer"])
        self.actor_opt.load_state_dict(states["actor_optimizer"])
        self.value_opt.load_state_dict(states["value_optimizer"])


@dataclass
class DreamerTrainRequest:
    task: Task
    out: Path  # checkpoint path (dreamer-pytorch's models_<episode>.pth format)
    steps: int = 100_000  # environment steps (after action repeat)
    seed: int = 1
    sizes: tuple[int, int, int, int] = (200, 30, 200, 1024)  # belief, state, hidden, embedding (Tab. 16)
    planner: str = "policy"  # who acts while collecting; "policy" = the actor's sample, as Dreamer
    planner_overrides: dict[str, str] = field(default_factory=dict)
    config: DreamerTrainConfig = field(default_factory=DreamerTrainConfig)
    eval_every: int = 10_000
    eval_episodes: int = 10
    save_every: int = 10_000
    recent_buffer_mb: float = 4.0  # the buffer's newest episodes saved in a file small enough to commit

    def identity(self) -> dict[str, Any]:
        """What must agree between a run and its resume."""
        return {
            "family": "dreamer",
            "task": self.task.name,
            "seed": self.seed,
            "sizes": list(self.sizes),
            "planner": self.planner,
            "planner_overrides": self.planner_overrides,
            "config": asdict(self.config),
        }


class DreamerTrainer(TrainingLoop):
    """The collect / update loop; files as `benchctl train` writes them for every family: the
    checkpoint, `.resume.pt` (weights, optimizers, counters, generator: small enough to commit),
    `.buffer.pt` (the replay, stays on the machine), `.recent.pt` (its newest episodes, committed) and
    `.log.jsonl`."""

    def __init__(self, request: DreamerTrainRequest):
        self.request, cfg = request, request.config
        self.env = make_env(request.task, seed=request.seed, family="dreamer")
        if request.task.episode_length < cfg.chunk_length:
            raise BenchctlError(
                f"{request.task.name}: episodes of {request.task.episode_length} steps are shorter than Dreamer's "
                f"chunks of {cfg.chunk_length}; pick a task with longer episodes"
            )
        shape = tuple(getattr(self.env, "obs_shape", ())) or (self.env.obs_dim,)
        belief, state, hidden, embedding = request.sizes
        torch.manual_seed(request.seed)  # the networks' initialization
        self.net = DreamerModel(DreamerDims(belief, state, hidden, embedding, self.env.action_dim, shape))
        self.model = DreamerWorldModel(self.net)
        self.learner = DreamerLearner(self.net, cfg)
        self.generator = torch.Generator().manual_seed(request.seed)
        self.buffer = ReplayBuffer(request.steps + request.steps // request.task.episode_length + 1)
        self.step, self.episode, self.updates = 0, 0, 0
        self.refill_episodes = 0  # episodes to collect before updating again (after a lost buffer)
        self.acting = self._planner(request.planner, request.planner_overrides)
        self.resume_path = resume_path(request.out)
        self.log_path = log_path(request.out)
        self.run_log = RunLog(self.log_path)

    def _planner(self, name: str, overrides: dict[str, str]) -> Planner:
        """A planner on the agent with Dreamer's settings (Tab. 16) where `overrides` leave them."""
        defaults = {k: str(v) for k, v in planner_defaults("dreamer", name).items()}
        return make_planner(name, self.model, resolve_config(name, defaults | overrides))

    # -- persistence -----------------------------------------------------------------------
    def save(self) -> None:
        """The checkpoint carries everything to continue (dreamer-pytorch's dict plus a `benchctl` entry:
        run identity, counters, generator), so one atomic write is the resume point; `.resume.pt` repeats
        the identity and step in a few bytes (what the queue reads)."""
        out, progress = self.request.out, self._progress()
        tmp = out.with_name(out.name + ".tmp")
        save_dreamer(self.net, tmp, self.learner.optimizer_states(), extra={"benchctl": progress})
        os.replace(tmp, out)
        save_buffer(self.buffer, self.step, out, self.request.recent_buffer_mb)
        atomic_save({"identity": progress["identity"], "step": self.step}, self.resume_path)

    def _progress(self) -> dict[str, Any]:
        return {
            "identity": json.dumps(self.request.identity()),
            "step": self.step,
            "episode": self.episode,
            "updates": self.updates,
            "generator": self.generator.get_state(),
        }

    def try_resume(self) -> bool:
        if not self.resume_path.exists() or not self.request.out.exists():
            self.run_log.start_fresh()  # from scratch: forget what an attempt killed before its first save logged
            return False
        blob = torch.load(self.request.out, weights_only=True)
        progress = blob.get("benchctl")
        if progress is None:
            raise BenchctlError(
                f"{self.request.out} is not a checkpoint of a benchctl Dreamer training run; pass another --out"
            )
        check_identity(self.resume_path, json.loads(progress["identity"]), self.request.identity())
        for part in PARTS:
            getattr(self.net, part).load_state_dict(blob[part])
        restarted = [name for name in OPTIMIZERS if not blob.get(name)]
        if not restarted:
            self.learner.load_optimizer_states(blob)
        self.generator.set_state(progress["generator"])
        self.step, self.episode, self.updates = (
            int(progress["step"]),
            int(progress["episode"]),
            int(progress["updates"]),
        )
        self.run_log.drop_after(self.step)
        saved = load_buffer(self.request.out, self.step, self.buffer.capacity)  # grown to this run's --steps
        if saved.buffer is not None:
            self.buffer = saved.buffer
        if not saved.complete and self.step > 0:
            kept = len(self.buffer.episodes)
            self.refill_episodes = max(0, self.request.config.seed_episodes - kept)
            self.log(
                {
                    "type": "buffer_lost",
                    "step": self.step,
                    "why": saved.why,
                    "kept_episodes": kept,
                    "refill_episodes": self.refill_episodes,
                }
            )
        if restarted:  # a committed copy without its optimizer states (weights only, a third of the size)
            self.log({"type": "optimizers_restarted", "step": self.step, "why": f"{', '.join(restarted)} not saved"})
        return True

    def log(self, record: dict) -> None:
        self.run_log.write(record)

    # -- the loop --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Mean return of the actor (its evaluation action) and of the acting planner, without noise."""
        out = {}
        for name in dict.fromkeys(["policy", self.request.planner]):
            planner = self._planner(name, self.request.planner_overrides if name == self.request.planner else {})
            records = [
                run_episode(self.env, planner, episode_seed(10_000 + self.request.seed, i), torch.device("cpu"))
                for i in range(self.request.eval_episodes)
            ]
            out[name] = float(np.mean([r["return"] for r in records]))
        return out

    def _act(self, obs: np.ndarray, random: bool) -> np.ndarray:
        """The action sent while collecting: uniform at random in the seed phase; else the actor's sample
        (or the acting planner's choice) plus N(0, 0.3^2) noise, clamped. The filter sees it."""
        action_dim = self.env.action_dim
        if random:
            return (torch.rand(action_dim, generator=self.generator) * 2 - 1).numpy()
        z = observe(self.model, obs, torch.device("cpu"))
        if self.request.planner == "policy":
            with torch.no_grad():
                action = self.model.policy(z, generator=self.generator)[0][0]
        elif self.acting.uses_gradients:  # App. D: a planner acting during training
            action = self.acting.plan(z.clone(), self.generator).action.detach()
        else:
            with torch.inference_mode():
                action = self.acting.plan(z, self.generator).action.clone()
        noise = self.request.config.exploration_noise * torch.randn(action.shape, generator=self.generator)
        action = (action + noise).clamp(-1, 1)
        self.model.executed(action)
        return action.numpy()

    def collect(self, random: bool) -> dict[str, Any]:
        """One episode into the buffer; returns its log record ("seconds": the acting alone)."""
        req, start = self.request, time.perf_counter()
        obs = self.env.reset(episode_seed(req.seed, self.episode))
        self.acting.reset()
        self.model.begin_episode(self.generator)
        trace = EpisodeTrace(obs)
        while True:
            action = self._act(obs, random)
            result = self.env.step(action)
            obs = result.obs
            trace.add(action, result)
            self.step += 1
            if result.done:
                break
        trace.store(self.buffer)
        self.episode += 1
        return {
            "type": "episode",
            "step": self.step,
            "episode": self.episode,
            "return": trace.total,
            "seconds": time.perf_counter() - start,
            "random": random,
        }

    def update(self) -> dict[str, float]:
        cfg, infos = self.request.config, []
        for _ in range(cfg.collect_interval):
            batch = self.buffer.sample_batch(cfg.batch_size, cfg.chunk_length - 1, self.generator)
            infos.append(self.learner.update(batch.obs, batch.actions, batch.rewards[..., 0], self.generator))
            self.updates += 1
        return {k: float(np.mean([i[k] for i in infos])) for k in infos[-1]}

    def train_episode(self) -> dict:
        """Seed episodes act at random; after them `collect_interval` updates precede each collected
        episode (none while a lost buffer refills)."""
        cfg, start = self.request.config, time.perf_counter()
        losses: dict[str, float] = {}
        seeding = self.episode < cfg.seed_episodes
        if not seeding and self.refill_episodes == 0:
            losses = self.update()
        record = self.collect(random=seeding) | losses
        self.refill_episodes = max(0, self.refill_episodes - 1)
        return record | {"seconds": time.perf_counter() - start}  # the episode's updates and acting
