"""The DeepMind Control adapter follows the TD-MPC2 protocol, checked against dm_control itself."""

from __future__ import annotations

import numpy as np
from dm_control import suite

from benchctl.envs.dmc import DMCEnv
from benchctl.suites import load_suite


def test_observation_order_action_repeat_and_seeding():
    env = DMCEnv("reacher", "easy", episode_length=500, action_repeat=2)
    raw = suite.load("reacher", "easy", task_kwargs={"random": 0})
    obs = env.reset(seed=7)
    raw.task.random.seed(7)
    ts = raw.reset()
    keys = list(raw.observation_spec().keys())
    np.testing.assert_array_equal(
        obs, np.concatenate([np.asarray(ts.observation[k], np.float32).ravel() for k in keys])
    )
    assert obs.dtype == np.float32 and obs.shape == (env.obs_dim,) == (6,)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, size=2)
        result = env.step(action)
        first, second = raw.step(action), raw.step(action)
        assert result.reward == first.reward + second.reward  # action repeat 2, rewards summed
    np.testing.assert_array_equal(
        result.obs, np.concatenate([np.asarray(second.observation[k], np.float32).ravel() for k in keys])
    )
    # same seed, same start; another seed, another start
    assert np.array_equal(env.reset(seed=7), obs) and not np.array_equal(env.reset(seed=8), obs)


def test_actions_are_rescaled_to_asymmetric_bounds():
    env = DMCEnv("quadruped", "walk", episode_length=5)
    spec = env._env.action_spec()
    assert not np.allclose(spec.minimum, -spec.maximum)  # the reason to test quadruped
    env.reset(seed=0)
    env.step(-np.ones(env.action_dim))
    np.testing.assert_allclose(env._env.physics.data.ctrl, spec.minimum)
    env.step(np.ones(env.action_dim))
    np.testing.assert_allclose(env._env.physics.data.ctrl, spec.maximum)


def test_episode_is_500_policy_steps():
    env = DMCEnv("cartpole", "swingup")
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        if env.step(np.zeros(1)).done:
            break
    assert steps == 500


def test_dmc_suite_has_the_papers_tasks_with_their_dims():
    tasks = load_suite("dmc").tasks
    assert sorted(tasks) == sorted(
        [
            "acrobot-swingup",
            "cartpole-swingup_sparse",
            "dog-run",
            "dog-walk",
            "fish-swim",
            "hopper-hop",
            "humanoid-run",
            "humanoid-walk",
        ]
    )
    dims = {"acrobot-swingup": (6, 1), "fish-swim": (24, 5), "hopper-hop": (15, 4), "humanoid-walk": (67, 21)}
    for name, (obs_dim, action_dim) in dims.items():
        t = tasks[name]
        env = DMCEnv(t.params["domain"], t.params["task"])
        assert (env.obs_dim, env.action_dim) == (obs_dim, action_dim)
        assert (t.episode_length, t.action_repeat, t.discount) == (500, 2, 0.99)
