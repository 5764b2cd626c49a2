"""LowRankMetaTransform (mmgraph.nn.meta) against the authors' multiply-and-sum form."""
import torch

from mmgraph.nn import LowRankMetaTransform


def test_low_rank_meta_transform_matches_reference():
    torch.manual_seed(0)
    d, r, n = 6, 2, 5
    meta = LowRankMetaTransform(2 * d, d, r, gradient="full")
    e, h = torch.randn(n, d), torch.randn(n, 2 * d)
    kappa = meta.compress(h)
    m1 = meta.gen_in(kappa).view(n, d, r)
    m2 = meta.gen_out(kappa).view(n, r, d)
    w1 = torch.softmax(m1 + m1.mean(0), dim=1)
    w2 = torch.softmax(m2 + m2.mean(0), dim=1)
    mid = (e.unsqueeze(-1) * w1).sum(1)                   # the authors' multiply-and-sum form
    ref = (mid.unsqueeze(-1) * w2).sum(1)
    torch.testing.assert_close(meta(e, h), ref)
    # 'frozen' (the authors' detach): the knowledge extractor is fixed
    frozen = LowRankMetaTransform(2 * d, d, r, gradient="frozen")
    assert not any(p.requires_grad for p in frozen.compress.parameters())
    hh = h.clone().requires_grad_()
    frozen(e, hh).sum().backward()
    assert hh.grad is None
