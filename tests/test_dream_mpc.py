"""Dream-MPC's details against values computed by hand (per candidate, plain loops) on small models."""

from __future__ import annotations

import pytest
import torch

from benchctl.agents.base import ModelDims
from benchctl.agents.bmpc import BMPCModel
from benchctl.agents.tdmpc2 import TDMPC2Model
from benchctl.planners import make_planner, resolve_config

DIMS = ModelDims(
    obs_dim=3, action_dim=2, latent_dim=16, enc_dim=16, mlp_dim=32, num_enc_layers=2, num_value_heads=5, num_bins=101
)


def small_model(family: str = "tdmpc2", seed: int = 0):
    """A real TD-MPC2/BMPC architecture with random weights large enough that heads disagree."""
    torch.manual_seed(seed)
    model = (BMPCModel if family == "bmpc" else TDMPC2Model)(DIMS)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.discount = 0.9
    return model.freeze()


def clone(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def dream(model, **overrides):
    return make_planner("dream_mpc", model, resolve_config("dream_mpc", {k: str(v) for k, v in overrides.items()}))


def start(model) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(torch.tensor([[0.3, -0.2, 0.5]]))


def hand_objective(model, z, actions, generator, lam):
    """J per candidate, one candidate at a time, following spec/planners.md section 5 literally."""
    H, N, _ = actions.shape
    eps = torch.randn(1, model.action_dim, generator=generator)  # one terminal draw for all candidates
    heads = torch.randperm(model.num_value_heads, generator=generator)[:2]
    out = []
    for n in range(N):
        zn, total = z, torch.zeros(())
        for h in range(H):
            a = actions[h, n].unsqueeze(0)
            total = total + model.discount**h * model.reward(zn, a)[0, 0]
            zn = model.next(zn, a)
            q = model.value(zn, a)[:, 0, 0]  # every head at (z_{h+1}, a_h)
            total = total - lam * q.mean() * q.std()
        aT = model.policy(zn, eps=eps)[0] if model.value_uses_action else None
        q = model.value(zn, aT)[:, 0, 0]
        total = total + model.discount**H * q[heads].mean() - lam * q.mean() * q.std()
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("family", ["tdmpc2", "bmpc"])
def test_objective_matches_hand_computation(family):
    model = small_model(family)
    p = dream(model, lambda_unc=0.5, horizon=3, candidates=4)
    z = start(model)
    actions = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ours = p.objective(z.expand(4, -1), actions, clone(g))
        theirs = hand_objective(model, z, actions, g, lam=0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_default_lambda_per_backbone():
    assert dream(small_model("tdmpc2")).lambda_unc == 0.01
    assert dream(small_model("bmpc")).lambda_unc == 0.1


def expected_proposals(model, z, horizon, n, generator):
    """Policy rollouts drawn as the planner draws them: (H, N, A)."""
    zs, out = z.expand(n, -1), []
    for _ in range(horizon):
        a = model.policy(zs, generator=generator)[0]
        out.append(a)
        zs = model.next(zs, a)
    return torch.stack(out)


def test_reuse_mix_and_t0_reset():
    model = small_model()
    p = dream(model, candidates=4, iterations=1)
    z = start(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first = expected_proposals(model, z, 3, 4, clone(g))
    p.plan(z, g)
    torch.testing.assert_close(p.last_initial, first)  # t0: proposals alone
    previous = p.last_candidates.clamp(-1, 1)
    shifted = torch.stack([previous[1], previous[2], previous[2]])  # shift by one, last duplicated
    with torch.no_grad():
        second = expected_proposals(model, z, 3, 4, clone(g))
    p.plan(z, g)
    torch.testing.assert_close(p.last_initial, 0.1 * shifted + 0.9 * second)
    p.reset()
    with torch.no_grad():
        third = expected_proposals(model, z, 3, 4, clone(g))
    p.plan(z, g)
    torch.testing.assert_close(p.last_initial, third)


def test_update_is_clipped_sgd_and_ranking_uses_j_before_the_step():
    model = small_model()
    z = start(model)
    for clip, lr in [(1e-3, 1.0), (1e9, 0.1)]:
        p = dream(model, candidates=6, grad_clip_norm=clip, lr=lr, lambda_unc=0.3)
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            proposals = expected_proposals(model, z, 3, 6, g)  # advances g past the proposals
        actions = proposals.clone().requires_grad_(True)
        objective = p.objective(z.expand(6, -1), actions, clone(g))
        (grad,) = torch.autograd.grad(objective.sum(), actions)
        plan = p.plan(z, torch.Generator().manual_seed(2))
        step = p.last_candidates - p.last_initial
        if clip < 1:
            assert float(grad.norm()) > clip
            assert abs(float(step.norm()) - lr * clip) < 1e-6  # global-norm clip, then a plain step
        else:
            torch.testing.assert_close(step, lr * grad, rtol=1e-5, atol=1e-7)
        best = int(torch.argmax(objective))
        assert plan.info["best_candidate"] == best
        assert abs(plan.predicted_return - float(objective[best].detach())) < 1e-5
        torch.testing.assert_close(plan.action, p.last_candidates[0, best].clamp(-1, 1))


def test_uncertainty_grad_changes_the_gradient_while_the_default_does_not():
    model = small_model()
    z = start(model)
    actions = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1

    def gradient(**overrides):
        p = dream(model, candidates=4, **overrides)
        x = actions.clone().requires_grad_(True)
        value = p.objective(z.expand(4, -1), x, torch.Generator().manual_seed(9))
        return torch.autograd.grad(value.sum(), x)[0], value.detach()

    plain, j_plain = gradient(lambda_unc=0.0)
    default, j_default = gradient(lambda_unc=0.5)
    literal, j_literal = gradient(lambda_unc=0.5, uncertainty_grad=True)
    torch.testing.assert_close(default, plain)  # penalty only ranks
    assert not torch.allclose(literal, plain, atol=1e-6)  # penalty differentiated
    torch.testing.assert_close(j_default, j_literal)  # same J either way
    assert not torch.allclose(j_default, j_plain)  # the penalty does change J
