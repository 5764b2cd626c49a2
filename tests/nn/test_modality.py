"""Modality blocks: projector, ID gate, common/specific attention fusion."""
import copy

import pytest
import torch
import torch.nn.functional as F
from oracles import naive_fusion
from torch import nn

from mmgraph.nn.dream import DREAM
from mmgraph.nn.modality import ModalityAttentionFusion, ModalityGate, ModalityProjector


def test_projector_shapes():
    p = ModalityProjector(4096, 64, reduction=8)
    assert p.reduce.weight.shape == (512, 4096) and p.proj.weight.shape == (64, 512)
    assert p(torch.randn(10, 4096)).shape == (10, 64)
    q = ModalityProjector(384, 64)
    assert q.reduce is None and q.proj.weight.shape == (64, 384)
    z, h = q(torch.randn(7, 384), return_refined=True)
    assert z.shape == h.shape == (7, 64)
    with pytest.raises(ValueError, match="384"):
        q(torch.randn(7, 383))
    with pytest.raises(ValueError, match="reduction"):
        ModalityProjector(4, 2, reduction=8)


def test_fused_two_layer_projection_equals_sequential():
    torch.manual_seed(0)
    p = ModalityProjector(256, 16, reduction=4, layer_norm=False)
    q = copy.deepcopy(p)
    q.fuse_linear = False
    x = torch.randn(30, 256, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y2 = p(x), q(x2)
    # reference by hand: W2 (W1 x + b1) + b2
    ref = F.linear(F.linear(x2, p.reduce.weight, p.reduce.bias), p.proj.weight, p.proj.bias)
    torch.testing.assert_close(y, y2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y2, ref, atol=1e-6, rtol=1e-6)
    w = torch.randn(30, 16)
    (y * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for (n, a), b in zip(p.named_parameters(), q.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=n)


def test_projector_order_refine_then_norm_then_dropout():
    torch.manual_seed(0)
    dream = DREAM(16)
    p = ModalityProjector(48, 16, refine=dream, dropout=0.5).eval()
    x = torch.randn(12, 48)
    z, h = p(x, return_refined=True)
    torch.testing.assert_close(h, dream(p.proj(x)))
    torch.testing.assert_close(z, F.layer_norm(h, (16,), p.norm.weight, p.norm.bias))
    p.train()
    torch.manual_seed(1)
    z_train = p(x)
    assert ((z_train == 0).float().mean() > 0.2)          # dropout active in training
    # a shared LayerNorm is one module in both projectors
    ln = nn.LayerNorm(16)
    a, b = ModalityProjector(48, 16, layer_norm=ln), ModalityProjector(10, 16, layer_norm=ln)
    assert a.norm is b.norm
    with pytest.raises(ValueError, match="LayerNorm"):
        ModalityProjector(48, 8, layer_norm=ln)
    assert ModalityProjector(48, 16, layer_norm=False).norm is None


def test_projector_with_activation():
    p = ModalityProjector(64, 8, reduction=4, activation=nn.ReLU(), layer_norm=False)
    x = torch.randn(5, 64)
    torch.testing.assert_close(p(x), p.proj(F.relu(p.reduce(x))))


def test_gate():
    g = ModalityGate(8, feature_dim=12)
    e, f = torch.randn(5, 8), torch.randn(5, 12)
    torch.testing.assert_close(g(e, f), e * torch.sigmoid(f @ g.lin.weight.t() + g.lin.bias))


@pytest.mark.parametrize("M", [1, 2, 3])
def test_fusion_matches_naive(M):
    torch.manual_seed(M)
    d, N = 8, 11
    fusion = ModalityAttentionFusion(d, M)
    views = [torch.randn(N, d, requires_grad=True) for _ in range(M)]
    collab = torch.randn(N, d, requires_grad=True)
    side, w = fusion(views, collab, return_weights=True)
    ref, w_ref = naive_fusion(fusion, views, collab)
    assert side.shape == (N, d) and w.shape == (N, M)
    torch.testing.assert_close(side, ref)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(N))
    # stacked input gives the same
    torch.testing.assert_close(fusion(torch.stack(views), collab), side)
    side.sum().backward()
    assert all(v.grad is not None for v in views)
    if M == 1:
        torch.testing.assert_close(side, views[0] / 2)      # common = view, specific = 0
    else:
        assert collab.grad.abs().sum() > 0
        assert all(p.grad is not None for p in fusion.parameters())


def test_fusion_two_modalities_hand_case():
    """Authors' formula for M=2: (g_v (v - c) + g_t (t - c) + c) / 3."""
    d = 4
    fusion = ModalityAttentionFusion(d, 2)
    with torch.no_grad():
        for p in fusion.parameters():
            p.zero_()
        fusion.prefer[0].bias.fill_(100.0)    # gate_v = 1
        fusion.prefer[1].bias.fill_(-100.0)   # gate_t = 0
    v, t = torch.ones(1, d), 3 * torch.ones(1, d)
    side = fusion([v, t], torch.zeros(1, d))
    # zero query -> equal weights -> common = 2; (1*(1-2) + 0 + 2) / 3 = 1/3
    torch.testing.assert_close(side, torch.full((1, d), 1 / 3))


def test_fusion_validation():
    f = ModalityAttentionFusion(8, 2)
    with pytest.raises(ValueError, match="2 views"):
        f([torch.randn(3, 8)] * 3, torch.randn(3, 8))
    with pytest.raises(ValueError, match="collaborative"):
        f([torch.randn(3, 8)] * 2, torch.randn(4, 8))
    with pytest.raises(ValueError, match="num_modalities"):
        ModalityAttentionFusion(8, 0)


def test_modality_features_trainable_and_frozen():
    from mmgraph.nn import ModalityFeatures
    src = {"image": torch.randn(5, 7), "text": torch.randn(5, 3).half()}
    tr = ModalityFeatures(src, trainable=True)
    assert set(tr) == {"image", "text"} and len(tr) == 2
    assert tr["text"].dtype == torch.float32 and tr["image"].requires_grad
    assert set(tr.state_dict()) == {"image", "text"}
    with torch.no_grad():
        tr["image"].add_(1.0)
    assert not torch.equal(tr["image"], src["image"])
    tr.reset_parameters()
    assert torch.equal(tr["image"], src["image"])              # restored from the data
    fr = ModalityFeatures(src, trainable=False)
    assert not fr["image"].requires_grad and fr.state_dict() == {} and not list(fr.parameters())
    assert fr.double()["image"].dtype == torch.float64           # buffers follow .to()/.double()
    with pytest.raises(KeyError, match="no modality 'audio'"):
        tr["audio"]
    with pytest.raises(ValueError):
        ModalityFeatures({})
