"""DREAM: fused per-item path == general conv path; general path == a plain
module-by-module reference of the authors' architecture."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmgraph.nn.dream import DREAM

ATOL = 1e-5


def randomize(m: DREAM, seed: int = 0) -> DREAM:
    """Random weights everywhere, incl. BN affine params and running stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for bn in (m.branch_norm, m.out_norm):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return m


def grads(m, x):
    return [x.grad] + [p.grad for p in m.parameters()]


def run(m, x, fused, seed=1):
    m.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    y = m(x, fused=fused) if x.dim() == 2 else m(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    (y * w).sum().backward()
    return y.detach(), grads(m, x)


@pytest.mark.parametrize("attention", ["authors", "paper"])
@pytest.mark.parametrize("train", [True, False])
def test_fused_equals_general(attention, train):
    C, N = 16, 37
    base = randomize(DREAM(C, attention=attention))
    m_fused, m_gen = copy.deepcopy(base), copy.deepcopy(base)
    m_fused.train(train)
    m_gen.train(train)
    x = torch.randn(N, C, generator=torch.Generator().manual_seed(3))
    y_f, g_f = run(m_fused, x, fused=True)
    # general path on a genuine [N, C, 1, 1] input
    y_g, g_g = run(m_gen, x[:, :, None, None], fused=None)
    y_g = y_g[:, :, 0, 0]
    g_g[0] = g_g[0][:, :, 0, 0]
    assert y_f.shape == (N, C)
    torch.testing.assert_close(y_f, y_g, atol=ATOL, rtol=1e-5)
    names = ["input"] + [n for n, _ in m_fused.named_parameters()]
    for name, a, b in zip(names, g_f, g_g):
        assert a is not None and b is not None, name
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5, msg=name)
    # off-centre taps never influence a 1x1 map: zero gradient in both paths
    for conv in m_fused.dilated:
        off = conv.weight.grad.clone()
        off[:, :, 1, 1] = 0
        assert off.abs().max() == 0
    # running statistics: updated identically in train mode, untouched in eval
    for bf, bg, b0 in zip((m_fused.branch_norm, m_fused.out_norm),
                          (m_gen.branch_norm, m_gen.out_norm),
                          (base.branch_norm, base.out_norm)):
        torch.testing.assert_close(bf.running_mean, bg.running_mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(bf.running_var, bg.running_var, atol=1e-6, rtol=1e-6)
        assert int(bf.num_batches_tracked) == int(bg.num_batches_tracked) == int(train)
        changed = not torch.equal(bf.running_mean, b0.running_mean)
        assert changed == train


def test_running_stats_match_batchnorm_update():
    """Fused-path running stats follow BatchNorm's rule exactly:
    r <- (1 - m) r + m * stat, with the unbiased batch variance."""
    C, N = 8, 50
    m = DREAM(C, bn_momentum=0.3)
    x = torch.randn(N, C)
    w, b = m.fused_branch_weight()
    z = F.linear(x, w, b).detach()
    m(x)
    torch.testing.assert_close(m.branch_norm.running_mean, 0.3 * z.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m.branch_norm.running_var, 0.7 + 0.3 * z.var(0, unbiased=True),
                               atol=1e-6, rtol=1e-5)


class AuthorsStyleDREAM(nn.Module):
    """Plain module-by-module reference (separate BN per branch, as in the
    MambaRec paper/code structure), loaded from a DREAM's parameters."""

    def __init__(self, d: DREAM):
        super().__init__()
        C = d.channels
        self.d = d
        self.bns = nn.ModuleList(nn.BatchNorm2d(C, momentum=d.branch_norm.momentum)
                                 for _ in range(d.num_branches))
        with torch.no_grad():
            for k, bn in enumerate(self.bns):
                sl = slice(k * C, (k + 1) * C)
                bn.weight.copy_(d.branch_norm.weight[sl])
                bn.bias.copy_(d.branch_norm.bias[sl])
                bn.running_mean.copy_(d.branch_norm.running_mean[sl])
                bn.running_var.copy_(d.branch_norm.running_var[sl])
        self.out_bn = copy.deepcopy(d.out_norm)

    def forward(self, x):
        d = self.d
        h, w = x.shape[2:]
        convs = [d.conv1x1] + list(d.dilated)
        outs = [F.relu(bn(conv(x))) for conv, bn in zip(convs, self.bns)]
        g = x.mean(2, keepdim=True).mean(3, keepdim=True)
        g = F.relu(self.bns[-1](d.pool_conv(g)))
        outs.append(F.interpolate(g, (h, w), None, "bilinear", True))
        u = torch.cat(outs, 1)
        c = F.relu(d.channel_att(nn.AdaptiveAvgPool2d(1)(u)))
        c = F.interpolate(c, size=(h, w), mode="nearest")
        s = torch.sigmoid(d.spatial_att(u))
        att = torch.max(u * c.expand_as(u), u * s)
        return F.relu(self.out_bn(d.out_conv(att * u)))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("hw", [(1, 1), (8, 8), (5, 7)])
def test_general_matches_plain_reference(train, hw):
    C, N = 8, 6
    m = randomize(DREAM(C), seed=5).train(train)
    ref = AuthorsStyleDREAM(copy.deepcopy(m)).train(train)
    x = torch.randn(N, C, *hw)
    y = m(x)
    assert y.shape == (N, C, *hw)
    torch.testing.assert_close(y, ref(x), atol=ATOL, rtol=1e-5)
    for k, bn in enumerate(ref.bns):
        sl = slice(k * C, (k + 1) * C)
        torch.testing.assert_close(m.branch_norm.running_var[sl], bn.running_var)
        torch.testing.assert_close(m.branch_norm.running_mean[sl], bn.running_mean)


@pytest.mark.parametrize("attention", ["authors", "paper"])
def test_general_path_on_maps(attention):
    m = DREAM(16, attention=attention)
    x = torch.randn(4, 16, 8, 8, requires_grad=True)
    y = m(x)
    assert y.shape == (4, 16, 8, 8)
    assert (y >= 0).all()                   # ends with ReLU
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    # on a real map the dilated off-centre taps do receive gradient
    assert m.dilated[0].weight.grad[:, :, 0, 0].abs().sum() > 0
    m.eval()
    assert m(x).shape == (4, 16, 8, 8)


def test_input_validation_and_reset():
    m = DREAM(8)
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(4, 7))
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(4, 8, 3))
    with pytest.raises(ValueError, match="1x1"):
        m(torch.randn(4, 8, 2, 2), fused=True)
    with pytest.raises(ValueError, match="attention"):
        DREAM(8, attention="se")
    with pytest.raises(ValueError, match="momentum"):
        DREAM(8, bn_momentum=None)
    randomize(m)
    m.reset_parameters()
    assert torch.equal(m.branch_norm.weight, torch.ones(40))
    assert torch.equal(m.branch_norm.running_var, torch.ones(40))
    # fused [N, C] path == fused=True on [N, C, 1, 1]
    x = torch.randn(5, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x[:, :, None, None], fused=True)[:, :, 0, 0])
