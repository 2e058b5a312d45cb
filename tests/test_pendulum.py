"""The differentiable Pendulum-v1 equals gymnasium's, bit for bit, and its gradients flow."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from benchctl.agents.pendulum import PendulumModel, dynamics
from benchctl.suites import load_suite, make_env


def test_matches_gymnasium_states_and_rewards_over_random_steps():
    for seed in range(3):
        env = gym.make("Pendulum-v1").unwrapped
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        state = torch.tensor(env.state, dtype=torch.float64).unsqueeze(0)
        for _ in range(200):
            u = rng.uniform(-2.5, 2.5, size=1).astype(np.float32)  # beyond the torque limit too
            _, reward, *_ = env.step(u)
            state, ours = dynamics(state, torch.from_numpy(u).double().unsqueeze(0))
            np.testing.assert_allclose(state[0].numpy(), env.state, rtol=0, atol=1e-12)
            assert abs(float(ours) - float(reward)) <= 1e-12


def test_world_model_follows_the_env_adapter():
    task = load_suite("pendulum").task("Pendulum-v1")
    env = make_env(task)
    model = PendulumModel(task.discount)
    obs = env.reset(seed=4)
    z = model.encode(torch.from_numpy(obs).unsqueeze(0))
    for a in np.linspace(-1, 1, 20):
        action = np.array([a])
        result = env.step(action)
        z, reward = model.step(z, torch.tensor([[a]]))
        assert abs(float(reward) - result.reward) < 1e-5  # obs are float32, so the angle is rounded
    assert (env.obs_dim, env.action_dim, env.episode_length, task.discount) == (3, 1, 200, 0.975)


def test_gradients_flow_and_vanish_at_the_speed_limit():
    model = PendulumModel()
    a = torch.zeros(2, 2, 1, dtype=torch.float64, requires_grad=True)  # (candidates, steps, A)
    z = torch.tensor([[0.5, 0.0], [0.5, 8.0]], dtype=torch.float64)  # the second spins at the limit
    total = 0
    for h in range(2):
        z, r = model.step(z, a[:, h])
        total = total + r.sum()
    (grad,) = torch.autograd.grad(total, a)
    assert grad[0, 0, 0] != 0  # the first torque moves the next state
    assert grad[1, 0, 0] == 0  # clipped speed: the first torque cannot change anything
