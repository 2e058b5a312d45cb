"""The hand-written fast paths of the model layers equal the PyTorch reference ops."""

import torch
import torch.nn.functional as F

from benchctl.agents.layers import SparseDropout, mish


def test_mish_and_its_gradient_match_torch():
    x = torch.randn(4, 300, dtype=torch.float32) * 5
    x[0, :9] = torch.tensor([-100.0, -30.0, -20.0, -1e-3, 0.0, 1e-3, 19.9, 25.0, 100.0])
    grad = torch.randn_like(x)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    mish(ours).backward(grad)
    F.mish(ref).backward(grad)
    torch.testing.assert_close(mish(ours.detach()), F.mish(x), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(ours.grad, ref.grad, atol=2e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(mish(x), F.mish(x), atol=2e-6, rtol=1e-5)


def test_sparse_dropout_has_the_law_of_dropout():
    torch.manual_seed(0)
    drop = SparseDropout(0.1)
    x = torch.ones(200, 500)
    y = drop(x)
    dropped = (y == 0).float()
    # 100k Bernoulli(0.1): the dropped fraction is within 5 standard deviations of p
    assert abs(dropped.mean().item() - 0.1) < 5 * (0.1 * 0.9 / x.numel()) ** 0.5
    # no region is favoured: every row of 500 stays within 6 sigma of 50 drops
    assert (dropped.sum(1) - 50).abs().max() < 6 * (500 * 0.09) ** 0.5
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    x.requires_grad_(True)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.9)  # gradient flows where kept, scaled
    xt = torch.ones(500, 200).t().requires_grad_(True)  # a transposed view takes the out-of-place path
    yt = drop(xt)
    yt.sum().backward()
    assert yt.shape == xt.shape and abs((yt == 0).float().mean().item() - 0.1) < 0.01
    torch.testing.assert_close(xt.grad, (yt != 0).float() / 0.9)
    drop.eval()
    assert drop(x) is x


def test_sparse_dropout_extends_a_short_draw():
    class ShortDraws(SparseDropout):
        def _gaps(self, count, device):  # a tenth of the gaps: the process must be extended ~10 times
            return super()._gaps(max(1, count // 10), device)

    torch.manual_seed(1)
    y = ShortDraws(0.05)(torch.ones(20000))
    assert abs((y == 0).float().mean().item() - 0.05) < 5 * (0.05 * 0.95 / 20000) ** 0.5
    assert (y[-2000:] == 0).any()  # drops reach the end of the input
